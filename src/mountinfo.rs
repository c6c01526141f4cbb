//! The mount table as a process sees it (`/proc/PID/mountinfo`), read without touching any
//! mount: the mountpoint checks, the test harness and the rule of which close uploads all need
//! to know about a FUSE mount without sending a request into it (a request into our own mount
//! from inside one of its requests would wait for itself).
//!
//! A line is `ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER`;
//! the mountpoint escapes space, tab, newline and backslash as `\ooo`. Mount ids are the
//! kernel's own, the same in every mount namespace; so is a mount's device.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// One mount of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The kernel's id of the mount (`mnt_id` in `/proc/PID/fdinfo/N`).
    pub id: u64,
    /// The device of its filesystem: for FUSE, major 0 and the connection's number as minor.
    pub device: (u32, u32),
    /// Where it is mounted, unescaped.
    pub mountpoint: Vec<u8>,
    /// Its type, `fuse.bwmediafs` for ours.
    pub fstype: String,
}

/// The mount table of process `pid` (`None`: this process), empty when it cannot be read.
pub fn read(pid: Option<u32>) -> Vec<MountEntry> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/mountinfo"),
        None => "/proc/self/mountinfo".to_string(),
    };
    std::fs::read_to_string(path)
        .map(|text| parse(&text))
        .unwrap_or_default()
}

impl MountEntry {
    /// Whether it is a bwmediafs mount: `fuse.bwmediafs`, or a bare `fuse` where the subtype
    /// could not be given.
    pub fn is_bwmediafs(&self) -> bool {
        self.fstype == "fuse.bwmediafs" || self.fstype == "fuse"
    }
}

/// The mounts of a mountinfo text; lines that do not parse are passed over.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let fields: Vec<&str> = line.split(' ').collect();
    let (major, minor) = fields.get(2)?.split_once(':')?;
    let sep = fields.iter().position(|f| *f == "-")?;
    Some(MountEntry {
        id: fields.first()?.parse().ok()?,
        device: (major.parse().ok()?, minor.parse().ok()?),
        mountpoint: unescape(fields.get(4)?),
        fstype: fields.get(sep + 1)?.to_string(),
    })
}

/// The mount on top at `path` in this process's table: the last of those there (a mount made
/// over another comes after it).
pub fn at(path: &Path) -> Option<MountEntry> {
    let want = path.as_os_str().as_bytes();
    read(None).into_iter().rev().find(|m| m.mountpoint == want)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_escapes_and_optional_tags() {
        let text = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n\
                    51 29 0:47 / /tmp/m rw,nosuid - fuse.bwmediafs bwmediafs rw,user_id=0\n\
                    garbage\n";
        let got = parse(text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, 36);
        assert_eq!(got[0].device, (98, 0));
        assert_eq!(got[0].mountpoint, b"/mnt/a b");
        assert_eq!(got[0].fstype, "ext3");
        assert_eq!(got[1].device, (0, 47));
        assert_eq!(got[1].fstype, "fuse.bwmediafs");
        assert!(got[1].is_bwmediafs() && !got[0].is_bwmediafs());
    }

    #[test]
    fn this_process_sees_its_root() {
        let root = at(Path::new("/")).expect("a root mount");
        assert!(read(Some(std::process::id())).contains(&root));
    }
}
