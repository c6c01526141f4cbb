//! Names and inodes: the flat media store seen as a tree, and the listing cache.
//!
//! Media names may contain `/`; `a/b/c.png` is shown as directories `a/` and `a/b/` holding
//! `c.png`. Directories are implicit: they exist while some file lives under them, or while they
//! are *explicit* (made by `mkdir` in this mount, or emptied by our own `rm`/`mv`, so that
//! `rm -r` can still `rmdir` them). Inode numbers are handed out the first time a name is seen
//! and never reused; a name keeps its inode while it exists, and a name that comes back after
//! being removed gets a new one (open handles of the old inode keep working).
//!
//! The listing cache is this tree plus the state of the *walk* (the paged listing). A walk is
//! applied page by page as it arrives, so a reader of a large directory gets its first entries
//! after one page. When a walk completes, every file it did not see is gone, except files that
//! changed locally after the walk started (an upload or a create racing with the listing must not
//! be undone by a listing that started before it): each local change takes a new *epoch*, and a
//! walk only removes or rewrites what is older than its start epoch.
//!
//! Names that cannot be paths (empty segment, `.`, `..`, NUL, a segment over 255 bytes) are
//! skipped with one warning each. When a name is both a file and a prefix of other names (`a`
//! and `a/b`), **the file wins**: `a` is a file and `a/b` is hidden with one warning, whatever
//! order the listing gives them in (a directory made only of remote media is replaced by the
//! file when the file shows up; a directory with local content keeps it and the file is hidden).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use super::error::FsError;
use crate::api::ApiError;
use crate::api::{ListPage, ListingGuard, Media, MAX_LIST_PAGES};

/// An inode number.
pub type Ino = u64;
/// The root directory's inode.
pub const ROOT_INO: Ino = 1;
/// Longest name component, in bytes.
pub const NAME_MAX: usize = 255;

/// File or directory (the only kinds this file system has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// What `stat` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
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
    pub ino: Ino,
    pub parent: Ino,
    /// The media name (files) or the prefix without its trailing `/` (directories; "" = root).
    pub path: String,
    /// Where the name starts in `path`.
    name_at: u32,
    pub kind: Kind,
    pub children: BTreeMap<Box<str>, Ino>,
    /// A directory that exists without media under it (mkdir, or emptied by us).
    pub explicit: bool,
    pub size: u64,
    /// Known to exist on the server.
    pub remote: bool,
    /// When the size was last confirmed by the server (listing, GET, our PUT).
    pub verified_at: Option<Instant>,
    /// When the bytes of `content_version` were last confirmed by the server (a GET or our
    /// PUT; a listing shows only sizes). An open after the TTL checks them again.
    pub body_checked_at: Option<Instant>,
    /// The last walk that saw this name.
    pub seen_walk: u64,
    /// Epoch of the last local change (0: none).
    pub local_epoch: u64,
    /// Changes whenever the bytes we would serve may have changed (for a directory: whenever
    /// its list of children changes).
    pub content_version: u64,
    /// The content version the kernel may hold in its page cache (0: none).
    pub kernel_version: u64,
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
    /// The headers stored on the server, when known (from a GET or our PUT); `None` when they
    /// are not known (a name only listed).
    pub stored: Option<Box<StoredHeaders>>,
    /// Headers set through xattrs, used at the next upload.
    pub content_type_override: Option<String>,
    pub cache_control_override: Option<String>,
    /// No longer in the tree (unlinked, replaced, vanished); kept while the kernel or an open
    /// handle can still name it (see [`Namespace::reap`]).
    pub removed: bool,
    /// References the kernel holds: one per entry handed to it, until it sends a forget.
    pub lookups: u32,
    /// Open handles (files and directories).
    pub opens: u32,
}

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

