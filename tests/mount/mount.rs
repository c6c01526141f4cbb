//! The filesystem through a real mount: the built `bwmediafs` binary, mounted in the foreground
//! against the emulator on loopback HTTP, used with `std::fs` and real tools. The API's view
//! (the emulator's store) is checked after every action.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::common::*;
use bytes::Bytes;

/// `mv FROM TO` inside the mount, with a timeout; its exit status.
fn mv(m: &Mount, from: &str, to: &str) -> std::process::ExitStatus {
    let (from, to) = (m.path(from), m.path(to));
    timed("mv", move || {
        std::process::Command::new("mv").arg(from).arg(to).status()
    })
    .expect("mv")
}

fn put(m: &Mount, name: &str, body: &[u8]) {
    m.emulator
        .store()
        .put(
            name,
            Bytes::copy_from_slice(body),
            "application/octet-stream",
            None,
        )
        .expect("store put");
}

/// Every regular file under `root` with its size, as `find` sees it.
fn find_files(root: &std::path::Path) -> BTreeMap<String, u64> {
    let out = sh_ok(&format!(
        "cd {} && find . -type f -printf '%P\\t%s\\n'",
        q(root)
    ));
    out.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, s)| (n.to_string(), s.parse().unwrap_or(u64::MAX)))
        .collect()
}

#[test]
fn ls_matches_the_listing_over_several_pages_with_slash_names() {
    let emulator = start_emulator(emulator_config());
    let mut expected = BTreeMap::new();
    for i in 0..2500u64 {
        let name = match i % 3 {
            0 => format!("flat-{i:04}.bin"),
            1 => format!("msg{}/0/part-{i:04}.jpg", i % 40),
            _ => format!("deep/a/b/{i:04}.txt"),
        };
        let len = (i % 17) as usize;
        emulator
            .store()
            .put(&name, Bytes::from(bytes(len, i)), "text/plain", None)
            .unwrap();
        expected.insert(name, len as u64);
    }
    let m = Mount::with(emulator, &[]);
    let seen = timed("find", {
        let mnt = m.mnt.clone();
        move || find_files(&mnt)
    });
    assert_eq!(seen, expected);
    let ls = sh_ok(&format!("ls -l {}", q(&m.path("deep/a/b"))));
    assert_eq!(ls.lines().filter(|l| l.starts_with('-')).count(), 833);
    let top = sh_ok(&format!("ls {}", q(&m.mnt)));
    assert!(top.lines().any(|l| l == "msg0"), "{top}");
}

#[test]
fn reads_return_exactly_the_stored_bytes() {
    let big = bytes(3_000_000, 7);
    let m = Mount::with(
        emulator_with(&[("big.bin", &big), ("in/0/photo.jpg", b"jpeg bytes")]),
        &[],
    );
    let read = timed("read big", {
        let p = m.path("big.bin");
        move || std::fs::read(p).unwrap()
    });
    assert_bytes(Some(&read), &big, "cat big.bin");
    let out = m.dir.path().join("copy.jpg");
    sh_ok(&format!("cp {} {}", q(&m.path("in/0/photo.jpg")), q(&out)));
    assert_eq!(std::fs::read(&out).unwrap(), b"jpeg bytes");
    let md = std::fs::metadata(m.path("big.bin")).unwrap();
    assert_eq!(md.len(), 3_000_000);
    assert!(md.is_file());
}

