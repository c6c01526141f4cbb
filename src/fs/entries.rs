//! Making and removing names: create, mkdir, rmdir, unlink (and mknod, which is a create).
//!
//! The hard cases:
//! - A new file is visible at once and uploaded by its close (even empty); a directory made by
//!   `mkdir` exists for the life of the mount (the API has no directories).
//! - `rmdir` answers ENOTEMPTY only from a complete and fresh listing: media may have come or
//!   gone elsewhere.
//! - A directory emptied by our own `rm`, `mv` or `rmdir` of its last child stays until its own
//!   `rmdir`, so `rm -r` works.
//! - `rm` of a file someone still has open but never read downloads it first (one GET), so the
//!   reader keeps its bytes; writes to it after that go nowhere, as on any POSIX file system.

use std::ffi::OsStr;
use std::sync::Arc;

use super::error::FsError;
use super::handles::{Handle, HandleBody};
use super::namespace::{Attr, Ino, Kind, Namespace};
use super::types::{Caller, Opened};
use super::MediaFs;

impl MediaFs {
    /// Make a directory, owned by `caller`; it exists for the life of the mount, or while media
    /// live under it.
    pub fn mkdir(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        caller: Caller,
    ) -> Result<Attr, FsError> {
        self.check_ro()?;
        let name = self.component(name)?;
        let ino = {
            let mut ns = self.ns.lock();
            ns.live_dir(parent)?;
            if ns.child(parent, name).is_some() {
                return Err(FsError::Exists);
            }
            ns.add_local(parent, name, Kind::Dir, mode & !umask, caller.owner())
        };
        self.attr_of(ino)
    }

    /// Remove an empty directory (ENOTEMPTY only from a complete and fresh listing).
    pub fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        self.check_ro()?;
        let ino = self.child_or_lookup(parent, name)?;
        let check = |ns: &Namespace| -> Result<(), FsError> {
            let n = ns.live_dir(ino)?;
            if !n.children().is_empty() {
                return Err(FsError::NotEmpty);
            }
            Ok(())
        };
        match check(&self.ns.lock()) {
            // Only a fresh listing can say it is not empty: its media may be gone elsewhere.
            Ok(()) | Err(FsError::NotEmpty) => {}
            Err(e) => return Err(e),
        }
        // Media under it we have not seen yet would make it non-empty.
        self.ensure_complete()?;
        let mut ns = self.ns.lock();
        check(&ns)?;
        ns.detach(ino);
        // Its parent may now be empty: it stays, like one emptied by `rm` (so `rm -r` works).
        ns.keep_emptied(parent);
        Ok(())
    }

    pub(super) fn child_or_lookup(&self, parent: Ino, name: &OsStr) -> Result<Ino, FsError> {
        let s = self.component(name)?;
        if let Some(c) = self.ns.lock().named(parent, s) {
            return Ok(c);
        }
        Ok(self.lookup(parent, name)?.ino)
    }

    /// Create and open a new file for `caller`, who owns it. It is visible at once and uploaded
    /// (even empty) by the first flush after a write, or else by its last release.
    pub fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        caller: Caller,
    ) -> Result<(Attr, Opened), FsError> {
        self.check_ro()?;
        let name = self.component(name)?;
        let existing = {
            let mut ns = self.ns.lock();
            ns.live_dir(parent)?;
            match ns.child(parent, name) {
                Some(c) => Some(c),
                None => {
                    let ino = ns.add_local(parent, name, Kind::File, mode & !umask, caller.owner());
                    drop(ns);
                    let buf = self.acquire_buffer(ino, true)?;
                    let fh = self.add_handle(ino, flags, Some(buf), caller.pid, HandleBody::None);
                    let attr = self.attr_of(ino)?;
                    return Ok((
                        attr,
                        Opened {
                            fh,
                            keep_cache: false,
                            no_flush: false,
                            direct_io: flags & libc::O_ACCMODE == libc::O_WRONLY,
                        },
                    ));
                }
            }
        };
        match existing {
            Some(_) if flags & libc::O_EXCL != 0 => Err(FsError::Exists),
            Some(c) => {
                let opened = self.open(c, flags, caller.pid)?;
                Ok((self.attr_of(c)?, opened))
            }
            None => Err(FsError::NotFound),
        }
    }

    /// Give open readers of `ino` the bytes before the media goes away.
    pub(super) fn preload_readers(&self, ino: Ino) {
        let readers: Vec<Arc<Handle>> = self
            .handles
            .all()
            .into_iter()
            .filter(|h| h.ino == ino && h.reads_without_body())
            .collect();
        if readers.is_empty() {
            return;
        }
        for h in readers {
            if let Err(e) = self.body_for(&h) {
                log::warn!("could not keep the bytes of a removed file for its readers: {e}");
                return;
            }
        }
    }

    /// Remove a file: one DELETE, none for a file never uploaded. Handles still open keep
    /// reading the old bytes.
    pub fn unlink(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        self.check_ro()?;
        let _changing = self.fence.change_under(&self.ns, &[parent]);
        let ino = self.child_or_lookup(parent, name)?;
        // An upload under way (a background one, with write-back) ends first: what it stored
        // is then removed too.
        let buf = self.buffer_of(ino);
        let _uploading = buf.as_ref().map(|b| b.upload.lock());
        let (path, remote) = {
            let ns = self.ns.lock();
            let n = ns.live(ino).ok_or(FsError::NotFound)?;
            if n.kind() == Kind::Dir {
                return Err(FsError::IsDir);
            }
            (n.path().to_string(), n.remote())
        };
        self.preload_readers(ino);
        // With write-back, a file never uploaded has nothing on the server, and the deletion of
        // one that was is staged and sent in the background.
        let on_server = remote || !self.writes_back();
        if on_server && !self.delete_later(&path) {
            self.api
                .delete(&path)
                .map_err(|e| self.api_error("delete", &path, e))?;
        }
        self.removed_locally(ino, &path);
        Ok(())
    }

    /// Our own DELETE (or rename) took `ino` away from `path`.
    pub(super) fn removed_locally(&self, ino: Ino, path: &str) {
        self.buffer_unlinked(ino);
        {
            let mut ns = self.ns.lock();
            let parent = ns.node(ino).map(|n| n.parent());
            ns.detach(ino);
            ns.local_change_path(path);
            if let Some(p) = parent {
                ns.keep_emptied(p);
            }
        }
        self.forget_body(path);
    }

    /// `mknod`: a regular file is a create (uploaded, even empty, at once); the API stores only
    /// media, so any other kind is refused.
    pub fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        caller: Caller,
    ) -> Result<Attr, FsError> {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return Err(FsError::NotPermitted);
        }
        let (attr, opened) = self.create(parent, name, mode, umask, libc::O_WRONLY, caller)?;
        self.release(opened.fh)?;
        Ok(attr)
    }

    /// Symbolic links cannot be stored: the API stores only media.
    pub fn symlink(&self) -> Result<Attr, FsError> {
        Err(FsError::NotPermitted)
    }

    /// Hard links cannot be stored: the API stores only media.
    pub fn link(&self) -> Result<Attr, FsError> {
        Err(FsError::NotPermitted)
    }
}
