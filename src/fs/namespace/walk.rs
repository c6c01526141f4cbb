//! The listing walk: a paged listing applied to the tree page by page as it arrives.
//!
//! The hard cases:
//! - When a walk completes, every file it did not see is gone, except files that changed
//!   locally after the walk started (an upload or a create racing with the listing must not be
//!   undone by a listing that started before it): each local change takes a new *epoch*, and a
//!   walk only removes or rewrites what is older than its start epoch.
//! - A name that is both a file and a prefix of other names: the directory keeps the name and
//!   the file is shown beside it (`collisions`), whatever order the pages bring them in.
//! - A server that would make the walk endless is stopped by the listing guard.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use super::{bad_media_name, Ino, Kind, Namespace, ROOT_INO};
use crate::api::{ApiError, ListPage, ListingGuard, MAX_LIST_PAGES};

/// A paged listing in progress (or just finished).
#[derive(Debug, Clone)]
pub(crate) struct Walk {
    pub(super) id: u64,
    pub(super) start_epoch: u64,
    /// When its first page was asked for: the age of what it shows.
    pub(super) started: Instant,
    pub(super) last_page: Instant,
    /// Token of the next page; `None` before the first page and after the last.
    pub(super) next: Option<String>,
    pub(super) done: bool,
    /// Counts the pages and ends a walk that a server would make endless.
    pub(super) guard: ListingGuard,
    /// Every node this walk saw, in the order it first saw them.
    pub(super) seen: Vec<Ino>,
}

impl Walk {
    /// Its id: a walk that replaced it has another.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// When its first page was asked for: the age of what it shows.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Token of the next page; `None` before the first page and after the last.
    pub(crate) fn next(&self) -> Option<&str> {
        self.next.as_deref()
    }

    /// Whether it has applied its last page.
    pub(crate) fn done(&self) -> bool {
        self.done
    }

    /// Every node it saw, in the order it first saw them.
    pub(crate) fn seen(&self) -> &[Ino] {
        &self.seen
    }

    /// Pages applied so far.
    pub(crate) fn pages(&self) -> usize {
        self.guard.pages()
    }

    /// Whether the walk can be continued at all: it has begun, has not finished, and has not sat
    /// idle for `idle` (its continuation token may be stale by then).
    pub(crate) fn can_continue(&self, idle: Duration) -> bool {
        !self.done && self.pages() > 0 && self.last_page.elapsed() < idle
    }
}

/// What applying a listing page did.
#[derive(Debug, Default)]
pub(crate) struct PageApplied {
    /// Paths of the files it removed (their cached bodies go too).
    pub dropped: Vec<String>,
    /// Why the walk was ended instead (a server that would make it endless).
    pub failure: Option<ApiError>,
}

impl Namespace {
    /// Directories along `segs`, made as needed (a file in the way is shown beside).
    fn dirs_for(&mut self, segs: &[&str], walk_id: u64) -> Ino {
        self.dirs_along(segs.iter().copied(), |ns, dir, _| {
            if walk_id != 0 {
                ns.seen_by_walk(dir, walk_id);
            }
        })
    }

    /// A media the server reported (listing item or GET): add it or update its size.
    /// `walk` is `(id, start_epoch)` for a listing, `None` for a GET (which is always current).
    /// Returns its inode, or `None` when the name cannot be a path.
    pub(crate) fn remote_file(
        &mut self,
        name: &str,
        size: u64,
        walk: Option<(u64, u64)>,
        now: Instant,
    ) -> Option<Ino> {
        if let Some(why) = bad_media_name(name) {
            self.warn_once(name, why);
            return None;
        }
        if !self.deleting.is_empty() && self.deleting.contains(name) {
            // Removed here; the server has not done the deletion yet.
            return self.resolve_file(name);
        }
        let (walk_id, start_epoch) = walk.unwrap_or((0, u64::MAX));
        if walk.is_some() {
            // A local change after this walk started is newer than what the page says.
            if let Some(&e) = self.recent_local.get(name) {
                if e > start_epoch {
                    if let Some(ino) = self.resolve_file(name) {
                        self.seen_by_walk(ino, walk_id);
                        return Some(ino);
                    }
                    return None;
                }
            }
        }
        let segs: Vec<&str> = name.split('/').collect();
        let (last, dirs) = segs.split_last()?;
        self.dating = Some(self.time_of_new(name, size, SystemTime::now()));
        let parent = self.dirs_for(dirs, walk_id);
        let existing = self.file_in(parent, last);
        let ino = match existing {
            Some(c) => c,
            None => self.add(parent, last, Kind::File),
        };
        self.dating = None;
        let v = self.next_version();
        let wall = SystemTime::now();
        if existing.is_none() {
            self.first_seen(ino, size, wall);
        }
        let n = self.nodes.get_mut(&ino)?;
        let changed = n.size != size && n.remote;
        let undated = n.uploaded_at.is_none();
        if changed {
            n.content_version = v;
        }
        n.size = size;
        n.remote = true;
        n.verified_at = Some(now);
        if changed {
            // Other bytes than the ones known.
            self.changed_remotely(ino, wall);
        } else if undated {
            // A file of ours the server now shows too: uploaded by now.
            n.uploaded_at = Some(wall);
            self.times_dirty = true;
        }
        if walk_id != 0 {
            self.seen_by_walk(ino, walk_id);
        }
        Some(ino)
    }

