//! The user's own extended attributes (`user.foo`): kept in memory for the life of the mount,
//! on files and directories, with the flags and limits of a local disk.

use super::*;
use crate::fs::namespace::MAX_XATTRS_PER_NODE;
use crate::fs::xattr::MAX_XATTR_VALUE;

fn names(list: &[u8]) -> Vec<String> {
    list.split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

#[test]
fn user_attributes_are_kept_on_files_and_directories() {
    let store = new_store(1000);
    seed(&store, "d/a.txt", b"x");
    let t = mount(store);
    let file = t.resolve("d/a.txt").unwrap().ino;
    let dir = t.resolve("d").unwrap().ino;
    t.fs.listxattr(file).unwrap(); // the headers' GET, out of the way
    t.reset();
    t.fs.setxattr(file, &os("user.foo"), b"bar", 0).unwrap();
    t.fs.setxattr(file, &os("user.empty"), b"", 0).unwrap();
    t.fs.setxattr(dir, &os("user.foo"), b"on the dir", 0)
        .unwrap();
    assert_eq!(t.fs.getxattr(file, &os("user.foo")).unwrap(), b"bar");
    assert_eq!(t.fs.getxattr(file, &os("user.empty")).unwrap(), b"");
    assert_eq!(t.fs.getxattr(dir, &os("user.foo")).unwrap(), b"on the dir");
    assert_eq!(
        names(&t.fs.listxattr(file).unwrap()),
        [
            XATTR_URL,
            XATTR_CONTENT_TYPE,
            XATTR_EXPIRES,
            "user.empty",
            "user.foo"
        ]
    );
    assert_eq!(names(&t.fs.listxattr(dir).unwrap()), ["user.foo"]);
    // Replaced, then removed.
    t.fs.setxattr(file, &os("user.foo"), b"baz", 0).unwrap();
    assert_eq!(t.fs.getxattr(file, &os("user.foo")).unwrap(), b"baz");
    t.fs.removexattr(file, &os("user.foo")).unwrap();
    assert_eq!(
        errno_of(t.fs.getxattr(file, &os("user.foo"))),
        libc::ENODATA
    );
    assert_eq!(
        errno_of(t.fs.removexattr(file, &os("user.foo"))),
        libc::ENODATA
    );
    assert_eq!(
        errno_of(t.fs.getxattr(dir, &os("user.nope"))),
        libc::ENODATA
    );
    // The server is never asked: the API cannot store them.
    assert_eq!(t.stats(), snap(0, 0, 0, 0));
}

#[test]
fn create_and_replace_flags_are_honoured() {
    let store = new_store(1000);
    seed(&store, "a.txt", b"x");
    let t = mount(store);
    let ino = t.resolve("a.txt").unwrap().ino;
    let (create, replace) = (libc::XATTR_CREATE, libc::XATTR_REPLACE);
    assert_eq!(
        errno_of(t.fs.setxattr(ino, &os("user.k"), b"1", replace)),
        libc::ENODATA
    );
    t.fs.setxattr(ino, &os("user.k"), b"1", create).unwrap();
    assert_eq!(
        errno_of(t.fs.setxattr(ino, &os("user.k"), b"2", create)),
        libc::EEXIST
    );
    t.fs.setxattr(ino, &os("user.k"), b"3", replace).unwrap();
    assert_eq!(t.fs.getxattr(ino, &os("user.k")).unwrap(), b"3");
}

#[test]
fn values_and_files_have_a_size_limit() {
    let store = new_store(1000);
    seed(&store, "a.txt", b"x");
    let t = mount(store);
    let ino = t.resolve("a.txt").unwrap().ino;
    let big = vec![7u8; MAX_XATTR_VALUE];
    t.fs.setxattr(ino, &os("user.big"), &big, 0).unwrap();
    assert_eq!(t.fs.getxattr(ino, &os("user.big")).unwrap(), big);
    assert_eq!(
        errno_of(t.fs.setxattr(ino, &os("user.bigger"), &[0; MAX_XATTR_VALUE + 1], 0)),
        libc::E2BIG
    );
    let mut i = 0;
    let err = loop {
        match t.fs.setxattr(ino, &os(&format!("user.n{i}")), &big, 0) {
            Ok(()) => i += 1,
            Err(e) => break e,
        }
        assert!(i < 100, "no limit per file");
    };
    assert_eq!(err.errno(), libc::ENOSPC);
    assert!((i + 1) * MAX_XATTR_VALUE <= MAX_XATTRS_PER_NODE);
    // Replacing a value by one of the same size still fits.
    t.fs.setxattr(ino, &os("user.big"), &big, 0).unwrap();
    // Names stop where `listxattr` could no longer return them all (64 KiB).
    let b = t.resolve("").unwrap().ino;
    let mut i = 0;
    let err = loop {
        let name = format!("user.{i:03}{}", "n".repeat(240));
        match t.fs.setxattr(b, &os(&name), b"", 0) {
            Ok(()) => i += 1,
            Err(e) => break e,
        }
        assert!(i < 1000, "no limit on names");
    };
    assert_eq!(err.errno(), libc::ENOSPC);
    assert!(t.fs.listxattr(b).unwrap().len() <= 64 * 1024);
}

#[test]
fn a_rename_keeps_them_and_a_new_name_has_none() {
    let store = new_store(1000);
    seed(&store, "d/a.txt", b"x");
    let t = mount(store);
    let ino = t.resolve("d/a.txt").unwrap().ino;
    t.fs.setxattr(ino, &os("user.foo"), b"bar", 0).unwrap();
    let dir = t.resolve("d").unwrap().ino;
    t.fs.setxattr(dir, &os("user.dir"), b"1", 0).unwrap();
    t.mv("d/a.txt", "d/b.txt").unwrap();
    let b = t.resolve("d/b.txt").unwrap().ino;
    assert_eq!(t.fs.getxattr(b, &os("user.foo")).unwrap(), b"bar");
    t.mv("d", "e").unwrap();
    let e = t.resolve("e").unwrap().ino;
    assert_eq!(t.fs.getxattr(e, &os("user.dir")).unwrap(), b"1");
    let b = t.resolve("e/b.txt").unwrap().ino;
    assert_eq!(t.fs.getxattr(b, &os("user.foo")).unwrap(), b"bar");
    t.write_file("e/c.txt", b"y").unwrap();
    let c = t.resolve("e/c.txt").unwrap().ino;
    assert_eq!(errno_of(t.fs.getxattr(c, &os("user.foo"))), libc::ENODATA);
}

#[test]
fn names_of_bandwidth_and_of_other_namespaces_keep_their_rules() {
    let store = new_store(1000);
    seed(&store, "a.txt", b"x");
    let t = mount(store);
    let ino = t.resolve("a.txt").unwrap().ino;
    for name in ["user.bandwidth.other", "security.selinux", "trusted.x"] {
        assert_eq!(
            errno_of(t.fs.setxattr(ino, &os(name), b"1", 0)),
            libc::ENOTSUP,
            "{name}"
        );
    }
    assert_eq!(
        errno_of(t.fs.getxattr(ino, &os("user.bandwidth.other"))),
        libc::ENODATA
    );
    assert_eq!(
        errno_of(t.fs.getxattr(ino, &os("trusted.x"))),
        libc::ENOTSUP
    );
}

#[test]
fn a_read_only_mount_refuses_them() {
    let store = new_store(1000);
    seed(&store, "a.txt", b"x");
    let t = mount_with(store, |o| o.read_only = true);
    let ino = t.resolve("a.txt").unwrap().ino;
    assert_eq!(
        errno_of(t.fs.setxattr(ino, &os("user.foo"), b"1", 0)),
        libc::EROFS
    );
}

#[test]
fn a_header_set_empty_or_far_too_long_is_refused_and_nothing_is_sent() {
    let store = new_store(1000);
    seed(&store, "a.txt", b"x");
    let t = mount(store);
    let ino = t.resolve("a.txt").unwrap().ino;
    t.reset();
    for name in [
        "user.bandwidth.content_type",
        "user.bandwidth.cache_control",
    ] {
        assert_eq!(
            errno_of(t.fs.setxattr(ino, &os(name), b"", 0)),
            libc::EINVAL
        );
        assert_eq!(
            errno_of(t.fs.setxattr(ino, &os(name), &[b'a'; 2000], 0)),
            libc::E2BIG
        );
    }
    assert_eq!(t.stats(), snap(0, 0, 0, 0));
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
        b"user.bandwidth.url\0user.bandwidth.content_type\0user.bandwidth.cache_control\0\
          user.bandwidth.expires\0"
    );
    assert_eq!(errno_of(get("user.other")), libc::ENODATA);
    // No labels and no ACLs: "not supported", which ls remembers (it asks once per mount).
    for other in ["security.selinux", "system.posix_acl_access", "trusted.x"] {
        assert_eq!(errno_of(get(other)), libc::ENOTSUP, "{other}");
    }
    // Set: on the server at once (the body is cached: one PUT each), and kept by a rewrite.
    t.reset();
    t.fs.setxattr(ino, &os(XATTR_CONTENT_TYPE), b"image/png", 0)
        .unwrap();
    t.fs.setxattr(ino, &os(XATTR_CACHE_CONTROL), b"max-age=60", 0)
        .unwrap();
    assert_eq!(t.stats(), snap(0, 0, 2, 0));
    let m = Store::get(&t.store, "m/pic.jpg").unwrap();
    assert_eq!(m.content_type, "image/png");
    assert_eq!(m.cache_control.as_deref(), Some("max-age=60"));
    assert_eq!(
        errno_of(t.fs.setxattr(ino, &os("user.bandwidth.other"), b"1", 0)),
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
