//! The data cache and its flights: eviction, versions, single flight, reads while a body arrives.

use super::*;
use crate::api::BodySink;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn media(n: usize) -> Media {
    Media {
        body: Bytes::from(vec![7u8; n]),
        content_type: None,
        cache_control: None,
        last_modified: None,
    }
}

#[test]
fn evicts_least_recently_used_by_bytes() {
    let c = ContentCache::new(100);
    c.insert("a", media(40), 1);
    c.insert("b", media(40), 1);
    assert!(c.get("a", |_| true).is_some()); // a is now the most recent
    c.insert("c", media(40), 1); // evicts b
    assert!(c.get("b", |_| true).is_none());
    assert!(c.get("a", |_| true).is_some());
    assert!(c.get("c", |_| true).is_some());
    assert_eq!(c.used(), 80);
    c.insert("huge", media(101), 1);
    assert!(c.get("huge", |_| true).is_none());
    assert_eq!(c.used(), 80);
    c.remove("a");
    assert_eq!(c.used(), 40);
}

#[test]
fn version_decides_validity() {
    let c = ContentCache::new(100);
    c.insert("a", media(1), 3);
    assert!(c.get("a", |v| v == 3).is_some());
    assert!(c.get("a", |v| v == 4).is_none());
}

#[test]
fn concurrent_fetches_share_one_load() {
    let c = Arc::new(ContentCache::new(1000));
    let loads = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            let loads = loads.clone();
            std::thread::spawn(move || {
                c.fetch(
                    "k",
                    |_| true,
                    || {
                        loads.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        Ok((media(10), 1))
                    },
                )
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().unwrap().body.len(), 10);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

/// One attempt of a download: `len` announced, then `parts`.
fn attempt(sink: &mut FlightSink<'_>, len: u64, parts: &[&[u8]]) {
    sink.start(Some(len));
    feed(sink, parts);
}

/// Each part as one read of the API layer (which reads at most the space offered).
fn feed(sink: &mut FlightSink<'_>, parts: &[&[u8]]) {
    for p in parts {
        let mut rest = *p;
        while !rest.is_empty() {
            let space = sink.space();
            let n = space.len().min(rest.len());
            assert!(n > 0, "no room for the bytes fed");
            space[..n].copy_from_slice(&rest[..n]);
            sink.advance(n);
            rest = &rest[n..];
        }
    }
}

fn media_of(body: Bytes) -> Media {
    Media {
        body,
        content_type: None,
        cache_control: None,
        last_modified: None,
    }
}

fn lead(c: &ContentCache) -> Leader<'_> {
    match c.begin("k", |_| true) {
        Fetch::Lead(l) => l,
        _ => panic!("the first fetch leads"),
    }
}

#[test]
fn readers_get_their_bytes_while_the_rest_downloads() {
    let c = ContentCache::new(1000);
    let leader = lead(&c);
    let flight = leader.flight().clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let early = Early {
        offset: 0,
        size: 4,
        reply: Box::new(move |r| tx.send(r).unwrap()),
    };
    let mut sink = FlightSink::new(&flight, Some(early));
    let Fetch::Joined(joined) = c.begin("k", |_| true) else {
        panic!("a second fetch joins")
    };
    let reader = std::thread::spawn(move || joined.read(4, 3));
    attempt(&mut sink, 10, &[b"abc"]);
    assert!(rx.try_recv().is_err(), "3 bytes do not answer a read of 4");
    feed(&mut sink, &[b"defg"]);
    assert_eq!(&rx.try_recv().unwrap().unwrap()[..], b"abcd");
    // The joined reader wanted 4..7: answered before the end.
    assert_eq!(&reader.join().unwrap().unwrap()[..], b"efg");
    assert!(flight.served());
    assert_eq!(flight.read(10, 5).unwrap().len(), 0, "past the end: EOF");
    feed(&mut sink, &[b"hij"]);
    let body = sink.finish().unwrap();
    assert_eq!(&body[..], b"abcdefghij");
    let m = leader.finish(Ok((media_of(body), 1))).unwrap();
    assert_eq!(&m.body[..], b"abcdefghij");
    assert_eq!(&flight.read(8, 100).unwrap()[..], b"ij");
    assert!(c.get("k", |_| true).is_some());
}

#[test]
fn a_retry_must_bring_the_bytes_already_handed_out() {
    // The same bytes again: the download goes on from where the first attempt was cut.
    let c = ContentCache::new(1000);
    let leader = lead(&c);
    let flight = leader.flight().clone();
    let mut sink = FlightSink::new(&flight, None);
    attempt(&mut sink, 6, &[b"abcd"]);
    assert_eq!(&flight.read(0, 2).unwrap()[..], b"ab");
    attempt(&mut sink, 6, &[b"ab", b"cdef"]);
    assert_eq!(&sink.finish().unwrap()[..], b"abcdef");
    drop(leader);

    // Other bytes, or another length: the download fails rather than mix two versions.
    for (len, parts) in [(6, [&b"abXd"[..], b"ef"]), (7, [&b"abcd"[..], b"efg"])] {
        let c = ContentCache::new(1000);
        let leader = lead(&c);
        let flight = leader.flight().clone();
        let mut sink = FlightSink::new(&flight, None);
        attempt(&mut sink, 6, &[b"abcd"]);
        attempt(&mut sink, len, &parts);
        assert!(
            matches!(sink.finish(), Err(FsError::BadDownload(_))),
            "{len} {parts:?}"
        );
        let err = leader.finish(Err(FsError::Io("changed".into())));
        assert!(err.is_err());
        assert!(flight.read(0, 2).is_err(), "readers get the error");
    }
}

#[test]
fn a_body_of_unknown_length_is_read_at_its_end() {
    let c = ContentCache::new(1000);
    let leader = lead(&c);
    let flight = leader.flight().clone();
    let mut sink = FlightSink::new(&flight, None);
    sink.start(None);
    feed(&mut sink, &[b"hello ", b"world"]);
    let body = sink.finish().unwrap();
    assert_eq!(&body[..], b"hello world");
    leader.finish(Ok((media_of(body), 1))).unwrap();
    assert_eq!(&flight.read(6, 5).unwrap()[..], b"world");
}

#[test]
fn an_abandoned_download_wakes_its_readers() {
    let c = ContentCache::new(1000);
    let leader = lead(&c);
    let flight = leader.flight().clone();
    let reader = std::thread::spawn(move || flight.read(0, 1));
    std::thread::sleep(Duration::from_millis(50));
    drop(leader);
    assert!(reader.join().unwrap().is_err());
    assert!(
        matches!(c.begin("k", |_| true), Fetch::Lead(_)),
        "and a new one may start"
    );
}

#[test]
fn errors_are_shared_and_not_cached() {
    let c = ContentCache::new(1000);
    let r = c.fetch("k", |_| true, || Err(FsError::NotFound));
    assert_eq!(r.unwrap_err(), FsError::NotFound);
    let r = c.fetch("k", |_| true, || Ok((media(2), 1)));
    assert_eq!(r.unwrap().body.len(), 2);
}
