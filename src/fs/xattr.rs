//! Extended attributes and statfs.
//!
//! The hard cases:
//! - `user.bandwidth.url` (the media URL to put in an MMS) and `user.bandwidth.expires` (the
//!   latest moment the media can still exist) are derived: a set of any value and a removal
//!   succeed and change nothing, so `rsync -aX` and `cp -a` of files copied out work.
//! - A set or removal of the content type or cache control reaches the server at once
//!   (`headers`).
//! - `user.bandwidth.cache_control` exists only when the media has one, which only a GET tells:
//!   listing the attributes of a file whose headers are unknown costs one GET (whose body the
//!   data cache keeps for the read that usually follows).
//! - Other `user.` attributes (`user.foo`, say, which `rsync -aX` copies in) are kept in memory
//!   for the life of the mount, like chmod's bits: the API cannot store them. They belong to
//!   the file or directory, so a rename keeps them. Other names under `user.bandwidth.` are
//!   refused: the prefix is the server's.
//! - Attributes outside `user.*` answer ENOTSUP, so `ls -l` asks once per mount.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::error::FsError;
use super::headers::Header;
use super::namespace::{Ino, Kind, NAME_MAX, ROOT_INO};
use super::times_file::rfc3339_up;
use super::types::{
    StatFs, XATTR_CACHE_CONTROL, XATTR_CONTENT_TYPE, XATTR_EXPIRES, XATTR_OURS, XATTR_STATE,
    XATTR_STATUS, XATTR_URL,
};
use super::upload::upload_target;
use super::MediaFs;

/// The attributes derived from the media (read-only): a set of any value and a removal succeed
/// and change nothing, so tools that copy attributes (`rsync -aX`, `cp -a`) copy files back in.
const DERIVED: &[&str] = &[XATTR_URL, XATTR_EXPIRES, XATTR_STATE, XATTR_STATUS];

/// The longest header value sent through `user.bandwidth.content_type` or `cache_control`
/// (a header far longer than any type or directive is a mistake, and servers refuse them).
const MAX_HEADER_VALUE: usize = 1024;
/// The largest value of a user's own attribute (the kernel's own limit, `XATTR_SIZE_MAX`).
pub const MAX_XATTR_VALUE: usize = 64 * 1024;

/// How an attribute name is served.
enum Name<'a> {
    /// Outside `user.`: not supported.
    Other,
    /// One of `user.bandwidth.`: derived or sent to the server.
    Ours(&'a str),
    /// Under `user.bandwidth.` but none of ours.
    Reserved,
    /// The user's own, kept in memory.
    User(&'a [u8]),
}

fn classify(name: &OsStr) -> Name<'_> {
    let bytes = name.as_bytes();
    if !bytes.starts_with(b"user.") {
        return Name::Other;
    }
    if !bytes.starts_with(XATTR_OURS.as_bytes()) {
        return Name::User(bytes);
    }
    match name.to_str() {
        Some(n) if [XATTR_CONTENT_TYPE, XATTR_CACHE_CONTROL].contains(&n) => Name::Ours(n),
        Some(n) if DERIVED.contains(&n) => Name::Ours(n),
        _ => Name::Reserved,
    }
}

impl MediaFs {
    /// Sizes for `df`. The store has no documented capacity (media are limited in size, not in
    /// number, and vanish after 48 hours), so the numbers say what is known within a finite
    /// size: 1 TiB and 2^32 inodes in all; used = the bytes of the media known (in 4 KiB
    /// blocks) and the files and directories known; free = the rest. A total is never below
    /// what is used, so nothing `df` derives is negative, and `df -h` shows a plain 1.0T (a
    /// total of 1 TiB plus what is used would round up to 1.1T).
    pub fn statfs(&self) -> StatFs {
        const BSIZE: u64 = 4096;
        const SIZE_BLOCKS: u64 = (1 << 40) / BSIZE;
        const INODES: u64 = 1 << 32;
        let t = self.ns.lock().totals();
        let used_blocks = t.bytes.div_ceil(BSIZE);
        let used_inodes = t.files + t.dirs;
        StatFs {
            blocks: SIZE_BLOCKS.max(used_blocks),
            bfree: SIZE_BLOCKS.saturating_sub(used_blocks),
            bavail: SIZE_BLOCKS.saturating_sub(used_blocks),
            files: INODES.max(used_inodes),
            ffree: INODES.saturating_sub(used_inodes),
            bsize: BSIZE as u32,
            namelen: NAME_MAX as u32,
            frsize: BSIZE as u32,
        }
    }

