//! The design's round-trip budget at scale, through a real mount: request counts from the
//! emulator's stats, asserted exactly, with 10,000 and 100,000 media. A change that costs more
//! requests fails here.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;

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

/// In a subdirectory too: GNU `ls -l d/e` stats `d/e/NAME` by path, so with a TTL of zero the
/// kernel looks `d` and `e` up again for each entry; they answer from the cache while the
/// listing of `d/e` is open. Before, each entry cost a listing (about 205 for 200 files).
/// What remains is a constant: the lookups of `d` and `e` for the `stat` and xattr reads `ls`
/// makes before it opens the directory (outside a listing a TTL of zero asks each time), and
/// the listing itself.
#[test]
fn ls_l_of_a_subdirectory_costs_no_listing_per_entry_with_a_ttl_of_zero() {
    let emulator = start_emulator(emulator_config());
    for i in 0..200 {
        emulator
            .store()
            .put(
                &format!("d/e/f{i:03}.txt"),
                Bytes::from_static(b"x"),
                "text/plain",
                None,
            )
            .unwrap();
    }
    let m = Mount::with(emulator, &["--metadata-ttl", "0s"]);
    let e = q(&m.path("d/e"));
    m.reset_stats();
    sh_ok(&format!("ls -ld {e}"));
    let before_the_listing = m.stats().list;
    m.reset_stats();
    let out = sh_ok(&format!("ls -l {e} | grep -c '^-'"));
    assert_eq!(out.trim(), "200");
    let s = m.stats();
    assert_eq!(s.get, 0);
    assert!(
        s.list <= before_the_listing + 3,
        "ls -l d/e at TTL 0: {} listings, ls -ld d/e alone {before_the_listing}",
        s.list
    );
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

/// With `--writeback`, `rm` and `mv` cost only what is left to send: nothing for a file removed
/// before its upload, 1 PUT for one renamed before it (the server down meanwhile, so none was
/// sent; counted from when it is back), 1 PUT and 1 DELETE for a media renamed (its bytes
/// read before: no GET), 1 DELETE for a media removed without ever being read. Counted until a
/// `sync` of the mount returns.
#[test]
fn with_writeback_rm_and_mv_cost_only_what_is_left_to_send() {
    let m = Mount::with(
        emulator_with_n(1000),
        &[
            "--writeback",
            "--metadata-ttl",
            "1h",
            // The closes stage while the first background upload still retries (uploads are
            // not failing yet): a retry time well over what the commands take.
            "--retry-time",
            "3s",
        ],
    );
    let mnt = q(&m.mnt);
    assert_eq!(count_entries(&m), 1000);
    sh_ok(&format!("cat {mnt}/d3/m000003.txt >/dev/null"));
    server_down(&m.emulator);
    sh_ok(&format!(
        "mkdir {mnt}/new && for f in a b c d e; do echo $f > {mnt}/new/$f; done && \
         rm {mnt}/new/a {mnt}/new/b && mv {mnt}/new/c {mnt}/new/c2"
    ));
    server_up(&m.emulator);
    m.reset_stats();
    sh_ok(&format!("sync {mnt}"));
    let s = m.stats();
    assert_eq!(
        (s.list, s.get, s.put, s.delete),
        (0, 0, 3, 0),
        "new/c2, d and e"
    );
    m.reset_stats();
    sh_ok(&format!(
        "mv {mnt}/d3/m000003.txt {mnt}/d3/moved.txt && rm {mnt}/d4/m000004.txt && sync {mnt}"
    ));
    let s = m.stats();
    assert_eq!(
        (s.list, s.get, s.put, s.delete),
        (0, 0, 1, 2),
        "d3/moved.txt; d3/m000003.txt and d4/m000004.txt"
    );
    for (name, body) in [("new/c2", &b"c\n"[..]), ("d3/moved.txt", b"0123456789")] {
        assert_eq!(m.stored(name).as_deref(), Some(body), "{name}");
    }
    for gone in [
        "new/a",
        "new/b",
        "new/c",
        "d3/m000003.txt",
        "d4/m000004.txt",
    ] {
        assert_eq!(m.stored(gone), None, "{gone}");
    }
}

/// `n` text media `f/NNN.txt` in one folder, each saying its number.
fn emulator_with_folder(n: usize) -> bwmediafs::emulator::Emulator {
    let emulator = start_emulator(emulator_config());
    for i in 0..n {
        emulator
            .store()
            .put(
                &format!("f/{i:03}.txt"),
                Bytes::from(format!("media {i:03}\n")),
                "text/plain",
                None,
            )
            .unwrap();
    }
    emulator
}

/// The GETs so far, once the fetches ahead that reads started are over (no new request for
/// 300 ms).
fn settled_gets(m: &Mount) -> u64 {
    let t0 = std::time::Instant::now();
    let mut last = m.stats();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = m.stats();
        if now == last || t0.elapsed() > OP_TIMEOUT {
            return now.get;
        }
        last = now;
    }
}

