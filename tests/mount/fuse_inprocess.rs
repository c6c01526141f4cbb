//! The core mounted for real through `fuse::mount`, over an in-process emulator store, exercised
//! with `std::fs` and real tools. Every mount is unmounted by a guard (lazily and with the FUSE
//! connection aborted if a clean unmount does not finish), and every operation runs under a
//! timeout so a hang fails the test instead of hanging it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::common::{sh_ok, sh_outcome, stored_in, timed, LastResort, OP_TIMEOUT};
use bwmediafs::api::{ApiError, MediaApi};
use bwmediafs::cli::mountpoint;
use bwmediafs::emulator::faulty_store::{FaultyStore, StoreFaults};
use bwmediafs::emulator::store::{StatsSnapshot, Store, StoreConfig};
use bwmediafs::fs::{FsOptions, MediaFs};
use bwmediafs::fuse::{mount, MountOptions, Mounted};
use bytes::Bytes;

/// A mount over a store; unmounts in Drop whatever happens.
struct Mnt {
    store: Arc<Store>,
    fs: Arc<MediaFs>,
    faults: Arc<StoreFaults>,
    mounted: Option<Mounted>,
    path: PathBuf,
    tmp: tempfile::TempDir,
    /// Dropped after `Drop` has unmounted: it detaches and aborts what is still mounted.
    _last_resort: LastResort,
}

fn store_with(page_size: usize, media: &[(&str, &[u8])]) -> Arc<Store> {
    let store = Arc::new(Store::new(StoreConfig {
        page_size,
        ..StoreConfig::default()
    }));
    for (name, body) in media {
        let ct = bwmediafs::api::content_type_for(name);
        Store::put(&store, name, Bytes::copy_from_slice(body), &ct, None).unwrap();
    }
    store
}

fn setup(store: Arc<Store>, configure: impl FnOnce(&mut FsOptions, &mut MountOptions)) -> Mnt {
    let _ = env_logger::builder().is_test(true).try_init();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("mnt");
    std::fs::create_dir(&path).unwrap();
    let mut opts = FsOptions {
        metadata_ttl: Duration::from_secs(60),
        recovery_dir: tmp.path().join("recovery"),
        ..FsOptions::default()
    };
    let mut mopts = MountOptions {
        fsname: "bwmedia-test".into(),
        ..MountOptions::default()
    };
    configure(&mut opts, &mut mopts);
    let faults = Arc::new(StoreFaults::default());
    let api = Arc::new(FaultyStore {
        store: store.clone(),
        faults: faults.clone(),
    });
    let fs = MediaFs::connect(api, opts).unwrap();
    let p = path.clone();
    let core = fs.clone();
    let mounted = timed("mount", move || mount(core, &p, &mopts)).unwrap();
    Mnt {
        store,
        fs,
        faults,
        mounted: Some(mounted),
        _last_resort: LastResort::new(&path),
        path,
        tmp,
    }
}

impl Drop for Mnt {
    fn drop(&mut self) {
        // Handed to the test, or unmounted here; what is left is the last resort's.
        let Some(mounted) = self.mounted.take() else {
            return;
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(mounted.unmount());
        });
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(())) => {}
            other => eprintln!("clean unmount failed ({other:?})"),
        }
    }
}

impl Mnt {
    fn p(&self, rel: &str) -> String {
        self.path.join(rel).display().to_string()
    }
    fn t(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }
    fn stats(&self) -> StatsSnapshot {
        self.store.stats.snapshot()
    }
    fn stored(&self, name: &str) -> Option<Vec<u8>> {
        stored_in(&self.store, name)
    }
}

fn diff(a: StatsSnapshot, b: StatsSnapshot) -> (u64, u64, u64, u64) {
    (
        b.list - a.list,
        b.get - a.get,
        b.put - a.put,
        b.delete - a.delete,
    )
}

fn mounted_here(path: &Path) -> bool {
    mountpoint::mounted_type(path).is_some()
}

// ----- tests -----------------------------------------------------------------------------------

