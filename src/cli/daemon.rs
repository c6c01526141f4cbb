//! Going to the background the way `mount` users expect: `bwmediafs MOUNTPOINT` returns only once
//! the mount is ready, with exit status 0, or prints why it could not mount and exits 1.
//!
//! The hard part is that `fork` must happen before any thread exists (the HTTP client, the
//! emulator and the FUSE session all start threads, and a forked child keeps only the thread that
//! forked). So the process forks first; the child does all the work and reports to the waiting
//! parent through a pipe: `OK` once mounted, or the error sentence.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

/// The child's end of the pipe: tells the parent how mounting went. Dropping it unsent tells the
/// parent that the child died before it was ready.
pub struct Readiness {
    pipe: Option<File>,
}

impl Readiness {
    /// For `--foreground`: nobody waits, nothing to report.
    pub fn foreground() -> Readiness {
        Readiness { pipe: None }
    }

    /// The mount is ready: the parent prints `message` (if any) on standard error and exits 0.
    /// Then the child lets go of the terminal: standard input and output on /dev/null, and
    /// standard error too unless `keep_stderr` (the log goes there: the journal).
    pub fn ready(&mut self, message: &str, keep_stderr: bool) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(format!("OK {message}").as_bytes());
            drop(pipe);
            detach_stdio(keep_stderr);
        }
    }

    /// Mounting failed: the parent prints `message` and exits 1.
    pub fn failed(&mut self, message: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(format!("ERR {message}\n").as_bytes());
        }
    }

    /// Whether a parent is waiting (the process is going to the background).
    pub fn is_background(&self) -> bool {
        self.pipe.is_some()
    }
}

/// The threads of this process, from `/proc/self/status`.
fn thread_count() -> Option<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// Fork. Returns in the child only; the parent waits for the child's word and exits with it.
/// Refused unless the process has a single thread (a child forked from several threads could
/// inherit a lock some other thread held, and hang on it).
pub fn background() -> std::io::Result<Readiness> {
    match thread_count() {
        Some(1) => {}
        Some(n) => {
            return Err(std::io::Error::other(format!(
                "the process already has {n} threads; it can only go to the background before \
                 any starts"
            )))
        }
        None => {
            return Err(std::io::Error::other(
                "cannot tell how many threads the process has (/proc/self/status)",
            ))
        }
    }
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors that nothing else owns.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process has one thread (checked above), so the child is sound.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            drop(read_end);
            // A session of its own: the terminal's Ctrl-C or hangup no longer reaches it.
            // SAFETY: plain syscall.
            unsafe { libc::setsid() };
            Ok(Readiness {
                pipe: Some(File::from(write_end)),
            })
        }
        child => {
            drop(write_end);
            let mut answer = String::new();
            let _ = File::from(read_end).read_to_string(&mut answer);
            if let Some(message) = answer.strip_prefix("OK") {
                let message = message.trim();
                if !message.is_empty() {
                    eprintln!("{message}");
                }
                std::process::exit(0);
            }
            let message = match answer.strip_prefix("ERR ") {
                Some(m) => m.trim_end().to_string(),
                None => {
                    let mut status = 0;
                    // SAFETY: waits for our own child.
                    unsafe { libc::waitpid(child, &mut status, 0) };
                    format!(
                        "the background process (pid {child}) ended before the mount was ready; \
                         run again with -f to see its log"
                    )
                }
            };
            eprintln!("bwmediafs: {message}");
            std::process::exit(1);
        }
    }
}

fn detach_stdio(keep_stderr: bool) {
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return;
    };
    use std::os::fd::AsRawFd;
    let fd = null.as_raw_fd();
    // SAFETY: dup2 onto the standard descriptors, which stay open.
    unsafe {
        libc::dup2(fd, 0);
        libc::dup2(fd, 1);
        if !keep_stderr {
            libc::dup2(fd, 2);
        }
    }
}

/// Signals that end the mount cleanly. Block them in every thread (call before any thread
/// starts, so all inherit the mask); [`wait_for_signal`] then receives them synchronously.
pub fn block_exit_signals() {
    // SAFETY: builds a signal set on the stack and sets this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Block until SIGINT, SIGTERM or SIGHUP arrives; returns its name.
pub fn wait_for_signal() -> &'static str {
    // SAFETY: sigwait on a set of blocked signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
        match sig {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            _ => "SIGHUP",
        }
    }
}

/// Keep secrets out of core dumps and away from ptrace by other processes of the same user.
/// Returns whether the kernel confirms the process is no longer dumpable.
pub fn make_non_dumpable() -> bool {
    // SAFETY: plain prctl calls.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
    }
}