/// `cat` of `f/FIRST.txt` to `f/LAST.txt`, each in a process of its own, as a script does;
/// checks what they printed.
fn cat_range(m: &Mount, first: usize, last: usize) {
    let out = sh_ok(&format!(
        "cd {} && for i in $(seq -f %03g {first} {last}); do cat f/$i.txt; done",
        q(&m.mnt)
    ));
    let want: String = (first..=last).map(|i| format!("media {i:03}\n")).collect();
    assert_eq!(out, want);
}

#[test]
fn cat_of_one_media_after_ls_is_one_get_and_two_neighbours_cost_one_more() {
    let m = Mount::with(emulator_with_folder(40), &["--metadata-ttl", "1h"]);
    sh_ok(&format!("ls {} >/dev/null", q(&m.path("f"))));
    m.reset_stats();
    cat_range(&m, 10, 10);
    assert_eq!(
        settled_gets(&m),
        1,
        "cat of one media after ls: no fetch ahead"
    );
    m.reset_stats();
    cat_range(&m, 20, 21);
    assert_eq!(
        settled_gets(&m),
        3,
        "two neighbours: their GETs and one ahead"
    );
}

#[test]
fn a_scan_fetches_ahead_and_one_stopped_after_20_files_wastes_only_the_window() {
    let m = Mount::with(emulator_with_folder(60), &["--metadata-ttl", "1h"]);
    sh_ok(&format!("ls {} >/dev/null", q(&m.path("f"))));
    m.reset_stats();
    cat_range(&m, 0, 19);
    // Each media read is fetched once (ahead of its cat or by it), and the window of 8 that
    // was ahead when the scan stopped: no more.
    assert_eq!(settled_gets(&m), 28, "a scan of 20 files, stopped");
    // The scan goes on where it stopped: those 8 are read from memory.
    m.reset_stats();
    cat_range(&m, 20, 27);
    assert_eq!(settled_gets(&m), 8, "the next 8 were there; 8 more ahead");
}

#[test]
fn read_ahead_0_fetches_nothing_ahead_through_the_mount() {
    let m = Mount::with(
        emulator_with_folder(30),
        &["--metadata-ttl", "1h", "--read-ahead", "0"],
    );
    sh_ok(&format!("ls {} >/dev/null", q(&m.path("f"))));
    m.reset_stats();
    cat_range(&m, 0, 19);
    assert_eq!(settled_gets(&m), 20);
}

#[test]
fn cp_r_of_a_tree_of_messages_fetches_every_media_once() {
    // The inbound layout: every message its own folder, MSGID/0/name.
    let emulator = start_emulator(emulator_config());
    let msgs: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            (
                format!("m-{i:04}/0/photo{i}.jpg"),
                bytes(2000 + i * 10, i as u64),
            )
        })
        .collect();
    for (name, body) in &msgs {
        emulator
            .store()
            .put(name, Bytes::from(body.clone()), "image/jpeg", None)
            .unwrap();
    }
    let m = Mount::with(emulator, &["--metadata-ttl", "1h"]);
    let dest = tempfile::tempdir().unwrap();
    m.reset_stats();
    sh_ok(&format!("cp -r {}/. {}", q(&m.mnt), q(dest.path())));
    for (name, body) in &msgs {
        assert_eq!(
            &std::fs::read(dest.path().join(name)).unwrap(),
            body,
            "{name}"
        );
    }
    let s = m.stats();
    assert_eq!(settled_gets(&m), 40, "each media once");
    assert_eq!((s.put, s.delete), (0, 0));
}

#[test]
fn a_second_cat_of_more_media_than_the_cache_holds_is_free() {
    // 8 MB of media through a 4 MB data cache: the kernel's page cache still holds them all,
    // and keeps them for the bodies our cache evicted (their fingerprints say which bytes).
    let media: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("big/{i}.bin"), bytes(1_000_000, i)))
        .collect();
    let refs: Vec<(&str, &[u8])> = media
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let m = Mount::with(
        emulator_with(&refs),
        &["--metadata-ttl", "1h", "--cache-size", "4M"],
    );
    let all = format!("cat {}/big/* | md5sum", q(&m.mnt));
    let first = sh_ok(&all);
    settled_gets(&m);
    m.reset_stats();
    assert_eq!(sh_ok(&all), first);
    let s = m.stats();
    assert_eq!((s.list, s.get), (0, 0), "cat of them all again");
}
