//! Names and inodes: the flat media store seen as a tree, and the listing cache.
//!
//! Media names may contain `/`; `a/b/c.png` is shown as directories `a/` and `a/b/` holding
//! `c.png`. Directories are implicit: they exist while some file lives under them, or while they
//! are *explicit* (made by `mkdir` in this mount, or emptied by our own `rm`/`mv`, so that
//! `rm -r` can still `rmdir` them). Inode numbers are handed out the first time a name is seen
//! and never reused; a name keeps its inode while it exists, and a name that comes back after
//! being removed gets a new one (open handles of the old inode keep working).
//!
//! The listing cache is this tree plus the state of the *walk* (the paged listing), applied page
//! by page as it arrives (`walk`); one node and the inode maps are in `node`.
//!
//! Names that cannot be paths (empty segment, `.`, `..`, NUL, a segment over 255 bytes) are
//! skipped with one warning each. When a name is both a file and a directory (`a` and `a/b`, or
//! a media uploaded elsewhere under the name of a directory made here), the directory keeps the
//! name and the file is shown beside it as `a~media` (`collisions`): every media is reachable.

use std::collections::{HashMap, HashSet};
use std::time::{Instant, SystemTime};

mod attrs;
mod collisions;
mod headers;
mod node;
mod times;
mod versions;
mod walk;

#[cfg(test)]
pub(crate) use attrs::MAX_XATTRS_PER_NODE;
pub(crate) use headers::Header;
pub use node::{Attr, Ino, Kind, NAME_MAX, ROOT_INO};
pub(crate) use node::{Defaults, InoMap, InoSet, Node, StoredHeaders};
pub(crate) use times::TimeRecord;
pub(crate) use walk::Walk;

use super::error::FsError;
use crate::api::Media;

pub(crate) struct Namespace {
    nodes: InoMap<Box<Node>>,
    next_ino: Ino,
    epoch: u64,
    version: u64,
    next_walk_id: u64,
    /// The current (or last) walk.
    walk: Option<Walk>,
    /// When the last complete walk finished, and how many pages it took.
    complete_at: Option<Instant>,
    complete_pages: usize,
    /// Names changed locally (created, uploaded, deleted) and the epoch of the change.
    recent_local: HashMap<String, u64>,
    /// Names whose deletion is staged (write-back) and not yet done on the server: what the
    /// server still lists or serves under them is not shown.
    deleting: HashSet<String>,
    warned: HashSet<String>,
    /// Media said in the log to be shown beside a directory of their name.
    noted_beside: HashSet<String>,
    /// How many times a node changed its name in place (shown beside a directory or back).
    renamed_in_place: u64,
    /// Derived names a file was shown under until it took its own name back, by directory:
    /// still found by a lookup until the next complete listing, so that `rm -r` (which read
    /// them before the `rmdir` that gave the name back) removes the file (see `collisions`).
    aliases: HashMap<(Ino, Box<str>), Ino>,
    defaults: Defaults,
    /// Directories whose whole listing the kernel caches (FOPEN_CACHE_DIR): the directory's
    /// content version it holds, and when the first of those entries (and their attributes)
    /// was handed out.
    kernel_dirs: InoMap<(u64, Instant)>,
    /// Directories with listings open: how many, and when the latest of them was opened.
    open_listings: InoMap<(u32, Instant)>,
    /// The times earlier mounts remembered of media not seen yet by this one (see `times`).
    remembered: HashMap<String, TimeRecord>,
    /// While a media the server shows joins the tree: its time, which dates the directories
    /// that change for it (see [`Namespace::dir_changed`]).
    dating: Option<SystemTime>,
    /// The times of some media changed since they were last handed out to be saved.
    times_dirty: bool,
}

/// What the live tree holds: files, directories (the root too) and the bytes of the files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

