//! The filesystem core: everything `bwmediafs` does, usable without FUSE.
//!
//! [`MediaFs`] answers file-system operations (lookup, readdir, open, read, write, flush, ...)
//! in terms of inodes and handles, and talks to the Media API only through `Arc<dyn MediaApi>`.
//! `crate::fuse` is a thin adapter over it; the unit tests drive it through the in-process
//! emulator store and assert the round-trip budget of the design exactly.
//!
//! `MediaFs` coordinates: the files of *rooms* (`impl MediaFs`, one group of operations each)
//! take the locks and make the network calls; the *state types* (`Namespace`, `ContentCache`,
//! `Handle`, `DirHandle`, `ReadAhead`, `WriteState`, `RenameFence`, `Times`, ...) own their
//! rules and never import from this file.
//!
//! The map (each file opens with its own hard cases; `docs/architecture.md` walks one read, one
//! write and one `ls -l` through them):
//! - `namespace`: names <-> inodes, implicit directories, the listing cache; owns its rules
//!   (what a page, an upload or a removal does to the tree);
//! - `listing`: listing walks and their freshness;
//! - `attr`: lookup, getattr, setattr, and when the server is asked again;
//! - `readdir` and `dir_handle`: directory streaming; an open listing and its offsets;
//! - `read`, `download` and `content`: opens and reads; downloads and what a GET tells; the data
//!   cache and single-flight downloads;
//! - `readahead`: scans across files and the fetches ahead of them;
//! - `handles`: what each open file reads, and the handle tables;
//! - `write_buffer`, `write`, `upload`: the write buffers and their dirty/generation state machine;
//!   writes, closes and syncs; uploads and the one rule for their headers;
//! - `recovery`: the recovery folder; `reuse`: the hint that a reused name may send the wrong
//!   media;
//! - `entries`, `rename`, `rename_dir`: create, mkdir, rmdir, unlink; file and directory renames;
//!   `rename_fence`: a directory rename and the changes of the server under it, kept apart;
//! - `xattr`: extended attributes and statfs; `headers`: header changes through them, sent at
//!   once;
//! - `times_file`: the state file that keeps the times of media across remounts;
//! - `options`, `types`: the settings and the small types of the interface;
//! - `pages`: the page buffers bodies and write buffers live in, recycled through a small pool;
//! - `process`: which process holds what open (for the rule of which close uploads);
//! - `error`: [`FsError`] and its one mapping to errno.
//!
//! Timestamps (`namespace::times`, and `times_file` for the state file): a media's mtime is the
//! time of the last write here (the upload at close does not move it), else the server's
//! `Last-Modified`, else when this machine first saw it (kept across remounts); it changes on
//! our own writes and when the server shows different content (a new size in a listing, other
//! bytes or another date from a GET). A time set with utimens is kept across remounts while
//! the bytes it was set on stay; chmod/chown values are kept for the life of the mount.
//!
//! Extended attributes (`xattr`): the `user.bandwidth.` ones are derived or sent to the server;
//! other `user.` ones are kept in memory for the life of the mount.
//!
//! Locks are never held across a network call, except the single-flight points: the per-media
//! download flight, the per-media upload lock and the listing walk lock. The complete order:
//! walk lock -> dir handle -> upload lock -> writes map -> write buffer state -> read-ahead
//! scans -> namespace -> {content cache, handle table, dir table, read-ahead queue}. The marks of
//! `rename_fence` (directory renames and the changes under them) are taken and waited for with none
//! of these held, and hold only the namespace inside; the times file's write lock too (the
//! namespace only hands out the records). With write-back, the journal's, the uploader's and the
//! staged deletions' own locks are taken last and held over no other; an upload waits for a
//! staged deletion of its name being sent (`Deletes::hold`) holding only its upload lock and a
//! fence mark, which that deletion never needs: a rename's deletion uploads the file it waits
//! for before it is taken (being sent), never after.

