//! The data cache: whole media bodies, shared by every handle, bounded by bytes (LRU), with at
//! most one download per media at a time, readable while it downloads.
//!
//! The API has no ranges, so a read of any byte costs a GET of the whole media: the body is
//! kept here and every later read (of any handle) is served from memory. Bodies are [`Bytes`],
//! so a handle that has the body keeps it alive even after the cache evicts it (a reader of a
//! removed file keeps reading).
//!
//! Downloads are single-flight and readable while they arrive: see [`flight`]. Each entry
//! carries the *content version* the namespace gave it, so the caller can tell a body that is
//! still valid from one that belongs to an older state of the media.

mod flight;

pub(crate) use flight::{slice, Early, Flight, FlightSink};

use std::collections::HashMap;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use super::error::FsError;
use crate::api::Media;

/// One cached body and the content version it belongs to.
struct Cached {
    media: Media,
    version: u64,
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
        self.flight.end(result);
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
    use crate::api::BodySink;
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
                matches!(sink.finish(), Err(FsError::BadDownload(_))),
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
