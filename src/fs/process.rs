//! Which process a request comes from, and what it holds open, for the one rule that needs it:
//! a close leaves the upload to a later close when the process that opened the file still holds
//! another descriptor of it open for writing (see `MediaFs::flush`).
//!
//! The kernel names the *thread* that made a request (0 when that thread is outside the mount's
//! pid namespace); a process is its thread group, read from `/proc`. A process's descriptors are
//! the entries of `/proc/PID/fdinfo`, each giving its flags, a mount and an inode, read without
//! touching the files (so never through this mount).
//! Whatever cannot be told (no `/proc`, a process gone, a kernel whose fdinfo has no `ino:`,
//! pid 0) counts as "holds nothing", so the upload happens: the rule may only ever save uploads,
//! never lose one. Mount ids and devices are the kernel's own, so another mount namespace or a
//! bind mount of ours is told right.

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

/// Whether running process `pid` has a descriptor open *for writing* on `file`: only the
/// close of such a descriptor uploads (a read-only or `O_PATH` one never does, so counting it
/// would leave the upload to a release whose result no program sees). Read from
/// `/proc/PID/fdinfo/N` (the flags, the mount id and the inode number of each descriptor) and
/// the process's own mount table (the device of that mount), so the files are never touched:
/// a `stat` of a descriptor of this mount would send a request into it from inside one of its
/// own requests.
pub(crate) fn holds_for_writing(pid: u32, file: FileId) -> bool {
    if !running(pid) {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return false;
    };
    let mut mounts: Option<Vec<crate::mountinfo::MountEntry>> = None;
    fds.flatten().any(|fd| {
        let Some(d) = std::fs::read_to_string(fd.path())
            .ok()
            .and_then(|info| Descriptor::of(&info))
        else {
            return false;
        };
        if d.ino != file.ino || !d.writes() {
            return false;
        }
        let mnt_id = d.mnt_id;
        mounts
            .get_or_insert_with(|| crate::mountinfo::read(Some(pid)))
            .iter()
            .any(|m| m.id == mnt_id && m.device == file.device)
    })
}

/// What a descriptor's fdinfo says of it.
struct Descriptor {
    /// The open flags (`flags:`, in octal).
    flags: i32,
    mnt_id: u64,
    ino: u64,
}

impl Descriptor {
    fn of(info: &str) -> Option<Descriptor> {
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
        };
        Some(Descriptor {
            flags: i32::from_str_radix(field("flags:")?, 8).ok()?,
            mnt_id: field("mnt_id:")?.parse().ok()?,
            ino: field("ino:")?.parse().ok()?,
        })
    }

    /// Opened for writing (and not a mere `O_PATH` reference).
    fn writes(&self) -> bool {
        self.flags & libc::O_PATH == 0 && self.flags & libc::O_ACCMODE != libc::O_RDONLY
    }
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
        let reader = std::fs::File::open(&path).unwrap();
        let meta = f.metadata().unwrap();
        let dev = meta.dev();
        let file = FileId {
            device: (libc::major(dev), libc::minor(dev)),
            ino: meta.ino(),
        };
        assert!(holds_for_writing(me, file));
        let other_device = FileId {
            device: (file.device.0, file.device.1.wrapping_add(1)),
            ..file
        };
        assert!(
            !holds_for_writing(me, other_device),
            "same inode number, another mount"
        );
        drop(f);
        assert!(!holds_for_writing(me, file), "only a reader is left");
        drop(reader);
        assert!(!holds_for_writing(u32::MAX - 1, file), "no such process");
    }
}
