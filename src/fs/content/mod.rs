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
mod tests;
