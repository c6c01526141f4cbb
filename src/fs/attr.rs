//! Attributes, lookup and revalidation: what `stat` shows, and when the server is asked again.
//!
//! The hard cases:
//! - What the server said of a name answers lookups and stats within the TTL, or while a
//!   listing of its directory is open (GNU `ls -l` stats each entry while it reads the
//!   directory), so one `ls -l` costs one listing walk whatever the TTL.
//! - Past that, only a listing can revalidate a known name without downloading it: on an account
//!   whose listing fits in one page that is one list request (which refreshes everything); on a
//!   larger account a known name is trusted until the next listing, and such attributes go to
//!   the kernel with a zero timeout, so that the kernel asks again after the next open's GET.
//! - A name that is not known is asked about with one GET (its body is kept for the read that
//!   usually follows). When that GET answers 404 on an account of several pages, the name may
//!   still be a directory the cache has not seen, so the listing walk is completed (stopping as
//!   soon as the name shows up as a directory).
//! - A file with a write buffer is the truth for this mount: its size is the buffer's.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::FsError;
use super::listing::fresh;
use super::namespace::{Attr, Ino, Kind, Namespace};
use super::types::SetAttr;
use super::write_buffer::{too_large, UploadCause, WriteBuf};
use super::{namespace, MediaFs};
use crate::api::ApiError;

impl MediaFs {
    /// How long the kernel may keep the attributes of `ino` just handed out: the TTL, or zero
    /// for a file answered from the cache past its TTL (a known name on a multi-page account,
    /// see `MediaFs::trusted`), so that the kernel asks again and its reads follow the size
    /// that the next open's GET learns.
    pub fn kernel_ttl(&self, ino: Ino) -> Duration {
        let stale = self
            .ns
            .lock()
            .node(ino)
            .is_some_and(|n| n.kind() == Kind::File && self.size_past_ttl(n));
        if stale {
            Duration::ZERO
        } else {
            self.opts.metadata_ttl
        }
    }

    /// Whether the size the cache holds for a remote name was last confirmed longer than the TTL
    /// ago (a multi-page account trusts it until the next listing; an open checks it).
    pub(super) fn size_past_ttl(&self, n: &namespace::Node) -> bool {
        n.remote() && !fresh(n.verified_at(), self.opts.metadata_ttl)
    }

    /// Sizes of the loaded write buffers (they override the sizes the namespace knows).
    pub(super) fn buffer_sizes(&self) -> HashMap<Ino, u64> {
        let bufs = self.write_buffers();
        bufs.into_iter()
            .filter_map(|(i, b)| {
                let st = b.state.lock();
                st.shown_size().map(|s| (i, s))
            })
            .collect()
    }

    /// Attributes of `ino`, with the size of its write buffer when it has a loaded one.
    pub(super) fn attr_of(&self, ino: Ino) -> Result<Attr, FsError> {
        let size = self.buffer_of(ino).and_then(|b| {
            let st = b.state.lock();
            st.shown_size()
        });
        self.ns.lock().attr(ino, size).ok_or(FsError::NotFound)
    }

