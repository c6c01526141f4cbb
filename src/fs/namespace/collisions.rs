//! Names that collide: a media name that is also a prefix of other names (`a` and `a/b`), or a
//! media uploaded elsewhere under the name of a directory made here with `mkdir`.
//!
//! A tree cannot hold both under one name, and hiding either would hide a media. So **a
//! directory keeps the name and the file is shown beside it** under a derived name,
//! `a~media` (`a~media2`, ... when that one is taken too; the name is shortened to fit 255
//! bytes). The file is the media `a` in every other respect: reads, writes, `rm`,
//! `mv`, xattrs and recovery all use its own name. It is said once in the log, and it takes its
//! own name back when the directory goes (emptied elsewhere, `rmdir`, renamed away).
//!
//! The rules, all kept by [`Namespace::link`] and [`Namespace::unlink`]:
//! - A directory is always shown under its own name; so is a file, unless a directory holds it.
//! - A node under its own name takes that name from a file shown there under a derived one,
//!   which moves to the next free derived name.
//! - A directory that leaves a name gives it back to the file shown beside it. The derived
//!   name still finds the file until the next complete listing: `rm -r` read it before the
//!   `rmdir` that gave the name back, and unlinks it after.
//!
//! Until the kernel's entries expire (the metadata TTL) it may still show the old names.

use std::ops::Bound::{Included, Unbounded};

use super::{Ino, Kind, Namespace, NAME_MAX};

/// What a file shown beside a directory of its name gets after that name.
pub(crate) const BESIDE: &str = "~media";

/// Room kept for a counter after [`BESIDE`].
const COUNTER_ROOM: usize = 10;

impl Namespace {
    /// The key under which `ino` (own name `name`, of `kind`) goes into `parent`: its own
    /// name, after moving a file shown there under a derived name (or a file a directory
    /// displaces) to a derived name of its own; or a derived name, for a file whose name a
    /// directory holds.
    pub(super) fn place(&mut self, parent: Ino, name: &str, ino: Ino, kind: Kind) -> Box<str> {
        let occupant = self
            .child(parent, name)
            .filter(|&o| o != ino)
            .and_then(|o| self.nodes.get(&o))
            .map(|o| (o.ino, o.kind, o.shown_as.is_some()));
        match occupant {
            Some((o, Kind::File, derived)) if derived || kind == Kind::Dir => {
                self.show_beside(parent, o, name);
                name.into()
            }
            Some((_, Kind::Dir, _)) if kind == Kind::File => self.free_beside(parent, name, name),
            _ => name.into(),
        }
    }

    /// File `ino`, in `parent` under key `key`, leaves that key (to a node that is about to
    /// take it) and is shown under a derived name.
    fn show_beside(&mut self, parent: Ino, ino: Ino, key: &str) {
        let Some(own) = self.nodes.get(&ino).map(|n| n.own_name().to_string()) else {
            return;
        };
        let new_key = self.free_beside(parent, &own, key);
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children.remove(key);
            p.children.insert(new_key.clone(), ino);
        }
        self.renamed_in_place += 1;
        self.shown_as(ino, Some(new_key));
    }

    /// The first derived name of `own` free in `parent` (other than `taken`).
    fn free_beside(&self, parent: Ino, own: &str, taken: &str) -> Box<str> {
        let base = beside_base(own);
        let mut counter = 1u64;
        loop {
            let key = match counter {
                1 => format!("{base}{BESIDE}"),
                n => format!("{base}{BESIDE}{n}"),
            };
            if key != taken && self.child(parent, &key).is_none() {
                return key.into();
            }
            counter += 1;
        }
    }

    /// Set the name `ino` is shown under (`None`: its own); a derived one is said once in the
    /// log.
    pub(super) fn shown_as(&mut self, ino: Ino, key: Option<Box<str>>) {
        let Some(n) = self.nodes.get_mut(&ino) else {
            return;
        };
        if let Some(k) = &key {
            if self.noted_beside.insert(n.path.clone()) {
                log::warn!(
                    "media {:?} is shown as {k:?}: a directory of that name holds other media",
                    n.path
                );
            }
        }
        n.shown_as = key;
    }

    /// Directory `name` left `parent`: a file of that name shown beside it takes the name back.
    pub(super) fn give_back(&mut self, parent: Ino, name: &str) {
        let prefix = format!("{}{BESIDE}", beside_base(name));
        let Some(p) = self.nodes.get(&parent) else {
            return;
        };
        let found = p
            .children
            .range::<str, _>((Included(prefix.as_str()), Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .find(|(_, i)| {
                self.nodes
                    .get(i)
                    .is_some_and(|n| n.shown_as.is_some() && n.own_name() == name)
            })
            .map(|(k, &i)| (k.clone(), i));
        let Some((key, ino)) = found else {
            return;
        };
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children.remove(&key);
            p.children.insert(name.into(), ino);
        }
        self.aliases.insert((parent, key), ino);
        self.renamed_in_place += 1;
        self.shown_as(ino, None);
        if let Some(n) = self.nodes.get(&ino) {
            log::info!("media {:?} is shown under its own name again", n.path);
            self.noted_beside.remove(&n.path);
        }
    }

    /// The live node `name` names in `parent`: its child, or a file that was shown under that
    /// derived name until it took its own back, until the next complete listing.
    pub(crate) fn named(&self, parent: Ino, name: &str) -> Option<Ino> {
        if let Some(c) = self.child(parent, name) {
            return Some(c);
        }
        if self.aliases.is_empty() {
            return None;
        }
        let ino = *self.aliases.get(&(parent, Box::from(name)))?;
        self.live(ino).map(|n| n.ino)
    }

    /// A complete listing: the names shown are all there is; derived names given up go.
    pub(super) fn forget_aliases(&mut self) {
        self.aliases.clear();
    }

    /// The file whose own name is `name` in `parent`, wherever it is shown.
    pub(crate) fn file_in(&self, parent: Ino, name: &str) -> Option<Ino> {
        let is_it = |i: &Ino| {
            self.nodes
                .get(i)
                .is_some_and(|n| n.kind == Kind::File && n.own_name() == name)
        };
        if let Some(c) = self.child(parent, name).filter(is_it) {
            return Some(c);
        }
        let prefix = format!("{}{BESIDE}", beside_base(name));
        self.nodes
            .get(&parent)?
            .children
            .range::<str, _>((Included(prefix.as_str()), Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, &i)| i)
            .find(is_it)
    }

    /// The live file of media `path`, wherever it is shown.
    pub(crate) fn resolve_file(&self, path: &str) -> Option<Ino> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let parent = self.resolve(dir)?;
        self.file_in(parent, name)
    }
}

/// The part of `own` a derived name starts with: all of it, or as much as leaves room for the
/// suffix and a counter within [`NAME_MAX`] (cut at a character boundary).
fn beside_base(own: &str) -> &str {
    let room = NAME_MAX - BESIDE.len() - COUNTER_ROOM;
    if own.len() <= room {
        return own;
    }
    let mut end = room;
    while !own.is_char_boundary(end) {
        end -= 1;
    }
    &own[..end]
}
