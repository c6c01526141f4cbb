//! Unit tests of the core through the in-process emulator store: every semantics row, and the
//! round-trip budget asserted exactly from the store's request counters.

use bytes::Bytes;

use super::*;
use crate::api::{content_type_for, MediaApi, MAX_MEDIA_SIZE};
use crate::emulator::faulty_store::{FaultyStore, StoreFaults};
use crate::emulator::store::{StatsSnapshot, Store, StoreConfig};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;
use std::time::SystemTime;

// ----- fixtures ------------------------------------------------------------------------------

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

fn os(s: &str) -> OsString {
    OsString::from(s)
}

struct T {
    store: Arc<Store>,
    faults: Arc<StoreFaults>,
    fs: MediaFs,
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
            .create(parent, &os(name), 0o644, 0, flags, 0)
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
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let mut got = 0;
            self.fs.readdir(fh, offset, false, |e| {
                offset = e.offset;
                got += 1;
                if e.name != "." && e.name != ".." {
                    names.push(e.name.to_string());
                }
                got >= 50
            })?;
            if got == 0 {
                break;
            }
        }
        self.fs.releasedir(fh);
        names.sort();
        Ok(names)
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
                        0,
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

// ----- the round-trip budget -----------------------------------------------------------------

#[test]
fn mount_costs_one_list_page_which_seeds_the_cache() {
    let store = new_store(1000);
    for i in 0..5 {
        seed(&store, &format!("m{i}.png"), b"x");
    }
    let t = mount(store);
    assert_eq!(t.stats(), snap(1, 0, 0, 0));
    assert_eq!(t.ls("").unwrap().len(), 5);
    let a = t.resolve("m3.png").unwrap();
    assert_eq!(a.size, 1);
    assert_eq!(errno_of(t.resolve("nope")), libc::ENOENT);
    assert_eq!(t.stats(), snap(1, 0, 0, 0));
}

#[test]
fn cold_ls_costs_one_list_per_1000_and_nothing_within_the_ttl() {
    let store = new_store(1000);
    for i in 0..2500 {
        seed(&store, &format!("f{i:05}.jpg"), b"abc");
    }
    let t = mount_ttl(store, Duration::from_millis(300));
    // Right after the mount, the walk its page started is continued: 2 more pages.
    t.reset();
    assert_eq!(t.ls("").unwrap().len(), 2500);
    assert_eq!(t.stats(), snap(2, 0, 0, 0));
    // Cold (after the TTL): ceil(2500/1000) pages, nothing else, `ls -l` lookups included.
    std::thread::sleep(Duration::from_millis(350));
    t.reset();
    let names = t.ls("").unwrap();
    for n in &names {
        assert_eq!(t.resolve(n).unwrap().size, 3);
    }
    assert_eq!(t.stats(), snap(3, 0, 0, 0));
    // Again within the TTL: nothing.
    t.reset();
    assert_eq!(t.ls("").unwrap().len(), 2500);
    assert_eq!(t.resolve("f01234.jpg").unwrap().size, 3);
    assert_eq!(t.stats(), snap(0, 0, 0, 0));
}

/// A whole pass over a directory as the kernel makes it: batches of `batch` entries, an entry
/// that does not fit asked for again, and a last call that hands out nothing.
fn kernel_pass(t: &T, dir: Ino, batch: usize) -> (bool, Vec<String>) {
    let o = t.fs.opendir(dir).unwrap();
    let mut offset = 0;
    let mut names = Vec::new();
    loop {
        let mut got = 0;
        t.fs.readdir(o.fh, offset, false, |e| {
            if got == batch {
                return true; // full: this entry is not taken
            }
            got += 1;
            offset = e.offset;
            if e.name != "." && e.name != ".." {
                names.push(e.name.to_string());
            }
            false
        })
        .unwrap();
        if got == 0 {
            break;
        }
    }
    t.fs.releasedir(o.fh);
    (o.keep_cache, names)
}

#[test]
fn the_kernel_keeps_a_cached_listing_while_it_is_current() {
    let store = new_store(10);
    for i in 0..25 {
        seed(&store, &format!("d/n{i:02}"), b"1");
    }
    seed(&store, "e/x", b"1");
    let t = mount_ttl(store, Duration::from_millis(300));
    let dir = t.resolve("d").unwrap().ino;
    let (keep, names) = kernel_pass(&t, dir, 7);
    assert!(!keep, "nothing cached yet");
    assert_eq!(names.len(), 25);
    let (keep, _) = kernel_pass(&t, dir, 7);
    assert!(keep, "the kernel has the whole listing and nothing changed");
    // A change in another directory does not matter; one in this directory does.
    t.write_file("e/y", b"2").unwrap();
    assert!(kernel_pass(&t, dir, 7).0);
    t.write_file("d/new", b"3").unwrap();
    let (keep, names) = kernel_pass(&t, dir, 7);
    assert!(!keep, "a file was added");
    assert_eq!(names.len(), 26);
    assert!(kernel_pass(&t, dir, 7).0);
    t.rm("d/n00").unwrap();
    assert!(!kernel_pass(&t, dir, 7).0, "a file was removed");
    // A pass that skipped entries did not fill the kernel's cache.
    t.write_file("d/new2", b"4").unwrap();
    let o = t.fs.opendir(dir).unwrap();
    assert!(!o.keep_cache);
    let mut last = 0;
    t.fs.readdir(o.fh, 10, false, |e| {
        last = e.offset;
        false
    })
    .unwrap();
    t.fs.readdir(o.fh, last, false, |_| false).unwrap();
    t.fs.releasedir(o.fh);
    assert!(
        !kernel_pass(&t, dir, 7).0,
        "the last full pass was the one with a seek"
    );
    assert!(kernel_pass(&t, dir, 7).0);
    // Past the TTL the listing is walked again, so the kernel's copy is dropped.
    std::thread::sleep(Duration::from_millis(350));
    assert!(!kernel_pass(&t, dir, 7).0);
}

#[test]
fn readdir_ahead_fetches_the_next_page_for_a_reader_that_came_back() {
    let store = new_store(10);
    for i in 0..35 {
        seed(&store, &format!("d/n{i:02}"), b"1");
    }
    let t = mount_ttl(store, Duration::from_millis(100));
    t.ls("d").unwrap(); // finish the walk the mount started
    std::thread::sleep(Duration::from_millis(150));
    t.reset();
    let dir = t.resolve("d").unwrap().ino;
    let fh = t.fs.opendir(dir).unwrap().fh;
    let mut offset = 0;
    let mut names = Vec::new();
    let mut read = |t: &T, max: usize| {
        let mut got = 0;
        t.fs.readdir(fh, offset, false, |e| {
            if got == max {
                return true;
            }
            offset = e.offset;
            if e.name != "." && e.name != ".." {
                names.push(e.name.to_string());
            }
            got += 1;
            false
        })
        .unwrap();
        got
    };
    read(&t, 5);
    t.fs.readdir_ahead(fh);
    assert_eq!(
        t.stats().list,
        1,
        "no page ahead for a reader that may stop here"
    );
    read(&t, 5);
    t.fs.readdir_ahead(fh);
    assert_eq!(
        t.stats().list,
        2,
        "the reader came back: the next page is fetched"
    );
    while read(&t, 5) > 0 {
        t.fs.readdir_ahead(fh);
    }
    t.fs.readdir_ahead(fh);
    t.fs.releasedir(fh);
    assert_eq!(names.len(), 35);
    assert_eq!(t.stats().list, 4, "ceil(35/10) pages, none after the last");
}

