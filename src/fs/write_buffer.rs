//! Write buffers: what programs write goes to memory first, and is uploaded with one PUT.
//!
//! The API can only replace a whole media, so a file open for writing gets a local buffer that
//! holds the whole file: one per inode, shared by every handle that writes it (so `dup`'d fds,
//! several opens and an `O_TRUNC` sent apart from its open all see one state). Random writes,
//! appends, truncates and read-back work on that buffer.
//!
//! The state machine (the hard part): a buffer is *dirty* from its first change until a PUT of
//! exactly its current generation succeeds ([`WriteState::uploaded`]), and only that makes it
//! clean. A failed upload leaves it dirty, so every later fsync and close tries again and
//! returns what really happened, and the mount keeps showing the written bytes; its bytes are
//! kept in the recovery folder meanwhile (`saved`). [`WriteState::wants_upload`] says when an
//! upload has anything to send:
//! - nothing when the buffer is clean (a close that changed nothing costs nothing), not loaded,
//!   or removed (a removed file's writes go nowhere, as on any POSIX file system);
//! - at a release, not the bytes whose close already failed (they are kept), nor an
//!   incomplete file;
//! - a buffer made incomplete by a write over the size limit (`oversize`) is never uploaded:
//!   the upload answers EFBIG again, and `cat big > existing` keeps the old media.
//!
//! Which close asks for an upload is decided in `write` (`MediaFs::flush`).

use bytes::Bytes;
use parking_lot::Mutex;
use std::path::PathBuf;

use super::error::FsError;
use super::pages::{Filled, PageBuf};

/// A file's bytes in a write buffer. While it is written they are in a page buffer of its own
/// (recycled memory, grown in place); a body loaded from the cache, or the bytes of an upload,
/// are a shared [`Bytes`] instead, copied only if written again. So an upload hands the
/// buffer to the PUT and to the data cache without a copy.
#[derive(Debug, Default)]
pub(crate) struct WriteData {
    /// The bytes, when this buffer owns them.
    own: Option<PageBuf>,
    /// The bytes otherwise.
    shared: Bytes,
    len: usize,
}

impl WriteData {
    /// Bytes shared with others (the data cache), copied before a change.
    pub(crate) fn from_bytes(b: Bytes) -> WriteData {
        WriteData {
            own: None,
            len: b.len(),
            shared: b,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match &self.own {
            Some(b) => &b.as_slice()[..self.len],
            None => &self.shared[..self.len],
        }
    }

    /// The bytes as a `Bytes`, without a copy; the next change copies them.
    pub(crate) fn freeze(&mut self) -> Bytes {
        if let Some(buf) = self.own.take() {
            self.shared = Bytes::from_owner(Filled { buf, len: self.len });
        }
        self.shared.clone()
    }

    /// Own the bytes, with room for `cap`.
    fn own(&mut self, cap: usize) -> std::io::Result<&mut PageBuf> {
        if self.own.is_none() {
            let mut buf = PageBuf::new(cap.max(self.len))?;
            buf.as_mut_slice()[..self.len].copy_from_slice(&self.shared[..self.len]);
            self.shared = Bytes::new();
            self.own = Some(buf);
        }
        let buf = self
            .own
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no buffer"))?;
        buf.reserve(cap)?;
        Ok(buf)
    }

    /// Write `data` at `offset`; a gap is zero-filled.
    fn write_at(&mut self, offset: usize, data: &[u8]) -> std::io::Result<()> {
        let end = offset + data.len();
        let len = self.len;
        let buf = self.own(end)?.as_mut_slice();
        if offset > len {
            buf[len..offset].fill(0); // recycled memory holds old bytes
        }
        buf[offset..end].copy_from_slice(data);
        self.len = self.len.max(end);
        Ok(())
    }

    /// Grow (zero-filled) or shrink to `size`.
    fn truncate(&mut self, size: usize) -> std::io::Result<()> {
        if size == 0 {
            *self = WriteData::default();
        } else if size <= self.len {
            if self.own.is_none() {
                self.shared = self.shared.slice(..size);
            }
            self.len = size;
        } else {
            let len = self.len;
            self.own(size)?.as_mut_slice()[len..size].fill(0);
            self.len = size;
        }
        Ok(())
    }
}

/// Why an upload is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UploadCause {
    /// A close of a descriptor, `fsync`, a truncate of a closed file, unmounting: upload
    /// whatever is dirty.
    Sync,
    /// A handle goes away (its descriptors are all closed): upload whatever is dirty, but not
    /// bytes whose close already failed or that a close staged; the bytes are saved if that
    /// fails.
    Release,
    /// The uploader's turn of a staged file (write-back): upload whatever is dirty; a failure
    /// that may pass saves nothing (the journal holds the bytes).
    Background,
}

