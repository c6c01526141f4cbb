//! Model-based test through a real mount: random sequences of file-system operations (create,
//! write at an offset, append, truncate, read, list, rename of files and directories, unlink,
//! mkdir, rmdir) on the mounted directory, mixed with puts and deletes made directly through the
//! API, are applied both to the mount and to an in-memory model of what it should show. Every
//! outcome (success or errno, the bytes read, the names listed) must be the one the model
//! predicts; after every step the emulator's store must hold exactly the model's media; every
//! few steps the whole tree seen through the mount (every directory listed, every file read and
//! stat'ed) must be the model's view.
//!
//! The model is a map of media name -> bytes (what the API holds) plus the set of *explicit*
//! directories: made by `mkdir` in this mount, or emptied by our own `rm`, `mv` or `rmdir` (a
//! directory does not vanish because the user emptied it, so `rm -r` works). The directories
//! shown are the explicit ones, their parents, and the prefixes of media names; a directory made
//! only of media goes away when they are deleted through the API. Errno predictions follow Linux,
//! in its order (`rename(2)`: the parents, a missing source, EINVAL for a directory moved into
//! itself, ENOTEMPTY for a target that is an ancestor of the source, then EISDIR/ENOTDIR).
//!
//! The mount runs with `--metadata-ttl 0s`: the kernel's entry and attribute timeouts are zero
//! (every path walk asks the file system again), and the core trusts nothing it cached, so a
//! change made through the API is visible to the very next operation and the model can be exact.
//! Two kinds of account are run: small (one listing page: every lookup, directories included,
//! costs one list request that refreshes everything) and paged (one media a page: a known name
//! is trusted until the next complete listing, and an open checks the file with one GET). API
//! puts often keep a name's size: only the open's check (close-to-open) can see those.
//!
//! What programs do around faults is generated too: an fsync that fails, followed by another
//! fsync, a close, or a close while the server still fails (then the error, and the bytes in the
//! recovery folder); a close across an outage shorter than the retry time; a file written
//! through two descriptors of one open; a redirected shell loop whose every command closes the
//! file; an oversize copy over a file. The oracle is the promise: a call that returned success
//! means the store holds exactly those bytes (checked after every step).
//!
//! Where the mount legitimately differs from a local disk (see the design), the generator avoids
//! the case instead of weakening the model:
//! - The API has no directories: an empty directory cannot be made through it.
//! - A media that is a name prefix of another (`a` and `a/b`) is not a tree: the directory
//!   keeps the name and the file is shown beside it as `a~media` (tested on its own). API puts
//!   that would make one (under a file, or at a name that is a directory in the model, explicit
//!   ones included) are not generated. Through the mount such clashes are ordinary errors
//!   (ENOTDIR, EISDIR, EEXIST) and are generated often.
//! - Paged only: the API cannot be asked about one name without downloading it, so a media
//!   deleted elsewhere is shown until the next complete listing (an open of it gets 404), and a
//!   directory emptied elsewhere too; API deletes that would empty one are not generated, and
//!   after an API delete the tree is listed before the mount is used again (as `rm -r` and most
//!   tools list before they act).
//!
//! Operations are drawn from a small name space (4 file names, 2 directory names, at most 2
//! directories deep) so that they collide often, with bursts of API changes and short scenarios
//! that use a name through the mount right after it changed elsewhere (see [`scenario`]). The
//! RNG is a seeded xorshift and generation depends only on the seed: on failure the seed and
//! every step are printed. Replay or explore with
//! `MODEL_SEEDS=7,8 MODEL_PAGE_SIZE=1 MODEL_STEPS=400 cargo test --test model -- from_env
//! --nocapture` (`MODEL_TRACE=1` prints the steps of passing runs too; `MODEL_TARGET=core` runs
//! them against the core alone).
//!
//! The same model runs against the core alone ([`Core`]), driven by path as the kernel drives
//! it (each component looked up, the last one too before a create, remove or rename, and the
//! checks the kernel makes itself), for many seeds in seconds; the mount runs fewer seeds and
//! adds what only it has: the kernel, the retries of the HTTP client, shell descriptors.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};

use std::ffi::OsStr;
use std::sync::Arc;

use bwmediafs::api::ApiError;
use bwmediafs::emulator::faulty_store::{FaultyStore, StoreFaults};
use bwmediafs::emulator::store::{Store, StoreConfig};
use bwmediafs::emulator::Faults;
use bwmediafs::fs::{
    Attr, Caller, FsError, FsOptions, Ino, Kind as FileKind, MediaFs, SetAttr, ROOT_INO,
};
use bytes::Bytes;
use common::*;

const FILE_NAMES: [&str; 4] = ["f", "g.txt", "h", "i.bin"];
const DIR_NAMES: [&str; 2] = ["d", "e"];
const STEPS: usize = 300;

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
    /// List one directory (names, directories with a trailing `/`).
    List {
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
    /// Create or replace a whole file while the server fails: the fsync fails, then `then`.
    FailedFsync {
        path: String,
        len: usize,
        seed: u64,
        then: AfterFailure,
    },
    /// Create or replace a whole file while the server is down for a moment (shorter than the
    /// retry time) when it is closed.
    Outage {
        path: String,
        len: usize,
        seed: u64,
    },
    /// Create or replace a whole file through two descriptors of one open (`dup`): the first
    /// is closed half way through.
    DupWrite {
        path: String,
        len: usize,
        seed: u64,
    },
    /// `for i in $(seq n); do /bin/echo $i; done > path`: every command closes the file.
    ShellLoop {
        path: String,
        n: usize,
    },
    /// Replace a file with more than the size limit: EFBIG, and the server keeps what it had.
    Oversize {
        path: String,
    },
}

/// What a program does after an fsync failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterFailure {
    /// The server heals; the program fsyncs again, then closes.
    FsyncAgain,
    /// The server heals; the program closes.
    Close,
    /// The program closes while the server still fails: EIO, the bytes in the recovery folder.
    CloseWhileFailing,
}

