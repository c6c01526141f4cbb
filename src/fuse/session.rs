//! Mounting and unmounting: the FUSE session on its own threads, and the one unmount helper
//! that the adapter and the command line share.
//!
//! The hard cases:
//! - A mount returns once the kernel has initialised it; the session then runs until
//!   [`Mounted::unmount`] or an external `umount`.
//! - A busy file system cannot be unmounted cleanly: it is then detached lazily (as
//!   `umount -l`), leaving the tree at once while the session ends when its last user leaves.
//! - Root unmounts directly; other users go through `fusermount3`.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};
use parking_lot::{Condvar, Mutex};

use super::FuseFs;
use crate::fs::MediaFs;

/// Event-loop threads: how many requests may be in progress at once.
pub const EVENT_THREADS: usize = 16;

/// How the mount is made.
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    /// Let every user in (the kernel then checks mode bits: `default_permissions`).
    pub allow_other: bool,
    /// Let root in besides the mounting user.
    pub allow_root: bool,
    /// Refuse every change (`ro`).
    pub read_only: bool,
    /// Shown as the source in `/proc/mounts` and `df`.
    pub fsname: String,
    /// Let fusermount3 remove the mount when the process ends, however it ends.
    pub auto_unmount: bool,
}

/// A flag one thread sets and others wait for.
#[derive(Default)]
pub(super) struct Flag {
    set: Mutex<bool>,
    cond: Condvar,
}

impl Flag {
    pub(super) fn set(&self) {
        *self.set.lock() = true;
        self.cond.notify_all();
    }

    fn is_set(&self) -> bool {
        *self.set.lock()
    }

    fn wait(&self) {
        let mut set = self.set.lock();
        while !*set {
            self.cond.wait(&mut set);
        }
    }

    /// Whether it was set within `timeout`.
    fn wait_for(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut set = self.set.lock();
        while !*set {
            if self.cond.wait_until(&mut set, deadline).timed_out() {
                return *set;
            }
        }
        true
    }
}