#[test]
fn reading_tools_see_files_and_directories() {
    let m = setup(
        store_with(
            1000,
            &[
                ("a.txt", b"hello"),
                ("msg/0/photo.png", b"\x89PNG fake"),
                ("msg/1/clip.mp4", b"mp4mp4mp4"),
            ],
        ),
        |_, _| {},
    );
    assert!(mounted_here(&m.path));
    let ls = sh_ok(&format!("ls -l {}", m.p("")));
    assert!(ls.contains("a.txt") && ls.contains("msg"), "{ls}");
    assert!(
        ls.lines()
            .any(|l| l.contains(" 5 ") && l.ends_with("a.txt")),
        "{ls}"
    );
    assert_eq!(sh_ok(&format!("cat {}", m.p("a.txt"))), "hello");
    sh_ok(&format!(
        "cp {} {}",
        m.p("msg/0/photo.png"),
        m.t("out.png").display()
    ));
    assert_eq!(std::fs::read(m.t("out.png")).unwrap(), b"\x89PNG fake");
    let find = sh_ok(&format!("cd {} && find . -type f | sort", m.p("")));
    assert_eq!(find, "./a.txt\n./msg/0/photo.png\n./msg/1/clip.mp4\n");
    assert_eq!(
        sh_ok(&format!("stat -c %s {}", m.p("msg/1/clip.mp4"))),
        "9\n"
    );
    assert_eq!(
        sh_ok(&format!("stat -c %F {}", m.p("msg/1"))),
        "directory\n"
    );
    let df = sh_ok(&format!("df {}", m.p("")));
    assert!(df.contains("bwmedia-test"), "{df}");
    assert_eq!(sh_ok(&format!("stat -f -c %l {}", m.p(""))), "255\n");
    let (success, _, err) = sh_outcome(&format!("cat {}", m.p("nope")));
    assert!(!success && err.contains("No such file"), "{err}");
}

#[test]
fn the_round_trip_budget_holds_through_the_kernel() {
    let names: Vec<String> = (0..1500).map(|i| format!("f{i:05}.txt")).collect();
    let media: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"data"[..])).collect();
    let m = setup(store_with(1000, &media), |_, _| {});
    assert_eq!(
        diff(StatsSnapshot::default(), m.stats()),
        (1, 0, 0, 0),
        "mount"
    );
    // ls -l of 1500 media: ceil(1500/1000) = 2 pages in all (the mount's one included).
    let out = sh_ok(&format!("ls -l {} | wc -l", m.p("")));
    assert_eq!(out.trim(), "1501");
    assert_eq!(
        diff(StatsSnapshot::default(), m.stats()),
        (2, 0, 0, 0),
        "ls -l"
    );
    let s = m.stats();
    sh_ok(&format!("ls -l {} > /dev/null", m.p("")));
    assert_eq!(diff(s, m.stats()), (0, 0, 0, 0), "ls -l again");
    let s = m.stats();
    assert_eq!(sh_ok(&format!("cat {}", m.p("f00042.txt"))), "data");
    assert_eq!(diff(s, m.stats()), (0, 1, 0, 0), "cat after ls");
    let s = m.stats();
    assert_eq!(sh_ok(&format!("cat {}", m.p("f00042.txt"))), "data");
    assert_eq!(diff(s, m.stats()), (0, 0, 0, 0), "cat again");
    std::fs::write(m.t("new.txt"), b"new content").unwrap();
    let s = m.stats();
    sh_ok(&format!("cp {} {}", m.t("new.txt").display(), m.p("")));
    let (l, g, p, d) = diff(s, m.stats());
    assert!(p == 1 && l + g <= 1 && d == 0, "cp new: {:?}", (l, g, p, d));
    assert_eq!(m.stored("new.txt").unwrap(), b"new content");
    let s = m.stats();
    sh_ok(&format!("rm {}", m.p("new.txt")));
    assert_eq!(diff(s, m.stats()), (0, 0, 0, 1), "rm");
    let s = m.stats();
    sh_ok(&format!("mv {} {}", m.p("f00042.txt"), m.p("moved.txt")));
    assert_eq!(diff(s, m.stats()), (0, 0, 1, 1), "mv of a cached file");
    assert_eq!(m.stored("moved.txt").unwrap(), b"data");
    assert!(m.stored("f00042.txt").is_none());
}