    pub(super) fn file_path(&self, ino: Ino) -> Result<String, FsError> {
        let ns = self.ns.lock();
        let n = ns.node(ino).ok_or(FsError::NotFound)?;
        if n.kind() == Kind::Dir {
            return Err(FsError::NoAttr);
        }
        Ok(n.path().to_string())
    }

    /// Whether the headers stored on the server are known for `ino`.
    pub(super) fn headers_known(&self, ino: Ino) -> bool {
        self.ns
            .lock()
            .node(ino)
            .is_some_and(|n| n.stored().is_some() || !n.remote())
    }

    /// The value of an extended attribute.
    ///
    /// Only the `user.` namespace exists here: a name in any other (`security.selinux`,
    /// `system.posix_acl_access`, ...) is `ENOTSUP`, not `ENODATA`. That is the truth (no labels,
    /// no ACLs) and it is what lets `ls -l` ask once per mount instead of twice per file: ls
    /// remembers a device that answered "not supported", never one that answered "no data".
    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>, FsError> {
        let name = match classify(name) {
            Name::Other => return Err(FsError::NotSupported),
            Name::Reserved => return Err(FsError::NoAttr),
            Name::User(name) => {
                let ns = self.ns.lock();
                let n = ns.node(ino).ok_or(FsError::NotFound)?;
                let value = n.xattrs().and_then(|x| x.get(name));
                return value.map(|v| v.to_vec()).ok_or(FsError::NoAttr);
            }
            Name::Ours(name) => name,
        };
        if name == XATTR_STATUS {
            return match ino {
                ROOT_INO => Ok(self.status().into_bytes()),
                _ => Err(FsError::NoAttr),
            };
        }
        let path = self.file_path(ino)?;
        if name == XATTR_STATE {
            return Ok(self.upload_state(ino).as_bytes().to_vec());
        }
        if name == XATTR_URL {
            // A URL handed to an MMS must work: a staged file is uploaded first, as by fsync.
            self.upload_if_staged(ino)?;
            return Ok(self.api.media_url(&path).into_bytes());
        }
        if name == XATTR_EXPIRES {
            let expires = self.ns.lock().expires(ino).ok_or(FsError::NoAttr)?;
            return Ok(rfc3339_up(expires).into_bytes());
        }
        if !self.headers_known(ino) {
            self.download(&path, |_| true)?;
        }
        let head = self.buffer_head(ino);
        let ns = self.ns.lock();
        let n = ns.node(ino).ok_or(FsError::NotFound)?;
        let target = upload_target(n, n.path(), &head);
        let value = if name == XATTR_CONTENT_TYPE {
            Some(target.content_type)
        } else {
            target.cache_control
        };
        value.map(String::into_bytes).ok_or(FsError::NoAttr)
    }