#[test]
fn shell_tools_write_and_the_api_sees_it() {
    let m = Mount::new();
    let src = m.dir.path().join("src.bin");
    let data = bytes(200_000, 1);
    std::fs::write(&src, &data).unwrap();

    // cp in
    sh_ok(&format!("cp {} {}", q(&src), q(&m.path("copied.bin"))));
    assert_bytes(m.stored("copied.bin").as_deref(), &data, "copied.bin");
    // > and >>
    sh_ok(&format!("echo hello > {}", q(&m.path("note.txt"))));
    sh_ok(&format!("echo world >> {}", q(&m.path("note.txt"))));
    assert_bytes(
        m.stored("note.txt").as_deref(),
        b"hello\nworld\n",
        "note.txt",
    );
    // dd conv=notrunc overwrites in the middle
    sh_ok(&format!(
        "printf XY | dd of={} bs=1 seek=2 conv=notrunc status=none",
        q(&m.path("note.txt"))
    ));
    assert_bytes(
        m.stored("note.txt").as_deref(),
        b"heXYo\nworld\n",
        "note.txt",
    );
    // truncate shrinks and grows
    sh_ok(&format!("truncate -s 3 {}", q(&m.path("note.txt"))));
    assert_bytes(m.stored("note.txt").as_deref(), b"heX", "note.txt");
    sh_ok(&format!("truncate -s 5 {}", q(&m.path("note.txt"))));
    assert_bytes(m.stored("note.txt").as_deref(), b"heX\0\0", "note.txt");
    // touch creates an empty media
    sh_ok(&format!("touch {}", q(&m.path("empty"))));
    assert_bytes(m.stored("empty").as_deref(), b"", "empty");
    // mv onto a new name, then over an existing one
    sh_ok(&format!(
        "mv {} {}",
        q(&m.path("copied.bin")),
        q(&m.path("moved.bin"))
    ));
    assert!(
        m.stored("copied.bin").is_none(),
        "{} should not be stored",
        "copied.bin"
    );
    assert_bytes(m.stored("moved.bin").as_deref(), &data, "moved.bin");
    sh_ok(&format!(
        "mv {} {}",
        q(&m.path("note.txt")),
        q(&m.path("moved.bin"))
    ));
    assert_bytes(m.stored("moved.bin").as_deref(), b"heX\0\0", "moved.bin");
    assert!(
        m.stored("note.txt").is_none(),
        "{} should not be stored",
        "note.txt"
    );
    // mkdir -p, cp into it, rmdir
    sh_ok(&format!("mkdir -p {}", q(&m.path("a/b"))));
    sh_ok(&format!("cp {} {}", q(&src), q(&m.path("a/b/"))));
    assert_bytes(m.stored("a/b/src.bin").as_deref(), &data, "a/b/src.bin");
    sh_ok(&format!("mkdir {}", q(&m.path("a/empty"))));
    sh_ok(&format!("rmdir {}", q(&m.path("a/empty"))));
    let busy = sh(&format!("rmdir {}", q(&m.path("a/b"))));
    assert!(
        !busy.status.success(),
        "rmdir of a non-empty directory succeeded"
    );
    // rm
    sh_ok(&format!("rm {}", q(&m.path("a/b/src.bin"))));
    assert!(
        m.stored("a/b/src.bin").is_none(),
        "{} should not be stored",
        "a/b/src.bin"
    );
    // cp -p keeps the mode and mtime it was given, for the life of the mount
    std::fs::set_permissions(&src, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    sh_ok(&format!("touch -d '2020-01-02 03:04:05' {}", q(&src)));
    sh_ok(&format!("cp -p {} {}", q(&src), q(&m.path("kept.bin"))));
    let md = std::fs::metadata(m.path("kept.bin")).unwrap();
    assert_eq!(md.mode() & 0o777, 0o600);
    assert_eq!(md.mtime(), std::fs::metadata(&src).unwrap().mtime());
    assert_bytes(m.stored("kept.bin").as_deref(), &data, "kept.bin");

    let names = m.emulator.store().names();
    assert_eq!(names, vec!["empty", "kept.bin", "moved.bin"]);
}

#[test]
fn rsync_into_and_out_of_the_mount() {
    let m = Mount::new();
    let tree = m.dir.path().join("tree");
    for (i, rel) in ["a.txt", "sub/b.bin", "sub/deeper/c.png"]
        .iter()
        .enumerate()
    {
        let p = tree.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes(1000 * (i + 1), i as u64)).unwrap();
    }
    sh_ok(&format!("rsync -a {}/ {}/", q(&tree), q(&m.mnt)));
    assert_eq!(
        m.emulator.store().names(),
        vec!["a.txt", "sub/b.bin", "sub/deeper/c.png"]
    );
    assert_bytes(
        m.stored("sub/b.bin").as_deref(),
        &bytes(2000, 1),
        "sub/b.bin",
    );
    let back = m.dir.path().join("back");
    sh_ok(&format!("rsync -a {}/ {}/", q(&m.mnt), q(&back)));
    sh_ok(&format!("diff -r {} {}", q(&tree), q(&back)));
}

#[test]
fn oversize_copy_fails_with_file_too_large_and_stores_nothing() {
    let m = Mount::new();
    let src = m.dir.path().join("big");
    std::fs::write(&src, bytes(4_000_000, 3)).unwrap();
    let out = sh(&format!("cp {} {}", q(&src), q(&m.path("big"))));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("File too large"), "{err}");
    assert!(m.stored("big").is_none(), "{} should not be stored", "big");
    assert!(
        m.log_text().contains("3932160"),
        "the log should state the limit"
    );
}

#[test]
fn an_upload_the_server_refuses_makes_close_fail() {
    let m = Mount::new();
    // The server now takes at most 1000 bytes: a 2000-byte upload is refused with 413.
    let mut config = m.emulator.store().config();
    config.max_size = 1000;
    m.emulator.store().set_config(config);
    let p = m.path("refused.bin");
    let result = timed("write+close", move || {
        use std::io::Write;
        let mut f = std::fs::File::create(&p)?;
        f.write_all(&bytes(2000, 9))?;
        f.sync_all()
    });
    assert!(result.is_err(), "fsync/close of a refused upload succeeded");
    assert!(
        m.stored("refused.bin").is_none(),
        "{} should not be stored",
        "refused.bin"
    );
}

/// What the hint about reusing a name says (Bandwidth: "Reusing filenames may result in the
/// wrong media being sent").
const REUSE_HINT: &str = "may send the wrong media";

