//! The handle table: open files and what each reads.
//!
//! The hard cases:
//! - One reader never reads two versions through its own handle: a handle keeps the body it
//!   started on, even when the media is removed, replaced or evicted from the data cache.
//! - A download that failed is tried again by a later read, unless it had handed out bytes
//!   already (a new one could bring another version); and for a second after the failure the
//!   same error answers, because the kernel follows a failed read-ahead with a read of its own
//!   within the same system call.
//! - A media that goes from the server (deleted elsewhere, expired, or by our own `rm`) while a
//!   handle is open: the handle keeps the bytes it can still have, the cached body of the
//!   version it reads ([`Handle::keep_body`]), or a download under way; one with nothing gets
//!   EIO, said once in the log ([`Handle::read_error`]): a read never answers ENOENT.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::content::{Fingerprint, Flight};
use super::error::FsError;
use super::namespace::Ino;
use super::write_buffer::WriteBuf;
use crate::api::Media;

/// An open file handle.
pub(super) struct Handle {
    pub(super) ino: Ino,
    pub(super) append: bool,
    /// The process that opened a handle that may write (when it can be told).
    pub(super) opener: Option<u32>,
    /// The inode's write buffer, for handles that may write (and new files).
    pub(super) buf: Option<Arc<WriteBuf>>,
    /// The body this reader reads (kept even if the media is removed or evicted).
    pub(super) body: Mutex<HandleBody>,
    /// Whether this handle has served the body (so the kernel caches that version).
    served: AtomicBool,
    /// Whether this handle has been read (its first read is what a scan follows).
    read_seen: AtomicBool,
    /// Whether the log has said that this handle's media went before it was read.
    gone_said: AtomicBool,
}

/// What a reading handle reads.
#[derive(Clone, Default)]
pub(super) enum HandleBody {
    /// Nothing yet (the first read fetches it).
    #[default]
    None,
    /// A download in progress, read as it arrives.
    Flight(Arc<Flight>),
    /// The whole body.
    Ready(Bytes),
    /// The download failed for good then: reads within [`FAILED_READ_GRACE`] get the same error.
    Failed(FsError, Instant),
    /// Nothing yet, and the kernel keeps pages of a version whose body the cache evicted: the
    /// first read that reaches us downloads it again, which must bring the same bytes.
    Expect(Fingerprint),
    /// The media changed under the pages the kernel kept for this handle: every read fails
    /// (one reader never sees two versions).
    Lost(FsError),
}

/// How long a handle answers reads with the error of its failed download. The kernel follows a
/// failed read-ahead with a read of its own within the same system call; a new download (with
/// all its retries) for it would double how long the call takes. Later reads try again.
pub(super) const FAILED_READ_GRACE: Duration = Duration::from_secs(1);

impl Handle {
    /// A handle of `ino` opened with `flags`; `buf` for one that may write, `opener` the
    /// process that opened it (when it can be told), `body` what it reads first.
    pub(super) fn new(
        ino: Ino,
        flags: i32,
        buf: Option<Arc<WriteBuf>>,
        opener: Option<u32>,
        body: HandleBody,
    ) -> Handle {
        Handle {
            ino,
            append: flags & libc::O_APPEND != 0,
            opener,
            buf,
            body: Mutex::new(body),
            served: AtomicBool::new(false),
            read_seen: AtomicBool::new(false),
            gone_said: AtomicBool::new(false),
        }
    }

    /// What a reading handle reads now: a download that failed within [`FAILED_READ_GRACE`] is
    /// its error; an older failure is tried again.
    pub(super) fn current_body(&self) -> Result<HandleBody, FsError> {
        match self.body.lock().clone() {
            HandleBody::Failed(e, at) if at.elapsed() < FAILED_READ_GRACE => Err(e),
            HandleBody::Failed(..) => Ok(HandleBody::None),
            other => Ok(other),
        }
    }

    /// After a failed download, the handle's reads after [`FAILED_READ_GRACE`] try again,
    /// unless the flight had handed out bytes already: a new download could bring another
    /// version, and one reader must never see two.
    pub(super) fn drop_failed_flight(&self) {
        let mut body = self.body.lock();
        if let HandleBody::Flight(f) = &*body {
            if let Some(Err(e)) = f.result() {
                if !f.served() {
                    *body = HandleBody::Failed(e, Instant::now());
                }
            }
        }
    }

    /// The media this handle reads goes from the data cache (gone from the server, or removed
    /// here), and `media` is the cached body of the version it reads: a handle with no body
    /// yet keeps it (one that expects a fingerprint, only if it matches).
    pub(super) fn keep_body(&self, media: &Media) {
        let mut body = self.body.lock();
        let keep = match &*body {
            HandleBody::None => true,
            HandleBody::Expect(print) => print.matches(&media.body),
            _ => false,
        };
        if keep {
            *body = HandleBody::Ready(media.body.clone());
        }
    }

    /// The error a read of this handle answers: a media found gone (a 404, or its node
    /// removed) that the handle has no bytes of is EIO, said once per handle in the log (of
    /// `path`, the media's name); a read never answers ENOENT.
    pub(super) fn read_error(&self, e: FsError, path: impl FnOnce() -> String) -> FsError {
        if !e.is_not_found() {
            return e;
        }
        if !self.gone_said.swap(true, Ordering::Relaxed) {
            log::warn!(
                "{:?} was removed on the server while it was open, before this reader had its \
                 bytes: its reads fail (EIO)",
                path()
            );
        }
        FsError::Gone
    }

    /// Whether this is a reading handle that does not hold its whole body.
    pub(super) fn reads_without_body(&self) -> bool {
        self.buf.is_none() && !matches!(*self.body.lock(), HandleBody::Ready(_))
    }

    /// The handle serves its body: true the first time (the kernel's page cache then holds
    /// this version).
    pub(super) fn first_serve(&self) -> bool {
        !self.served.swap(true, Ordering::Relaxed)
    }

    /// The handle is read: true the first time (what a read-ahead scan follows).
    pub(super) fn first_read(&self) -> bool {
        !self.read_seen.swap(true, Ordering::Relaxed)
    }
}

/// A table of open handles of one kind (files or directories), by the number the kernel
/// gives back with each call.
pub(super) struct Table<T> {
    open: Mutex<HashMap<u64, Arc<T>>>,
    next: AtomicU64,
}

impl<T> Default for Table<T> {
    fn default() -> Table<T> {
        Table {
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }
}

impl<T> Table<T> {
    /// Add `handle`; its number.
    pub(super) fn add(&self, handle: T) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().insert(fh, Arc::new(handle));
        fh
    }

    /// The handle numbered `fh`; a number the table does not hold is EBADF.
    pub(super) fn get(&self, fh: u64) -> Result<Arc<T>, FsError> {
        self.open.lock().get(&fh).cloned().ok_or(FsError::BadHandle)
    }

    /// Take the handle numbered `fh` out of the table.
    pub(super) fn remove(&self, fh: u64) -> Option<Arc<T>> {
        self.open.lock().remove(&fh)
    }

    /// Every open handle, taken out of the table's lock.
    pub(super) fn all(&self) -> Vec<Arc<T>> {
        self.open.lock().values().cloned().collect()
    }
}
