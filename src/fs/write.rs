//! Writes, closes and syncs: the operations over the write buffers of [`super::buffer`].
//!
//! The hard cases:
//! - One buffer per inode, shared by every handle that writes it; it is loaded lazily (a write
//!   that needs the old bytes downloads them first, through the data cache); `O_TRUNC`, or an
//!   empty file, needs no download.
//! - Which close uploads: FUSE does not say which close is the last. A close leaves the upload
//!   to a later one when that one is certain: the process that opened the file still holds
//!   another descriptor of it open for writing (the shell's own copy in `echo x > f`, a loop
//!   redirected to a file, a program that forked); a read-only one never uploads, so it does
//!   not count. Otherwise the close uploads and returns the upload's result.
//! - A release uploads what is still dirty (writes through `mmap` come after the close), but
//!   not bytes whose close already failed: they are in the recovery folder. That holds for
//!   every release, not only the last: the release of a failed close comes at a time of the
//!   kernel's choosing, and a retry then would upload, unseen, bytes the program was told failed.

use std::sync::Arc;

use bytes::Bytes;

use super::error::FsError;
use super::namespace::{Ino, Kind};
use super::write_buffer::{too_large, UploadCause, WriteBuf, WriteState};
use super::{process, MediaFs};
use crate::api::ApiError;

impl MediaFs {
    /// The current bytes of a file, to load its write buffer with (a download through the data
    /// cache; none for a file never uploaded or empty, or one gone from the server meanwhile).
    pub(super) fn file_bytes(&self, ino: Ino) -> Result<Bytes, FsError> {
        if let Some(bytes) = self.staged_bytes(ino) {
            return bytes;
        }
        let (path, version, remote, size) = {
            let ns = self.ns.lock();
            let n = ns.node(ino).ok_or(FsError::NotFound)?;
            (
                n.path().to_string(),
                n.content_version(),
                n.remote(),
                n.size(),
            )
        };
        if !remote || size == 0 {
            return Ok(Bytes::new());
        }
        match self.download(&path, |v| v == version) {
            Ok(m) => Ok(m.body),
            // Gone from the server meanwhile: the writer starts from an empty file.
            Err(FsError::Api {
                source: ApiError::NotFound,
                ..
            }) => Ok(Bytes::new()),
            Err(e) => Err(e),
        }
    }

    /// The inode's write buffer, made if needed, with one more handle on it.
    pub(super) fn acquire_buffer(&self, ino: Ino, trunc: bool) -> Result<Arc<WriteBuf>, FsError> {
        let buf = self
            .writes
            .lock()
            .entry(ino)
            .or_insert_with(|| Arc::new(WriteBuf::default()))
            .clone();
        {
            let mut st = buf.state.lock();
            if trunc {
                st.truncate(0)?; // frees, never fails
            }
            st.handles += 1;
            if !trunc && !st.loaded && st.journal_source().is_none() {
                let ns = self.ns.lock();
                if ns.node(ino).is_some_and(|n| n.size() == 0 || !n.remote()) {
                    st.loaded = true;
                }
            }
        }
        if trunc {
            self.touch_mtime(ino);
        }
        Ok(buf)
    }

    /// One handle less on a write buffer; the last one takes it out of the table, unless a
    /// staged version of it waits for its upload. Returns whether the buffer left the table.
    pub(super) fn release_buffer(&self, ino: Ino, buf: &Arc<WriteBuf>) -> bool {
        {
            let mut st = buf.state.lock();
            st.handles = st.handles.saturating_sub(1);
        }
        if self.writes_back() {
            self.back_to_staged(ino, buf);
            unload(buf);
        }
        self.drop_idle_buffer(ino, buf)
    }

    /// After an upload: take `buf` out of the table if it is clean and idle. A buffer changed
    /// meanwhile (a truncate or header change of a staged, closed file) stays to be staged.
    pub(super) fn drop_clean_buffer(&self, ino: Ino, buf: &Arc<WriteBuf>) {
        if !buf.state.lock().dirty {
            self.drop_idle_buffer(ino, buf);
        }
    }

    /// Take `buf` out of the table if no handle has it and no staged version of it waits for
    /// its upload. Whether it left the table.
    pub(super) fn drop_idle_buffer(&self, ino: Ino, buf: &Arc<WriteBuf>) -> bool {
        let mut map = self.writes.lock();
        let st = buf.state.lock();
        let idle = st.handles == 0 && st.staged_generation().is_none();
        if idle && map.get(&ino).is_some_and(|b| Arc::ptr_eq(b, buf)) {
            map.remove(&ino);
            return true;
        }
        false
    }