#[test]
fn replacing_a_media_hints_once_per_name_that_new_content_wants_a_new_name() {
    let m = Mount::with(
        emulator_with(&[("old.jpg", b"old bytes"), ("saved.txt", b"saved")]),
        &[],
    );
    let mnt = q(&m.mnt);
    // A new name: nothing replaced, no hint.
    sh_ok(&format!("echo one > {mnt}/new.txt"));
    assert!(
        !m.log_text().contains(REUSE_HINT),
        "a first upload hints:\n{}",
        m.log_text()
    );
    // Replaced twice, a media that was on the server before the mount, and one replaced by a
    // rename (as editors save): one hint each.
    sh_ok(&format!(
        "echo two > {mnt}/new.txt && echo three > {mnt}/new.txt && echo x > {mnt}/old.jpg \
         && echo y > {mnt}/saved.tmp && mv {mnt}/saved.tmp {mnt}/saved.txt"
    ));
    assert_eq!(m.stored("old.jpg").as_deref(), Some(&b"x\n"[..]));
    assert_eq!(m.stored("saved.txt").as_deref(), Some(&b"y\n"[..]));
    let log = m.log_text();
    let hints: Vec<&str> = log.lines().filter(|l| l.contains(REUSE_HINT)).collect();
    assert_eq!(hints.len(), 3, "one hint per name:\n{log}");
    for name in ["\"new.txt\"", "\"old.jpg\"", "\"saved.txt\""] {
        assert!(
            hints
                .iter()
                .any(|l| l.contains(name) && l.contains(" INFO ")),
            "no hint at info for {name}:\n{log}"
        );
    }
}

#[test]
fn round_trip_budget_of_common_actions() {
    let emulator = start_emulator(emulator_config());
    for i in 0..10 {
        emulator
            .store()
            .put(
                &format!("f{i}"),
                Bytes::from(bytes(100, i)),
                "text/plain",
                None,
            )
            .unwrap();
    }
    let m = Mount::with(emulator, &["--metadata-ttl", "1h"]);
    // mount: 1 list page (the credential check)
    let s = m.stats();
    assert_eq!((s.list, s.get, s.put, s.delete), (1, 0, 0, 0), "mount");
    m.reset_stats();
    sh_ok(&format!("ls -l {}", q(&m.mnt)));
    let s = m.stats();
    assert_eq!(
        (s.list, s.get, s.put, s.delete),
        (0, 0, 0, 0),
        "ls -l of a listing the mount already has"
    );
    sh_ok(&format!("ls -l {}", q(&m.mnt)));
    assert_eq!(m.stats().list, 0, "ls -l again within the TTL");
    sh_ok(&format!("cat {} >/dev/null", q(&m.path("f3"))));
    let s = m.stats();
    assert_eq!((s.list, s.get), (0, 1), "cat after ls");
    sh_ok(&format!("cat {} >/dev/null", q(&m.path("f3"))));
    assert_eq!(m.stats().get, 1, "cat again");
    m.reset_stats();
    let src = m.dir.path().join("new");
    std::fs::write(&src, b"new media").unwrap();
    sh_ok(&format!("cp {} {}", q(&src), q(&m.path("new"))));
    let s = m.stats();
    assert_eq!(s.put, 1, "cp new: one PUT");
    assert!(
        s.list + s.get <= 1,
        "cp new: at most one lookup request, got {s:?}"
    );
    m.reset_stats();
    sh_ok(&format!("rm {}", q(&m.path("f1"))));
    let s = m.stats();
    assert_eq!((s.list, s.get, s.put, s.delete), (0, 0, 0, 1), "rm");
    m.reset_stats();
    sh_ok(&format!("mv {} {}", q(&m.path("f3"),), q(&m.path("g3"))));
    let s = m.stats();
    assert_eq!(
        (s.list, s.get, s.put, s.delete),
        (0, 0, 1, 1),
        "mv of a cached file"
    );
    assert_bytes(m.stored("g3").as_deref(), &bytes(100, 3), "g3");
}

#[test]
fn a_cold_stat_of_an_unlisted_name_costs_one_get() {
    let emulator = start_emulator(emulator_config());
    for i in 0..1500 {
        emulator
            .store()
            .put(
                &format!("m{i:05}"),
                Bytes::from(bytes(10, i)),
                "text/plain",
                None,
            )
            .unwrap();
    }
    let m = Mount::with(emulator, &[]);
    m.reset_stats();
    // m01400 is on the second page, which the mount did not fetch.
    let md = std::fs::metadata(m.path("m01400")).unwrap();
    assert_eq!(md.len(), 10);
    let body = std::fs::read(m.path("m01400")).unwrap();
    assert_eq!(body, bytes(10, 1400));
    let s = m.stats();
    assert_eq!((s.list, s.get), (0, 1), "stat + cat of a name never listed");
}

#[test]
fn changes_made_through_the_api_show_up_after_the_ttl() {
    let m = Mount::with(start_emulator(emulator_config()), &["--metadata-ttl", "1s"]);
    put(&m, "before", b"1");
    std::thread::sleep(Duration::from_millis(1200));
    assert!(sh_ok(&format!("ls {}", q(&m.mnt))).contains("before"));
    put(&m, "added", b"22");
    put(&m, "before", b"333");
    m.emulator.store().delete("before");
    put(&m, "changed", b"1");
    sh_ok(&format!("ls {}", q(&m.mnt)));
    put(&m, "changed", b"4444");
    std::thread::sleep(Duration::from_millis(1200));
    let files = find_files(&m.mnt);
    assert_eq!(
        files,
        BTreeMap::from([("added".to_string(), 2), ("changed".to_string(), 4)])
    );
}

