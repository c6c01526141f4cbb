//! The data cache: whole media bodies, shared by every handle, bounded by bytes (LRU), with at
//! most one download per media at a time, readable while it downloads.
//!
//! The API has no ranges, so a read of any byte costs a GET of the whole media: the body is
//! kept here and every later read (of any handle) is served from memory. Bodies are [`Bytes`],
//! so a handle that has the body keeps it alive even after the cache evicts it (a reader of a
//! removed file keeps reading).
//!
//! The hard part is single-flight with streaming: when several threads want a media that is not
//! cached, the first registers a [`Flight`] and downloads without holding the cache lock; the
//! others join that flight. The body arrives into one buffer of the announced length (a
//! [`PageBuf`]), and a reader of bytes `a..b` is answered as soon as they are in, while the
//! rest is still arriving: bytes below the fill mark are never written again, so they are handed
//! out as `Bytes` slices of that buffer without a copy. If an attempt is cut and retried, the
//! retry's bytes below the fill mark are compared with what was already handed out, and a
//! difference (the media changed between the attempts) fails the download rather than mixing
//! two versions. Each entry carries the *content version* the namespace gave it, so the caller
//! can tell a body that is still valid from one that belongs to an older state of the media.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use lru::LruCache;
use parking_lot::{Condvar, Mutex};

use super::buf::PageBuf;
use super::error::FsError;
use crate::api::{BodySink, Media};

/// One cached body and the content version it belongs to.
struct Cached {
    media: Media,
    version: u64,
}

/// The buffer a download fills, and its announced length.
struct Shared {
    buf: PageBuf,
    len: usize,
}

/// Bytes `start..end` of a download's buffer, as the owner of a `Bytes`: only bytes below the
/// fill mark, which are never written again.
struct Part {
    shared: Arc<Shared>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for Part {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `start..end` lies below the fill mark (see `Flight::read` and
        // `FlightSink::advance`), and the sink never writes there again.
        unsafe { self.shared.buf.range(self.start, self.end) }
    }
}

fn part(shared: &Arc<Shared>, start: usize, end: usize) -> Bytes {
    Bytes::from_owner(Part {
        shared: shared.clone(),
        start,
        end,
    })
}

/// `size` bytes at `offset` of `body` (fewer at its end).
pub(crate) fn slice(body: &Bytes, offset: u64, size: u32) -> Bytes {
    let len = body.len() as u64;
    let start = offset.min(len) as usize;
    let end = offset.saturating_add(size as u64).min(len) as usize;
    body.slice(start..end)
}

/// A download in progress: how far its body is in, then its result.
pub(crate) struct Flight {
    st: Mutex<FlightState>,
    cond: Condvar,
}

struct FlightState {
    /// The buffer being filled (from the first attempt that announced a length).
    shared: Option<Arc<Shared>>,
    filled: usize,
    /// The lowest fill mark a waiting reader needs (`usize::MAX`: none waits), so that the
    /// downloader wakes readers when their bytes are in, not at every chunk.
    want: usize,
    /// Some bytes were handed out before the end (they are in the kernel's page cache now).
    served: bool,
    result: Option<Result<Media, FsError>>,
}

impl Flight {
    fn new() -> Flight {
        Flight {
            st: Mutex::new(FlightState {
                shared: None,
                filled: 0,
                want: usize::MAX,
                served: false,
                result: None,
            }),
            cond: Condvar::new(),
        }
    }

    /// Up to `size` bytes at `offset`, as soon as they are in (or the download's error).
    pub(crate) fn read(&self, offset: u64, size: u32) -> Result<Bytes, FsError> {
        let mut st = self.st.lock();
        loop {
            if let Some(r) = &st.result {
                return match r {
                    Ok(m) => Ok(slice(&m.body, offset, size)),
                    Err(e) => Err(e.clone()),
                };
            }
            if let Some(sh) = &st.shared {
                let len = sh.len as u64;
                let start = offset.min(len) as usize;
                let end = offset.saturating_add(size as u64).min(len) as usize;
                if end <= st.filled || start == end {
                    let b = part(sh, start, end);
                    st.served = true;
                    return Ok(b);
                }
                st.want = st.want.min(end);
            } else {
                st.want = 0; // the length is not known yet: any progress
            }
            self.cond.wait(&mut st);
        }
    }

    /// The whole media, once downloaded.
    pub(crate) fn wait(&self) -> Result<Media, FsError> {
        let mut st = self.st.lock();
        loop {
            if let Some(r) = &st.result {
                return r.clone();
            }
            self.cond.wait(&mut st);
        }
    }

