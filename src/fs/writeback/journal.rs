//! The write-back journal: the versions a close acknowledged before their upload, durable on
//! this machine's disk until the server holds them.
//!
//! One file per staged version (`SEQ.put`, SEQ a 16-digit hex sequence number), so a version is
//! made durable, read back and forgotten on its own, and no compaction is ever needed:
//! - **staging** writes `SEQ.tmp` (a header line, then the bytes), `fdatasync`s it, renames it
//!   to `SEQ.put` and `fsync`s the directory; only then does the close return 0. A crash at any
//!   step before the rename leaves a `.tmp`: a version never acknowledged, dropped at the next
//!   open. A crash after it leaves the whole version.
//! - **forgetting** (the server holds the version, or a newer one replaced it) unlinks the file
//!   and `fsync`s the directory, so a forgotten older version never comes back after a newer one
//!   of the same name was forgotten too.
//! - **opening** takes an exclusive lock (one write-back mount of an account at a time), drops
//!   the `.tmp` files and reads each header. A `.put` whose header does not parse or whose
//!   length is not the header's is damage a crash cannot cause: it is moved to `damaged/` and
//!   reported, never deleted. The bytes' checksum is checked when they are read, so opening a
//!   journal of 10,000 versions reads only their headers.
//!
//! The journal refuses a directory on a file system whose `fsync` does not mean the bytes are on
//! this machine's disk: tmpfs and ramfs (memory), FUSE, and network file systems.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::durable::{self, sync_dir};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Milliseconds each read of a version's bytes takes, for the tests (a slow disk).
#[cfg(test)]
pub static BODY_DELAY_MS: AtomicU64 = AtomicU64::new(0);

/// The first line of every version's file: what it is, in case one is found out of place.
const MAGIC: &str = "bwmediafs journal 1";
const STAGED: &str = "put";
const PARTIAL: &str = "tmp";
const LOCK_FILE: &str = "lock";

/// What a staged change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Upload the bytes as the name.
    Put,
    /// Delete the name (no bytes).
    Delete,
}

/// A staged change, besides its bytes: a version to upload, or a name to delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What it does.
    pub op: Op,
    /// The media name it is uploaded as, or deleted.
    pub name: String,
    pub content_type: String,
    pub cache_control: Option<String>,
    /// The length of the bytes.
    pub len: u64,
    /// CRC-32 of the bytes.
    pub crc: u32,
    /// Whether the content type was set on the file (its `user.bandwidth.content_type`), not
    /// implied or the one the server held: a replay makes it the file's own only then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub content_type_set: bool,
    /// The same for the cache control.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cache_control_set: bool,
    /// A deletion that waits for the upload of this version first (a rename: the old name
    /// goes once the new one is stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
}

/// The headers a version is staged with, and whether each was set on the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pub content_type: String,
    pub cache_control: Option<String>,
    /// The content type is the file's own (set through its attribute).
    pub content_type_set: bool,
    /// The cache control is the file's own.
    pub cache_control_set: bool,
}

/// A staged version found when the journal was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub change: Change,
}

/// Why a journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "the write-back journal {0} is in use by another bwmediafs mount of this account (one \
         write-back mount of an account at a time)"
    )]
    Locked(PathBuf),
    #[error(
        "the write-back journal cannot be kept in {dir}: it is on {kind}, where a sync does not \
         put the bytes on this machine's disk; choose a directory on a local disk with \
         --journal-dir"
    )]
    NotDurable { dir: PathBuf, kind: &'static str },
    #[error("the write-back journal in {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Why a version was not staged.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("the write-back journal is full ({held} of {limit} bytes held)")]
    Full { held: u64, limit: u64 },
    #[error("the write-back journal cannot be written: {0}")]
    Io(#[from] std::io::Error),
}

/// An open journal (see the module's comment).
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    next: AtomicU64,
    /// Bytes of the versions staged and not forgotten.
    held: AtomicU64,
    /// The length of each version staged and not forgotten.
    lens: Mutex<HashMap<u64, u64>>,
    /// The most `held` may be.
    limit: u64,
    /// Holds the lock for as long as the journal is open.
    _lock: File,
}

/// A journal just opened: it, what it held, and the files kept aside as damaged.
#[derive(Debug)]
pub struct Opened {
    pub journal: Journal,
    /// The staged versions, oldest first.
    pub entries: Vec<Entry>,
    /// Files moved to `damaged/` by this open.
    pub damaged: Vec<PathBuf>,
}