    /// Write `data` at `offset` (at the end for O_APPEND handles).
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        self.check_ro()?;
        let h = self.handles.get(fh)?;
        let buf = h.buf.clone().ok_or(FsError::BadHandle)?;
        let limit = self.opts.max_size;
        if !h.append && offset.saturating_add(data.len() as u64) > limit {
            let end = offset.saturating_add(data.len() as u64);
            buf.state.lock().oversize = Some(end);
            return Err(too_large(&self.path_of(h.ino), end, limit));
        }
        let written = buf.loaded(
            || self.file_bytes(h.ino),
            |st| {
                let at = if h.append {
                    st.data.len() as u64
                } else {
                    offset
                };
                let end = at.saturating_add(data.len() as u64);
                if end > limit {
                    st.oversize = Some(end);
                    return Err(end);
                }
                Ok(st.write_at(at, data))
            },
        )?;
        match written {
            Ok(n) => {
                let n = n?;
                self.touch_mtime(h.ino);
                Ok(n as u32)
            }
            Err(end) => Err(too_large(&self.path_of(h.ino), end, limit)),
        }
    }

    /// Called on every close of a descriptor (FUSE FLUSH): upload if the handle's buffer
    /// changed, unless a close that will upload is sure to come: the process that opened the
    /// handle still runs and holds another writable descriptor of the file. So the shell's closes of a
    /// redirected file (`echo x > f`, a loop of commands, a writer that forks) upload once, at
    /// the last of them, and no empty or half-written media appears on the way; and a close that
    /// returns 0 with no such descriptor left means the server holds the bytes.
    pub fn flush(&self, fh: u64) -> Result<(), FsError> {
        let h = self.handles.get(fh)?;
        let Some(buf) = &h.buf else {
            return Ok(());
        };
        if let Some(opener) = h.opener {
            if buf.state.lock().wants_upload(UploadCause::Sync) && self.held_by(opener, h.ino) {
                log::debug!(
                    "{:?}: closed while process {opener}, its opener, holds it open: its last \
                     close uploads",
                    self.path_of(h.ino)
                );
                return Ok(());
            }
        }
        // With --writeback, the bytes durable in the journal are enough for a close.
        if self.stage(h.ino, buf) {
            return Ok(());
        }
        self.upload(h.ino, buf, UploadCause::Sync)
    }

    /// Whether process `pid` holds a descriptor of the file `ino` open for writing (when that
    /// can be told): a descriptor on this mount's device and the kernel's inode `ino`, whatever
    /// name it was opened by. Only a writable descriptor's close uploads.
    pub(super) fn held_by(&self, pid: u32, ino: Ino) -> bool {
        self.mount_device()
            .is_some_and(|device| process::holds_for_writing(pid, process::FileId { device, ino }))
    }

    /// `fsync`: upload whatever is dirty, now.
    /// A read-only descriptor syncs a file a close staged (`sync FILE` opens it read-only).
    pub fn fsync(&self, fh: u64) -> Result<(), FsError> {
        let h = self.handles.get(fh)?;
        match &h.buf {
            Some(buf) => self.upload(h.ino, buf, UploadCause::Sync),
            None => self.upload_if_staged(h.ino),
        }
    }

    /// `fsync` of a directory (`sync DIR`): upload every file under it that holds changes the
    /// server does not have (written and not uploaded yet, or staged by write-back), now. The
    /// first failure is returned; each is said in the log with its name.
    pub fn fsyncdir(&self, dir: Ino) -> Result<(), FsError> {
        let prefix = match self.ns.lock().node(dir).map(|n| n.path().to_string()) {
            Some(p) if !p.is_empty() => format!("{p}/"),
            _ => String::new(),
        };
        let deleted = self.send_deletes_under(&prefix);
        deleted.and(self.upload_under(dir, |_| true, "sync"))
    }

    /// Upload now the write buffers of the files under `dir` that `which` picks, and let go of
    /// the ones then clean and idle. Each failure is said in the log (`asker` says who asked);
    /// the first is returned.
    pub(super) fn upload_under(
        &self,
        dir: Ino,
        which: impl Fn(&WriteState) -> bool,
        asker: &str,
    ) -> Result<(), FsError> {
        let under: std::collections::HashSet<Ino> =
            self.ns.lock().files_under(dir).into_iter().collect();
        let mut first = Ok(());
        for (ino, buf) in self.write_buffers() {
            if !under.contains(&ino) || !which(&buf.state.lock()) {
                continue;
            }
            match self.upload(ino, &buf, UploadCause::Sync) {
                Ok(()) => self.drop_clean_buffer(ino, &buf),
                Err(e) => {
                    log::error!("{asker}: {:?} is not uploaded: {e}", self.path_of(ino));
                    first = first.and(Err(e));
                }
            }
        }
        first
    }

    /// The release of a handle: upload if still dirty, unless those very bytes already failed
    /// at a close, and are in the recovery directory; the buffer goes with its last handle.
    pub fn release(&self, fh: u64) -> Result<(), FsError> {
        let Some(h) = self.handles.remove(fh) else {
            return Err(FsError::BadHandle);
        };
        let mut result = Ok(());
        if let Some(buf) = &h.buf {
            result = self.upload(h.ino, buf, UploadCause::Release);
            if self.release_buffer(h.ino, buf) {
                // A new file whose upload failed was never on the server: it disappears.
                let mut ns = self.ns.lock();
                if ns
                    .live(h.ino)
                    .is_some_and(|n| !n.remote() && n.kind() == Kind::File)
                {
                    ns.detach(h.ino);
                }
            }
        }
        self.ns.lock().close_ref(h.ino);
        result
    }

    /// Upload every dirty buffer (before unmounting); what cannot be uploaded is in the recovery
    /// directory.
    pub fn flush_all(&self) -> Result<(), FsError> {
        if let Some(wb) = &self.writeback {
            return match wb.first_drain() {
                true => self.drain(),
                false => Ok(()),
            };
        }
        let bufs = self.write_buffers();
        let mut first = Ok(());
        for (ino, buf) in bufs {
            if let Err(e) = self.upload(ino, &buf, UploadCause::Sync) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

/// Staged bytes wait for their upload on disk, not in memory: a buffer no handle has open lets
/// go of them, unless an upload of it is under way (which holds them; the uploader lets go
/// after its turn).
pub(super) fn unload(buf: &WriteBuf) {
    if let Some(_idle) = buf.upload.try_lock() {
        buf.state.lock().unload();
    }
}
