//! Errors and concurrency: API failures mapped to errno, read-only mounts, many threads.

use super::*;
use std::time::Instant;

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
    t.read_dir_from(fh, 3).unwrap();
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
    t.fs.mkdir(ROOT_INO, &os("d"), 0o755, 0, ME).unwrap();
    seed(&store, "d/x", b"1");
    assert_eq!(t.ls("d").unwrap(), vec!["x"]);
    store.delete("d/x");
    t.resolve("d").unwrap();
    t.fs.rmdir(ROOT_INO, &os("d")).unwrap();
    assert_eq!(t.ls("").unwrap(), vec!["a", "b", "c"]);
    // Still refused while it holds something.
    t.fs.mkdir(ROOT_INO, &os("e"), 0o755, 0, ME).unwrap();
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
    t.fs.mkdir(ROOT_INO, &os("f"), 0o755, 0, ME).unwrap();
    seed(&store, "f/h", b"1");
    assert_eq!(t.ls("f").unwrap(), vec!["h"]);
    store.delete("f/h");
    t.mv("s", "f").unwrap();
    assert_eq!(t.store.names(), vec!["a", "b", "f/x"]);
    assert_eq!(t.ls("f").unwrap(), vec!["x"]);
    // Refused when the target holds something, even a media not listed yet (which a
    // replaced target would have hidden while it stayed on the server).
    t.fs.mkdir(ROOT_INO, &os("g"), 0o755, 0, ME).unwrap();
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
    // The copies made (moves run in parallel: one or both) had their deletes fail: both
    // names exist, on the server and here, with the same bytes.
    let names = t.store.names();
    assert!(names.contains(&"src/a".to_string()) && names.contains(&"src/b".to_string()));
    let copies: Vec<&String> = names.iter().filter(|n| n.starts_with("dst/")).collect();
    assert!((1..=2).contains(&copies.len()), "{names:?}");
    for copy in copies {
        let base = &copy["dst/".len()..];
        assert_eq!(t.cat(copy).unwrap(), t.cat(&format!("src/{base}")).unwrap());
    }
    *t.faults.delete.lock() = None;
    t.mv("src", "dst2").unwrap();
    assert_eq!(t.ls("dst2").unwrap(), vec!["a", "b"]);
}

#[test]
fn a_directory_rename_that_fails_midway_moves_back_what_it_moved() {
    // Left half moved, `mv` would see the target exist and move the directory into it.
    let store = new_store(1000);
    let names: Vec<String> = (0..20).map(|i| format!("src/f{i:02}")).collect();
    for (i, n) in names.iter().enumerate() {
        seed(&store, n, format!("body {i}").as_bytes());
    }
    let t = mount(store);
    *t.faults.put_of.lock() = Some(("dst/f07".into(), ApiError::Transport("reset".into())));
    assert_eq!(errno_of(t.mv("src", "dst")), libc::EIO);
    *t.faults.put_of.lock() = None;
    assert_eq!(
        t.store.names(),
        names,
        "every media is back under its old name"
    );
    assert_eq!(t.ls("").unwrap(), vec!["src"]);
    for (i, n) in names.iter().enumerate() {
        assert_eq!(t.cat(n).unwrap(), format!("body {i}").as_bytes());
    }
    t.mv("src", "dst").unwrap();
    assert_eq!(t.ls("dst").unwrap().len(), 20);
}

#[test]
fn a_directory_rename_whose_delete_fails_removes_the_copy_too() {
    // A copy whose old name could not be deleted would leave the target existing.
    let store = new_store(1000);
    let names: Vec<String> = (0..20).map(|i| format!("src/f{i:02}")).collect();
    for n in &names {
        seed(&store, n, n.as_bytes());
    }
    let t = mount(store);
    *t.faults.delete_of.lock() = Some(("src/f07".into(), ApiError::Transport("reset".into())));
    assert_eq!(errno_of(t.mv("src", "dst")), libc::EIO);
    *t.faults.delete_of.lock() = None;
    assert_eq!(t.store.names(), names);
    assert_eq!(t.ls("").unwrap(), vec!["src"]);
}

#[test]
fn a_directory_rename_passes_over_a_media_deleted_elsewhere() {
    let store = new_store(1000);
    for i in 0..5 {
        seed(&store, &format!("src/f{i}"), b"x");
    }
    let t = mount(store.clone());
    t.ls("src").unwrap();
    store.delete("src/f2");
    t.mv("src", "dst").unwrap();
    assert_eq!(
        t.store.names(),
        vec!["dst/f0", "dst/f1", "dst/f3", "dst/f4"]
    );
    // And it is not shown under the new name.
    assert_eq!(t.ls("dst").unwrap(), vec!["f0", "f1", "f3", "f4"]);
}

/// The same when the gone media's bytes were cached and are past the TTL: the rename's check of
/// them finds it gone, which passes it over like any media gone, and fails nothing.
#[test]
fn a_directory_rename_passes_over_a_cached_media_deleted_elsewhere() {
    let store = new_store(1000);
    for i in 0..3 {
        seed(&store, &format!("src/f{i}"), b"x");
    }
    let t = mount_ttl(store.clone(), Duration::from_millis(50));
    assert_eq!(t.cat("src/f1").unwrap(), b"x");
    std::thread::sleep(Duration::from_millis(80));
    t.ls("src").unwrap();
    store.delete("src/f1");
    t.mv("src", "dst").unwrap();
    assert_eq!(t.store.names(), vec!["dst/f0", "dst/f2"]);
    assert_eq!(t.ls("dst").unwrap(), vec!["f0", "f2"]);
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
    // While both exist the directory keeps the name and the file is shown beside it.
    seed(&store, "d", b"3");
    assert_eq!(t.ls("").unwrap(), vec!["d", "d~media"]);
    assert_eq!(t.resolve("d").unwrap().kind, Kind::Dir);
    assert_eq!(t.cat("d~media").unwrap(), b"3");
    store.delete("d/x");
    assert_eq!(t.ls("").unwrap(), vec!["d"]);
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
