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
//!
//! A body evicted for room leaves a [`Fingerprint`] (its version, length and a 64-bit hash), so
//! an open can still let the kernel keep its page cache of that version: whatever the kernel
//! evicted later is downloaded again and must match the fingerprint, or the reader gets an
//! error instead of a mix of two versions.
//!
//! Bodies fetched ahead of a scan (see `readahead`) are kept like any other, marked until
//! their first use, so the read-ahead can bound what it holds unused ([`ContentCache::unused_ahead`]).
//! Looking them up for the read-ahead itself ([`ContentCache::begin_ahead`]) neither uses them
//! nor makes them recent.

mod flight;

pub(crate) use flight::{slice, Early, Flight, FlightSink, StartedBy};

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use super::error::FsError;
use crate::api::Media;

/// One cached body and the content version it belongs to.
struct Cached {
    media: Media,
    version: u64,
    /// Fetched ahead of a scan and not used yet.
    ahead: bool,
}

/// How many fingerprints of evicted bodies are kept (about 100 bytes each).
const FINGERPRINTS: usize = 16 * 1024;

/// What identifies the bytes of one version of a body: enough to tell whether a download
/// brought the same bytes again (a check against change, not against an adversary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// The content version the bytes belonged to.
    pub version: u64,
    len: usize,
    hash: u64,
}

impl Fingerprint {
    pub(crate) fn of(body: &[u8], version: u64) -> Fingerprint {
        Fingerprint {
            version,
            len: body.len(),
            hash: Self::hash(body),
        }
    }

    /// Whether `body` holds the bytes this was taken of.
    pub(crate) fn matches(&self, body: &[u8]) -> bool {
        self.len == body.len() && self.hash == Self::hash(body)
    }

    fn hash(body: &[u8]) -> u64 {
        foldhash::fast::FixedState::with_seed(0x6277_6d65_6469_6166).hash_one(body)
    }
}

struct State {
    lru: LruCache<String, Cached>,
    /// Fingerprints of the bodies evicted for room, by key.
    fingerprints: LruCache<String, Fingerprint>,
    bytes: u64,
    /// Bytes of the bodies fetched ahead and not used yet (a part of `bytes`).
    ahead_bytes: u64,
    inflight: HashMap<String, Arc<Flight>>,
}

impl State {
    /// The body of `key` (if cached) is used: it no longer counts as fetched ahead.
    fn used(&mut self, key: &str) {
        if let Some(c) = self.lru.peek_mut(key) {
            if std::mem::take(&mut c.ahead) {
                self.ahead_bytes -= c.media.body.len() as u64;
            }
        }
    }

    /// Account for `c` leaving the cache.
    fn forget(&mut self, c: &Cached) {
        let len = c.media.body.len() as u64;
        self.bytes -= len;
        if c.ahead {
            self.ahead_bytes -= len;
        }
    }
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
        // A body fetched ahead that a reader joined while it arrived has been used.
        let ahead = self.flight.ahead() && !self.flight.joined();
        let result = result.map(|(media, version)| {
            self.cache.keep(&self.key, media.clone(), version, ahead);
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
                ahead_bytes: 0,
                fingerprints: LruCache::new(
                    NonZeroUsize::new(FINGERPRINTS).unwrap_or(NonZeroUsize::MIN),
                ),
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
                let media = c.media.clone();
                st.used(key);
                return Fetch::Cached(media);
            }
        }
        if let Some(f) = st.inflight.get(key) {
            f.join();
            return Fetch::Joined(f.clone());
        }
        self.lead(&mut st, key, StartedBy::Reader)
    }

    /// The lead of a download of `key` ahead of a scan, unless the cache holds a version
    /// `accept` takes or a download of it is in flight.
    pub(crate) fn begin_ahead(
        &self,
        key: &str,
        accept: impl Fn(u64) -> bool,
    ) -> Option<Leader<'_>> {
        let mut st = self.state.lock();
        let cached = st.lru.peek(key).is_some_and(|c| accept(c.version));
        if cached || st.inflight.contains_key(key) {
            return None;
        }
        match self.lead(&mut st, key, StartedBy::ReadAhead) {
            Fetch::Lead(l) => Some(l),
            _ => None,
        }
    }

    fn lead(&self, st: &mut State, key: &str, started_by: StartedBy) -> Fetch<'_> {
        let flight = Arc::new(Flight::new(started_by));
        st.inflight.insert(key.to_string(), flight.clone());
        Fetch::Lead(Leader {
            cache: self,
            key: key.to_string(),
            flight,
            finished: false,
        })
    }

    /// A reader is about to read the body of `key`: it no longer counts as fetched ahead.
    pub(crate) fn mark_used(&self, key: &str) {
        self.state.lock().used(key);
    }

    /// Whether the cache holds the body of `key` at `version`.
    pub(crate) fn cached_at(&self, key: &str, version: u64) -> bool {
        let st = self.state.lock();
        st.lru.peek(key).is_some_and(|c| c.version == version)
    }

    /// Whether a body of `key` is cached or downloading.
    pub(crate) fn holds(&self, key: &str) -> bool {
        let st = self.state.lock();
        st.lru.contains(key) || st.inflight.contains_key(key)
    }

    /// Bytes of the bodies fetched ahead of a scan that nobody has used yet.
    pub(crate) fn unused_ahead(&self) -> u64 {
        self.state.lock().ahead_bytes
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
        self.keep(key, media, version, false)
    }

    /// [`ContentCache::insert`], marked as fetched ahead (and not used yet) when `ahead`.
    fn keep(&self, key: &str, media: Media, version: u64, ahead: bool) {
        let mut evicted = Vec::new();
        let mut st = self.state.lock();
        if let Some(old) = st.lru.pop(key) {
            st.forget(&old);
            evicted.push(old);
        }
        let len = media.body.len() as u64;
        if len > self.capacity {
            return;
        }
        st.lru.put(
            key.to_string(),
            Cached {
                media,
                version,
                ahead,
            },
        );
        st.bytes += len;
        if ahead {
            st.ahead_bytes += len;
        }
        let mut for_room = Vec::new();
        while st.bytes > self.capacity {
            match st.lru.pop_lru() {
                Some((k, c)) => {
                    st.forget(&c);
                    for_room.push((k, c));
                }
                None => break,
            }
        }
        drop(st);
        drop(evicted); // their buffers go back to the pool outside the lock
        if !for_room.is_empty() {
            let prints: Vec<(String, Fingerprint)> = for_room
                .iter()
                .map(|(k, c)| (k.clone(), Fingerprint::of(&c.media.body, c.version)))
                .collect();
            drop(for_room);
            let mut st = self.state.lock();
            for (k, f) in prints {
                st.fingerprints.put(k, f);
            }
        }
    }

    /// The fingerprint of the body of `key` evicted last, if it is still known.
    pub(crate) fn fingerprint(&self, key: &str) -> Option<Fingerprint> {
        self.state.lock().fingerprints.peek(key).copied()
    }

    pub(crate) fn remove(&self, key: &str) {
        let mut st = self.state.lock();
        let old = st.lru.pop(key);
        if let Some(old) = &old {
            st.forget(old);
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
mod tests;