    /// Names of the extended attributes, each followed by a NUL byte: a file's own (the URL, the
    /// content type, the cache control when it has one, its expiry once the server holds it),
    /// then the user's (files and directories).
    /// Whether `cache_control` is listed depends on the media's headers, so a file whose headers
    /// are not known yet is fetched first (one GET, whose body the data cache keeps).
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        if !self.headers_known(ino) {
            if let Ok(path) = self.file_path(ino) {
                self.download(&path, |_| true)?;
            }
        }
        let ns = self.ns.lock();
        let n = ns.node(ino).ok_or(FsError::NotFound)?;
        let mut out = Vec::new();
        if n.kind() == Kind::File {
            let mut names = vec![XATTR_URL, XATTR_CONTENT_TYPE];
            if upload_target(n, n.path(), &[]).cache_control.is_some() {
                names.push(XATTR_CACHE_CONTROL);
            }
            if ns.expires(ino).is_some() {
                names.push(XATTR_EXPIRES);
            }
            if self.writes_back() {
                names.push(XATTR_STATE);
            }
            for name in names {
                out.extend_from_slice(name.as_bytes());
                out.push(0);
            }
        }
        for name in n.xattrs().iter().flat_map(|x| x.keys()) {
            out.extend_from_slice(name);
            out.push(0);
        }
        Ok(out)
    }

    /// Set an extended attribute. The content type or cache control of a file goes to the
    /// server at once (one PUT, see [`super::headers`]); a derived attribute accepts any value
    /// and keeps its own, so that `rsync -aX` and `cp --preserve=xattr` of a file copied out can
    /// copy it back in; the user's own are kept in memory, where `flags` (`XATTR_CREATE`,
    /// `XATTR_REPLACE`) are honoured.
    pub fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<(), FsError> {
        self.check_ro()?;
        let name = match classify(name) {
            Name::Other | Name::Reserved => return Err(FsError::NotSupported),
            Name::User(name) => return self.set_user_xattr(ino, name, value, flags),
            Name::Ours(name) => name,
        };
        let header = match name {
            XATTR_CONTENT_TYPE => Some(Header::ContentType),
            XATTR_CACHE_CONTROL => Some(Header::CacheControl),
            _ => None,
        };
        self.file_path(ino).map_err(|e| match e {
            FsError::NoAttr => FsError::NotSupported,
            e => e,
        })?;
        let Some(header) = header else {
            return Ok(());
        };
        let value = std::str::from_utf8(value)
            .map_err(|_| FsError::Invalid("the value is not UTF-8".into()))?
            .trim_end_matches('\0')
            .to_string();
        if value.trim().is_empty() {
            return Err(FsError::Invalid(format!(
                "{name} cannot be empty; remove the attribute to go back to the default"
            )));
        }
        if value.len() > MAX_HEADER_VALUE {
            return Err(FsError::ValueTooLarge(MAX_HEADER_VALUE));
        }
        // What HTTP cannot carry in a header (RFC 9110: no control character but a tab) is
        // invalid, whichever header it is for.
        if let Some(c) = value.chars().find(|c| c.is_ascii_control() && *c != '\t') {
            return Err(FsError::Invalid(format!(
                "{name} cannot hold the control character {c:?}: a header value is one line of \
                 text"
            )));
        }
        if header == Header::ContentType {
            if let Err(why) = crate::api::check_media_type(&value) {
                return Err(FsError::Invalid(format!(
                    "{value:?} is not a media type ({why}); a type is written as image/png"
                )));
            }
        }
        self.change_header(ino, header, Some(value))
    }

    /// Keep `value` as the user's attribute `name` of `ino` (see [`MediaFs::setxattr`]).
    fn set_user_xattr(
        &self,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: i32,
    ) -> Result<(), FsError> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        if value.len() > MAX_XATTR_VALUE {
            return Err(FsError::ValueTooLarge(MAX_XATTR_VALUE));
        }
        self.ns.lock().set_user_xattr(ino, name, value, flags)
    }

    /// Remove an extended attribute. Removing the content type or cache control of a file sends
    /// the change at once: the type returns to the one the name (or the bytes) imply, and the
    /// media has no cache control (one PUT). Removing a derived attribute succeeds and changes
    /// nothing; the user's own go from memory.
    pub fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<(), FsError> {
        self.check_ro()?;
        let name = match classify(name) {
            Name::Other | Name::Reserved => return Err(FsError::NoAttr),
            Name::User(name) => return self.ns.lock().remove_user_xattr(ino, name),
            Name::Ours(name) => name,
        };
        let header = match name {
            XATTR_CONTENT_TYPE => Header::ContentType,
            XATTR_CACHE_CONTROL => Header::CacheControl,
            _ => {
                self.file_path(ino)?;
                return Ok(());
            }
        };
        let path = self.file_path(ino)?;
        if header == Header::CacheControl {
            // Only what exists can be removed; whether it does may take the GET that tells.
            if !self.headers_known(ino) {
                self.download(&path, |_| true)?;
            }
            let ns = self.ns.lock();
            let n = ns.node(ino).ok_or(FsError::NotFound)?;
            if upload_target(n, n.path(), &[]).cache_control.is_none() {
                return Err(FsError::NoAttr);
            }
        }
        self.change_header(ino, header, None)
    }

    /// `ioctl(2)` on a file: none means anything for a media (Python's `open()` asks whether
    /// the file is a terminal, for one), so every one answers ENOTTY, as on a regular file of a
    /// local disk, without a log line.
    pub fn ioctl(&self, _cmd: u32) -> Result<Vec<u8>, FsError> {
        Err(FsError::NoIoctl)
    }
}
