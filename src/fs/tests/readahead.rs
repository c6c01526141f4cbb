//! Read-ahead across files: what a scan fetches ahead, what it costs when there is no scan,
//! how much memory it takes, and what a reader gets when a fetched file fails, changes or goes.

use super::*;
use std::sync::atomic::Ordering;

/// `n` media of `len` bytes in folder `f`, each filled with its number.
fn folder(n: usize, len: usize) -> Arc<Store> {
    let store = new_store(1000);
    for i in 0..n {
        seed(&store, &name(i), &vec![i as u8; len]);
    }
    store
}

fn name(i: usize) -> String {
    format!("f/{i:03}.bin")
}

fn server_error() -> ApiError {
    ApiError::Status {
        status: 500,
        kind: None,
        description: None,
    }
}

impl T {
    /// `cat` of the `i`th media, checked, then wait for the fetches it started.
    fn cat_nth(&self, i: usize, len: usize) {
        assert_eq!(
            self.cat(&name(i)).unwrap(),
            vec![i as u8; len],
            "{}",
            name(i)
        );
        self.fs.read_ahead.settle();
    }
}

#[test]
fn cat_of_one_media_after_ls_fetches_nothing_ahead() {
    let t = mount(folder(30, 100));
    t.ls("f").unwrap();
    t.reset();
    t.cat_nth(10, 100);
    assert_eq!(t.stats(), snap(0, 1, 0, 0));
}

#[test]
fn two_neighbours_read_in_turn_cost_one_get_ahead() {
    let t = mount(folder(30, 100));
    t.ls("f").unwrap();
    t.reset();
    t.cat_nth(10, 100);
    t.cat_nth(11, 100);
    assert_eq!(t.stats(), snap(0, 3, 0, 0));
    // The one fetched ahead is the next one: reading it costs nothing.
    t.cat_nth(12, 100);
    assert_eq!(
        t.stats().get,
        5,
        "12 read from the cache, 13 and 14 fetched ahead"
    );
}

#[test]
fn the_window_doubles_while_used_and_a_stopped_scan_wastes_only_the_window() {
    let t = mount(folder(40, 100));
    t.ls("f").unwrap();
    t.reset();
    let mut gets = Vec::new();
    for i in 0..20 {
        t.cat_nth(i, 100);
        gets.push(t.stats().get);
    }
    // Windows 0, 1, 2, 4, 8, 8, ...: the GETs so far after each read.
    let want: Vec<u64> = [1, 3, 5, 8, 13].into_iter().chain(14..=28).collect();
    assert_eq!(gets, want);
    // The scan stopped at 20: 8 bodies were fetched for nothing, and no more come.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(t.stats().get, 28);
}

#[test]
fn read_ahead_0_fetches_nothing_ahead() {
    let t = mount_with(folder(20, 100), |o| o.read_ahead = 0);
    t.ls("f").unwrap();
    t.reset();
    for i in 0..10 {
        t.cat_nth(i, 100);
    }
    assert_eq!(t.stats().get, 10);
}

#[test]
fn the_largest_window_is_the_setting() {
    let t = mount_with(folder(30, 100), |o| o.read_ahead = 2);
    t.ls("f").unwrap();
    t.reset();
    for i in 0..10 {
        t.cat_nth(i, 100);
    }
    assert_eq!(t.stats().get, 12, "10 read, 2 ahead");
}

#[test]
fn messages_each_in_a_folder_of_its_own_are_one_scan() {
    // The inbound layout: MSGID/0/name, one media each.
    let store = new_store(1000);
    let msg = |i: usize| format!("m-{i:04}/0/photo{i}.jpg");
    for i in 0..30 {
        seed(&store, &msg(i), &[i as u8; 50]);
    }
    let t = mount(store);
    t.ls("").unwrap();
    t.reset();
    for i in 0..20 {
        assert_eq!(t.cat(&msg(i)).unwrap(), vec![i as u8; 50]);
        t.fs.read_ahead.settle();
    }
    assert_eq!(t.stats().get, 28);
}

#[test]
fn bodies_fetched_ahead_take_at_most_a_quarter_of_the_cache() {
    // A quarter of 4,000 bytes: three bodies of 300.
    let t = mount_with(folder(40, 300), |o| o.cache_size = 4000);
    t.ls("f").unwrap();
    t.reset();
    for i in 0..20 {
        t.cat_nth(i, 300);
        let unused = t.fs.content.unused_ahead();
        assert!(unused <= 1000, "{unused} bytes fetched ahead after {i}");
    }
    // The window is capped by the bytes (3 ahead), so the stopped scan wasted 3.
    assert_eq!(t.stats().get, 23);
}

#[test]
fn a_fetch_ahead_that_fails_is_forgotten_and_the_reader_fetches_again() {
    let t = mount(folder(10, 100));
    t.ls("f").unwrap();
    *t.faults.get_of.lock() = Some((name(2), server_error()));
    t.cat_nth(0, 100);
    t.cat_nth(1, 100); // fetches 2 ahead, which fails
    assert_eq!(t.faults.gets_started.load(Ordering::SeqCst), 3);
    // While the server still fails, the reader meets its own error, with a GET of its own
    // (and the scan goes on: 3 is fetched ahead).
    assert_eq!(errno_of(t.cat(&name(2))), libc::EIO);
    t.fs.read_ahead.settle();
    assert_eq!(t.faults.gets_started.load(Ordering::SeqCst), 5);
    // Healed: the next read gets the bytes.
    *t.faults.get_of.lock() = None;
    t.cat_nth(2, 100);
}

#[test]
fn a_file_changed_or_removed_through_the_mount_after_its_fetch_is_read_as_it_is_now() {
    let t = mount(folder(10, 100));
    t.ls("f").unwrap();
    for i in 0..3 {
        t.cat_nth(i, 100); // 3 and 4 are fetched ahead
    }
    assert!(t.fs.content.cached_at(&name(3), t.version_of(&name(3))));
    t.write_file(&name(3), b"new bytes").unwrap();
    t.rm(&name(4)).unwrap();
    assert_eq!(t.cat(&name(3)).unwrap(), b"new bytes");
    assert_eq!(errno_of(t.cat(&name(4))), libc::ENOENT);
    assert_eq!(t.stored(&name(3)).unwrap(), b"new bytes");
}

#[test]
fn a_fetched_file_changed_on_the_server_is_checked_at_open_after_the_ttl() {
    let t = mount_ttl(folder(10, 100), Duration::from_millis(200));
    t.ls("f").unwrap();
    t.cat_nth(0, 100);
    t.cat_nth(1, 100); // 2 is fetched ahead
    seed(&t.store, &name(2), &[9u8; 100]);
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(t.cat(&name(2)).unwrap(), vec![9u8; 100]);
}

impl T {
    fn version_of(&self, path: &str) -> u64 {
        let ns = self.fs.ns.lock();
        let ino = ns.resolve(path).unwrap();
        ns.node(ino).unwrap().content_version()
    }
}

#[test]
fn a_ttl_of_zero_fetches_nothing_ahead() {
    // Every open checks the body again then: a body fetched ahead would be fetched twice.
    let t = mount_ttl(folder(20, 100), Duration::ZERO);
    t.ls("f").unwrap();
    t.reset();
    for i in 0..10 {
        t.cat_nth(i, 100);
    }
    assert_eq!(t.stats().get, 10);
}
