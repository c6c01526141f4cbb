//! Directory streaming: `readdir` hands out the paged listing as it arrives.
//!
//! The hard cases:
//! - A reader of a large directory gets its first entries after one page: each page is applied
//!   as it arrives, and the listing hands out what it has, fetching the next page when the
//!   reader wants more or, once the reader has come back for more than its first reply, right
//!   after answering it (`readdir_ahead`), so the next page is on its way while the kernel hands
//!   out the current one.
//! - Offsets index into the entries handed out so far (`dir_handle`); an entry that left the
//!   directory meanwhile is skipped, never renumbered.
//! - A walk's log of the nodes it saw lets a listing look only at what each page brought.
//! - The kernel may cache a whole listing (FOPEN_CACHE_DIR): a directory open keeps that cache
//!   (FOPEN_KEEP_CACHE) only when the listing is fresh, the directory has not changed since the
//!   kernel received all of it, and the attributes that came with it are within the TTL. A pass
//!   during which a name changed in place (a file shown beside a directory of its name, or
//!   back) is not such a listing: it may have handed out the old name.

use std::collections::HashSet;
use std::time::Instant;

use parking_lot::Mutex;

use super::dir_handle::DirHandle;
use super::error::FsError;
use super::namespace::Ino;
use super::types::{DirEntry, Opened};
use super::MediaFs;

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
        let fh = self
            .dirs
            .add(Mutex::new(DirHandle::new(ino, parent, renames_at_open)));
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
        let dh = self.dirs.get(fh)?;
        let mut offset = offset as usize;
        let mut handed = 0usize;
        dh.lock().called_at(offset);
        loop {
            {
                let sizes = self.buffer_sizes();
                let mut d = dh.lock();
                let mut ns = self.ns.lock();
                while let Some(ino) = d.entry(offset) {
                    let name = match (offset, ns.node(ino)) {
                        (0, _) => ".",
                        (1, _) => "..",
                        (_, Some(n)) if !n.removed() && n.parent() == d.ino() => n.name(),
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
                        d.replied(offset);
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
                if d.at_end() || handed > 0 {
                    d.replied(offset);
                    if d.at_end() && handed == 0 && offset >= 2 {
                        // The end of a pass: the kernel may now hold the whole listing.
                        d.kernel_got_listing(&mut ns);
                    }
                    return Ok(());
                }
            }
            self.more_entries(&dh)?;
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
        let Some(dir) = ns.live(d.ino()) else {
            d.end();
            return None;
        };
        let children = &dir.children();
        if d.walk().is_none() && self.listing_fresh(&ns) {
            for c in children.values() {
                d.push(*c);
            }
            d.end();
            return None;
        }
        match ns.walk() {
            Some(w)
                if d.walk() == Some(w.id())
                    || (d.walk().is_none() && self.continuable(w) && self.walk_fresh(w)) =>
            {
                let before = d.len();
                match d.seen_pos() {
                    // After the first look, only what the walk saw since matters (local
                    // changes made meanwhile are taken at the end).
                    Some(pos) if !w.done() => {
                        for &c in w.seen().get(pos..).unwrap_or_default() {
                            let here = ns.live(c).is_some_and(|n| n.parent() == d.ino());
                            if here {
                                d.push(c);
                            }
                        }
                    }
                    _ => {
                        for c in children.values() {
                            if !d.has(*c) && (w.done() || ns.confirmed(*c, w, pinned)) {
                                d.push(*c);
                            }
                        }
                    }
                }
                d.looked_at(w.id(), w.seen().len());
                if w.done() {
                    d.end();
                    return None;
                }
                if d.len() > before {
                    return None;
                }
                Some(Wait::Next(w.id(), w.pages()))
            }
            // Our walk was abandoned or replaced: join the current one if we can.
            _ if d.walk().is_some() => {
                d.follow(None);
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
                        d.follow(Some(w.id()));
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
        let Ok(dh) = self.dirs.get(fh) else {
            return;
        };
        let (id, pages) = {
            let d = dh.lock();
            if !d.reads_on() {
                return;
            }
            let ns = self.ns.lock();
            match (d.walk(), ns.walk()) {
                (Some(id), Some(w)) if w.id() == id && self.continuable(w) => (id, w.pages()),
                _ => return,
            }
        };
        // An error is logged; the reader meets it (or a fresh walk) on its next call.
        let _ = self.walk_until(Some(id), |ns| ns.walk_moved_past(id, pages));
    }

    /// Close a directory listing.
    pub fn releasedir(&self, fh: u64) {
        if let Some(dh) = self.dirs.remove(fh) {
            let ino = dh.lock().ino();
            let mut ns = self.ns.lock();
            ns.close_ref(ino);
            ns.listing_closed(ino);
        }
    }
}