#[test]
fn readdir_streams_the_first_entries_after_one_page() {
    let store = new_store(10);
    for i in 0..35 {
        seed(&store, &format!("n{i:02}"), b"1");
    }
    let t = mount_ttl(store, Duration::from_millis(100));
    t.ls("").unwrap(); // finish the walk the mount started
    std::thread::sleep(Duration::from_millis(150));
    t.reset();
    let fh = t.fs.opendir(ROOT_INO).unwrap().fh;
    let mut seen = Vec::new();
    t.fs.readdir(fh, 0, false, |e| {
        seen.push((e.name.to_string(), e.offset));
        seen.len() >= 5
    })
    .unwrap();
    assert_eq!(t.stats().list, 1, "first entries after one page");
    assert_eq!(seen[0].0, ".");
    assert_eq!(seen[2].0, "n00");
    // The reader continues: more pages as it asks.
    let mut offset = seen.last().unwrap().1;
    let mut names: Vec<String> = seen.iter().skip(2).map(|s| s.0.clone()).collect();
    loop {
        let mut got = 0;
        t.fs.readdir(fh, offset, false, |e| {
            offset = e.offset;
            names.push(e.name.to_string());
            got += 1;
            false
        })
        .unwrap();
        if got == 0 {
            break;
        }
    }
    t.fs.releasedir(fh);
    assert_eq!(names.len(), 35);
    assert_eq!(t.stats().list, 4);
}

#[test]
fn cold_lookup_of_an_unlisted_name_is_one_get_and_the_read_is_free() {
    let store = new_store(10);
    for i in 0..25 {
        seed(
            &store,
            &format!("p{i:02}.txt"),
            format!("body {i}").as_bytes(),
        );
    }
    let t = mount(store);
    t.reset();
    // p20 is on the third page: never listed.
    let a = t.resolve("p20.txt").unwrap();
    assert_eq!(a.size, 7);
    assert_eq!(t.stats(), snap(0, 1, 0, 0));
    assert_eq!(t.cat("p20.txt").unwrap(), b"body 20");
    assert_eq!(t.stats(), snap(0, 1, 0, 0));
}

#[test]
fn cat_after_ls_is_one_get_and_again_is_free_with_keep_cache() {
    let store = new_store(1000);
    seed(&store, "a.txt", b"hello");
    let t = mount(store);
    t.ls("").unwrap();
    t.reset();
    assert_eq!(t.cat("a.txt").unwrap(), b"hello");
    assert_eq!(t.stats(), snap(0, 1, 0, 0));
    let ino = t.resolve("a.txt").unwrap().ino;
    let o = t.fs.open(ino, libc::O_RDONLY, 0).unwrap();
    assert!(o.keep_cache, "unchanged since the kernel cached it");
    assert_eq!(t.read_all(o.fh).unwrap(), b"hello");
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stats(), snap(0, 1, 0, 0));
}

#[test]
fn creating_a_new_file_is_one_put_and_shows_at_once() {
    let store = new_store(1000);
    let t = mount(store);
    t.reset();
    t.write_file("new.png", b"PNGDATA").unwrap();
    assert_eq!(t.stats(), snap(0, 0, 1, 0));
    assert_eq!(t.ls("").unwrap(), vec!["new.png"]);
    assert_eq!(t.cat("new.png").unwrap(), b"PNGDATA");
    assert_eq!(t.stats(), snap(0, 0, 1, 0));
    let m = Store::get(&t.store, "new.png").unwrap();
    assert_eq!(m.content_type, "image/png");
    assert_eq!(&m.body[..], b"PNGDATA");
}

#[test]
fn creating_on_a_cold_small_account_costs_one_lookup_request() {
    let store = new_store(1000);
    seed(&store, "old", b"1");
    let t = mount_ttl(store, Duration::from_millis(50));
    std::thread::sleep(Duration::from_millis(80));
    t.reset();
    t.write_file("new.txt", b"x").unwrap();
    assert_eq!(t.stats(), snap(1, 0, 1, 0));
}

#[test]
fn touch_creates_an_empty_media_with_one_put() {
    let t = mount(new_store(1000));
    t.reset();
    let (attr, o) = t.create(ROOT_INO, "empty", libc::O_WRONLY | libc::O_CREAT);
    assert_eq!(attr.size, 0);
    t.fs.flush(o.fh).unwrap();
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stats(), snap(0, 0, 1, 0));
    assert_eq!(t.stored("empty").unwrap(), b"");
}

#[test]
fn rdonly_creat_makes_an_empty_media() {
    let t = mount(new_store(1000));
    let (_, o) = t.create(ROOT_INO, "ro-created", libc::O_RDONLY | libc::O_CREAT);
    assert!(t.fs.read(o.fh, 0, 10).unwrap().is_empty());
    t.fs.flush(o.fh).unwrap();
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stored("ro-created").unwrap(), b"");
}

#[test]
fn flush_of_a_clean_handle_uploads_nothing() {
    // The kernel flushes on every close of a dup'd descriptor.
    let store = new_store(1000);
    seed(&store, "f", b"abc");
    let t = mount(store);
    t.reset();
    let ino = t.resolve("f").unwrap().ino;
    let o = t.fs.open(ino, libc::O_RDWR, 0).unwrap();
    t.fs.write(o.fh, 0, b"X").unwrap();
    t.fs.flush(o.fh).unwrap();
    t.fs.flush(o.fh).unwrap();
    t.fs.fsync(o.fh).unwrap();
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stats(), snap(0, 1, 1, 0));
    assert_eq!(t.stored("f").unwrap(), b"Xbc");
}

#[test]
fn unlink_is_one_delete_and_open_readers_keep_reading() {
    let store = new_store(1000);
    seed(&store, "d/gone.txt", b"still here");
    let t = mount(store);
    let ino = t.resolve("d/gone.txt").unwrap().ino;
    let o = t.fs.open(ino, libc::O_RDONLY, 0).unwrap();
    t.reset();
    t.rm("d/gone.txt").unwrap();
    // The reader had not read yet: its bytes were fetched before the delete.
    assert_eq!(t.stats(), snap(0, 1, 0, 1));
    assert_eq!(t.read_all(o.fh).unwrap(), b"still here");
    assert_eq!(t.fs.getattr(ino).unwrap().nlink, 0);
    t.fs.release(o.fh).unwrap();
    assert!(t.stored("d/gone.txt").is_none());
    assert_eq!(errno_of(t.resolve("d/gone.txt")), libc::ENOENT);
    // The directory we emptied stays until rmdir (so `rm -r` works).
    assert_eq!(t.ls("d").unwrap(), Vec::<String>::new());
    t.fs.rmdir(ROOT_INO, &os("d")).unwrap();
    assert_eq!(errno_of(t.resolve("d")), libc::ENOENT);
}

#[test]
fn unlink_of_a_cached_file_is_exactly_one_delete() {
    let store = new_store(1000);
    seed(&store, "x", b"1");
    let t = mount(store);
    t.reset();
    t.rm("x").unwrap();
    assert_eq!(t.stats(), snap(0, 0, 0, 1));
    assert_eq!(t.ls("").unwrap(), Vec::<String>::new());
    assert_eq!(t.stats(), snap(0, 0, 0, 1));
}

#[test]
fn rename_of_a_cached_file_is_one_put_and_one_delete() {
    let store = new_store(1000);
    seed(&store, "a.txt", b"content");
    let t = mount(store);
    assert_eq!(t.cat("a.txt").unwrap(), b"content");
    let ino = t.resolve("a.txt").unwrap().ino;
    t.reset();
    t.mv("a.txt", "sub.png").unwrap();
    assert_eq!(t.stats(), snap(0, 0, 1, 1));
    assert!(t.stored("a.txt").is_none());
    assert_eq!(t.stored("sub.png").unwrap(), b"content");
    assert_eq!(
        Store::get(&t.store, "sub.png").unwrap().content_type,
        "image/png"
    );
    // Same inode under the new name, served from the cache.
    assert_eq!(t.resolve("sub.png").unwrap().ino, ino);
    assert_eq!(t.cat("sub.png").unwrap(), b"content");
    assert_eq!(t.ls("").unwrap(), vec!["sub.png"]);
    assert_eq!(t.stats(), snap(0, 0, 1, 1));
}

