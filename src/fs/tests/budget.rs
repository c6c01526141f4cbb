//! The round-trip budget of the design, asserted exactly from the store's request counters.

use super::*;

#[test]
fn mount_costs_one_list_page_which_seeds_the_cache() {
    let store = new_store(1000);
    for i in 0..5 {
        seed(&store, &format!("m{i}.png"), b"x");
    }
    let t = mount(store);
    assert_eq!(t.stats(), snap(1, 0, 0, 0));
    assert_eq!(t.ls("").unwrap().len(), 5);
    let a = t.resolve("m3.png").unwrap();
    assert_eq!(a.size, 1);
    assert_eq!(errno_of(t.resolve("nope")), libc::ENOENT);
    assert_eq!(t.stats(), snap(1, 0, 0, 0));
}

#[test]
fn cold_ls_costs_one_list_per_1000_and_nothing_within_the_ttl() {
    let store = new_store(1000);
    for i in 0..2500 {
        seed(&store, &format!("f{i:05}.jpg"), b"abc");
    }
    let t = mount_ttl(store, Duration::from_millis(300));
    // Right after the mount, the walk its page started is continued: 2 more pages.
    t.reset();
    assert_eq!(t.ls("").unwrap().len(), 2500);
    assert_eq!(t.stats(), snap(2, 0, 0, 0));
    // Cold (after the TTL): ceil(2500/1000) pages, nothing else, `ls -l` lookups included.
    std::thread::sleep(Duration::from_millis(350));
    t.reset();
    let names = t.ls("").unwrap();
    for n in &names {
        assert_eq!(t.resolve(n).unwrap().size, 3);
    }
    assert_eq!(t.stats(), snap(3, 0, 0, 0));
    // Again within the TTL: nothing.
    t.reset();
    assert_eq!(t.ls("").unwrap().len(), 2500);
    assert_eq!(t.resolve("f01234.jpg").unwrap().size, 3);
    assert_eq!(t.stats(), snap(0, 0, 0, 0));
}

/// A whole pass over a directory as the kernel makes it: batches of `batch` entries, an entry
/// that does not fit asked for again, and a last call that hands out nothing.
fn kernel_pass(t: &T, dir: Ino, batch: usize) -> (bool, Vec<String>) {
    let o = t.fs.opendir(dir).unwrap();
    let mut offset = 0;
    let mut names = Vec::new();
    loop {
        let mut got = 0;
        t.fs.readdir(o.fh, offset, false, |e| {
            if got == batch {
                return true; // full: this entry is not taken
            }
            got += 1;
            offset = e.offset;
            if e.name != "." && e.name != ".." {
                names.push(e.name.to_string());
            }
            false
        })
        .unwrap();
        if got == 0 {
            break;
        }
    }
    t.fs.releasedir(o.fh);
    (o.keep_cache, names)
}

#[test]
fn the_kernel_keeps_a_cached_listing_while_it_is_current() {
    let store = new_store(10);
    for i in 0..25 {
        seed(&store, &format!("d/n{i:02}"), b"1");
    }
    seed(&store, "e/x", b"1");
    let t = mount_ttl(store, Duration::from_millis(300));
    let dir = t.resolve("d").unwrap().ino;
    let (keep, names) = kernel_pass(&t, dir, 7);
    assert!(!keep, "nothing cached yet");
    assert_eq!(names.len(), 25);
    let (keep, _) = kernel_pass(&t, dir, 7);
    assert!(keep, "the kernel has the whole listing and nothing changed");
    // A change in another directory does not matter; one in this directory does.
    t.write_file("e/y", b"2").unwrap();
    assert!(kernel_pass(&t, dir, 7).0);
    t.write_file("d/new", b"3").unwrap();
    let (keep, names) = kernel_pass(&t, dir, 7);
    assert!(!keep, "a file was added");
    assert_eq!(names.len(), 26);
    assert!(kernel_pass(&t, dir, 7).0);
    t.rm("d/n00").unwrap();
    assert!(!kernel_pass(&t, dir, 7).0, "a file was removed");
    // A pass that skipped entries did not fill the kernel's cache.
    t.write_file("d/new2", b"4").unwrap();
    let o = t.fs.opendir(dir).unwrap();
    assert!(!o.keep_cache);
    let mut last = 0;
    t.fs.readdir(o.fh, 10, false, |e| {
        last = e.offset;
        false
    })
    .unwrap();
    t.fs.readdir(o.fh, last, false, |_| false).unwrap();
    t.fs.releasedir(o.fh);
    assert!(
        !kernel_pass(&t, dir, 7).0,
        "the last full pass was the one with a seek"
    );
    assert!(kernel_pass(&t, dir, 7).0);
    // Past the TTL the listing is walked again, so the kernel's copy is dropped.
    std::thread::sleep(Duration::from_millis(350));
    assert!(!kernel_pass(&t, dir, 7).0);
}