#[test]
fn an_open_file_stays_readable_after_rm() {
    let m = Mount::with(emulator_with(&[("doomed", b"still here")]), &[]);
    let p = m.path("doomed");
    let (before, after) = timed("read after unlink", move || {
        use std::io::{Read, Seek};
        let mut f = std::fs::File::open(&p).unwrap();
        let mut a = Vec::new();
        f.read_to_end(&mut a).unwrap();
        std::fs::remove_file(&p).unwrap();
        f.rewind().unwrap();
        let mut b = Vec::new();
        f.read_to_end(&mut b).unwrap();
        (a, b)
    });
    assert_eq!(before, b"still here");
    assert_eq!(after, b"still here");
    assert!(
        m.stored("doomed").is_none(),
        "{} should not be stored",
        "doomed"
    );
}

/// An open file whose media goes from the server (deleted through the API, or expired) reads
/// the bytes it can still have: those cached before, or being read. One it has no bytes for
/// fails with EIO (a read never answers ENOENT) and one log line says why; the names leave the
/// listing. The reads are O_DIRECT, so they reach the mount instead of the kernel's page cache.
#[test]
fn an_open_file_reads_what_it_can_after_its_media_goes_from_the_server() {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let emulator = emulator_with(&[("cached", b"cached bytes"), ("unread", b"never read")]);
    let m = Mount::with(emulator, &["--metadata-ttl", "1s"]);
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(m.path(name))
            .expect("open")
    };
    let (cached, unread) = (open("cached"), open("unread"));
    // Read through another descriptor: the mount caches the bytes.
    assert_eq!(
        sh_ok(&format!("cat {}", q(&m.path("cached")))),
        "cached bytes"
    );
    m.emulator.store().delete("cached");
    m.emulator.store().delete("unread");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        sh_ok(&format!("ls {}", q(&m.path("")))),
        "",
        "gone from listings"
    );

    let got = timed("read of the cached file", move || {
        let mut b = vec![0u8; 64];
        cached.read_at(&mut b, 0).map(|n| b[..n].to_vec())
    });
    assert_eq!(got.expect("read of cached bytes"), b"cached bytes");
    let err = timed("read of the unread file", move || {
        let mut b = vec![0u8; 64];
        unread.read_at(&mut b, 0)
    })
    .expect_err("no bytes to read");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let said = m.log_text().matches("was removed on the server").count();
    assert_eq!(said, 1, "one log line:\n{}", m.log_text());
}

#[test]
fn xattrs_give_the_media_url_and_content_type() {
    let emulator = start_emulator(emulator_config());
    emulator
        .store()
        .put(
            "pic.png",
            Bytes::from_static(b"png"),
            "image/png",
            Some("no-cache"),
        )
        .unwrap();
    let m = Mount::with(emulator, &[]);
    let out = sh_ok(&format!("getfattr -d -m - {}", q(&m.path("pic.png"))));
    assert!(
        out.contains(&format!(
            "user.bandwidth.url=\"{}/users/9900000/media/pic.png\"",
            m.emulator.base_url()
        )),
        "{out}"
    );
    assert!(
        out.contains("user.bandwidth.content_type=\"image/png\""),
        "{out}"
    );
    assert!(
        out.contains("user.bandwidth.cache_control=\"no-cache\""),
        "{out}"
    );
}

/// A header xattr whose value cannot be an HTTP header value (a control character) is
/// refused with EINVAL, for every header, before any request; the media keeps its headers.
/// Before, `cache_control` answered EIO (a server outage's errno) and `content_type` EINVAL.
#[test]
fn an_invalid_header_value_is_einval_for_every_header() {
    let emulator = emulator_with(&[("pic.png", b"png")]);
    let m = Mount::with(emulator, &[]);
    let f = q(&m.path("pic.png"));
    for header in ["content_type", "cache_control"] {
        // "no\nstore": a line break inside a header value.
        let (ok, _, err) = sh_outcome(&format!(
            "setfattr -n user.bandwidth.{header} -v 0x6e6f0a73746f7265 {f}"
        ));
        assert!(!ok, "{header}: a value with a line break was taken");
        assert!(err.contains("Invalid argument"), "{header}: {err}");
    }
    // A type that is not a media type: the server would refuse the upload (400).
    let (ok, _, err) = sh_outcome(&format!(
        "setfattr -n user.bandwidth.content_type -v '@0E4_K^j' {f}"
    ));
    assert!(!ok && err.contains("Invalid argument"), "{err}");
    let media = m.emulator.store().get("pic.png").expect("stored");
    assert_eq!(media.content_type, "image/png");
    assert_eq!(media.cache_control, None);
    assert_eq!(m.stats().put, 0, "nothing was sent");
}

#[test]
fn df_works() {
    let m = Mount::new();
    let out = sh_ok(&format!("df {}", q(&m.mnt)));
    assert!(out.contains("bwmediafs"), "{out}");
}