    /// The result, if the download is over.
    pub(crate) fn result(&self) -> Option<Result<Media, FsError>> {
        self.st.lock().result.clone()
    }

    /// Whether bytes were handed out before the download ended.
    pub(crate) fn served(&self) -> bool {
        self.st.lock().served
    }
}

/// What a download hands out before it ends: the range one reader waits for, and where its
/// answer goes (called exactly once).
pub(crate) struct Early {
    pub offset: u64,
    pub size: u32,
    pub reply: Box<dyn FnOnce(Result<Bytes, FsError>) + Send>,
}

/// The receiving end of a download: writes the body into the flight's buffer and wakes the
/// readers whose bytes are in.
pub(crate) struct FlightSink<'a> {
    flight: &'a Flight,
    shared: Option<Arc<Shared>>,
    /// Bytes in the shared buffer (only this sink raises it).
    filled: usize,
    /// Position of the current attempt in the body.
    pos: usize,
    /// Where a retry's bytes below `filled` land, to be compared.
    scratch: Vec<u8>,
    /// The body when no length was announced (readers then wait for the end).
    unknown: Option<Vec<u8>>,
    unknown_len: usize,
    failed: Option<String>,
    early: Option<Early>,
}

const SCRATCH: usize = 64 * 1024;

impl<'a> FlightSink<'a> {
    pub(crate) fn new(flight: &'a Flight, early: Option<Early>) -> FlightSink<'a> {
        FlightSink {
            flight,
            shared: None,
            filled: 0,
            pos: 0,
            scratch: Vec::new(),
            unknown: None,
            unknown_len: 0,
            failed: None,
            early,
        }
    }

    fn fail(&mut self, why: String) {
        if self.failed.is_none() {
            self.failed = Some(why);
        }
    }

    /// The body received, once the API call succeeded.
    pub(crate) fn finish(&mut self) -> Result<Bytes, FsError> {
        if let Some(why) = self.failed.take() {
            return Err(FsError::Io(why));
        }
        if let Some(mut v) = self.unknown.take() {
            v.truncate(self.unknown_len);
            return Ok(Bytes::from(v));
        }
        match &self.shared {
            Some(sh) if self.filled == sh.len && self.pos == sh.len => Ok(part(sh, 0, sh.len)),
            Some(sh) => Err(FsError::Io(format!(
                "the download ended after {} of {} bytes",
                self.pos, sh.len
            ))),
            None => Ok(Bytes::new()),
        }
    }

    /// Answer the early reader from the final result if its bytes were not handed out yet.
    pub(crate) fn answer_early(&mut self, result: &Result<Media, FsError>) {
        if let Some(e) = self.early.take() {
            (e.reply)(match result {
                Ok(m) => Ok(slice(&m.body, e.offset, e.size)),
                Err(err) => Err(err.clone()),
            });
        }
    }
}

impl BodySink for FlightSink<'_> {
    fn start(&mut self, len: Option<u64>) {
        self.pos = 0;
        self.unknown = None;
        self.unknown_len = 0;
        let Some(len) = len else {
            if self.shared.is_some() {
                self.fail(
                    "the media changed while it was read (a retry announced no length)".into(),
                );
            }
            self.unknown = Some(Vec::new());
            return;
        };
        match &self.shared {
            Some(sh) if sh.len as u64 == len => {} // a retry: compared up to `filled`
            Some(_) => self.fail(
                "the media changed while it was read (a retry announced another length)".into(),
            ),
            None => {
                let Ok(len) = usize::try_from(len) else {
                    self.fail(format!("{len} bytes do not fit in memory"));
                    return;
                };
                match PageBuf::new(len) {
                    Ok(buf) => {
                        let sh = Arc::new(Shared { buf, len });
                        self.flight.st.lock().shared = Some(sh.clone());
                        self.shared = Some(sh);
                    }
                    Err(e) => self.fail(format!("no memory for {len} bytes: {e}")),
                }
            }
        }
    }

    fn space(&mut self) -> &mut [u8] {
        if self.failed.is_some() {
            // Read on to the end of the attempt (the connection stays usable); keep nothing.
            self.scratch.resize(SCRATCH, 0);
            return &mut self.scratch;
        }
        if let Some(v) = &mut self.unknown {
            if v.len() < self.unknown_len + SCRATCH {
                v.resize(self.unknown_len + SCRATCH, 0);
            }
            return &mut v[self.unknown_len..];
        }
        let Some(sh) = &self.shared else {
            return &mut [];
        };
        if self.pos < self.filled {
            let n = (self.filled - self.pos).min(SCRATCH);
            self.scratch.resize(n, 0);
            return &mut self.scratch[..n];
        }
        // SAFETY: `filled..len` is written only by this sink and read by nobody until `filled`
        // passes it (readers only take bytes below `filled`).
        unsafe { sh.buf.range_mut(self.filled, sh.len) }
    }

