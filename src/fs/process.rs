//! Which process a request comes from, and what it holds open, for the one rule that needs it:
//! a close leaves the upload to a later close when the process that opened the file still holds
//! another descriptor of it (see `MediaFs::flush`).
//!
//! The kernel names the *thread* that made a request (0 when that thread is outside the mount's
//! pid namespace); a process is its thread group, read from `/proc`. A process's descriptors are
//! the links in `/proc/PID/fd`, read without touching the files (so never through this mount).
//! Whatever cannot be told (no `/proc`, a process gone, another mount namespace, pid 0) counts
//! as "holds nothing", so the upload happens: the rule may only ever save uploads, never lose
//! one.

use std::path::Path;

/// The process (thread group id) of thread `tid`, when it can be told.
pub(crate) fn process_of(tid: u32) -> Option<u32> {
    if tid == 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether process `pid` runs (exists and is not a zombie).
fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')' (comm may hold anything).
    match stat.rsplit_once(')') {
        Some((_, rest)) => !matches!(rest.trim_start().chars().next(), Some('Z' | 'X') | None),
        None => false,
    }
}

/// Whether running process `pid` has a descriptor open on `path` (as its own links name it).
pub(crate) fn holds(pid: u32, path: &Path) -> bool {
    if !running(pid) {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_and_what_they_hold_are_told() {
        let me = std::process::id();
        assert_eq!(process_of(me), Some(me));
        assert_eq!(process_of(0), None);
        assert!(running(me));
        let dir = tempfile::tempdir().unwrap();
        let path = std::fs::canonicalize(dir.path()).unwrap().join("held");
        let f = std::fs::File::create(&path).unwrap();
        assert!(holds(me, &path));
        drop(f);
        assert!(!holds(me, &path));
        assert!(!holds(u32::MAX - 1, &path), "no such process");
    }
}
