//! Which process a request comes from, and what it holds open, for the one rule that needs it:
//! a close leaves the upload to a later close when the process that opened the file still holds
//! another descriptor of it (see `MediaFs::flush`).
//!
//! The kernel names the *thread* that made a request (0 when that thread is outside the mount's
//! pid namespace); a process is its thread group, read from `/proc`. A process's descriptors are
//! the entries of `/proc/PID/fdinfo`, each naming a mount and an inode, read without touching
//! the files (so never through this mount).
//! Whatever cannot be told (no `/proc`, a process gone, another mount namespace, pid 0) counts
//! as "holds nothing", so the upload happens: the rule may only ever save uploads, never lose
//! one.

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

/// A file of a mount as the kernel knows it: the device of the mount's filesystem and the
/// inode number. Identity, not a path: a name shown in place of the media's own (`a~media`), a
/// rename, or a path the kernel spells differently cannot make two files look like one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    pub device: (u32, u32),
    pub ino: u64,
}

/// Whether running process `pid` has a descriptor open on `file`. Read from
/// `/proc/PID/fdinfo/N` (the mount id and the inode number of each descriptor) and the
/// process's own mount table (the device of that mount), so the files are never touched: a
/// `stat` of a descriptor of this mount would send a request into it from inside one of its
/// own requests.
pub(crate) fn holds(pid: u32, file: FileId) -> bool {
    if !running(pid) {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return false;
    };
    let mut mounts: Option<Vec<crate::mountinfo::MountEntry>> = None;
    fds.flatten().any(|fd| {
        let Some((mnt_id, ino)) = std::fs::read_to_string(fd.path())
            .ok()
            .and_then(|info| mount_and_inode(&info))
        else {
            return false;
        };
        if ino != file.ino {
            return false;
        }
        mounts
            .get_or_insert_with(|| crate::mountinfo::read(Some(pid)))
            .iter()
            .any(|m| m.id == mnt_id && m.device == file.device)
    })
}

/// The `mnt_id:` and `ino:` of a descriptor's fdinfo.
fn mount_and_inode(info: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((field("mnt_id:")?, field("ino:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_and_what_they_hold_are_told() {
        use std::os::unix::fs::MetadataExt;
        let me = std::process::id();
        assert_eq!(process_of(me), Some(me));
        assert_eq!(process_of(0), None);
        assert!(running(me));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held");
        let f = std::fs::File::create(&path).unwrap();
        let meta = f.metadata().unwrap();
        let dev = meta.dev();
        let file = FileId {
            device: (libc::major(dev), libc::minor(dev)),
            ino: meta.ino(),
        };
        assert!(holds(me, file));
        let other_device = FileId {
            device: (file.device.0, file.device.1.wrapping_add(1)),
            ..file
        };
        assert!(!holds(me, other_device), "same inode number, another mount");
        drop(f);
        assert!(!holds(me, file));
        assert!(!holds(u32::MAX - 1, file), "no such process");
    }
}