#[test]
fn umount_ends_the_process_cleanly() {
    let mut m = Mount::new();
    sh_ok(&format!("ls -l {}", q(&m.mnt)));
    let t = Instant::now();
    sh_ok(&format!("umount {}", q(&m.mnt)));
    let status = m
        .wait_exit(Duration::from_secs(20))
        .expect("bwmediafs still running after umount");
    assert!(status.success(), "exit status {status}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // A clean unmount is no cause for a warning, even in a trace-level log.
    let log = m.log_text();
    assert!(log.contains("TRACE"), "not a trace-level log:\n{log}");
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}

#[test]
fn sigterm_uploads_open_dirty_files_then_unmounts() {
    let mut m = Mount::new();
    let p = m.path("open-dirty.bin");
    let data = bytes(5000, 5);
    let mut f = timed("create", {
        let p = p.clone();
        move || std::fs::File::create(p).unwrap()
    });
    {
        use std::io::Write;
        f.write_all(&data).unwrap();
    }
    assert_eq!(m.stored("open-dirty.bin").map(|b| b.len()).unwrap_or(0), 0);
    m.signal(libc::SIGTERM);
    // The process uploads, then unmounts; our handle is left dangling and closing it may fail.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while m.stored("open-dirty.bin").as_deref() != Some(&data[..]) {
        assert!(
            std::time::Instant::now() < deadline,
            "dirty file not uploaded on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(f);
    let status = m
        .wait_exit(Duration::from_secs(20))
        .expect("bwmediafs still running after SIGTERM");
    assert!(status.success(), "exit status {status}:\n{}", m.log_text());
    assert!(!m.is_mounted());
}

#[test]
fn mount_options_set_owner_modes_and_read_only() {
    let m = Mount::with(
        emulator_with(&[("d/f.txt", b"x")]),
        &["-o", "ro,uid=1234,gid=5678,umask=027"],
    );
    let f = std::fs::metadata(m.path("d/f.txt")).unwrap();
    let d = std::fs::metadata(m.path("d")).unwrap();
    assert_eq!((f.uid(), f.gid()), (1234, 5678));
    assert_eq!(f.mode() & 0o777, 0o640);
    assert_eq!(d.mode() & 0o777, 0o750);
    let out = sh(&format!("echo y > {}", q(&m.path("new"))));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(m.stats().put, 0);
}

#[test]
fn names_that_cannot_be_paths_are_skipped_with_one_warning_each() {
    let long = "x".repeat(256);
    let m = Mount::with(
        emulator_with(&[
            ("good.txt", b"1"),
            ("a//b", b"2"),
            ("./dot", b"3"),
            ("up/../z", b"4"),
            ("trailing/", b"5"),
            (&long, b"6"),
        ]),
        &[],
    );
    let names = sh_ok(&format!("ls -A {}", q(&m.mnt)));
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        vec!["good.txt"],
        "{names}"
    );
    sh_ok(&format!("ls -A {}", q(&m.mnt)));
    let log = m.log_text();
    for bad in ["a//b", "./dot", "up/../z", "trailing/"] {
        let warnings = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains(bad))
            .count();
        assert_eq!(warnings, 1, "warnings for {bad:?}:\n{log}");
    }
}

#[test]
fn a_name_over_255_bytes_is_enametoolong() {
    let m = Mount::new();
    let p = m.path(&"n".repeat(256));
    let err = timed("create", move || std::fs::write(p, b"x")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG), "{err}");
    assert!(m.emulator.store().is_empty());
}

/// A shared mapping of `len` bytes of `f` (`writable` for PROT_WRITE), unmapped in Drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(f: &std::fs::File, len: usize, writable: bool) -> Mapping {
        use std::os::unix::io::AsRawFd;
        let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
        // SAFETY: a fresh shared mapping of an open file; checked for failure below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        Mapping { ptr: p.cast(), len }
    }
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, alive until Drop, and only this test touches it.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, not used after this.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// Programs that map files (image and audio tools often do) read the media, and a shared
/// writable mapping is uploaded even when the program closes its descriptor first and unmaps
/// later (the kernel writes the pages back at munmap, then releases the file).
#[test]
fn mmap_reads_and_writes_go_through() {
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let m = Mount::with(emulator_with(&[("m.bin", &body)]), &[]);
    let p = m.path("m.bin");
    let expected = body.clone();
    timed("mmap read", move || {
        let f = std::fs::File::open(&p).unwrap();
        let mut map = Mapping::new(&f, expected.len(), false);
        assert!(map.bytes() == &expected[..]);
    });
    let p = m.path("m.bin");
    timed("mmap write", move || {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let mut map = Mapping::new(&f, 100_000, true);
        drop(f); // closed before the pages are written and unmapped
        map.bytes()[..5].copy_from_slice(b"HELLO");
        map.bytes()[99_995..].copy_from_slice(b"WORLD");
    });
    let mut want = body;
    want[..5].copy_from_slice(b"HELLO");
    want[99_995..].copy_from_slice(b"WORLD");
    // The release that uploads comes after munmap, asynchronously.
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.stored("m.bin").as_deref() != Some(&want[..]) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_bytes(
        m.stored("m.bin").as_deref(),
        &want,
        "the mapped writes, uploaded",
    );
    let p = m.path("m.bin");
    let read = timed("read back", move || std::fs::read(p).unwrap());
    assert_bytes(Some(&read), &want, "the mapped writes, read back");
}