#[test]
fn rename_replaces_the_target() {
    let store = new_store(1000);
    seed(&store, "a", b"new");
    seed(&store, "b", b"old");
    let t = mount(store);
    t.mv("a", "b").unwrap();
    assert_eq!(t.stored("b").unwrap(), b"new");
    assert!(t.stored("a").is_none());
    assert_eq!(t.ls("").unwrap(), vec!["b"]);
    assert_eq!(t.cat("b").unwrap(), b"new");
}

#[test]
fn rename_keeps_both_names_when_the_delete_fails() {
    let store = new_store(1000);
    seed(&store, "a", b"data");
    let t = mount(store);
    *t.faults.delete.lock() = Some(ApiError::Status {
        status: 503,
        kind: None,
        description: None,
    });
    assert_eq!(errno_of(t.mv("a", "b")), libc::EIO);
    assert_eq!(t.stored("a").unwrap(), b"data");
    assert_eq!(t.stored("b").unwrap(), b"data");
    assert_eq!(t.ls("").unwrap(), vec!["a", "b"]);
}

#[test]
fn rename_of_a_directory_moves_every_media_under_it() {
    let store = new_store(1000);
    seed(&store, "dir/a", b"1");
    seed(&store, "dir/sub/b", b"22");
    seed(&store, "other", b"3");
    let t = mount(store);
    let dir_ino = t.resolve("dir").unwrap().ino;
    t.fs.mkdir(dir_ino, &os("emptysub"), 0o755, 0).unwrap();
    t.reset();
    t.mv("dir", "moved").unwrap();
    assert_eq!(t.stats(), snap(0, 2, 2, 2));
    assert_eq!(t.store.names(), vec!["moved/a", "moved/sub/b", "other"]);
    assert_eq!(t.resolve("moved").unwrap().ino, dir_ino);
    assert_eq!(t.ls("moved").unwrap(), vec!["a", "emptysub", "sub"]);
    assert_eq!(t.cat("moved/sub/b").unwrap(), b"22");
    assert_eq!(errno_of(t.resolve("dir")), libc::ENOENT);
    // Onto a non-empty directory: refused.
    t.fs.mkdir(ROOT_INO, &os("full"), 0o755, 0).unwrap();
    t.write_file("full/x", b"x").unwrap();
    assert_eq!(errno_of(t.mv("moved", "full")), libc::ENOTEMPTY);
}

#[test]
fn rename_of_a_file_still_being_written_uploads_under_the_new_name() {
    let t = mount(new_store(1000));
    let (_, o) = t.create(ROOT_INO, ".tmp123", libc::O_WRONLY | libc::O_CREAT);
    t.fs.write(o.fh, 0, b"abc").unwrap();
    t.reset();
    t.mv(".tmp123", "final.txt").unwrap();
    assert_eq!(
        t.stats(),
        snap(0, 0, 0, 0),
        "never uploaded: nothing to copy"
    );
    t.fs.flush(o.fh).unwrap();
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.store.names(), vec!["final.txt"]);
    assert_eq!(t.stats(), snap(0, 0, 1, 0));
}

// ----- writes ----------------------------------------------------------------------------

#[test]
fn random_writes_append_and_truncate_with_read_back() {
    let store = new_store(1000);
    seed(&store, "f", b"0123456789");
    let t = mount(store);
    let ino = t.resolve("f").unwrap().ino;
    // Random write into the existing content (dd conv=notrunc).
    let o = t.fs.open(ino, libc::O_RDWR, 0).unwrap();
    t.fs.write(o.fh, 2, b"ab").unwrap();
    assert_eq!(t.read_all(o.fh).unwrap(), b"01ab456789", "read your writes");
    assert_eq!(t.fs.getattr(ino).unwrap().size, 10);
    // Write past the end leaves a zero-filled gap.
    t.fs.write(o.fh, 12, b"Z").unwrap();
    assert_eq!(t.fs.getattr(ino).unwrap().size, 13);
    // ftruncate shrink and grow.
    t.fs.setattr(
        ino,
        SetAttr {
            size: Some(4),
            ..Default::default()
        },
    )
    .unwrap();
    t.fs.setattr(
        ino,
        SetAttr {
            size: Some(6),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(t.read_all(o.fh).unwrap(), b"01ab\0\0");
    t.fs.flush(o.fh).unwrap();
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stored("f").unwrap(), b"01ab\0\0");
    // O_APPEND writes at the end whatever the offset.
    let o = t.fs.open(ino, libc::O_WRONLY | libc::O_APPEND, 0).unwrap();
    t.fs.write(o.fh, 0, b"++").unwrap();
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stored("f").unwrap(), b"01ab\0\0++");
    // O_TRUNC empties it without downloading.
    t.reset();
    let o = t.fs.open(ino, libc::O_WRONLY | libc::O_TRUNC, 0).unwrap();
    t.fs.write(o.fh, 0, b"new").unwrap();
    t.fs.flush(o.fh).unwrap();
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stored("f").unwrap(), b"new");
    assert_eq!(t.stats(), snap(0, 0, 1, 0));
    assert_eq!(t.cat("f").unwrap(), b"new");
    assert_eq!(t.stats(), snap(0, 0, 1, 0));
}