    /// Look `name` up in directory `parent`.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr, FsError> {
        let name = match self.component(name) {
            Ok(n) => n,
            Err(FsError::InvalidName(_)) => return Err(FsError::NotFound),
            Err(e) => return Err(e),
        };
        // What does the cache say?
        let (path, stale_file) = {
            let ns = self.ns.lock();
            ns.live_dir(parent)?;
            let path = ns.join(parent, name).ok_or(FsError::NotFound)?;
            match ns.named(parent, name).and_then(|c| ns.node(c)) {
                Some(n) => {
                    if self.trusted(&ns, n) {
                        let ino = n.ino();
                        drop(ns);
                        return self.attr_of(ino);
                    }
                    // A file is asked for by its media name (it may be shown under another).
                    match n.kind() {
                        Kind::File => (n.path().to_string(), Some(n.ino())),
                        Kind::Dir => (path, None),
                    }
                }
                // A name created elsewhere shows up as soon as the TTL allows.
                None if self.listing_fresh(&ns) => return Err(FsError::NotFound),
                None => (path, None),
            }
        };
        if let Some(ino) = stale_file {
            if self.buffer_of(ino).is_some() {
                return self.attr_of(ino);
            }
        }
        // Ask the server; then the cache knows.
        self.revalidate(&path)?;
        let child = self.ns.lock().named(parent, name);
        match child {
            Some(c) => self.attr_of(c),
            None => Err(FsError::NotFound),
        }
    }

    /// Whether what the cache knows of a node answers a lookup or getattr without a request:
    /// what the server said of it is within the TTL, or came to a listing of its directory that
    /// is still open (so one `ls -l` costs one listing walk, even with a TTL of zero), and a
    /// directory while a listing of it or under it is open (`ls -l a/b` looks `a/b` up again
    /// for each entry it stats). Only a
    /// listing can revalidate a known name without downloading it, so that is done only when it
    /// is one request (a small account); on a larger account a known name is trusted until the
    /// next listing (an open still checks the bytes, see [`MediaFs::revalidate_body`]). A name
    /// never uploaded is local, hence known.
    pub(super) fn trusted(&self, ns: &Namespace, n: &namespace::Node) -> bool {
        let seen = match n.kind() {
            Kind::File => n.verified_at(),
            Kind::Dir => ns.complete_at(),
        };
        ns.complete_pages() != 1
            || (n.kind() == Kind::File && !n.remote())
            || fresh(seen, self.opts.metadata_ttl)
            || ns.shown_to_open_listing(n.parent(), seen)
            || (n.kind() == Kind::Dir && ns.on_the_way_to_open_listing(n.ino()))
    }

    /// Bring the cache's view of `path` up to date with the cheapest request that can (see the
    /// module comment): a list page on a small account, else a GET, and for a 404 the rest of
    /// the listing (to tell a missing name from a directory not seen yet).
    pub(super) fn revalidate(&self, path: &str) -> Result<(), FsError> {
        if self.small_account() {
            return self.ensure_complete();
        }
        match self.download(path, |_| false) {
            Ok(_) => Ok(()),
            Err(FsError::Api {
                source: ApiError::NotFound,
                ..
            }) => {
                let t0 = Instant::now();
                self.walk_until(None, |ns| {
                    self.listing_fresh(ns)
                        || ns.complete_at().is_some_and(|c| c >= t0)
                        || ns
                            .resolve(path)
                            .and_then(|i| ns.node(i))
                            .is_some_and(|n| n.kind() == Kind::Dir)
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The server says `path` does not exist: drop the file from the cache (unless it has a
    /// local life: open for writing, or never uploaded).
    pub(super) fn drop_missing_file(&self, path: &str) {
        let pinned = self.pinned();
        let moving = self.fence.dirs();
        let mut ns = self.ns.lock();
        if let Some(ino) = ns.resolve_file(path) {
            // A media of a directory being renamed is gone from its old name: the rename shows
            // it under the new one.
            let drop_it = ns
                .node(ino)
                .is_some_and(|n| n.kind() == Kind::File && n.remote() && !pinned.contains(&ino))
                && !moving.iter().any(|&d| ns.is_within(ino, d));
            if drop_it {
                ns.detach(ino);
            }
        }
        drop(ns);
        self.forget_body(path);
    }

    /// The kernel was handed `ino` in a reply (lookup, create, mkdir, mknod): call before the
    /// reply goes out. Removed nodes are freed once the kernel has forgotten them.
    pub fn entry_handed(&self, ino: Ino) {
        self.ns.lock().kernel_ref(ino);
    }

    /// The kernel dropped `count` references to `ino` (FORGET).
    pub fn forget(&self, ino: Ino, count: u64) {
        self.ns.lock().forget(ino, count);
    }

    /// How many nodes the namespace holds, removed ones still named by the kernel included.
    pub fn node_count(&self) -> usize {
        self.ns.lock().node_count()
    }

    /// Attributes of `ino` (revalidated like a lookup when stale). A removed file still has
    /// attributes (with no links) while a handle keeps it open.
    pub fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        let stale = {
            let ns = self.ns.lock();
            let n = ns.node(ino).ok_or(FsError::NotFound)?;
            if n.removed() && n.opens() == 0 {
                return Err(FsError::NotFound);
            }
            (n.kind() == Kind::File && !n.removed() && !self.trusted(&ns, n))
                .then(|| n.path().to_string())
        };
        if let Some(path) = stale {
            if self.buffer_of(ino).is_none() {
                self.revalidate(&path)?;
                // Gone from the server: an open file keeps its attributes (with no links), so
                // the kernel's check before a read of it does not fail the read.
                if self
                    .ns
                    .lock()
                    .node(ino)
                    .is_none_or(|n| n.removed() && n.opens() == 0)
                {
                    return Err(FsError::NotFound);
                }
            }
        }
        self.attr_of(ino)
    }

    /// `access(2)`: the node exists (permission is the kernel's or FUSE's business).
    pub fn access(&self, ino: Ino) -> Result<(), FsError> {
        self.ns
            .lock()
            .node(ino)
            .map(|_| ())
            .ok_or(FsError::NotFound)
    }

    /// chmod, chown, utimens, truncate.
    pub fn setattr(&self, ino: Ino, sa: SetAttr) -> Result<Attr, FsError> {
        let changes = sa.mode.is_some()
            || sa.uid.is_some()
            || sa.gid.is_some()
            || sa.size.is_some()
            || sa.atime.is_some()
            || sa.mtime.is_some();
        if !changes {
            return self.attr_of(ino);
        }
        self.check_ro()?;
        let (kind, path) = {
            let ns = self.ns.lock();
            let n = ns.node(ino).ok_or(FsError::NotFound)?;
            (n.kind(), n.path().to_string())
        };
        if let Some(size) = sa.size {
            if kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            if size > self.opts.max_size {
                return Err(too_large(&path, size, self.opts.max_size));
            }
            match self.buffer_of(ino) {
                Some(buf) => {
                    self.truncate_buffer(ino, &buf, size)?;
                    // A staged file no handle has open (write-back): staged again, or uploaded.
                    if buf.state.lock().handles == 0 && !self.stage(ino, &buf) {
                        if let Err(e) = self.upload(ino, &buf, UploadCause::Sync) {
                            // As after a failed close: back to the version staged before.
                            self.back_to_staged(ino, &buf);
                            return Err(e);
                        }
                    }
                }
                None => self.truncate_now(ino, size)?,
            }
        }
        self.ns.lock().set_attributes(ino, &sa)?;
        self.attr_of(ino)
    }

    pub(super) fn truncate_buffer(
        &self,
        ino: Ino,
        buf: &Arc<WriteBuf>,
        size: u64,
    ) -> Result<(), FsError> {
        if size == 0 {
            // Nothing of the old bytes is needed.
            buf.state.lock().truncate(0)?;
        } else {
            buf.loaded(|| self.file_bytes(ino), |st| st.truncate(size))??;
        }
        self.touch_mtime(ino);
        Ok(())
    }

    /// Truncate a file nobody has open: download if needed, upload at once. Like an open, it
    /// first checks bytes or a size older than the TTL.
    pub(super) fn truncate_now(&self, ino: Ino, size: u64) -> Result<(), FsError> {
        self.revalidate_body(ino)?;
        let unchanged = {
            let ns = self.ns.lock();
            ns.node(ino).is_some_and(|n| n.remote() && n.size() == size)
        };
        if unchanged {
            return Ok(());
        }
        let buf = self.acquire_buffer(ino, false)?;
        let result = self
            .truncate_buffer(ino, &buf, size)
            .and_then(|()| self.upload(ino, &buf, UploadCause::Sync));
        self.release_buffer(ino, &buf);
        result
    }

    /// A local write: the bytes are new now, whatever time a `touch` chose before.
    pub(super) fn touch_mtime(&self, ino: Ino) {
        self.ns.lock().written(ino);
    }
}
