//! The times of media: the server's date, our own uploads, what a remount remembers, and the
//! expiry derived from them.

use super::*;
use std::path::PathBuf;

/// `t` rounded down to the second, as an HTTP date carries it.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let s = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

/// A mount that keeps its times in `file`.
fn mount_keeping(store: Arc<Store>, file: &std::path::Path) -> T {
    let file = file.to_path_buf();
    mount_with(store, move |o| o.times_file = Some(file))
}

fn times_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state/times-9900000.json")
}

fn no_last_modified(store: &Store) {
    let mut config = store.config();
    config.last_modified = false;
    store.set_config(config);
}

fn expires(t: &T, ino: Ino) -> String {
    String::from_utf8(t.fs.getxattr(ino, &os(XATTR_EXPIRES)).unwrap()).unwrap()
}

#[test]
fn a_download_dates_a_media_by_its_last_modified() {
    let store = new_store(1000);
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    Store::put_at(
        &store,
        "in/0/a.png",
        Bytes::from_static(b"png"),
        "image/png",
        None,
        hour_ago,
    )
    .unwrap();
    let t = mount(store);
    let before = t.resolve("in/0/a.png").unwrap();
    assert!(before.mtime > hour_ago + Duration::from_secs(3000));
    t.reset();
    assert_eq!(t.cat("in/0/a.png").unwrap(), b"png");
    let after = t.fs.getattr(before.ino).unwrap();
    assert_eq!(after.mtime, whole_seconds(hour_ago));
    assert_eq!(after.ctime, after.mtime);
    assert_eq!(
        expires(&t, before.ino),
        // The date is rounded down: the media may have been uploaded up to a second later.
        crate::fs::times_file::rfc3339_up(
            whole_seconds(hour_ago) + Duration::from_secs(1) + crate::api::RETENTION
        )
    );
    assert_eq!(
        t.stats(),
        snap(0, 1, 0, 0),
        "the date comes with the read's GET"
    );
}

#[test]
fn without_last_modified_a_remount_keeps_the_time_first_seen() {
    let store = new_store(1000);
    no_last_modified(&store);
    seed(&store, "in/0/a.png", b"png");
    seed(&store, "in/1/b.png", b"png2");
    let state = tempfile::tempdir().unwrap();
    let file = times_in(&state);
    let t = mount_keeping(store.clone(), &file);
    let first = t.resolve("in/0/a.png").unwrap();
    assert_eq!(t.cat("in/0/a.png").unwrap(), b"png");
    assert_eq!(t.fs.getattr(first.ino).unwrap().mtime, first.mtime);
    let exp = expires(&t, first.ino);
    t.fs.save_times();
    drop(t);
    std::thread::sleep(Duration::from_millis(30));

    // B vanished meanwhile; A comes back with its times.
    Store::delete(&store, "in/1/b.png");
    let t = mount_keeping(store.clone(), &file);
    let again = t.resolve("in/0/a.png").unwrap();
    assert_eq!((again.mtime, again.ctime), (first.mtime, first.mtime));
    assert_eq!(expires(&t, again.ino), exp);
    t.fs.save_times();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("in/0/a.png") && !text.contains("in/1/b.png"),
        "{text}"
    );
}

#[test]
fn our_write_dates_the_media_and_a_remount_keeps_it() {
    for last_modified in [true, false] {
        let store = new_store(1000);
        if !last_modified {
            no_last_modified(&store);
        }
        let state = tempfile::tempdir().unwrap();
        let file = times_in(&state);
        let t = mount_keeping(store.clone(), &file);
        let before = SystemTime::now();
        t.write_file("new.txt", b"hello").unwrap();
        let after = SystemTime::now();
        let a = t.resolve("new.txt").unwrap();
        assert!(before <= a.mtime && a.mtime <= after, "{last_modified}");
        // The time of the write, which the upload at close does not move.
        let uploaded = Store::get(&store, "new.txt").unwrap().uploaded;
        assert!(a.mtime <= uploaded);
        t.fs.save_times();
        drop(t);

        let t = mount_keeping(store.clone(), &file);
        assert_eq!(t.resolve("new.txt").unwrap().mtime, a.mtime);
        // The server's date of it is this very upload: the exact time stays.
        assert_eq!(t.cat("new.txt").unwrap(), b"hello");
        let b = t.resolve("new.txt").unwrap();
        assert_eq!((b.mtime, b.ctime), (a.mtime, a.mtime), "{last_modified}");
    }
}

