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

#[test]
fn ls_l_costs_one_listing_walk_even_with_a_ttl_of_zero() {
    let emulator = start_emulator(emulator_config());
    for i in 0..200 {
        emulator
            .store()
            .put(
                &format!("f{i:03}.txt"),
                Bytes::from_static(b"x"),
                "text/plain",
                None,
            )
            .unwrap();
    }
    let m = Mount::with(emulator, &["--metadata-ttl", "0s"]);
    m.reset_stats();
    let out = sh_ok(&format!("ls -l {} | grep -c '^-'", q(&m.mnt)));
    assert_eq!(out.trim(), "200");
    let s = m.stats();
    assert_eq!((s.list, s.get), (1, 0), "one ls -l at TTL 0");
}

#[test]
fn after_the_ttl_on_a_multi_page_account_stat_is_free_rm_is_one_delete_and_an_open_one_get() {
    let n = 2_500;
    let m = Mount::with(emulator_with_n(n), &["--metadata-ttl", "1s"]);
    assert_eq!(count_entries(&m), n);
    let f = m.path("d1/m000001.txt");
    sh_ok(&format!("cat {} >/dev/null", q(&f)));
    std::thread::sleep(Duration::from_millis(1200));
    m.reset_stats();
    sh_ok(&format!("stat {} >/dev/null", q(&m.path("d2/m000002.txt"))));
    let s = m.stats();
    assert_eq!(
        (s.list, s.get, s.put, s.delete),
        (0, 0, 0, 0),
        "stat after the TTL"
    );
    sh_ok(&format!("rm {}", q(&m.path("d2/m000002.txt"))));
    let s = m.stats();
    assert_eq!(
        (s.list, s.get, s.put, s.delete),
        (0, 0, 0, 1),
        "rm after the TTL"
    );
    // The cached file: its open checks the bytes with one GET, which the read then uses.
    m.reset_stats();
    sh_ok(&format!("cat {} >/dev/null", q(&f)));
    let s = m.stats();
    assert_eq!(
        (s.list, s.get, s.put, s.delete),
        (0, 1, 0, 0),
        "open after the TTL"
    );
}

#[test]
fn a_redirect_and_a_redirected_loop_cost_one_put_each() {
    let m = Mount::with(start_emulator(emulator_config()), &["--metadata-ttl", "1h"]);
    let mnt = q(&m.mnt);
    m.reset_stats();
    sh_ok(&format!("echo x > {mnt}/one.txt"));
    let s = m.stats();
    assert_eq!((s.list, s.get, s.put), (0, 0, 1), "echo x > f");
    m.reset_stats();
    sh_ok(&format!(
        "for i in $(seq 20); do /bin/echo $i; done > {mnt}/loop.txt"
    ));
    let s = m.stats();
    assert_eq!((s.list, s.get, s.put), (0, 0, 1), "a loop of 20 commands");
}