/// A paged listing in progress (or just finished).
#[derive(Debug, Clone)]
pub(crate) struct Walk {
    pub id: u64,
    pub start_epoch: u64,
    /// When its first page was asked for: the age of what it shows.
    pub started: Instant,
    pub last_page: Instant,
    /// Token of the next page; `None` before the first page and after the last.
    pub next: Option<String>,
    pub done: bool,
    /// Counts the pages and ends a walk that a server would make endless.
    pub guard: ListingGuard,
    /// Names (and sizes) this walk could not place because a file it has not seen (yet) is in
    /// the way; tried again when it finishes, once the files it did not see are gone.
    pub blocked: Vec<(String, u64)>,
    /// Every node this walk saw, in the order it first saw them.
    pub seen: Vec<Ino>,
}

impl Walk {
    /// Pages applied so far.
    pub(crate) fn pages(&self) -> usize {
        self.guard.pages()
    }

    /// Whether the walk can be continued at all: it has begun, has not finished, and has not sat
    /// idle for `idle` (its continuation token may be stale by then).
    pub(crate) fn can_continue(&self, idle: Duration) -> bool {
        !self.done && self.pages() > 0 && self.last_page.elapsed() < idle
    }
}

/// What applying a listing page did.
#[derive(Debug, Default)]
pub(crate) struct PageApplied {
    /// Paths of the files it removed (their cached bodies go too).
    pub dropped: Vec<String>,
    /// Why the walk was ended instead (a server that would make it endless).
    pub failure: Option<ApiError>,
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

pub(crate) struct Namespace {
    nodes: InoMap<Box<Node>>,
    next_ino: Ino,
    epoch: u64,
    version: u64,
    next_walk_id: u64,
    /// The current (or last) walk.
    pub walk: Option<Walk>,
    /// When the last complete walk finished, and how many pages it took.
    pub complete_at: Option<Instant>,
    pub complete_pages: usize,
    /// Names changed locally (created, uploaded, deleted) and the epoch of the change.
    recent_local: HashMap<String, u64>,
    warned: HashSet<String>,
    pub defaults: Defaults,
    /// Directories whose whole listing the kernel caches (FOPEN_CACHE_DIR): the directory's
    /// content version it holds, and when the first of those entries (and their attributes)
    /// was handed out.
    pub kernel_dirs: InoMap<(u64, Instant)>,
    /// Directories with listings open: how many, and when the latest of them was opened.
    open_listings: InoMap<(u32, Instant)>,
}

/// Why a media name cannot be shown as a path, if it cannot.
pub(crate) fn bad_media_name(name: &str) -> Option<&'static str> {
    if name.contains('\0') {
        return Some("it contains a NUL byte");
    }
    for seg in name.split('/') {
        if seg.is_empty() {
            return Some("it has an empty path segment");
        }
        if seg == "." || seg == ".." {
            return Some("it has a `.` or `..` segment");
        }
        if seg.len() > NAME_MAX {
            return Some("a path segment is longer than 255 bytes");
        }
    }
    None
}

impl Namespace {
    pub(crate) fn new(defaults: Defaults) -> Namespace {
        let now = SystemTime::now();
        let mut nodes = InoMap::default();
        nodes.insert(
            ROOT_INO,
            Box::new(Node::new(ROOT_INO, ROOT_INO, String::new(), Kind::Dir, now)),
        );
        if let Some(root) = nodes.get_mut(&ROOT_INO) {
            root.explicit = true;
        }
        Namespace {
            nodes,
            next_ino: ROOT_INO + 1,
            epoch: 0,
            version: 0,
            next_walk_id: 1,
            walk: None,
            complete_at: None,
            complete_pages: 0,
            recent_local: HashMap::new(),
            warned: HashSet::new(),
            defaults,
            kernel_dirs: InoMap::default(),
            open_listings: InoMap::default(),
        }
    }

    /// A listing of directory `dir` was opened (`opendir`).
    pub(crate) fn listing_opened(&mut self, dir: Ino, now: Instant) {
        let e = self.open_listings.entry(dir).or_insert((0, now));
        *e = (e.0 + 1, now);
    }

    /// A listing of directory `dir` was closed (`releasedir`).
    pub(crate) fn listing_closed(&mut self, dir: Ino) {
        if let Some(e) = self.open_listings.get_mut(&dir) {
            e.0 = e.0.saturating_sub(1);
            if e.0 == 0 {
                self.open_listings.remove(&dir);
            }
        }
    }