impl Journal {
    /// Open (or make, mode 0700) the journal in `dir`, holding at most `limit` bytes.
    pub fn open(dir: &Path, limit: u64) -> Result<Opened, JournalError> {
        let io = |source| JournalError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        if let Some(kind) = not_durable(dir).map_err(io)? {
            return Err(JournalError::NotDurable {
                dir: dir.to_path_buf(),
                kind,
            });
        }
        let lock = lock(dir)?;
        let mut entries = Vec::new();
        let mut damaged = Vec::new();
        let mut last = 0;
        for item in std::fs::read_dir(dir).map_err(io)? {
            let path = item.map_err(io)?.path();
            let Some((seq, ext)) = seq_of(&path) else {
                continue;
            };
            last = last.max(seq);
            match ext {
                PARTIAL => {
                    // A version never acknowledged: its close had not returned.
                    log::debug!(
                        "dropping {}: a version torn before its close returned",
                        path.display()
                    );
                    std::fs::remove_file(&path).map_err(io)?;
                }
                _ => match read_header(&path) {
                    Ok(version) => entries.push(Entry {
                        seq,
                        change: version,
                    }),
                    Err(why) => damaged.push(set_aside(dir, &path, &why).map_err(io)?),
                },
            }
        }
        if !damaged.is_empty() {
            sync_dir(dir).map_err(io)?;
        }
        entries.sort_by_key(|e| e.seq);
        let held = entries.iter().map(|e| e.change.len).sum();
        let lens = entries.iter().map(|e| (e.seq, e.change.len)).collect();
        let journal = Journal {
            dir: dir.to_path_buf(),
            next: AtomicU64::new(last + 1),
            held: AtomicU64::new(held),
            lens: Mutex::new(lens),
            limit,
            _lock: lock,
        };
        Ok(Opened {
            journal,
            entries,
            damaged,
        })
    }

    /// Where the journal is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of the versions staged and not forgotten.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Stage `body` as `name` with its headers: durable on this machine's disk when this
    /// returns. Its sequence number, which orders it after every version staged before.
    pub fn stage(&self, name: &str, headers: &Headers, body: &[u8]) -> Result<u64, StageError> {
        let len = body.len() as u64;
        let held = self.held.fetch_add(len, Ordering::Relaxed);
        if held + len > self.limit && held > 0 {
            self.held.fetch_sub(len, Ordering::Relaxed);
            return Err(StageError::Full {
                held,
                limit: self.limit,
            });
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let version = Change {
            op: Op::Put,
            name: name.to_string(),
            content_type: headers.content_type.clone(),
            cache_control: headers.cache_control.clone(),
            len,
            crc: crc32fast::hash(body),
            content_type_set: headers.content_type_set,
            cache_control_set: headers.cache_control_set,
            after: None,
        };
        match self.write_version(seq, &version, body) {
            Ok(()) => {
                self.lens.lock().insert(seq, len);
                Ok(seq)
            }
            Err(e) => {
                self.held.fetch_sub(len, Ordering::Relaxed);
                Err(StageError::Io(e))
            }
        }
    }

    /// Stage the deletion of `name`, to be sent once version `after` is uploaded when given:
    /// durable on this machine's disk when this returns. Its sequence number.
    pub fn stage_delete(&self, name: &str, after: Option<u64>) -> Result<u64, StageError> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let change = Change {
            op: Op::Delete,
            name: name.to_string(),
            content_type: String::new(),
            cache_control: None,
            len: 0,
            crc: crc32fast::hash(&[]),
            content_type_set: false,
            cache_control_set: false,
            after,
        };
        self.write_version(seq, &change, &[])?;
        Ok(seq)
    }

    fn write_version(&self, seq: u64, version: &Change, body: &[u8]) -> std::io::Result<()> {
        let (partial, whole) = (self.path(seq, PARTIAL), self.path(seq, STAGED));
        durable::write_whole(&self.dir, &partial, &whole, MAGIC, version, body)
    }

    /// The bytes of version `seq`, checked against the checksum they were staged with. Bytes
    /// that do not match are damage: the file is moved to `damaged/` and an error returned.
    pub fn body(&self, seq: u64) -> std::io::Result<Bytes> {
        let path = self.path(seq, STAGED);
        let mut reader = BufReader::new(File::open(&path)?);
        let version = parse_header(&mut reader).map_err(std::io::Error::other)?;
        let mut body = Vec::with_capacity(version.len as usize);
        reader.read_to_end(&mut body)?;
        if body.len() as u64 != version.len || crc32fast::hash(&body) != version.crc {
            let why = "its bytes do not match their checksum";
            let aside = set_aside(&self.dir, &path, why)?;
            self.counted_out(seq);
            return Err(std::io::Error::other(format!(
                "staged version {seq} of {:?} is damaged ({why}); kept in {}",
                version.name,
                aside.display()
            )));
        }
        #[cfg(test)]
        std::thread::sleep(std::time::Duration::from_millis(
            BODY_DELAY_MS.load(Ordering::SeqCst),
        ));
        Ok(Bytes::from(body))
    }