#[test]
fn truncate_without_an_open_file_uploads_at_once() {
    let store = new_store(1000);
    seed(&store, "t", b"abcdef");
    let t = mount(store);
    let ino = t.resolve("t").unwrap().ino;
    t.reset();
    let a =
        t.fs.setattr(
            ino,
            SetAttr {
                size: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.size, 3);
    assert_eq!(t.stored("t").unwrap(), b"abc");
    assert_eq!(t.stats(), snap(0, 1, 1, 0));
    t.fs.setattr(
        ino,
        SetAttr {
            size: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(t.stored("t").unwrap(), b"");
    assert_eq!(t.stats(), snap(0, 1, 2, 0));
    // Same size: nothing to do.
    t.fs.setattr(
        ino,
        SetAttr {
            size: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(t.stats(), snap(0, 1, 2, 0));
}

#[test]
fn an_o_trunc_sent_apart_from_its_open_changes_the_shared_buffer() {
    // Without atomic O_TRUNC the kernel opens, then sends setattr(size=0) without a handle.
    let store = new_store(1000);
    seed(&store, "s", b"old content");
    let t = mount(store);
    let ino = t.resolve("s").unwrap().ino;
    t.reset();
    let o = t.fs.open(ino, libc::O_WRONLY, 0).unwrap();
    t.fs.setattr(
        ino,
        SetAttr {
            size: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    t.fs.write(o.fh, 0, b"new").unwrap();
    t.fs.flush(o.fh).unwrap();
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stored("s").unwrap(), b"new");
    assert_eq!(t.stats(), snap(0, 0, 1, 0));
}

#[test]
fn efbig_at_the_write_or_truncate_that_crosses_the_limit() {
    let t = mount_with(new_store(1000), |o| o.max_size = 100);
    let (_, o) = t.create(ROOT_INO, "big", libc::O_WRONLY | libc::O_CREAT);
    t.fs.write(o.fh, 0, &[1u8; 60]).unwrap();
    let ino = t.resolve("big").unwrap().ino;
    assert_eq!(
        errno_of(t.fs.setattr(
            ino,
            SetAttr {
                size: Some(101),
                ..Default::default()
            }
        )),
        libc::EFBIG
    );
    // A refused truncate changes nothing: the file is still whole and uploads.
    t.fs.write(o.fh, 60, &[1u8; 40]).unwrap();
    t.fs.flush(o.fh).unwrap();
    assert_eq!(t.stored("big").unwrap().len(), 100);
    // A refused write leaves what was written before it incomplete: close fails with EFBIG and
    // the server keeps the media it had.
    assert_eq!(errno_of(t.fs.write(o.fh, 100, &[2u8; 1])), libc::EFBIG);
    t.fs.write(o.fh, 0, &[3u8; 10]).unwrap();
    assert_eq!(errno_of(t.fs.flush(o.fh)), libc::EFBIG);
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stored("big").unwrap(), vec![1u8; 100]);
}

#[test]
fn an_oversize_copy_stores_nothing_and_the_new_name_disappears() {
    let t = mount(new_store(1000));
    let big = vec![7u8; MAX_MEDIA_SIZE as usize + 1];
    assert_eq!(errno_of(t.write_file("big.bin", &big)), libc::EFBIG);
    assert_eq!(t.stored("big.bin"), None);
    assert_eq!(errno_of(t.resolve("big.bin")), libc::ENOENT);
    assert_eq!(t.stats().put, 0);
}

#[test]
fn the_default_limit_is_bandwidths() {
    let t = mount(new_store(1000));
    let (_, o) = t.create(ROOT_INO, "max", libc::O_WRONLY | libc::O_CREAT);
    let limit = MAX_MEDIA_SIZE;
    t.fs.write(o.fh, limit - 1, b"x").unwrap();
    assert_eq!(errno_of(t.fs.write(o.fh, limit, b"x")), libc::EFBIG);
    // Truncating back under the limit makes the file whole again.
    let ino = t.resolve("max").unwrap().ino;
    t.fs.setattr(
        ino,
        SetAttr {
            size: Some(limit),
            ..Default::default()
        },
    )
    .unwrap();
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stored("max").unwrap().len() as u64, limit);
}

#[test]
fn a_failed_upload_fails_close_and_saves_the_bytes() {
    let t = mount(new_store(1000));
    t.fs.set_mountpoint(Path::new("/mnt/media"));
    *t.faults.put.lock() = Some(ApiError::Status {
        status: 503,
        kind: None,
        description: Some("try later".into()),
    });
    let ino = t.fs.mkdir(ROOT_INO, &os("dir"), 0o755, 0).unwrap().ino;
    let (_, o) = t.create(ino, "x%y.txt", libc::O_WRONLY | libc::O_CREAT);
    t.fs.write(o.fh, 0, b"precious").unwrap();
    assert_eq!(errno_of(t.fs.flush(o.fh)), libc::EIO);
    let saved = t.tmp.path().join("recovery").join("dir%2Fx%25y.txt");
    assert_eq!(std::fs::read(&saved).unwrap(), b"precious");
    // Saved: the last close does not try again.
    t.fs.release(o.fh).unwrap();
    assert!(t.store.is_empty());
    // Never reached the server: it is not shown.
    assert_eq!(t.ls("dir").unwrap(), Vec::<String>::new());
}

#[test]
fn upload_errors_map_to_the_error_table() {
    let t = mount(new_store(1000));
    for (e, errno) in [
        (ApiError::Unauthorized("x".into()), libc::EACCES),
        (ApiError::Forbidden("x".into()), libc::EACCES),
        (ApiError::TooLarge { size: 9, limit: 8 }, libc::EFBIG),
        (ApiError::UnsupportedType("a/b".into()), libc::EINVAL),
        (ApiError::Transport("reset".into()), libc::EIO),
    ] {
        *t.faults.put.lock() = Some(e);
        assert_eq!(errno_of(t.write_file("f", b"1")), errno);
    }
}

#[test]
fn release_uploads_what_is_still_dirty() {
    let t = mount(new_store(1000));
    let (_, o) = t.create(ROOT_INO, "r", libc::O_WRONLY | libc::O_CREAT);
    t.fs.write(o.fh, 0, b"late").unwrap();
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stored("r").unwrap(), b"late");
}

#[test]
fn flush_all_uploads_every_dirty_buffer() {
    let t = mount(new_store(1000));
    let mut fhs = Vec::new();
    for name in ["a", "b"] {
        let (_, o) = t.create(ROOT_INO, name, libc::O_WRONLY | libc::O_CREAT);
        t.fs.write(o.fh, 0, name.as_bytes()).unwrap();
        fhs.push(o.fh);
    }
    t.reset();
    t.fs.flush_all().unwrap();
    assert_eq!(t.stats(), snap(0, 0, 2, 0));
    assert_eq!(t.stored("a").unwrap(), b"a");
    for fh in fhs {
        t.fs.release(fh).unwrap();
    }
    assert_eq!(t.stats(), snap(0, 0, 2, 0));
}

#[test]
fn writes_to_a_removed_open_file_go_nowhere() {
    let t = mount(new_store(1000));
    let (_, o) = t.create(ROOT_INO, "tmp", libc::O_WRONLY | libc::O_CREAT);
    t.fs.write(o.fh, 0, b"scratch").unwrap();
    t.rm("tmp").unwrap();
    t.fs.write(o.fh, 7, b"more").unwrap();
    t.fs.flush(o.fh).unwrap();
    t.fs.release(o.fh).unwrap();
    assert!(t.store.is_empty());
}

// ----- names, directories, freshness ---------------------------------------------------------

#[test]
fn implicit_directories_and_stable_inodes_and_times() {
    let store = new_store(2);
    seed(&store, "msg1/0/photo.jpg", b"jpg");
    seed(&store, "msg1/1/clip.mp4", b"mp4mp4");
    seed(&store, "top.txt", b"t");
    let t = mount_ttl(store, Duration::from_millis(50));
    assert_eq!(t.ls("").unwrap(), vec!["msg1", "top.txt"]);
    assert_eq!(t.ls("msg1").unwrap(), vec!["0", "1"]);
    let a = t.resolve("msg1/1/clip.mp4").unwrap();
    assert_eq!((a.kind, a.size, a.perm), (Kind::File, 6, 0o644));
    assert_eq!((a.uid, a.gid), (1234, 5678));
    let d = t.resolve("msg1/0").unwrap();
    assert_eq!((d.kind, d.perm), (Kind::Dir, 0o755));
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(t.ls("msg1/1").unwrap(), vec!["clip.mp4"]);
    let b = t.resolve("msg1/1/clip.mp4").unwrap();
    assert_eq!(b.ino, a.ino, "inodes are stable");
    assert_eq!(b.mtime, a.mtime, "timestamps are stable across listings");
    assert_eq!(t.resolve("msg1/0").unwrap().ino, d.ino);
}

#[test]
fn changes_made_elsewhere_show_after_the_ttl() {
    let store = new_store(1000);
    seed(&store, "keep", b"1");
    seed(&store, "gone", b"1");
    seed(&store, "grows", b"1");
    let t = mount_ttl(store.clone(), Duration::from_millis(200));
    store.delete("gone");
    seed(&store, "grows", b"12345");
    seed(&store, "new/inside", b"n");
    assert_eq!(t.ls("").unwrap(), vec!["gone", "grows", "keep"]);
    assert_eq!(t.resolve("grows").unwrap().size, 1);
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(t.ls("").unwrap(), vec!["grows", "keep", "new"]);
    assert_eq!(t.resolve("grows").unwrap().size, 5);
    assert_eq!(errno_of(t.resolve("gone")), libc::ENOENT);
    assert_eq!(t.cat("grows").unwrap(), b"12345");
}

#[test]
fn a_stale_lookup_on_a_small_account_refreshes_with_one_list() {
    let store = new_store(1000);
    seed(&store, "f", b"1");
    let t = mount_ttl(store.clone(), Duration::from_millis(50));
    seed(&store, "f", b"22");
    std::thread::sleep(Duration::from_millis(80));
    t.reset();
    assert_eq!(t.resolve("f").unwrap().size, 2);
    assert_eq!(t.stats(), snap(1, 0, 0, 0));
}

/// On a large account only a whole listing can revalidate a known name without downloading
/// it: `stat` and `rm` cost nothing more than their own request, and the open checks the bytes.
#[test]
fn a_stale_lookup_on_a_large_account_trusts_the_cache_and_the_read_gets_the_bytes() {
    let store = new_store(2);
    for n in ["a", "b", "c", "d", "e"] {
        seed(&store, n, b"1");
    }
    let t = mount_ttl(store.clone(), Duration::from_millis(50));
    t.ls("").unwrap();
    seed(&store, "a", b"333");
    std::thread::sleep(Duration::from_millis(80));
    t.reset();
    assert_eq!(
        t.resolve("a").unwrap().size,
        1,
        "trusted until the next listing"
    );
    assert_eq!(t.stats(), snap(0, 0, 0, 0), "stat costs nothing");
    assert_eq!(t.cat("a").unwrap(), b"333");
    assert_eq!(t.resolve("a").unwrap().size, 3, "the GET told the size");
    assert_eq!(t.stats(), snap(0, 1, 0, 0));
    // rm after the TTL: one DELETE, no download.
    std::thread::sleep(Duration::from_millis(80));
    t.reset();
    t.rm("b").unwrap();
    assert_eq!(t.stats(), snap(0, 0, 0, 1));
    // Deleted elsewhere: the read's 404 says so, and the name is gone.
    store.delete("c");
    std::thread::sleep(Duration::from_millis(80));
    t.reset();
    assert_eq!(errno_of(t.cat("c")), libc::ENOENT);
    assert_eq!(errno_of(t.resolve("c")), libc::ENOENT);
}

/// A server whose listing repeats a continuation token would make a walk endless: the walk
/// the core itself makes (the production one) ends with an I/O error, and the mount works again
/// once the listing does.
#[test]
fn a_listing_that_repeats_a_token_ends_with_an_error() {
    let store = new_store(2);
    for n in ["a", "b", "c", "d", "e"] {
        seed(&store, n, b"1");
    }
    let t = mount_ttl(store, Duration::ZERO);
    t.faults
        .repeat_tokens
        .store(true, std::sync::atomic::Ordering::SeqCst);
    t.reset();
    assert_eq!(errno_of(t.ls("")), libc::EIO);
    assert_eq!(
        t.stats().list,
        2,
        "the second page repeats the token it was asked with"
    );
    t.faults
        .repeat_tokens
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(t.ls("").unwrap(), vec!["a", "b", "c", "d", "e"]);
}

#[test]
fn a_directory_never_listed_is_found_on_a_large_account() {
    let store = new_store(3);
    for i in 0..10 {
        seed(&store, &format!("a{i}"), b"1");
    }
    seed(&store, "zz/0/photo.png", b"png!");
    let t = mount(store);
    t.reset();
    // `zz` is on the last page: GET zz (404), then the listing until zz shows up.
    assert_eq!(t.cat("zz/0/photo.png").unwrap(), b"png!");
    assert_eq!(t.stats(), snap(3, 2, 0, 0));
    // The listing is now complete: a missing name costs nothing.
    t.reset();
    assert_eq!(errno_of(t.resolve("missing")), libc::ENOENT);
    assert_eq!(t.stats(), snap(0, 0, 0, 0));
}

#[test]
fn names_that_cannot_be_paths_are_skipped() {
    let store = new_store(1000);
    for n in [
        "ok.txt", "a//b", "/lead", "trail/", "x/./y", "x/../y", ".", "..",
    ] {
        seed(&store, n, b"1");
    }
    seed(&store, &"L".repeat(256), b"1");
    let t = mount(store);
    assert_eq!(t.ls("").unwrap(), vec!["ok.txt"]);
}

#[test]
fn a_file_that_is_also_a_prefix_wins() {
    let store = new_store(1000);
    seed(&store, "a", b"file");
    seed(&store, "a/b", b"hidden");
    let t = mount(store);
    assert_eq!(t.ls("").unwrap(), vec!["a"]);
    assert_eq!(t.resolve("a").unwrap().kind, Kind::File);
    assert_eq!(t.cat("a").unwrap(), b"file");
}

#[test]
fn mkdir_and_rmdir() {
    let store = new_store(1000);
    seed(&store, "full/x", b"1");
    let t = mount(store);
    t.reset();
    let a = t.fs.mkdir(ROOT_INO, &os("new"), 0o750, 0o022).unwrap();
    assert_eq!((a.kind, a.perm), (Kind::Dir, 0o750));
    let b = t.fs.mkdir(a.ino, &os("deeper"), 0o777, 0o022).unwrap();
    assert_eq!(b.perm, 0o755);
    assert_eq!(t.ls("").unwrap(), vec!["full", "new"]);
    assert_eq!(
        errno_of(t.fs.mkdir(ROOT_INO, &os("new"), 0o755, 0)),
        libc::EEXIST
    );
    assert_eq!(errno_of(t.fs.rmdir(ROOT_INO, &os("full"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(t.fs.rmdir(ROOT_INO, &os("new"))), libc::ENOTEMPTY);
    t.fs.rmdir(a.ino, &os("deeper")).unwrap();
    t.fs.rmdir(ROOT_INO, &os("new")).unwrap();
    assert_eq!(t.ls("").unwrap(), vec!["full"]);
    assert_eq!(t.stats(), snap(0, 0, 0, 0));
    // A file in a new directory is uploaded under its full name.
    t.fs.mkdir(ROOT_INO, &os("m"), 0o755, 0).unwrap();
    t.write_file("m/f.txt", b"hi").unwrap();
    assert_eq!(t.stored("m/f.txt").unwrap(), b"hi");
}

#[test]
fn rm_r_of_a_directory_made_only_of_media_removes_every_level() {
    // `rm -r a`: unlink a/b/f, rmdir a/b, rmdir a. The rmdir of a/b empties `a`, which must
    // stay for the last rmdir even after a listing (with a zero TTL every step lists).
    let store = new_store(1000);
    seed(&store, "a/b/f", b"1");
    seed(&store, "g", b"2");
    let t = mount_ttl(store, Duration::ZERO);
    t.rm("a/b/f").unwrap();
    let a = t.resolve("a").unwrap().ino;
    t.fs.rmdir(a, &os("b")).unwrap();
    assert_eq!(t.ls("").unwrap(), vec!["a", "g"]);
    assert_eq!(t.ls("a").unwrap(), Vec::<String>::new());
    t.fs.rmdir(ROOT_INO, &os("a")).unwrap();
    assert_eq!(t.ls("").unwrap(), vec!["g"]);
}

#[test]
fn chmod_chown_utimens_are_remembered() {
    let store = new_store(1000);
    seed(&store, "f", b"1");
    let t = mount(store);
    t.reset();
    let ino = t.resolve("f").unwrap().ino;
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    t.fs.setattr(
        ino,
        SetAttr {
            mode: Some(0o100600),
            uid: Some(7),
            gid: Some(8),
            atime: Some(when),
            mtime: Some(when),
            ..Default::default()
        },
    )
    .unwrap();
    let a = t.resolve("f").unwrap();
    assert_eq!(
        (a.perm, a.uid, a.gid, a.mtime, a.atime),
        (0o600, 7, 8, when, when)
    );
    assert_eq!(t.stats(), snap(0, 0, 0, 0));
    t.ls("").unwrap();
    assert_eq!(t.resolve("f").unwrap().mtime, when);
}

#[test]
fn statfs_is_sensible() {
    let store = new_store(1000);
    seed(&store, "a", &[0u8; 5000]);
    seed(&store, "b", &[0u8; 10]);
    let t = mount(store);
    let s = t.fs.statfs();
    assert_eq!(s.files, 2);
    assert_eq!(s.namelen, 255);
    assert_eq!(s.blocks - s.bfree, 2);
    assert!(s.bavail > 1 << 30);
}

#[test]
fn xattrs() {
    let store = new_store(1000);
    Store::put(
        &store,
        "m/pic.jpg",
        Bytes::from_static(b"jpeg"),
        "image/jpeg",
        Some("no-cache"),
    )
    .unwrap();
    let t = mount(store);
    let ino = t.resolve("m/pic.jpg").unwrap().ino;
    let get = |n: &str| t.fs.getxattr(ino, &os(n));
    assert_eq!(
        get(XATTR_URL).unwrap(),
        t.store.media_url("m/pic.jpg").into_bytes()
    );
    t.reset();
    assert_eq!(get(XATTR_CONTENT_TYPE).unwrap(), b"image/jpeg");
    assert_eq!(get(XATTR_CACHE_CONTROL).unwrap(), b"no-cache");
    assert_eq!(t.stats(), snap(0, 1, 0, 0), "the headers come with one GET");
    assert_eq!(t.cat("m/pic.jpg").unwrap(), b"jpeg");
    assert_eq!(t.stats(), snap(0, 1, 0, 0), "whose body is kept");
    let list = t.fs.listxattr(ino).unwrap();
    assert_eq!(
        list,
        b"user.bandwidth.url\0user.bandwidth.content_type\0user.bandwidth.cache_control\0"
    );
    assert_eq!(errno_of(get("user.other")), libc::ENODATA);
    // No labels and no ACLs: "not supported", which ls remembers (it asks once per mount).
    for other in ["security.selinux", "system.posix_acl_access", "trusted.x"] {
        assert_eq!(errno_of(get(other)), libc::ENOTSUP, "{other}");
    }
    // Set, and used at the next upload.
    t.fs.setxattr(ino, &os(XATTR_CONTENT_TYPE), b"image/png")
        .unwrap();
    t.fs.setxattr(ino, &os(XATTR_CACHE_CONTROL), b"max-age=60")
        .unwrap();
    assert_eq!(
        errno_of(t.fs.setxattr(ino, &os("user.other"), b"1")),
        libc::ENOTSUP
    );
    t.write_file("m/pic.jpg", b"png now").unwrap();
    let m = Store::get(&t.store, "m/pic.jpg").unwrap();
    assert_eq!(m.content_type, "image/png");
    assert_eq!(m.cache_control.as_deref(), Some("max-age=60"));
    let dir = t.resolve("m").unwrap().ino;
    assert!(t.fs.listxattr(dir).unwrap().is_empty());
}

/// One rule for the headers: what `getfattr` shows is what an upload sends. A media stored with
/// a type its name does not imply keeps it when it is rewritten or renamed through the mount.
#[test]
fn a_rewrite_and_a_rename_keep_the_stored_headers_that_getxattr_shows() {
    let store = new_store(1000);
    Store::put(
        &store,
        "photo.bin",
        Bytes::from_static(b"jpeg bytes"),
        "image/jpeg",
        Some("max-age=5"),
    )
    .unwrap();
    let t = mount(store);
    let ino = t.resolve("photo.bin").unwrap().ino;
    assert_eq!(t.cat("photo.bin").unwrap(), b"jpeg bytes");
    let ct = |ino| t.fs.getxattr(ino, &os(XATTR_CONTENT_TYPE)).unwrap();
    assert_eq!(ct(ino), b"image/jpeg");
    let o = t.fs.open(ino, libc::O_RDWR, 0).unwrap();
    t.fs.write(o.fh, 0, b"JPEG").unwrap();
    t.fs.flush(o.fh).unwrap();
    t.fs.release(o.fh).unwrap();
    let m = Store::get(&t.store, "photo.bin").unwrap();
    assert_eq!(
        m.content_type, "image/jpeg",
        "a rewrite keeps the stored type"
    );
    assert_eq!(m.cache_control.as_deref(), Some("max-age=5"));
    assert_eq!(ct(ino), b"image/jpeg");
    t.mv("photo.bin", "renamed.dat").unwrap();
    let m = Store::get(&t.store, "renamed.dat").unwrap();
    assert_eq!(
        m.content_type, "image/jpeg",
        "a rename keeps the stored type"
    );
    assert_eq!(ct(t.resolve("renamed.dat").unwrap().ino), b"image/jpeg");
}

#[test]
fn read_only_refuses_every_change() {
    let store = new_store(1000);
    seed(&store, "f", b"1");
    let t = mount_with(store, |o| o.read_only = true);
    let ino = t.resolve("f").unwrap().ino;
    let rofs = libc::EROFS;
    assert_eq!(errno_of(t.fs.open(ino, libc::O_WRONLY, 0)), rofs);
    assert_eq!(
        errno_of(t.fs.open(ino, libc::O_RDONLY | libc::O_TRUNC, 0)),
        rofs
    );
    assert_eq!(
        errno_of(t.fs.create(ROOT_INO, &os("n"), 0o644, 0, libc::O_WRONLY, 0)),
        rofs
    );
    assert_eq!(errno_of(t.fs.mkdir(ROOT_INO, &os("d"), 0o755, 0)), rofs);
    assert_eq!(errno_of(t.rm("f")), rofs);
    assert_eq!(errno_of(t.mv("f", "g")), rofs);
    assert_eq!(errno_of(t.fs.rmdir(ROOT_INO, &os("f"))), rofs);
    assert_eq!(
        errno_of(t.fs.setattr(
            ino,
            SetAttr {
                mode: Some(0o600),
                ..Default::default()
            }
        )),
        rofs
    );
    assert_eq!(
        errno_of(t.fs.setxattr(ino, &os(XATTR_CONTENT_TYPE), b"a/b")),
        rofs
    );
    assert_eq!(t.cat("f").unwrap(), b"1");
    assert_eq!(t.store.names(), vec!["f"]);
}

#[test]
fn long_names_are_enametoolong() {
    let t = mount(new_store(1000));
    let long = "n".repeat(256);
    assert_eq!(
        errno_of(t.fs.lookup(ROOT_INO, &os(&long))),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno_of(t.fs.create(ROOT_INO, &os(&long), 0o644, 0, libc::O_WRONLY, 0)),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno_of(t.fs.mkdir(ROOT_INO, &os(&long), 0o755, 0)),
        libc::ENAMETOOLONG
    );
    let ok = "n".repeat(255);
    t.write_file(&ok, b"1").unwrap();
    // Not UTF-8: cannot be a media name.
    let bad = OsStr::from_bytes(b"\xff\xfe");
    assert_eq!(errno_of(t.fs.lookup(ROOT_INO, bad)), libc::ENOENT);
    assert_eq!(
        errno_of(t.fs.create(ROOT_INO, bad, 0o644, 0, libc::O_WRONLY, 0)),
        libc::EINVAL
    );
}

// ----- errors and concurrency ----------------------------------------------------------------

#[test]
fn bad_credentials_fail_the_mount_with_a_clear_message() {
    let store = new_store(1000);
    let faults = Arc::new(StoreFaults::default());
    *faults.list.lock() = Some(ApiError::Unauthorized("Authentication Failed".into()));
    let api = Arc::new(FaultyStore { store, faults });
    let tmp = tempfile::tempdir().unwrap();
    let e = MediaFs::connect(api, options(Duration::from_secs(1), &tmp))
        .err()
        .unwrap();
    assert_eq!(e.errno(), libc::EACCES);
    assert!(e.to_string().contains("BW_CLIENT_ID"), "{e}");
}

#[test]
fn a_short_or_malformed_body_is_eio() {
    let store = new_store(1000);
    seed(&store, "f", b"abc");
    let t = mount(store);
    *t.faults.get.lock() = Some(ApiError::Malformed("short body: 2 of 3 bytes".into()));
    assert_eq!(errno_of(t.cat("f")), libc::EIO);
    *t.faults.get.lock() = None;
    assert_eq!(t.cat("f").unwrap(), b"abc");
}

#[test]
fn concurrent_readers_share_one_download_and_others_are_not_blocked() {
    let store = new_store(1000);
    seed(&store, "slow", b"slow body");
    seed(&store, "other", b"x");
    let t = Arc::new(mount(store));
    let ino = t.resolve("slow").unwrap().ino;
    t.faults.hold_gets.store(true, Ordering::SeqCst);
    t.reset();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || {
                let o = t.fs.open(ino, libc::O_RDONLY, 0).unwrap();
                let r = t.read_all(o.fh);
                t.fs.release(o.fh).unwrap();
                r
            })
        })
        .collect();
    let t0 = Instant::now();
    while t.faults.gets_started.load(Ordering::SeqCst) == 0 && t0.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    // While the download is stuck, the rest of the file system answers.
    assert_eq!(t.ls("").unwrap(), vec!["other", "slow"]);
    assert_eq!(t.resolve("other").unwrap().size, 1);
    t.write_file("written", b"w").unwrap();
    t.faults.hold_gets.store(false, Ordering::SeqCst);
    for r in readers {
        assert_eq!(r.join().unwrap().unwrap(), b"slow body");
    }
    assert_eq!(t.stats().get, 1);
}

#[test]
fn the_data_cache_is_bounded_by_bytes() {
    let store = new_store(1000);
    for i in 0..10 {
        seed(&store, &format!("f{i}"), &[i as u8; 1000]);
    }
    let t = mount_with(store, |o| o.cache_size = 3000);
    for i in 0..10 {
        assert_eq!(t.cat(&format!("f{i}")).unwrap(), vec![i as u8; 1000]);
    }
    assert!(t.fs.cached_bytes() <= 3000);
    t.reset();
    t.cat("f9").unwrap();
    assert_eq!(t.stats().get, 0, "the most recent stays");
    t.cat("f0").unwrap();
    assert_eq!(t.stats().get, 1, "the oldest was evicted");
}

#[test]
fn a_listing_does_not_undo_a_racing_upload() {
    let store = new_store(1);
    seed(&store, "a", b"1");
    seed(&store, "b", b"1");
    let t = mount_ttl(store.clone(), Duration::from_millis(30));
    std::thread::sleep(Duration::from_millis(40));
    // Start a walk: its first page only.
    let fh = t.fs.opendir(ROOT_INO).unwrap().fh;
    let mut n = 0;
    t.fs.readdir(fh, 0, false, |_| {
        n += 1;
        n >= 3
    })
    .unwrap();
    // Our upload of a name the walk already passed.
    let (_, o) = t.create(ROOT_INO, "0first", libc::O_WRONLY | libc::O_CREAT);
    t.fs.write(o.fh, 0, b"mine").unwrap();
    t.fs.release(o.fh).unwrap();
    let mut offset = 3;
    loop {
        let mut got = 0;
        t.fs.readdir(fh, offset, false, |e| {
            offset = e.offset;
            got += 1;
            false
        })
        .unwrap();
        if got == 0 {
            break;
        }
    }
    t.fs.releasedir(fh);
    assert_eq!(t.cat("0first").unwrap(), b"mine");
}

#[test]
fn media_fs_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<MediaFs>();
}

#[test]
fn concurrent_cold_listings_share_the_pages() {
    let store = new_store(10);
    for i in 0..95 {
        seed(&store, &format!("c{i:03}"), b"1");
    }
    let t = Arc::new(mount_ttl(store, Duration::from_millis(50)));
    t.ls("").unwrap();
    std::thread::sleep(Duration::from_millis(80));
    t.reset();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || t.ls("").unwrap().len())
        })
        .collect();
    for th in threads {
        assert_eq!(th.join().unwrap(), 95);
    }
    // One walk of 10 pages, whatever the interleaving (a second one only if the TTL ran out).
    let lists = t.stats().list;
    assert!(lists == 10 || lists == 20, "{lists}");
}