mod attr;
mod content;
mod dir_handle;
mod download;
mod entries;
mod error;
mod handles;
mod headers;
mod listing;
mod namespace;
mod options;
mod pages;
mod process;
mod read;
mod readahead;
mod readdir;
mod recovery;
mod rename;
mod rename_dir;
mod rename_fence;
mod reuse;
mod staging;
mod times_file;
mod types;
mod upload;
mod write;
mod write_buffer;
mod writeback;
mod xattr;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::api::{ApiError, Counters, MediaApi};
use content::ContentCache;
use dir_handle::DirHandle;
pub use error::FsError;
use error::{READ_AHEAD, UPLOAD};
use handles::{Handle, Table};
pub use namespace::{Attr, Ino, Kind, ROOT_INO};
use namespace::{Defaults, Namespace, NAME_MAX};
pub use options::{
    journal_dir_for, old_times_file, recovery_dir_for, state_dir, times_file, FsOptions,
};
use readahead::ReadAhead;
pub use types::*;
use write_buffer::WriteBuf;
pub use writeback::WritebackOptions;

/// Where a note of progress goes (see [`MediaFs::on_progress`]).
type ProgressNote = Box<dyn Fn(&str) + Send + Sync>;

/// The file system. Send + Sync: every operation may run on any thread.
pub struct MediaFs {
    /// Itself, for the threads that fetch ahead and the replies that come from other threads.
    me: Weak<MediaFs>,
    api: Arc<dyn MediaApi>,
    /// The API's counters (or the core's own, with an API that counts nothing), where the
    /// core counts its cache hits; `bwmediafs status` shows them.
    counters: Arc<Counters>,
    opts: FsOptions,
    ns: Mutex<Namespace>,
    content: ContentCache,
    writes: Mutex<HashMap<Ino, Arc<WriteBuf>>>,
    handles: Table<Handle>,
    dirs: Table<Mutex<DirHandle>>,
    /// Held while one listing page is fetched and applied (the listing's single flight).
    walk_lock: Mutex<()>,
    mountpoint: Mutex<Option<PathBuf>>,
    /// The device of the mount (major, minor), once read from the mount table.
    mount_device: std::sync::OnceLock<(u32, u32)>,
    auth_logged: AtomicBool,
    read_ahead: ReadAhead,
    /// The state file of the times of media, when there is one.
    times: Option<times_file::Times>,
    /// Directories being renamed: what changes the server under them waits for the end.
    fence: rename_fence::RenameFence,
    /// The names whose replacement was hinted at (a reused name may send the wrong media).
    reuse_hints: reuse::ReuseHints,
    /// The journal and the uploader, with `--writeback`.
    writeback: Option<writeback::Writeback>,
    /// Where the progress of the uploads at the end goes besides the log (systemd's `STATUS=`).
    progress: std::sync::OnceLock<ProgressNote>,
}

/// The thread that writes the times of `fs` every [`times_file::SAVE_EVERY`] while they change;
/// it ends with the file system.
fn spawn_times_writer(fs: Weak<MediaFs>) {
    let spawned = std::thread::Builder::new()
        .name("times".into())
        .spawn(move || loop {
            std::thread::sleep(times_file::SAVE_EVERY);
            match fs.upgrade() {
                Some(fs) => fs.save_times(),
                None => return,
            }
        });
    if let Err(e) = spawned {
        log::warn!("no thread to keep the times of media ({e}): they are written at unmount");
    }
}

impl MediaFs {
    /// Check the credentials with one list page, which also seeds the listing cache.
    /// With `--writeback`, the journal is opened first (and what an earlier mount left in it
    /// is shown and queued).
    pub fn connect(api: Arc<dyn MediaApi>, opts: FsOptions) -> Result<Arc<MediaFs>, FsError> {
        let (writeback, left) = match &opts.writeback {
            Some(w) => {
                let (wb, left) =
                    writeback::Writeback::open(w).map_err(|e| FsError::Io(e.to_string()))?;
                (Some(wb), left)
            }
            None => (None, Vec::new()),
        };
        let fs = MediaFs::build(api, opts, writeback);
        fs.replay(left);
        fs.walk_until(None, |ns| ns.walk().is_some_and(|w| w.pages() > 0))?;
        Ok(fs)
    }

