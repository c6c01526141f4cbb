//! Writes, uploads and their failures: the write buffer's state machine, the size limit, recovery.

use super::*;

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
    t.resize(ino, 4).unwrap();
    t.resize(ino, 6).unwrap();
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
    let a = t.resize(ino, 3).unwrap();
    assert_eq!(a.size, 3);
    assert_eq!(t.stored("t").unwrap(), b"abc");
    assert_eq!(t.stats(), snap(0, 1, 1, 0));
    t.resize(ino, 0).unwrap();
    assert_eq!(t.stored("t").unwrap(), b"");
    assert_eq!(t.stats(), snap(0, 1, 2, 0));
    // Same size: nothing to do.
    t.resize(ino, 0).unwrap();
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
    t.resize(ino, 0).unwrap();
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
    assert_eq!(errno_of(t.resize(ino, 101)), libc::EFBIG);
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
    t.resize(ino, limit).unwrap();
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
    let ino = t.fs.mkdir(ROOT_INO, &os("dir"), 0o755, 0, ME).unwrap().ino;
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
        (
            ApiError::TooLarge {
                size: 9,
                limit: Some(8),
            },
            libc::EFBIG,
        ),
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
