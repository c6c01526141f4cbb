//! Directory streaming: `readdir` hands out the paged listing as it arrives.
//!
//! The hard cases:
//! - A reader of a large directory gets its first entries after one page: each page is applied
//!   as it arrives, and the listing hands out what it has, fetching the next page when the
//!   reader wants more or, once the reader has come back for more than its first reply, right
//!   after answering it (`readdir_ahead`), so the next page is on its way while the kernel hands
//!   out the current one.
//! - Offsets index into the entries handed out so far; an entry that left the directory
//!   meanwhile is skipped, never renumbered.
//! - A walk's log of the nodes it saw lets a listing look only at what each page brought.
//! - The kernel may cache a whole listing (FOPEN_CACHE_DIR): a directory open keeps that cache
//!   (FOPEN_KEEP_CACHE) only when the listing is fresh, the directory has not changed since the
//!   kernel received all of it, and the attributes that came with it are within the TTL. A pass
//!   during which a name changed in place (a file shown beside a directory of its name, or
//!   back) is not such a listing: it may have handed out the old name.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::error::FsError;
use super::namespace::{Ino, InoSet, Namespace};
use super::types::{DirEntry, Opened};
use super::MediaFs;

/// An open directory: the entries handed out so far (offsets index into them).
pub(super) struct DirHandle {
    pub(super) ino: Ino,
    /// Inodes of the entries, "." and ".." first; names and attributes are read when handed out
    /// (an entry that left the directory meanwhile is skipped).
    pub(super) entries: Vec<Ino>,
    pub(super) emitted: InoSet,
    /// The walk this listing follows (None: served from a complete listing, or not started).
    pub(super) walk: Option<u64>,
    /// How much of that walk's log of seen nodes the listing has looked at (None: nothing yet;
    /// the first look goes through every child of the directory).
    pub(super) seen_pos: Option<usize>,
    /// Replies given (a reader that came back for a second is reading the whole listing).
    pub(super) replies: usize,
    /// How far the entries handed out go (None: the reader skipped some).
    pub(super) next_offset: Option<usize>,
    /// When the first entries went out.
    pub(super) first_reply: Option<Instant>,
    /// The namespace's count of names changed in place when the listing was opened: an entry
    /// handed out under a name it no longer has makes the pass unfit for the kernel's cache.
    pub(super) renames_at_open: u64,
    pub(super) eof: bool,
}

/// What a listing waits for before looking again.
enum Wait {
    /// One more page of walk `id` (which had `pages`).
    Next(u64, usize),
    /// A new walk, other than `old`, with at least one page.
    New(Option<u64>),
    /// Nothing: look again.
    Again,
}