#[test]
fn readdir_ahead_fetches_the_next_page_for_a_reader_that_came_back() {
    let store = new_store(10);
    for i in 0..35 {
        seed(&store, &format!("d/n{i:02}"), b"1");
    }
    let t = mount_ttl(store, Duration::from_millis(100));
    t.ls("d").unwrap(); // finish the walk the mount started
    std::thread::sleep(Duration::from_millis(150));
    t.reset();
    let dir = t.resolve("d").unwrap().ino;
    let fh = t.fs.opendir(dir).unwrap().fh;
    let mut offset = 0;
    let mut names = Vec::new();
    let mut read = |t: &T, max: usize| {
        let mut got = 0;
        t.fs.readdir(fh, offset, false, |e| {
            if got == max {
                return true;
            }
            offset = e.offset;
            if e.name != "." && e.name != ".." {
                names.push(e.name.to_string());
            }
            got += 1;
            false
        })
        .unwrap();
        got
    };
    read(&t, 5);
    t.fs.readdir_ahead(fh);
    assert_eq!(
        t.stats().list,
        1,
        "no page ahead for a reader that may stop here"
    );
    read(&t, 5);
    t.fs.readdir_ahead(fh);
    assert_eq!(
        t.stats().list,
        2,
        "the reader came back: the next page is fetched"
    );
    while read(&t, 5) > 0 {
        t.fs.readdir_ahead(fh);
    }
    t.fs.readdir_ahead(fh);
    t.fs.releasedir(fh);
    assert_eq!(names.len(), 35);
    assert_eq!(t.stats().list, 4, "ceil(35/10) pages, none after the last");
}

#[test]
fn readdir_streams_the_first_entries_after_one_page() {
    let store = new_store(10);
    for i in 0..35 {
        seed(&store, &format!("n{i:02}"), b"1");
    }
    let t = mount_ttl(store, Duration::from_millis(100));
    t.ls("").unwrap(); // finish the walk the mount started
    std::thread::sleep(Duration::from_millis(150));
    t.reset();
    let fh = t.fs.opendir(ROOT_INO).unwrap().fh;
    let mut seen = Vec::new();
    t.fs.readdir(fh, 0, false, |e| {
        seen.push((e.name.to_string(), e.offset));
        seen.len() >= 5
    })
    .unwrap();
    assert_eq!(t.stats().list, 1, "first entries after one page");
    assert_eq!(seen[0].0, ".");
    assert_eq!(seen[2].0, "n00");
    // The reader continues: more pages as it asks.
    let offset = seen.last().unwrap().1;
    let mut names: Vec<String> = seen.iter().skip(2).map(|s| s.0.clone()).collect();
    names.extend(t.read_dir_from(fh, offset).unwrap());
    t.fs.releasedir(fh);
    assert_eq!(names.len(), 35);
    assert_eq!(t.stats().list, 4);
}

