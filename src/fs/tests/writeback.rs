//! Write-back in the core: what a staged deletion hides, and that a new upload of the name is
//! never overtaken by it.

use super::*;
use crate::fs::writeback::WritebackOptions;

fn mount_writeback(store: Arc<Store>) -> T {
    mount_with(store, |o| {
        o.metadata_ttl = Duration::from_millis(50);
        o.read_ahead = 0;
        o.writeback = Some(WritebackOptions {
            journal_dir: o.recovery_dir.with_file_name("journal"),
            journal_limit: 1 << 30,
            drain_timeout: Duration::from_secs(1),
        });
    })
}

#[test]
fn a_staged_deletion_hides_the_name_from_listings_while_the_server_still_holds_it() {
    let store = new_store(1000);
    seed(&store, "d/a.jpg", b"a");
    seed(&store, "d/b.jpg", b"b");
    let t = mount_writeback(store);
    assert_eq!(t.ls("d").unwrap(), ["a.jpg", "b.jpg"]);
    // The server refuses every DELETE for now (a failure that may pass).
    *t.faults.delete.lock() = Some(ApiError::Status {
        status: 503,
        kind: None,
        description: None,
    });
    t.rm("d/a.jpg").expect("rm is staged");
    std::thread::sleep(Duration::from_millis(100));
    // A new listing walk sees a.jpg on the server; it stays gone here.
    assert!(t.store.get("d/a.jpg").is_ok());
    assert_eq!(t.ls("d").unwrap(), ["b.jpg"]);
    assert!(matches!(t.resolve("d/a.jpg"), Err(FsError::NotFound)));
    // Once the server takes deletions, a sync sends it.
    *t.faults.delete.lock() = None;
    t.fs.fsyncdir(ROOT_INO).expect("sync");
    assert!(t.store.get("d/a.jpg").is_err());
    assert_eq!(t.ls("d").unwrap(), ["b.jpg"]);
}

#[test]
fn a_name_written_again_cancels_its_staged_deletion() {
    let store = new_store(1000);
    seed(&store, "n.txt", b"old");
    let t = mount_writeback(store);
    t.ls("").unwrap();
    *t.faults.delete.lock() = Some(ApiError::Status {
        status: 503,
        kind: None,
        description: None,
    });
    t.rm("n.txt").expect("rm is staged");
    t.write_file("n.txt", b"new").expect("staged");
    *t.faults.delete.lock() = None;
    t.fs.fsyncdir(ROOT_INO).expect("sync");
    std::thread::sleep(Duration::from_millis(1200)); // past the deletion's backoff
    assert_eq!(&t.store.get("n.txt").unwrap().body[..], b"new");
    assert_eq!(t.ls("").unwrap(), ["n.txt"]);
}

fn e503() -> ApiError {
    ApiError::Status {
        status: 503,
        kind: None,
        description: None,
    }
}

/// The names of the journal's versions, oldest first.
fn journal_names(t: &T) -> Vec<String> {
    journal_entries(t)
        .into_iter()
        .map(|(_, c)| c.name)
        .collect()
}

#[test]
fn a_staged_file_renamed_before_its_upload_is_journaled_under_its_new_name() {
    let t = mount_writeback(new_store(1000));
    *t.faults.put.lock() = Some(e503());
    t.write_file("a.txt", b"renamed before upload")
        .expect("staged");
    std::thread::sleep(Duration::from_millis(200));
    t.mv("a.txt", "b.txt").expect("mv");
    let names = journal_names(&t);
    eprintln!("journal: {names:?}");
    assert!(names.iter().any(|n| n == "b.txt"), "{names:?}");
}

#[test]
fn fsync_of_a_read_only_descriptor_of_a_staged_file_is_strict() {
    let t = mount_writeback(new_store(1000));
    *t.faults.put.lock() = Some(e503());
    t.write_file("c.txt", b"x").expect("staged");
    let ino = t.resolve("c.txt").unwrap().ino;
    let o = t.fs.open(ino, libc::O_RDONLY, 0).unwrap();
    let r = t.fs.fsync(o.fh);
    eprintln!("fsync: {r:?}, stored: {:?}", t.stored("c.txt"));
    assert!(
        r.is_err() || t.stored("c.txt").is_some(),
        "fsync returned {r:?}"
    );
}