    /// Walk `walk_id` saw `ino`: mark it, and log it the first time (so that a directory
    /// listing following the walk looks only at what each page brought).
    fn seen_by_walk(&mut self, ino: Ino, walk_id: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            if n.seen_walk != walk_id {
                n.seen_walk = walk_id;
                if let Some(w) = self.walk.as_mut().filter(|w| w.id == walk_id) {
                    w.seen.push(ino);
                }
            }
        }
    }

    /// Whether the listing has moved past page `pages` of walk `id`: that walk was replaced (or
    /// dropped), has finished, or has applied another page since. A reader waiting for the
    /// next page of a walk waits for this.
    pub(crate) fn walk_moved_past(&self, id: u64, pages: usize) -> bool {
        match &self.walk {
            Some(w) => w.id != id || w.pages() != pages || w.done,
            None => true,
        }
    }

    /// A page of walk `id` could not be fetched: the walk is dropped (the next listing starts a
    /// new one), unless another has replaced it already.
    pub(crate) fn abandon_walk(&mut self, id: u64) {
        if self.walk.as_ref().is_some_and(|w| w.id == id) {
            self.walk = None;
        }
    }

    /// Start a new walk (replacing any unfinished one).
    pub(crate) fn start_walk(&mut self, now: Instant) -> u64 {
        let id = self.next_walk_id;
        self.next_walk_id += 1;
        self.walk = Some(Walk {
            id,
            start_epoch: self.epoch,
            started: now,
            last_page: now,
            next: None,
            done: false,
            guard: ListingGuard::new(MAX_LIST_PAGES),
            seen: Vec::new(),
        });
        id
    }

    /// Apply `page` of walk `id`: its media join the tree; the walk ends after its last page
    /// (removing what it did not see) or when the listing guard refuses it. A page of a walk
    /// that is no longer the current one changes nothing.
    pub(crate) fn apply_page(
        &mut self,
        id: u64,
        page: &ListPage,
        pinned: &HashSet<Ino>,
        now: Instant,
    ) -> PageApplied {
        let mut out = PageApplied::default();
        let start_epoch = match &self.walk {
            Some(w) if w.id == id => w.start_epoch,
            _ => return out,
        };
        for item in &page.items {
            self.remote_file(
                &item.name,
                item.content_length,
                Some((id, start_epoch)),
                now,
            );
        }
        let Some(w) = self.walk.as_mut() else {
            return out;
        };
        w.last_page = now;
        w.next = page.next.clone();
        match w.guard.page(page.next.as_deref()) {
            Ok(true) => {}
            Ok(false) => out.dropped.extend(self.finish_walk(pinned, now)),
            Err(e) => {
                self.walk = None;
                out.failure = Some(e);
            }
        }
        out
    }

    /// Whether `ino` belongs in a listing produced by `walk` (seen by it, or local).
    pub(crate) fn confirmed(&self, ino: Ino, walk: &Walk, pinned: &HashSet<Ino>) -> bool {
        match self.nodes.get(&ino) {
            Some(n) => {
                n.seen_walk == walk.id
                    || n.local_epoch > walk.start_epoch
                    || (n.kind == Kind::Dir && n.explicit)
                    || pinned.contains(&ino)
            }
            None => false,
        }
    }

    /// A walk saw its last page: everything it did not see and that did not change locally
    /// since it started is gone. Returns the paths of the files removed.
    pub(crate) fn finish_walk(&mut self, pinned: &HashSet<Ino>, now: Instant) -> Vec<String> {
        let Some(walk) = self.walk.as_mut() else {
            return Vec::new();
        };
        walk.done = true;
        let (id, start_epoch, pages) = (walk.id, walk.start_epoch, walk.pages());
        let stale: Vec<Ino> = self
            .nodes
            .values()
            .filter(|n| {
                !n.removed
                    && n.kind == Kind::File
                    && n.seen_walk != id
                    && n.local_epoch <= start_epoch
                    && !pinned.contains(&n.ino)
            })
            .map(|n| n.ino)
            .collect();
        let mut removed = Vec::new();
        for ino in stale {
            removed.extend(self.detach(ino));
        }
        loop {
            let empty: Vec<Ino> = self
                .nodes
                .values()
                .filter(|n| {
                    !n.removed
                        && n.kind == Kind::Dir
                        && n.ino != ROOT_INO
                        && !n.explicit
                        && n.children.is_empty()
                        && n.local_epoch <= start_epoch
                })
                .map(|n| n.ino)
                .collect();
            if empty.is_empty() {
                break;
            }
            for ino in empty {
                self.detach(ino);
            }
        }
        self.recent_local.retain(|_, e| *e > start_epoch);
        self.forget_aliases();
        self.forget_unseen();
        self.complete_at = Some(now);
        self.complete_pages = pages;
        removed
    }
}