#[test]
fn links_and_special_files_are_not_permitted() {
    let m = Mount::new();
    std::fs::write(m.path("target.txt"), b"t").unwrap();
    let mnt = q(&m.mnt);
    for (what, cmd) in [
        ("symlink", format!("ln -s target.txt {mnt}/link")),
        ("hard link", format!("ln {mnt}/target.txt {mnt}/hard")),
        ("fifo", format!("mkfifo {mnt}/fifo")),
    ] {
        let out = sh(&cmd);
        assert!(!out.status.success(), "{what} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Operation not permitted"), "{what}: {err}");
    }
    assert!(m.stored("link").is_none() && m.stored("hard").is_none());
    assert_eq!(m.stored("target.txt").as_deref(), Some(&b"t"[..]));
}

#[test]
fn programs_that_ask_for_ioctls_get_enotty_and_no_warning() {
    let m = Mount::new();
    std::fs::write(m.path("f.txt"), b"text").unwrap();
    // Python's open() asks whether the file is a terminal (an ioctl).
    let script = format!(
        "python3 -c 'import sys; print(open(sys.argv[1]).read())' {}",
        q(&m.path("f.txt"))
    );
    assert_eq!(sh_ok(&script).trim(), "text");
    let ioctl = sh_ok(&format!(
        "python3 -c 'import fcntl, sys, termios; f = open(sys.argv[1], \"rb\")
try:
    fcntl.ioctl(f, termios.TIOCGWINSZ, b\"\\0\" * 8)
except OSError as e:
    print(e.errno)' {}",
        q(&m.path("f.txt"))
    ));
    assert_eq!(ioctl.trim(), libc::ENOTTY.to_string());
    let log = m.log_text();
    assert!(!log.contains("Not Implemented"), "{log}");
}

/// The README's first example, as written (with the emulator's URL for production's).
#[test]
fn the_readme_example_works_as_written() {
    let m = Mount::new();
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("flyer.jpg"), bytes(5000, 4)).unwrap();
    let mnt = q(&m.mnt);
    let url = sh_ok(&format!(
        "cd {home} && mkdir {mnt}/campaign && cp flyer.jpg {mnt}/campaign/flyer.jpg && \
         getfattr -n user.bandwidth.url --only-values {mnt}/campaign/flyer.jpg",
        home = q(home.path())
    ));
    assert_eq!(
        url.trim(),
        format!(
            "{}/users/9900000/media/campaign/flyer.jpg",
            m.emulator.base_url()
        )
    );
    assert_eq!(m.stored("campaign/flyer.jpg"), Some(bytes(5000, 4)));
}

/// `mv` of a directory copies its media in parallel (bounded), and other directories stay
/// usable while it runs: the kernel holds only the two parents of a rename.
#[test]
fn a_directory_rename_moves_its_media_in_parallel_and_blocks_nothing_else() {
    const FILES: usize = 24;
    let bodies: Vec<Vec<u8>> = (0..FILES).map(|i| bytes(10_000 + i, i as u64)).collect();
    let names: Vec<String> = (0..FILES)
        .map(|i| format!("area/old/m{i:02}.bin"))
        .collect();
    let mut media: Vec<(&str, &[u8])> = names
        .iter()
        .map(String::as_str)
        .zip(bodies.iter().map(Vec::as_slice))
        .collect();
    let other = bytes(5000, 99);
    media.push(("elsewhere/x.bin", &other));
    let m = Mount::with(emulator_with(&media), &[]);
    sh_ok(&format!("ls -l {} >/dev/null", q(&m.path("area/old"))));
    // Each request now takes 200 ms: one after another, the rename would take 24 x 3 of them.
    let mut faults = m.emulator.faults();
    faults.latency_ms = 200;
    m.emulator.set_faults(faults);
    m.reset_stats();

    let mut mv = std::process::Command::new("mv")
        .arg(m.path("area/old"))
        .arg(m.path("area/new"))
        .spawn()
        .expect("spawn mv");
    std::thread::sleep(Duration::from_millis(300));
    // By now the rename has its first copies in flight, all at once.
    let peak = m.peak_in_flight();
    // Another directory's listing and a read of another file are answered meanwhile.
    let other_dir = m.path("elsewhere");
    let listed = timed("ls of another directory", move || {
        std::fs::read_dir(&other_dir).map(|d| d.count())
    });
    let x = m.path("elsewhere/x.bin");
    let read = timed("cat of another file", move || std::fs::read(&x));
    let mv_still_running = mv.try_wait().expect("mv status").is_none();
    let status = timed("mv", move || mv.wait()).expect("mv");
    assert!(status.success(), "mv failed:\n{}", m.log_text());
    assert_eq!(listed.expect("ls"), 1);
    assert_bytes(read.ok().as_deref(), &other, "elsewhere/x.bin");
    assert!(
        mv_still_running,
        "the other directory waited for the rename to end"
    );
    assert!(
        (2..=8).contains(&peak),
        "{peak} requests at most at once during the rename (want 2 to 8)"
    );
    let s = m.stats();
    assert_eq!((s.put, s.delete), (FILES as u64, FILES as u64), "{s:?}");
    for (i, body) in bodies.iter().enumerate() {
        assert_bytes(
            m.stored(&format!("area/new/m{i:02}.bin")).as_deref(),
            body,
            "moved media",
        );
        assert_eq!(m.stored(&names[i]), None, "old name {} remains", names[i]);
    }
    assert_eq!(find_files(&m.path("area")).len(), FILES);
}