#[test]
fn a_media_uploaded_again_elsewhere_takes_its_new_date() {
    let store = new_store(1000);
    seed(&store, "a.txt", b"one");
    let state = tempfile::tempdir().unwrap();
    let file = times_in(&state);
    let t = mount_keeping(store.clone(), &file);
    t.cat("a.txt").unwrap();
    t.fs.save_times();
    drop(t);

    // The same size, other bytes, a later date: the date tells.
    let later = SystemTime::now() + Duration::from_secs(120);
    Store::put_at(
        &store,
        "a.txt",
        Bytes::from_static(b"two"),
        "text/plain",
        None,
        later,
    )
    .unwrap();
    let t = mount_keeping(store.clone(), &file);
    assert_eq!(t.cat("a.txt").unwrap(), b"two");
    assert_eq!(t.resolve("a.txt").unwrap().mtime, whole_seconds(later));
    drop(t);

    // Another size: what was remembered is of other bytes.
    no_last_modified(&store);
    seed(&store, "a.txt", b"three");
    let before = SystemTime::now();
    let t = mount_keeping(store, &file);
    assert!(t.resolve("a.txt").unwrap().mtime >= before);
}

#[test]
fn a_touch_stays_until_the_bytes_change_here_or_elsewhere() {
    let store = new_store(1000);
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    Store::put_at(
        &store,
        "a.txt",
        Bytes::from_static(b"x"),
        "text/plain",
        None,
        hour_ago,
    )
    .unwrap();
    let t = mount_ttl(store.clone(), Duration::ZERO);
    let ino = t.resolve("a.txt").unwrap().ino;
    let chosen = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    t.fs.setattr(
        ino,
        SetAttr {
            mtime: Some(chosen),
            ..Default::default()
        },
    )
    .unwrap();
    t.cat("a.txt").unwrap();
    assert_eq!(t.fs.getattr(ino).unwrap().mtime, chosen);
    // The expiry follows the server's copy, not the touch.
    assert_eq!(
        expires(&t, ino),
        // The date is rounded down: the media may have been uploaded up to a second later.
        crate::fs::times_file::rfc3339_up(
            whole_seconds(hour_ago) + Duration::from_secs(1) + crate::api::RETENTION
        )
    );
    // Other bytes elsewhere, of another size: the listing shows them, and their time ends
    // the one chosen for the bytes before (else `rsync -a` would take them for the same).
    let seen = SystemTime::now();
    seed(&store, "a.txt", b"longer");
    t.ls("").unwrap();
    assert_eq!(t.fs.getattr(ino).unwrap().size, 6);
    assert!(t.fs.getattr(ino).unwrap().mtime >= whole_seconds(seen));
    assert!(expires(&t, ino) >= crate::fs::times_file::rfc3339_up(seen + crate::api::RETENTION));
    // A touch again, then a write here: the write's time.
    t.fs.setattr(
        ino,
        SetAttr {
            mtime: Some(chosen),
            ..Default::default()
        },
    )
    .unwrap();
    let before = SystemTime::now();
    t.write_file("a.txt", b"mine").unwrap();
    assert!(t.fs.getattr(ino).unwrap().mtime >= before);
}

#[test]
fn a_rename_keeps_the_mtime_and_dates_the_expiry_anew() {
    let store = new_store(1000);
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    Store::put_at(
        &store,
        "a.txt",
        Bytes::from_static(b"x"),
        "text/plain",
        None,
        hour_ago,
    )
    .unwrap();
    let t = mount(store);
    t.cat("a.txt").unwrap();
    let before = SystemTime::now();
    t.mv("a.txt", "b.txt").unwrap();
    let b = t.resolve("b.txt").unwrap();
    assert_eq!(b.mtime, whole_seconds(hour_ago));
    let soonest = crate::fs::times_file::rfc3339_up(before + crate::api::RETENTION);
    assert!(expires(&t, b.ino) >= soonest, "{}", expires(&t, b.ino));
}

#[test]
fn expires_is_derived_and_listed_for_files_the_server_holds() {
    let store = new_store(1000);
    seed(&store, "a.txt", b"x");
    let t = mount(store);
    let ino = t.resolve("a.txt").unwrap().ino;
    let exp = expires(&t, ino);
    t.reset();
    t.fs.setxattr(ino, &os(XATTR_EXPIRES), b"2000-01-01T00:00:00Z", 0)
        .unwrap();
    t.fs.removexattr(ino, &os(XATTR_EXPIRES)).unwrap();
    assert_eq!(expires(&t, ino), exp);
    assert_eq!(t.stats(), snap(0, 0, 0, 0));
    let list = t.fs.listxattr(ino).unwrap();
    assert!(
        list.windows(XATTR_EXPIRES.len())
            .any(|w| w == XATTR_EXPIRES.as_bytes()),
        "{list:?}"
    );
    // A new file has no expiry until it is uploaded.
    let (a, o) = t.create(ROOT_INO, "new.txt", libc::O_WRONLY);
    assert_eq!(
        errno_of(t.fs.getxattr(a.ino, &os(XATTR_EXPIRES))),
        libc::ENODATA
    );
    t.fs.write(o.fh, 0, b"x").unwrap();
    t.fs.flush(o.fh).unwrap();
    t.fs.release(o.fh).unwrap();
    assert!(t.fs.getxattr(a.ino, &os(XATTR_EXPIRES)).is_ok());
}
