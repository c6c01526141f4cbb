//! One file or directory of the tree, what `stat` shows of it, and the inode maps.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Instant, SystemTime};

use crate::api::Media;

/// An inode number.
pub type Ino = u64;
/// The root directory's inode.
pub const ROOT_INO: Ino = 1;
/// Longest name component, in bytes.
pub const NAME_MAX: usize = crate::api::path::SEGMENT_MAX;

/// File or directory (the only kinds this file system has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A media.
    File,
    /// A prefix of media names, or a directory made in this mount.
    Dir,
}

/// What `stat` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// The inode number.
    pub ino: Ino,
    /// File or directory.
    pub kind: Kind,
    /// Length in bytes (a directory: 0).
    pub size: u64,
    /// Permission bits.
    pub perm: u16,
    /// Links (a removed file still open: 0).
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last access, as far as this mount knows.
    pub atime: SystemTime,
    /// Last change of the bytes, as far as this mount knows.
    pub mtime: SystemTime,
    /// Last change of the bytes or the attributes.
    pub ctime: SystemTime,
    /// When this mount first saw the name.
    pub crtime: SystemTime,
}

/// Mode and owner of nodes nobody chmod'ed or chown'ed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Defaults {
    pub file_mode: u16,
    pub dir_mode: u16,
    pub uid: u32,
    pub gid: u32,
}

/// One file or directory. A listing of 100,000 media holds 100,000 of these, so its name is a
/// part of its path rather than a string of its own, and it lives in a box (a hash table of
/// nodes inline would reserve the slack of its buckets at the full size of a node).
#[derive(Debug)]
pub(crate) struct Node {
    pub(super) ino: Ino,
    pub(super) parent: Ino,
    /// The media name (files) or the prefix without its trailing `/` (directories; "" = root).
    pub(super) path: String,
    /// Where the own name (the last segment of `path`) starts in `path`.
    name_at: u32,
    /// The name it is shown under in its directory when that is not its own: a file whose own
    /// name a directory holds (see [`super::collisions`]).
    pub(super) shown_as: Option<Box<str>>,
    pub(super) kind: Kind,
    pub(super) children: BTreeMap<Box<str>, Ino>,
    /// How many of `children` are directories (a directory's link count is 2 plus these).
    pub(super) subdirs: u32,
    /// A directory that exists without media under it (mkdir, or emptied by us).
    pub(super) explicit: bool,
    pub(super) size: u64,
    /// Known to exist on the server.
    pub(super) remote: bool,
    /// When the size was last confirmed by the server (listing, GET, our PUT).
    pub(super) verified_at: Option<Instant>,
    /// When the bytes of `content_version` were last confirmed by the server (a GET or our
    /// PUT; a listing shows only sizes). An open after the TTL checks them again.
    pub(super) body_checked_at: Option<Instant>,
    /// The last walk that saw this name.
    pub(super) seen_walk: u64,
    /// Epoch of the last local change (0: none).
    pub(super) local_epoch: u64,
    /// Changes whenever the bytes we would serve may have changed (for a directory: whenever
    /// its list of children changes).
    pub(super) content_version: u64,
    /// The content version the kernel may hold in its page cache (0: none).
    pub(super) kernel_version: u64,
    pub(super) perm: Option<u16>,
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
    pub(super) atime: SystemTime,
    /// When the bytes last changed: for what the server holds, its time (see `super::times`);
    /// our own writes and uploads move it on.
    pub(super) mtime: SystemTime,
    pub(super) ctime: SystemTime,
    pub(super) crtime: SystemTime,
    /// The time a `touch` (utimens) chose, shown instead of `mtime` until the next local write;
    /// nothing the server says changes it.
    pub(super) user_mtime: Option<SystemTime>,
    /// The latest moment the bytes the server holds can have been uploaded (a GET's
    /// `Last-Modified`, our own PUT, or else when this machine first saw them): the media
    /// vanishes at most the retention after it. `None` for what the server does not hold.
    pub(super) uploaded_at: Option<SystemTime>,
    /// Extended attributes set by the user outside `user.bandwidth.` (kept in memory only).
    pub(super) xattrs: Option<Box<UserXattrs>>,
    /// The headers stored on the server, when known (from a GET or our PUT); `None` when they
    /// are not known (a name only listed).
    pub(super) stored: Option<Box<StoredHeaders>>,
    /// Headers set through xattrs, used at the next upload.
    pub(super) content_type_override: Option<String>,
    pub(super) cache_control_override: Option<String>,
    /// No longer in the tree (unlinked, replaced, vanished); kept while the kernel or an open
    /// handle can still name it (see [`Namespace::reap`]).
    pub(super) removed: bool,
    /// References the kernel holds: one per entry handed to it, until it sends a forget.
    pub(super) lookups: u32,
    /// Open handles (files and directories).
    pub(super) opens: u32,
}