#[test]
fn a_removed_media_written_again_in_an_outage_does_not_come_back() {
    let store = new_store(1000);
    seed(&store, "n.txt", b"old");
    let t = mount_writeback(store);
    t.ls("").unwrap();
    *t.faults.delete.lock() = Some(e503());
    *t.faults.put.lock() = Some(e503());
    t.rm("n.txt").expect("rm is staged");
    std::thread::sleep(Duration::from_millis(200)); // the background DELETE fails once
    let w = t.write_file("n.txt", b"new");
    eprintln!("rewrite: {w:?}");
    *t.faults.delete.lock() = None;
    *t.faults.put.lock() = None;
    if w.is_ok() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = t.rm("n.txt");
    let _ = t.fs.fsyncdir(ROOT_INO);
    std::thread::sleep(Duration::from_millis(1500));
    eprintln!("server: {:?}, ls: {:?}", t.stored("n.txt"), t.ls(""));
    assert_eq!(t.stored("n.txt"), None, "the removed media came back");
}

#[test]
fn a_handle_keeps_reading_a_staged_file_removed_meanwhile() {
    let t = mount_writeback(new_store(1000));
    *t.faults.put.lock() = Some(e503());
    t.write_file("r.txt", b"still readable").expect("staged");
    std::thread::sleep(Duration::from_millis(200));
    let ino = t.resolve("r.txt").unwrap().ino;
    let o = t.fs.open(ino, libc::O_RDWR, 0).unwrap();
    t.rm("r.txt").expect("rm");
    let r = t.read_all(o.fh);
    eprintln!("read after rm: {r:?}");
    assert_eq!(r.unwrap(), b"still readable");
}

#[test]
fn the_uploader_loading_a_staged_version_never_uploads_older_bytes() {
    let t = mount_writeback(new_store(1000));
    t.faults
        .put_delay_ms
        .store(30, std::sync::atomic::Ordering::SeqCst);
    crate::fs::writeback::journal::BODY_DELAY_MS.store(12, std::sync::atomic::Ordering::SeqCst);
    let content = |i: usize| -> Vec<u8> {
        let mut v = vec![(i % 251) as u8; 3_500_000];
        v[..8].copy_from_slice(&(i as u64).to_le_bytes());
        v
    };
    let wb = t.fs.writeback.as_ref().unwrap();
    let mut bad = Vec::new();
    let mut n = 0;
    for round in 0..60 {
        for _ in 0..2 {
            n += 1;
            t.write_file("f.bin", &content(n)).unwrap();
        }
        std::thread::sleep(Duration::from_micros((round * 997 % 40_000) as u64));
        n += 1;
        let w = t.write_file("f.bin", &content(n));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while wb.uploader.pending() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let stored = t
            .stored("f.bin")
            .map(|s| u64::from_le_bytes(s[..8].try_into().unwrap()));
        let shown = t
            .cat("f.bin")
            .map(|s| u64::from_le_bytes(s[..8].try_into().unwrap()));
        if w.is_err() || stored != Some(n as u64) || shown.as_ref().ok() != Some(&(n as u64)) {
            bad.push((n, w.err(), stored, shown));
        }
    }
    eprintln!(
        "lost closes: {bad:?}; journal now: {} versions, uploader pending {}",
        journal_names(&t).len(),
        wb.uploader.pending()
    );
    assert!(bad.is_empty());
}