#[test]
fn a_zero_ttl_always_asks_and_never_loops() {
    let store = new_store(2);
    for n in ["a", "b", "c/d", "e"] {
        seed(&store, n, b"1");
    }
    let t = mount_ttl(store, Duration::ZERO);
    assert_eq!(t.ls("").unwrap(), vec!["a", "b", "c", "e"]);
    assert_eq!(t.ls("c").unwrap(), vec!["d"]);
    assert_eq!(t.cat("c/d").unwrap(), b"1");
    assert_eq!(errno_of(t.resolve("zz")), libc::ENOENT);
    t.write_file("new", b"n").unwrap();
    assert_eq!(t.ls("").unwrap(), vec!["a", "b", "c", "e", "new"]);
}

#[test]
fn directories_emptied_elsewhere_vanish_and_removed_files_have_no_attributes() {
    let store = new_store(1000);
    seed(&store, "d/x", b"1");
    seed(&store, "y", b"1");
    let t = mount_ttl(store.clone(), Duration::from_millis(50));
    let d = t.resolve("d").unwrap().ino;
    let y = t.resolve("y").unwrap().ino;
    store.delete("d/x");
    store.delete("y");
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(t.ls("").unwrap(), Vec::<String>::new());
    assert_eq!(errno_of(t.fs.getattr(y)), libc::ENOENT);
    assert_eq!(errno_of(t.fs.opendir(d)), libc::ENOENT);
}