#[test]
fn writing_tools_work() {
    let m = setup(store_with(1000, &[("f", b"abcdefgh")]), |_, _| {});
    // Random write into an existing file.
    sh_ok(&format!(
        "dd if=/dev/zero of={} bs=1 count=3 seek=2 conv=notrunc status=none",
        m.p("f")
    ));
    assert_eq!(m.stored("f").unwrap(), b"ab\0\0\0fgh");
    sh_ok(&format!("truncate -s 4 {}", m.p("f")));
    assert_eq!(m.stored("f").unwrap(), b"ab\0\0");
    sh_ok(&format!("truncate -s 6 {}", m.p("f")));
    assert_eq!(m.stored("f").unwrap(), b"ab\0\0\0\0");
    sh_ok(&format!("printf 'line1\\n' > {}", m.p("f")));
    sh_ok(&format!("printf 'line2\\n' >> {}", m.p("f")));
    assert_eq!(m.stored("f").unwrap(), b"line1\nline2\n");
    assert_eq!(sh_ok(&format!("cat {}", m.p("f"))), "line1\nline2\n");
    // touch: a new empty media with one PUT; on an existing file only the times change.
    let s = m.stats();
    sh_ok(&format!("touch {}", m.p("empty.txt")));
    assert_eq!(m.stored("empty.txt").unwrap(), b"");
    assert_eq!(diff(s, m.stats()).2, 1);
    let s = m.stats();
    sh_ok(&format!("touch -d '2001-02-03 04:05:06' {}", m.p("f")));
    assert_eq!(diff(s, m.stats()).2, 0);
    assert_eq!(sh_ok(&format!("date -r {} +%Y", m.p("f"))), "2001\n");
    // Read-your-writes on O_RDWR, before the upload.
    let p = m.path.join("f");
    timed("O_RDWR", move || {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(b"LINE").unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "LINE1\nline2\n");
    });
    assert_eq!(m.stored("f").unwrap(), b"LINE1\nline2\n");
    // Over the limit: EFBIG at the write that crosses it.
    let (success, _, err) = sh_outcome(&format!(
        "dd if=/dev/zero of={} bs=1M count=5 status=none",
        m.p("big")
    ));
    assert!(!success && err.contains("File too large"), "{err}");
    // O_RDONLY|O_CREAT makes an empty media.
    let p = m.path.join("rocreat");
    timed("O_RDONLY|O_CREAT", move || {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CREAT)
            .open(p)
            .unwrap();
    });
    assert_eq!(m.stored("rocreat").unwrap(), b"");
}

#[test]
fn moving_removing_and_directories() {
    let m = setup(store_with(1000, &[("keep.txt", b"k")]), |_, _| {});
    std::fs::write(m.t("src.txt"), b"payload").unwrap();
    sh_ok(&format!("mkdir -p {}", m.p("a/b/c")));
    sh_ok(&format!(
        "cp {} {}",
        m.t("src.txt").display(),
        m.p("a/b/c/")
    ));
    assert_eq!(m.stored("a/b/c/src.txt").unwrap(), b"payload");
    sh_ok(&format!("mv {} {}", m.p("a/b"), m.p("z")));
    assert_eq!(m.store.names(), vec!["keep.txt", "z/c/src.txt"]);
    assert_eq!(sh_ok(&format!("cat {}", m.p("z/c/src.txt"))), "payload");
    // mv onto an existing file replaces it.
    sh_ok(&format!(
        "cp {} {}",
        m.t("src.txt").display(),
        m.p("other.txt")
    ));
    sh_ok(&format!("mv {} {}", m.p("other.txt"), m.p("keep.txt")));
    assert_eq!(m.stored("keep.txt").unwrap(), b"payload");
    assert!(m.stored("other.txt").is_none());
    let (success, _, err) = sh_outcome(&format!("rmdir {}", m.p("z")));
    assert!(!success && err.contains("not empty"), "{err}");
    sh_ok(&format!("rm -r {}", m.p("z")));
    sh_ok(&format!("rmdir {}", m.p("a")));
    assert_eq!(sh_ok(&format!("ls {}", m.p(""))), "keep.txt\n");
    assert_eq!(m.store.names(), vec!["keep.txt"]);
    // A file still open for reading stays readable after rm.
    let p = m.path.join("keep.txt");
    timed("read after rm", move || {
        use std::io::Read;
        let mut f = std::fs::File::open(&p).unwrap();
        let mut first = [0u8; 3];
        f.read_exact(&mut first).unwrap();
        std::fs::remove_file(&p).unwrap();
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).unwrap();
        assert_eq!([&first[..], &rest[..]].concat(), b"payload");
    });
    assert!(m.store.is_empty());
}