/// Extended attributes of the user's own (`user.foo`): names and values, in name order.
pub(crate) type UserXattrs = BTreeMap<Box<[u8]>, Box<[u8]>>;

/// The headers a media is stored with (either may be absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoredHeaders {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
}

impl StoredHeaders {
    /// The headers of a media as a GET answered it, or as our PUT sent it.
    pub(crate) fn of(media: &Media) -> StoredHeaders {
        StoredHeaders {
            content_type: media.content_type.clone(),
            cache_control: media.cache_control.clone(),
        }
    }
}

/// Hashes inode numbers (small sequential integers) with one multiplication: the node table is
/// probed for every entry of every listing page, and SipHash showed in the profile.
#[derive(Default, Clone, Copy)]
pub(crate) struct InoHasher(u64);

impl std::hash::Hasher for InoHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) type InoBuild = std::hash::BuildHasherDefault<InoHasher>;
pub(crate) type InoMap<V> = HashMap<Ino, V, InoBuild>;
pub(crate) type InoSet = HashSet<Ino, InoBuild>;

impl Node {
    pub(super) fn new(ino: Ino, parent: Ino, path: String, kind: Kind, now: SystemTime) -> Node {
        let mut node = Node {
            ino,
            parent,
            path: String::new(),
            name_at: 0,
            shown_as: None,
            kind,
            children: BTreeMap::new(),
            subdirs: 0,
            explicit: false,
            size: 0,
            remote: false,
            verified_at: None,
            body_checked_at: None,
            seen_walk: 0,
            local_epoch: 0,
            content_version: 0,
            kernel_version: 0,
            perm: None,
            uid: None,
            gid: None,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            user_mtime: None,
            uploaded_at: None,
            xattrs: None,
            stored: None,
            content_type_override: None,
            cache_control_override: None,
            removed: false,
            lookups: 0,
            opens: 0,
        };
        node.set_path(path);
        node
    }

    /// Its inode number.
    pub(crate) fn ino(&self) -> Ino {
        self.ino
    }

    /// The directory it is in.
    pub(crate) fn parent(&self) -> Ino {
        self.parent
    }

    /// The media name (files) or the prefix without its trailing `/` (directories; "" = root).
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// File or directory.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// Its entries, by the name each is shown under (directories).
    pub(crate) fn children(&self) -> &BTreeMap<Box<str>, Ino> {
        &self.children
    }

    /// Its size as the server last told it, or as uploaded.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Known to exist on the server.
    pub(crate) fn remote(&self) -> bool {
        self.remote
    }

    /// When the size was last confirmed by the server (listing, GET, our PUT).
    pub(crate) fn verified_at(&self) -> Option<Instant> {
        self.verified_at
    }

    /// When the bytes of its content version were last confirmed by the server.
    pub(crate) fn body_checked_at(&self) -> Option<Instant> {
        self.body_checked_at
    }

    /// The version of the bytes a read of it is served (see `super::versions`).
    pub(crate) fn content_version(&self) -> u64 {
        self.content_version
    }

    /// The version the kernel may hold in its page cache (0: none).
    pub(crate) fn kernel_version(&self) -> u64 {
        self.kernel_version
    }

    /// The user's own extended attributes, if any.
    pub(crate) fn xattrs(&self) -> Option<&UserXattrs> {
        self.xattrs.as_deref()
    }

    /// The headers the server holds, when known.
    pub(crate) fn stored(&self) -> Option<&StoredHeaders> {
        self.stored.as_deref()
    }

    /// The content type set through the xattrs, for the next upload.
    pub(crate) fn content_type_override(&self) -> Option<&str> {
        self.content_type_override.as_deref()
    }

    /// The cache control set through the xattrs, for the next upload.
    pub(crate) fn cache_control_override(&self) -> Option<&str> {
        self.cache_control_override.as_deref()
    }

    /// No longer in the tree; kept while the kernel or a handle can name it.
    pub(crate) fn removed(&self) -> bool {
        self.removed
    }

    /// Open handles (files and directories).
    pub(crate) fn opens(&self) -> u32 {
        self.opens
    }

    /// The name it is shown under in its directory (its key there): its own name, unless it
    /// is shown under a derived one.
    pub(crate) fn name(&self) -> &str {
        self.shown_as.as_deref().unwrap_or_else(|| self.own_name())
    }

    /// The last segment of its path (of the media name, for a file).
    pub(crate) fn own_name(&self) -> &str {
        &self.path[self.name_at as usize..]
    }

    pub(super) fn set_path(&mut self, path: String) {
        self.name_at = path.rfind('/').map_or(0, |i| i + 1) as u32;
        self.path = path;
    }
}
