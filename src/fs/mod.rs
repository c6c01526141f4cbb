//! The filesystem core: everything `bwmediafs` does, usable without FUSE.
//!
//! [`MediaFs`] answers file-system operations (lookup, readdir, open, read, write, flush, ...)
//! in terms of inodes and handles, and talks to the Media API only through `Arc<dyn MediaApi>`.
//! `crate::fuse` is a thin adapter over it; the unit tests below drive it through the in-process
//! emulator store and assert the round-trip budget of the design exactly.
//!
//! The parts:
//! - [`namespace`]: names <-> inodes, implicit directories, the listing cache and its walks;
//! - [`content`]: the data cache (whole bodies, LRU by bytes, one download per media at a time);
//! - [`write`]: per-inode write buffers and the recovery directory;
//! - `buf`: the page buffers bodies and write buffers live in, recycled through a small pool;
//! - [`error`]: [`FsError`] and its one mapping to errno.
//!
//! How requests are spent (the hard part):
//! - **Listing.** A complete listing is reused for `metadata_ttl`. `readdir` streams the paged
//!   listing: it applies each page as it arrives and hands out what it has, fetching the next
//!   page when the reader wants more, or, once the reader has come back for more than its first
//!   reply, right after answering it (`readdir_ahead`). The mount's one page starts the first
//!   walk. A walk paused between pages is continued by whoever needs more of it only while it
//!   started within the TTL; an older one is replaced by a new walk (its first pages are that
//!   old).
//! - **Lookup/getattr of a file** answer from the cache while it is fresh (seen by a listing, a
//!   GET or our own PUT within the TTL, or by a listing of its directory that is still open, so
//!   that `ls -l` costs one walk even with a TTL of zero). Otherwise, when the last complete listing fit in one page,
//!   they revalidate with one list request (which refreshes everything); on a larger account a
//!   known name is trusted until the next listing (the API has no HEAD, and a GET to stat a file
//!   would make `rm` and `stat` download it). A name never seen costs one GET (whose body is
//!   kept in the data cache, so the read that usually follows costs nothing).
//! - **Opens** after the TTL check the bytes a cache would serve with one GET (close-to-open
//!   consistency, as NFS gives): a same-size overwrite made elsewhere is seen, and the kernel's
//!   page cache of the file is dropped when the bytes changed.
//! - **Directories** cannot be asked about (the API has no prefix query): a directory is known
//!   from a listing, revalidated like a file when that is one list request (else the cached one
//!   is trusted until the next complete listing). A name that is not known and that a GET
//!   answers 404 for is either missing or a directory the cache has not seen yet; to answer
//!   correctly the listing walk is completed (stopping early as soon as the name shows up as a
//!   directory). This is only ever needed when the account's listing takes more than one page
//!   *and* the cache is not fresh; it costs the pages of one listing, which then serves every
//!   other lookup for the TTL. (Answering ENOENT there would make `cat MSGID/0/photo.png` fail
//!   on a fresh mount of a large account.)
//! - **Reads** download a media once (single-flight) into the data cache and serve from memory,
//!   answering each read as soon as its bytes have arrived (the first reader's thread answers
//!   early and stays to finish the download); `FOPEN_KEEP_CACHE` is granted when the content
//!   version is the one the kernel last cached. Bodies and write buffers live in recycled page
//!   buffers (`buf`), shared without copies between the cache, readers and uploads.
//! - **Writes** go to a per-inode buffer and are uploaded with one PUT on flush/fsync when
//!   they changed since the last successful upload (the state machine is in [`write`]). Our
//!   own PUT/DELETE update the cache locally (no list request).
//! - **Removing a directory, renaming a directory** need every media under it, so they first
//!   make sure the listing is complete and fresh (free when it is, the listing's pages if not);
//!   ENOTEMPTY is only answered from such a listing (media may have gone elsewhere).
//! - **`rm` of a file someone still has open but never read** downloads it first (one GET), so
//!   the reader keeps its bytes.
//!
//! Timestamps: a name's times are when this mount first saw it; `mtime` changes on our own
//! writes and when the server shows different content (a new size in a listing, other bytes
//! from a GET); chmod/chown/utimens values are kept for the life of the mount.
//!
//! Locks (never held across a network call, except the per-media download flight, the
//! per-media upload lock and the listing walk lock, which are the single-flight points). Order:
//! dir handle -> writes map -> write buffer state -> namespace -> {content cache, handle table}.

mod buf;
pub mod content;
pub mod error;
pub mod namespace;
mod process;
pub mod write;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::api::{content_type_for, ApiError, Media, MediaApi, MAX_LIST_PAGES, MAX_MEDIA_SIZE};
use content::{ContentCache, Early, Fetch, Flight, FlightSink, Leader};
pub use error::FsError;
pub use namespace::{Attr, Ino, Kind, ROOT_INO};
use namespace::{Defaults, InoSet, Namespace, NAME_MAX};
use write::{save_recovery, too_large, upload_target, UploadCause, UploadTarget, WriteBuf};

/// Extended attributes every file has.
pub const XATTR_URL: &str = "user.bandwidth.url";
pub const XATTR_CONTENT_TYPE: &str = "user.bandwidth.content_type";
pub const XATTR_CACHE_CONTROL: &str = "user.bandwidth.cache_control";

/// `rename` flags (as in renameat2).
pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;

/// How the file system behaves.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// How long a listing (and what a GET or our PUT told us) is trusted.
    pub metadata_ttl: Duration,
    /// Bytes of media bodies kept in memory.
    pub cache_size: u64,
    /// Owner shown for every file (until chown).
    pub uid: u32,
    pub gid: u32,
    /// Permission bits shown for files and directories (until chmod).
    pub file_mode: u16,
    pub dir_mode: u16,
    /// Refuse every change with EROFS.
    pub read_only: bool,
    /// Largest file a write or truncate may make.
    pub max_size: u64,
    /// Where the bytes of uploads that failed for good are saved.
    pub recovery_dir: PathBuf,
}

impl Default for FsOptions {
    fn default() -> Self {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        FsOptions {
            metadata_ttl: Duration::from_secs(10),
            cache_size: 256 * 1024 * 1024,
            uid,
            gid,
            file_mode: 0o644,
            dir_mode: 0o755,
            read_only: false,
            max_size: MAX_MEDIA_SIZE,
            recovery_dir: default_recovery_dir(uid),
        }
    }
}

/// Where bwmediafs keeps its state (recovered uploads, the background log):
/// `$XDG_STATE_HOME/bwmediafs`, or `~/.local/state/bwmediafs`, or `/tmp/bwmediafs-UID`.
pub fn state_dir(uid: u32) -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|s| !s.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        });
    match state {
        Some(s) => s.join("bwmediafs"),
        None => PathBuf::from(format!("/tmp/bwmediafs-{uid}")),
    }
}

fn default_recovery_dir(uid: u32) -> PathBuf {
    state_dir(uid).join("recovery")
}

/// What `setattr` may change; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

/// One directory entry handed to a `readdir` filler; `offset` is where the next one starts.
#[derive(Debug, Clone)]
pub struct DirEntry<'a> {
    pub ino: Ino,
    pub kind: Kind,
    pub name: &'a str,
    pub offset: u64,
    pub attr: Attr,
}

/// An open file: its handle and whether the kernel may keep its page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    pub keep_cache: bool,
    /// The handle cannot write, so a close has nothing to upload: the kernel may skip FLUSH.
    pub no_flush: bool,
    /// The handle can only write: its writes may bypass the kernel's page cache (nobody reads
    /// through it, and the kernel drops cached pages of the range written).
    pub direct_io: bool,
}

/// What `statfs` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// An open file handle.
struct Handle {
    ino: Ino,
    append: bool,
    /// The process that opened a handle that may write (when it can be told).
    opener: Option<u32>,
    /// The inode's write buffer, for handles that may write (and new files).
    buf: Option<Arc<WriteBuf>>,
    /// The body this reader reads (kept even if the media is removed or evicted).
    body: Mutex<HandleBody>,
    /// Whether this handle has served the body (so the kernel caches that version).
    served: AtomicBool,
}

/// What a reading handle reads.
#[derive(Clone, Default)]
enum HandleBody {
    /// Nothing yet (the first read fetches it).
    #[default]
    None,
    /// A download in progress, read as it arrives.
    Flight(Arc<Flight>),
    /// The whole body.
    Ready(Bytes),
    /// The download failed for good then: reads within [`FAILED_READ_GRACE`] get the same error.
    Failed(FsError, Instant),
}

/// How long a handle answers reads with the error of its failed download. The kernel follows a
/// failed read-ahead with a read of its own within the same system call; a new download (with
/// all its retries) for it would double how long the call takes. Later reads try again.
const FAILED_READ_GRACE: Duration = Duration::from_secs(1);

/// An open directory: the entries handed out so far (offsets index into them).
struct DirHandle {
    ino: Ino,
    /// Inodes of the entries, "." and ".." first; names and attributes are read when handed out
    /// (an entry that left the directory meanwhile is skipped).
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
    eof: bool,
}

/// The file system. Send + Sync: every operation may run on any thread.
pub struct MediaFs {
    api: Arc<dyn MediaApi>,
    opts: FsOptions,
    ns: Mutex<Namespace>,
    content: ContentCache,
    writes: Mutex<HashMap<Ino, Arc<WriteBuf>>>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    dirs: Mutex<HashMap<u64, Arc<Mutex<DirHandle>>>>,
    next_fh: AtomicU64,
    /// Held while one listing page is fetched and applied (the listing's single flight).
    walk_lock: Mutex<()>,
    mountpoint: Mutex<Option<PathBuf>>,
    auth_logged: AtomicBool,
}