    fn build(
        api: Arc<dyn MediaApi>,
        opts: FsOptions,
        writeback: Option<writeback::Writeback>,
    ) -> Arc<MediaFs> {
        let defaults = Defaults {
            file_mode: opts.file_mode & 0o7777,
            dir_mode: opts.dir_mode & 0o7777,
            uid: opts.uid,
            gid: opts.gid,
        };
        let times = opts
            .times_file
            .clone()
            .map(|f| times_file::Times::new(f, opts.old_times_file.clone()));
        let mut ns = Namespace::new(defaults);
        if let Some(t) = &times {
            ns.remember(t.load(std::time::SystemTime::now()));
        }
        let counters = api.counters().unwrap_or_default();
        let fs = Arc::new_cyclic(|me| MediaFs {
            me: me.clone(),
            api,
            counters,
            content: ContentCache::new(opts.cache_size),
            read_ahead: ReadAhead::new(&opts),
            opts,
            times,
            ns: Mutex::new(ns),
            writes: Mutex::new(HashMap::new()),
            handles: Table::default(),
            dirs: Table::default(),
            walk_lock: Mutex::new(()),
            fence: rename_fence::RenameFence::default(),
            reuse_hints: reuse::ReuseHints::default(),
            mountpoint: Mutex::new(None),
            mount_device: std::sync::OnceLock::new(),
            auth_logged: AtomicBool::new(false),
            writeback,
            progress: std::sync::OnceLock::new(),
        });
        if fs.times.is_some() {
            spawn_times_writer(Arc::downgrade(&fs));
        }
        fs
    }

    /// Write the times of media to the state file if they changed since it was last written
    /// (at unmount, and every few seconds from the thread of [`spawn_times_writer`]).
    pub fn save_times(&self) {
        if let Some(times) = &self.times {
            times.save(&self.ns);
        }
    }

    /// Where to tell the progress of the uploads at the end of the process, besides the log.
    pub fn on_progress(&self, note: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.progress.set(Box::new(note));
    }

    /// Whether closes stage their bytes and uploads run in the background (`--writeback`).
    pub fn writes_back(&self) -> bool {
        self.writeback.is_some()
    }

    /// The settings it was made with.
    pub fn options(&self) -> &FsOptions {
        &self.opts
    }

    /// How long the kernel may keep attributes and entries.
    pub fn ttl(&self) -> Duration {
        self.opts.metadata_ttl
    }

    /// Where the file system is mounted (used in the recovery instructions of log lines).
    pub fn set_mountpoint(&self, path: &Path) {
        *self.mountpoint.lock() = Some(path.to_path_buf());
    }

    /// The device of our mount (for FUSE: major 0, the connection's number), read from the mount
    /// table once the mount is there (at the kernel's INIT, else at the first use); `None`
    /// before, or without a mount.
    pub fn mount_device(&self) -> Option<(u32, u32)> {
        if let Some(d) = self.mount_device.get() {
            return Some(*d);
        }
        let path = self.mountpoint.lock().clone()?;
        let mount = crate::mountinfo::at(&path).filter(|m| m.is_bwmediafs())?;
        Some(*self.mount_device.get_or_init(|| mount.device))
    }

    /// Bytes held by the data cache.
    pub fn cached_bytes(&self) -> u64 {
        self.content.used()
    }

    /// An API failure as an `FsError`, logged where it is actionable: a refused credential once
    /// per mount; a failed upload in its recovery note instead, once for each version of the
    /// bytes (every later fsync and close tries again).
    pub(super) fn api_error(&self, op: &'static str, name: &str, e: ApiError) -> FsError {
        let err = FsError::api(op, name, e);
        if let FsError::Api { source, .. } = &err {
            match source {
                ApiError::Unauthorized(_) | ApiError::Forbidden(_) => {
                    if !self.auth_logged.swap(true, Ordering::Relaxed) {
                        log::error!("{err}");
                    }
                }
                ApiError::NotFound => log::debug!("{err}"),
                _ if op == UPLOAD || op == READ_AHEAD => log::debug!("{err}"),
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

    pub(super) fn check_ro(&self) -> Result<(), FsError> {
        if self.opts.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// A name component from the kernel as a `&str`.
    pub(super) fn component<'a>(&self, name: &'a OsStr) -> Result<&'a str, FsError> {
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

    pub(super) fn buffer_of(&self, ino: Ino) -> Option<Arc<WriteBuf>> {
        self.writes.lock().get(&ino).cloned()
    }

    /// The write buffers, taken out of the table's lock.
    pub(super) fn write_buffers(&self) -> Vec<(Ino, Arc<WriteBuf>)> {
        let writes = self.writes.lock();
        writes.iter().map(|(i, b)| (*i, b.clone())).collect()
    }

    pub(super) fn path_of(&self, ino: Ino) -> String {
        self.ns
            .lock()
            .node(ino)
            .map(|n| n.path().to_string())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
