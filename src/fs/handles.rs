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
//!   version it reads (`forget_body`), or a download under way; one with nothing gets EIO, said
//!   once in the log (`read_error`): a read never answers ENOENT.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::content::{Fingerprint, Flight};
use super::error::FsError;
use super::namespace::Ino;
use super::write_buffer::WriteBuf;
use super::{process, MediaFs};

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
    pub(super) served: AtomicBool,
    /// Whether this handle has been read (its first read is what a scan follows).
    pub(super) read_seen: AtomicBool,
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
}

impl MediaFs {
    pub(super) fn handle(&self, fh: u64) -> Result<Arc<Handle>, FsError> {
        self.handles
            .lock()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    pub(super) fn add_handle(
        &self,
        ino: Ino,
        flags: i32,
        buf: Option<Arc<WriteBuf>>,
        pid: u32,
        body: HandleBody,
    ) -> u64 {
        self.ns.lock().open_ref(ino);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let h = Handle {
            ino,
            append: flags & libc::O_APPEND != 0,
            opener: buf.as_ref().and_then(|_| process::process_of(pid)),
            buf,
            body: Mutex::new(body),
            served: AtomicBool::new(false),
            read_seen: AtomicBool::new(false),
            gone_said: AtomicBool::new(false),
        };
        self.handles.lock().insert(fh, Arc::new(h));
        fh
    }

    /// The media at `path` is gone (from the server, or removed here): the data cache forgets
    /// it, and each open handle of it that has no body yet keeps the cached one first, when it
    /// is of the version that handle reads.
    pub(super) fn forget_body(&self, path: &str) {
        if let Some((media, version)) = self.content.peek(path) {
            let open: Vec<Arc<Handle>> = self.handles.lock().values().cloned().collect();
            let readers: Vec<Arc<Handle>> = {
                let ns = self.ns.lock();
                open.into_iter()
                    .filter(|h| {
                        ns.node(h.ino)
                            .is_some_and(|n| n.path() == path && n.content_version() == version)
                    })
                    .collect()
            };
            for h in readers {
                let mut body = h.body.lock();
                let keep = match &*body {
                    HandleBody::None => true,
                    HandleBody::Expect(print) => print.matches(&media.body),
                    _ => false,
                };
                if keep {
                    *body = HandleBody::Ready(media.body.clone());
                }
            }
        }
        self.content.remove(path);
    }

    /// The error a read of `h` answers: a media found gone (a 404, or its node removed) that
    /// the handle has no bytes of is EIO, said once per handle in the log; a read never answers
    /// ENOENT.
    pub(super) fn read_error(&self, h: &Handle, e: FsError) -> FsError {
        if !e.is_not_found() {
            return e;
        }
        if !h.gone_said.swap(true, Ordering::Relaxed) {
            log::warn!(
                "{:?} was removed on the server while it was open, before this reader had its \
                 bytes: its reads fail (EIO)",
                self.path_of(h.ino)
            );
        }
        FsError::Gone
    }

    /// The first read of a handle from a whole body: the kernel's page cache now holds this
    /// version (for FOPEN_KEEP_CACHE next time).
    pub(super) fn mark_served(&self, h: &Handle) {
        if !h.served.swap(true, Ordering::Relaxed) {
            self.ns.lock().kernel_caches_current(h.ino);
        }
    }
}