/// How long an unfinished walk may sit idle and still be continued (its tokens may go stale).
fn walk_idle_limit(ttl: Duration) -> Duration {
    ttl.max(Duration::from_secs(10))
}

fn fresh(t: Option<Instant>, ttl: Duration) -> bool {
    t.is_some_and(|t| t.elapsed() < ttl)
}

impl MediaFs {
    /// Check the credentials with one list page, which also seeds the listing cache.
    pub fn connect(api: Arc<dyn MediaApi>, opts: FsOptions) -> Result<MediaFs, FsError> {
        let fs = MediaFs::new(api, opts);
        fs.walk_until(None, |ns| ns.walk.as_ref().is_some_and(|w| w.pages > 0))?;
        Ok(fs)
    }

    fn new(api: Arc<dyn MediaApi>, opts: FsOptions) -> MediaFs {
        let defaults = Defaults {
            file_mode: opts.file_mode & 0o7777,
            dir_mode: opts.dir_mode & 0o7777,
            uid: opts.uid,
            gid: opts.gid,
        };
        MediaFs {
            api,
            content: ContentCache::new(opts.cache_size),
            opts,
            ns: Mutex::new(Namespace::new(defaults)),
            writes: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            walk_lock: Mutex::new(()),
            mountpoint: Mutex::new(None),
            auth_logged: AtomicBool::new(false),
        }
    }

    pub fn options(&self) -> &FsOptions {
        &self.opts
    }

    /// How long the kernel may keep attributes and entries.
    pub fn ttl(&self) -> Duration {
        self.opts.metadata_ttl
    }

    /// How long the kernel may keep the attributes of `ino` just handed out: the TTL, or zero
    /// for a file answered from the cache past its TTL (a known name on a multi-page account,
    /// see [`MediaFs::trusted`]), so that the kernel asks again and its reads follow the size
    /// that the next open's GET learns.
    pub fn kernel_ttl(&self, ino: Ino) -> Duration {
        let ns = self.ns.lock();
        let stale = ns.node(ino).is_some_and(|n| {
            n.kind == Kind::File && n.remote && !fresh(n.verified_at, self.opts.metadata_ttl)
        });
        if stale {
            Duration::ZERO
        } else {
            self.opts.metadata_ttl
        }
    }

    /// Where the file system is mounted (used in the recovery instructions of log lines).
    pub fn set_mountpoint(&self, path: &Path) {
        *self.mountpoint.lock() = Some(path.to_path_buf());
    }

    /// Bytes held by the data cache.
    pub fn cached_bytes(&self) -> u64 {
        self.content.used()
    }

    // ----- errors -------------------------------------------------------------------------

    /// An API failure as an `FsError`, logged once where it is actionable.
    fn api_error(&self, op: &'static str, name: &str, e: ApiError) -> FsError {
        let err = FsError::api(op, name, e);
        if let FsError::Api { source, .. } = &err {
            match source {
                ApiError::Unauthorized(_) | ApiError::Forbidden(_) => {
                    if !self.auth_logged.swap(true, Ordering::Relaxed) {
                        log::error!("{err}");
                    }
                }
                ApiError::NotFound => log::debug!("{err}"),
                ApiError::UnsupportedType(ct) => log::warn!(
                    "{op} of {name:?}: the server refused the content type {ct:?} (HTTP 415); \
                     set another with `setfattr -n {XATTR_CONTENT_TYPE} -v TYPE FILE` or rename \
                     the file with a known extension"
                ),
                _ => log::warn!("{err}"),
            }
        }
        err
    }

