//! Model-based test through a real mount: random sequences of file-system operations (create,
//! write at an offset, append, truncate, read, rename, unlink, mkdir, rmdir) on the mounted
//! directory, mixed with puts and deletes made directly through the API, are applied both to the
//! mount and to an in-memory model of what it should show. Every outcome (success or errno, and
//! the bytes read) must be the one the model predicts; every few steps the whole tree seen through
//! the mount (every directory listed, every file read and stat'ed) must be the model's view, and
//! after every step the emulator's store must hold exactly the model's media.
//!
//! The model is a map of media name -> bytes (what the API holds) plus the set of *explicit*
//! directories: made by `mkdir` in this mount, or emptied by our own `rm`, `mv` or `rmdir` (a
//! directory the user sees does not vanish because the user emptied it, so `rm -r` works). The
//! directories shown are the explicit ones, their parents, and the prefixes of media names. A
//! directory made only of media goes away when those media are deleted through the API.
//!
//! The mount runs with `--metadata-ttl 0s`: the kernel's entry and attribute caches get a zero
//! timeout (every path walk asks the file system again) and the core revalidates every lookup
//! with one list request (the account is small), so a change made through the API is visible to
//! the very next operation and the model can be exact. The errno order of the predictions
//! follows Linux (`rename(2)`: parents, then a missing source, then EINVAL for a directory moved
//! into itself, ENOTEMPTY for a target that is an ancestor of the source, then EISDIR/ENOTDIR).
//!
//! Where the mount legitimately differs from a local disk (see the design's semantics table),
//! the generator avoids the case instead of weakening the model:
//! - The API has no directories: an empty directory cannot be made through it, so API puts
//!   only make media (whose parents are directories).
//! - A media that is a name prefix of another (`a` and `a/b`) is not a tree: the file wins and
//!   the other is hidden. API puts that would make one (a name under a file, or a name that is a
//!   directory in the model, an explicit one included) are not generated; through the mount such
//!   clashes are ordinary errors (ENOTDIR, EISDIR, EEXIST) and are generated often.
//! - The API has no ETags or timestamps: a listing shows only names and sizes, and the data
//!   cache keeps a body while its size is unchanged. So an API put never gives a name a size
//!   that name has already had (a same-size overwrite made elsewhere is invisible until the body
//!   leaves the cache, as the design says).
//!
//! The name space is small (4 file names, 2 directory names, directories up to 2 deep) so that
//! operations collide often. The RNG is a seeded xorshift; on failure the seed and every step so
//! far are printed. Replay or explore with `MODEL_SEEDS=7,8,9 MODEL_STEPS=400 cargo test --test
//! model -- from_env --nocapture`.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;

const FILE_NAMES: [&str; 4] = ["f", "g.txt", "h", "i.bin"];
const DIR_NAMES: [&str; 2] = ["d", "e"];
const STEPS: usize = 150;

// ----- the random source ------------------------------------------------------------------------

/// xorshift64*: tiny, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ----- operations -------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    /// Create or replace a whole file (O_CREAT|O_TRUNC, write, close).
    Create {
        path: String,
        len: usize,
        seed: u64,
    },
    /// Open an existing file for writing, seek, write, close.
    WriteAt {
        path: String,
        offset: u64,
        len: usize,
        seed: u64,
    },
    /// Open an existing file with O_APPEND, write, close.
    Append {
        path: String,
        len: usize,
        seed: u64,
    },
    /// truncate(2) on the path, or ftruncate on an open descriptor.
    Truncate {
        path: String,
        len: u64,
        by_path: bool,
    },
    Read {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Unlink {
        path: String,
    },
    Mkdir {
        path: String,
    },
    Rmdir {
        path: String,
    },
    /// A put made directly through the API.
    ApiPut {
        name: String,
        len: usize,
        seed: u64,
    },
    /// A delete made directly through the API.
    ApiDelete {
        name: String,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Create { path, len, seed } => write!(f, "create {path} ({len} bytes, seed {seed})"),
            Op::WriteAt {
                path,
                offset,
                len,
                seed,
            } => write!(f, "write {path} at {offset} ({len} bytes, seed {seed})"),
            Op::Append { path, len, seed } => write!(f, "append {path} ({len} bytes, seed {seed})"),
            Op::Truncate { path, len, by_path } => {
                let how = if *by_path { "truncate" } else { "ftruncate" };
                write!(f, "{how} {path} to {len}")
            }
            Op::Read { path } => write!(f, "read {path}"),
            Op::Rename { from, to } => write!(f, "rename {from} -> {to}"),
            Op::Unlink { path } => write!(f, "unlink {path}"),
            Op::Mkdir { path } => write!(f, "mkdir {path}"),
            Op::Rmdir { path } => write!(f, "rmdir {path}"),
            Op::ApiPut { name, len, seed } => {
                write!(f, "API put {name} ({len} bytes, seed {seed})")
            }
            Op::ApiDelete { name } => write!(f, "API delete {name}"),
        }
    }
}

