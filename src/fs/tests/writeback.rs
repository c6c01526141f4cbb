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
