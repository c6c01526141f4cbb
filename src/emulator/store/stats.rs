//! The emulator's request counters: requests served per operation, and how many at once (how
//! tests see that a client works in parallel, and that it keeps within its bound).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Requests served, per operation, failures included.
#[derive(Debug, Default)]
pub struct Stats {
    /// Listing pages.
    pub list: AtomicU64,
    /// Downloads.
    pub get: AtomicU64,
    /// Uploads.
    pub put: AtomicU64,
    /// Deletes.
    pub delete: AtomicU64,
    /// Token requests.
    pub token: AtomicU64,
    /// Requests being served now, and the most served at once since the last reset: how
    /// tests see that a client works in parallel, and that it keeps within its bound.
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
}

/// One request being served: counted in [`Stats`] until dropped.
pub struct Serving<'a>(&'a Stats);

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A copy of [`Stats`] at one moment, as `GET /_emulator/stats` answers it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// Listing pages.
    pub list: u64,
    /// Downloads.
    pub get: u64,
    /// Uploads.
    pub put: u64,
    /// Deletes.
    pub delete: u64,
    /// Token requests.
    pub token: u64,
}

impl Stats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            list: self.list.load(Ordering::Relaxed),
            get: self.get.load(Ordering::Relaxed),
            put: self.put.load(Ordering::Relaxed),
            delete: self.delete.load(Ordering::Relaxed),
            token: self.token.load(Ordering::Relaxed),
        }
    }
    /// Start every counter from zero.
    pub fn reset(&self) {
        for c in [&self.list, &self.get, &self.put, &self.delete, &self.token] {
            c.store(0, Ordering::Relaxed);
        }
        self.peak_in_flight
            .store(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// A request is being served until the guard is dropped.
    pub fn serving(&self) -> Serving<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        Serving(self)
    }

    /// The most API requests served at once since the last reset.
    pub fn peak_in_flight(&self) -> u64 {
        self.peak_in_flight.load(Ordering::Relaxed)
    }
}