/// What an operation returns: the bytes for a read, nothing for the others, or an errno.
type Outcome = Result<Option<Vec<u8>>, i32>;

fn show(o: &Outcome) -> String {
    match o {
        Ok(None) => "ok".into(),
        Ok(Some(b)) => format!("ok, {} bytes", b.len()),
        Err(e) => format!("{} ({e})", io::Error::from_raw_os_error(*e)),
    }
}

// ----- the model --------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Missing,
}

#[derive(Default, Clone)]
struct Model {
    /// What the API holds.
    media: BTreeMap<String, Vec<u8>>,
    /// Directories that exist without media under them (mkdir, or emptied by us).
    explicit: BTreeSet<String>,
    /// Every size each name has had (an API put must give a new one; see the module comment).
    sizes: HashMap<String, HashSet<usize>>,
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

fn under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// The proper prefixes of a path: "a/b/c" -> "a", "a/b".
fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

impl Model {
    fn set(&mut self, name: &str, body: Vec<u8>) {
        self.sizes
            .entry(name.to_string())
            .or_default()
            .insert(body.len());
        self.media.insert(name.to_string(), body);
    }

    fn is_dir(&self, path: &str) -> bool {
        path.is_empty()
            || self.explicit.iter().any(|e| e == path || under(e, path))
            || self.media.keys().any(|m| under(m, path))
    }

    fn kind(&self, path: &str) -> Kind {
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
    fn dirs(&self) -> BTreeSet<String> {
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
    fn file(&self, path: &str) -> Result<&Vec<u8>, i32> {
        if let Some(e) = self.walk_error(path) {
            return Err(e);
        }
        match self.kind(path) {
            Kind::File => Ok(&self.media[path]),
            Kind::Dir => Err(libc::EISDIR),
            Kind::Missing => Err(libc::ENOENT),
        }
    }

    /// Whether an API put of `name` keeps the store a tree the mount can show as the model does.
    fn api_put_ok(&self, name: &str) -> bool {
        prefixes(name).all(|p| !self.media.contains_key(p)) && !self.is_dir(name)
    }

    /// Predict the outcome of `op` and apply it.
    fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Create { path, len, seed } => {
                if let Some(e) = self.walk_error(path) {
                    return Err(e);
                }
                if self.kind(path) == Kind::Dir {
                    return Err(libc::EISDIR);
                }
                self.set(path, bytes(*len, *seed));
                Ok(None)
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
                Ok(None)
            }
            Op::ApiDelete { name } => {
                self.media.remove(name);
                Ok(None)
            }
        }
    }