    /// Whether what the server said at `seen` of a child of `dir` came while a listing of `dir`
    /// is open: it then answers the stats that `ls -l` makes of each entry it reads, whatever
    /// the TTL.
    pub(crate) fn shown_to_open_listing(&self, dir: Ino, seen: Option<Instant>) -> bool {
        match (self.open_listings.get(&dir), seen) {
            (Some((_, opened)), Some(seen)) => seen >= *opened,
            _ => false,
        }
    }

    pub(crate) fn node(&self, ino: Ino) -> Option<&Node> {
        self.nodes.get(&ino).map(|n| &**n)
    }

    pub(crate) fn node_mut(&mut self, ino: Ino) -> Option<&mut Node> {
        self.nodes.get_mut(&ino).map(|n| &mut **n)
    }

    /// A live node (not removed).
    pub(crate) fn live(&self, ino: Ino) -> Option<&Node> {
        self.node(ino).filter(|n| !n.removed)
    }

    /// A live directory: ENOENT if `ino` is gone, ENOTDIR if it is a file.
    pub(crate) fn live_dir(&self, ino: Ino) -> Result<&Node, FsError> {
        let n = self.live(ino).ok_or(FsError::NotFound)?;
        if n.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        Ok(n)
    }

    pub(crate) fn child(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.nodes
            .get(&parent)
            .and_then(|p| p.children.get(name).copied())
    }

    /// The live node at `path` ("" = root).
    pub(crate) fn resolve(&self, path: &str) -> Option<Ino> {
        if path.is_empty() {
            return Some(ROOT_INO);
        }
        let mut cur = ROOT_INO;
        for seg in path.split('/') {
            cur = self.child(cur, seg)?;
        }
        Some(cur)
    }

    pub(crate) fn next_epoch(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch
    }

    pub(crate) fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    pub(crate) fn warn_once(&mut self, name: &str, why: &str) {
        if self.warned.insert(name.to_string()) {
            log::warn!("media {name:?} is not shown: {why}");
        }
    }

    /// Full path of `name` inside directory `parent`.
    pub(crate) fn join(&self, parent: Ino, name: &str) -> Option<String> {
        let p = self.live(parent)?;
        Some(if p.path.is_empty() {
            name.to_string()
        } else {
            format!("{}/{}", p.path, name)
        })
    }

    /// Add an entry made through the mount (`mkdir`, `create`), with permission bits `mode`:
    /// a directory made so is explicit (it stays without media in it).
    pub(crate) fn add_local(&mut self, parent: Ino, name: &str, kind: Kind, mode: u32) -> Ino {
        let ino = self.add(parent, name, kind);
        if let Some(n) = self.node_mut(ino) {
            n.explicit = kind == Kind::Dir;
            n.perm = Some((mode & 0o7777) as u16);
        }
        self.local_change(ino);
        ino
    }