/// A live mount. Dropping it unmounts (lazily if the file system is busy).
pub struct Mounted {
    mountpoint: PathBuf,
    unmounter: Mutex<SessionUnmounter>,
    /// Set when the session has ended.
    done: Arc<Flag>,
    initialized: Arc<Flag>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// Mount `fs` on `mountpoint`; returns once the kernel has initialised the mount. The session
/// runs on its own threads until [`Mounted::unmount`] or an external `umount`.
pub fn mount(fs: Arc<MediaFs>, mountpoint: &Path, opts: &MountOptions) -> io::Result<Mounted> {
    let mut config = Config::default();
    config.n_threads = Some(EVENT_THREADS);
    config.clone_fd = true;
    let fsname = if opts.fsname.is_empty() {
        "bwmediafs".to_string()
    } else {
        opts.fsname.clone()
    };
    config.mount_options = vec![
        MountOption::FSName(fsname),
        MountOption::Subtype("bwmediafs".to_string()),
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    // fuser hands the subtype to fusermount3 only: when it calls mount(2) itself (as root) the
    // type would be a bare `fuse`. The kernel takes `subtype=` too, so the mount table says
    // `fuse.bwmediafs` either way (what fstab lines and `findmnt -t` match).
    // SAFETY: geteuid cannot fail.
    // (With auto_unmount fusermount3 makes the mount, and gives the type itself.)
    if unsafe { libc::geteuid() } == 0 && !opts.auto_unmount {
        config
            .mount_options
            .push(MountOption::CUSTOM("subtype=bwmediafs".to_string()));
    }
    if opts.read_only {
        config.mount_options.push(MountOption::RO);
    }
    if opts.auto_unmount {
        config.mount_options.push(MountOption::AutoUnmount);
    }
    // fusermount3 watches for the end of the process only for a mount others may enter:
    // auto_unmount implies allow_root.
    let allow_root = opts.allow_root || opts.auto_unmount;
    config.acl = if opts.allow_other {
        SessionACL::All
    } else if allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    if opts.allow_other || allow_root {
        config.mount_options.push(MountOption::DefaultPermissions);
    }
    fs.set_mountpoint(mountpoint);
    let initialized = Arc::new(Flag::default());
    let adapter = FuseFs {
        fs,
        initialized: initialized.clone(),
    };
    let mut session = Session::new(adapter, mountpoint, &config)?;
    let unmounter = session.unmount_callable();
    let done = Arc::new(Flag::default());
    let done2 = done.clone();
    let path = mountpoint.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("bwmediafs-session".into())
        .spawn(move || {
            let r = session.run();
            match &r {
                // The kernel ended the connection as the mount went (a lazy unmount, once the
                // last file open on it was closed): the end of the session, not a failure.
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) && !still_mounted(&path) => {
                    log::debug!("the kernel ended the FUSE connection at the unmount: {e}");
                }
                Err(e) => log::error!("the FUSE session ended with an error: {e}"),
                Ok(()) => {}
            }
            done2.set();
            r
        })?;
    Ok(Mounted {
        mountpoint: mountpoint.to_path_buf(),
        unmounter: Mutex::new(unmounter),
        done,
        initialized,
        thread: Some(thread),
    })
}

impl Mounted {
    /// Wait until the mount answers: the kernel's INIT has been answered, so every request
    /// from now on is served. This is asked of the session, not of the file system through a
    /// system call: a daemon that sends a request into its own mount can never end if it is
    /// killed while the request is open (the kernel waits for an answer only the dead process
    /// could give, and the process holds the connection open).
    pub fn wait_ready(&self, timeout: Duration) -> io::Result<()> {
        if self.initialized.wait_for(timeout) {
            Ok(())
        } else if self.done.is_set() {
            Err(io::Error::other(
                "the FUSE session ended before the kernel initialised it",
            ))
        } else {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the kernel did not initialise the mount within {timeout:?}"),
            ))
        }
    }

    /// Block until the file system is unmounted (by `umount` from outside or by `unmount`).
    pub fn wait(&self) {
        self.done.wait();
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Ask for the unmount without waiting (for a signal handler while another thread is in
    /// [`Mounted::wait`]). If the file system is busy the error is returned and the mount is
    /// detached lazily (as `umount -l`): it leaves the tree at once and the session ends when
    /// its last user leaves.
    pub fn request_unmount(&self) -> io::Result<()> {
        let r = self.unmounter.lock().unmount();
        if let Err(e) = &r {
            log::warn!(
                "unmounting {} failed ({e}); detaching it lazily",
                self.mountpoint.display()
            );
            let _ = unmount(&self.mountpoint, true);
        }
        r
    }

    /// Unmount cleanly and wait for the session to end (see [`Mounted::request_unmount`] for
    /// a busy file system).
    pub fn unmount(mut self) -> io::Result<()> {
        if let Err(e) = self.request_unmount() {
            self.thread = None;
            return Err(e);
        }
        self.wait();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the FUSE session thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.thread.is_none() || self.done.is_set() {
            return;
        }
        let _ = self.request_unmount();
    }
}

/// Whether a mount of ours is still at `path`, read from the mount table (not touching it).
fn still_mounted(path: &Path) -> bool {
    crate::mountinfo::at(path).is_some_and(|m| m.is_bwmediafs())
}

/// Unmount `path`: directly as root, else with `fusermount3 -u`. `lazy` detaches even when busy.
pub fn unmount(path: &Path, lazy: bool) -> Result<(), String> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let direct = std::io::Error::last_os_error();
    let flag = if lazy { "-uz" } else { "-u" };
    match Command::new("fusermount3").arg(flag).arg(path).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{direct}; fusermount3: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("{direct}; fusermount3: {e}")),
    }
}