    /// Forget versions the server holds (or that a newer version replaced): gone from the disk
    /// when this returns.
    pub fn forget(&self, seqs: &[u64]) -> std::io::Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        for &seq in seqs {
            match std::fs::remove_file(self.path(seq, STAGED)) {
                Ok(()) => self.counted_out(seq),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        sync_dir(&self.dir)
    }

    /// Whether version `seq` is held (staged, not forgotten, not found damaged).
    pub fn holds(&self, seq: u64) -> bool {
        self.lens.lock().contains_key(&seq)
    }

    /// The length of the bytes of version `seq`, while it is held.
    pub fn len_of(&self, seq: u64) -> Option<u64> {
        self.lens.lock().get(&seq).copied()
    }

    /// How long ago the oldest version still held was staged.
    pub fn oldest_age(&self) -> Option<std::time::Duration> {
        let oldest = *self.lens.lock().keys().min()?;
        let modified = std::fs::metadata(self.path(oldest, STAGED))
            .and_then(|m| m.modified())
            .ok()?;
        modified.elapsed().ok()
    }

    /// Version `seq` no longer counts against the limit.
    fn counted_out(&self, seq: u64) {
        if let Some(len) = self.lens.lock().remove(&seq) {
            self.held.fetch_sub(len, Ordering::Relaxed);
        }
    }

    fn path(&self, seq: u64, ext: &str) -> PathBuf {
        self.dir.join(format!("{seq:016x}.{ext}"))
    }
}

/// The sequence number and kind of a journal file's name, if it is one.
fn seq_of(path: &Path) -> Option<(u64, &'static str)> {
    let name = path.file_name()?.to_str()?;
    let (seq, ext) = name.split_once('.')?;
    if seq.len() != 16 {
        return None;
    }
    let seq = u64::from_str_radix(seq, 16).ok()?;
    match ext {
        STAGED => Some((seq, STAGED)),
        PARTIAL => Some((seq, PARTIAL)),
        _ => None,
    }
}

/// The header of a staged version's file, checked against the file's length.
fn read_header(path: &Path) -> Result<Change, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let mut reader = BufReader::new(file);
    let version = parse_header(&mut reader)?;
    let header_len = (MAGIC.len() + 1) as u64 + header_line_len(&version)?;
    if size != header_len + version.len {
        return Err(format!(
            "it holds {} bytes where its header says {}",
            size.saturating_sub(header_len),
            version.len
        ));
    }
    Ok(version)
}

fn header_line_len(version: &Change) -> Result<u64, String> {
    serde_json::to_string(version)
        .map(|s| s.len() as u64 + 1)
        .map_err(|e| e.to_string())
}

fn parse_header(reader: &mut impl BufRead) -> Result<Change, String> {
    durable::read_header(reader, MAGIC)
}

/// Move a damaged file to `damaged/` and say so; its new path.
fn set_aside(dir: &Path, path: &Path, why: &str) -> std::io::Result<PathBuf> {
    let target = durable::set_aside(dir, path)?;
    log::error!(
        "the write-back journal holds a damaged version ({why}): it is kept in {} and will not be \
         uploaded",
        target.display()
    );
    Ok(target)
}

/// Take the journal's lock, or say who holds it.
fn lock(dir: &Path) -> Result<File, JournalError> {
    match durable::lock(dir, LOCK_FILE) {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(JournalError::Locked(dir.to_path_buf())),
        Err(source) => Err(JournalError::Io {
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

/// What kind of file system `dir` is on when a sync there does not reach this machine's disk.
fn not_durable(dir: &Path) -> std::io::Result<Option<&'static str>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("the path holds a NUL byte"))?;
    // SAFETY: statfs writes only into `st`, which is large enough; `path` is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    let kind = match st.f_type as i64 {
        0x0102_1994 => Some("tmpfs (memory)"),
        0x8584_58f6 => Some("ramfs (memory)"),
        0x6573_5546 => Some("a FUSE file system"),
        0x6969 => Some("NFS"),
        0x517b | 0xff53_4d42 | 0xfe53_4d42 => Some("SMB/CIFS"),
        0x00c3_6400 => Some("Ceph"),
        0x0102_1997 => Some("9p"),
        0x5346_414f => Some("AFS"),
        _ => None,
    };
    Ok(kind)
}

#[cfg(test)]
mod tests;