    fn rename(&mut self, from: &str, to: &str) -> Outcome {
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

// ----- generating operations --------------------------------------------------------------------

fn random_dir(rng: &mut Rng, min_depth: usize) -> String {
    let depth = match rng.below(10) {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
    .max(min_depth);
    (0..depth)
        .map(|_| *rng.pick(&DIR_NAMES))
        .collect::<Vec<_>>()
        .join("/")
}

/// A path in the name space: usually a file name (or a directory name) under a random directory.
fn random_path(rng: &mut Rng, dir_like: bool) -> String {
    let swap = rng.chance(15);
    let leaf = if dir_like != swap {
        *rng.pick(&DIR_NAMES)
    } else {
        *rng.pick(&FILE_NAMES)
    };
    let dir = random_dir(rng, 0);
    let dir = match dir.split_once('/') {
        Some((first, _)) if dir_like => first.to_string(), // directories at most 2 deep
        _ => dir,
    };
    if dir.is_empty() {
        leaf.to_string()
    } else {
        format!("{dir}/{leaf}")
    }
}

/// An existing file `percent`% of the time (when there is one), else a random path.
fn file_path(rng: &mut Rng, model: &Model, percent: usize) -> String {
    if !model.media.is_empty() && rng.chance(percent) {
        let names: Vec<&String> = model.media.keys().collect();
        return rng.pick(&names).to_string();
    }
    random_path(rng, false)
}

fn dir_path(rng: &mut Rng, model: &Model, percent: usize) -> String {
    let dirs: Vec<String> = model.dirs().into_iter().collect();
    if !dirs.is_empty() && rng.chance(percent) {
        return rng.pick(&dirs).clone();
    }
    random_path(rng, true)
}

fn length(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0 => 0,
        1..=6 => rng.below(3000),
        7 | 8 => 3000 + rng.below(20_000),
        _ => 60_000 + rng.below(90_000),
    }
}

/// The next operation; only an API one when `api_only` (bursts of changes made elsewhere, which
/// the mount sees all at once at its next request).
fn generate(rng: &mut Rng, model: &Model, api_only: bool) -> Op {
    loop {
        let seed = rng.next() % 1_000_000;
        let choice = if api_only {
            80 + rng.below(20)
        } else {
            rng.below(100)
        };
        let op = match choice {
            0..=11 => Op::Create {
                path: file_path(rng, model, 40),
                len: length(rng),
                seed,
            },
            12..=19 => {
                let path = file_path(rng, model, 85);
                let size = model.media.get(&path).map_or(0, Vec::len);
                Op::WriteAt {
                    offset: rng.below(size + 5000) as u64,
                    path,
                    len: 1 + rng.below(4000),
                    seed,
                }
            }
            20..=25 => Op::Append {
                path: file_path(rng, model, 85),
                len: rng.below(5000),
                seed,
            },
            26..=33 => {
                let path = file_path(rng, model, 85);
                let size = model.media.get(&path).map_or(0, Vec::len);
                let len = match rng.below(4) {
                    0 => 0,
                    1 => rng.below(size + 1),
                    2 => size,
                    _ => size + rng.below(10_000),
                };
                Op::Truncate {
                    path,
                    len: len as u64,
                    by_path: rng.chance(50),
                }
            }
            34..=43 => Op::Read {
                path: file_path(rng, model, 75),
            },
            44..=55 => {
                let from = if rng.chance(35) {
                    dir_path(rng, model, 80)
                } else {
                    file_path(rng, model, 85)
                };
                let to = match rng.below(3) {
                    0 => file_path(rng, model, 50),
                    1 => dir_path(rng, model, 40),
                    _ => random_path(rng, false),
                };
                Op::Rename { from, to }
            }
            56..=63 => Op::Unlink {
                path: file_path(rng, model, 75),
            },
            64..=71 => Op::Mkdir {
                path: dir_path(rng, model, 20),
            },
            72..=79 => Op::Rmdir {
                path: dir_path(rng, model, 80),
            },
            80..=91 => {
                // Sometimes under a name that was a file (a file replaced by a directory).
                let gone: Vec<&String> = model
                    .sizes
                    .keys()
                    .filter(|n| !model.media.contains_key(*n))
                    .collect();
                let name = if !gone.is_empty() && rng.chance(25) {
                    let leaf = *rng.pick(&FILE_NAMES);
                    format!("{}/{leaf}", rng.pick(&gone))
                } else {
                    file_path(rng, model, 40)
                };
                if !model.api_put_ok(&name) {
                    continue;
                }
                let had = model.sizes.get(&name);
                let len = (0..100)
                    .map(|_| length(rng))
                    .find(|l| had.is_none_or(|h| !h.contains(l)));
                let Some(len) = len else { continue };
                Op::ApiPut { name, len, seed }
            }
            _ => Op::ApiDelete {
                name: file_path(rng, model, 90),
            },
        };
        // Keep the tree at most 2 directories deep (renames and names under old files grow it).
        let mut after = model.clone();
        let _ = after.apply(&op);
        let depth = |p: &String| p.split('/').count();
        if after.media.keys().any(|m| depth(m) > 3) || after.explicit.iter().any(|e| depth(e) > 2) {
            continue;
        }
        return op;
    }
}

// ----- running operations on the mount ----------------------------------------------------------

/// Close a descriptor and return its error (the upload's, for a written file).
fn close(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just taken from the File, so it is open and closed exactly once.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn write_at(path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)?;
    close(f)
}

fn truncate_path(path: &Path, len: u64) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::truncate(c.as_ptr(), len as libc::off_t) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn on_mount(op: Op, root: PathBuf) -> io::Result<Option<Vec<u8>>> {
    let p = |rel: &str| root.join(rel);
    match op {
        Op::Create { path, len, seed } => {
            let mut f = File::create(p(&path))?;
            f.write_all(&bytes(len, seed))?;
            close(f)?;
        }
        Op::WriteAt {
            path,
            offset,
            len,
            seed,
        } => write_at(&p(&path), offset, &bytes(len, seed))?,
        Op::Append { path, len, seed } => {
            let mut f = OpenOptions::new().append(true).open(p(&path))?;
            f.write_all(&bytes(len, seed))?;
            close(f)?;
        }
        Op::Truncate { path, len, by_path } => {
            if by_path {
                truncate_path(&p(&path), len)?;
            } else {
                let f = OpenOptions::new().write(true).open(p(&path))?;
                f.set_len(len)?;
                close(f)?;
            }
        }
        Op::Read { path } => return std::fs::read(p(&path)).map(Some),
        Op::Rename { from, to } => std::fs::rename(p(&from), p(&to))?,
        Op::Unlink { path } => std::fs::remove_file(p(&path))?,
        Op::Mkdir { path } => std::fs::create_dir(p(&path))?,
        Op::Rmdir { path } => std::fs::remove_dir(p(&path))?,
        Op::ApiPut { .. } | Op::ApiDelete { .. } => unreachable!("not a mount operation"),
    }
    Ok(None)
}

fn run(m: &Mount, op: &Op) -> Outcome {
    match op {
        Op::ApiPut { name, len, seed } => {
            let put = m.emulator.store().put(
                name,
                Bytes::from(bytes(*len, *seed)),
                &bwmediafs::api::content_type_for(name),
                None,
            );
            if let Err(e) = put {
                panic!("API put of {name}: {e:?}");
            }
            Ok(None)
        }
        Op::ApiDelete { name } => {
            m.emulator.store().delete(name);
            Ok(None)
        }
        _ => {
            let (op, root) = (op.clone(), m.mnt.clone());
            timed(&op.to_string(), move || on_mount(op, root))
                .map_err(|e| e.raw_os_error().unwrap_or(-1))
        }
    }
}

// ----- comparing the whole tree -----------------------------------------------------------------

/// Files (with their bytes and stat size) and directories seen through the mount.
type Tree = (BTreeMap<String, (Vec<u8>, u64)>, BTreeSet<String>);

fn walk(root: PathBuf) -> io::Result<Tree> {
    let mut files = BTreeMap::new();
    let mut dirs = BTreeSet::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|n| io::Error::other(format!("non-UTF-8 name {n:?}")))?;
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.insert(path.clone());
                stack.push(path);
            } else if kind.is_file() {
                let body = std::fs::read(root.join(&path))?;
                let size = std::fs::metadata(root.join(&path))?.len();
                files.insert(path, (body, size));
            } else {
                return Err(io::Error::other(format!("{path}: neither file nor dir")));
            }
        }
    }
    Ok((files, dirs))
}

