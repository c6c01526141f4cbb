//! The round-trip budget of changes: creates, unlinks and renames, asserted exactly from the
//! store's request counters.

use super::*;

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
    t.fs.mkdir(dir_ino, &os("emptysub"), 0o755, 0, ME).unwrap();
    t.reset();
    t.mv("dir", "moved").unwrap();
    assert_eq!(t.stats(), snap(0, 2, 2, 2));
    assert_eq!(t.store.names(), vec!["moved/a", "moved/sub/b", "other"]);
    assert_eq!(t.resolve("moved").unwrap().ino, dir_ino);
    assert_eq!(t.ls("moved").unwrap(), vec!["a", "emptysub", "sub"]);
    assert_eq!(t.cat("moved/sub/b").unwrap(), b"22");
    assert_eq!(errno_of(t.resolve("dir")), libc::ENOENT);
    // Onto a non-empty directory: refused.
    t.fs.mkdir(ROOT_INO, &os("full"), 0o755, 0, ME).unwrap();
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
