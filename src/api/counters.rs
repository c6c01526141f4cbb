//! [`Counters`]: what a mount has asked of the server and what its data cache spared it, as
//! `bwmediafs status` shows them. Plain atomics, so that counting takes no lock on the paths
//! it measures; each count is made in exactly one place:
//!
//! | counter | counted in |
//! |---|---|
//! | requests (list, get, put, delete) | `HttpApi::send`, once the answer arrived |
//! | token requests | the auth module's `fetch_token`, once the answer arrived |
//! | `bytes_up` | `HttpApi::send`, once the answer arrived |
//! | `bytes_down` | `HttpApi::get_once_into`, as the body arrives |
//! | `retries` | `HttpApi::with_retries`, before each attempt after the first |
//! | `cache_hits` | `MediaFs::open` (the core's `read.rs`) |
//!
//! The HTTP client owns them and hands the core the same [`Counters`] through
//! [`super::MediaApi::counters`], so one object holds a mount's counts.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The kinds of request the client makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A listing page.
    List,
    /// A media download.
    Get,
    /// A media upload.
    Put,
    /// A media deletion.
    Delete,
    /// An OAuth2 token request.
    Token,
}

/// A mount's counters since it started. Every count is monotonic.
#[derive(Debug, Default)]
pub struct Counters {
    list: AtomicU64,
    get: AtomicU64,
    put: AtomicU64,
    delete: AtomicU64,
    token: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    retries: AtomicU64,
    cache_hits: AtomicU64,
}

impl Counters {
    /// A request of `kind` was answered by the server (whatever its status: a 401, a 404 or a
    /// 503 is a request the server received). An attempt that got no answer (the connection
    /// refused or reset, a timeout before the status line) is not counted: whether it reached
    /// the server cannot be known. A request repeated after a 401 counts again.
    pub fn request(&self, kind: RequestKind) {
        let counter = match kind {
            RequestKind::List => &self.list,
            RequestKind::Get => &self.get,
            RequestKind::Put => &self.put,
            RequestKind::Delete => &self.delete,
            RequestKind::Token => &self.token,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The server answered a PUT whose body had `bytes` bytes (a body sent again, by a retry
    /// or after a 401, counts again).
    pub fn uploaded(&self, bytes: u64) {
        self.bytes_up.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` more bytes of a media body arrived (GET answers only: not listings, tokens or
    /// error bodies). Bytes of an answer cut short count too, and so do those of its retry.
    pub fn downloaded(&self, bytes: u64) {
        self.bytes_down.fetch_add(bytes, Ordering::Relaxed);
    }

    /// An attempt after the first of one call (the token request at mount included) begins:
    /// the call's earlier attempt failed in a way worth retrying. A request repeated within
    /// one attempt, with a renewed token after a 401, is not a retry.
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// An open for reading found the file's current bytes in the data cache and made no GET
    /// (see `MediaFs::open`): its reads are answered from memory (or from the kernel's page
    /// cache), unless the cache evicts the bytes before the first read that needs them.
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now (each read on its own: a count made meanwhile may show in one and not
    /// yet in another).
    pub fn snapshot(&self) -> CountersSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            requests: Requests {
                list: load(&self.list),
                get: load(&self.get),
                put: load(&self.put),
                delete: load(&self.delete),
                token: load(&self.token),
            },
            bytes_up: load(&self.bytes_up),
            bytes_down: load(&self.bytes_down),
            retries: load(&self.retries),
            cache_hits: load(&self.cache_hits),
        }
    }
}

/// Requests answered, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    /// Listing pages.
    pub list: u64,
    /// Media downloads.
    pub get: u64,
    /// Media uploads.
    pub put: u64,
    /// Media deletions.
    pub delete: u64,
    /// OAuth2 token requests.
    pub token: u64,
}

impl Requests {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.list + self.get + self.put + self.delete + self.token
    }
}

/// [`Counters`] at one moment, as the `counters` object of the status JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CountersSnapshot {
    /// Requests answered by the server, by kind.
    pub requests: Requests,
    /// Bytes of the upload bodies the server answered.
    pub bytes_up: u64,
    /// Bytes of media bodies received.
    pub bytes_down: u64,
    /// Attempts after the first of a call.
    pub retries: u64,
    /// Opens for reading answered from the data cache without a GET.
    pub cache_hits: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_count_goes_to_its_own_field_and_serializes_under_the_status_names() {
        let c = Counters::default();
        for kind in [
            RequestKind::List,
            RequestKind::Get,
            RequestKind::Get,
            RequestKind::Put,
            RequestKind::Delete,
            RequestKind::Token,
        ] {
            c.request(kind);
        }
        c.uploaded(10);
        c.downloaded(3);
        c.downloaded(4);
        c.retry();
        c.cache_hit();
        c.cache_hit();
        let s = c.snapshot();
        assert_eq!(s.requests.total(), 6);
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::json!({
                "requests": {"list": 1, "get": 2, "put": 1, "delete": 1, "token": 1},
                "bytes_up": 10,
                "bytes_down": 7,
                "retries": 1,
                "cache_hits": 2,
            })
        );
    }
}