/// What an upload made useless (see [`WriteState::uploaded`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Superseded {
    /// The recovery file of exactly the uploaded bytes.
    pub recovery: Option<PathBuf>,
    /// The journal version of a staged generation the server now holds.
    pub version: Option<u64>,
}

/// The state of one inode's write buffer.
#[derive(Debug, Default)]
pub(crate) struct WriteState {
    pub data: WriteData,
    /// `data` holds the whole file (downloaded, truncated or new).
    pub loaded: bool,
    /// `data` differs from what the server holds: set by every change, cleared only by a
    /// successful upload of the current generation.
    pub dirty: bool,
    /// The generation whose upload failed, and the recovery file its bytes are kept in until an
    /// upload succeeds.
    pub saved: Option<(u64, PathBuf)>,
    /// Write-back: the generation a close staged, and its version in the journal, until the
    /// server holds it (or a newer one).
    staged: Option<(u64, u64)>,
    /// Write-back: while not loaded, the journal version that holds the file's bytes, and
    /// their length (a staged file no handle has open keeps its bytes on disk, not here).
    on_disk: Option<(u64, u64)>,
    /// Bumped by every change, so an upload knows whether it saved the latest state.
    pub generation: u64,
    /// Open handles using this buffer.
    pub handles: usize,
    /// The file was removed while open: never upload.
    pub unlinked: bool,
    /// A write tried to make the file this large, over the limit: the program was told EFBIG,
    /// and the truncated data must not be uploaded (the server keeps what it had). A truncate
    /// back under the limit clears it.
    pub oversize: Option<u64>,
}

/// One inode's write buffer: its state, and a lock that makes uploads of this media one at a
/// time (the only lock held across a network call, besides per-media downloads).
#[derive(Debug, Default)]
pub(crate) struct WriteBuf {
    pub state: Mutex<WriteState>,
    pub upload: Mutex<()>,
}

impl WriteBuf {
    /// A buffer in `state`, no upload under way.
    pub(crate) fn from_state(state: WriteState) -> WriteBuf {
        WriteBuf {
            state: Mutex::new(state),
            upload: Mutex::new(()),
        }
    }

    /// Run `f` on the state once it holds the whole file. When it does not yet, `load` brings
    /// the file's current bytes (outside the lock: it may download them, or read them from the
    /// journal), which the state takes unless someone loaded it meanwhile. Bytes loaded for a
    /// state that moved on meanwhile (a newer version staged, a change) are not taken: the
    /// state is looked at again.
    pub(crate) fn loaded<T>(
        &self,
        load: impl Fn() -> Result<Bytes, FsError>,
        f: impl FnOnce(&mut WriteState) -> T,
    ) -> Result<T, FsError> {
        loop {
            let before = {
                let mut st = self.state.lock();
                if st.loaded {
                    return Ok(f(&mut st));
                }
                (st.journal_source(), st.generation)
            };
            let body = load();
            let mut st = self.state.lock();
            if st.loaded {
                return Ok(f(&mut st));
            }
            if (st.journal_source(), st.generation) != before {
                continue;
            }
            st.data = WriteData::from_bytes(body?);
            st.loaded = true;
            st.on_disk = None;
            return Ok(f(&mut st));
        }
    }
}