/// A media that is also a directory (`a` and `a/b` on the server, or a media uploaded elsewhere
/// under the name of a directory made here) is shown beside the directory as `a~media`: every
/// media is reachable, by its shown name, through real tools.
#[test]
fn a_media_named_like_a_directory_is_shown_beside_it() {
    let emulator = emulator_with(&[("a", b"the file a"), ("a/b", b"under a")]);
    let m = Mount::with(emulator, &["--metadata-ttl", "1s"]);
    let root = q(&m.path(""));
    sh_ok(&format!("ls {root} >/dev/null"));
    assert_eq!(sh_ok(&format!("ls {root}")), "a\na~media\n");
    assert_eq!(sh_ok(&format!("cat {root}/a/b")), "under a");
    assert_eq!(sh_ok(&format!("cat {root}/a~media")), "the file a");
    let said = m.log_text().matches("is shown as \"a~media\"").count();
    assert_eq!(said, 1, "said once in the log:\n{}", m.log_text());

    // Written and removed by its shown name, the media is changed under its own.
    sh_ok(&format!("echo -n new > {root}/a~media"));
    assert_eq!(m.stored("a").as_deref(), Some(&b"new"[..]));
    sh_ok(&format!("rm {root}/a~media"));
    assert_eq!(m.stored("a"), None);
    assert_eq!(sh_ok(&format!("ls {root}")), "a\n");

    // A directory made here, then a media of its name uploaded elsewhere: both are shown, and
    // the media takes its own name back once the directory is gone.
    sh_ok(&format!("mkdir {root}/made"));
    put(&m, "made", b"uploaded elsewhere");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(sh_ok(&format!("ls {root}")), "a\nmade\nmade~media\n");
    assert_eq!(
        sh_ok(&format!("cat {root}/made~media")),
        "uploaded elsewhere"
    );
    sh_ok(&format!("rmdir {root}/made"));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(sh_ok(&format!("ls {root}")), "a\nmade\n");
    assert_eq!(sh_ok(&format!("cat {root}/made")), "uploaded elsewhere");
}

/// A redirect into a media shown beside a directory (`a~media`) uploads once, at the shell's
/// last close, as on any other name: whether the opener still holds the file is told by the
/// mount and inode of its descriptors, not by their paths. Before, the shown name never matched
/// the media's own, so the shell's first close uploaded an empty media while the command ran.
#[test]
fn a_redirect_into_a_name_shown_beside_a_directory_uploads_once() {
    let emulator = emulator_with(&[("a", b"the old bytes"), ("a/b", b"under a")]);
    let m = Mount::with(emulator, &[]);
    sh_ok(&format!("ls {} >/dev/null", q(&m.path(""))));
    let shown = q(&m.path("a~media"));
    let marker = m.dir.path().join("opened");
    m.reset_stats();

    // A command group: the shell opens the file, moves it to fd 1 (a close), runs, closes.
    let mut group = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{{ touch {}; sleep 1; echo later; }} > {shown}",
            q(&marker)
        ))
        .spawn()
        .expect("spawn bash");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(marker.exists(), "the command group never ran");
    assert_eq!(
        m.stored("a").as_deref(),
        Some(&b"the old bytes"[..]),
        "while the command runs, the server keeps the old bytes"
    );
    let status = timed("the redirected group", move || group.wait()).expect("bash");
    assert!(status.success());
    assert_eq!(m.stored("a").as_deref(), Some(&b"later\n"[..]));
    assert_eq!(m.stats().put, 1, "{:?}", m.stats());

    // An external program's output: the shell's child opens the file, then execs `cat`.
    let big = bytes(3_000_000, 18);
    let src = m.dir.path().join("big.bin");
    std::fs::write(&src, &big).expect("write the source");
    m.reset_stats();
    sh_ok(&format!("cat {} > {shown}", q(&src)));
    assert_bytes(m.stored("a").as_deref(), &big, "a after cat > a~media");
    assert_eq!(m.stats().put, 1, "{:?}", m.stats());
}

/// `rm -r` of a tree holding a media shown beside a directory removes it all: the `rmdir` that
/// gives the media its own name back comes before the unlink of the name `rm` read.
#[test]
fn rm_r_removes_a_media_shown_beside_a_directory() {
    let emulator = emulator_with(&[
        ("t/a", b"the file a"),
        ("t/a/b", b"under a"),
        ("t/c", b"c"),
        ("u/x", b"x"),
        ("u/x/y", b"y"),
    ]);
    let m = Mount::with(emulator, &[]);
    sh_ok(&format!("ls -R {} >/dev/null", q(&m.path(""))));
    sh_ok(&format!("rm -r {}", q(&m.path("t"))));
    sh_ok(&format!("find {} -delete", q(&m.path("u"))));
    assert_eq!(m.emulator.store().names(), Vec::<String>::new());
    assert_eq!(sh_ok(&format!("ls -A {}", q(&m.path("")))), "");
}