#[test]
fn cold_lookup_of_an_unlisted_name_is_one_get_and_the_read_is_free() {
    let store = new_store(10);
    for i in 0..25 {
        seed(
            &store,
            &format!("p{i:02}.txt"),
            format!("body {i}").as_bytes(),
        );
    }
    let t = mount(store);
    t.reset();
    // p20 is on the third page: never listed.
    let a = t.resolve("p20.txt").unwrap();
    assert_eq!(a.size, 7);
    assert_eq!(t.stats(), snap(0, 1, 0, 0));
    assert_eq!(t.cat("p20.txt").unwrap(), b"body 20");
    assert_eq!(t.stats(), snap(0, 1, 0, 0));
}

#[test]
fn cat_after_ls_is_one_get_and_again_is_free_with_keep_cache() {
    let store = new_store(1000);
    seed(&store, "a.txt", b"hello");
    let t = mount(store);
    t.ls("").unwrap();
    t.reset();
    assert_eq!(t.cat("a.txt").unwrap(), b"hello");
    assert_eq!(t.stats(), snap(0, 1, 0, 0));
    let ino = t.resolve("a.txt").unwrap().ino;
    let o = t.fs.open(ino, libc::O_RDONLY, 0).unwrap();
    assert!(o.keep_cache, "unchanged since the kernel cached it");
    assert_eq!(t.read_all(o.fh).unwrap(), b"hello");
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stats(), snap(0, 1, 0, 0));
}

/// Three bodies of 1,000 bytes in a cache of 2,500: reading them evicts the first.
fn evicted_first() -> T {
    let store = new_store(1000);
    for n in ["a", "b", "c"] {
        seed(&store, &format!("{n}.bin"), &[n.as_bytes()[0]; 1000]);
    }
    let t = mount_with(store, |o| o.cache_size = 2500);
    t.ls("").unwrap();
    for n in ["a", "b", "c"] {
        t.cat(&format!("{n}.bin")).unwrap();
    }
    assert!(t.fs.content.peek("a.bin").is_none(), "a.bin was evicted");
    t.reset();
    t
}

#[test]
fn the_kernel_keeps_its_cache_of_a_body_evicted_from_ours_and_a_read_of_it_must_match() {
    let t = evicted_first();
    let ino = t.resolve("a.bin").unwrap().ino;
    // The kernel's pages are still current: it keeps them, at no request.
    let o = t.fs.open(ino, libc::O_RDONLY, 0).unwrap();
    assert!(
        o.keep_cache,
        "a body evicted from the data cache, unchanged"
    );
    assert_eq!(t.stats(), snap(0, 0, 0, 0));
    // What the kernel evicted since is downloaded again, and is the same bytes.
    assert_eq!(t.read_all(o.fh).unwrap(), vec![b'a'; 1000]);
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stats(), snap(0, 1, 0, 0));
}

#[test]
fn a_reader_kept_on_the_kernels_cache_fails_rather_than_read_a_changed_media() {
    let t = evicted_first();
    let ino = t.resolve("a.bin").unwrap().ino;
    let o = t.fs.open(ino, libc::O_RDONLY, 0).unwrap();
    assert!(o.keep_cache);
    // The media changes on the server before the kernel needs pages it evicted.
    seed(&t.store, "a.bin", &[b'z'; 1000]);
    assert_eq!(errno_of(t.fs.read(o.fh, 0, 4096)), libc::EIO);
    assert_eq!(errno_of(t.fs.read(o.fh, 0, 4096)), libc::EIO, "for good");
    t.fs.release(o.fh).unwrap();
    // The next open drops the kernel's cache and reads the new bytes.
    let o = t.fs.open(ino, libc::O_RDONLY, 0).unwrap();
    assert!(!o.keep_cache);
    assert_eq!(t.read_all(o.fh).unwrap(), vec![b'z'; 1000]);
    t.fs.release(o.fh).unwrap();
}
