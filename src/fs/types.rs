//! The small types of the core's interface: what callers pass in and get back.

use super::namespace::{Attr, Ino, Kind};
use std::time::SystemTime;

/// Extended attributes every file has.
pub const XATTR_URL: &str = "user.bandwidth.url";
pub const XATTR_CONTENT_TYPE: &str = "user.bandwidth.content_type";
pub const XATTR_CACHE_CONTROL: &str = "user.bandwidth.cache_control";

/// `rename` flags (as in renameat2).
pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;

/// What `setattr` may change; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

/// One directory entry handed to a `readdir` filler; `offset` is where the next one starts.
#[derive(Debug, Clone)]
pub struct DirEntry<'a> {
    pub ino: Ino,
    pub kind: Kind,
    pub name: &'a str,
    pub offset: u64,
    pub attr: Attr,
}

/// An open file: its handle and whether the kernel may keep its page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    pub keep_cache: bool,
    /// The handle cannot write, so a close has nothing to upload: the kernel may skip FLUSH.
    pub no_flush: bool,
    /// The handle can only write: its writes may bypass the kernel's page cache (nobody reads
    /// through it, and the kernel drops cached pages of the range written).
    pub direct_io: bool,
}

/// What `statfs` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}
