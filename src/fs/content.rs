//! The data cache: whole media bodies, shared by every handle, bounded by bytes (LRU), with at
//! most one download per media at a time.
//!
//! The API has no ranges, so a read of any byte costs a GET of the whole media: the body is
//! kept here and every later read (of any handle) is served from memory. Bodies are [`Bytes`],
//! so a handle that has the body keeps it alive even after the cache evicts it (a reader of a
//! removed file keeps reading).
//!
//! The hard part is single-flight: when several threads want a media that is not cached, the
//! first registers a *flight* and downloads without holding the cache lock; the others wait on
//! that flight and share its result (bytes or error). Each entry carries the *content version*
//! the namespace gave it, so the caller can tell a body that is still valid from one that
//! belongs to an older state of the media.

use std::collections::HashMap;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::{Condvar, Mutex};

use super::error::FsError;
use crate::api::Media;

/// One cached body and the content version it belongs to.
struct Cached {
    media: Media,
    version: u64,
}

/// A download in progress: its result once done.
struct Flight {
    result: Mutex<Option<Result<Media, FsError>>>,
    done: Condvar,
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

/// Finishes a flight even if the download panics, so waiters never hang.
struct FlightGuard<'a> {
    cache: &'a ContentCache,
    key: String,
    flight: Arc<Flight>,
    finished: bool,
}

impl FlightGuard<'_> {
    fn finish(&mut self, result: Result<Media, FsError>) {
        self.cache.state.lock().inflight.remove(&self.key);
        *self.flight.result.lock() = Some(result);
        self.flight.done.notify_all();
        self.finished = true;
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(Err(FsError::Io("the download was abandoned".into())));
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

    /// The body of `key`: from the cache if `accept` takes the cached version, else from `load`
    /// (a download that returns the body and the version to cache it under). Concurrent callers
    /// for one key share one `load`.
    pub(crate) fn fetch(
        &self,
        key: &str,
        accept: impl Fn(u64) -> bool,
        load: impl FnOnce() -> Result<(Media, u64), FsError>,
    ) -> Result<Media, FsError> {
        let flight = {
            let mut st = self.state.lock();
            if let Some(c) = st.lru.get(key) {
                if accept(c.version) {
                    return Ok(c.media.clone());
                }
            }
            if let Some(f) = st.inflight.get(key) {
                let f = f.clone();
                drop(st);
                return Self::wait(&f);
            }
            let f = Arc::new(Flight {
                result: Mutex::new(None),
                done: Condvar::new(),
            });
            st.inflight.insert(key.to_string(), f.clone());
            f
        };
        let mut guard = FlightGuard {
            cache: self,
            key: key.to_string(),
            flight,
            finished: false,
        };
        let result = load().map(|(media, version)| {
            self.insert(key, media.clone(), version);
            media
        });
        guard.finish(result.clone());
        result
    }

    fn wait(f: &Flight) -> Result<Media, FsError> {
        let mut r = f.result.lock();
        loop {
            if let Some(result) = r.as_ref() {
                return result.clone();
            }
            f.done.wait(&mut r);
        }
    }

    /// Keep `media` as the body of `key` at `version`, evicting the least recently used bodies
    /// beyond the capacity. A body larger than the whole cache is not kept.
    pub(crate) fn insert(&self, key: &str, media: Media, version: u64) {
        let mut st = self.state.lock();
        if let Some(old) = st.lru.pop(key) {
            st.bytes -= old.media.body.len() as u64;
        }
        let len = media.body.len() as u64;
        if len > self.capacity {
            return;
        }
        st.lru.put(key.to_string(), Cached { media, version });
        st.bytes += len;
        while st.bytes > self.capacity {
            match st.lru.pop_lru() {
                Some((_, c)) => st.bytes -= c.media.body.len() as u64,
                None => break,
            }
        }
    }

    pub(crate) fn remove(&self, key: &str) {
        let mut st = self.state.lock();
        if let Some(old) = st.lru.pop(key) {
            st.bytes -= old.media.body.len() as u64;
        }
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

    #[test]
    fn errors_are_shared_and_not_cached() {
        let c = ContentCache::new(1000);
        let r = c.fetch("k", |_| true, || Err(FsError::NotFound));
        assert_eq!(r.unwrap_err(), FsError::NotFound);
        let r = c.fetch("k", |_| true, || Ok((media(2), 1)));
        assert_eq!(r.unwrap().body.len(), 2);
    }
}
