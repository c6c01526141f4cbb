//! Unit tests of the core through the in-process emulator store: every semantics row, and the
//! round-trip budget asserted exactly from the store's request counters.

use bytes::Bytes;

use super::*;
use crate::api::{content_type_for, ApiError, MediaApi, MAX_MEDIA_SIZE};
use crate::emulator::faulty_store::{FaultyStore, StoreFaults};
use crate::emulator::store::{StatsSnapshot, Store, StoreConfig};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;
use std::time::SystemTime;

mod budget;
mod budget_changes;
mod collisions;
mod errors;
mod headers;
mod names;
mod readahead;
mod reclaim;
mod times;
mod writeback;
mod writes;
mod xattrs;

fn new_store(page_size: usize) -> Arc<Store> {
    Arc::new(Store::new(StoreConfig {
        page_size,
        ..StoreConfig::default()
    }))
}

fn seed(store: &Store, name: &str, body: &[u8]) {
    Store::put(
        store,
        name,
        Bytes::copy_from_slice(body),
        &content_type_for(name),
        None,
    )
    .unwrap();
}

/// The caller of the tests' requests: the mount's own user (see [`options`]).
const ME: Caller = Caller {
    pid: 0,
    uid: 1234,
    gid: 5678,
};

fn os(s: &str) -> OsString {
    OsString::from(s)
}

struct T {
    store: Arc<Store>,
    faults: Arc<StoreFaults>,
    fs: Arc<MediaFs>,
    tmp: tempfile::TempDir,
}

fn options(ttl: Duration, tmp: &tempfile::TempDir) -> FsOptions {
    FsOptions {
        metadata_ttl: ttl,
        uid: 1234,
        gid: 5678,
        recovery_dir: tmp.path().join("recovery"),
        ..FsOptions::default()
    }
}

fn mount_with(store: Arc<Store>, f: impl FnOnce(&mut FsOptions)) -> T {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(Duration::from_secs(60), &tmp);
    f(&mut opts);
    let faults = Arc::new(StoreFaults::default());
    let api = Arc::new(FaultyStore {
        store: store.clone(),
        faults: faults.clone(),
    });
    let fs = MediaFs::connect(api, opts).unwrap();
    T {
        store,
        faults,
        fs,
        tmp,
    }
}

fn mount(store: Arc<Store>) -> T {
    mount_with(store, |_| {})
}

fn mount_ttl(store: Arc<Store>, ttl: Duration) -> T {
    mount_with(store, |o| o.metadata_ttl = ttl)
}

fn snap(list: u64, get: u64, put: u64, delete: u64) -> StatsSnapshot {
    StatsSnapshot {
        list,
        get,
        put,
        delete,
        token: 0,
    }
}

impl T {
    /// Create `name` in `parent` (mode 644) and open it with `flags`.
    fn create(&self, parent: Ino, name: &str, flags: i32) -> (Attr, Opened) {
        self.fs
            .create(parent, &os(name), 0o644, 0, flags, ME)
            .unwrap()
    }

    fn stats(&self) -> StatsSnapshot {
        self.store.stats.snapshot()
    }

    fn reset(&self) {
        self.store.stats.reset();
    }

    /// The inode of the directory holding `path`, and its last component.
    fn parent_of<'a>(&self, path: &'a str) -> Result<(Ino, &'a str), FsError> {
        match path.rsplit_once('/') {
            Some((dir, base)) => Ok((self.resolve(dir)?.ino, base)),
            None => Ok((ROOT_INO, path)),
        }
    }

    /// Lookups along a path, as the kernel does them.
    fn resolve(&self, path: &str) -> Result<Attr, FsError> {
        let mut attr = self.fs.getattr(ROOT_INO)?;
        if path.is_empty() {
            return Ok(attr);
        }
        for seg in path.split('/') {
            attr = self.fs.lookup(attr.ino, &os(seg))?;
        }
        Ok(attr)
    }

    fn ls(&self, path: &str) -> Result<Vec<String>, FsError> {
        let ino = self.resolve(path)?.ino;
        let fh = self.fs.opendir(ino)?.fh;
        let names = self.read_dir_from(fh, 0);
        self.fs.releasedir(fh);
        let mut names = names?;
        names.retain(|n| n != "." && n != "..");
        names.sort();
        Ok(names)
    }

    /// The names an open listing hands out from `offset` to its end, 50 a reply.
    fn read_dir_from(&self, fh: u64, mut offset: u64) -> Result<Vec<String>, FsError> {
        let mut names = Vec::new();
        loop {
            let mut got = 0;
            self.fs.readdir(fh, offset, false, |e| {
                offset = e.offset;
                got += 1;
                names.push(e.name.to_string());
                got >= 50
            })?;
            if got == 0 {
                return Ok(names);
            }
        }
    }

    fn read_all(&self, fh: u64) -> Result<Vec<u8>, FsError> {
        let mut out = Vec::new();
        loop {
            let chunk = self.fs.read(fh, out.len() as u64, 128 * 1024)?;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
        }
    }

    fn cat(&self, path: &str) -> Result<Vec<u8>, FsError> {
        let ino = self.resolve(path)?.ino;
        let o = self.fs.open(ino, libc::O_RDONLY, 0)?;
        let r = self.read_all(o.fh);
        self.fs.flush(o.fh)?;
        self.fs.release(o.fh)?;
        r
    }

    /// Like `cp SRC path`: open with O_TRUNC (or create), write, close.
    fn write_file(&self, path: &str, data: &[u8]) -> Result<(), FsError> {
        let (parent, base) = self.parent_of(path)?;
        let fh = match self.fs.lookup(parent, &os(base)) {
            Ok(a) => self.fs.open(a.ino, libc::O_WRONLY | libc::O_TRUNC, 0)?.fh,
            Err(FsError::NotFound) => {
                self.fs
                    .create(
                        parent,
                        &os(base),
                        0o644,
                        0o022,
                        libc::O_WRONLY | libc::O_CREAT,
                        ME,
                    )?
                    .1
                    .fh
            }
            Err(e) => return Err(e),
        };
        let mut r = Ok(());
        for (i, chunk) in data.chunks(128 * 1024).enumerate() {
            if let Err(e) = self.fs.write(fh, (i * 128 * 1024) as u64, chunk) {
                r = Err(e);
                break;
            }
        }
        let flushed = self.fs.flush(fh);
        let _ = self.fs.release(fh);
        r.and(flushed)
    }

    /// `truncate(2)` of `ino` to `size`.
    fn resize(&self, ino: Ino, size: u64) -> Result<Attr, FsError> {
        self.fs.setattr(
            ino,
            SetAttr {
                size: Some(size),
                ..Default::default()
            },
        )
    }

    fn rm(&self, path: &str) -> Result<(), FsError> {
        let (parent, base) = self.parent_of(path)?;
        self.fs.unlink(parent, &os(base))
    }

    fn mv(&self, from: &str, to: &str) -> Result<(), FsError> {
        let (p1, b1) = self.parent_of(from)?;
        let (p2, b2) = self.parent_of(to)?;
        self.fs.rename(p1, &os(b1), p2, &os(b2), 0)
    }

    fn stored(&self, name: &str) -> Option<Vec<u8>> {
        Store::get(&self.store, name).ok().map(|m| m.body.to_vec())
    }
}

fn errno_of<T: std::fmt::Debug>(r: Result<T, FsError>) -> i32 {
    r.unwrap_err().errno()
}