#[test]
fn one_refusal_for_good_does_not_turn_write_back_off() {
    let t = mount_writeback(new_store(1000));
    *t.faults.put_of.lock() = Some(("bad.bin".into(), ApiError::UnsupportedType("x".into())));
    t.write_file("bad.bin", b"refused").expect("staged");
    std::thread::sleep(Duration::from_millis(300));
    let wb = t.fs.writeback.as_ref().unwrap();
    eprintln!("failing after one 415: {}", wb.uploader.failing());
    *t.faults.put.lock() = Some(e503());
    let r = t.write_file("later.txt", b"x");
    std::thread::sleep(Duration::from_millis(2000));
    eprintln!(
        "close of another file 2 s later: {r:?}; failing {}",
        wb.uploader.failing()
    );
    assert!(r.is_ok());
}

#[test]
fn readers_loading_a_staged_version_never_bring_back_older_bytes() {
    let t = std::sync::Arc::new(mount_writeback(new_store(1000)));
    let content = |i: usize| -> Vec<u8> {
        let mut v = vec![(i % 251) as u8; 3_000_000];
        v[..8].copy_from_slice(&(i as u64).to_le_bytes());
        v
    };
    t.write_file("f.bin", &content(0)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(a) = t.resolve("f.bin") {
                        if let Ok(o) = t.fs.open(a.ino, libc::O_RDONLY, 0) {
                            let _ = t.fs.read(o.fh, 0, 4096);
                            let _ = t.fs.release(o.fh);
                        }
                    }
                }
            })
        })
        .collect();
    let mut bad = Vec::new();
    for i in 1..150 {
        t.write_file("f.bin", &content(i)).unwrap();
        std::thread::sleep(Duration::from_millis(3));
        let got = t.cat("f.bin").unwrap();
        let n = u64::from_le_bytes(got[..8].try_into().unwrap());
        if n != i as u64 {
            bad.push((i, n));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    t.fs.fsyncdir(ROOT_INO).unwrap();
    let stored = t.stored("f.bin").unwrap();
    eprintln!(
        "stale reads after close: {bad:?}; server holds version {}",
        u64::from_le_bytes(stored[..8].try_into().unwrap())
    );
    assert!(bad.is_empty());
}

/// Hold every PUT, and wait until `n` have begun: an upload stopped between its start and the
/// server storing it.
fn hold_puts_until_started(t: &T, n: u64) {
    use std::sync::atomic::Ordering::SeqCst;
    t.faults.hold_puts.store(true, SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.faults.puts_started.load(SeqCst) < n {
        assert!(std::time::Instant::now() < deadline, "no PUT began");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn release_puts(t: &T) {
    t.faults
        .hold_puts
        .store(false, std::sync::atomic::Ordering::SeqCst);
}

/// Wait until the journal holds nothing.
fn until_journal_empty(t: &T) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !journal_names(t).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the journal keeps {:?}",
            journal_names(t)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_truncate_during_a_background_upload_is_sent_after_it() {
    let t = mount_writeback(new_store(1000));
    t.faults
        .hold_puts
        .store(true, std::sync::atomic::Ordering::SeqCst);
    t.write_file("f.txt", b"0123456789").expect("staged");
    hold_puts_until_started(&t, 1);
    let ino = t.resolve("f.txt").unwrap().ino;
    t.resize(ino, 3)
        .expect("a truncate while the upload is held");
    assert_eq!(t.cat("f.txt").unwrap(), b"012");
    release_puts(&t);
    t.fs.fsyncdir(ROOT_INO).expect("sync");
    assert_eq!(t.stored("f.txt").unwrap(), b"012");
    until_journal_empty(&t);
    assert_eq!(t.cat("f.txt").unwrap(), b"012");
}

#[test]
fn a_header_change_during_a_background_upload_is_sent_after_it() {
    let t = mount_writeback(new_store(1000));
    t.faults
        .hold_puts
        .store(true, std::sync::atomic::Ordering::SeqCst);
    t.write_file("h.bin", b"bytes").expect("staged");
    hold_puts_until_started(&t, 1);
    let ino = t.resolve("h.bin").unwrap().ino;
    // The change waits for the upload under way, then is staged and sent after it.
    std::thread::scope(|s| {
        let set = s.spawn(|| t.fs.setxattr(ino, &os(XATTR_CONTENT_TYPE), b"image/png", 0));
        std::thread::sleep(Duration::from_millis(100));
        release_puts(&t);
        set.join().unwrap().expect("a type set during the upload");
    });
    t.fs.fsyncdir(ROOT_INO).expect("sync");
    let stored = t.store.get("h.bin").unwrap();
    assert_eq!(&stored.body[..], b"bytes");
    assert_eq!(stored.content_type, "image/png");
    until_journal_empty(&t);
}

#[test]
fn two_closes_of_one_file_staging_at_once_keep_one_version() {
    let t = mount_writeback(new_store(1000));
    hold_puts_until_started(&t, 0);
    let (_, a) = t.create(ROOT_INO, "two.txt", libc::O_WRONLY);
    let ino = t.resolve("two.txt").unwrap().ino;
    let b = t.fs.open(ino, libc::O_WRONLY, 0).unwrap();
    t.fs.write(a.fh, 0, b"written through one, closed by both")
        .unwrap();
    let fs = &t.fs;
    std::thread::scope(|s| {
        let first = s.spawn(|| fs.flush(a.fh));
        let second = s.spawn(|| fs.flush(b.fh));
        first.join().unwrap().expect("a close");
        second.join().unwrap().expect("the other close");
    });
    let staged = journal_names(&t);
    assert!(staged == ["two.txt"], "one version staged: {staged:?}");
    t.fs.release(a.fh).unwrap();
    t.fs.release(b.fh).unwrap();
    release_puts(&t);
    t.fs.fsyncdir(ROOT_INO).expect("sync");
    assert_eq!(
        t.stored("two.txt").unwrap(),
        b"written through one, closed by both"
    );
    until_journal_empty(&t);
}

/// The journal's entries: each version's sequence number and its header.
fn journal_entries(t: &T) -> Vec<(u64, crate::fs::writeback::journal::Change)> {
    // The mount holds the journal's lock: its files are read as they are.
    let mut out = Vec::new();
    for e in std::fs::read_dir(t.tmp.path().join("journal")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "put") {
            let seq = u64::from_str_radix(p.file_stem().unwrap().to_str().unwrap(), 16).unwrap();
            let text = std::fs::read(&p).unwrap();
            let line = text.split(|b| *b == b'\n').nth(1).unwrap();
            out.push((seq, serde_json::from_slice(line).unwrap()));
        }
    }
    out.sort_by_key(|(seq, _)| *seq);
    out
}

/// `mv a b; mv b c` of a stored file before any upload: the deletion of `a` must wait for the
/// upload of `c` even after a crash, when `b`'s version has left the journal. So it names
/// `c`'s version in the journal.
#[test]
fn a_deletion_waits_for_the_newest_upload_of_a_file_renamed_twice() {
    use crate::fs::writeback::journal::Op;
    let store = new_store(1000);
    seed(&store, "a.txt", b"stored");
    let t = mount_writeback(store);
    assert_eq!(t.cat("a.txt").unwrap(), b"stored");
    *t.faults.put.lock() = Some(e503());
    t.mv("a.txt", "b.txt").expect("mv a b");
    t.mv("b.txt", "c.txt").expect("mv b c");
    let entries = journal_entries(&t);
    let put_c = entries
        .iter()
        .find(|(_, c)| c.op == Op::Put && c.name == "c.txt")
        .map(|(seq, _)| *seq)
        .expect("c.txt staged");
    let delete_a = entries
        .iter()
        .find(|(_, c)| c.op == Op::Delete && c.name == "a.txt")
        .map(|(_, c)| c.after)
        .expect("the deletion of a.txt staged");
    assert_eq!(delete_a, Some(put_c), "journal: {entries:?}");
    *t.faults.put.lock() = None;
    t.fs.fsyncdir(ROOT_INO).expect("sync");
    assert_eq!(t.stored("c.txt").unwrap(), b"stored");
    assert_eq!(t.stored("a.txt"), None);
    assert_eq!(t.stored("b.txt"), None);
}

/// `mv a b; mv b a` of a stored file before any upload: the deletion of `a` waits for the file's
/// upload, which is now under `a` itself and ends that deletion when it stores. Neither the
/// background nor `sync` may wait on itself for it, and `a` keeps its bytes.
#[test]
fn a_file_renamed_back_before_its_upload_keeps_its_name_and_nothing_hangs() {
    let store = new_store(1000);
    seed(&store, "a.txt", b"stored");
    let t = mount_writeback(store);
    assert_eq!(t.cat("a.txt").unwrap(), b"stored");
    *t.faults.put.lock() = Some(e503());
    t.mv("a.txt", "b.txt").expect("mv a b");
    t.mv("b.txt", "a.txt").expect("mv b a");
    *t.faults.put.lock() = None;
    let (done, finished) = std::sync::mpsc::channel();
    let fs = t.fs.clone();
    std::thread::spawn(move || {
        let _ = done.send(fs.fsyncdir(ROOT_INO));
    });
    let synced = finished
        .recv_timeout(Duration::from_secs(20))
        .expect("sync hangs");
    synced.expect("sync");
    std::thread::sleep(Duration::from_millis(1500)); // past the deletion's backoff
    assert_eq!(t.stored("a.txt").unwrap(), b"stored");
    assert_eq!(t.stored("b.txt"), None);
    assert_eq!(t.ls("").unwrap(), ["a.txt"]);
}

/// A file renamed over a media the server holds, then removed before its upload: the media it
/// replaced is deleted too, not shown again at the next listing.
#[test]
fn a_file_renamed_over_a_stored_media_then_removed_leaves_neither() {
    // Each on a mount of its own: the first operation is staged before any background upload
    // fails (after one, closes and renames of stored files send themselves).
    for stored_source in [true, false] {
        let store = new_store(1000);
        seed(&store, "a.txt", b"stored a");
        seed(&store, "b.txt", b"stored b");
        let t = mount_writeback(store);
        if stored_source {
            // A stored file over another.
            assert_eq!(t.cat("a.txt").unwrap(), b"stored a");
            *t.faults.put.lock() = Some(e503());
            t.mv("a.txt", "b.txt").expect("mv a b");
        } else {
            // A new file over another.
            *t.faults.put.lock() = Some(e503());
            t.write_file("c.txt", b"new c").expect("staged");
            t.mv("c.txt", "b.txt").expect("mv c b");
        }
        t.rm("b.txt").expect("rm b");
        *t.faults.put.lock() = None;
        t.fs.fsyncdir(ROOT_INO).expect("sync");
        std::thread::sleep(Duration::from_millis(1500)); // past any backoff
        t.fs.fsyncdir(ROOT_INO).expect("sync");
        assert_eq!(t.stored("b.txt"), None, "stored source: {stored_source}");
        assert_eq!(t.stored("c.txt"), None);
        let left = t.ls("").unwrap();
        let want: &[&str] = if stored_source { &[] } else { &["a.txt"] };
        assert_eq!(left, want, "stored source: {stored_source}");
    }
}

/// A stored file renamed twice before its upload gets the type of its last name, as two copies
/// made at once would.
#[test]
fn a_file_renamed_twice_before_its_upload_gets_its_last_names_type() {
    let store = new_store(1000);
    Store::put(
        &store,
        "a.jpg",
        Bytes::from_static(b"jpeg"),
        "image/jpeg",
        None,
    )
    .unwrap();
    let t = mount_writeback(store);
    assert_eq!(t.cat("a.jpg").unwrap(), b"jpeg");
    *t.faults.put.lock() = Some(e503());
    t.mv("a.jpg", "b.png").expect("mv a b");
    t.mv("b.png", "c.gif").expect("mv b c");
    *t.faults.put.lock() = None;
    t.fs.fsyncdir(ROOT_INO).expect("sync");
    assert_eq!(t.store.get("c.gif").unwrap().content_type, "image/gif");
    assert_eq!(t.stored("a.jpg"), None);
}