fn check_tree(m: &Mount, model: &Model) -> Result<(), String> {
    let root = m.mnt.clone();
    let (files, dirs) =
        timed("walk the tree", move || walk(root)).map_err(|e| format!("walking: {e}"))?;
    let mut problems = Vec::new();
    let want_dirs = model.dirs();
    if dirs != want_dirs {
        problems.push(format!(
            "directories: the mount shows {dirs:?}, the model {want_dirs:?}"
        ));
    }
    let seen: BTreeSet<&String> = files.keys().collect();
    let want: BTreeSet<&String> = model.media.keys().collect();
    if seen != want {
        problems.push(format!(
            "files: the mount shows {seen:?}, the model {want:?}"
        ));
    }
    for (name, (body, size)) in &files {
        if let Some(w) = model.media.get(name) {
            if body != w {
                problems.push(format!("{name}: {}", differ(body, w)));
            }
            if *size != w.len() as u64 {
                problems.push(format!("{name}: stat says {size} bytes, want {}", w.len()));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn check_store(m: &Mount, model: &Model) -> Result<(), String> {
    let store = m.emulator.store();
    let names = store.names();
    let want: Vec<&String> = model.media.keys().collect();
    if names.iter().collect::<Vec<_>>() != want {
        return Err(format!("the store holds {names:?}, the model {want:?}"));
    }
    for (name, body) in &model.media {
        match store.get(name) {
            Ok(s) if s.body[..] == body[..] => {}
            Ok(s) => return Err(format!("stored {name}: {}", differ(&s.body, body))),
            Err(e) => return Err(format!("stored {name}: {e:?}")),
        }
    }
    Ok(())
}

fn differ(got: &[u8], want: &[u8]) -> String {
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    format!(
        "{} bytes, want {} (first difference at {first:?})",
        got.len(),
        want.len()
    )
}

// ----- the test ---------------------------------------------------------------------------------

/// Prints the seed and the steps when the test fails (dropped while panicking).
struct Trace {
    seed: u64,
    steps: Vec<String>,
    log: PathBuf,
}

impl Drop for Trace {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        eprintln!("\n=== model test failed: seed {} ===", self.seed);
        for s in &self.steps {
            eprintln!("{s}");
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!("--- last lines of the bwmediafs log ---");
        for l in tail.iter().rev() {
            eprintln!("{l}");
        }
        eprintln!(
            "=== replay: MODEL_SEEDS={} MODEL_STEPS={} cargo test --test model -- from_env \
             --nocapture ===",
            self.seed,
            self.steps.iter().filter(|s| !s.contains("(check")).count()
        );
    }
}

fn run_seed(seed: u64, steps: usize) {
    let m = Mount::with(start_emulator(emulator_config()), &["--metadata-ttl", "0s"]);
    let mut trace = Trace {
        seed,
        steps: Vec::new(),
        log: m.log.clone(),
    };
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let mut api_only = false;
    for step in 0..steps {
        let op = generate(&mut rng, &model, api_only);
        api_only = matches!(op, Op::ApiPut { .. } | Op::ApiDelete { .. }) && rng.chance(50);
        trace.steps.push(format!("{step:4}  {op}"));
        let want = model.apply(&op);
        let got = run(&m, &op);
        if got != want {
            let detail = match (&got, &want) {
                (Ok(Some(g)), Ok(Some(w))) => differ(g, w),
                _ => String::new(),
            };
            panic!(
                "step {step}: {op}: the mount answered {}, the model {} {detail}",
                show(&got),
                show(&want)
            );
        }
        if let Err(e) = check_store(&m, &model) {
            panic!("step {step}: after {op}: {e}");
        }
        if rng.chance(35) || step + 1 == steps {
            trace.steps.push("      (check the whole tree)".into());
            if let Err(e) = check_tree(&m, &model) {
                panic!("step {step}: after {op}, the tree differs:\n{e}");
            }
        }
    }
}

#[test]
fn model_seed_1() {
    run_seed(1, STEPS);
}

#[test]
fn model_seed_2() {
    run_seed(2, STEPS);
}

#[test]
fn model_seed_3() {
    run_seed(3, STEPS);
}

/// Seeds and a step count from the environment, to replay a failure or explore more.
#[test]
fn from_env() {
    let Ok(seeds) = std::env::var("MODEL_SEEDS") else {
        return;
    };
    let steps = std::env::var("MODEL_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(STEPS);
    for seed in seeds.split(',').filter_map(|s| s.trim().parse().ok()) {
        eprintln!("seed {seed}, {steps} steps");
        run_seed(seed, steps);
    }
}