#[test]
fn a_stale_directory_lookup_asks_again_on_a_small_account() {
    let store = new_store(1000);
    seed(&store, "d/x", b"1");
    seed(&store, "e/x", b"1");
    let t = mount_ttl(store.clone(), Duration::ZERO);
    assert_eq!(t.resolve("d").unwrap().kind, Kind::Dir);
    store.delete("d/x");
    seed(&store, "d", b"now a file");
    store.delete("e/x");
    // The next lookup of each name sees what the server holds: one list request each.
    t.reset();
    assert_eq!(t.resolve("d").unwrap().kind, Kind::File);
    assert_eq!(errno_of(t.resolve("e")), libc::ENOENT);
    assert_eq!(t.stats(), snap(2, 0, 0, 0));
    // So creating a file named like a directory emptied elsewhere works.
    let (attr, o) = t.create(ROOT_INO, "e", libc::O_WRONLY | libc::O_CREAT);
    assert_eq!(attr.kind, Kind::File);
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stored("e").unwrap(), b"");
    // Within the TTL a cached directory costs nothing.
    let store = new_store(1000);
    seed(&store, "d/x", b"1");
    let t = mount(store);
    t.reset();
    assert_eq!(t.resolve("d").unwrap().kind, Kind::Dir);
    assert_eq!(t.stats(), snap(0, 0, 0, 0));
}