/// The log line and error for a size over the limit.
pub(crate) fn too_large(name: &str, size: u64, limit: u64) -> FsError {
    log::warn!(
        "{name:?}: a write or truncate to {size} bytes was refused (EFBIG): media are limited to \
         {limit} bytes ({:.2} MiB)",
        limit as f64 / (1024.0 * 1024.0)
    );
    FsError::TooLarge { size, limit }
}

impl WriteState {
    /// A fresh buffer for a new or truncated file.
    #[cfg(test)]
    pub(crate) fn empty() -> WriteState {
        WriteState {
            loaded: true,
            ..WriteState::default()
        }
    }

    /// A buffer holding the whole file, `bytes`, as the server has it (clean, no handle).
    pub(crate) fn holding(bytes: Bytes) -> WriteState {
        WriteState {
            data: WriteData::from_bytes(bytes),
            loaded: true,
            ..WriteState::default()
        }
    }

    /// A buffer for the bytes of journal version `seq`, which an earlier mount staged: dirty
    /// and staged, with no handle.
    pub(crate) fn from_journal(seq: u64, len: u64) -> WriteState {
        WriteState {
            dirty: true,
            generation: 1,
            staged: Some((1, seq)),
            on_disk: Some((seq, len)),
            ..WriteState::default()
        }
    }

    /// With no handle left and its bytes staged, the buffer lets go of them: they are loaded
    /// again from the journal when needed (an upload, a read, a write).
    pub(crate) fn unload(&mut self) {
        if let Some((generation, seq)) = self.staged {
            if self.handles == 0 && generation == self.generation && self.loaded {
                self.on_disk = Some((seq, self.data.len() as u64));
                self.data = WriteData::default();
                self.loaded = false;
            }
        }
    }

    /// Write-back: the last handle went after a close that failed (its bytes are in the
    /// recovery folder): the file goes back to the version a close staged, the last one
    /// acknowledged, whose `len` bytes are journal version `seq` (without write-back it goes
    /// back to what the server holds). Its new generation is staged as that version.
    pub(crate) fn back_to_staged(&mut self, seq: u64, len: u64) {
        self.generation += 1;
        self.staged = Some((self.generation, seq));
        self.on_disk = Some((seq, len));
        self.data = WriteData::default();
        self.loaded = false;
        self.dirty = true;
        self.oversize = None;
    }

    /// The staged version to go back to when the last handle goes (see
    /// [`WriteState::back_to_staged`]): there is one, and the last close of newer bytes failed.
    pub(crate) fn failed_after_staging(&self) -> Option<u64> {
        let (generation, seq) = self.staged?;
        let failed = self.handles == 0
            && self.generation != generation
            && (self.saved_generation() == Some(self.generation) || self.oversize.is_some());
        failed.then_some(seq)
    }

    /// The journal version that held the bytes was lost (found damaged and kept aside): the
    /// buffer holds nothing of its own any more, and what the server holds is the file.
    pub(crate) fn lost_on_disk(&mut self) {
        self.on_disk = None;
        self.staged = None;
        self.dirty = false;
    }

    /// The journal version that holds the bytes of a buffer not loaded, if any.
    pub(crate) fn journal_source(&self) -> Option<u64> {
        self.on_disk.filter(|_| !self.loaded).map(|(seq, _)| seq)
    }

    /// The size the file shows: its bytes here, or staged on disk; none when the server's
    /// size is the file's.
    pub(crate) fn shown_size(&self) -> Option<u64> {
        if self.loaded {
            return Some(self.data.len() as u64);
        }
        self.on_disk.map(|(_, len)| len)
    }