pub(crate) use crate::api::path::bad_media_name;

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
            deleting: HashSet::new(),
            warned: HashSet::new(),
            noted_beside: HashSet::new(),
            renamed_in_place: 0,
            aliases: HashMap::new(),
            defaults,
            kernel_dirs: InoMap::default(),
            open_listings: InoMap::default(),
            remembered: HashMap::new(),
            dating: None,
            times_dirty: false,
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

    /// Whether a listing of directory `dir`, or of one under it, is open. A reader that stats
    /// the entries by path (GNU `ls -l a/b`) has the kernel look up `a` and `a/b` again for each
    /// entry when the TTL is zero: they answer from the cache while that listing is read.
    pub(crate) fn on_the_way_to_open_listing(&self, dir: Ino) -> bool {
        self.open_listings
            .keys()
            .any(|&open| self.is_within(open, dir))
    }

    pub(crate) fn node(&self, ino: Ino) -> Option<&Node> {
        self.nodes.get(&ino).map(|n| &**n)
    }

    /// The current (or last) listing walk.
    pub(crate) fn walk(&self) -> Option<&Walk> {
        self.walk.as_ref()
    }

    /// When the last complete listing walk finished.
    pub(crate) fn complete_at(&self) -> Option<Instant> {
        self.complete_at
    }

    /// How many pages the last complete listing walk took (1: a small account, where one list
    /// request revalidates anything).
    pub(crate) fn complete_pages(&self) -> usize {
        self.complete_pages
    }

    /// How many times a node has changed its name in place (shown beside a directory of its
    /// name, or back): a listing handed out across such a change is not the directory's.
    pub(crate) fn renamed_in_place(&self) -> u64 {
        self.renamed_in_place
    }

    /// A node to change: only the namespace's own rules change nodes (what lies outside asks
    /// them by name).
    fn node_mut(&mut self, ino: Ino) -> Option<&mut Node> {
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

    /// Add an entry made through the mount (`mkdir`, `create`), with permission bits `mode`,
    /// belonging to `owner` (the creating process's user and group): a directory made so is
    /// explicit (it stays without media in it).
    pub(crate) fn add_local(
        &mut self,
        parent: Ino,
        name: &str,
        kind: Kind,
        mode: u32,
        owner: (u32, u32),
    ) -> Ino {
        let ino = self.add(parent, name, kind);
        if let Some(n) = self.node_mut(ino) {
            n.explicit = kind == Kind::Dir;
            n.perm = Some((mode & 0o7777) as u16);
            (n.uid, n.gid) = (Some(owner.0), Some(owner.1));
        }
        self.local_change(ino);
        ino
    }

    /// Add a node under `parent` (which must be a live directory without that child).
    pub(crate) fn add(&mut self, parent: Ino, name: &str, kind: Kind) -> Ino {
        let path = self.join(parent, name).unwrap_or_else(|| name.to_string());
        let ino = self.next_ino;
        self.next_ino += 1;
        let now = self.dating.unwrap_or_else(SystemTime::now);
        let mut node = Node::new(ino, parent, path, kind, now);
        node.content_version = self.next_version();
        self.nodes.insert(ino, Box::new(node));
        self.link(parent, name, ino, kind);
        ino
    }

    /// Put `ino` (of `kind`, own name `name`) into `parent`, under its own name or one derived
    /// from it (see `collisions`); the directory changed.
    fn link(&mut self, parent: Ino, name: &str, ino: Ino, kind: Kind) {
        let key = self.place(parent, name, ino, kind);
        if !self.aliases.is_empty() {
            self.aliases.remove(&(parent, key.clone()));
        }
        let shown_as = (&*key != name).then(|| key.clone());
        self.shown_as(ino, shown_as);
        if let Some(p) = self.nodes.get_mut(&parent) {
            if p.children.insert(key, ino).is_none() && kind == Kind::Dir {
                p.subdirs += 1;
            }
        }
        self.dir_changed(parent);
    }

    /// Take `ino` (of `kind`) shown as `name` out of `parent`, if it is there; the directory
    /// changed. A directory gives its name back to a file shown beside it.
    fn unlink(&mut self, parent: Ino, name: &str, ino: Ino, kind: Kind) {
        if let Some(p) = self.nodes.get_mut(&parent) {
            if p.children.get(name) == Some(&ino) {
                p.children.remove(name);
                if kind == Kind::Dir {
                    p.subdirs = p.subdirs.saturating_sub(1);
                }
            }
        }
        if kind == Kind::Dir {
            self.give_back(parent, name);
        }
        self.dir_changed(parent);
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
        let (parent, name, kind) = (node.parent, node.name().to_string(), node.kind);
        self.unlink(parent, &name, ino, kind);
        let mut stack = vec![ino];
        let mut taken = Vec::new();
        while let Some(i) = stack.pop() {
            if let Some(n) = self.nodes.get_mut(&i) {
                n.removed = true;
                if n.kind == Kind::File {
                    files.push(n.path.clone());
                    // What is remembered of its times goes with it.
                    self.times_dirty |= n.remote;
                }
                n.subdirs = 0;
                stack.extend(std::mem::take(&mut n.children).into_values());
                taken.push(i);
            }
        }
        if !self.aliases.is_empty() {
            let nodes = &self.nodes;
            self.aliases
                .retain(|_, i| nodes.get(i).is_some_and(|n| !n.removed));
        }
        for i in taken {
            self.reap(i);
        }
        files
    }

    /// Move `ino` to its own name `name` in `new_parent` (whose slot must be free, or hold a
    /// directory, for a file), updating the paths of everything under it.
    pub(crate) fn move_node(&mut self, ino: Ino, new_parent: Ino, name: &str) {
        let Some(node) = self.nodes.get(&ino) else {
            return;
        };
        let (old_parent, old_name, kind) = (node.parent, node.name().to_string(), node.kind);
        self.unlink(old_parent, &old_name, ino, kind);
        let path = self
            .join(new_parent, name)
            .unwrap_or_else(|| name.to_string());
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.parent = new_parent;
            n.set_path(path);
        }
        self.link(new_parent, name, ino, kind);
        let mut stack = vec![ino];
        while let Some(i) = stack.pop() {
            let Some(n) = self.nodes.get(&i) else {
                continue;
            };
            let base = n.path.clone();
            let kids: Vec<Ino> = n.children.values().copied().collect();
            for c in kids {
                if let Some(cn) = self.nodes.get_mut(&c) {
                    let path = format!("{base}/{}", cn.own_name());
                    cn.set_path(path);
                }
                stack.push(c);
            }
        }
    }

    /// The children of `dir` changed: its mtime and ctime are now (as on a local disk, for an
    /// entry made, removed or renamed here or seen gone in a listing), a new content version,
    /// and the kernel's cached listing of it is no longer current. For a media the server shows
    /// (`dating`) they are the media's time if that is later: a directory of inbound media
    /// (`MSGID/0/`) is as old as its newest media, after a remount too, so `ls -lt` sorts the
    /// messages.
    fn dir_changed(&mut self, dir: Ino) {
        let v = self.next_version();
        let dating = self.dating;
        if let Some(d) = self.nodes.get_mut(&dir) {
            d.content_version = v;
            d.mtime = match dating {
                Some(t) => d.mtime.max(t),
                None => SystemTime::now(),
            };
            d.ctime = d.mtime;
            d.user_mtime = None;
        }
        self.kernel_dirs.remove(&dir);
    }

    /// The server now holds `media` under the name of `ino` (our own PUT, which just returned):
    /// its size and headers, confirmed now, under a new content version, which is returned.
    /// The times the file shows stay those of its last local change.
    pub(crate) fn uploaded(&mut self, ino: Ino, media: &Media) -> u64 {
        let v = self.next_version();
        self.local_change(ino);
        self.put_done(ino, SystemTime::now());
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

    /// The headers the server held for `ino`'s media, as a replayed journal version recorded
    /// them (write-back): its next upload keeps them, as a rewrite does.
    pub(crate) fn held_headers(&mut self, ino: Ino, headers: StoredHeaders) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.stored = Some(Box::new(headers));
        }
    }

    /// `ino` was renamed over a media the server holds, and its upload is still to come: the
    /// server holds a media under its name (the one it replaces), which a `rm` must delete.
    pub(crate) fn on_server_already(&mut self, ino: Ino) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.remote = true;
        }
    }

    /// `ino` was renamed and its bytes are staged under the new name with `headers`
    /// (write-back): the server holds nothing under that name yet, and its upload carries the
    /// headers the rename decided (a new extension's type, say), as a copy made at once would.
    pub(crate) fn renamed_not_uploaded(&mut self, ino: Ino, headers: StoredHeaders) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.remote = false;
            n.stored = Some(Box::new(headers));
        }
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

    /// The directories along `segs` from the root, each made where missing (a file in the way
    /// is then shown beside it), with `each(ns, dir, made)` called for every one; the last.
    fn dirs_along<'a>(
        &mut self,
        segs: impl IntoIterator<Item = &'a str>,
        mut each: impl FnMut(&mut Namespace, Ino, bool),
    ) -> Ino {
        let mut cur = ROOT_INO;
        for seg in segs {
            let (dir, made) = match self.child(cur, seg) {
                Some(c) if self.node(c).is_some_and(|n| n.kind == Kind::Dir) => (c, false),
                _ => (self.add(cur, seg, Kind::Dir), true),
            };
            each(self, dir, made);
            cur = dir;
        }
        cur
    }

    /// The directory at `path`, made (explicit) where missing (a file in the way is then shown
    /// beside it).
    pub(crate) fn ensure_dirs(&mut self, path: &str) -> Ino {
        let segs = path.split('/').filter(|s| !s.is_empty());
        self.dirs_along(segs, |ns, dir, made| {
            if let Some(n) = ns.node_mut(dir).filter(|_| made) {
                n.explicit = true;
            }
        })
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

    /// The deletion of `path` is staged: until [`Namespace::delete_done`], what the server
    /// still lists or serves under it is not shown.
    pub(crate) fn delete_pending(&mut self, path: &str) {
        self.deleting.insert(path.to_string());
    }

    /// The staged deletion of `path` is over (done, cancelled by a new upload, or given up).
    pub(crate) fn delete_done(&mut self, path: &str) {
        self.deleting.remove(path);
    }

    /// Record a local change of a name that no longer has a node (deleted).
    pub(crate) fn local_change_path(&mut self, path: &str) {
        let e = self.next_epoch();
        self.recent_local.insert(path.to_string(), e);
    }

    /// What the live tree holds, for statfs.
    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for n in self.nodes.values().filter(|n| !n.removed) {
            match n.kind {
                Kind::File => {
                    t.files += 1;
                    t.bytes += n.size;
                }
                Kind::Dir => t.dirs += 1,
            }
        }
        t
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

    /// Up to `n` live files after `ino` in name order: depth-first with each directory's
    /// entries sorted, the order `readdir` lists them in, so the order `cp -r`, `tar` and
    /// `rsync` read a tree in (and the sorted flat listing, for names of one folder).
    pub(crate) fn files_after(&self, ino: Ino, n: usize) -> Vec<&Node> {
        use std::ops::Bound::{Excluded, Unbounded};
        let mut out = Vec::new();
        let Some(mut node) = self.live(ino) else {
            return out;
        };
        while out.len() < n && node.ino != ROOT_INO {
            let Some(parent) = self.nodes.get(&node.parent) else {
                break;
            };
            let later = parent
                .children
                .range::<str, _>((Excluded(node.name()), Unbounded));
            for (_, &child) in later {
                if self.collect_files(child, n, &mut out) {
                    return out;
                }
            }
            node = parent;
        }
        out
    }

    /// Push the files at and under `ino`, depth-first, until `out` holds `n`; whether it does.
    fn collect_files<'a>(&'a self, ino: Ino, n: usize, out: &mut Vec<&'a Node>) -> bool {
        let Some(node) = self.nodes.get(&ino).filter(|n| !n.removed) else {
            return out.len() >= n;
        };
        match node.kind {
            Kind::File => out.push(node),
            Kind::Dir => {
                for &child in node.children.values() {
                    if self.collect_files(child, n, out) {
                        return true;
                    }
                }
            }
        }
        out.len() >= n
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
            Kind::Dir => (n.perm.unwrap_or(d.dir_mode), 2 + n.subdirs, 0),
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
            mtime: n.user_mtime.unwrap_or(n.mtime),
            ctime: n.ctime,
            crtime: n.crtime,
        })
    }
}

#[cfg(test)]
mod tests;
