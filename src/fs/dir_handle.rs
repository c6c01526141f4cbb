//! An open directory: the entries handed out so far, and how the listing it serves goes.
//!
//! The hard cases:
//! - Offsets index into the entries handed out so far; an entry that left the directory
//!   meanwhile is skipped by the reader, never renumbered, and no entry is added twice.
//! - A listing that follows a walk of the server's pages remembers how much of the walk's log
//!   of seen nodes it has looked at, so each page costs only what it brought.
//! - The kernel holds the whole listing (FOPEN_CACHE_DIR) only after a pass that went through
//!   in order, from offset 0 with no seek, and handed out exactly the directory's children,
//!   with no name changed in place meanwhile ([`DirHandle::kernel_got_listing`]).

use std::time::Instant;

use super::namespace::{Ino, InoSet, Namespace};

pub(super) struct DirHandle {
    ino: Ino,
    /// Inodes of the entries, "." and ".." first; names and attributes are read when handed out.
    entries: Vec<Ino>,
    emitted: InoSet,
    /// The walk this listing follows (None: served from a complete listing, or not started).
    walk: Option<u64>,
    /// How much of that walk's log of seen nodes the listing has looked at (None: nothing yet;
    /// the first look goes through every child of the directory).
    seen_pos: Option<usize>,
    /// Replies given (a reader that came back for a second is reading the whole listing).
    replies: usize,
    /// How far the entries handed out go (None: the reader skipped some).
    next_offset: Option<usize>,
    /// When the first entries went out.
    first_reply: Option<Instant>,
    /// The namespace's count of names changed in place when the listing was opened: an entry
    /// handed out under a name it no longer has makes the pass unfit for the kernel's cache.
    renames_at_open: u64,
    eof: bool,
}

impl DirHandle {
    /// A listing of `ino` (whose parent is `parent`), opened when the namespace had counted
    /// `renames_at_open` names changed in place.
    pub(super) fn new(ino: Ino, parent: Ino, renames_at_open: u64) -> DirHandle {
        DirHandle {
            ino,
            entries: vec![ino, parent],
            emitted: InoSet::default(),
            walk: None,
            seen_pos: None,
            replies: 0,
            next_offset: Some(0),
            first_reply: None,
            renames_at_open,
            eof: false,
        }
    }

    /// The directory listed.
    pub(super) fn ino(&self) -> Ino {
        self.ino
    }

    /// The entry at `offset`, if there is one yet.
    pub(super) fn entry(&self, offset: usize) -> Option<Ino> {
        self.entries.get(offset).copied()
    }

    /// How many entries there are so far.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Add `child`, unless it was added already.
    pub(super) fn push(&mut self, child: Ino) {
        if self.emitted.insert(child) {
            self.entries.push(child);
        }
    }

    /// Whether `child` was added.
    pub(super) fn has(&self, child: Ino) -> bool {
        self.emitted.contains(&child)
    }

    /// A call of the reader from `offset`. The kernel may ask again from an earlier entry (what
    /// did not fit the reader's buffer); a call past what was handed out is a seek, and the
    /// kernel does not cache such a pass.
    pub(super) fn called_at(&mut self, offset: usize) {
        if self.next_offset.is_some_and(|n| offset > n) {
            self.next_offset = None;
        }
        self.first_reply.get_or_insert_with(Instant::now);
    }

    /// A reply went out, handing out entries up to `offset`.
    pub(super) fn replied(&mut self, offset: usize) {
        self.replies += 1;
        self.next_offset = self.next_offset.map(|n| n.max(offset));
    }

    /// Whether the reader came back after its first reply and the listing has more to come: it
    /// reads the whole listing, like `ls`, so the next page may be fetched ahead.
    pub(super) fn reads_on(&self) -> bool {
        self.replies >= 2 && !self.eof
    }

    /// Whether every entry is in.
    pub(super) fn at_end(&self) -> bool {
        self.eof
    }

    /// Every entry is in.
    pub(super) fn end(&mut self) {
        self.eof = true;
    }

    /// The walk this listing follows.
    pub(super) fn walk(&self) -> Option<u64> {
        self.walk
    }

    /// How much of its walk's log the listing has looked at (None: nothing yet).
    pub(super) fn seen_pos(&self) -> Option<usize> {
        self.seen_pos
    }

    /// Follow walk `id` from its start (None: follow none).
    pub(super) fn follow(&mut self, id: Option<u64>) {
        self.walk = id;
        self.seen_pos = None;
    }

    /// The listing follows walk `id` and has looked at `seen` entries of its log.
    pub(super) fn looked_at(&mut self, id: u64, seen: usize) {
        self.walk = Some(id);
        self.seen_pos = Some(seen);
    }

    /// Record in `ns` that the kernel cached the whole listing, when it did: the pass just
    /// ended went through in order and handed out exactly the directory's children, with no
    /// name changed in place since the open.
    pub(super) fn kernel_got_listing(&self, ns: &mut Namespace) {
        let (Some(_), Some(first)) = (self.next_offset, self.first_reply) else {
            return;
        };
        let Some(dir) = ns.live(self.ino) else {
            return;
        };
        let exact = ns.renamed_in_place() == self.renames_at_open
            && self.emitted.len() == dir.children().len()
            && dir.children().values().all(|c| self.emitted.contains(c));
        if exact {
            ns.kernel_caches_dir(self.ino, first);
        }
    }
}