#[test]
fn rmdir_of_a_directory_emptied_elsewhere_succeeds_once_the_ttl_is_over() {
    // A large account (several pages): the kernel's lookup of `d` answers from the cache, so
    // rmdir itself must not refuse with ENOTEMPTY on what the cache remembers.
    let store = new_store(2);
    for n in ["a", "b", "c"] {
        seed(&store, n, b"1");
    }
    let t = mount_ttl(store.clone(), Duration::ZERO);
    t.fs.mkdir(ROOT_INO, &os("d"), 0o755, 0).unwrap();
    seed(&store, "d/x", b"1");
    assert_eq!(t.ls("d").unwrap(), vec!["x"]);
    store.delete("d/x");
    t.resolve("d").unwrap();
    t.fs.rmdir(ROOT_INO, &os("d")).unwrap();
    assert_eq!(t.ls("").unwrap(), vec!["a", "b", "c"]);
    // Still refused while it holds something.
    t.fs.mkdir(ROOT_INO, &os("e"), 0o755, 0).unwrap();
    seed(&store, "e/y", b"1");
    assert_eq!(errno_of(t.fs.rmdir(ROOT_INO, &os("e"))), libc::ENOTEMPTY);
}

#[test]
fn a_directory_rename_over_a_directory_emptied_elsewhere_succeeds() {
    // A large account: the cache still holds `f/h`, deleted elsewhere; the rename must not
    // refuse with ENOTEMPTY without asking.
    let store = new_store(2);
    for n in ["a", "b", "s/x"] {
        seed(&store, n, b"1");
    }
    let t = mount_ttl(store.clone(), Duration::ZERO);
    t.fs.mkdir(ROOT_INO, &os("f"), 0o755, 0).unwrap();
    seed(&store, "f/h", b"1");
    assert_eq!(t.ls("f").unwrap(), vec!["h"]);
    store.delete("f/h");
    t.mv("s", "f").unwrap();
    assert_eq!(t.store.names(), vec!["a", "b", "f/x"]);
    assert_eq!(t.ls("f").unwrap(), vec!["x"]);
    // Refused when the target holds something, even a media not listed yet (which a
    // replaced target would have hidden while it stayed on the server).
    t.fs.mkdir(ROOT_INO, &os("g"), 0o755, 0).unwrap();
    seed(&store, "g/y", b"1");
    assert_eq!(errno_of(t.mv("f", "g")), libc::ENOTEMPTY);
    assert_eq!(t.store.names(), vec!["a", "b", "f/x", "g/y"]);
    assert_eq!(t.ls("g").unwrap(), vec!["y"]);
}