impl MediaFs {
    /// Open a directory. `keep_cache` says that the listing the kernel cached (FOPEN_CACHE_DIR)
    /// is current: the listing is fresh, the directory has not changed since the kernel
    /// received all of it, and the attributes that came with it are within the TTL. Then a
    /// warm `ls -l` costs an open and a release, and nothing else reaches us.
    pub fn opendir(&self, ino: Ino) -> Result<Opened, FsError> {
        let (parent, keep_cache, renames_at_open) = {
            let mut ns = self.ns.lock();
            let parent = ns.live_dir(ino)?.parent();
            let fresh = self.listing_fresh(&ns);
            let keep = ns.open_keeps_kernel_dir(ino, fresh, self.opts.metadata_ttl);
            ns.open_ref(ino);
            ns.listing_opened(ino, Instant::now());
            (parent, keep, ns.renamed_in_place())
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let dh = DirHandle {
            ino,
            entries: vec![ino, parent],
            emitted: InoSet::default(),
            seen_pos: None,
            replies: 0,
            walk: None,
            eof: false,
            next_offset: Some(0),
            first_reply: None,
            renames_at_open,
        };
        self.dirs.lock().insert(fh, Arc::new(Mutex::new(dh)));
        Ok(Opened {
            fh,
            keep_cache,
            no_flush: true,
            direct_io: false,
        })
    }

    /// Hand entries from `offset` on to `fill` until it returns true (its buffer is full).
    /// On a cold cache this returns after the first page that brings entries of this
    /// directory, and fetches further pages as the reader asks for more. With `plus`
    /// (readdirplus) the kernel keeps a reference to each entry handed out but `.` and `..`,
    /// as after a lookup.
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
        mut fill: impl FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<(), FsError> {
        let dh = self
            .dirs
            .lock()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)?;
        let mut offset = offset as usize;
        let mut handed = 0usize;
        {
            let mut d = dh.lock();
            // The kernel may ask again from an earlier entry (what did not fit the reader's
            // buffer); a call past what was handed out is a seek, and the kernel does not
            // cache such a pass.
            if d.next_offset.is_some_and(|n| offset > n) {
                d.next_offset = None;
            }
            d.first_reply.get_or_insert_with(Instant::now);
        }
        loop {
            {
                let sizes = self.buffer_sizes();
                let mut d = dh.lock();
                let mut ns = self.ns.lock();
                while offset < d.entries.len() {
                    let ino = d.entries[offset];
                    let name = match (offset, ns.node(ino)) {
                        (0, _) => ".",
                        (1, _) => "..",
                        (_, Some(n)) if !n.removed() && n.parent() == d.ino => n.name(),
                        _ => {
                            offset += 1;
                            continue;
                        }
                    };
                    let Some(attr) = ns.attr(ino, sizes.get(&ino).copied()) else {
                        offset += 1;
                        continue;
                    };
                    let entry = DirEntry {
                        ino,
                        kind: attr.kind,
                        name,
                        offset: offset as u64 + 1,
                        attr,
                    };
                    if fill(&entry) {
                        d.replies += 1;
                        d.next_offset = d.next_offset.map(|n| n.max(offset));
                        return Ok(());
                    }
                    if plus && offset >= 2 {
                        ns.kernel_ref(ino);
                    }
                    offset += 1;
                    if offset > 2 {
                        handed += 1; // "." and ".." alone are not worth a reply
                    }
                }
                if d.eof || handed > 0 {
                    d.replies += 1;
                    d.next_offset = d.next_offset.map(|n| n.max(offset));
                    if d.eof && handed == 0 && offset >= 2 {
                        // The end of a pass: the kernel now holds the whole listing if the
                        // pass went through in order and handed out exactly the children.
                        Self::kernel_got_listing(&mut ns, &d);
                    }
                    return Ok(());
                }
            }
            self.more_entries(&dh)?;
        }
    }

    /// Record that the kernel cached the whole listing of `d`'s directory, when it did.
    pub(super) fn kernel_got_listing(ns: &mut Namespace, d: &DirHandle) {
        let (Some(_), Some(first)) = (d.next_offset, d.first_reply) else {
            return;
        };
        let Some(dir) = ns.live(d.ino) else {
            return;
        };
        let exact = ns.renamed_in_place() == d.renames_at_open
            && d.emitted.len() == dir.children().len()
            && dir.children().values().all(|c| d.emitted.contains(c));
        if exact {
            ns.kernel_caches_dir(d.ino, first);
        }
    }

    /// Add entries to a directory listing: everything when the cache is complete and fresh,
    /// else what the walk it follows has confirmed so far, fetching one more page if it has
    /// none to give.
    pub(super) fn more_entries(&self, dh: &Mutex<DirHandle>) -> Result<(), FsError> {
        loop {
            let pinned = self.pinned();
            match self.take_entries(dh, &pinned) {
                None => return Ok(()),
                Some(wait) => self.wait_for(dh, wait)?,
            }
        }
    }

