//! Checks on the mountpoint before mounting, and unmounting by path.
//!
//! The awkward case is a dead mount: after `kill -9` the kernel keeps the FUSE mount, and every
//! access to it fails with "Transport endpoint is not connected" (ENOTCONN). We recognise it,
//! clear it (a lazy unmount) and go on, or say exactly which command clears it.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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
    mountinfo_of(path, |fields| {
        let sep = fields.iter().position(|f| *f == "-")?;
        fields.get(sep + 1).map(|t| t.to_string())
    })
}

/// The minor device number of the mount at `path` (for FUSE: its connection in
/// `/sys/fs/fuse/connections`), read from the mount table without touching the mount.
pub fn mount_minor(path: &Path) -> Option<u32> {
    mountinfo_of(path, |fields| {
        fields.get(2)?.split_once(':')?.1.parse().ok()
    })
}

/// `pick` applied to the fields of the `/proc/self/mountinfo` line of the mount at `path`.
fn mountinfo_of<T>(path: &Path, pick: impl Fn(&[&str]) -> Option<T>) -> Option<T> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.as_os_str().as_bytes();
    info.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        if unescape(fields.get(4)?) != want {
            return None;
        }
        pick(&fields)
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

pub use crate::fuse::unmount;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/mnt/my\040media"), b"/mnt/my media".to_vec());
        assert_eq!(unescape("/plain"), b"/plain".to_vec());
    }

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