#[test]
fn a_directory_rename_that_fails_midway_loses_nothing() {
    let store = new_store(1000);
    seed(&store, "src/a", b"1");
    seed(&store, "src/b", b"2");
    let t = mount(store);
    *t.faults.delete.lock() = Some(ApiError::Transport("reset".into()));
    assert_eq!(errno_of(t.mv("src", "dst")), libc::EIO);
    // The first copy was made, its delete failed: both names exist, on the server and here.
    let names = t.store.names();
    assert!(names.contains(&"src/a".to_string()) && names.contains(&"src/b".to_string()));
    let copies: Vec<&String> = names.iter().filter(|n| n.starts_with("dst/")).collect();
    assert_eq!(copies.len(), 1, "{names:?}");
    let base = &copies[0]["dst/".len()..];
    assert_eq!(
        t.cat(copies[0]).unwrap(),
        t.cat(&format!("src/{base}")).unwrap()
    );
    *t.faults.delete.lock() = None;
    t.mv("src", "dst2").unwrap();
    assert_eq!(t.ls("dst2").unwrap(), vec!["a", "b"]);
}

#[test]
fn a_file_replaced_by_a_directory_elsewhere_shows_as_the_directory() {
    // The listing that shows `d/x` does not show `d`: the cached file `d` must not hide it.
    let store = new_store(1000);
    seed(&store, "d", b"1");
    let t = mount_ttl(store.clone(), Duration::ZERO);
    assert_eq!(t.resolve("d").unwrap().kind, Kind::File);
    store.delete("d");
    seed(&store, "d/x", b"2");
    assert_eq!(t.ls("").unwrap(), vec!["d"]);
    assert_eq!(t.resolve("d").unwrap().kind, Kind::Dir);
    assert_eq!(t.cat("d/x").unwrap(), b"2");
    // While both exist the file wins, whatever was cached before.
    seed(&store, "d", b"3");
    assert_eq!(t.ls("").unwrap(), vec!["d"]);
    assert_eq!(t.resolve("d").unwrap().kind, Kind::File);
    store.delete("d/x");
    assert_eq!(t.cat("d").unwrap(), b"3");
}

#[test]
fn a_paused_walk_older_than_the_ttl_is_not_joined() {
    // A lookup that finds `d` as a directory stops its walk there (a large account). A media
    // put afterwards before that point of the listing must show in a later `ls`: the paused walk
    // started before the TTL ran out, so its pages are too old to be continued by anyone else.
    let store = new_store(1);
    for n in ["a", "d/x", "z"] {
        seed(&store, n, b"1");
    }
    let t = mount_ttl(store.clone(), Duration::ZERO);
    seed(&store, "e/y", b"1"); // unknown to the cache: its lookup walks until it shows up
    assert_eq!(t.resolve("e").unwrap().kind, Kind::Dir);
    seed(&store, "c", b"1");
    assert_eq!(t.ls("").unwrap(), vec!["a", "c", "d", "e", "z"]);
    seed(&store, "b", b"1");
    assert_eq!(t.resolve("b").unwrap().kind, Kind::File);
    t.reset();
    assert_eq!(errno_of(t.resolve("nope")), libc::ENOENT);
    assert_eq!(t.stats().list, 6, "a fresh walk: one page per media");
}

// ----- freeing removed nodes --------------------------------------------------------------

/// Media that vanish from the account (retention) are freed at the next listing, unless the
/// kernel still holds them; those go with the kernel's forget.
#[test]
fn vanished_media_are_freed_once_the_kernel_no_longer_names_them() {
    let store = new_store(100);
    for i in 0..300 {
        seed(&store, &format!("m{i:03}"), b"x");
    }
    let t = mount_ttl(store.clone(), Duration::from_millis(50));
    assert_eq!(t.ls("").unwrap().len(), 300);
    let base = t.fs.node_count();
    assert_eq!(base, 301, "the root and 300 files");
    let held = t.resolve("m007").unwrap().ino;
    t.fs.entry_handed(held); // the kernel got it in a lookup reply
    for i in 0..300 {
        store.delete(&format!("m{i:03}"));
    }
    std::thread::sleep(Duration::from_millis(60));
    assert!(t.ls("").unwrap().is_empty());
    assert_eq!(
        t.fs.node_count(),
        2,
        "the root and the node the kernel still holds"
    );
    t.fs.forget(held, 1);
    assert_eq!(t.fs.node_count(), 1);
    assert_eq!(errno_of(t.fs.getattr(held)), libc::ENOENT);
}

/// An open handle keeps a removed file's node (fstat, reads) until it is closed.
#[test]
fn an_open_handle_keeps_a_removed_node_until_it_is_closed() {
    let store = new_store(1000);
    seed(&store, "a", b"hello");
    let t = mount(store);
    let ino = t.resolve("a").unwrap().ino;
    let o = t.fs.open(ino, libc::O_RDONLY, 0).unwrap();
    t.rm("a").unwrap();
    assert_eq!(t.fs.getattr(ino).unwrap().nlink, 0);
    assert_eq!(&t.fs.read(o.fh, 0, 10).unwrap()[..], b"hello");
    t.fs.release(o.fh).unwrap();
    assert_eq!(errno_of(t.fs.getattr(ino)), libc::ENOENT);
    assert_eq!(t.fs.node_count(), 1);
}

/// readdirplus hands the kernel a reference to each entry but `.` and `..`; readdir none.
#[test]
fn readdirplus_entries_are_references_the_kernel_forgets() {
    let store = new_store(1000);
    for n in ["d/x", "y"] {
        seed(&store, n, b"1");
    }
    let t = mount_ttl(store.clone(), Duration::from_millis(50));
    let fh = t.fs.opendir(ROOT_INO).unwrap().fh;
    let mut inos = Vec::new();
    t.fs.readdir(fh, 0, true, |e| {
        inos.push((e.name.to_string(), e.ino));
        false
    })
    .unwrap();
    t.fs.releasedir(fh);
    let names: Vec<&str> = inos.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [".", "..", "d", "y"]);
    store.delete("d/x");
    store.delete("y");
    std::thread::sleep(Duration::from_millis(60));
    assert!(t.ls("").unwrap().is_empty());
    assert_eq!(
        t.fs.node_count(),
        3,
        "root, d and y are still named by the kernel"
    );
    for (_, ino) in &inos[2..] {
        t.fs.forget(*ino, 1);
    }
    assert_eq!(t.fs.node_count(), 1);
    t.fs.forget(ROOT_INO, 1); // never freed
    assert!(t.fs.getattr(ROOT_INO).is_ok());
}