    /// Write `data` at `offset` (the buffer must be loaded). Gaps are zero-filled.
    pub(crate) fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        self.data
            .write_at(offset as usize, data)
            .map_err(|e| FsError::Io(format!("no memory for the write buffer: {e}")))?;
        self.changed();
        Ok(data.len())
    }

    /// Grow (zero-filled) or shrink to `size` (the buffer must be loaded, unless `size` is 0).
    pub(crate) fn truncate(&mut self, size: u64) -> Result<(), FsError> {
        self.data
            .truncate(size as usize)
            .map_err(|e| FsError::Io(format!("no memory for the write buffer: {e}")))?;
        self.oversize = None;
        if size == 0 {
            self.loaded = true;
            self.on_disk = None;
        }
        self.changed();
        Ok(())
    }

    fn changed(&mut self) {
        self.dirty = true;
        self.generation += 1;
    }

    /// The server now holds the bytes of `generation`: clean, unless changed since. Returns
    /// what this makes useless: the recovery file saved of exactly these bytes (a copy of an
    /// older generation holds bytes the server never got, so it stays, and the buffer only
    /// stops tracking it; an upload compares its bytes in case they were written again), and
    /// the journal version of a staged generation up to this one.
    pub(crate) fn uploaded(&mut self, generation: u64) -> Superseded {
        if self.generation == generation {
            self.dirty = false;
        }
        let recovery = match &self.saved {
            Some((g, _)) if *g == generation => self.saved.take().map(|(_, f)| f),
            Some((g, _)) if *g < generation => {
                self.saved = None;
                None
            }
            _ => None,
        };
        let version = match self.staged {
            Some((g, seq)) if g <= generation => {
                self.staged = None;
                Some(seq)
            }
            _ => None,
        };
        Superseded { recovery, version }
    }

    /// A close staged `generation` as journal version `seq`: the version to forget. That is
    /// the one it replaces, if any; or `seq` itself when it is no longer needed (the server
    /// holds the buffer's bytes already) or older than the one staged (two closes at once).
    pub(crate) fn staged(&mut self, generation: u64, seq: u64) -> Option<u64> {
        let newer = self.staged.is_none_or(|(g, _)| g < generation);
        if !self.dirty || !newer {
            return Some(seq);
        }
        self.staged.replace((generation, seq)).map(|(_, old)| old)
    }

    /// The generation a close staged and the server does not hold yet.
    pub(crate) fn staged_generation(&self) -> Option<u64> {
        self.staged.map(|(g, _)| g)
    }

    /// The staged version is dropped (its file was removed, or the server refused it for good
    /// and its bytes are in the recovery folder): its journal version, to forget.
    pub(crate) fn unstage(&mut self) -> Option<u64> {
        self.staged.take().map(|(_, seq)| seq)
    }

    /// The generation whose bytes are kept in the recovery directory.
    pub(crate) fn saved_generation(&self) -> Option<u64> {
        self.saved.as_ref().map(|(g, _)| *g)
    }

    /// Whether an upload for `cause` has anything to send (it may still refuse an oversize file).
    pub(crate) fn wants_upload(&self, cause: UploadCause) -> bool {
        if !self.dirty || self.unlinked || !self.loaded {
            return false;
        }
        match cause {
            UploadCause::Sync => true,
            // What the background sends is what a close acknowledged: the staged version (an
            // fsync of it may have failed), never bytes whose close failed nor a file a write
            // made too large (those are the next close's, or go back to the staged version).
            UploadCause::Background => {
                self.oversize.is_none()
                    && (self.saved_generation() != Some(self.generation)
                        || self.staged_generation() == Some(self.generation))
            }
            // The close that failed for these very bytes was their last try; they are kept. An
            // incomplete (oversize) file was refused at its write and its close already.
            UploadCause::Release => {
                self.saved_generation() != Some(self.generation)
                    && self.staged_generation() != Some(self.generation)
                    && self.oversize.is_none()
            }
        }
    }

    /// Mark the bytes as needing an upload (under a new name after a rename, say).
    pub(crate) fn mark_for_upload(&mut self) {
        self.changed();
    }

    /// Up to `size` bytes at `offset`.
    pub(crate) fn read(&self, offset: u64, size: u32) -> &[u8] {
        let data = self.data.as_slice();
        let len = data.len() as u64;
        let start = offset.min(len) as usize;
        let end = offset.saturating_add(size as u64).min(len) as usize;
        &data[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_writes_and_truncates() {
        let mut w = WriteState::empty();
        w.write_at(3, b"abc").unwrap();
        assert_eq!(w.data.as_slice(), b"\0\0\0abc");
        w.write_at(0, b"xy").unwrap();
        assert_eq!(w.data.as_slice(), b"xy\0abc");
        w.truncate(2).unwrap();
        assert_eq!(w.data.as_slice(), b"xy");
        w.truncate(4).unwrap();
        assert_eq!(w.data.as_slice(), b"xy\0\0");
        assert_eq!(w.read(1, 2), b"y\0");
        assert_eq!(w.read(10, 2), b"");
        assert!(w.dirty);
    }

    #[test]
    fn frozen_bytes_are_copied_on_the_next_change() {
        let mut w = WriteState::empty();
        // Recycled memory holds old bytes: gaps must still read as zeros.
        let mut junk = PageBuf::new(1 << 20).unwrap();
        junk.as_mut_slice().fill(0xff);
        drop(junk);
        w.write_at(1 << 19, b"end").unwrap();
        assert!(w.data.as_slice()[..1 << 19].iter().all(|&b| b == 0));
        let frozen = w.data.freeze();
        assert_eq!(frozen.len(), (1 << 19) + 3);
        w.write_at(0, b"new").unwrap();
        assert_eq!(&frozen[..3], b"\0\0\0", "the uploaded bytes do not change");
        assert_eq!(&w.data.as_slice()[..3], b"new");
        let mut shared = WriteData::from_bytes(Bytes::from_static(b"abcdef"));
        shared.truncate(3).unwrap();
        assert_eq!(shared.as_slice(), b"abc");
        shared.truncate(5).unwrap();
        assert_eq!(shared.as_slice(), b"abc\0\0");
        assert_eq!(shared.freeze(), Bytes::from_static(b"abc\0\0"));
    }

    #[test]
    fn only_an_upload_of_the_saved_bytes_makes_their_copy_useless() {
        let mut w = WriteState::empty();
        w.write_at(0, b"first").unwrap();
        w.saved = Some((w.generation, PathBuf::from("copy")));
        assert!(
            !w.wants_upload(UploadCause::Release),
            "a release does not retry them"
        );
        assert!(w.wants_upload(UploadCause::Sync), "a close or fsync does");
        let first = w.generation;
        w.write_at(0, b"other").unwrap();
        assert!(
            w.wants_upload(UploadCause::Release),
            "newer bytes are uploaded at a release"
        );
        assert_eq!(
            w.uploaded(w.generation).recovery,
            None,
            "other bytes leave the copy"
        );
        assert!(w.saved.is_none() && !w.dirty);
        w.saved = Some((first, PathBuf::from("copy")));
        assert_eq!(w.uploaded(first).recovery, Some(PathBuf::from("copy")));
    }

    #[test]
    fn a_failed_close_after_a_staged_one_goes_back_to_it() {
        let mut w = WriteState::empty();
        w.write_at(0, b"staged").unwrap();
        assert_eq!(w.staged(w.generation, 7), None);
        w.write_at(0, b"failed bytes").unwrap();
        assert_eq!(w.failed_after_staging(), None, "no close failed yet");
        w.saved = Some((w.generation, PathBuf::from("copy")));
        assert!(
            !w.wants_upload(UploadCause::Background),
            "the background does not send bytes whose close failed"
        );
        w.handles = 1;
        assert_eq!(w.failed_after_staging(), None, "a handle may close again");
        w.handles = 0;
        assert_eq!(w.failed_after_staging(), Some(7));
        w.back_to_staged(7, 6);
        assert_eq!(w.journal_source(), Some(7));
        assert_eq!(w.shown_size(), Some(6));
        assert_eq!(w.staged_generation(), Some(w.generation));
        assert!(w.dirty && !w.loaded);
        assert_eq!(w.failed_after_staging(), None);
        assert_eq!(w.uploaded(w.generation).version, Some(7));
    }
}