    fn check_ro(&self) -> Result<(), FsError> {
        if self.opts.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// A name component from the kernel as a `&str`.
    fn component<'a>(&self, name: &'a OsStr) -> Result<&'a str, FsError> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let s = name
            .to_str()
            .ok_or_else(|| FsError::InvalidName(format!("{name:?} is not UTF-8")))?;
        if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('\0') {
            return Err(FsError::InvalidName(format!("{s:?}")));
        }
        Ok(s)
    }

    // ----- the listing ----------------------------------------------------------------------

    /// Whether a walk started within the TTL (anyone may continue it).
    fn walk_fresh(&self, w: &namespace::Walk) -> bool {
        fresh(Some(w.started), self.opts.metadata_ttl)
    }

    fn listing_fresh(&self, ns: &Namespace) -> bool {
        fresh(ns.complete_at, self.opts.metadata_ttl)
    }

    /// Whether the account's listing fit in one page last time (then a list request is the
    /// cheapest way to revalidate anything).
    fn small_account(&self) -> bool {
        self.ns.lock().complete_pages == 1
    }

    /// Fetch listing pages (continuing the current walk when it is recent, else starting one)
    /// until `stop` holds. Concurrent callers share the pages: one is fetched at a time.
    /// A paused walk is continued by the reader that `follow`s it, or by anyone while it started
    /// within the TTL or during this call; one older than that is replaced by a new walk (its
    /// first pages show the store as it was then).
    fn walk_until(
        &self,
        follow: Option<u64>,
        stop: impl Fn(&Namespace) -> bool,
    ) -> Result<(), FsError> {
        let began = Instant::now();
        loop {
            if stop(&self.ns.lock()) {
                return Ok(());
            }
            let _flight = self.walk_lock.lock();
            let now = Instant::now();
            let (id, token) = {
                let mut ns = self.ns.lock();
                if stop(&ns) {
                    return Ok(());
                }
                let idle = walk_idle_limit(self.opts.metadata_ttl);
                match &ns.walk {
                    Some(w)
                        if !w.done
                            && w.pages > 0
                            && w.last_page.elapsed() < idle
                            && (follow == Some(w.id)
                                || w.started >= began
                                || self.walk_fresh(w)) =>
                    {
                        (w.id, w.next.clone())
                    }
                    _ => (ns.start_walk(now), None),
                }
            };
            let page = match self.api.list_page(token.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    let mut ns = self.ns.lock();
                    if ns.walk.as_ref().is_some_and(|w| w.id == id) {
                        ns.walk = None;
                    }
                    return Err(self.api_error("listing the media", "", e));
                }
            };
            let pinned = self.pinned();
            let mut dropped = Vec::new();
            let mut failure = None;
            {
                let mut ns = self.ns.lock();
                let start_epoch = match &ns.walk {
                    Some(w) if w.id == id => w.start_epoch,
                    _ => continue,
                };
                let now = Instant::now();
                for item in &page.items {
                    ns.remote_file(
                        &item.name,
                        item.content_length,
                        Some((id, start_epoch)),
                        now,
                        &mut dropped,
                    );
                }
                let mut finished = false;
                if let Some(w) = ns.walk.as_mut() {
                    w.pages += 1;
                    w.last_page = now;
                    match page.next {
                        None => finished = true,
                        Some(next) => {
                            if !w.seen_tokens.insert(next.clone()) {
                                failure = Some(format!(
                                    "the listing repeats a continuation token after {} pages",
                                    w.pages
                                ));
                            } else if w.pages >= MAX_LIST_PAGES {
                                failure = Some(format!(
                                    "the listing did not end after {} pages",
                                    w.pages
                                ));
                            }
                            w.next = Some(next);
                        }
                    }
                }
                if failure.is_some() {
                    ns.walk = None;
                } else if finished {
                    dropped.extend(ns.finish_walk(&pinned, now));
                }
            }
            for path in &dropped {
                self.content.remove(path);
            }
            if let Some(f) = failure {
                return Err(self.api_error("listing the media", "", ApiError::Malformed(f)));
            }
        }
    }

    /// Make sure the cache holds a complete listing that is fresh (or finished after this call
    /// began, which matters when the TTL is zero).
    fn ensure_complete(&self) -> Result<(), FsError> {
        let t0 = Instant::now();
        self.walk_until(None, |ns| {
            self.listing_fresh(ns) || ns.complete_at.is_some_and(|c| c >= t0)
        })
    }

    /// Inodes with a write buffer (a listing must not remove them).
    fn pinned(&self) -> HashSet<Ino> {
        self.writes.lock().keys().copied().collect()
    }

    // ----- attributes -----------------------------------------------------------------------

    fn buffer_of(&self, ino: Ino) -> Option<Arc<WriteBuf>> {
        self.writes.lock().get(&ino).cloned()
    }

    /// The write buffers, taken out of the table's lock.
    fn write_buffers(&self) -> Vec<(Ino, Arc<WriteBuf>)> {
        let writes = self.writes.lock();
        writes.iter().map(|(i, b)| (*i, b.clone())).collect()
    }

    /// Sizes of the loaded write buffers (they override the sizes the namespace knows).
    fn buffer_sizes(&self) -> HashMap<Ino, u64> {
        let bufs = self.write_buffers();
        bufs.into_iter()
            .filter_map(|(i, b)| {
                let st = b.state.lock();
                st.loaded.then_some((i, st.data.len() as u64))
            })
            .collect()
    }

    /// Attributes of `ino`, with the size of its write buffer when it has a loaded one.
    fn attr_of(&self, ino: Ino) -> Result<Attr, FsError> {
        let size = self.buffer_of(ino).and_then(|b| {
            let st = b.state.lock();
            st.loaded.then_some(st.data.len() as u64)
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
            match ns.child(parent, name).and_then(|c| ns.node(c)) {
                Some(n) => {
                    if self.trusted(&ns, n) {
                        let ino = n.ino;
                        drop(ns);
                        return self.attr_of(ino);
                    }
                    (path, (n.kind == Kind::File).then_some(n.ino))
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
        let child = self.ns.lock().child(parent, name);
        match child {
            Some(c) => self.attr_of(c),
            None => Err(FsError::NotFound),
        }
    }

    /// Whether what the cache knows of a node answers a lookup or getattr without a request:
    /// what the server said of it is within the TTL, or came to a listing of its directory that
    /// is still open (so one `ls -l` costs one listing walk, even with a TTL of zero). Only a
    /// listing can revalidate a known name without downloading it, so that is done only when it
    /// is one request (a small account); on a larger account a known name is trusted until the
    /// next listing (an open still checks the bytes, see [`MediaFs::revalidate_body`]). A name
    /// never uploaded is local, hence known.
    fn trusted(&self, ns: &Namespace, n: &namespace::Node) -> bool {
        let seen = match n.kind {
            Kind::File => n.verified_at,
            Kind::Dir => ns.complete_at,
        };
        ns.complete_pages != 1
            || (n.kind == Kind::File && !n.remote)
            || fresh(seen, self.opts.metadata_ttl)
            || ns.shown_to_open_listing(n.parent, seen)
    }

    /// Bring the cache's view of `path` up to date with the cheapest request that can (see the
    /// module comment): a list page on a small account, else a GET, and for a 404 the rest of
    /// the listing (to tell a missing name from a directory not seen yet).
    fn revalidate(&self, path: &str) -> Result<(), FsError> {
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
                        || ns.complete_at.is_some_and(|c| c >= t0)
                        || ns
                            .resolve(path)
                            .and_then(|i| ns.node(i))
                            .is_some_and(|n| n.kind == Kind::Dir)
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The server says `path` does not exist: drop the file from the cache (unless it has a
    /// local life: open for writing, or never uploaded).
    fn forget_file(&self, path: &str) {
        let pinned = self.pinned();
        let mut ns = self.ns.lock();
        if let Some(ino) = ns.resolve(path) {
            let drop_it = ns
                .node(ino)
                .is_some_and(|n| n.kind == Kind::File && n.remote && !pinned.contains(&ino));
            if drop_it {
                ns.detach(ino);
            }
        }
        drop(ns);
        self.content.remove(path);
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
            if n.removed && n.opens == 0 {
                return Err(FsError::NotFound);
            }
            (n.kind == Kind::File && !n.removed && !self.trusted(&ns, n)).then(|| n.path.clone())
        };
        if let Some(path) = stale {
            if self.buffer_of(ino).is_none() {
                self.revalidate(&path)?;
                if self.ns.lock().live(ino).is_none() {
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
            (n.kind, n.path.clone())
        };
        if let Some(size) = sa.size {
            if kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            if size > self.opts.max_size {
                return Err(too_large(&path, size, self.opts.max_size));
            }
            match self.buffer_of(ino) {
                Some(buf) => self.truncate_buffer(ino, &buf, size)?,
                None => self.truncate_now(ino, size)?,
            }
        }
        {
            let mut ns = self.ns.lock();
            let n = ns.node_mut(ino).ok_or(FsError::NotFound)?;
            if let Some(m) = sa.mode {
                n.perm = Some((m & 0o7777) as u16);
            }
            if let Some(u) = sa.uid {
                n.uid = Some(u);
            }
            if let Some(g) = sa.gid {
                n.gid = Some(g);
            }
            if let Some(t) = sa.atime {
                n.atime = t;
            }
            if let Some(t) = sa.mtime {
                n.mtime = t;
            }
            n.ctime = SystemTime::now();
        }
        self.attr_of(ino)
    }

    fn truncate_buffer(&self, ino: Ino, buf: &Arc<WriteBuf>, size: u64) -> Result<(), FsError> {
        loop {
            {
                let mut st = buf.state.lock();
                if st.loaded || size == 0 {
                    st.truncate(size)?;
                    drop(st);
                    self.touch_mtime(ino);
                    return Ok(());
                }
            }
            self.load_buffer(ino, buf)?;
        }
    }

    /// Truncate a file nobody has open: download if needed, upload at once. Like an open, it
    /// first checks bytes or a size older than the TTL.
    fn truncate_now(&self, ino: Ino, size: u64) -> Result<(), FsError> {
        self.revalidate_body(ino)?;
        let unchanged = {
            let ns = self.ns.lock();
            ns.node(ino).is_some_and(|n| n.remote && n.size == size)
        };
        if unchanged {
            return Ok(());
        }
        let buf = self.attach_buffer(ino, false)?;
        let result = self
            .truncate_buffer(ino, &buf, size)
            .and_then(|()| self.upload(ino, &buf, UploadCause::Sync));
        self.detach_buffer(ino, &buf);
        result
    }

    fn touch_mtime(&self, ino: Ino) {
        if let Some(n) = self.ns.lock().node_mut(ino) {
            n.mtime = SystemTime::now();
            n.ctime = n.mtime;
        }
    }

    // ----- directories ----------------------------------------------------------------------

    pub fn opendir(&self, ino: Ino) -> Result<u64, FsError> {
        self.open_dir(ino).map(|o| o.fh)
    }

    /// Open a directory. `keep_cache` says that the listing the kernel cached (FOPEN_CACHE_DIR)
    /// is current: the listing is fresh, the directory has not changed since the kernel
    /// received all of it, and the attributes that came with it are within the TTL. Then a
    /// warm `ls -l` costs an open and a release, and nothing else reaches us.
    pub fn open_dir(&self, ino: Ino) -> Result<Opened, FsError> {
        let (parent, keep_cache) = {
            let mut ns = self.ns.lock();
            let n = ns.live_dir(ino)?;
            let (parent, version) = (n.parent, n.content_version);
            let ttl = self.opts.metadata_ttl;
            let keep = self.listing_fresh(&ns)
                && ns
                    .kernel_dirs
                    .get(&ino)
                    .is_some_and(|(v, at)| *v == version && at.elapsed() < ttl);
            if !keep {
                // The kernel drops what it cached; what it caches next is what we hand out.
                ns.kernel_dirs.remove(&ino);
            }
            ns.open_ref(ino);
            ns.listing_opened(ino, Instant::now());
            (parent, keep)
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let dh = DirHandle {
            ino,
            entries: vec![ino, parent],
            emitted: InoSet::default(),
            seen_pos: None,
            replies: 0,
            walk: None,
            eof: false,
            next_offset: Some(0),
            first_reply: None,
        };
        self.dirs.lock().insert(fh, Arc::new(Mutex::new(dh)));
        Ok(Opened {
            fh,
            keep_cache,
            no_flush: true,
            direct_io: false,
        })
    }

    /// Hand entries from `offset` on to `fill` until it returns true (its buffer is full).
    /// On a cold cache this returns after the first page that brings entries of this
    /// directory, and fetches further pages as the reader asks for more. With `plus`
    /// (readdirplus) the kernel keeps a reference to each entry handed out but `.` and `..`,
    /// as after a lookup.
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
        mut fill: impl FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<(), FsError> {
        let dh = self
            .dirs
            .lock()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)?;
        let mut offset = offset as usize;
        let mut handed = 0usize;
        {
            let mut d = dh.lock();
            // The kernel may ask again from an earlier entry (what did not fit the reader's
            // buffer); a call past what was handed out is a seek, and the kernel does not
            // cache such a pass.
            if d.next_offset.is_some_and(|n| offset > n) {
                d.next_offset = None;
            }
            d.first_reply.get_or_insert_with(Instant::now);
        }
        loop {
            {
                let sizes = self.buffer_sizes();
                let mut d = dh.lock();
                let mut ns = self.ns.lock();
                while offset < d.entries.len() {
                    let ino = d.entries[offset];
                    let name = match (offset, ns.node(ino)) {
                        (0, _) => ".",
                        (1, _) => "..",
                        (_, Some(n)) if !n.removed && n.parent == d.ino => n.name(),
                        _ => {
                            offset += 1;
                            continue;
                        }
                    };
                    let Some(attr) = ns.attr(ino, sizes.get(&ino).copied()) else {
                        offset += 1;
                        continue;
                    };
                    let entry = DirEntry {
                        ino,
                        kind: attr.kind,
                        name,
                        offset: offset as u64 + 1,
                        attr,
                    };
                    if fill(&entry) {
                        d.replies += 1;
                        d.next_offset = d.next_offset.map(|n| n.max(offset));
                        return Ok(());
                    }
                    if plus && offset >= 2 {
                        ns.kernel_ref(ino);
                    }
                    offset += 1;
                    if offset > 2 {
                        handed += 1; // "." and ".." alone are not worth a reply
                    }
                }
                if d.eof || handed > 0 {
                    d.replies += 1;
                    d.next_offset = d.next_offset.map(|n| n.max(offset));
                    if d.eof && handed == 0 && offset >= 2 {
                        // The end of a pass: the kernel now holds the whole listing if the
                        // pass went through in order and handed out exactly the children.
                        Self::kernel_got_listing(&mut ns, &d);
                    }
                    return Ok(());
                }
            }
            self.more_entries(&dh)?;
        }
    }

    /// Record that the kernel cached the whole listing of `d`'s directory, when it did.
    fn kernel_got_listing(ns: &mut Namespace, d: &DirHandle) {
        let (Some(_), Some(first)) = (d.next_offset, d.first_reply) else {
            return;
        };
        let Some(dir) = ns.live(d.ino) else {
            return;
        };
        let exact = d.emitted.len() == dir.children.len()
            && dir.children.values().all(|c| d.emitted.contains(c));
        if exact {
            let version = dir.content_version;
            ns.kernel_dirs.insert(d.ino, (version, first));
        }
    }

    /// Add entries to a directory listing: everything when the cache is complete and fresh,
    /// else what the walk it follows has confirmed so far, fetching one more page if it has
    /// none to give.
    fn more_entries(&self, dh: &Mutex<DirHandle>) -> Result<(), FsError> {
        /// What to wait for before looking again.
        enum Wait {
            /// One more page of walk `id` (which had `pages`).
            Next(u64, usize),
            /// A new walk, other than `old`, with at least one page.
            New(Option<u64>),
            /// Nothing: look again.
            Again,
        }
        loop {
            let pinned = self.pinned();
            let wait = {
                let mut d = dh.lock();
                let ns = self.ns.lock();
                let Some(dir) = ns.live(d.ino) else {
                    d.eof = true;
                    return Ok(());
                };
                let children = &dir.children;
                let push = |d: &mut DirHandle, c: Ino| {
                    if d.emitted.insert(c) {
                        d.entries.push(c);
                    }
                };
                if d.walk.is_none() && self.listing_fresh(&ns) {
                    for c in children.values() {
                        push(&mut d, *c);
                    }
                    d.eof = true;
                    return Ok(());
                }
                let idle = walk_idle_limit(self.opts.metadata_ttl);
                match ns.walk.as_ref() {
                    Some(w)
                        if d.walk == Some(w.id)
                            || (d.walk.is_none()
                                && !w.done
                                && w.pages > 0
                                && w.last_page.elapsed() < idle
                                && self.walk_fresh(w)) =>
                    {
                        d.walk = Some(w.id);
                        let before = d.entries.len();
                        match d.seen_pos {
                            // After the first look, only what the walk saw since matters (local
                            // changes made meanwhile are taken at the end).
                            Some(pos) if !w.done => {
                                for &c in w.seen.get(pos..).unwrap_or_default() {
                                    let here = ns.live(c).is_some_and(|n| n.parent == d.ino);
                                    if here && !d.emitted.contains(&c) {
                                        push(&mut d, c);
                                    }
                                }
                            }
                            _ => {
                                for c in children.values() {
                                    if !d.emitted.contains(c)
                                        && (w.done || ns.confirmed(*c, w, &pinned))
                                    {
                                        push(&mut d, *c);
                                    }
                                }
                            }
                        }
                        d.seen_pos = Some(w.seen.len());
                        if w.done {
                            d.eof = true;
                            return Ok(());
                        }
                        if d.entries.len() > before {
                            return Ok(());
                        }
                        Wait::Next(w.id, w.pages)
                    }
                    // Our walk was abandoned or replaced: join the current one if we can.
                    _ if d.walk.is_some() => {
                        d.walk = None;
                        d.seen_pos = None;
                        Wait::Again
                    }
                    // None can be continued: start one.
                    other => Wait::New(other.map(|w| w.id)),
                }
            };
            match wait {
                Wait::Again => {}
                Wait::Next(id, pages) => {
                    self.walk_until(Some(id), |ns| match ns.walk.as_ref() {
                        Some(w) => w.id != id || w.pages != pages || w.done,
                        None => true,
                    })?
                }
                Wait::New(old) => {
                    self.walk_until(None, |ns| {
                        ns.walk
                            .as_ref()
                            .is_some_and(|w| Some(w.id) != old && w.pages > 0)
                    })?;
                    // Follow the walk we waited for, even if it is already complete.
                    let mut d = dh.lock();
                    let ns = self.ns.lock();
                    if let Some(w) = ns.walk.as_ref() {
                        if Some(w.id) != old {
                            d.walk = Some(w.id);
                            d.seen_pos = None;
                        }
                    }
                }
            }
        }
    }

    /// Called after a reply to a listing: when its reader has come back at least once (it reads
    /// the whole listing, like `ls`) and the walk it follows has more pages, fetch the next page
    /// now, while the kernel hands out what it has. The pages stay ceil(N/1000) in all (none
    /// after the last); a reader that stops after its first reply (`ls -f | head`) costs none.
    pub fn readdir_ahead(&self, fh: u64) {
        let Some(dh) = self.dirs.lock().get(&fh).cloned() else {
            return;
        };
        let (id, pages) = {
            let d = dh.lock();
            if d.replies < 2 || d.eof {
                return;
            }
            let ns = self.ns.lock();
            let idle = walk_idle_limit(self.opts.metadata_ttl);
            match (d.walk, ns.walk.as_ref()) {
                (Some(id), Some(w))
                    if w.id == id && !w.done && w.pages > 0 && w.last_page.elapsed() < idle =>
                {
                    (id, w.pages)
                }
                _ => return,
            }
        };
        // An error is logged; the reader meets it (or a fresh walk) on its next call.
        let _ = self.walk_until(Some(id), |ns| match ns.walk.as_ref() {
            Some(w) => w.id != id || w.pages > pages || w.done,
            None => true,
        });
    }

    pub fn releasedir(&self, fh: u64) {
        let dh = self.dirs.lock().remove(&fh);
        if let Some(dh) = dh {
            let ino = dh.lock().ino;
            let mut ns = self.ns.lock();
            ns.close_ref(ino);
            ns.listing_closed(ino);
        }
    }

    pub fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, umask: u32) -> Result<Attr, FsError> {
        self.check_ro()?;
        let name = self.component(name)?;
        let ino = {
            let mut ns = self.ns.lock();
            ns.live_dir(parent)?;
            if ns.child(parent, name).is_some() {
                return Err(FsError::Exists);
            }
            ns.add_local(parent, name, Kind::Dir, mode & !umask)
        };
        self.attr_of(ino)
    }

    pub fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        self.check_ro()?;
        let ino = self.child_or_lookup(parent, name)?;
        let check = |ns: &Namespace| -> Result<(), FsError> {
            let n = ns.live_dir(ino)?;
            if !n.children.is_empty() {
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
        keep_emptied_dir(&mut ns, parent);
        Ok(())
    }

    fn child_or_lookup(&self, parent: Ino, name: &OsStr) -> Result<Ino, FsError> {
        let s = self.component(name)?;
        if let Some(c) = self.ns.lock().child(parent, s) {
            return Ok(c);
        }
        Ok(self.lookup(parent, name)?.ino)
    }

    // ----- reading --------------------------------------------------------------------------

    /// The body of `path`, from the data cache when `accept` takes the cached version, else by
    /// one GET (shared with concurrent callers). The namespace learns the size and headers.
    fn download(&self, path: &str, accept: impl Fn(u64) -> bool) -> Result<Media, FsError> {
        match self.content.begin(path, accept) {
            Fetch::Cached(m) => Ok(m),
            Fetch::Joined(f) => f.wait(),
            Fetch::Lead(leader) => self.lead_download(path, leader, None),
        }
    }

    /// Download `path` as the one leader of its flight; `early` is a reader answered as soon as
    /// its bytes are in (or with the outcome, if that comes first).
    fn lead_download(
        &self,
        path: &str,
        leader: Leader<'_>,
        early: Option<Early>,
    ) -> Result<Media, FsError> {
        let flight = leader.flight().clone();
        let mut sink = FlightSink::new(&flight, early);
        let result = self
            .api
            .get_into(path, &mut sink)
            .map_err(|e| self.api_error("download", path, e))
            .and_then(|headers| {
                let body = sink
                    .finish()
                    .inspect_err(|e| log::warn!("download of {path:?}: {e}"))?;
                self.record_download(path, Media { body, ..headers })
            });
        if let Err(FsError::Api {
            source: ApiError::NotFound,
            ..
        }) = &result
        {
            self.forget_file(path);
        }
        let served = flight.served();
        if served || result.is_err() {
            let mut ns = self.ns.lock();
            if let Some(n) = ns.resolve(path).and_then(|i| ns.node_mut(i)) {
                match &result {
                    // Bytes were handed out while the body came in: the kernel caches them.
                    Ok((_, version)) if served => n.kernel_version = *version,
                    // What the kernel caches of a download that failed belongs to no version.
                    Err(_) if served => n.kernel_version = 0,
                    _ => {}
                }
            }
        }
        let result = leader.finish(result);
        sink.answer_early(&result);
        result
    }

    /// A GET brought `m` for `path`: the namespace learns its size and headers. Returns the
    /// media and the content version to cache it under.
    fn record_download(&self, path: &str, m: Media) -> Result<(Media, u64), FsError> {
        let len = m.body.len() as u64;
        let old = self.content.peek(path);
        let mut ns = self.ns.lock();
        let mut dropped = Vec::new();
        let ino = ns.remote_file(path, len, None, Instant::now(), &mut dropped);
        let version = match ino {
            Some(ino) => {
                ns.local_change(ino);
                let v = ns.next_version();
                let n = ns.node_mut(ino).ok_or(FsError::NotFound)?;
                let changed = match &old {
                    Some((om, _)) => om.body != m.body,
                    None => n.kernel_version != 0,
                };
                if changed {
                    n.content_version = v;
                    n.mtime = SystemTime::now();
                    n.ctime = n.mtime;
                }
                n.body_checked_at = Some(Instant::now());
                n.content_type = m.content_type.clone().or(Some(String::new()));
                n.cache_control = m.cache_control.clone();
                n.content_version
            }
            None => 0,
        };
        drop(ns);
        for p in &dropped {
            self.content.remove(p);
        }
        Ok((m, version))
    }

    fn handle(&self, fh: u64) -> Result<Arc<Handle>, FsError> {
        self.handles
            .lock()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    /// What a reading handle reads now: a download that failed within [`FAILED_READ_GRACE`] is
    /// its error; an older failure is tried again.
    fn current_body(h: &Handle) -> Result<HandleBody, FsError> {
        match h.body.lock().clone() {
            HandleBody::Failed(e, at) if at.elapsed() < FAILED_READ_GRACE => Err(e),
            HandleBody::Failed(..) => Ok(HandleBody::None),
            other => Ok(other),
        }
    }

    /// The whole body a reading handle reads, downloaded on first use.
    fn body_for(&self, h: &Handle) -> Result<Bytes, FsError> {
        let media = match Self::current_body(h)? {
            HandleBody::Failed(e, _) => Err(e),
            HandleBody::Ready(b) => return Ok(b),
            HandleBody::Flight(f) => f.wait(),
            HandleBody::None => {
                let (path, version) = self.path_version(h.ino)?;
                self.download(&path, |v| v == version)
            }
        };
        let media = media.inspect_err(|_| self.drop_failed_flight(h))?;
        let mut body = h.body.lock();
        if let HandleBody::Ready(b) = &*body {
            return Ok(b.clone());
        }
        *body = HandleBody::Ready(media.body.clone());
        Ok(media.body)
    }

    fn path_version(&self, ino: Ino) -> Result<(String, u64), FsError> {
        let ns = self.ns.lock();
        let n = ns.live(ino).ok_or(FsError::NotFound)?;
        Ok((n.path.clone(), n.content_version))
    }

    /// After a failed download, the handle's reads after [`FAILED_READ_GRACE`] try again,
    /// unless the flight had handed out bytes already: a new download could bring another
    /// version, and one reader must never see two.
    fn drop_failed_flight(&self, h: &Handle) {
        let mut body = h.body.lock();
        if let HandleBody::Flight(f) = &*body {
            if let Some(Err(e)) = f.result() {
                if !f.served() {
                    *body = HandleBody::Failed(e, Instant::now());
                }
            }
        }
    }

    /// Fill a write buffer with the current bytes of its file (once).
    fn load_buffer(&self, ino: Ino, buf: &WriteBuf) -> Result<(), FsError> {
        let (path, version, remote, size) = {
            let ns = self.ns.lock();
            let n = ns.node(ino).ok_or(FsError::NotFound)?;
            (n.path.clone(), n.content_version, n.remote, n.size)
        };
        let body = if !remote || size == 0 {
            Bytes::new()
        } else {
            match self.download(&path, |v| v == version) {
                Ok(m) => m.body,
                // Gone from the server meanwhile: the writer starts from an empty file.
                Err(FsError::Api {
                    source: ApiError::NotFound,
                    ..
                }) => Bytes::new(),
                Err(e) => return Err(e),
            }
        };
        let mut st = buf.state.lock();
        if !st.loaded {
            st.data = write::WriteData::from_bytes(body);
            st.loaded = true;
        }
        Ok(())
    }

    /// Open a file for thread `pid` (as the kernel names it; 0: unknown). Write access (or
    /// O_TRUNC) attaches the inode's write buffer. An open after the TTL checks the bytes that
    /// it would serve from a cache (close-to-open consistency, see [`MediaFs::revalidate_body`]).
    pub fn open(&self, ino: Ino, flags: i32, pid: u32) -> Result<Opened, FsError> {
        let acc = flags & libc::O_ACCMODE;
        let trunc = flags & libc::O_TRUNC != 0;
        let writes = acc == libc::O_WRONLY || acc == libc::O_RDWR || trunc;
        if writes {
            self.check_ro()?;
        }
        {
            let ns = self.ns.lock();
            let n = ns.live(ino).ok_or(FsError::NotFound)?;
            if n.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
        }
        if !trunc {
            self.revalidate_body(ino)?;
        }
        let buf = if writes {
            Some(self.attach_buffer(ino, trunc)?)
        } else {
            None
        };
        let dirty = buf.is_some() || self.buffer_of(ino).is_some_and(|b| b.state.lock().dirty);
        // The kernel keeps its page cache only when this handle can serve the same bytes for
        // whatever the kernel no longer has: the handle holds the cached body of that version,
        // so one reader never sees two versions.
        let kept_body = {
            let mut ns = self.ns.lock();
            match ns.node_mut(ino) {
                Some(n) => {
                    let kept =
                        (!dirty && n.kernel_version != 0 && n.kernel_version == n.content_version)
                            .then(|| self.content.peek(&n.path))
                            .flatten()
                            .filter(|(_, v)| *v == n.content_version);
                    if kept.is_none() {
                        // The kernel drops its cache; what it caches next is what we serve.
                        n.kernel_version = 0;
                    }
                    kept.map(|(m, _)| m.body)
                }
                None => None,
            }
        };
        let keep_cache = kept_body.is_some();
        let no_flush = buf.is_none();
        let body = kept_body.map_or(HandleBody::None, HandleBody::Ready);
        let fh = self.add_handle(ino, flags, buf, pid, body);
        Ok(Opened {
            fh,
            keep_cache,
            no_flush,
            direct_io: acc == libc::O_WRONLY,
        })
    }

    /// Close-to-open consistency: bytes this mount or the kernel would serve from a cache, and
    /// a size trusted past the TTL, are checked by one GET once they are older than the TTL
    /// (the API has no validators, so the GET brings the body, which the read then uses). When
    /// they changed, the content version moves on, so the open does not keep the kernel's page
    /// cache. A write buffer is the truth while it exists; bytes nobody caches, of a size known
    /// within the TTL, need no check (the first read fetches them).
    fn revalidate_body(&self, ino: Ino) -> Result<(), FsError> {
        if self.buffer_of(ino).is_some() {
            return Ok(());
        }
        let path = {
            let ns = self.ns.lock();
            let Some(n) = ns.live(ino) else {
                return Err(FsError::NotFound);
            };
            let ttl = self.opts.metadata_ttl;
            let cached = n.kernel_version != 0
                || self
                    .content
                    .peek(&n.path)
                    .is_some_and(|(_, v)| v == n.content_version);
            // A size past the TTL (trusted on a multi-page account) is checked too: the read
            // that follows would fetch the body anyway, and the kernel reads by that size.
            let unchecked = cached || !fresh(n.verified_at, ttl);
            if !n.remote || !unchecked || fresh(n.body_checked_at, ttl) {
                return Ok(());
            }
            n.path.clone()
        };
        match self.download(&path, |_| false) {
            Ok(_) => Ok(()),
            Err(FsError::Api {
                source: ApiError::NotFound,
                ..
            }) => Err(FsError::NotFound),
            Err(e) => Err(e),
        }
    }

    fn add_handle(
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
        };
        self.handles.lock().insert(fh, Arc::new(h));
        fh
    }

    /// Up to `size` bytes at `offset` (fewer at the end of the file).
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Bytes, FsError> {
        let out = Arc::new(Mutex::new(None));
        let slot = out.clone();
        self.read_with(fh, offset, size, move |r| *slot.lock() = Some(r));
        let answer = out.lock().take();
        answer.unwrap_or_else(|| Err(FsError::Io("the read was not answered".into())))
    }

    /// [`MediaFs::read`], answered through `reply` (exactly once) as soon as the bytes are
    /// there. On a cold cache the caller's thread then stays to download the rest of the media,
    /// which the next reads (on other threads) get as it arrives.
    pub fn read_with(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
        reply: impl FnOnce(Result<Bytes, FsError>) + Send + 'static,
    ) {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply(Err(e)),
        };
        match self.read_buffer(&h, offset, size) {
            Ok(Some(b)) => return reply(Ok(b)),
            Ok(None) => {}
            Err(e) => return reply(Err(e)),
        }
        let current = match Self::current_body(&h) {
            Ok(b) => b,
            Err(e) => return reply(Err(e)),
        };
        match current {
            HandleBody::Failed(e, _) => reply(Err(e)),
            HandleBody::Ready(body) => {
                self.mark_served(&h);
                reply(Ok(content::slice(&body, offset, size)))
            }
            HandleBody::Flight(f) => {
                if let Some(Ok(m)) = f.result() {
                    *h.body.lock() = HandleBody::Ready(m.body.clone());
                    self.mark_served(&h);
                    return reply(Ok(content::slice(&m.body, offset, size)));
                }
                let r = f.read(offset, size);
                if r.is_err() {
                    self.drop_failed_flight(&h);
                }
                reply(r)
            }
            HandleBody::None => {
                let (path, version) = match self.path_version(h.ino) {
                    Ok(pv) => pv,
                    Err(e) => return reply(Err(e)),
                };
                match self.content.begin(&path, |v| v == version) {
                    Fetch::Cached(m) => {
                        *h.body.lock() = HandleBody::Ready(m.body.clone());
                        self.mark_served(&h);
                        reply(Ok(content::slice(&m.body, offset, size)))
                    }
                    Fetch::Joined(f) => {
                        *h.body.lock() = HandleBody::Flight(f.clone());
                        let r = f.read(offset, size);
                        if r.is_err() {
                            self.drop_failed_flight(&h);
                        }
                        reply(r)
                    }
                    Fetch::Lead(leader) => {
                        *h.body.lock() = HandleBody::Flight(leader.flight().clone());
                        let early = Early {
                            offset,
                            size,
                            reply: Box::new(reply),
                        };
                        match self.lead_download(&path, leader, Some(early)) {
                            Ok(m) => *h.body.lock() = HandleBody::Ready(m.body),
                            Err(_) => self.drop_failed_flight(&h),
                        }
                    }
                }
            }
        }
    }

    /// Bytes from the write buffer of the handle's inode, when it has a loaded one.
    fn read_buffer(&self, h: &Handle, offset: u64, size: u32) -> Result<Option<Bytes>, FsError> {
        let Some(buf) = h.buf.clone().or_else(|| self.buffer_of(h.ino)) else {
            return Ok(None);
        };
        loop {
            {
                let st = buf.state.lock();
                if st.loaded {
                    return Ok(Some(Bytes::copy_from_slice(st.read(offset, size))));
                }
            }
            if h.buf.is_none() {
                return Ok(None); // someone else's unloaded buffer: read the media itself
            }
            self.load_buffer(h.ino, &buf)?;
        }
    }

    /// The first read of a handle from a whole body: the kernel's page cache now holds this
    /// version (for FOPEN_KEEP_CACHE next time).
    fn mark_served(&self, h: &Handle) {
        if !h.served.swap(true, Ordering::Relaxed) {
            if let Some(n) = self.ns.lock().node_mut(h.ino) {
                if !n.removed {
                    n.kernel_version = n.content_version;
                }
            }
        }
    }

    // ----- writing --------------------------------------------------------------------------

    /// The inode's write buffer, made if needed, with one more handle on it.
    fn attach_buffer(&self, ino: Ino, trunc: bool) -> Result<Arc<WriteBuf>, FsError> {
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
            if !trunc && !st.loaded {
                let ns = self.ns.lock();
                if ns.node(ino).is_some_and(|n| n.size == 0 || !n.remote) {
                    st.loaded = true;
                }
            }
        }
        if trunc {
            self.touch_mtime(ino);
        }
        Ok(buf)
    }

    /// One handle less on a write buffer; the last one takes it out of the table.
    /// Returns whether it was the last.
    fn detach_buffer(&self, ino: Ino, buf: &Arc<WriteBuf>) -> bool {
        let last = {
            let mut st = buf.state.lock();
            st.handles = st.handles.saturating_sub(1);
            st.handles == 0
        };
        if last {
            let mut map = self.writes.lock();
            let st = buf.state.lock();
            if st.handles == 0 && map.get(&ino).is_some_and(|b| Arc::ptr_eq(b, buf)) {
                map.remove(&ino);
            }
        }
        last
    }

    /// Write `data` at `offset` (at the end for O_APPEND handles).
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        self.check_ro()?;
        let h = self.handle(fh)?;
        let buf = h.buf.clone().ok_or(FsError::BadHandle)?;
        let limit = self.opts.max_size;
        if !h.append && offset.saturating_add(data.len() as u64) > limit {
            let end = offset.saturating_add(data.len() as u64);
            buf.state.lock().oversize = Some(end);
            return Err(too_large(&self.path_of(h.ino), end, limit));
        }
        loop {
            {
                let mut st = buf.state.lock();
                if st.loaded {
                    let at = if h.append {
                        st.data.len() as u64
                    } else {
                        offset
                    };
                    let end = at.saturating_add(data.len() as u64);
                    if end > limit {
                        st.oversize = Some(end);
                        drop(st);
                        return Err(too_large(&self.path_of(h.ino), end, limit));
                    }
                    let n = st.write_at(at, data)?;
                    drop(st);
                    self.touch_mtime(h.ino);
                    return Ok(n as u32);
                }
            }
            self.load_buffer(h.ino, &buf)?;
        }
    }

    fn path_of(&self, ino: Ino) -> String {
        self.ns
            .lock()
            .node(ino)
            .map(|n| n.path.clone())
            .unwrap_or_default()
    }

    /// Upload the buffer if `cause` asks for it (see [`write`]): one PUT of its current bytes,
    /// which alone makes it clean. A failure leaves it dirty, keeps its bytes in the recovery
    /// directory until an upload succeeds, and is returned (to `close`).
    fn upload(&self, ino: Ino, buf: &WriteBuf, cause: UploadCause) -> Result<(), FsError> {
        let _one_at_a_time = buf.upload.lock();
        let (bytes, generation) = {
            let mut st = buf.state.lock();
            if !st.wants_upload(cause) {
                return Ok(());
            }
            if let Some(size) = st.oversize {
                // The program already got EFBIG for the write that crossed the limit; what it
                // wrote before is a truncated file, which must not replace the media.
                return Err(FsError::TooLarge {
                    size,
                    limit: self.opts.max_size,
                });
            }
            (st.data.freeze(), st.generation)
        };
        let Some(target) = self.ns.lock().live(ino).map(|n| upload_target(n, &n.path)) else {
            return Ok(());
        };
        let path = target.path.clone();
        match self.put_media(target, bytes.clone()) {
            Ok(media) => {
                let superseded = buf.state.lock().uploaded(generation);
                if let Some(file) = superseded {
                    write::remove_recovery(&file);
                    log::info!(
                        "{path:?} is uploaded after all; its copy {} is removed",
                        file.display()
                    );
                }
                let version = self.ns.lock().uploaded(ino, &media);
                self.content.insert(&path, media, version);
                Ok(())
            }
            Err(e) => {
                let mut st = buf.state.lock();
                if st.saved_generation() != Some(generation) && !st.unlinked {
                    let file = self.recover(&path, &bytes, &e);
                    st.saved = file.map(|f| (generation, f));
                }
                Err(e)
            }
        }
    }

    /// One PUT of `bytes` as `target` says; what the server then holds.
    fn put_media(&self, target: UploadTarget, bytes: Bytes) -> Result<Media, FsError> {
        let UploadTarget {
            path,
            content_type,
            cache_control,
        } = target;
        self.api
            .put(
                &path,
                bytes.clone(),
                &content_type,
                cache_control.as_deref(),
            )
            .map_err(|e| self.api_error("upload", &path, e))?;
        Ok(Media {
            body: bytes,
            content_type: Some(content_type),
            cache_control,
        })
    }

    /// Save the bytes of a failed upload and say, once, where and how to upload them again.
    /// The file they are saved in, if saving worked.
    fn recover(&self, path: &str, bytes: &[u8], err: &FsError) -> Option<PathBuf> {
        let mnt = self
            .mountpoint
            .lock()
            .clone()
            .unwrap_or_else(|| PathBuf::from("MOUNTPOINT"));
        match save_recovery(&self.opts.recovery_dir, path, bytes) {
            Ok(file) => {
                log::error!(
                    "the upload of {path:?} failed ({err}); its {} bytes are kept in {} (every \
                     later fsync or close tries again); to upload them yourself: {}",
                    bytes.len(),
                    file.display(),
                    write::reupload_command(&file, &mnt.join(path))
                );
                Some(file)
            }
            Err(io) => {
                log::error!(
                    "the upload of {path:?} failed ({err}), and saving its {} bytes in {} failed \
                     too ({io}): they are only in memory until an upload succeeds or the file \
                     is closed",
                    bytes.len(),
                    self.opts.recovery_dir.display()
                );
                None
            }
        }
    }

    /// Called on every close of a descriptor (FUSE FLUSH): upload if the handle's buffer
    /// changed, unless a close that will upload is sure to come: the process that opened the
    /// handle still runs and holds another descriptor of the file. So the shell's closes of a
    /// redirected file (`echo x > f`, a loop of commands, a writer that forks) upload once, at
    /// the last of them, and no empty or half-written media appears on the way; and a close that
    /// returns 0 with no such descriptor left means the server holds the bytes.
    pub fn flush(&self, fh: u64) -> Result<(), FsError> {
        let h = self.handle(fh)?;
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
        self.upload(h.ino, buf, UploadCause::Sync)
    }

    /// Whether process `pid` holds a descriptor of the file `ino` (when that can be told).
    fn held_by(&self, pid: u32, ino: Ino) -> bool {
        let Some(mnt) = self.mountpoint.lock().clone() else {
            return false;
        };
        let path = mnt.join(self.path_of(ino));
        process::holds(pid, &path)
    }

    /// `fsync`: upload whatever is dirty, now.
    pub fn fsync(&self, fh: u64) -> Result<(), FsError> {
        let h = self.handle(fh)?;
        match &h.buf {
            Some(buf) => self.upload(h.ino, buf, UploadCause::Sync),
            None => Ok(()),
        }
    }

    /// The release of a handle: upload if still dirty (the last one: unless those very bytes
    /// already failed for good, and are in the recovery directory); the buffer goes with its
    /// last handle.
    pub fn release(&self, fh: u64) -> Result<(), FsError> {
        let Some(h) = self.handles.lock().remove(&fh) else {
            return Err(FsError::BadHandle);
        };
        let mut result = Ok(());
        if let Some(buf) = &h.buf {
            let last = buf.state.lock().handles == 1;
            let cause = if last {
                UploadCause::LastRelease
            } else {
                UploadCause::Sync
            };
            result = self.upload(h.ino, buf, cause);
            if self.detach_buffer(h.ino, buf) {
                // A new file whose upload failed was never on the server: it disappears.
                let mut ns = self.ns.lock();
                if ns
                    .live(h.ino)
                    .is_some_and(|n| !n.remote && n.kind == Kind::File)
                {
                    ns.detach(h.ino);
                }
            }
        }
        self.ns.lock().close_ref(h.ino);
        result
    }

    /// Create and open a new file for thread `pid`. It is visible at once and uploaded (even
    /// empty) by the first flush after a write, or else by its last release.
    pub fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        pid: u32,
    ) -> Result<(Attr, Opened), FsError> {
        self.check_ro()?;
        let name = self.component(name)?;
        let existing = {
            let mut ns = self.ns.lock();
            ns.live_dir(parent)?;
            match ns.child(parent, name) {
                Some(c) => Some(c),
                None => {
                    let ino = ns.add_local(parent, name, Kind::File, mode & !umask);
                    drop(ns);
                    let buf = self.attach_buffer(ino, true)?;
                    let fh = self.add_handle(ino, flags, Some(buf), pid, HandleBody::None);
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
                let opened = self.open(c, flags, pid)?;
                Ok((self.attr_of(c)?, opened))
            }
            None => Err(FsError::NotFound),
        }
    }

    /// Upload every dirty buffer (before unmounting); what cannot be uploaded is in the recovery
    /// directory.
    pub fn flush_all(&self) -> Result<(), FsError> {
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

    // ----- removing and renaming ------------------------------------------------------------

    /// Give open readers of `ino` the bytes before the media goes away.
    fn preload_readers(&self, ino: Ino) {
        let readers: Vec<Arc<Handle>> = self
            .handles
            .lock()
            .values()
            .filter(|h| {
                h.ino == ino && h.buf.is_none() && !matches!(*h.body.lock(), HandleBody::Ready(_))
            })
            .cloned()
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

    /// Remove a file: one DELETE. Handles still open keep reading the old bytes.
    pub fn unlink(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        self.check_ro()?;
        let ino = self.child_or_lookup(parent, name)?;
        let path = {
            let ns = self.ns.lock();
            let n = ns.live(ino).ok_or(FsError::NotFound)?;
            if n.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            n.path.clone()
        };
        self.preload_readers(ino);
        self.api
            .delete(&path)
            .map_err(|e| self.api_error("delete", &path, e))?;
        self.removed_locally(ino, &path);
        Ok(())
    }

    /// Our own DELETE (or rename) took `ino` away from `path`.
    fn removed_locally(&self, ino: Ino, path: &str) {
        if let Some(buf) = self.buffer_of(ino) {
            buf.state.lock().unlinked = true;
        }
        {
            let mut ns = self.ns.lock();
            let parent = ns.node(ino).map(|n| n.parent);
            ns.detach(ino);
            ns.local_change_path(path);
            if let Some(p) = parent {
                keep_emptied_dir(&mut ns, p);
            }
        }
        self.content.remove(path);
    }

    /// The bytes to copy for a rename, and the write buffer generation they are (None: not from a
    /// write buffer).
    fn bytes_of(&self, ino: Ino) -> Result<(Bytes, Option<u64>), FsError> {
        if let Some(buf) = self.buffer_of(ino) {
            loop {
                {
                    let mut st = buf.state.lock();
                    if st.loaded {
                        return Ok((st.data.freeze(), Some(st.generation)));
                    }
                }
                self.load_buffer(ino, &buf)?;
            }
        }
        self.revalidate_body(ino)?;
        let (path, version) = {
            let ns = self.ns.lock();
            let n = ns.node(ino).ok_or(FsError::NotFound)?;
            (n.path.clone(), n.content_version)
        };
        Ok((self.download(&path, |v| v == version)?.body, None))
    }

    /// Copy one file to `new_path` on the server, then delete the old name. On failure, the
    /// error and, when the copy was made before the delete failed, the copy.
    #[allow(clippy::result_large_err)]
    fn move_media(&self, ino: Ino, new_path: &str) -> Result<Media, (FsError, Option<Media>)> {
        let (old_path, target) = {
            let ns = self.ns.lock();
            let n = ns.node(ino).ok_or((FsError::NotFound, None))?;
            (n.path.clone(), upload_target(n, new_path))
        };
        let (bytes, generation) = self.bytes_of(ino).map_err(|e| (e, None))?;
        let media = self.put_media(target, bytes).map_err(|e| (e, None))?;
        // The copy holds the buffer's bytes: it is clean unless written since.
        if let (Some(buf), Some(generation)) = (self.buffer_of(ino), generation) {
            if let Some(file) = buf.state.lock().uploaded(generation) {
                write::remove_recovery(&file);
            }
        }
        if let Err(e) = self.api.delete(&old_path) {
            return Err((self.api_error("delete", &old_path, e), Some(media)));
        }
        Ok(media)
    }

    /// Rename a file or directory (copy + delete of each media: the API has no rename).
    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<(), FsError> {
        self.check_ro()?;
        if flags & RENAME_EXCHANGE != 0 || flags & !RENAME_NOREPLACE != 0 {
            return Err(FsError::Invalid("unsupported rename flags".into()));
        }
        let new_s = self.component(newname)?;
        let src = self.child_or_lookup(parent, name)?;
        let dst = match self.child_or_lookup(newparent, newname) {
            Ok(i) => Some(i),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if dst == Some(src) {
            return Ok(());
        }
        if dst.is_some() && flags & RENAME_NOREPLACE != 0 {
            return Err(FsError::Exists);
        }
        let (src_kind, dst_kind) = {
            let ns = self.ns.lock();
            ns.live_dir(newparent)?;
            let sk = ns.live(src).ok_or(FsError::NotFound)?.kind;
            let dk = dst.and_then(|d| ns.live(d)).map(|n| n.kind);
            if sk == Kind::Dir && ns.is_within(newparent, src) {
                return Err(FsError::Invalid(
                    "cannot move a directory into itself".into(),
                ));
            }
            (sk, dk)
        };
        if let (Kind::Dir, Some(d), Some(Kind::Dir)) = (src_kind, dst, dst_kind) {
            // Only a fresh complete listing can say whether the target is empty: media may have
            // come or gone elsewhere (free when the listing is fresh; rename_dir needs it too).
            self.ensure_complete()?;
            if self
                .ns
                .lock()
                .live(d)
                .is_some_and(|n| !n.children.is_empty())
            {
                return Err(FsError::NotEmpty);
            }
        }
        match (src_kind, dst_kind) {
            (Kind::File, Some(Kind::Dir)) => Err(FsError::IsDir),
            (Kind::Dir, Some(Kind::File)) => Err(FsError::NotDir),
            (Kind::File, _) => self.rename_file(src, newparent, new_s, dst),
            (Kind::Dir, _) => self.rename_dir(src, newparent, new_s, dst),
        }
    }

    fn rename_file(
        &self,
        src: Ino,
        newparent: Ino,
        newname: &str,
        dst: Option<Ino>,
    ) -> Result<(), FsError> {
        let (old_path, new_path, remote) = {
            let ns = self.ns.lock();
            let n = ns.live(src).ok_or(FsError::NotFound)?;
            let new_path = ns.join(newparent, newname).ok_or(FsError::NotFound)?;
            (n.path.clone(), new_path, n.remote)
        };
        if let Some(d) = dst {
            self.preload_readers(d);
        }
        if !remote {
            // Never uploaded: nothing to copy; its buffer will upload under the new name.
            if let Some(buf) = self.buffer_of(src) {
                buf.state.lock().mark_for_upload();
            }
            self.finish_rename(src, dst, newparent, newname, &old_path, None);
            return Ok(());
        }
        match self.move_media(src, &new_path) {
            Ok(media) => {
                self.finish_rename(src, dst, newparent, newname, &old_path, Some(&media));
                Ok(())
            }
            Err((e, Some(copy))) => {
                // The copy exists, the old name too: show both.
                self.record_copy(&new_path, &copy);
                Err(e)
            }
            Err((e, None)) => Err(e),
        }
    }

    /// A copy of a media was made at `path` but its source stays.
    fn record_copy(&self, path: &str, media: &Media) {
        let version = {
            let mut ns = self.ns.lock();
            let mut dropped = Vec::new();
            let ino = ns.remote_file(
                path,
                media.body.len() as u64,
                None,
                Instant::now(),
                &mut dropped,
            );
            ino.map(|i| ns.uploaded(i, media))
        };
        if let Some(v) = version {
            self.content.insert(path, media.clone(), v);
        }
    }

    /// Move `src` into place in the namespace after the server side is done.
    fn finish_rename(
        &self,
        src: Ino,
        dst: Option<Ino>,
        newparent: Ino,
        newname: &str,
        old_path: &str,
        media: Option<&Media>,
    ) {
        if let Some(d) = dst {
            if let Some(buf) = self.buffer_of(d) {
                buf.state.lock().unlinked = true;
            }
        }
        let (new_path, version) = {
            let mut ns = self.ns.lock();
            let old_parent = ns.node(src).map(|n| n.parent);
            if let Some(d) = dst {
                ns.detach(d);
            }
            ns.move_node(src, newparent, newname);
            ns.local_change(src);
            ns.local_change_path(old_path);
            if let Some(p) = old_parent {
                keep_emptied_dir(&mut ns, p);
            }
            let version = media.map(|m| ns.uploaded(src, m));
            (
                ns.node(src).map(|n| n.path.clone()).unwrap_or_default(),
                version,
            )
        };
        self.content.remove(old_path);
        if let (Some(m), Some(v)) = (media, version) {
            self.content.insert(&new_path, m.clone(), v);
        }
    }

    fn rename_dir(
        &self,
        src: Ino,
        newparent: Ino,
        newname: &str,
        dst: Option<Ino>,
    ) -> Result<(), FsError> {
        // Every media under the directory must be known to move them all.
        self.ensure_complete()?;
        let (src_path, new_dir, files) = {
            let ns = self.ns.lock();
            let n = ns.live(src).ok_or(FsError::NotFound)?;
            let new_dir = ns.join(newparent, newname).ok_or(FsError::NotFound)?;
            let files: Vec<(Ino, String, bool)> = ns
                .files_under(src)
                .into_iter()
                .filter_map(|i| ns.node(i).map(|f| (i, f.path.clone(), f.remote)))
                .collect();
            (n.path.clone(), new_dir, files)
        };
        let mut moved: Vec<(Ino, String, Option<Media>)> = Vec::new();
        let mut failure = None;
        for (ino, path, remote) in &files {
            let new_path = format!("{new_dir}{}", &path[src_path.len()..]);
            if !remote {
                if let Some(buf) = self.buffer_of(*ino) {
                    buf.state.lock().mark_for_upload();
                }
                moved.push((*ino, path.clone(), None));
                continue;
            }
            match self.move_media(*ino, &new_path) {
                Ok(media) => moved.push((*ino, path.clone(), Some(media))),
                Err((e, copy)) => {
                    if let Some(c) = copy {
                        self.record_copy(&new_path, &c);
                    }
                    failure = Some(e);
                    break;
                }
            }
        }
        match failure {
            None => {
                if let Some(d) = dst {
                    self.ns.lock().detach(d);
                }
                let mut inserts = Vec::new();
                {
                    let mut ns = self.ns.lock();
                    let old_parent = ns.node(src).map(|n| n.parent);
                    ns.move_node(src, newparent, newname);
                    ns.local_change(src);
                    for (ino, old, media) in &moved {
                        ns.local_change_path(old);
                        if let Some(m) = media {
                            let v = ns.uploaded(*ino, m);
                            let p = ns.node(*ino).map(|n| n.path.clone()).unwrap_or_default();
                            inserts.push((p, m.clone(), v));
                        }
                    }
                    if let Some(p) = old_parent {
                        keep_emptied_dir(&mut ns, p);
                    }
                }
                for (_, old, _) in &files {
                    self.content.remove(old);
                }
                for (p, m, v) in inserts {
                    self.content.insert(&p, m, v);
                }
                Ok(())
            }
            Some(e) => {
                // Move what did move, one file at a time; the rest stays where it was.
                for (ino, old, media) in &moved {
                    let Some(m) = media else { continue };
                    let new_path = format!("{new_dir}{}", &old[src_path.len()..]);
                    let mut ns = self.ns.lock();
                    let parent_path = new_path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    let base = new_path.rsplit('/').next().unwrap_or("");
                    let Some(dir) = ensure_dirs(&mut ns, parent_path) else {
                        continue;
                    };
                    let old_parent = ns.node(*ino).map(|n| n.parent);
                    if let Some(existing) = ns.child(dir, base) {
                        ns.detach(existing);
                    }
                    ns.move_node(*ino, dir, base);
                    ns.local_change_path(old);
                    let v = ns.uploaded(*ino, m);
                    if let Some(p) = old_parent {
                        keep_emptied_dir(&mut ns, p);
                    }
                    drop(ns);
                    self.content.remove(old);
                    self.content.insert(&new_path, m.clone(), v);
                }
                Err(e)
            }
        }
    }

    // ----- the rest -------------------------------------------------------------------------

    /// Sizes for `df`: the bytes of the media known, and a large free space.
    pub fn statfs(&self) -> StatFs {
        const BSIZE: u64 = 4096;
        let (files, bytes) = self.ns.lock().totals();
        let free = (1u64 << 50) / BSIZE; // 1 PiB: the store has no documented total
        StatFs {
            blocks: bytes.div_ceil(BSIZE) + free,
            bfree: free,
            bavail: free,
            files,
            ffree: 1 << 32,
            bsize: BSIZE as u32,
            namelen: NAME_MAX as u32,
            frsize: BSIZE as u32,
        }
    }

    fn file_path(&self, ino: Ino) -> Result<String, FsError> {
        let ns = self.ns.lock();
        let n = ns.node(ino).ok_or(FsError::NotFound)?;
        if n.kind == Kind::Dir {
            return Err(FsError::NoAttr);
        }
        Ok(n.path.clone())
    }

    /// Whether the headers stored on the server are known for `ino`.
    fn headers_known(&self, ino: Ino) -> bool {
        self.ns
            .lock()
            .node(ino)
            .is_some_and(|n| n.content_type.is_some() || !n.remote)
    }

    /// The value of an extended attribute.
    ///
    /// Only the `user.` namespace exists here: a name in any other (`security.selinux`,
    /// `system.posix_acl_access`, ...) is `ENOTSUP`, not `ENODATA`. That is the truth (no labels,
    /// no ACLs) and it is what lets `ls -l` ask once per mount instead of twice per file: ls
    /// remembers a device that answered "not supported", never one that answered "no data".
    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>, FsError> {
        let name = name.to_str().ok_or(FsError::NoAttr)?;
        if !name.starts_with("user.") {
            return Err(FsError::NotSupported);
        }
        if ![XATTR_URL, XATTR_CONTENT_TYPE, XATTR_CACHE_CONTROL].contains(&name) {
            return Err(FsError::NoAttr);
        }
        let path = self.file_path(ino)?;
        if name == XATTR_URL {
            return Ok(self.api.media_url(&path).into_bytes());
        }
        if !self.headers_known(ino) {
            self.download(&path, |_| true)?;
        }
        let ns = self.ns.lock();
        let n = ns.node(ino).ok_or(FsError::NotFound)?;
        let value = if name == XATTR_CONTENT_TYPE {
            n.content_type_override
                .clone()
                .or_else(|| n.content_type.clone().filter(|c| !c.is_empty()))
                .or_else(|| Some(content_type_for(&n.path)))
        } else {
            n.cache_control_override
                .clone()
                .or_else(|| n.cache_control.clone())
        };
        value.map(String::into_bytes).ok_or(FsError::NoAttr)
    }

    /// Names of the extended attributes, each followed by a NUL byte.
    /// Whether `cache_control` is listed depends on the media's headers, so a file whose headers
    /// are not known yet is fetched first (one GET, whose body the data cache keeps).
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        if !self.headers_known(ino) {
            if let Ok(path) = self.file_path(ino) {
                self.download(&path, |_| true)?;
            }
        }
        let ns = self.ns.lock();
        let n = ns.node(ino).ok_or(FsError::NotFound)?;
        let mut out = Vec::new();
        if n.kind == Kind::File {
            let mut names = vec![XATTR_URL, XATTR_CONTENT_TYPE];
            if n.cache_control_override.is_some() || n.cache_control.is_some() {
                names.push(XATTR_CACHE_CONTROL);
            }
            for name in names {
                out.extend_from_slice(name.as_bytes());
                out.push(0);
            }
        }
        Ok(out)
    }

    /// Set the content type or cache control used at the file's next upload.
    pub fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8]) -> Result<(), FsError> {
        self.check_ro()?;
        let name = name.to_str().ok_or(FsError::NotSupported)?;
        let value = std::str::from_utf8(value)
            .map_err(|_| FsError::Invalid("the value is not UTF-8".into()))?
            .trim_end_matches('\0')
            .to_string();
        self.file_path(ino).map_err(|e| match e {
            FsError::NoAttr => FsError::NotSupported,
            e => e,
        })?;
        let mut ns = self.ns.lock();
        let n = ns.node_mut(ino).ok_or(FsError::NotFound)?;
        match name {
            XATTR_CONTENT_TYPE => n.content_type_override = Some(value),
            XATTR_CACHE_CONTROL => n.cache_control_override = Some(value),
            XATTR_URL => return Err(FsError::NotPermitted),
            _ => return Err(FsError::NotSupported),
        }
        Ok(())
    }

    pub fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<(), FsError> {
        self.check_ro()?;
        let name = name.to_str().ok_or(FsError::NoAttr)?;
        let mut ns = self.ns.lock();
        let n = ns.node_mut(ino).ok_or(FsError::NotFound)?;
        let slot = match name {
            XATTR_CONTENT_TYPE => &mut n.content_type_override,
            XATTR_CACHE_CONTROL => &mut n.cache_control_override,
            XATTR_URL => return Err(FsError::NotPermitted),
            _ => return Err(FsError::NoAttr),
        };
        match slot.take() {
            Some(_) => Ok(()),
            None => Err(FsError::NoAttr),
        }
    }
}

/// A directory we emptied ourselves stays (so `rm -r` can still `rmdir` it).
fn keep_emptied_dir(ns: &mut Namespace, dir: Ino) {
    if dir == ROOT_INO {
        return;
    }
    if let Some(n) = ns.node_mut(dir) {
        if n.kind == Kind::Dir && n.children.is_empty() && !n.removed {
            n.explicit = true;
        }
    }
}

/// The directory at `path`, made (explicit) where missing; `None` if a file is in the way.
fn ensure_dirs(ns: &mut Namespace, path: &str) -> Option<Ino> {
    let mut cur = ROOT_INO;
    if path.is_empty() {
        return Some(cur);
    }
    for seg in path.split('/') {
        cur = match ns.child(cur, seg) {
            Some(c) if ns.node(c).is_some_and(|n| n.kind == Kind::Dir) => c,
            Some(_) => return None,
            None => {
                let d = ns.add(cur, seg, Kind::Dir);
                if let Some(n) = ns.node_mut(d) {
                    n.explicit = true;
                }
                d
            }
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests;