/// The bytes `ShellLoop` writes.
fn loop_output(n: usize) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
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
            Op::List { path } => write!(f, "list {path}/"),
            Op::Rename { from, to } => write!(f, "rename {from} -> {to}"),
            Op::Unlink { path } => write!(f, "unlink {path}"),
            Op::Mkdir { path } => write!(f, "mkdir {path}"),
            Op::Rmdir { path } => write!(f, "rmdir {path}"),
            Op::ApiPut { name, len, seed } => {
                write!(f, "API put {name} ({len} bytes, seed {seed})")
            }
            Op::ApiDelete { name } => write!(f, "API delete {name}"),
            Op::FailedFsync {
                path,
                len,
                seed,
                then,
            } => write!(
                f,
                "create {path} ({len} bytes, seed {seed}) with a failing fsync, then {then:?}"
            ),
            Op::Outage { path, len, seed } => {
                write!(
                    f,
                    "create {path} ({len} bytes, seed {seed}) across an outage"
                )
            }
            Op::DupWrite { path, len, seed } => {
                write!(f, "create {path} ({len} bytes, seed {seed}) through a dup")
            }
            Op::ShellLoop { path, n } => write!(f, "loop of {n} commands > {path}"),
            Op::Oversize { path } => write!(f, "oversize copy > {path}"),
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
    /// Every size each name has had (its keys are every name that was a file).
    sizes: BTreeMap<String, BTreeSet<usize>>,
    /// Names and directories the last API changes touched (the generator aims at them often, so
    /// the mount is asked about what changed elsewhere before anything else refreshes it).
    recent: Vec<String>,
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
    fn touched(&mut self, name: &str) {
        self.recent.push(name.to_string());
        self.recent.extend(prefixes(name).map(str::to_string));
        let excess = self.recent.len().saturating_sub(6);
        self.recent.drain(..excess);
    }

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
    fn api_put_ok(&self, name: &str) -> bool {
        prefixes(name).all(|p| !self.media.contains_key(p)) && !self.is_dir(name)
    }

    /// Predict the outcome of `op` and apply it.
    fn apply(&mut self, op: &Op) -> Outcome {
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
                if *then == AfterFailure::CloseWhileFailing {
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
    if !model.recent.is_empty() && rng.chance(20) {
        return rng.pick(&model.recent).clone();
    }
    if !model.media.is_empty() && rng.chance(percent) {
        let names: Vec<&String> = model.media.keys().collect();
        return rng.pick(&names).to_string();
    }
    random_path(rng, false)
}

fn dir_path(rng: &mut Rng, model: &Model, percent: usize) -> String {
    if !model.recent.is_empty() && rng.chance(20) {
        return rng.pick(&model.recent).clone();
    }
    let dirs: Vec<String> = model.dirs().into_iter().collect();
    if !dirs.is_empty() && rng.chance(percent) {
        return rng.pick(&dirs).clone();
    }
    random_path(rng, true)
}

/// A name in an existing directory (usually a free one).
fn new_name(rng: &mut Rng, model: &Model, dir_like: bool) -> String {
    let mut dirs: Vec<String> = model.dirs().into_iter().collect();
    dirs.push(String::new());
    let dir = rng.pick(&dirs).clone();
    let leaf = random_path(rng, dir_like);
    let leaf = leaf.rsplit('/').next().unwrap_or(&leaf);
    if dir.is_empty() {
        leaf.to_string()
    } else {
        format!("{dir}/{leaf}")
    }
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
fn generate(rng: &mut Rng, model: &Model, api_only: bool, paged: bool, core: bool) -> Op {
    loop {
        let seed = rng.next() % 1_000_000;
        let choice = if api_only {
            84 + rng.below(16)
        } else {
            rng.below(110)
        };
        let op = match choice {
            0..=9 => Op::Create {
                path: if rng.chance(50) {
                    new_name(rng, model, false)
                } else {
                    file_path(rng, model, 40)
                },
                len: length(rng),
                seed,
            },
            10..=17 => {
                let path = file_path(rng, model, 85);
                let size = model.media.get(&path).map_or(0, Vec::len);
                Op::WriteAt {
                    offset: rng.below(size + 5000) as u64,
                    path,
                    len: 1 + rng.below(4000),
                    seed,
                }
            }
            18..=22 => Op::Append {
                path: file_path(rng, model, 85),
                len: rng.below(5000),
                seed,
            },
            23..=29 => {
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
            30..=34 => Op::Read {
                path: file_path(rng, model, 75),
            },
            35..=37 => Op::List {
                path: if rng.chance(20) {
                    String::new()
                } else {
                    dir_path(rng, model, 80)
                },
            },
            38..=53 => {
                let dir = rng.chance(40);
                let from = if dir {
                    dir_path(rng, model, 90)
                } else {
                    file_path(rng, model, 90)
                };
                let to = match rng.below(20) {
                    0..=7 => new_name(rng, model, dir),
                    8..=12 => file_path(rng, model, 80),
                    13..=16 => dir_path(rng, model, 70),
                    _ => random_path(rng, dir),
                };
                Op::Rename { from, to }
            }
            54..=60 => Op::Unlink {
                path: file_path(rng, model, 75),
            },
            61..=68 => Op::Mkdir {
                path: if rng.chance(60) {
                    new_name(rng, model, true)
                } else {
                    dir_path(rng, model, 20)
                },
            },
            69..=75 => Op::Rmdir {
                path: dir_path(rng, model, 80),
            },
            76..=91 => {
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
                match api_put(rng, model, name) {
                    Some(op) => op,
                    None => continue,
                }
            }
            92..=99 => {
                let name = file_path(rng, model, 90);
                if !api_delete_ok(model, &name, paged) {
                    continue;
                }
                Op::ApiDelete { name }
            }
            // What programs do around faults and the shell's descriptors.
            _ => {
                let path = if rng.chance(40) {
                    new_name(rng, model, false)
                } else {
                    file_path(rng, model, 70)
                };
                let len = length(rng);
                match choice {
                    100..=102 => Op::FailedFsync {
                        path,
                        len,
                        seed,
                        then: *rng.pick(&[
                            AfterFailure::FsyncAgain,
                            AfterFailure::Close,
                            AfterFailure::CloseWhileFailing,
                        ]),
                    },
                    // The core alone has no retries (they are the HTTP client's) and no shell.
                    103 | 106..=108 if core => continue,
                    103 => Op::Outage { path, len, seed },
                    104..=105 => Op::DupWrite { path, len, seed },
                    106..=108 => Op::ShellLoop {
                        path,
                        n: 1 + rng.below(12),
                    },
                    _ => Op::Oversize { path },
                }
            }
        };
        if too_deep(model, &op) {
            continue;
        }
        return op;
    }
}

/// An API put of `name` (often of the size it has: an overwrite only an open's check can
/// see), if the mount can show it as the model does.
fn api_put(rng: &mut Rng, model: &Model, name: String) -> Option<Op> {
    if !model.api_put_ok(&name) {
        return None;
    }
    let len = match model.media.get(&name) {
        Some(body) if rng.chance(40) => body.len(),
        _ => length(rng),
    };
    let seed = rng.next() % 1_000_000;
    Some(Op::ApiPut { name, len, seed })
}

/// Paged: a directory emptied elsewhere stays until the next complete listing (a large
/// account cannot ask about one directory), so API deletes that would empty one are avoided.
fn api_delete_ok(model: &Model, name: &str, paged: bool) -> bool {
    if !paged {
        return true;
    }
    let mut after = model.clone();
    after.media.remove(name);
    after.dirs() == model.dirs()
}

/// Whether `op` would take the tree deeper than 2 directories (renames and names under old
/// files grow it).
fn too_deep(model: &Model, op: &Op) -> bool {
    let mut after = model.clone();
    let _ = after.apply(op);
    let depth = |p: &String| p.split('/').count();
    after.media.keys().any(|m| depth(m) > 3) || after.explicit.iter().any(|e| depth(e) > 2)
}

/// A short plan of steps run back to back (no tree check in between), aimed at what a random
/// sequence rarely hits: a name changed elsewhere and used through the mount at once, before
/// anything else lists the tree (a directory emptied elsewhere, media added under a directory,
/// a file replaced by a directory and the reverse, a change behind a listing a lookup paused),
/// and `rm -r` of a directory.
fn scenario(rng: &mut Rng, model: &Model, paged: bool) -> (&'static str, Vec<Op>) {
    let mut sim = model.clone();
    let mut plan = Vec::new();
    let mut push = |sim: &mut Model, op: Op| {
        if !too_deep(sim, &op) {
            let _ = sim.apply(&op);
            plan.push(op);
        }
    };
    let dirs: Vec<String> = model.dirs().into_iter().collect();
    if dirs.is_empty() || model.media.is_empty() {
        return ("", plan);
    }
    let files: Vec<String> = model.media.keys().cloned().collect();
    let explicit: Vec<String> = model.explicit.iter().cloned().collect();
    let with_media: Vec<String> = dirs
        .iter()
        .filter(|d| files.iter().any(|f| under(f, d)))
        .cloned()
        .collect();
    // A directory, preferably one of `preferred`.
    let pick_dir = |rng: &mut Rng, preferred: &[String]| {
        if !preferred.is_empty() && rng.chance(80) {
            rng.pick(preferred).clone()
        } else {
            rng.pick(&dirs).clone()
        }
    };
    // Another directory that a rename between it and `d` may move.
    let unrelated = |rng: &mut Rng, d: &str| {
        let others: Vec<&String> = dirs
            .iter()
            .filter(|o| *o != d && !under(o, d) && !under(d, o))
            .collect();
        if others.is_empty() {
            random_path(rng, true)
        } else {
            rng.pick(&others).to_string()
        }
    };
    let leaf = *rng.pick(&FILE_NAMES);
    let seed = rng.next() % 1_000_000;
    let what = match rng.below(if paged { 5 } else { 6 }) {
        0 => {
            // A directory emptied elsewhere, then used. (Paged: only explicit ones stay.)
            let full: Vec<String> = if paged {
                with_media
                    .iter()
                    .filter(|d| explicit.contains(d))
                    .cloned()
                    .collect()
            } else {
                with_media.clone()
            };
            let d = if full.is_empty() || rng.chance(30) {
                // Set one up: a new directory holding a media.
                let d = new_name(rng, &sim, true);
                push(&mut sim, Op::Mkdir { path: d.clone() });
                if let Some(op) = api_put(rng, &sim, format!("{d}/{leaf}")) {
                    push(&mut sim, op);
                }
                d
            } else {
                pick_dir(rng, &full)
            };
            push(&mut sim, Op::List { path: d.clone() });
            let names: Vec<String> = sim.media.keys().filter(|m| under(m, &d)).cloned().collect();
            for name in names {
                if api_delete_ok(&sim, &name, paged) {
                    push(&mut sim, Op::ApiDelete { name });
                }
            }
            let other = unrelated(rng, &d);
            let op = match rng.below(7) {
                0 | 1 => Op::Rmdir { path: d },
                2 => Op::Mkdir { path: d },
                3 => Op::Create {
                    path: d,
                    len: 10,
                    seed,
                },
                4 => Op::Rename { from: other, to: d },
                5 => Op::Create {
                    path: format!("{d}/{leaf}"),
                    len: 10,
                    seed,
                },
                _ => Op::Rename { from: d, to: other },
            };
            push(&mut sim, op);
            "a directory emptied elsewhere, then used"
        }
        1 => {
            // Media added elsewhere under a directory, then the directory used.
            let d = pick_dir(rng, &explicit);
            push(&mut sim, Op::List { path: d.clone() });
            if let Some(op) = api_put(rng, &sim, format!("{d}/{leaf}")) {
                push(&mut sim, op);
            }
            let other = unrelated(rng, &d);
            let op = match rng.below(5) {
                0 => Op::Rmdir { path: d },
                1 | 2 => Op::Rename { from: other, to: d },
                3 => Op::Rename { from: d, to: other },
                _ => Op::List { path: d },
            };
            push(&mut sim, op);
            "media added elsewhere under a directory, then the directory used"
        }
        2 => {
            // A file replaced by a directory elsewhere.
            let f = rng.pick(&files).clone();
            if !api_delete_ok(&sim, &f, paged) {
                return ("", plan);
            }
            push(&mut sim, Op::ApiDelete { name: f.clone() });
            if let Some(op) = api_put(rng, &sim, format!("{f}/{leaf}")) {
                push(&mut sim, op);
            }
            let path = parent(&f).to_string();
            push(&mut sim, Op::List { path });
            let path = format!("{f}/{leaf}");
            push(&mut sim, Op::Read { path });
            "a file replaced by a directory elsewhere"
        }
        3 => {
            // A lookup of a directory not seen yet lists only until it shows up (on a large
            // account); a media put meanwhile before that point must show all the same.
            let d = random_path(rng, true);
            let Some(op) = api_put(rng, &sim, format!("{d}/{leaf}")) else {
                return ("", plan);
            };
            push(&mut sim, op);
            let path = format!("{d}/{leaf}");
            push(&mut sim, Op::Read { path });
            let name = random_path(rng, false);
            if let Some(op) = api_put(rng, &sim, name.clone()) {
                push(&mut sim, op);
            }
            let path = parent(&name).to_string();
            push(&mut sim, Op::List { path });
            "a listing paused by a lookup, then a change elsewhere"
        }
        5 => {
            // A directory replaced by a file elsewhere (not paged: it empties a directory).
            let d = pick_dir(rng, &with_media);
            for name in files.iter().filter(|m| under(m, &d)) {
                push(&mut sim, Op::ApiDelete { name: name.clone() });
            }
            if let Some(op) = api_put(rng, &sim, d.clone()) {
                push(&mut sim, op);
            }
            let path = parent(&d).to_string();
            push(&mut sim, Op::List { path });
            push(&mut sim, Op::Read { path: d });
            "a directory replaced by a file elsewhere"
        }
        _ => {
            // rm -r: list, remove the files, then the directories deepest first; list the parent.
            let d = pick_dir(rng, &with_media);
            push(&mut sim, Op::List { path: d.clone() });
            for path in files.iter().filter(|m| under(m, &d)) {
                let path = path.clone();
                push(&mut sim, Op::Unlink { path });
            }
            let mut below: Vec<&String> = dirs.iter().filter(|x| under(x, &d)).collect();
            below.sort_by_key(|x| std::cmp::Reverse(x.len()));
            for path in below {
                let path = path.clone();
                push(&mut sim, Op::Rmdir { path });
            }
            push(&mut sim, Op::Rmdir { path: d.clone() });
            let path = parent(&d).to_string();
            push(&mut sim, Op::List { path });
            "rm -r"
        }
    };
    (what, plan)
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
        Op::List { path } => {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(p(&path))? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let slash = if entry.file_type()?.is_dir() { "/" } else { "" };
                names.push(format!("{name}{slash}"));
            }
            names.sort();
            return Ok(Some(names.join("\n").into_bytes()));
        }
        Op::Rename { from, to } => std::fs::rename(p(&from), p(&to))?,
        Op::Unlink { path } => std::fs::remove_file(p(&path))?,
        Op::Mkdir { path } => std::fs::create_dir(p(&path))?,
        Op::Rmdir { path } => std::fs::remove_dir(p(&path))?,
        Op::DupWrite { path, len, seed } => {
            let data = bytes(len, seed);
            let (first, second) = data.split_at(len / 2);
            let mut f = File::create(p(&path))?;
            f.write_all(first)?;
            // SAFETY: duplicating a descriptor we own; the copy is owned by `dup` alone.
            let fd = unsafe { libc::dup(std::os::unix::io::AsRawFd::as_raw_fd(&f)) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just returned by dup and is owned by nothing else.
            let dup = unsafe { <File as std::os::unix::io::FromRawFd>::from_raw_fd(fd) };
            close(dup)?;
            f.write_all(second)?;
            close(f)?;
        }
        Op::ShellLoop { path, n } => {
            let out = sh(&format!(
                "for i in $(seq {n}); do /bin/echo $i; done > {}",
                q(&p(&path))
            ));
            if !out.status.success() {
                return Err(shell_error(&String::from_utf8_lossy(&out.stderr)));
            }
        }
        Op::Oversize { path } => {
            let mut f = File::create(p(&path))?;
            let big = vec![7u8; bwmediafs::api::MAX_MEDIA_SIZE as usize + 1];
            let written = f.write_all(&big);
            let closed = close(f);
            written?;
            closed?;
        }
        Op::ApiPut { .. } | Op::ApiDelete { .. } | Op::FailedFsync { .. } | Op::Outage { .. } => {
            unreachable!("not a plain mount operation")
        }
    }
    Ok(None)
}

/// The errno a shell's message names.
fn shell_error(stderr: &str) -> io::Error {
    let errno = [
        ("Is a directory", libc::EISDIR),
        ("Not a directory", libc::ENOTDIR),
        ("No such file or directory", libc::ENOENT),
        ("Input/output error", libc::EIO),
    ]
    .into_iter()
    .find(|(text, _)| stderr.contains(text))
    .map_or(-1, |(_, e)| e);
    io::Error::from_raw_os_error(errno)
}

/// `path` created and written (nothing uploaded yet), then the server made to fail every
/// request; the file is still open.
fn written_while_failing(m: &Mount, path: &str, data: &[u8]) -> io::Result<File> {
    let p = m.path(path);
    let d = data.to_vec();
    let f = timed("create", move || -> io::Result<File> {
        let mut f = File::create(p)?;
        f.write_all(&d)?;
        Ok(f)
    })?;
    m.emulator.set_faults(Faults {
        error_rate: 1.0,
        error_statuses: vec![503],
        ..Faults::default()
    });
    Ok(f)
}

/// `create path` with the server failing at the fsync, then what `then` says.
fn failed_fsync(m: &Mount, path: &str, data: &[u8], then: AfterFailure) -> io::Result<()> {
    let f = written_while_failing(m, path, data)?;
    let failed = f.sync_all();
    if then != AfterFailure::CloseWhileFailing {
        m.emulator.set_faults(Faults::default());
    }
    let result = match failed {
        Ok(()) => Err(io::Error::other(
            "an fsync succeeded while the server failed",
        )),
        Err(e) if e.raw_os_error() != Some(libc::EIO) => Err(e),
        Err(_) => match then {
            AfterFailure::FsyncAgain => f.sync_all().and_then(|()| close(f)),
            AfterFailure::Close | AfterFailure::CloseWhileFailing => close(f),
        },
    };
    m.emulator.set_faults(Faults::default());
    if then == AfterFailure::CloseWhileFailing && !in_recovery(&m.dir.path().join("recovery"), data)
    {
        return Err(io::Error::other("the bytes are not in the recovery folder"));
    }
    result
}

/// Whether a file of the recovery folder `dir` holds exactly `data`.
fn in_recovery(dir: &Path, data: &[u8]) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::read(e.path()).is_ok_and(|b| b == data))
}

