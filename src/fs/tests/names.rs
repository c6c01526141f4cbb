//! Names, directories and freshness: lookups, listings, renames, what changes elsewhere.

use super::*;

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
    // Deleted elsewhere: the open's 404 says so, and the name is gone. The open answers
    // ESTALE, on which the kernel looks the name up again (ENOENT, or a new file for O_CREAT).
    store.delete("c");
    std::thread::sleep(Duration::from_millis(80));
    t.reset();
    assert_eq!(errno_of(t.cat("c")), libc::ESTALE);
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
fn mkdir_and_rmdir() {
    let store = new_store(1000);
    seed(&store, "full/x", b"1");
    let t = mount(store);
    t.reset();
    let a = t.fs.mkdir(ROOT_INO, &os("new"), 0o750, 0o022, ME).unwrap();
    assert_eq!((a.kind, a.perm), (Kind::Dir, 0o750));
    let b = t.fs.mkdir(a.ino, &os("deeper"), 0o777, 0o022, ME).unwrap();
    assert_eq!(b.perm, 0o755);
    assert_eq!(t.ls("").unwrap(), vec!["full", "new"]);
    assert_eq!(
        errno_of(t.fs.mkdir(ROOT_INO, &os("new"), 0o755, 0, ME)),
        libc::EEXIST
    );
    assert_eq!(errno_of(t.fs.rmdir(ROOT_INO, &os("full"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(t.fs.rmdir(ROOT_INO, &os("new"))), libc::ENOTEMPTY);
    t.fs.rmdir(a.ino, &os("deeper")).unwrap();
    t.fs.rmdir(ROOT_INO, &os("new")).unwrap();
    assert_eq!(t.ls("").unwrap(), vec!["full"]);
    assert_eq!(t.stats(), snap(0, 0, 0, 0));
    // A file in a new directory is uploaded under its full name.
    t.fs.mkdir(ROOT_INO, &os("m"), 0o755, 0, ME).unwrap();
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
    t.fs.mkdir(ROOT_INO, &os("d"), 0o755, 0, ME).unwrap();
    let s = t.fs.statfs();
    // Used: 2 files, the root and d; 5010 bytes, in 2 blocks of 4 KiB (the bytes counted
    // together).
    assert_eq!(s.files - s.ffree, 4);
    assert_eq!(s.blocks - s.bfree, 2);
    assert_eq!((s.bsize, s.frsize, s.namelen), (4096, 4096, 255));
    assert_eq!(s.bavail, s.bfree);
    assert_eq!(s.blocks * 4096, 1 << 40, "1 TiB in all");
    assert_eq!(s.files, 1 << 32, "2^32 inodes in all");
    t.write_file("d/c", &[1u8; 9000]).unwrap();
    let s2 = t.fs.statfs();
    assert_eq!(s2.files - s2.ffree, 5);
    assert_eq!(s2.blocks - s2.bfree, 4, "14010 bytes");
    assert_eq!((s2.blocks, s2.files), (s.blocks, s.files));
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
        errno_of(t.fs.create(ROOT_INO, &os("n"), 0o644, 0, libc::O_WRONLY, ME)),
        rofs
    );
    assert_eq!(errno_of(t.fs.mkdir(ROOT_INO, &os("d"), 0o755, 0, ME)), rofs);
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
        errno_of(t.fs.setxattr(ino, &os(XATTR_CONTENT_TYPE), b"a/b", 0)),
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
        errno_of(t.fs.create(ROOT_INO, &os(&long), 0o644, 0, libc::O_WRONLY, ME)),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno_of(t.fs.mkdir(ROOT_INO, &os(&long), 0o755, 0, ME)),
        libc::ENAMETOOLONG
    );
    let ok = "n".repeat(255);
    t.write_file(&ok, b"1").unwrap();
    // Not UTF-8: cannot be a media name.
    let bad = OsStr::from_bytes(b"\xff\xfe");
    assert_eq!(errno_of(t.fs.lookup(ROOT_INO, bad)), libc::ENOENT);
    assert_eq!(
        errno_of(t.fs.create(ROOT_INO, bad, 0o644, 0, libc::O_WRONLY, ME)),
        libc::EINVAL
    );
}