    fn advance(&mut self, n: usize) {
        if self.failed.is_some() {
            return;
        }
        if self.unknown.is_some() {
            self.unknown_len += n;
            return;
        }
        let Some(sh) = self.shared.clone() else {
            return;
        };
        if self.pos < self.filled {
            // SAFETY: below `filled`: nobody writes there.
            let old = unsafe { sh.buf.range(self.pos, self.pos + n) };
            if old != &self.scratch[..n] {
                self.fail(
                    "the media changed while it was read (a retry brought other bytes)".into(),
                );
            }
            self.pos += n;
            return;
        }
        self.pos += n;
        self.filled = self.pos;
        let wake = {
            let mut st = self.flight.st.lock();
            st.filled = self.filled;
            if let Some(e) = &self.early {
                let len = sh.len as u64;
                let end = e.offset.saturating_add(e.size as u64).min(len) as usize;
                if end <= self.filled {
                    st.served = true;
                }
            }
            let wake = self.filled >= st.want;
            if wake {
                st.want = usize::MAX;
            }
            wake
        };
        if wake {
            self.flight.cond.notify_all();
        }
        if let Some(e) = &self.early {
            let len = sh.len as u64;
            let start = e.offset.min(len) as usize;
            let end = e.offset.saturating_add(e.size as u64).min(len) as usize;
            if end <= self.filled {
                if let Some(e) = self.early.take() {
                    (e.reply)(Ok(part(&sh, start, end)));
                }
            }
        }
    }
}

struct State {
    lru: LruCache<String, Cached>,
    bytes: u64,
    inflight: HashMap<String, Arc<Flight>>,
}

pub(crate) struct ContentCache {
    capacity: u64,
    state: Mutex<State>,
}

/// How to get a body: it is cached, someone is downloading it, or the caller downloads it.
pub(crate) enum Fetch<'a> {
    Cached(Media),
    Joined(Arc<Flight>),
    Lead(Leader<'a>),
}

/// The one downloader of a media. Finishing (or dropping, if the download panics) ends the
/// flight, so joiners never hang.
pub(crate) struct Leader<'a> {
    cache: &'a ContentCache,
    key: String,
    flight: Arc<Flight>,
    finished: bool,
}

impl Leader<'_> {
    pub(crate) fn flight(&self) -> &Arc<Flight> {
        &self.flight
    }

    /// End the flight: cache the body under its version, wake every reader.
    pub(crate) fn finish(
        mut self,
        result: Result<(Media, u64), FsError>,
    ) -> Result<Media, FsError> {
        let result = result.map(|(media, version)| {
            self.cache.insert(&self.key, media.clone(), version);
            media
        });
        self.end(result.clone());
        result
    }

    fn end(&mut self, result: Result<Media, FsError>) {
        self.cache.state.lock().inflight.remove(&self.key);
        self.flight.st.lock().result = Some(result);
        self.flight.cond.notify_all();
        self.finished = true;
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.end(Err(FsError::Io("the download was abandoned".into())));
        }
    }
}

impl ContentCache {
    pub(crate) fn new(capacity: u64) -> ContentCache {
        ContentCache {
            capacity,
            state: Mutex::new(State {
                lru: LruCache::unbounded(),
                bytes: 0,
                inflight: HashMap::new(),
            }),
        }
    }

    /// The cached body of `key` if `accept` takes its version (and mark it recently used).
    #[cfg(test)]
    pub(crate) fn get(&self, key: &str, accept: impl Fn(u64) -> bool) -> Option<Media> {
        let mut st = self.state.lock();
        match st.lru.get(key) {
            Some(c) if accept(c.version) => Some(c.media.clone()),
            _ => None,
        }
    }

    /// The cached body of `key` whatever its version, and that version.
    pub(crate) fn peek(&self, key: &str) -> Option<(Media, u64)> {
        let st = self.state.lock();
        st.lru.peek(key).map(|c| (c.media.clone(), c.version))
    }