/// `create path`, closed while the server is down for a moment shorter than the retry time.
fn across_outage(m: &Mount, path: &str, data: &[u8]) -> io::Result<()> {
    let f = written_while_failing(m, path, data)?;
    // The server comes back 400 ms later, well within the retry time: the close succeeds.
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(400));
            m.emulator.set_faults(Faults::default());
        });
        close(f)
    })
}

/// An operation's result as an outcome: its errno when it failed.
fn outcome(r: io::Result<Option<Vec<u8>>>) -> Outcome {
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// A change made through the API, behind the target's back.
fn run_api(store: &Store, op: &Op) -> Outcome {
    match op {
        Op::ApiPut { name, len, seed } => {
            let put = store.put(
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
            store.delete(name);
            Ok(None)
        }
        _ => unreachable!("not an API operation"),
    }
}

/// What the model test runs against: a real mount of the binary, or the core alone.
trait Target {
    /// Run one operation that is not an API one.
    fn run(&self, op: &Op) -> Outcome;
    /// Every file (its bytes and stat size) and directory the target shows.
    fn tree(&self) -> Result<Tree, String>;
    /// The store behind it.
    fn store(&self) -> &Store;
    /// Where bwmediafs logs, for the report of a failure.
    fn log(&self) -> Option<PathBuf>;
    /// The core alone: no kernel, no shell, no retries.
    fn is_core(&self) -> bool;
}

impl Target for Mount {
    fn run(&self, op: &Op) -> Outcome {
        run_on_mount(self, op)
    }
    fn tree(&self) -> Result<Tree, String> {
        let root = self.mnt.clone();
        timed("walk the tree", move || walk(root)).map_err(|e| format!("walking: {e}"))
    }
    fn store(&self) -> &Store {
        self.emulator.store()
    }
    fn log(&self) -> Option<PathBuf> {
        Some(self.log.clone())
    }
    fn is_core(&self) -> bool {
        false
    }
}

fn run_on_mount(m: &Mount, op: &Op) -> Outcome {
    match op {
        Op::FailedFsync {
            path,
            len,
            seed,
            then,
        } => outcome(failed_fsync(m, path, &bytes(*len, *seed), *then).map(|()| None)),
        Op::Outage { path, len, seed } => {
            outcome(across_outage(m, path, &bytes(*len, *seed)).map(|()| None))
        }
        _ => {
            let (op, root) = (op.clone(), m.mnt.clone());
            outcome(timed(&op.to_string(), move || on_mount(op, root)))
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

fn check_tree(target: &dyn Target, model: &Model) -> Result<(), String> {
    let (files, dirs) = target.tree()?;
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

fn check_store(target: &dyn Target, model: &Model) -> Result<(), String> {
    let store = target.store();
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
    page_size: usize,
    steps: Vec<String>,
    log: Option<PathBuf>,
}

impl Drop for Trace {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            if std::env::var_os("MODEL_TRACE").is_some() {
                eprintln!("=== seed {}, pages of {} ===", self.seed, self.page_size);
                for s in &self.steps {
                    eprintln!("{s}");
                }
            }
            return;
        }
        eprintln!(
            "\n=== model test failed: seed {}, pages of {} ===",
            self.seed, self.page_size
        );
        for s in &self.steps {
            eprintln!("{s}");
        }
        let log = self
            .log
            .as_ref()
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!("--- last lines of the bwmediafs log ---");
        for l in tail.iter().rev() {
            eprintln!("{l}");
        }
        eprintln!(
            "=== replay: MODEL_SEEDS={} MODEL_PAGE_SIZE={} MODEL_STEPS={}{} cargo test --test \
             model -- from_env --nocapture ===",
            self.seed,
            if self.log.is_none() {
                " MODEL_TARGET=core"
            } else {
                ""
            },
            self.page_size,
            self.steps.iter().filter(|s| !s.contains("(check")).count()
        );
    }
}

/// Run `steps` random steps from `seed` against an emulator that lists `page_size` media a page
/// (small: a large account, where the core trusts known names until the next complete listing
/// and checks a file with a GET when it is opened).
fn run_seed(seed: u64, steps: usize, page_size: usize) {
    let mut config = emulator_config();
    config.store.page_size = page_size;
    let m = Mount::with(
        start_emulator(config),
        &["--metadata-ttl", "0s", "--retry-time", "1s"],
    );
    run_steps(&m, seed, steps, page_size);
}

/// Run `steps` random steps from `seed` against `target`, whose store lists `page_size` media a
/// page.
fn run_steps(target: &dyn Target, seed: u64, steps: usize, page_size: usize) {
    let paged = page_size < 10;
    let mut trace = Trace {
        seed,
        page_size,
        steps: Vec::new(),
        log: target.log(),
    };
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let mut api_only = false;
    // Paged: directories where a media was deleted through the API since the tree was listed.
    // A large account shows such a deletion at its next listing (or at an open, which gets
    // 404), so the tree is listed before the mount is used again.
    let mut deleted_in = BTreeSet::new();
    // How many of each operation succeeded, and which errors the others had.
    let mut tally: BTreeMap<String, (usize, BTreeMap<i32, usize>)> = BTreeMap::new();
    let check = |trace: &mut Trace, model: &Model, after: &str, why: &str| {
        trace
            .steps
            .push(format!("      (check the whole tree{why})"));
        if let Err(e) = check_tree(target, model) {
            panic!("{after}, the tree differs:\n{e}");
        }
    };
    let mut plan = std::collections::VecDeque::new();
    for step in 0..steps {
        if plan.is_empty() && rng.chance(15) {
            let (what, ops) = scenario(&mut rng, &model, paged);
            if !ops.is_empty() {
                trace.steps.push(format!("      (scenario: {what})"));
                plan.extend(ops);
            }
        }
        let op = match plan.pop_front() {
            Some(op) => op,
            None => generate(&mut rng, &model, api_only, paged, target.is_core()),
        };
        api_only = matches!(op, Op::ApiPut { .. } | Op::ApiDelete { .. }) && rng.chance(35);
        let api_op = matches!(op, Op::ApiPut { .. } | Op::ApiDelete { .. });
        if paged && !api_op && !deleted_in.is_empty() {
            check(
                &mut trace,
                &model,
                &format!("before step {step}"),
                ", which a deletion elsewhere waits for on a large account",
            );
            deleted_in.clear();
        }
        trace.steps.push(format!("{step:4}  {op}"));
        let dir_op = matches!(&op, Op::Rename { from, .. } if model.kind(from) == Kind::Dir);
        let want = model.apply(&op);
        let kind = format!("{op}").split(' ').next().unwrap_or("").to_string()
            + if dir_op { "-dir" } else { "" };
        let e = tally.entry(kind).or_default();
        match &want {
            Ok(_) => e.0 += 1,
            Err(errno) => *e.1.entry(*errno).or_default() += 1,
        }
        let got = match &op {
            Op::ApiPut { .. } | Op::ApiDelete { .. } => run_api(target.store(), &op),
            _ => target.run(&op),
        };
        if got != want {
            let detail = match (&op, &got, &want) {
                (Op::List { .. }, Ok(Some(g)), Ok(Some(w))) => format!(
                    "({:?} instead of {:?})",
                    String::from_utf8_lossy(g),
                    String::from_utf8_lossy(w)
                ),
                (_, Ok(Some(g)), Ok(Some(w))) => differ(g, w),
                _ => String::new(),
            };
            panic!(
                "step {step}: {op}: the mount answered {}, the model {} {detail}",
                show(&got),
                show(&want)
            );
        }
        if let Err(e) = check_store(target, &model) {
            panic!("step {step}: after {op}: {e}");
        }
        if let Op::ApiDelete { name } = &op {
            deleted_in.insert(parent(name).to_string());
        }
        if (plan.is_empty() && rng.chance(35)) || step + 1 == steps {
            check(&mut trace, &model, &format!("step {step}: after {op}"), "");
            deleted_in.clear();
        }
    }
    eprintln!("seed {seed}: successes and {{errno: count}} of each operation: {tally:?}");
}

// ----- the core alone ----------------------------------------------------------------------------

/// The core over the in-process store, driven by path as the kernel would drive it: each
/// component looked up in turn, files opened, written, flushed and released. Fast enough for
/// hundreds of seeds in seconds.
struct Core {
    fs: std::sync::Arc<MediaFs>,
    store: Arc<Store>,
    faults: Arc<StoreFaults>,
    tmp: tempfile::TempDir,
}

impl Core {
    fn new(page_size: usize) -> Core {
        let store = Arc::new(Store::new(StoreConfig {
            page_size,
            ..StoreConfig::default()
        }));
        let faults = Arc::new(StoreFaults::default());
        let api = Arc::new(FaultyStore {
            store: store.clone(),
            faults: faults.clone(),
        });
        let tmp = tempfile::tempdir().expect("temp dir");
        let opts = FsOptions {
            metadata_ttl: std::time::Duration::ZERO,
            recovery_dir: tmp.path().join("recovery"),
            ..FsOptions::default()
        };
        let fs = MediaFs::connect(api, opts).expect("connect the core");
        Core {
            fs,
            store,
            faults,
            tmp,
        }
    }

    /// The inode at `path` (each component looked up, as a path walk does).
    fn resolve(&self, path: &str) -> Result<Attr, FsError> {
        let mut attr = self.fs.getattr(ROOT_INO)?;
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            if attr.kind != FileKind::Dir {
                return Err(FsError::NotDir);
            }
            attr = self.fs.lookup(attr.ino, OsStr::new(seg))?;
        }
        Ok(attr)
    }

    /// The directory holding `path`, and its last component.
    fn parent<'a>(&self, path: &'a str) -> Result<(Ino, &'a OsStr), FsError> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let d = self.resolve(dir)?;
        if d.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        Ok((d.ino, OsStr::new(name)))
    }

    /// The directory holding `path`, its last component, and what a lookup of that finds: the
    /// kernel looks the last component up before it creates, removes or renames anything.
    fn looked_up<'a>(&self, path: &'a str) -> Result<(Ino, &'a OsStr, Option<Attr>), FsError> {
        let (dir, name) = self.parent(path)?;
        match self.fs.lookup(dir, name) {
            Ok(a) => Ok((dir, name, Some(a))),
            Err(FsError::NotFound) => Ok((dir, name, None)),
            Err(e) => Err(e),
        }
    }

    /// Open `path` like `open(2)` with `flags` (O_CREAT making it when missing).
    fn open(&self, path: &str, flags: i32) -> Result<u64, FsError> {
        let (dir, name) = self.parent(path)?;
        match self.fs.lookup(dir, name) {
            Ok(a) if a.kind == FileKind::Dir => Err(FsError::IsDir),
            Ok(a) => Ok(self.fs.open(a.ino, flags, 0)?.fh),
            Err(FsError::NotFound) if flags & libc::O_CREAT != 0 => Ok(self
                .fs
                .create(dir, name, 0o644, 0o022, flags, Caller::default())?
                .1
                .fh),
            Err(e) => Err(e),
        }
    }

    fn write_all(&self, fh: u64, mut offset: u64, data: &[u8]) -> Result<(), FsError> {
        for chunk in data.chunks(128 * 1024) {
            self.fs.write(fh, offset, chunk)?;
            offset += chunk.len() as u64;
        }
        Ok(())
    }

    /// Close a handle: flush (whose result is close's), then release.
    fn close(&self, fh: u64) -> Result<(), FsError> {
        let flushed = self.fs.flush(fh);
        let _ = self.fs.release(fh);
        flushed
    }

    fn read_all(&self, path: &str) -> Result<Vec<u8>, FsError> {
        let a = self.resolve(path)?;
        if a.kind == FileKind::Dir {
            return Err(FsError::IsDir);
        }
        let fh = self.fs.open(a.ino, libc::O_RDONLY, 0)?.fh;
        let mut out = Vec::new();
        let r = loop {
            match self.fs.read(fh, out.len() as u64, 128 * 1024) {
                Ok(b) if b.is_empty() => break Ok(()),
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => break Err(e),
            }
        };
        let _ = self.fs.release(fh);
        r.map(|()| out)
    }

    /// The entries of a directory: (name, is a directory).
    fn list(&self, path: &str) -> Result<Vec<(String, bool)>, FsError> {
        let a = self.resolve(path)?;
        if a.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        let fh = self.fs.opendir(a.ino)?.fh;
        let mut names = Vec::new();
        let mut offset = 0;
        let r = loop {
            let mut got = 0;
            let r = self.fs.readdir(fh, offset, false, |e| {
                offset = e.offset;
                got += 1;
                if e.name != "." && e.name != ".." {
                    names.push((e.name.to_string(), e.kind == FileKind::Dir));
                }
                false
            });
            match r {
                Ok(()) if got == 0 => break Ok(()),
                Ok(()) => {}
                Err(e) => break Err(e),
            }
        };
        self.fs.releasedir(fh);
        r.map(|()| names)
    }

    fn create_with(&self, path: &str, data: &[u8]) -> Result<u64, FsError> {
        let fh = self.open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)?;
        if let Err(e) = self.write_all(fh, 0, data) {
            let _ = self.close(fh);
            return Err(e);
        }
        Ok(fh)
    }

    fn failed_fsync(&self, path: &str, data: &[u8], then: AfterFailure) -> Result<(), FsError> {
        let fh = self.create_with(path, data)?;
        let unavailable = ApiError::Status {
            status: 503,
            kind: None,
            description: None,
        };
        *self.faults.put.lock() = Some(unavailable);
        let failed = self.fs.fsync(fh);
        if then != AfterFailure::CloseWhileFailing {
            *self.faults.put.lock() = None;
        }
        let result = match failed {
            Ok(()) => Err(FsError::Invalid(
                "an fsync succeeded while the server failed".into(),
            )),
            Err(e) if e.errno() != libc::EIO => Err(e),
            Err(_) => match then {
                AfterFailure::FsyncAgain => self.fs.fsync(fh).and_then(|()| self.close(fh)),
                AfterFailure::Close | AfterFailure::CloseWhileFailing => self.close(fh),
            },
        };
        *self.faults.put.lock() = None;
        if then == AfterFailure::CloseWhileFailing
            && !in_recovery(&self.tmp.path().join("recovery"), data)
        {
            return Err(FsError::Invalid(
                "the bytes are not in the recovery folder".into(),
            ));
        }
        result
    }

    fn apply(&self, op: &Op) -> Result<Option<Vec<u8>>, FsError> {
        match op {
            Op::Create { path, len, seed } => {
                let fh = self.create_with(path, &bytes(*len, *seed))?;
                self.close(fh)?;
            }
            Op::WriteAt {
                path,
                offset,
                len,
                seed,
            } => {
                let fh = self.open(path, libc::O_WRONLY)?;
                let w = self.write_all(fh, *offset, &bytes(*len, *seed));
                let c = self.close(fh);
                w.and(c)?;
            }
            Op::Append { path, len, seed } => {
                let fh = self.open(path, libc::O_WRONLY | libc::O_APPEND)?;
                let w = self.write_all(fh, 0, &bytes(*len, *seed));
                let c = self.close(fh);
                w.and(c)?;
            }
            Op::Truncate { path, len, by_path } => {
                let size = SetAttr {
                    size: Some(*len),
                    ..SetAttr::default()
                };
                if *by_path {
                    let a = self.resolve(path)?;
                    if a.kind == FileKind::Dir {
                        return Err(FsError::IsDir);
                    }
                    self.fs.setattr(a.ino, size)?;
                } else {
                    let fh = self.open(path, libc::O_WRONLY)?;
                    let ino = self.resolve(path)?.ino;
                    let t = self.fs.setattr(ino, size).map(|_| ());
                    let c = self.close(fh);
                    t.and(c)?;
                }
            }
            Op::Read { path } => return self.read_all(path).map(Some),
            Op::List { path } => {
                let mut names: Vec<String> = self
                    .list(path)?
                    .into_iter()
                    .map(|(n, dir)| if dir { format!("{n}/") } else { n })
                    .collect();
                names.sort();
                return Ok(Some(names.join("\n").into_bytes()));
            }
            Op::Rename { from, to } => {
                let (p1, n1, source) = self.looked_up(from)?;
                let (p2, n2, _) = self.looked_up(to)?;
                source.ok_or(FsError::NotFound)?;
                // What the kernel refuses itself before it asks the file system.
                if from.starts_with(&format!("{to}/")) {
                    return Err(FsError::NotEmpty);
                }
                if to.starts_with(&format!("{from}/")) {
                    return Err(FsError::Invalid("a directory moved into itself".into()));
                }
                self.fs.rename(p1, n1, p2, n2, 0)?;
            }
            Op::Unlink { path } => {
                let (dir, name, found) = self.looked_up(path)?;
                match found {
                    None => return Err(FsError::NotFound),
                    Some(a) if a.kind == FileKind::Dir => return Err(FsError::IsDir),
                    Some(_) => self.fs.unlink(dir, name)?,
                }
            }
            Op::Mkdir { path } => {
                let (dir, name, found) = self.looked_up(path)?;
                if found.is_some() {
                    return Err(FsError::Exists);
                }
                self.fs.mkdir(dir, name, 0o755, 0o022, Caller::default())?;
            }
            Op::Rmdir { path } => {
                let (dir, name, found) = self.looked_up(path)?;
                match found {
                    None => return Err(FsError::NotFound),
                    Some(a) if a.kind != FileKind::Dir => return Err(FsError::NotDir),
                    Some(_) => self.fs.rmdir(dir, name)?,
                }
            }
            Op::FailedFsync {
                path,
                len,
                seed,
                then,
            } => self.failed_fsync(path, &bytes(*len, *seed), *then)?,
            Op::DupWrite { path, len, seed } => {
                // One open file flushed twice, as by the close of a dup'd descriptor.
                let data = bytes(*len, *seed);
                let (first, second) = data.split_at(len / 2);
                let fh = self.create_with(path, first)?;
                self.fs.flush(fh)?;
                let w = self.write_all(fh, first.len() as u64, second);
                let c = self.close(fh);
                w.and(c)?;
            }
            Op::Oversize { path } => {
                let big = vec![7u8; bwmediafs::api::MAX_MEDIA_SIZE as usize + 1];
                let fh = self.open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)?;
                let w = self.write_all(fh, 0, &big);
                let c = self.close(fh);
                w.and(c)?;
            }
            Op::Outage { .. } | Op::ShellLoop { .. } | Op::ApiPut { .. } | Op::ApiDelete { .. } => {
                unreachable!("not generated for the core")
            }
        }
        Ok(None)
    }
}

