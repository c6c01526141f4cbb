//! Write buffers: what programs write goes to memory first, and is uploaded with one PUT.
//!
//! The API can only replace a whole media, so a file open for writing gets a local buffer that
//! holds the whole file: one per inode, shared by every handle that writes it (so `dup`'d fds,
//! several opens and an `O_TRUNC` sent apart from its open all see one state). Random writes,
//! appends, truncates and read-back work on that buffer. It is uploaded on flush (each close)
//! or fsync when dirty, and on the last release if still dirty; the upload's error is what
//! `close` returns.
//!
//! Nothing a program wrote is silently dropped: when an upload fails for good, the bytes are
//! saved in the recovery directory (see [`save_recovery`]) and a log line says how to
//! re-upload them. The one exception is a file that was removed while open: its writes go
//! nowhere, as on any POSIX file system.
//!
//! The buffer is loaded lazily (a write that needs the old bytes downloads them first, through
//! the data cache); `O_TRUNC`, or an empty file, needs no download.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use parking_lot::Mutex;

use super::buf::{Filled, PageBuf};
use super::error::FsError;

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

/// The state of one inode's write buffer.
#[derive(Debug, Default)]
pub(crate) struct WriteState {
    pub data: WriteData,
    /// `data` holds the whole file (downloaded, truncated or new).
    pub loaded: bool,
    /// `data` differs from the server.
    pub dirty: bool,
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

    /// Write `data` at `offset` (the buffer must be loaded). Gaps are zero-filled.
    pub(crate) fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        self.data
            .write_at(offset as usize, data)
            .map_err(|e| FsError::Io(format!("no memory for the write buffer: {e}")))?;
        self.dirty = true;
        self.generation += 1;
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
        }
        self.dirty = true;
        self.generation += 1;
        Ok(())
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

/// The file name a media's bytes are saved under in the recovery directory: the media name with
/// `%` and `/` percent-encoded (`a/b%c.png` -> `a%2Fb%25c.png`), so it is one safe, reversible
/// file name.
pub(crate) fn recovery_file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '\0' => out.push_str("%00"),
            c => out.push(c),
        }
    }
    out
}

/// Save `data` as `dir/<recovery_file_name(name)>` (the directory is made 0700, the file 0600)
/// and return the file's path.
pub(crate) fn save_recovery(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let path = dir.join(recovery_file_name(name));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(path)
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
    fn recovery_names_are_flat_and_reversible() {
        assert_eq!(recovery_file_name("a/b%c.png"), "a%2Fb%25c.png");
        assert_eq!(recovery_file_name("plain.txt"), "plain.txt");
    }

    #[test]
    fn recovery_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rec/sub");
        let p = save_recovery(&dir, "x/y.txt", b"hello").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert_eq!(p.file_name().unwrap(), "x%2Fy.txt");
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
