//! What programs set on a node that the API cannot store: chmod, chown and utimens, the time of
//! a local write, and the user's own extended attributes. They live in the node, for the life
//! of the mount (a set mtime also in the state file, see `super::times`).
//!
//! The hard cases:
//! - A time set with utimens is shown instead of the mtime until the bytes change (a write
//!   here, or other bytes from the server); a local write dates the bytes now and forgets it.
//! - The user's attributes are bounded per node, names and values, by what one `listxattr`
//!   can return; a refused change leaves the node as it was (no empty map left behind).

use std::time::SystemTime;

use super::{Ino, Namespace};
use crate::fs::error::FsError;
use crate::fs::types::SetAttr;

/// The most a file or directory may hold of the user's own attributes, names and values.
pub const MAX_XATTRS_PER_NODE: usize = 256 * 1024;
/// The most the names of the user's own attributes of one file may take, each with its NUL:
/// what `listxattr` can return (the kernel's `XATTR_LIST_MAX`, 64 KiB), less room for ours.
const MAX_XATTR_NAMES: usize = 64 * 1024 - 256;

impl Namespace {
    /// chmod, chown and utimens of `ino` (a truncate is the write buffer's): what they set is
    /// kept, and the ctime is now. A set mtime is kept across remounts with the other times.
    pub(crate) fn set_attributes(&mut self, ino: Ino, sa: &SetAttr) -> Result<(), FsError> {
        let n = self.node_mut(ino).ok_or(FsError::NotFound)?;
        if let Some(m) = sa.mode {
            n.perm = Some((m & 0o7777) as u16);
        }
        if let Some(u) = sa.uid {
            n.uid = Some(u);
        }
        if let Some(g) = sa.gid {
            n.gid = Some(g);
        }
        if let Some(t) = sa.atime {
            n.atime = t;
        }
        if let Some(t) = sa.mtime {
            n.user_mtime = Some(t);
        }
        n.ctime = SystemTime::now();
        if sa.mtime.is_some() {
            self.time_set();
        }
        Ok(())
    }

    /// A local write (or truncate, or create) of `ino`: its bytes are new now, whatever time a
    /// `touch` chose before.
    pub(crate) fn written(&mut self, ino: Ino) {
        if let Some(n) = self.node_mut(ino) {
            n.mtime = SystemTime::now();
            n.ctime = n.mtime;
            n.user_mtime = None;
        }
    }

    /// Keep `value` as the user's attribute `name` of `ino`, with `setxattr(2)`'s flags
    /// (`XATTR_CREATE`, `XATTR_REPLACE`), within the per-node bounds.
    pub(crate) fn set_user_xattr(
        &mut self,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: i32,
    ) -> Result<(), FsError> {
        let n = self.node_mut(ino).ok_or(FsError::NotFound)?;
        let attrs = n.xattrs.get_or_insert_default();
        let old = attrs.get(name).map(|v| v.len());
        let refused = if flags & libc::XATTR_CREATE != 0 && old.is_some() {
            Some(FsError::Exists)
        } else if flags & libc::XATTR_REPLACE != 0 && old.is_none() {
            Some(FsError::NoAttr)
        } else {
            let held: usize = attrs.iter().map(|(k, v)| k.len() + v.len()).sum();
            let names: usize = attrs.keys().map(|k| k.len() + 1).sum();
            let (after, names_after) = match old {
                Some(len) => (held - len + value.len(), names),
                None => (held + name.len() + value.len(), names + name.len() + 1),
            };
            (after > MAX_XATTRS_PER_NODE || names_after > MAX_XATTR_NAMES).then(|| {
                FsError::NoSpace(format!(
                    "a file keeps at most {MAX_XATTRS_PER_NODE} bytes of extended attributes, \
                     {MAX_XATTR_NAMES} of them names"
                ))
            })
        };
        if let Some(e) = refused {
            if attrs.is_empty() {
                n.xattrs = None;
            }
            return Err(e);
        }
        attrs.insert(name.into(), value.into());
        n.ctime = SystemTime::now();
        Ok(())
    }

    /// Forget the user's attribute `name` of `ino`.
    pub(crate) fn remove_user_xattr(&mut self, ino: Ino, name: &[u8]) -> Result<(), FsError> {
        let n = self.node_mut(ino).ok_or(FsError::NotFound)?;
        let attrs = n.xattrs.as_mut().ok_or(FsError::NoAttr)?;
        attrs.remove(name).ok_or(FsError::NoAttr)?;
        if attrs.is_empty() {
            n.xattrs = None;
        }
        n.ctime = SystemTime::now();
        Ok(())
    }
}