impl Target for Core {
    fn run(&self, op: &Op) -> Outcome {
        self.apply(op).map_err(|e| e.errno())
    }

    fn tree(&self) -> Result<Tree, String> {
        let mut files = BTreeMap::new();
        let mut dirs = BTreeSet::new();
        let mut stack = vec![String::new()];
        while let Some(rel) = stack.pop() {
            let entries = self
                .list(&rel)
                .map_err(|e| format!("listing {rel:?}: {e}"))?;
            for (name, is_dir) in entries {
                let path = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                if is_dir {
                    dirs.insert(path.clone());
                    stack.push(path);
                } else {
                    let body = self.read_all(&path).map_err(|e| format!("{path}: {e}"))?;
                    let size = self
                        .resolve(&path)
                        .map_err(|e| format!("{path}: {e}"))?
                        .size;
                    files.insert(path, (body, size));
                }
            }
        }
        Ok((files, dirs))
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn log(&self) -> Option<PathBuf> {
        None
    }

    fn is_core(&self) -> bool {
        true
    }
}

/// Many seeds against the core alone, on a small and on a paged account: 100 of each here
/// (about a minute unoptimised); `MODEL_CORE_SEEDS=300 cargo test --release --test model
/// model_of_the_core` runs 300 of each in half a minute.
#[test]
fn model_of_the_core_with_many_seeds() {
    let seeds: u64 = std::env::var("MODEL_CORE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    for seed in 1000..1000 + seeds {
        for page_size in [1000, 1] {
            run_steps(&Core::new(page_size), seed, STEPS, page_size);
        }
    }
}

// Small accounts (one listing page): every lookup, directories included, asks the server.
#[test]
fn model_seed_1() {
    run_seed(1, STEPS, 1000);
}

#[test]
fn model_seed_2() {
    run_seed(2, STEPS, 1000);
}

#[test]
fn model_seed_3() {
    run_seed(3, STEPS, 1000);
}

#[test]
fn model_seed_4() {
    run_seed(4, STEPS, 1000);
}

#[test]
fn model_seed_9() {
    run_seed(9, STEPS, 1000);
}

#[test]
fn model_seed_10() {
    run_seed(10, STEPS, 1000);
}

// Listings of several pages (one media a page): known names are trusted until the next complete
// listing, and an open checks the file with one GET.
#[test]
fn model_paged_seed_5() {
    run_seed(5, STEPS, 1);
}

#[test]
fn model_paged_seed_6() {
    run_seed(6, STEPS, 1);
}

#[test]
fn model_paged_seed_7() {
    run_seed(7, STEPS, 1);
}

#[test]
fn model_paged_seed_8() {
    run_seed(8, STEPS, 1);
}

#[test]
fn model_paged_seed_11() {
    run_seed(11, STEPS, 1);
}

#[test]
fn model_paged_seed_12() {
    run_seed(12, STEPS, 1);
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
    let page_size = std::env::var("MODEL_PAGE_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let core = std::env::var("MODEL_TARGET").is_ok_and(|t| t == "core");
    let mut failed = Vec::new();
    for seed in seeds.split(',').filter_map(|s| s.trim().parse().ok()) {
        eprintln!("seed {seed}, {steps} steps, pages of {page_size}");
        let run = || match core {
            true => run_steps(&Core::new(page_size), seed, steps, page_size),
            false => run_seed(seed, steps, page_size),
        };
        if std::panic::catch_unwind(run).is_err() {
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "failed seeds: {failed:?}");
}
