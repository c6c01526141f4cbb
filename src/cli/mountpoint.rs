//! Checks on the mountpoint before mounting, and unmounting by path.
//!
//! The awkward case is a dead mount: after `kill -9` the kernel keeps the FUSE mount, and every
//! access to it fails with "Transport endpoint is not connected" (ENOTCONN). We recognise it,
//! clear it (a lazy unmount) and go on, or say exactly which command clears it.

use std::path::{Path, PathBuf};

use crate::mountinfo;

/// Make sure `path` can be mounted on; returns its canonical form. A directory with entries is
/// refused unless `nonempty` (the mount would hide them).
pub fn prepare(path: &Path, nonempty: bool) -> Result<PathBuf, String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_dir() => {
            return Err(format!("the mountpoint {shown} is not a directory"));
        }
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            log::warn!("{shown} is a dead mount left by a bwmediafs that was killed; clearing it");
            if unmount(path, true).is_err() || std::fs::metadata(path).is_err() {
                return Err(format!(
                    "{shown} is a dead mount (its bwmediafs process was killed) and could not be \
                     cleared; run `fusermount3 -uz {shown}` (or `umount -l {shown}` as root) and \
                     try again"
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "the mountpoint {shown} does not exist; create it with `mkdir -p {shown}`"
            ));
        }
        Err(e) => return Err(format!("cannot use the mountpoint {shown}: {e}")),
    }
    let canonical = std::fs::canonicalize(path)
        .map_err(|e| format!("cannot use the mountpoint {shown}: {e}"))?;
    if let Some(fstype) = mounted_type(&canonical) {
        return Err(format!(
            "{shown} is already a mount point ({fstype}); unmount it first with `umount {shown}`"
        ));
    }
    if !nonempty {
        let entries = std::fs::read_dir(&canonical)
            .map(|d| d.count())
            .map_err(|e| format!("cannot use the mountpoint {shown}: {e}"))?;
        if entries > 0 {
            return Err(format!(
                "the mountpoint {shown} is not empty ({entries} entries): the mount would hide \
                 them; use an empty directory, or pass -o nonempty to mount over them"
            ));
        }
    }
    Ok(canonical)
}

/// The filesystem type mounted at `path`, if `path` is a mount point.
pub fn mounted_type(path: &Path) -> Option<String> {
    mountinfo::at(path).map(|m| m.fstype)
}

/// The minor device number of the mount at `path` (for FUSE: its connection in
/// `/sys/fs/fuse/connections`), read from the mount table without touching the mount.
pub fn mount_minor(path: &Path) -> Option<u32> {
    mountinfo::at(path).map(|m| m.device.1)
}

pub use crate::fuse::unmount;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_non_directory_mountpoints_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = prepare(&missing, false).unwrap_err();
        assert!(e.contains("mkdir -p"), "{e}");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(prepare(&file, false)
            .unwrap_err()
            .contains("not a directory"));
        // It holds `f` now: refused, unless asked for.
        assert!(prepare(dir.path(), false)
            .unwrap_err()
            .contains("-o nonempty"));
        assert_eq!(
            prepare(dir.path(), true).unwrap(),
            std::fs::canonicalize(dir.path()).unwrap()
        );
    }

    #[test]
    fn the_root_is_recognised_as_a_mount_point() {
        assert!(mounted_type(Path::new("/")).is_some());
        assert!(mounted_type(Path::new("/definitely/not/mounted")).is_none());
    }
}