    /// Add a node under `parent` (which must be a live directory without that child).
    pub(crate) fn add(&mut self, parent: Ino, name: &str, kind: Kind) -> Ino {
        let path = self.join(parent, name).unwrap_or_else(|| name.to_string());
        let ino = self.next_ino;
        self.next_ino += 1;
        let mut node = Node::new(ino, parent, path, kind, SystemTime::now());
        node.content_version = self.next_version();
        self.nodes.insert(ino, Box::new(node));
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children.insert(name.into(), ino);
        }
        self.dir_changed(parent);
        ino
    }

    /// The kernel was handed `ino` in an entry (lookup, create, mkdir, readdirplus): it holds
    /// a reference until it sends a forget.
    pub(crate) fn kernel_ref(&mut self, ino: Ino) {
        if let Some(n) = self.node_mut(ino) {
            n.lookups = n.lookups.saturating_add(1);
        }
    }

    /// The kernel dropped `count` references to `ino`.
    pub(crate) fn forget(&mut self, ino: Ino, count: u64) {
        if let Some(n) = self.node_mut(ino) {
            n.lookups = n.lookups.saturating_sub(count.min(u32::MAX as u64) as u32);
        }
        self.reap(ino);
    }

    /// A handle on `ino` was opened.
    pub(crate) fn open_ref(&mut self, ino: Ino) {
        if let Some(n) = self.node_mut(ino) {
            n.opens = n.opens.saturating_add(1);
        }
    }

    /// A handle on `ino` was closed.
    pub(crate) fn close_ref(&mut self, ino: Ino) {
        if let Some(n) = self.node_mut(ino) {
            n.opens = n.opens.saturating_sub(1);
        }
        self.reap(ino);
    }

    /// Free a removed node that nothing can name any more: out of the tree, no reference in
    /// the kernel and no open handle. Without this a mount that runs for weeks would keep a
    /// node for every media it ever saw (they vanish after 48 hours). Inode numbers are never
    /// reused, so anything still holding a freed one (a listing in progress, a walk) finds no
    /// node, as for any removed one.
    fn reap(&mut self, ino: Ino) {
        let unreachable = self
            .nodes
            .get(&ino)
            .is_some_and(|n| n.removed && n.lookups == 0 && n.opens == 0);
        if unreachable && ino != ROOT_INO {
            self.nodes.remove(&ino);
            self.kernel_dirs.remove(&ino);
        }
    }

    /// Nodes held, removed ones included.
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Take `ino` (and everything under it) out of the tree; the nodes stay while the kernel
    /// or a handle can name them. Returns the paths of the files removed.
    pub(crate) fn detach(&mut self, ino: Ino) -> Vec<String> {
        let mut files = Vec::new();
        let Some(node) = self.nodes.get(&ino) else {
            return files;
        };
        if node.removed || ino == ROOT_INO {
            return files;
        }
        let (parent, name) = (node.parent, node.name().to_string());
        if let Some(p) = self.nodes.get_mut(&parent) {
            if p.children.get(name.as_str()) == Some(&ino) {
                p.children.remove(name.as_str());
            }
        }
        self.dir_changed(parent);
        let mut stack = vec![ino];
        let mut taken = Vec::new();
        while let Some(i) = stack.pop() {
            if let Some(n) = self.nodes.get_mut(&i) {
                n.removed = true;
                if n.kind == Kind::File {
                    files.push(n.path.clone());
                }
                stack.extend(std::mem::take(&mut n.children).into_values());
                taken.push(i);
            }
        }
        for i in taken {
            self.reap(i);
        }
        files
    }

    /// Move `ino` to `name` in `new_parent` (whose slot must be free), updating the paths of
    /// everything under it.
    pub(crate) fn move_node(&mut self, ino: Ino, new_parent: Ino, name: &str) {
        let Some(node) = self.nodes.get(&ino) else {
            return;
        };
        let (old_parent, old_name) = (node.parent, node.name().to_string());
        if let Some(p) = self.nodes.get_mut(&old_parent) {
            if p.children.get(old_name.as_str()) == Some(&ino) {
                p.children.remove(old_name.as_str());
            }
        }
        self.dir_changed(old_parent);
        self.dir_changed(new_parent);
        let path = self
            .join(new_parent, name)
            .unwrap_or_else(|| name.to_string());
        if let Some(p) = self.nodes.get_mut(&new_parent) {
            p.children.insert(name.into(), ino);
        }
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.parent = new_parent;
            n.set_path(path);
        }
        let mut stack = vec![ino];
        while let Some(i) = stack.pop() {
            let Some(n) = self.nodes.get(&i) else {
                continue;
            };
            let base = n.path.clone();
            let kids: Vec<(Box<str>, Ino)> =
                n.children.iter().map(|(k, v)| (k.clone(), *v)).collect();
            for (k, c) in kids {
                if let Some(cn) = self.nodes.get_mut(&c) {
                    cn.set_path(format!("{base}/{k}"));
                }
                stack.push(c);
            }
        }
    }

    /// The children of `dir` changed: a new content version, and the kernel's cached listing
    /// of it is no longer current.
    fn dir_changed(&mut self, dir: Ino) {
        let v = self.next_version();
        if let Some(d) = self.nodes.get_mut(&dir) {
            d.content_version = v;
        }
        self.kernel_dirs.remove(&dir);
    }

    /// The server now holds `media` under the name of `ino` (our own PUT): its size and headers,
    /// confirmed now, under a new content version, which is returned.
    pub(crate) fn uploaded(&mut self, ino: Ino, media: &Media) -> u64 {
        let v = self.next_version();
        self.local_change(ino);
        if let Some(n) = self.nodes.get_mut(&ino) {
            let now = Instant::now();
            n.size = media.body.len() as u64;
            n.remote = true;
            n.verified_at = Some(now);
            n.body_checked_at = Some(now);
            n.stored = Some(Box::new(StoredHeaders::of(media)));
            n.content_version = v;
        }
        v
    }

    /// A directory we emptied ourselves stays (so `rm -r` can still `rmdir` it).
    pub(crate) fn keep_emptied(&mut self, dir: Ino) {
        if dir == ROOT_INO {
            return;
        }
        if let Some(n) = self.node_mut(dir) {
            if n.kind == Kind::Dir && n.children.is_empty() && !n.removed {
                n.explicit = true;
            }
        }
    }

    /// The directory at `path`, made (explicit) where missing; `None` if a file is in the way.
    pub(crate) fn ensure_dirs(&mut self, path: &str) -> Option<Ino> {
        let mut cur = ROOT_INO;
        if path.is_empty() {
            return Some(cur);
        }
        for seg in path.split('/') {
            cur = match self.child(cur, seg) {
                Some(c) if self.node(c).is_some_and(|n| n.kind == Kind::Dir) => c,
                Some(_) => return None,
                None => {
                    let d = self.add(cur, seg, Kind::Dir);
                    if let Some(n) = self.node_mut(d) {
                        n.explicit = true;
                    }
                    d
                }
            };
        }
        Some(cur)
    }

    /// Record a local change of `ino` (and its directories) at a new epoch.
    pub(crate) fn local_change(&mut self, ino: Ino) -> u64 {
        let e = self.next_epoch();
        if let Some(path) = self.nodes.get(&ino).map(|n| n.path.clone()) {
            self.recent_local.insert(path, e);
        }
        let mut cur = ino;
        while let Some(n) = self.nodes.get_mut(&cur) {
            n.local_epoch = e;
            if cur == ROOT_INO {
                break;
            }
            cur = n.parent;
        }
        e
    }

    /// Record a local change of a name that no longer has a node (deleted).
    pub(crate) fn local_change_path(&mut self, path: &str) {
        let e = self.next_epoch();
        self.recent_local.insert(path.to_string(), e);
    }

    /// Directories along `segs`, made as needed. `Err(path)` when a prefix is a file.
    fn dirs_for(&mut self, segs: &[&str], walk_id: u64) -> Result<Ino, String> {
        let mut cur = ROOT_INO;
        for seg in segs {
            cur = match self.child(cur, seg) {
                Some(c) => match self.nodes.get(&c).map(|n| n.kind) {
                    Some(Kind::Dir) => c,
                    _ => {
                        return Err(self
                            .nodes
                            .get(&c)
                            .map(|n| n.path.clone())
                            .unwrap_or_default())
                    }
                },
                None => self.add(cur, seg, Kind::Dir),
            };
            if walk_id != 0 {
                self.seen_by_walk(cur, walk_id);
            }
        }
        Ok(cur)
    }

    /// Whether a directory holds only media known from the server (so a file may replace it).
    fn replaceable(&self, dir: Ino) -> bool {
        let mut stack = vec![dir];
        while let Some(i) = stack.pop() {
            let Some(n) = self.nodes.get(&i) else {
                continue;
            };
            match n.kind {
                Kind::Dir if n.explicit => return false,
                Kind::File if !n.remote => return false,
                _ => {}
            }
            stack.extend(n.children.values().copied());
        }
        true
    }

    /// A media the server reported (listing item or GET): add it or update its size.
    /// `walk` is `(id, start_epoch)` for a listing, `None` for a GET (which is always current).
    /// Returns its inode, or `None` when the name is skipped or hidden. Paths of files removed to
    /// make room (a directory replaced by a file) are pushed on `dropped`.
    pub(crate) fn remote_file(
        &mut self,
        name: &str,
        size: u64,
        walk: Option<(u64, u64)>,
        now: Instant,
        dropped: &mut Vec<String>,
    ) -> Option<Ino> {
        if let Some(why) = bad_media_name(name) {
            self.warn_once(name, why);
            return None;
        }
        let (walk_id, start_epoch) = walk.unwrap_or((0, u64::MAX));
        if walk.is_some() {
            // A local change after this walk started is newer than what the page says.
            if let Some(&e) = self.recent_local.get(name) {
                if e > start_epoch {
                    if let Some(ino) = self.resolve(name) {
                        self.seen_by_walk(ino, walk_id);
                        return Some(ino);
                    }
                    return None;
                }
            }
        }
        let segs: Vec<&str> = name.split('/').collect();
        let (last, dirs) = segs.split_last()?;
        let parent = match self.dirs_for(dirs, walk_id) {
            Ok(p) => p,
            Err(file) => {
                if let Some(w) = self.walk.as_mut().filter(|w| w.id == walk_id) {
                    if !w.done {
                        w.blocked.push((name.to_string(), size));
                        return None;
                    }
                }
                self.warn_once(
                    name,
                    &format!("{file:?} is a file, so it cannot be a directory"),
                );
                return None;
            }
        };
        let ino = match self.child(parent, last) {
            Some(c) if self.nodes.get(&c).map(|n| n.kind) == Some(Kind::File) => c,
            Some(c) => {
                if !self.replaceable(c) {
                    self.warn_once(name, "a directory of that name has local content");
                    return None;
                }
                for path in self.detach(c) {
                    self.warn_once(
                        &path,
                        &format!("{name:?} is a file, so it cannot be a directory"),
                    );
                    dropped.push(path);
                }
                self.add(parent, last, Kind::File)
            }
            None => self.add(parent, last, Kind::File),
        };
        let v = self.next_version();
        let n = self.nodes.get_mut(&ino)?;
        if n.size != size && n.remote {
            n.content_version = v;
            n.mtime = SystemTime::now();
            n.ctime = n.mtime;
        }
        n.size = size;
        n.remote = true;
        n.verified_at = Some(now);
        if walk_id != 0 {
            self.seen_by_walk(ino, walk_id);
        }
        Some(ino)
    }

    /// Walk `walk_id` saw `ino`: mark it, and log it the first time (so that a directory
    /// listing following the walk looks only at what each page brought).
    fn seen_by_walk(&mut self, ino: Ino, walk_id: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            if n.seen_walk != walk_id {
                n.seen_walk = walk_id;
                if let Some(w) = self.walk.as_mut().filter(|w| w.id == walk_id) {
                    w.seen.push(ino);
                }
            }
        }
    }

    /// Start a new walk (replacing any unfinished one).
    pub(crate) fn start_walk(&mut self, now: Instant) -> u64 {
        let id = self.next_walk_id;
        self.next_walk_id += 1;
        self.walk = Some(Walk {
            id,
            start_epoch: self.epoch,
            started: now,
            last_page: now,
            next: None,
            done: false,
            guard: ListingGuard::new(MAX_LIST_PAGES),
            blocked: Vec::new(),
            seen: Vec::new(),
        });
        id
    }

    /// Apply `page` of walk `id`: its media join the tree; the walk ends after its last page
    /// (removing what it did not see) or when the listing guard refuses it. A page of a walk
    /// that is no longer the current one changes nothing.
    pub(crate) fn apply_page(
        &mut self,
        id: u64,
        page: &ListPage,
        pinned: &HashSet<Ino>,
        now: Instant,
    ) -> PageApplied {
        let mut out = PageApplied::default();
        let start_epoch = match &self.walk {
            Some(w) if w.id == id => w.start_epoch,
            _ => return out,
        };
        for item in &page.items {
            self.remote_file(
                &item.name,
                item.content_length,
                Some((id, start_epoch)),
                now,
                &mut out.dropped,
            );
        }
        let Some(w) = self.walk.as_mut() else {
            return out;
        };
        w.last_page = now;
        w.next = page.next.clone();
        match w.guard.page(page.next.as_deref()) {
            Ok(true) => {}
            Ok(false) => out.dropped.extend(self.finish_walk(pinned, now)),
            Err(e) => {
                self.walk = None;
                out.failure = Some(e);
            }
        }
        out
    }

    /// Whether `ino` belongs in a listing produced by `walk` (seen by it, or local).
    pub(crate) fn confirmed(&self, ino: Ino, walk: &Walk, pinned: &HashSet<Ino>) -> bool {
        match self.nodes.get(&ino) {
            Some(n) => {
                n.seen_walk == walk.id
                    || n.local_epoch > walk.start_epoch
                    || (n.kind == Kind::Dir && n.explicit)
                    || pinned.contains(&ino)
            }
            None => false,
        }
    }

    /// A walk saw its last page: everything it did not see and that did not change locally
    /// since it started is gone. Returns the paths of the files removed.
    pub(crate) fn finish_walk(&mut self, pinned: &HashSet<Ino>, now: Instant) -> Vec<String> {
        let Some(walk) = self.walk.as_mut() else {
            return Vec::new();
        };
        walk.done = true;
        let (id, start_epoch, pages) = (walk.id, walk.start_epoch, walk.pages());
        let blocked = std::mem::take(&mut walk.blocked);
        let stale: Vec<Ino> = self
            .nodes
            .values()
            .filter(|n| {
                !n.removed
                    && n.kind == Kind::File
                    && n.seen_walk != id
                    && n.local_epoch <= start_epoch
                    && !pinned.contains(&n.ino)
            })
            .map(|n| n.ino)
            .collect();
        let mut removed = Vec::new();
        for ino in stale {
            removed.extend(self.detach(ino));
        }
        // A file deleted elsewhere no longer hides the names under it (a file replaced by a
        // directory); a file this walk saw still does, with a warning.
        for (name, size) in blocked {
            self.remote_file(&name, size, Some((id, start_epoch)), now, &mut removed);
        }
        loop {
            let empty: Vec<Ino> = self
                .nodes
                .values()
                .filter(|n| {
                    !n.removed
                        && n.kind == Kind::Dir
                        && n.ino != ROOT_INO
                        && !n.explicit
                        && n.children.is_empty()
                        && n.local_epoch <= start_epoch
                })
                .map(|n| n.ino)
                .collect();
            if empty.is_empty() {
                break;
            }
            for ino in empty {
                self.detach(ino);
            }
        }
        self.recent_local.retain(|_, e| *e > start_epoch);
        self.complete_at = Some(now);
        self.complete_pages = pages;
        removed
    }

    /// All live files, for statfs: (count, total bytes).
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.nodes
            .values()
            .filter(|n| !n.removed && n.kind == Kind::File)
            .fold((0, 0), |(c, b), n| (c + 1, b + n.size))
    }

    /// Every live file under directory `dir`, deepest paths last.
    pub(crate) fn files_under(&self, dir: Ino) -> Vec<Ino> {
        let mut out = Vec::new();
        let mut stack = vec![dir];
        while let Some(i) = stack.pop() {
            if let Some(n) = self.nodes.get(&i) {
                if n.kind == Kind::File {
                    out.push(i);
                }
                stack.extend(n.children.values().copied());
            }
        }
        out
    }

    /// Whether `ino` is `ancestor` or lies under it.
    pub(crate) fn is_within(&self, mut ino: Ino, ancestor: Ino) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            if ino == ROOT_INO {
                return false;
            }
            ino = match self.nodes.get(&ino) {
                Some(n) => n.parent,
                None => return false,
            };
        }
    }

    /// What stat shows for `ino`; `size` overrides the cached size (an open write buffer).
    pub(crate) fn attr(&self, ino: Ino, size: Option<u64>) -> Option<Attr> {
        let n = self.nodes.get(&ino)?;
        let d = &self.defaults;
        let (perm, nlink, size) = match n.kind {
            Kind::File => (
                n.perm.unwrap_or(d.file_mode),
                if n.removed { 0 } else { 1 },
                size.unwrap_or(n.size),
            ),
            Kind::Dir => (n.perm.unwrap_or(d.dir_mode), 2, 0),
        };
        Some(Attr {
            ino,
            kind: n.kind,
            size,
            perm,
            nlink,
            uid: n.uid.unwrap_or(d.uid),
            gid: n.gid.unwrap_or(d.gid),
            atime: n.atime,
            mtime: n.mtime,
            ctime: n.ctime,
            crtime: n.crtime,
        })
    }
}

