//! The model: what the mount should show.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;
use crate::ops::{loop_output, AfterFailure, Op, Outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Missing,
}

#[derive(Default, Clone)]
pub(crate) struct Model {
    /// What the API holds.
    pub(crate) media: BTreeMap<String, Vec<u8>>,
    /// Directories that exist without media under them (mkdir, or emptied by us).
    pub(crate) explicit: BTreeSet<String>,
    /// Every size each name has had (its keys are every name that was a file).
    pub(crate) sizes: BTreeMap<String, BTreeSet<usize>>,
    /// Names and directories the last API changes touched (the generator aims at them often, so
    /// the mount is asked about what changed elsewhere before anything else refreshes it).
    pub(crate) recent: Vec<String>,
    /// The mount writes back: a close after a failed fsync stages the bytes and succeeds.
    pub(crate) writeback: bool,
}

pub(crate) fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

pub(crate) fn under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// The proper prefixes of a path: "a/b/c" -> "a", "a/b".
pub(crate) fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

impl Model {
    fn touched(&mut self, name: &str) {
        self.recent.push(name.to_string());
        self.recent.extend(prefixes(name).map(str::to_string));
        let excess = self.recent.len().saturating_sub(6);
        self.recent.drain(..excess);
    }

    pub(crate) fn set(&mut self, name: &str, body: Vec<u8>) {
        self.sizes
            .entry(name.to_string())
            .or_default()
            .insert(body.len());
        self.media.insert(name.to_string(), body);
    }

    pub(crate) fn is_dir(&self, path: &str) -> bool {
        path.is_empty()
            || self.explicit.iter().any(|e| e == path || under(e, path))
            || self.media.keys().any(|m| under(m, path))
    }

    pub(crate) fn kind(&self, path: &str) -> Kind {
        if self.media.contains_key(path) {
            Kind::File
        } else if self.is_dir(path) {
            Kind::Dir
        } else {
            Kind::Missing
        }
    }

    fn has_children(&self, dir: &str) -> bool {
        self.explicit.iter().any(|e| under(e, dir)) || self.media.keys().any(|m| under(m, dir))
    }

    /// Every directory shown (the root excluded).
    pub(crate) fn dirs(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for e in &self.explicit {
            out.insert(e.clone());
            out.extend(prefixes(e).map(str::to_string));
        }
        for m in self.media.keys() {
            out.extend(prefixes(m).map(str::to_string));
        }
        out
    }

    /// The error of resolving the directories above `path`, if any.
    fn walk_error(&self, path: &str) -> Option<i32> {
        for p in prefixes(path) {
            match self.kind(p) {
                Kind::File => return Some(libc::ENOTDIR),
                Kind::Missing => return Some(libc::ENOENT),
                Kind::Dir => {}
            }
        }
        None
    }

    /// A directory we emptied ourselves stays.
    fn keep_emptied(&mut self, dir: &str) {
        if !dir.is_empty() && !self.has_children(dir) {
            self.explicit.insert(dir.to_string());
        }
    }

    /// An existing file's bytes, or the errno of reaching it as a file.
    pub(crate) fn file(&self, path: &str) -> Result<&Vec<u8>, i32> {
        if let Some(e) = self.walk_error(path) {
            return Err(e);
        }
        match self.kind(path) {
            Kind::File => Ok(&self.media[path]),
            Kind::Dir => Err(libc::EISDIR),
            Kind::Missing => Err(libc::ENOENT),
        }
    }

    /// The errno of creating (or truncating) `path` as a file, if any.
    fn creatable(&self, path: &str) -> Result<(), i32> {
        if let Some(e) = self.walk_error(path) {
            return Err(e);
        }
        if self.kind(path) == Kind::Dir {
            return Err(libc::EISDIR);
        }
        Ok(())
    }

    /// Whether an API put of `name` keeps the store a tree the mount can show as the model does.
    pub(crate) fn api_put_ok(&self, name: &str) -> bool {
        prefixes(name).all(|p| !self.media.contains_key(p)) && !self.is_dir(name)
    }

