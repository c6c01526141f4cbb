//! Which version of a media's bytes the mount serves and the kernel caches: the one writer of
//! `content_version` (what a read of the node would be served) and `kernel_version` (what the
//! kernel's page cache may hold of it, 0 for nothing).
//!
//! The hard cases:
//! - A GET moves the content version on only when the bytes differ from what was served before
//!   (the cached body, or the fingerprint of an evicted one); with nothing to compare, only
//!   when the kernel may cache an older version.
//! - The kernel keeps its page cache at an open only when the version it caches is the current
//!   one and the opener can serve that same version for whatever the kernel evicted; else the
//!   kernel's cache is dropped, and what it caches next is what is served next.
//! - Of a directory the kernel caches the whole listing (FOPEN_CACHE_DIR) only of a pass that
//!   handed out exactly its children; an open keeps it while the directory is unchanged and the
//!   attributes that came with it are within the TTL.

use std::time::{Duration, Instant};

use super::{Ino, Namespace, Node, StoredHeaders};
use crate::api::Media;
use crate::fs::error::FsError;

impl Namespace {
    /// A GET of `ino` brought `m`: the bytes are confirmed now, the headers the server holds
    /// are known, and the content version moves on when `changed` says the bytes differ from
    /// what was served (given the node). Unless `written` (writes newer than the server's
    /// bytes wait), the times learn the server's date. Returns the content version.
    pub(crate) fn body_seen(
        &mut self,
        ino: Ino,
        m: &Media,
        written: bool,
        changed: impl FnOnce(&Node) -> bool,
    ) -> Result<u64, FsError> {
        self.local_change(ino);
        let v = self.next_version();
        let n = self.node_mut(ino).ok_or(FsError::NotFound)?;
        let changed = changed(n);
        if changed {
            n.content_version = v;
        }
        n.body_checked_at = Some(Instant::now());
        n.stored = Some(Box::new(StoredHeaders::of(m)));
        let version = n.content_version;
        if !written {
            self.downloaded(ino, m.last_modified, changed);
        }
        Ok(version)
    }

    /// The kernel was handed bytes of `ino` of `version` while they came in (0: of a download
    /// that failed, which belong to no version).
    pub(crate) fn kernel_caches(&mut self, ino: Ino, version: u64) {
        if let Some(n) = self.node_mut(ino) {
            n.kernel_version = version;
        }
    }

    /// A handle served `ino`'s current version from a whole body: the kernel caches it.
    pub(crate) fn kernel_caches_current(&mut self, ino: Ino) {
        if let Some(n) = self.node_mut(ino).filter(|n| !n.removed) {
            n.kernel_version = n.content_version;
        }
    }

    /// An open of `ino`: whether the kernel keeps its page cache, told by what the opener can
    /// serve of the version the kernel caches (`body`, given the node; `None`: nothing). A
    /// `dirty` file's pages are the write buffer's, never kept. When the cache is not kept the
    /// kernel drops it. Returns what the opener serves of the kept version.
    pub(crate) fn open_keeps_kernel_cache<T>(
        &mut self,
        ino: Ino,
        dirty: bool,
        body: impl FnOnce(&Node) -> Option<T>,
    ) -> Option<T> {
        let n = self.node_mut(ino)?;
        let current = !dirty && n.kernel_version != 0 && n.kernel_version == n.content_version;
        let kept = current.then(|| body(n)).flatten();
        if kept.is_none() {
            n.kernel_version = 0;
        }
        kept
    }

    /// An open of directory `ino`: whether the kernel keeps the listing it caches (the
    /// account's listing is `fresh`, the directory unchanged since, and the entries handed out
    /// within `ttl`); if not, the kernel drops it.
    pub(crate) fn open_keeps_kernel_dir(&mut self, ino: Ino, fresh: bool, ttl: Duration) -> bool {
        let version = self.node(ino).map(|n| n.content_version);
        let keep = fresh
            && self
                .kernel_dirs
                .get(&ino)
                .is_some_and(|(v, at)| Some(*v) == version && at.elapsed() < ttl);
        if !keep {
            self.kernel_dirs.remove(&ino);
        }
        keep
    }

    /// The kernel now caches the whole listing of directory `ino` as it is, its first entries
    /// handed out at `first`.
    pub(crate) fn kernel_caches_dir(&mut self, ino: Ino, first: Instant) {
        if let Some(version) = self.live(ino).map(|n| n.content_version) {
            self.kernel_dirs.insert(ino, (version, first));
        }
    }
}
