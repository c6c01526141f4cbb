//! The core alone.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;

use bwmediafs::api::ApiError;
use bwmediafs::emulator::faulty_store::{FaultyStore, StoreFaults};
use bwmediafs::emulator::store::{Store, StoreConfig};
use bwmediafs::fs::{
    Attr, Caller, FsError, FsOptions, Ino, Kind as FileKind, MediaFs, SetAttr, ROOT_INO,
};

use crate::common::*;
use crate::on_mount::{in_recovery, Target};
use crate::ops::{AfterFailure, Op, Outcome};
use crate::tree::Tree;

/// The core over the in-process store, driven by path as the kernel would drive it: each
/// component looked up in turn, files opened, written, flushed and released. Fast enough for
/// hundreds of seeds in seconds.
pub(crate) struct Core {
    pub(crate) fs: std::sync::Arc<MediaFs>,
    pub(crate) store: Arc<Store>,
    pub(crate) faults: Arc<StoreFaults>,
    tmp: tempfile::TempDir,
}

impl Core {
    pub(crate) fn new(page_size: usize) -> Core {
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
    pub(crate) fn parent<'a>(&self, path: &'a str) -> Result<(Ino, &'a OsStr), FsError> {
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
    pub(crate) fn open(&self, path: &str, flags: i32) -> Result<u64, FsError> {
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

    pub(crate) fn write_all(&self, fh: u64, mut offset: u64, data: &[u8]) -> Result<(), FsError> {
        for chunk in data.chunks(128 * 1024) {
            self.fs.write(fh, offset, chunk)?;
            offset += chunk.len() as u64;
        }
        Ok(())
    }

    /// Close a handle: flush (whose result is close's), then release.
    pub(crate) fn close(&self, fh: u64) -> Result<(), FsError> {
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
    pub(crate) fn list(&self, path: &str) -> Result<Vec<(String, bool)>, FsError> {
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

    pub(crate) fn failed_fsync(
        &self,
        path: &str,
        data: &[u8],
        then: AfterFailure,
    ) -> Result<(), FsError> {
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

    pub(crate) fn apply(&self, op: &Op) -> Result<Option<Vec<u8>>, FsError> {
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
