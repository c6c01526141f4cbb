//! The design's round-trip budget at scale, through a real mount: request counts from the
//! emulator's stats, asserted exactly, with 10,000 and 100,000 media. A change that costs more
//! requests fails here.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;

fn emulator_with_n(n: usize) -> bwmediafs::emulator::Emulator {
    let emulator = start_emulator(emulator_config());
    let body = Bytes::from_static(b"0123456789");
    for i in 0..n {
        emulator
            .store()
            .put(
                &format!("d{}/m{i:06}.txt", i % 10),
                body.clone(),
                "text/plain",
                None,
            )
            .unwrap();
    }
    emulator
}

fn pages(n: usize) -> u64 {
    n.div_ceil(1000) as u64
}

fn count_entries(m: &Mount) -> usize {
    let out = sh_ok(&format!("ls -lR {} | grep -c '^-'", q(&m.mnt)));
    out.trim().parse().unwrap()
}

fn budget_at_scale(n: usize) {
    let m = Mount::with(emulator_with_n(n), &["--metadata-ttl", "1h"]);
    // mount: 1 list page.
    assert_eq!(m.stats().list, 1, "mount");
    // The first `ls -lR` continues the walk the mount started: ceil(N/1000) pages in all.
    assert_eq!(count_entries(&m), n);
    let s = m.stats();
    assert_eq!(
        (s.list, s.get, s.put, s.delete),
        (pages(n), 0, 0, 0),
        "mount + cold ls -lR"
    );
    // Again within the TTL: nothing.
    m.reset_stats();
    assert_eq!(count_entries(&m), n);
    let s = m.stats();
    assert_eq!((s.list, s.get), (0, 0), "ls -lR again within the TTL");
    // cat after ls: 1 GET; again: 0.
    let name = format!("d3/m{:06}.txt", n - 7);
    sh_ok(&format!("cat {} >/dev/null", q(&m.path(&name))));
    sh_ok(&format!("cat {} >/dev/null", q(&m.path(&name))));
    let s = m.stats();
    assert_eq!((s.list, s.get), (0, 1), "cat after ls, twice");
}

#[test]
fn budget_with_10_000_media() {
    budget_at_scale(10_000);
}

#[test]
fn budget_with_100_000_media() {
    budget_at_scale(100_000);
}

#[test]
fn an_expired_listing_is_walked_again_in_ceil_n_over_1000_pages() {
    let n = 10_000;
    let m = Mount::with(emulator_with_n(n), &["--metadata-ttl", "1s"]);
    assert_eq!(count_entries(&m), n);
    std::thread::sleep(Duration::from_millis(1500));
    m.reset_stats();
    sh_ok(&format!("ls -l {} >/dev/null", q(&m.path("d0"))));
    let s = m.stats();
    assert_eq!((s.list, s.get), (pages(n), 0), "cold ls -l after the TTL");
}

#[test]
fn a_cold_cat_of_a_name_never_listed_is_one_get_with_100_000_media() {
    let n = 100_000;
    let emulator = emulator_with_n(n);
    emulator
        .store()
        .put(
            "zz-last.txt",
            Bytes::from_static(b"0123456789"),
            "text/plain",
            None,
        )
        .unwrap();
    let m = Mount::with(emulator, &[]);
    m.reset_stats();
    // zz-last.txt is on the last page: the mount never listed it.
    let p = m.path("zz-last.txt");
    let body = timed("cat", move || std::fs::read(p).unwrap());
    assert_eq!(body, b"0123456789");
    let s = m.stats();
    assert_eq!(s.get, 1, "one GET for the file");
    assert_eq!(s.put + s.delete, 0);
}