#[test]
fn cp_p_rsync_and_tar_preserve_what_they_set() {
    let m = setup(store_with(1000, &[]), |_, _| {});
    let src = m.t("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("one.txt"), b"1").unwrap();
    std::fs::write(src.join("sub/two.png"), b"22").unwrap();
    std::fs::set_permissions(src.join("one.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    sh_ok(&format!(
        "touch -d '2020-01-02 03:04:05' {}/one.txt",
        src.display()
    ));
    sh_ok(&format!(
        "cp -p {}/one.txt {}",
        src.display(),
        m.p("one.txt")
    ));
    assert_eq!(
        sh_ok(&format!("stat -c '%a %Y' {}", m.p("one.txt"))),
        sh_ok(&format!("stat -c '%a %Y' {}/one.txt", src.display()))
    );
    sh_ok(&format!(
        "tar cf - -C {} . | tar xf - -C {}",
        src.display(),
        m.p("")
    ));
    assert_eq!(m.stored("sub/two.png").unwrap(), b"22");
    sh_ok(&format!("rsync -a {}/ {}/", src.display(), m.p("dst")));
    assert_eq!(m.stored("dst/one.txt").unwrap(), b"1");
    assert_eq!(m.stored("dst/sub/two.png").unwrap(), b"22");
    assert_eq!(
        m.store.names(),
        vec!["dst/one.txt", "dst/sub/two.png", "one.txt", "sub/two.png"]
    );
    // Sizes and times were remembered: a second run transfers nothing.
    let s = m.stats();
    let out = sh_ok(&format!("rsync -ai {}/ {}/", src.display(), m.p("dst")));
    assert_eq!(diff(s, m.stats()).2, 0, "second rsync uploaded: {out}");
}

#[test]
fn a_failed_upload_fails_close_and_keeps_the_bytes() {
    let m = setup(store_with(1000, &[]), |_, _| {});
    *m.faults.put.lock() = Some(ApiError::Status {
        status: 503,
        kind: None,
        description: None,
    });
    let p = m.path.join("lost.txt");
    let errno = timed("close", move || {
        use std::io::Write;
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(b"do not lose me").unwrap();
        let fd = f.into_raw_fd();
        // SAFETY: we own fd (taken from the File) and close it once.
        let r = unsafe { libc::close(fd) };
        (r, std::io::Error::last_os_error().raw_os_error())
    });
    assert_eq!(errno, (-1, Some(libc::EIO)));
    let saved = m.tmp.path().join("recovery/lost.txt");
    assert_eq!(std::fs::read(saved).unwrap(), b"do not lose me");
    std::fs::write(m.t("x"), b"x").unwrap();
    let (success, _, _) = sh_outcome(&format!("cp {} {}", m.t("x").display(), m.p("x")));
    assert!(!success, "cp must report the failed upload");
    assert!(m.store.is_empty());
}

#[test]
fn xattrs_through_the_mount() {
    let m = setup(store_with(1000, &[("m/pic.jpg", b"jpeg")]), |_, _| {});
    let url = sh_ok(&format!(
        "getfattr --only-values -n user.bandwidth.url {}",
        m.p("m/pic.jpg")
    ));
    assert_eq!(url, m.store.media_url("m/pic.jpg"));
    let ct = sh_ok(&format!(
        "getfattr --only-values -n user.bandwidth.content_type {}",
        m.p("m/pic.jpg")
    ));
    assert_eq!(ct, "image/jpeg");
    let all = sh_ok(&format!("getfattr -d {}", m.p("m/pic.jpg")));
    assert!(all.contains("user.bandwidth.url="), "{all}");
    sh_ok(&format!(
        "setfattr -n user.bandwidth.cache_control -v no-store {}",
        m.p("m/pic.jpg")
    ));
    sh_ok(&format!("printf new > {}", m.p("m/pic.jpg")));
    let stored = Store::get(&m.store, "m/pic.jpg").unwrap();
    assert_eq!(stored.cache_control.as_deref(), Some("no-store"));
}

#[test]
fn a_read_only_mount_refuses_changes() {
    let m = setup(store_with(1000, &[("r.txt", b"read me")]), |o, mo| {
        o.read_only = true;
        mo.read_only = true;
    });
    assert_eq!(sh_ok(&format!("cat {}", m.p("r.txt"))), "read me");
    let (success, _, err) = sh_outcome(&format!("touch {}", m.p("new")));
    assert!(!success && err.contains("Read-only file system"), "{err}");
    let (success, _, _) = sh_outcome(&format!("rm {}", m.p("r.txt")));
    assert!(!success);
    assert_eq!(m.store.names(), vec!["r.txt"]);
}

#[test]
fn a_slow_download_does_not_block_other_operations() {
    let m = setup(
        store_with(1000, &[("slow.bin", b"slow"), ("fast.txt", b"fast")]),
        |_, _| {},
    );
    m.faults.hold_gets.store(true, Ordering::SeqCst);
    let p = m.path.join("slow.bin");
    let reader = std::thread::spawn(move || std::fs::read(p));
    let t0 = Instant::now();
    while m.faults.gets_started.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < OP_TIMEOUT, "the download never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The download is stuck; everything else answers at once.
    let quick = Instant::now();
    assert_eq!(sh_ok(&format!("ls {}", m.p(""))), "fast.txt\nslow.bin\n");
    sh_ok(&format!("stat {} > /dev/null", m.p("slow.bin")));
    sh_ok(&format!("printf w > {}", m.p("written.txt")));
    assert!(quick.elapsed() < Duration::from_secs(5));
    m.faults.hold_gets.store(false, Ordering::SeqCst);
    let body = timed("the slow read", move || reader.join().unwrap().unwrap());
    assert_eq!(body, b"slow");
}

#[test]
fn unmount_is_clean_and_leaves_nothing_mounted() {
    let mut m = setup(store_with(1000, &[("x", b"1")]), |_, _| {});
    let path = m.path.clone();
    assert!(mounted_here(&path));
    let mounted = m.mounted.take().unwrap();
    timed("unmount", move || mounted.unmount()).unwrap();
    assert!(!mounted_here(&path));
}

#[test]
fn wait_returns_after_an_external_umount() {
    let mut m = setup(store_with(1000, &[]), |_, _| {});
    let mounted = m.mounted.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        mounted.wait();
        let _ = tx.send(());
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(rx.try_recv().is_err(), "wait returned while mounted");
    sh_ok(&format!("umount {}", m.p("")));
    rx.recv_timeout(OP_TIMEOUT)
        .expect("wait did not return after umount");
    assert!(!mounted_here(&m.path));
}

#[test]
fn a_busy_unmount_fails_and_detaches_lazily() {
    let mut m = setup(store_with(1000, &[("held.txt", b"held")]), |_, _| {});
    let p = m.path.join("held.txt");
    let held = timed("open", move || std::fs::File::open(p).unwrap());
    let mounted = m.mounted.take().unwrap();
    let r = timed("busy unmount", move || mounted.unmount());
    assert!(r.is_err(), "unmount of a busy file system must report it");
    assert!(!mounted_here(&m.path), "detached lazily");
    let body = timed("read after detach", move || {
        use std::io::Read;
        let mut held = held;
        let mut s = String::new();
        held.read_to_string(&mut s).unwrap();
        s
    });
    assert_eq!(body, "held");
}

#[test]
fn request_unmount_ends_wait_on_another_thread() {
    let mut m = setup(store_with(1000, &[]), |_, _| {});
    let mounted = Arc::new(m.mounted.take().unwrap());
    let waiter = mounted.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        waiter.wait();
        let _ = tx.send(());
    });
    timed("request_unmount", move || mounted.request_unmount()).unwrap();
    rx.recv_timeout(OP_TIMEOUT).expect("wait did not return");
    assert!(!mounted_here(&m.path));
}