/// What a program does inside a directory while it is being renamed acts under the new name,
/// as if it came after the rename: nothing lands under the old name, nothing removed comes back.
#[test]
fn work_inside_a_directory_being_renamed_lands_under_its_new_name() {
    const FILES: usize = 24;
    let bodies: Vec<Vec<u8>> = (0..FILES).map(|i| bytes(8_000 + i, i as u64)).collect();
    let names: Vec<String> = (0..FILES).map(|i| format!("w/old/m{i:02}.bin")).collect();
    let media: Vec<(&str, &[u8])> = names
        .iter()
        .map(String::as_str)
        .zip(bodies.iter().map(Vec::as_slice))
        .collect();
    let m = Mount::with(emulator_with(&media), &[]);
    sh_ok(&format!("ls -l {} >/dev/null", q(&m.path("w/old"))));
    let mut faults = m.emulator.faults();
    faults.latency_ms = 200;
    m.emulator.set_faults(faults);
    // A shell already inside the directory, working in it while the rename runs.
    let mut worker = std::process::Command::new("sh")
        .arg("-c")
        .arg("sleep 0.6 && echo concurrent > newfile && rm m05.bin && mkdir d && echo in > d/in")
        .current_dir(m.path("w/old"))
        .spawn()
        .expect("spawn sh");
    std::thread::sleep(Duration::from_millis(100));
    let mut mv = std::process::Command::new("mv")
        .arg(m.path("w/old"))
        .arg(m.path("w/new"))
        .spawn()
        .expect("spawn mv");
    let mv_status = timed("mv", move || mv.wait()).expect("mv");
    let worker_status = timed("sh", move || worker.wait()).expect("sh");
    assert!(mv_status.success(), "mv failed:\n{}", m.log_text());
    assert!(worker_status.success(), "sh failed:\n{}", m.log_text());
    let mut want: Vec<String> = names
        .iter()
        .filter(|n| !n.ends_with("m05.bin"))
        .map(|n| n.replace("w/old/", "w/new/"))
        .collect();
    want.push("w/new/newfile".into());
    want.push("w/new/d/in".into());
    want.sort();
    assert_eq!(m.emulator.store().names(), want);
    assert_eq!(
        m.stored("w/new/newfile").as_deref(),
        Some(&b"concurrent\n"[..])
    );
}

/// A directory rename waits for what is under way inside it (a rename of a subdirectory, an
/// upload at close, a delete) and moves what they left: nothing stays under the old names.
#[test]
fn a_directory_rename_waits_for_work_already_under_way_inside_it() {
    let bodies: Vec<Vec<u8>> = (0..16).map(|i| bytes(4_000 + i, i as u64)).collect();
    let mut media: Vec<(String, &[u8])> = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        media.push((format!("p/sub/s{i:02}"), b));
        media.push((format!("p/t{i:02}"), b));
    }
    let refs: Vec<(&str, &[u8])> = media.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    let m = Mount::with(emulator_with(&refs), &[]);
    sh_ok(&format!("ls -lR {} >/dev/null", q(&m.path("p"))));
    let mut faults = m.emulator.faults();
    faults.latency_ms = 200;
    m.emulator.set_faults(faults);
    // A rename of the subdirectory, an upload at close and a delete, all under way when the
    // rename of their directory starts.
    let spawn = |script: String| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .spawn()
            .expect("spawn sh")
    };
    let sub = spawn(format!(
        "mv {} {}",
        q(&m.path("p/sub")),
        q(&m.path("p/sub2"))
    ));
    let new_file = m.path("p/new.txt");
    let writer = std::thread::spawn(move || std::fs::write(new_file, b"written meanwhile"));
    let rm = spawn(format!("rm {}", q(&m.path("p/t03"))));
    // Each of them takes at least one 200 ms request: all are still under way.
    std::thread::sleep(Duration::from_millis(100));
    let status = mv(&m, "p", "q");
    for (what, child) in [("mv sub", sub), ("rm", rm)] {
        let s = timed(what, move || {
            let mut c = child;
            c.wait()
        });
        assert!(s.expect(what).success(), "{what} failed:\n{}", m.log_text());
    }
    writer.join().expect("writer").expect("write p/new.txt");
    assert!(status.success(), "mv p q failed:\n{}", m.log_text());
    let mut want: Vec<String> = media
        .iter()
        .map(|(n, _)| n.replace("p/sub/", "q/sub2/").replacen("p/", "q/", 1))
        .filter(|n| n != "q/t03")
        .collect();
    want.push("q/new.txt".into());
    want.sort();
    assert_eq!(m.emulator.store().names(), want);
    assert_eq!(find_files(&m.path("")).len(), want.len());

    // Again with only an upload and a delete under way (no rename inside to wait for).
    let new_file = m.path("q/later.txt");
    let writer = std::thread::spawn(move || std::fs::write(new_file, b"written meanwhile"));
    let rm = spawn(format!("rm {}", q(&m.path("q/t04"))));
    std::thread::sleep(Duration::from_millis(100));
    let status = mv(&m, "q", "r");
    let s = timed("rm", move || {
        let mut c = rm;
        c.wait()
    });
    assert!(s.expect("rm").success(), "rm failed:\n{}", m.log_text());
    writer.join().expect("writer").expect("write q/later.txt");
    assert!(status.success(), "mv q r failed:\n{}", m.log_text());
    let mut want: Vec<String> = want
        .iter()
        .filter(|n| *n != "q/t04")
        .map(|n| n.replacen("q/", "r/", 1))
        .collect();
    want.push("r/later.txt".into());
    want.sort();
    assert_eq!(m.emulator.store().names(), want);
}