    /// Predict the outcome of `op` and apply it.
    pub(crate) fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Create { path, len, seed }
            | Op::Outage { path, len, seed }
            | Op::DupWrite { path, len, seed } => {
                self.creatable(path)?;
                self.set(path, bytes(*len, *seed));
                Ok(None)
            }
            Op::FailedFsync {
                path,
                len,
                seed,
                then,
            } => {
                self.creatable(path)?;
                if *then == AfterFailure::CloseWhileFailing && !self.writeback {
                    // The server keeps what it had; a new name disappears.
                    return Err(libc::EIO);
                }
                self.set(path, bytes(*len, *seed));
                Ok(None)
            }
            Op::ShellLoop { path, n } => {
                self.creatable(path)?;
                self.set(path, loop_output(*n));
                Ok(None)
            }
            Op::Oversize { path } => {
                self.creatable(path)?;
                Err(libc::EFBIG)
            }
            Op::WriteAt {
                path,
                offset,
                len,
                seed,
            } => {
                let mut body = self.file(path)?.clone();
                let data = bytes(*len, *seed);
                let end = *offset as usize + data.len();
                if body.len() < end {
                    body.resize(end, 0);
                }
                body[*offset as usize..end].copy_from_slice(&data);
                self.set(path, body);
                Ok(None)
            }
            Op::Append { path, len, seed } => {
                let mut body = self.file(path)?.clone();
                body.extend_from_slice(&bytes(*len, *seed));
                self.set(path, body);
                Ok(None)
            }
            Op::Truncate { path, len, .. } => {
                let mut body = self.file(path)?.clone();
                body.resize(*len as usize, 0);
                self.set(path, body);
                Ok(None)
            }
            Op::Read { path } => Ok(Some(self.file(path)?.clone())),
            Op::List { path } => {
                if let Some(e) = self.walk_error(path) {
                    return Err(e);
                }
                match self.kind(path) {
                    Kind::Missing => return Err(libc::ENOENT),
                    Kind::File => return Err(libc::ENOTDIR),
                    Kind::Dir => {}
                }
                let base = if path.is_empty() { 0 } else { path.len() + 1 };
                let child =
                    |p: &String| (path.is_empty() || under(p, path)) && !p[base..].contains('/');
                let mut names: Vec<String> = self
                    .dirs()
                    .iter()
                    .filter(|d| child(d))
                    .map(|d| format!("{}/", &d[base..]))
                    .collect();
                names.extend(
                    self.media
                        .keys()
                        .filter(|m| child(m))
                        .map(|m| m[base..].to_string()),
                );
                names.sort();
                Ok(Some(names.join("\n").into_bytes()))
            }
            Op::Unlink { path } => {
                self.file(path)?;
                self.media.remove(path);
                self.keep_emptied(parent(path));
                Ok(None)
            }
            Op::Mkdir { path } => {
                if let Some(e) = self.walk_error(path) {
                    return Err(e);
                }
                if self.kind(path) != Kind::Missing {
                    return Err(libc::EEXIST);
                }
                self.explicit.insert(path.clone());
                Ok(None)
            }
            Op::Rmdir { path } => {
                if let Some(e) = self.walk_error(path) {
                    return Err(e);
                }
                match self.kind(path) {
                    Kind::Missing => return Err(libc::ENOENT),
                    Kind::File => return Err(libc::ENOTDIR),
                    Kind::Dir if self.has_children(path) => return Err(libc::ENOTEMPTY),
                    Kind::Dir => {}
                }
                self.explicit.remove(path);
                self.keep_emptied(parent(path));
                Ok(None)
            }
            Op::Rename { from, to } => self.rename(from, to),
            Op::ApiPut { name, len, seed } => {
                self.set(name, bytes(*len, *seed));
                self.touched(name);
                Ok(None)
            }
            Op::ApiDelete { name } => {
                self.media.remove(name);
                self.touched(name);
                Ok(None)
            }
        }
    }

    pub(crate) fn rename(&mut self, from: &str, to: &str) -> Outcome {
        if let Some(e) = self.walk_error(from).or_else(|| self.walk_error(to)) {
            return Err(e);
        }
        let (src, dst) = (self.kind(from), self.kind(to));
        if src == Kind::Missing {
            return Err(libc::ENOENT);
        }
        if under(to, from) {
            return Err(libc::EINVAL);
        }
        if under(from, to) {
            return Err(libc::ENOTEMPTY);
        }
        if from == to {
            return Ok(None);
        }
        match (src, dst) {
            (Kind::File, Kind::Dir) => Err(libc::EISDIR),
            (Kind::Dir, Kind::File) => Err(libc::ENOTDIR),
            (Kind::Dir, Kind::Dir) if self.has_children(to) => Err(libc::ENOTEMPTY),
            (Kind::File, _) => {
                let body = self.media.remove(from).unwrap_or_default();
                self.set(to, body);
                self.keep_emptied(parent(from));
                Ok(None)
            }
            _ => {
                self.explicit.remove(to);
                let moved = |p: &str| format!("{to}{}", &p[from.len()..]);
                let files: Vec<String> = self
                    .media
                    .keys()
                    .filter(|m| under(m, from))
                    .cloned()
                    .collect();
                for f in files {
                    let body = self.media.remove(&f).unwrap_or_default();
                    self.set(&moved(&f), body);
                }
                let dirs: Vec<String> = self
                    .explicit
                    .iter()
                    .filter(|e| *e == from || under(e, from))
                    .cloned()
                    .collect();
                for d in dirs {
                    self.explicit.remove(&d);
                    self.explicit.insert(moved(&d));
                }
                self.keep_emptied(parent(from));
                Ok(None)
            }
        }
    }
}
