//! The small types of the core's interface: what callers pass in and get back.

use super::namespace::{Attr, Ino, Kind};
use std::time::SystemTime;

/// The media URL to put in an MMS (derived: a set or removal is ignored).
pub const XATTR_URL: &str = "user.bandwidth.url";
/// The content type the media is uploaded with.
pub const XATTR_CONTENT_TYPE: &str = "user.bandwidth.content_type";
/// The cache control the media is uploaded with.
pub const XATTR_CACHE_CONTROL: &str = "user.bandwidth.cache_control";
/// The latest moment the media can still exist, 48 hours after its upload (derived: a set or
/// removal is ignored).
pub const XATTR_EXPIRES: &str = "user.bandwidth.expires";
/// With write-back, where a file's bytes are: `stored` (the server holds them), `pending`
/// (staged or written, not uploaded yet) or `failed` (refused; in the recovery folder) (derived).
pub const XATTR_STATE: &str = "user.bandwidth.state";
/// On the mount's root: the uploads pending and failed, as JSON (`bwmediafs status`) (derived).
pub const XATTR_STATUS: &str = "user.bandwidth.status";
/// The names bwmediafs derives or sends to the server start so; no other name may.
pub const XATTR_OURS: &str = "user.bandwidth.";

/// `rename` flag (as in renameat2): fail with EEXIST rather than replace the target.
pub const RENAME_NOREPLACE: u32 = 1;
/// `rename` flag (as in renameat2): swap the two names (not supported: the API has no rename).
pub const RENAME_EXCHANGE: u32 = 2;

/// Who makes a request: its process, and the user and group a new file or directory belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caller {
    /// The thread (process) that asked (for the rule of which close uploads).
    pub pid: u32,
    /// Its user id: the owner of what it creates.
    pub uid: u32,
    /// Its group id: the group of what it creates.
    pub gid: u32,
}

impl Caller {
    /// The owner of what it creates: (uid, gid).
    pub(crate) fn owner(&self) -> (u32, u32) {
        (self.uid, self.gid)
    }
}

/// What `setattr` may change; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    /// Permission bits (chmod).
    pub mode: Option<u32>,
    /// Owner (chown).
    pub uid: Option<u32>,
    /// Group (chown).
    pub gid: Option<u32>,
    /// Length (truncate).
    pub size: Option<u64>,
    /// Access time (utimens).
    pub atime: Option<SystemTime>,
    /// Modification time (utimens).
    pub mtime: Option<SystemTime>,
}

/// One directory entry handed to a `readdir` filler; `offset` is where the next one starts.
#[derive(Debug, Clone)]
pub struct DirEntry<'a> {
    /// The entry's inode.
    pub ino: Ino,
    /// File or directory.
    pub kind: Kind,
    /// Its name in the directory.
    pub name: &'a str,
    /// The offset to continue the listing from, after this entry.
    pub offset: u64,
    /// Its attributes (for readdirplus).
    pub attr: Attr,
}

/// An open file: its handle and whether the kernel may keep its page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The handle, for the calls on the open file.
    pub fh: u64,
    /// The kernel's cached pages of the file are current (FOPEN_KEEP_CACHE).
    pub keep_cache: bool,
    /// The handle cannot write, so a close has nothing to upload: the kernel may skip FLUSH.
    pub no_flush: bool,
    /// The handle can only write: its writes may bypass the kernel's page cache (nobody reads
    /// through it, and the kernel drops cached pages of the range written).
    pub direct_io: bool,
}

/// What `statfs` answers (as `statvfs(3)` names the fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Size of the file system, in `frsize` blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Inodes (files) in all.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// The preferred I/O size.
    pub bsize: u32,
    /// The longest name component.
    pub namelen: u32,
    /// The fragment size, the unit of `blocks`.
    pub frsize: u32,
}