impl Node {
    fn new(ino: Ino, parent: Ino, path: String, kind: Kind, now: SystemTime) -> Node {
        let mut node = Node {
            ino,
            parent,
            path: String::new(),
            name_at: 0,
            kind,
            children: BTreeMap::new(),
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

    /// The name in its directory: the last segment of its path.
    pub(crate) fn name(&self) -> &str {
        &self.path[self.name_at as usize..]
    }

    fn set_path(&mut self, path: String) {
        self.name_at = path.rfind('/').map_or(0, |i| i + 1) as u32;
        self.path = path;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Namespace {
        Namespace::new(Defaults {
            file_mode: 0o644,
            dir_mode: 0o755,
            uid: 1,
            gid: 1,
        })
    }

    #[test]
    fn bad_names() {
        for n in ["", "/a", "a/", "a//b", ".", "a/../b", "a/./b", "x\0y"] {
            assert!(bad_media_name(n).is_some(), "{n:?}");
        }
        assert!(bad_media_name(&"x".repeat(256)).is_some());
        assert!(bad_media_name(&format!("d/{}", "x".repeat(255))).is_none());
        assert!(bad_media_name("a b/ü/..x/.hidden").is_none());
    }

    #[test]
    fn implicit_dirs_and_stable_inodes() {
        let mut ns = ns();
        let now = Instant::now();
        let mut d = Vec::new();
        let f = ns.remote_file("a/b/c.png", 3, None, now, &mut d).unwrap();
        let a = ns.child(ROOT_INO, "a").unwrap();
        let b = ns.child(a, "b").unwrap();
        assert_eq!(ns.child(b, "c.png"), Some(f));
        assert_eq!(ns.node(b).unwrap().path, "a/b");
        assert_eq!(ns.resolve("a/b/c.png"), Some(f));
        let again = ns.remote_file("a/b/c.png", 4, None, now, &mut d).unwrap();
        assert_eq!(again, f);
        assert_eq!(ns.node(f).unwrap().size, 4);
    }

    #[test]
    fn the_file_wins_in_either_order() {
        for order in [["a", "a/b"], ["a/b", "a"]] {
            let mut ns = ns();
            let mut d = Vec::new();
            for name in order {
                ns.remote_file(name, 1, None, Instant::now(), &mut d);
            }
            let a = ns.child(ROOT_INO, "a").unwrap();
            assert_eq!(ns.node(a).unwrap().kind, Kind::File, "{order:?}");
            assert_eq!(ns.totals(), (1, 1));
        }
    }

    #[test]
    fn move_updates_paths_below() {
        let mut ns = ns();
        let mut d = Vec::new();
        let f = ns
            .remote_file("a/b/c", 1, None, Instant::now(), &mut d)
            .unwrap();
        let a = ns.child(ROOT_INO, "a").unwrap();
        ns.move_node(a, ROOT_INO, "z");
        assert_eq!(ns.node(f).unwrap().path, "z/b/c");
        assert_eq!(ns.resolve("z/b/c"), Some(f));
        assert_eq!(ns.resolve("a/b/c"), None);
    }
}