    /// Add what the cache has for the listing; `None` when it got entries (or its end), else
    /// what to wait for before looking again.
    fn take_entries(&self, dh: &Mutex<DirHandle>, pinned: &HashSet<Ino>) -> Option<Wait> {
        let mut d = dh.lock();
        let ns = self.ns.lock();
        let Some(dir) = ns.live(d.ino) else {
            d.eof = true;
            return None;
        };
        let children = &dir.children();
        let push = |d: &mut DirHandle, c: Ino| {
            if d.emitted.insert(c) {
                d.entries.push(c);
            }
        };
        if d.walk.is_none() && self.listing_fresh(&ns) {
            for c in children.values() {
                push(&mut d, *c);
            }
            d.eof = true;
            return None;
        }
        match ns.walk() {
            Some(w)
                if d.walk == Some(w.id())
                    || (d.walk.is_none() && self.continuable(w) && self.walk_fresh(w)) =>
            {
                d.walk = Some(w.id());
                let before = d.entries.len();
                match d.seen_pos {
                    // After the first look, only what the walk saw since matters (local
                    // changes made meanwhile are taken at the end).
                    Some(pos) if !w.done() => {
                        for &c in w.seen().get(pos..).unwrap_or_default() {
                            let here = ns.live(c).is_some_and(|n| n.parent() == d.ino);
                            if here && !d.emitted.contains(&c) {
                                push(&mut d, c);
                            }
                        }
                    }
                    _ => {
                        for c in children.values() {
                            if !d.emitted.contains(c) && (w.done() || ns.confirmed(*c, w, pinned)) {
                                push(&mut d, *c);
                            }
                        }
                    }
                }
                d.seen_pos = Some(w.seen().len());
                if w.done() {
                    d.eof = true;
                    return None;
                }
                if d.entries.len() > before {
                    return None;
                }
                Some(Wait::Next(w.id(), w.pages()))
            }
            // Our walk was abandoned or replaced: join the current one if we can.
            _ if d.walk.is_some() => {
                d.walk = None;
                d.seen_pos = None;
                Some(Wait::Again)
            }
            // None can be continued: start one.
            other => Some(Wait::New(other.map(|w| w.id()))),
        }
    }

    /// Wait for what [`MediaFs::take_entries`] asked for: a page of the walk the listing
    /// follows, or a new walk to follow.
    fn wait_for(&self, dh: &Mutex<DirHandle>, wait: Wait) -> Result<(), FsError> {
        match wait {
            Wait::Again => {}
            Wait::Next(id, pages) => {
                self.walk_until(Some(id), |ns| ns.walk_moved_past(id, pages))?
            }
            Wait::New(old) => {
                self.walk_until(None, |ns| {
                    ns.walk()
                        .is_some_and(|w| Some(w.id()) != old && w.pages() > 0)
                })?;
                // Follow the walk we waited for, even if it is already complete.
                let mut d = dh.lock();
                let ns = self.ns.lock();
                if let Some(w) = ns.walk() {
                    if Some(w.id()) != old {
                        d.walk = Some(w.id());
                        d.seen_pos = None;
                    }
                }
            }
        }
        Ok(())
    }

    /// Called after a reply to a listing: when its reader has come back at least once (it reads
    /// the whole listing, like `ls`) and the walk it follows has more pages, fetch the next page
    /// now, while the kernel hands out what it has. The pages stay ceil(N/1000) in all (none
    /// after the last); a reader that stops after its first reply (`ls -f | head`) costs none.
    pub fn readdir_ahead(&self, fh: u64) {
        let Some(dh) = self.dirs.lock().get(&fh).cloned() else {
            return;
        };
        let (id, pages) = {
            let d = dh.lock();
            if d.replies < 2 || d.eof {
                return;
            }
            let ns = self.ns.lock();
            match (d.walk, ns.walk()) {
                (Some(id), Some(w)) if w.id() == id && self.continuable(w) => (id, w.pages()),
                _ => return,
            }
        };
        // An error is logged; the reader meets it (or a fresh walk) on its next call.
        let _ = self.walk_until(Some(id), |ns| ns.walk_moved_past(id, pages));
    }

    /// Close a directory listing.
    pub fn releasedir(&self, fh: u64) {
        let dh = self.dirs.lock().remove(&fh);
        if let Some(dh) = dh {
            let ino = dh.lock().ino;
            let mut ns = self.ns.lock();
            ns.close_ref(ino);
            ns.listing_closed(ino);
        }
    }
}
