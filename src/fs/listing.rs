//! Listing walks and their freshness: the paged listing applied page by page as it arrives.
//!
//! The hard cases:
//! - A complete listing is reused for `metadata_ttl`. The mount's one page starts the first walk.
//! - Pages come one at a time (each token comes from the page before), so concurrent callers
//!   share one walk: one page is fetched at a time under the walk lock, and whoever needs more
//!   of it continues it.
//! - A walk paused between pages is continued by whoever needs more of it only while it started
//!   within the TTL (or during the call that continues it, which matters with a TTL of zero); an
//!   older one is replaced by a new walk, because its first pages show the store as it was then.
//! - A walk that sat idle too long is not continued at all: its continuation token may be stale.
//! - A hostile server (a repeated token, no end) must not walk forever: the listing guard of
//!   [`crate::api::ListingGuard`] ends it with an error.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::error::FsError;
use super::namespace::{Ino, Namespace, Walk};
use super::{namespace, MediaFs};

/// How long an unfinished walk may sit idle and still be continued (its tokens may go stale).
fn walk_idle_limit(ttl: Duration) -> Duration {
    ttl.max(Duration::from_secs(10))
}

impl MediaFs {
    /// Whether a walk started within the TTL (anyone may continue it).
    pub(super) fn walk_fresh(&self, w: &namespace::Walk) -> bool {
        fresh(Some(w.started()), self.opts.metadata_ttl)
    }

    pub(super) fn listing_fresh(&self, ns: &Namespace) -> bool {
        fresh(ns.complete_at(), self.opts.metadata_ttl)
    }

    /// Whether the account's listing fit in one page last time (then a list request is the
    /// cheapest way to revalidate anything).
    pub(super) fn small_account(&self) -> bool {
        self.ns.lock().complete_pages() == 1
    }

    /// Fetch listing pages (continuing the current walk when it is recent, else starting one)
    /// until `stop` holds. Concurrent callers share the pages: one is fetched at a time.
    pub(super) fn walk_until(
        &self,
        follow: Option<u64>,
        stop: impl Fn(&Namespace) -> bool,
    ) -> Result<(), FsError> {
        let began = Instant::now();
        loop {
            if stop(&self.ns.lock()) {
                return Ok(());
            }
            let _flight = self.walk_lock.lock();
            let (id, token) = {
                let mut ns = self.ns.lock();
                if stop(&ns) {
                    return Ok(());
                }
                match ns.walk() {
                    Some(w) if self.may_continue(w, follow, began) => {
                        (w.id(), w.next().map(str::to_string))
                    }
                    _ => (ns.start_walk(Instant::now()), None),
                }
            };
            let page = match self.api.list_page(token.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    self.ns.lock().abandon_walk(id);
                    return Err(self.api_error("listing the media", "", e));
                }
            };
            let pinned = self.pinned();
            let applied = self
                .ns
                .lock()
                .apply_page(id, &page, &pinned, Instant::now());
            for path in &applied.dropped {
                self.forget_body(path);
            }
            if let Some(e) = applied.failure {
                return Err(self.api_error("listing the media", "", e));
            }
        }
    }

    /// Whether walk `w` can be continued at all (see [`Walk::can_continue`]).
    pub(super) fn continuable(&self, w: &Walk) -> bool {
        w.can_continue(walk_idle_limit(self.opts.metadata_ttl))
    }

    /// Whether a caller that began at `began` (following walk `follow`, if any) may continue
    /// walk `w`: the reader that follows it, or anyone while it started within the TTL or
    /// during this call; one older than that is replaced by a new walk (its first pages show
    /// the store as it was then).
    fn may_continue(&self, w: &Walk, follow: Option<u64>, began: Instant) -> bool {
        self.continuable(w)
            && (follow == Some(w.id()) || w.started() >= began || self.walk_fresh(w))
    }

    /// Make sure the cache holds a complete listing that is fresh (or finished after this call
    /// began, which matters when the TTL is zero).
    pub(super) fn ensure_complete(&self) -> Result<(), FsError> {
        let t0 = Instant::now();
        self.walk_until(None, |ns| {
            self.listing_fresh(ns) || ns.complete_at().is_some_and(|c| c >= t0)
        })
    }

    /// Inodes with a write buffer (a listing must not remove them).
    pub(super) fn pinned(&self) -> HashSet<Ino> {
        self.writes.lock().keys().copied().collect()
    }
}

/// Whether `t` is within `ttl` of now.
pub(super) fn fresh(t: Option<Instant>, ttl: Duration) -> bool {
    t.is_some_and(|t| t.elapsed() < ttl)
}