    /// The body of `key` from the cache if `accept` takes the cached version; else the download
    /// in flight for it, or the lead of a new one.
    pub(crate) fn begin(&self, key: &str, accept: impl Fn(u64) -> bool) -> Fetch<'_> {
        let mut st = self.state.lock();
        if let Some(c) = st.lru.get(key) {
            if accept(c.version) {
                return Fetch::Cached(c.media.clone());
            }
        }
        if let Some(f) = st.inflight.get(key) {
            return Fetch::Joined(f.clone());
        }
        let flight = Arc::new(Flight::new());
        st.inflight.insert(key.to_string(), flight.clone());
        Fetch::Lead(Leader {
            cache: self,
            key: key.to_string(),
            flight,
            finished: false,
        })
    }

    /// The body of `key`: from the cache if `accept` takes the cached version, else from `load`
    /// (a download that returns the body and the version to cache it under). Concurrent callers
    /// for one key share one `load`.
    #[cfg(test)]
    pub(crate) fn fetch(
        &self,
        key: &str,
        accept: impl Fn(u64) -> bool,
        load: impl FnOnce() -> Result<(Media, u64), FsError>,
    ) -> Result<Media, FsError> {
        match self.begin(key, accept) {
            Fetch::Cached(m) => Ok(m),
            Fetch::Joined(f) => f.wait(),
            Fetch::Lead(l) => l.finish(load()),
        }
    }

    /// Keep `media` as the body of `key` at `version`, evicting the least recently used bodies
    /// beyond the capacity. A body larger than the whole cache is not kept.
    pub(crate) fn insert(&self, key: &str, media: Media, version: u64) {
        let mut evicted = Vec::new();
        let mut st = self.state.lock();
        if let Some(old) = st.lru.pop(key) {
            st.bytes -= old.media.body.len() as u64;
            evicted.push(old);
        }
        let len = media.body.len() as u64;
        if len > self.capacity {
            return;
        }
        st.lru.put(key.to_string(), Cached { media, version });
        st.bytes += len;
        while st.bytes > self.capacity {
            match st.lru.pop_lru() {
                Some((_, c)) => {
                    st.bytes -= c.media.body.len() as u64;
                    evicted.push(c);
                }
                None => break,
            }
        }
        drop(st);
        drop(evicted); // their buffers go back to the pool outside the lock
    }

    pub(crate) fn remove(&self, key: &str) {
        let mut st = self.state.lock();
        let old = st.lru.pop(key);
        if let Some(old) = &old {
            st.bytes -= old.media.body.len() as u64;
        }
        drop(st);
        drop(old);
    }

    /// Bytes held.
    pub(crate) fn used(&self) -> u64 {
        self.state.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn media(n: usize) -> Media {
        Media {
            body: Bytes::from(vec![7u8; n]),
            content_type: None,
            cache_control: None,
        }
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let c = ContentCache::new(100);
        c.insert("a", media(40), 1);
        c.insert("b", media(40), 1);
        assert!(c.get("a", |_| true).is_some()); // a is now the most recent
        c.insert("c", media(40), 1); // evicts b
        assert!(c.get("b", |_| true).is_none());
        assert!(c.get("a", |_| true).is_some());
        assert!(c.get("c", |_| true).is_some());
        assert_eq!(c.used(), 80);
        c.insert("huge", media(101), 1);
        assert!(c.get("huge", |_| true).is_none());
        assert_eq!(c.used(), 80);
        c.remove("a");
        assert_eq!(c.used(), 40);
    }

    #[test]
    fn version_decides_validity() {
        let c = ContentCache::new(100);
        c.insert("a", media(1), 3);
        assert!(c.get("a", |v| v == 3).is_some());
        assert!(c.get("a", |v| v == 4).is_none());
    }

    #[test]
    fn concurrent_fetches_share_one_load() {
        let c = Arc::new(ContentCache::new(1000));
        let loads = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                let loads = loads.clone();
                std::thread::spawn(move || {
                    c.fetch(
                        "k",
                        |_| true,
                        || {
                            loads.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(100));
                            Ok((media(10), 1))
                        },
                    )
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().unwrap().body.len(), 10);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    /// One attempt of a download: `len` announced, then `parts`.
    fn attempt(sink: &mut FlightSink<'_>, len: u64, parts: &[&[u8]]) {
        sink.start(Some(len));
        feed(sink, parts);
    }

    /// Each part as one read of the API layer (which reads at most the space offered).
    fn feed(sink: &mut FlightSink<'_>, parts: &[&[u8]]) {
        for p in parts {
            let mut rest = *p;
            while !rest.is_empty() {
                let space = sink.space();
                let n = space.len().min(rest.len());
                assert!(n > 0, "no room for the bytes fed");
                space[..n].copy_from_slice(&rest[..n]);
                sink.advance(n);
                rest = &rest[n..];
            }
        }
    }

    fn media_of(body: Bytes) -> Media {
        Media {
            body,
            content_type: None,
            cache_control: None,
        }
    }

    fn lead(c: &ContentCache) -> Leader<'_> {
        match c.begin("k", |_| true) {
            Fetch::Lead(l) => l,
            _ => panic!("the first fetch leads"),
        }
    }

    #[test]
    fn readers_get_their_bytes_while_the_rest_downloads() {
        let c = ContentCache::new(1000);
        let leader = lead(&c);
        let flight = leader.flight().clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let early = Early {
            offset: 0,
            size: 4,
            reply: Box::new(move |r| tx.send(r).unwrap()),
        };
        let mut sink = FlightSink::new(&flight, Some(early));
        let Fetch::Joined(joined) = c.begin("k", |_| true) else {
            panic!("a second fetch joins")
        };
        let reader = std::thread::spawn(move || joined.read(4, 3));
        attempt(&mut sink, 10, &[b"abc"]);
        assert!(rx.try_recv().is_err(), "3 bytes do not answer a read of 4");
        feed(&mut sink, &[b"defg"]);
        assert_eq!(&rx.try_recv().unwrap().unwrap()[..], b"abcd");
        // The joined reader wanted 4..7: answered before the end.
        assert_eq!(&reader.join().unwrap().unwrap()[..], b"efg");
        assert!(flight.served());
        assert_eq!(flight.read(10, 5).unwrap().len(), 0, "past the end: EOF");
        feed(&mut sink, &[b"hij"]);
        let body = sink.finish().unwrap();
        assert_eq!(&body[..], b"abcdefghij");
        let m = leader.finish(Ok((media_of(body), 1))).unwrap();
        assert_eq!(&m.body[..], b"abcdefghij");
        assert_eq!(&flight.read(8, 100).unwrap()[..], b"ij");
        assert!(c.get("k", |_| true).is_some());
    }

    #[test]
    fn a_retry_must_bring_the_bytes_already_handed_out() {
        // The same bytes again: the download goes on from where the first attempt was cut.
        let c = ContentCache::new(1000);
        let leader = lead(&c);
        let flight = leader.flight().clone();
        let mut sink = FlightSink::new(&flight, None);
        attempt(&mut sink, 6, &[b"abcd"]);
        assert_eq!(&flight.read(0, 2).unwrap()[..], b"ab");
        attempt(&mut sink, 6, &[b"ab", b"cdef"]);
        assert_eq!(&sink.finish().unwrap()[..], b"abcdef");
        drop(leader);

        // Other bytes, or another length: the download fails rather than mix two versions.
        for (len, parts) in [(6, [&b"abXd"[..], b"ef"]), (7, [&b"abcd"[..], b"efg"])] {
            let c = ContentCache::new(1000);
            let leader = lead(&c);
            let flight = leader.flight().clone();
            let mut sink = FlightSink::new(&flight, None);
            attempt(&mut sink, 6, &[b"abcd"]);
            attempt(&mut sink, len, &parts);
            assert!(
                matches!(sink.finish(), Err(FsError::Io(_))),
                "{len} {parts:?}"
            );
            let err = leader.finish(Err(FsError::Io("changed".into())));
            assert!(err.is_err());
            assert!(flight.read(0, 2).is_err(), "readers get the error");
        }
    }

    #[test]
    fn a_body_of_unknown_length_is_read_at_its_end() {
        let c = ContentCache::new(1000);
        let leader = lead(&c);
        let flight = leader.flight().clone();
        let mut sink = FlightSink::new(&flight, None);
        sink.start(None);
        feed(&mut sink, &[b"hello ", b"world"]);
        let body = sink.finish().unwrap();
        assert_eq!(&body[..], b"hello world");
        leader.finish(Ok((media_of(body), 1))).unwrap();
        assert_eq!(&flight.read(6, 5).unwrap()[..], b"world");
    }

    #[test]
    fn an_abandoned_download_wakes_its_readers() {
        let c = ContentCache::new(1000);
        let leader = lead(&c);
        let flight = leader.flight().clone();
        let reader = std::thread::spawn(move || flight.read(0, 1));
        std::thread::sleep(Duration::from_millis(50));
        drop(leader);
        assert!(reader.join().unwrap().is_err());
        assert!(
            matches!(c.begin("k", |_| true), Fetch::Lead(_)),
            "and a new one may start"
        );
    }

    #[test]
    fn errors_are_shared_and_not_cached() {
        let c = ContentCache::new(1000);
        let r = c.fetch("k", |_| true, || Err(FsError::NotFound));
        assert_eq!(r.unwrap_err(), FsError::NotFound);
        let r = c.fetch("k", |_| true, || Ok((media(2), 1)));
        assert_eq!(r.unwrap().body.len(), 2);
    }
}