/// Wait up to 10 s for the core to hold `want` nodes, dropping the kernel's unused dentries and
/// inodes (which makes it send FORGETs) meanwhile. Returns what it holds at the end.
fn nodes_after_forgets(m: &Mnt, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = m.fs.node_count();
        if n == want || Instant::now() > deadline {
            return n;
        }
        std::fs::write("/proc/sys/vm/drop_caches", "2").expect("drop caches (needs root)");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The kernel's references and ours balance: once media vanish from the account and the
/// kernel drops its inodes, their nodes are freed, so a mount that runs for weeks (media
/// vanish after 48 hours) does not grow. An open file keeps its node (and its directory's).
#[test]
fn nodes_of_vanished_media_are_freed_when_the_kernel_forgets_them() {
    let names: Vec<String> = (0..300)
        .map(|i| format!("d{}/m{i:03}.txt", i % 3))
        .collect();
    let media: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let m = setup(store_with(100, &media), |o, _| {
        o.metadata_ttl = Duration::from_millis(300)
    });
    let listing = sh_ok(&format!("ls -lR {}", m.p("")));
    assert_eq!(listing.matches(".txt").count(), 300);
    assert_eq!(sh_ok(&format!("cat {}", m.p("d1/m001.txt"))), "x");
    let held = std::fs::File::open(m.path.join("d0/m000.txt")).unwrap();
    assert_eq!(
        m.fs.node_count(),
        304,
        "the root, 3 directories and 300 files"
    );
    for n in &names {
        m.store.delete(n);
    }
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(sh_ok(&format!("ls -A {}", m.p(""))), "");
    assert_eq!(
        nodes_after_forgets(&m, 3),
        3,
        "the root, and the open file with its directory"
    );
    drop(held);
    assert_eq!(nodes_after_forgets(&m, 1), 1, "only the root");
}
