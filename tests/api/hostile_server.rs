//! The real [`HttpApi`] against a hostile or broken server: a tiny scripted HTTP/1.1 server that
//! answers each request with canned raw bytes (or silence). Every case asserts the exact
//! [`ApiError`] variant, how many requests were made, and that the call came back within a bound:
//! a clear error and bounded work, never a panic, a hang or short data.
//!
//! The server ([`serve`]) reads one request per connection, asks the test's script what to do
//! with request number `n` (0-based, counted over the whole server), does it, and closes (or, for
//! [`Reply::Stall`], holds the connection open until the server is dropped; [`Reply::Endless`]
//! streams until the client hangs up). Every canned answer says `Connection: close` (or is cut),
//! so the client never reuses a connection the script has finished with.
//!
//! The client has a 1 s request timeout and 3 attempts with 10-40 ms backoff, within 5 s in all.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use bwmediafs::api::auth::Credentials;
use bwmediafs::api::http::{HttpApi, HttpConfig};
use bwmediafs::api::retry::RetryPolicy;
use bwmediafs::api::{list_all, walk_pages, walk_pages_bounded, ApiError, MediaApi, MediaInfo};
use bytes::Bytes;

const USER: &str = "hostile-user";
const PASSWORD: &str = "pa55-w0rd-never-shown";
const ACCOUNT: &str = "9900000";
/// Per-request limit of every client here: a silent server costs this much per attempt.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Attempts of the retry policy.
const ATTEMPTS: usize = 3;

// ---------------------------------------------------------------------------------------------
// The scripted server

/// What the server does with one request.
#[derive(Clone)]
enum Reply {
    /// Write these bytes, then close the connection (empty: hang up without a byte).
    Send(Vec<u8>),
    /// Write these bytes, then hold the connection open, silent, until the server is dropped.
    Stall(Vec<u8>),
    /// Write the first bytes, then the second again and again until the client hangs up.
    Endless(Vec<u8>, Vec<u8>),
}

type Script = dyn Fn(usize, &str) -> Reply + Send + Sync;

/// A running scripted server; dropping it stops it and releases stalled connections.
struct Server {
    addr: SocketAddr,
    /// The head (request line and headers) of every request received, in order.
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    fn request(&self, n: usize) -> String {
        self.requests.lock().unwrap()[n].clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Start a server on 127.0.0.1:0 that answers request `n` (whose head is given) as `script` says.
fn serve(script: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let script: Arc<Script> = Arc::new(script);
    let (reqs, stopped) = (requests.clone(), stop.clone());
    thread::spawn(move || {
        for conn in listener.incoming() {
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            let Ok(conn) = conn else { continue };
            let (reqs, stopped, script) = (reqs.clone(), stopped.clone(), script.clone());
            thread::spawn(move || answer(conn, &reqs, &stopped, &*script));
        }
    });
    Server {
        addr,
        requests,
        stop,
    }
}

/// Serve one connection: read one request, record it, do what the script says.
fn answer(mut conn: TcpStream, reqs: &Mutex<Vec<String>>, stop: &AtomicBool, script: &Script) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let Some(head) = read_request(&mut conn) else {
        return;
    };
    let n = {
        let mut r = reqs.lock().unwrap();
        r.push(head.clone());
        r.len() - 1
    };
    match script(n, &head) {
        Reply::Send(bytes) => {
            let _ = conn.write_all(&bytes);
            let _ = conn.flush();
        }
        Reply::Stall(bytes) => {
            let _ = conn.write_all(&bytes);
            let _ = conn.flush();
            let until = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                thread::sleep(Duration::from_millis(10));
            }
        }
        Reply::Endless(head, chunk) => {
            let _ = conn.write_all(&head);
            while !stop.load(Ordering::SeqCst) && conn.write_all(&chunk).is_ok() {}
        }
    }
}

/// The head of one request (its body, if any, is read and dropped). `None` when the client
/// went away, or connected only to wake the accept loop.
fn read_request(conn: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 64 * 1024 || conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let length = header_in(&head, "content-length").and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = length {
        std::io::copy(&mut (&mut *conn).take(len), &mut std::io::sink()).ok()?;
    }
    Some(head)
}

/// The value of header `name` in a request head.
fn header_in(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A whole answer: status line, our headers plus `Content-Length` and `Connection: close`, body.
fn http(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    Reply::Send(bytes)
}

/// A 200 with a JSON body (a listing page).
fn json(body: &str) -> Reply {
    http(
        "200 OK",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// Raw bytes, sent as they are (the test writes the framing itself).
fn raw(bytes: &[u8]) -> Reply {
    Reply::Send(bytes.to_vec())
}

// ---------------------------------------------------------------------------------------------
// The client and the bounds

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: ATTEMPTS as u32,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        max_total: Duration::from_secs(5),
    }
}

fn client_with(server: &Server, retry: RetryPolicy) -> HttpApi {
    HttpApi::new(HttpConfig {
        base_url: format!("http://{}/api/v2", server.addr),
        connect_timeout: Duration::from_secs(1),
        request_timeout: REQUEST_TIMEOUT,
        retry,
        ..HttpConfig::new(
            ACCOUNT,
            Credentials::Basic {
                username: USER.into(),
                password: PASSWORD.into(),
            },
        )
    })
    .expect("client builds")
}

fn client(server: &Server) -> HttpApi {
    client_with(server, policy())
}

/// Run `f` on its own thread; fail (instead of hanging) if it takes `bound` or more, and
/// return what it returned and how long it took.
fn within<T: Send + 'static>(
    bound: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(bound) {
        Ok(v) => (v, start.elapsed()),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the call did not return within {bound:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the call panicked"),
    }
}

/// The bound of a call that should need one quick exchange (generous: the machine is shared).
const QUICK: Duration = Duration::from_secs(3);
/// The bound of a call that retries to the end of the policy.
const SLOW: Duration = Duration::from_secs(10);

/// `list_page(None)` against a server that always answers `reply`: the result, and requests made.
fn list_against(reply: Reply, bound: Duration) -> (Result<Vec<MediaInfo>, ApiError>, usize) {
    let server = serve(move |_, _| reply.clone());
    let api = client(&server);
    let (r, _) = within(bound, move || api.list_page(None).map(|p| p.items));
    (r, server.count())
}

/// `get("x.bin")` against a server that always answers `reply`.
fn get_against(reply: Reply, bound: Duration) -> (Result<Bytes, ApiError>, usize) {
    let server = serve(move |_, _| reply.clone());
    let api = client(&server);
    let (r, _) = within(bound, move || api.get("x.bin").map(|m| m.body));
    (r, server.count())
}

fn is_malformed(r: &Result<impl std::fmt::Debug, ApiError>) -> bool {
    matches!(r, Err(ApiError::Malformed(m)) if !m.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Listing pages the API would never send

#[test]
fn list_pages_that_break_the_format_are_malformed_at_once() {
    for (what, body) in [
        ("bad JSON", r#"[{"mediaName":"a","contentLength":1"#),
        ("not JSON", "OK"),
        ("HTML", "<html><body>Service Unavailable</body></html>"),
        ("null", "null"),
        (
            "an object, not an array",
            r#"{"mediaName":"a","contentLength":1}"#,
        ),
        ("a wrapped array", r#"{"items":[]}"#),
        ("an array of numbers", "[1,2,3]"),
        (
            "contentLength a string",
            r#"[{"mediaName":"a","contentLength":"12"}]"#,
        ),
        (
            "mediaName a number",
            r#"[{"mediaName":7,"contentLength":1}]"#,
        ),
        (
            "mediaName null",
            r#"[{"mediaName":null,"contentLength":1}]"#,
        ),
        ("no contentLength", r#"[{"mediaName":"a"}]"#),
        ("no mediaName", r#"[{"contentLength":1}]"#),
        ("an empty object", "[{}]"),
        (
            "negative contentLength",
            r#"[{"mediaName":"a","contentLength":-1}]"#,
        ),
        (
            "fractional contentLength",
            r#"[{"mediaName":"a","contentLength":1.5}]"#,
        ),
        (
            "contentLength with an exponent",
            r#"[{"mediaName":"a","contentLength":1e3}]"#,
        ),
        (
            "contentLength over u64",
            r#"[{"mediaName":"a","contentLength":18446744073709551616}]"#,
        ),
        (
            "contentLength far over u64",
            r#"[{"mediaName":"a","contentLength":1000000000000000000000000000000}]"#,
        ),
        (
            "one good item, one bad",
            r#"[{"mediaName":"a","contentLength":1},{"mediaName":"b","contentLength":-2}]"#,
        ),
        (
            "trailing garbage",
            r#"[{"mediaName":"a","contentLength":1}]]"#,
        ),
        ("a 200 with an empty body", ""),
    ] {
        let (r, requests) = list_against(json(body), QUICK);
        assert!(is_malformed(&r), "{what}: {r:?}");
        // A malformed page is not retried: the server answered, and would answer the same.
        assert_eq!(requests, 1, "{what}");
    }
}

#[test]
fn list_pages_with_extra_fields_and_huge_lengths_are_accepted_exactly() {
    let body = r#"[
        {"mediaName":"a/0/b.png","contentLength":12,"content":"http://x/a/0/b.png","etc":{"x":[1,null]}},
        {"mediaName":"over-2^53","contentLength":9007199254740993},
        {"mediaName":"u64-max","contentLength":18446744073709551615},
        {"mediaName":"","contentLength":0}
    ]"#;
    let (r, requests) = list_against(json(body), QUICK);
    let info = |name: &str, content_length| MediaInfo {
        name: name.into(),
        content_length,
    };
    assert_eq!(
        r.unwrap(),
        vec![
            info("a/0/b.png", 12),
            info("over-2^53", 9_007_199_254_740_993),
            info("u64-max", u64::MAX),
            info("", 0),
        ]
    );
    assert_eq!(requests, 1);
}

#[test]
fn an_empty_array_without_a_token_is_an_empty_listing() {
    let server = serve(|_, _| json("[]"));
    let api = client(&server);
    let (r, _) = within(QUICK, move || {
        let mut pages = 0;
        let walked = walk_pages(&api, |p| {
            assert!(p.items.is_empty() && p.next.is_none());
            pages += 1;
        });
        (walked, pages, list_all(&api))
    });
    assert_eq!(r, (Ok(1), 1, Ok(vec![])));
    assert_eq!(server.count(), 2);
}

#[test]
fn a_continuation_token_that_is_not_ascii_is_malformed() {
    let reply = raw(
        b"HTTP/1.1 200 OK\r\nContinuation-Token: \xff\xfe\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]",
    );
    let (r, requests) = list_against(reply, QUICK);
    assert!(is_malformed(&r), "{r:?}");
    assert_eq!(requests, 1);
}

#[test]
fn a_listing_larger_than_accepted_is_refused_unread() {
    // 1 TB announced: refused on the header, nothing read.
    let reply = Reply::Stall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1099511627776\r\n\r\n[".to_vec(),
    );
    let (r, requests) = list_against(reply, QUICK);
    assert!(is_malformed(&r), "{r:?}");
    assert_eq!(requests, 1);
}

// ---------------------------------------------------------------------------------------------
// Endless pagination

/// A listing page of one item, with `token` as its continuation.
fn page_with_token(n: usize, token: &str) -> Reply {
    let body = format!(r#"[{{"mediaName":"m{n}","contentLength":{n}}}]"#);
    http(
        "200 OK",
        &[
            ("Content-Type", "application/json"),
            ("Continuation-Token", token),
        ],
        body.as_bytes(),
    )
}

#[test]
fn a_repeated_continuation_token_stops_the_walk() {
    // The same token forever.
    let server = serve(|n, _| page_with_token(n, "again"));
    let api = client(&server);
    let (r, _) = within(QUICK, move || {
        let mut seen = Vec::new();
        let r = walk_pages(&api, |p| {
            seen.extend(p.items.iter().map(|i| i.name.clone()))
        });
        (r, seen)
    });
    match r {
        (Err(ApiError::Malformed(m)), seen) => {
            assert!(m.contains("repeats a continuation token"), "{m}");
            assert_eq!(seen, ["m0", "m1"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.count(), 2);
    assert_eq!(header_in(&server.request(0), "continuation-token"), None);
    assert_eq!(
        header_in(&server.request(1), "continuation-token").as_deref(),
        Some("again")
    );

    // A cycle: a, b, a, ...
    let server = serve(|n, _| page_with_token(n, if n % 2 == 0 { "a" } else { "b" }));
    let api = client(&server);
    let (r, _) = within(QUICK, move || list_all(&api));
    assert!(is_malformed(&r), "{r:?}");
    assert_eq!(server.count(), 3);
}

#[test]
fn a_listing_that_never_ends_is_bounded() {
    let server = serve(|n, _| page_with_token(n, &format!("token-{n}")));
    let api = client(&server);
    let (r, _) = within(SLOW, move || {
        let mut pages = 0;
        let r = walk_pages_bounded(&api, 40, |_| pages += 1);
        (r, pages)
    });
    match r {
        (Err(ApiError::Malformed(m)), 40) => assert!(m.contains("did not end after 40"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.count(), 40);
    // Each page asked with the previous page's token.
    for n in 1..40 {
        assert_eq!(
            header_in(&server.request(n), "continuation-token"),
            Some(format!("token-{}", n - 1))
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies: never short data

#[test]
fn a_body_shorter_than_its_content_length_is_never_returned() {
    // The server closes after half the body: retried, then a transport error.
    let mut cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n".to_vec();
    cut.extend_from_slice(&[b'x'; 50]);
    let (r, requests) = get_against(Reply::Send(cut.clone()), SLOW);
    match r {
        Err(ApiError::Transport(m)) => {
            assert!(m.contains("cut after 50 of 100 bytes"), "{m}");
            assert!(
                m.contains(&format!("gave up after {ATTEMPTS} tries")),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(requests, ATTEMPTS);

    // The server sends half the body and then nothing: each attempt times out.
    let (r, requests) = get_against(Reply::Stall(cut.clone()), SLOW);
    match r {
        Err(ApiError::Transport(m)) => assert!(m.contains("timed out"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(requests, ATTEMPTS);

    // Same for a listing page.
    let mut page = b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\nConnection: close\r\n\r\n".to_vec();
    page.extend_from_slice(br#"[{"mediaName":"a","contentLength":1}]"#);
    let (r, requests) = list_against(Reply::Send(page), SLOW);
    assert!(matches!(r, Err(ApiError::Transport(_))), "{r:?}");
    assert_eq!(requests, ATTEMPTS);
}

#[test]
fn a_chunked_body_without_content_length_is_accepted_exactly() {
    let reply = raw(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
        5\r\nhello\r\n1\r\n \r\n10\r\n0123456789abcdef\r\n0\r\n\r\n");
    let (r, requests) = get_against(reply, QUICK);
    assert_eq!(r.unwrap(), Bytes::from_static(b"hello 0123456789abcdef"));
    assert_eq!(requests, 1);
}

#[test]
fn a_body_delimited_by_the_close_is_accepted_exactly() {
    let reply =
        raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nall of it");
    let (r, requests) = get_against(reply, QUICK);
    assert_eq!(r.unwrap(), Bytes::from_static(b"all of it"));
    assert_eq!(requests, 1);
}

#[test]
fn a_chunked_body_cut_before_its_last_chunk_is_never_returned() {
    let reply = raw(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n10\r\n0123",
    );
    let (r, requests) = get_against(reply, SLOW);
    assert!(matches!(r, Err(ApiError::Transport(_))), "{r:?}");
    assert_eq!(requests, ATTEMPTS);
}

#[test]
fn a_body_longer_than_its_content_length_is_cut_to_what_was_announced() {
    let reply =
        raw(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfour and more");
    let (r, _) = get_against(reply, QUICK);
    assert_eq!(r.unwrap(), Bytes::from_static(b"four"));
}

#[test]
fn an_endless_body_is_bounded() {
    // A chunked media that never ends: reading stops at the cap (64 MiB) with a clear error.
    let chunk = [b"10000\r\n".as_slice(), &[7u8; 0x10000], b"\r\n"].concat();
    let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let server = serve(move |_, _| Reply::Endless(head.clone(), chunk.clone()));
    let api = client(&server);
    let (r, _) = within(Duration::from_secs(15), move || api.get("endless"));
    match r {
        Err(ApiError::Malformed(m)) => assert!(m.contains("larger than"), "{m}"),
        other => panic!("{:?}", other.map(|m| m.body.len())),
    }
    assert_eq!(server.count(), 1);
}

#[test]
fn a_media_announced_larger_than_accepted_is_refused_unread() {
    let reply =
        Reply::Stall(b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\nxx".to_vec());
    let (r, requests) = get_against(reply, QUICK);
    assert!(is_malformed(&r), "{r:?}");
    assert_eq!(requests, 1);
}

// ---------------------------------------------------------------------------------------------
// Servers that do not answer, or not in HTTP

#[test]
fn a_server_that_never_answers_times_out_within_the_bound() {
    let server = serve(|_, _| Reply::Stall(Vec::new()));
    let api = client(&server);
    let (r, took) = within(SLOW, move || api.list_page(None));
    match r {
        Err(ApiError::Transport(m)) => {
            assert!(m.contains("timed out"), "{m}");
            assert!(
                m.contains(&format!("gave up after {ATTEMPTS} tries")),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.count(), ATTEMPTS);
    // Each attempt waited its full timeout, and no longer than the policy allows.
    assert!(took >= REQUEST_TIMEOUT * ATTEMPTS as u32, "{took:?}");
    assert!(took < policy().max_total + REQUEST_TIMEOUT * 2, "{took:?}");
}

#[test]
fn a_server_that_hangs_up_at_once_is_a_transport_error() {
    for (what, reply) in [
        ("no byte at all", raw(b"")),
        ("half a status line", raw(b"HTTP/1.1 20")),
        (
            "headers cut",
            raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Ty"),
        ),
    ] {
        let (r, requests) = get_against(reply, SLOW);
        match r {
            Err(ApiError::Transport(m)) => {
                assert!(
                    m.contains(&format!("gave up after {ATTEMPTS} tries")),
                    "{what}: {m}"
                )
            }
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(requests, ATTEMPTS, "{what}");
    }
}

#[test]
fn answers_that_are_not_http_are_transport_errors() {
    let huge_header = format!(
        "HTTP/1.1 200 OK\r\nX-Junk: {}\r\nContent-Length: 0\r\n\r\n",
        "j".repeat(1 << 20)
    );
    for (what, reply) in [
        ("another protocol", raw(b"SSH-2.0-OpenSSH_9.6\r\n")),
        ("a bad status code", raw(b"HTTP/1.1 2000 OK\r\n\r\n")),
        (
            "a status that is not a number",
            raw(b"HTTP/1.1 abc OK\r\n\r\n"),
        ),
        (
            "binary junk",
            raw(&[0u8, 159, 146, 150, 255, 0, 13, 10, 13, 10]),
        ),
        (
            "a Content-Length over u64",
            raw(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nx"),
        ),
        (
            "two Content-Lengths that disagree",
            raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx"),
        ),
        ("a megabyte of header", raw(huge_header.as_bytes())),
    ] {
        let (r, requests) = get_against(reply, SLOW);
        assert!(matches!(r, Err(ApiError::Transport(_))), "{what}: {r:?}");
        assert_eq!(requests, ATTEMPTS, "{what}");
    }
}

// ---------------------------------------------------------------------------------------------
// Error statuses with bodies of any kind

#[test]
fn error_statuses_with_bodies_of_any_kind() {
    let html = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>".as_slice();
    let gave_up = Some(format!("gave up after {ATTEMPTS} tries"));
    let status = |status, description: Option<String>| {
        Err::<Bytes, _>(ApiError::Status {
            status,
            kind: None,
            description,
        })
    };
    for (code, ctype, body, expected, requests) in [
        (
            "500 Internal Server Error",
            "text/html",
            html,
            status(500, gave_up.clone()),
            ATTEMPTS,
        ),
        (
            "502 Bad Gateway",
            "text/html",
            html,
            status(502, gave_up.clone()),
            ATTEMPTS,
        ),
        (
            "503 Service Unavailable",
            "text/plain",
            b"".as_slice(),
            status(503, gave_up.clone()),
            ATTEMPTS,
        ),
        (
            "429 Too Many Requests",
            "application/json",
            b"{\"type\":".as_slice(),
            status(429, gave_up.clone()),
            ATTEMPTS,
        ),
        ("400 Bad Request", "text/html", html, status(400, None), 1),
        (
            "405 Method Not Allowed",
            "text/plain",
            b"no".as_slice(),
            status(405, None),
            1,
        ),
        (
            "409 Conflict",
            "application/json",
            b"[]".as_slice(),
            status(409, None),
            1,
        ),
        (
            "418 I'm a teapot",
            "application/json",
            b"{\"type\":7,\"description\":[]}".as_slice(),
            status(418, None),
            1,
        ),
        ("302 Found", "text/html", html, status(302, None), 1),
        (
            "404 Not Found",
            "text/html",
            html,
            Err(ApiError::NotFound),
            1,
        ),
        (
            "404 Not Found",
            "text/plain",
            b"".as_slice(),
            Err(ApiError::NotFound),
            1,
        ),
    ] {
        // Every answer names another place to go; none is followed (a redirect could carry the
        // credentials away), as the request count shows.
        let headers = [
            ("Content-Type", ctype),
            ("Location", "http://127.0.0.1:9/elsewhere"),
        ];
        let (r, n) = get_against(http(code, &headers, body), SLOW);
        assert_eq!(r, expected, "{code} {ctype}");
        assert_eq!(n, requests, "{code} {ctype}");
    }
    for (code, body) in [
        ("401 Unauthorized", html),
        ("403 Forbidden", b"".as_slice()),
    ] {
        let (r, n) = list_against(http(code, &[("Content-Type", "text/html")], body), QUICK);
        match (code, r) {
            ("401 Unauthorized", Err(ApiError::Unauthorized(m))) => {
                assert!(m.contains(USER), "{m}")
            }
            ("403 Forbidden", Err(ApiError::Forbidden(m))) => assert!(m.contains(ACCOUNT), "{m}"),
            (_, other) => panic!("{code}: {other:?}"),
        }
        assert_eq!(n, 1, "{code}");
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets echoed back

#[test]
fn an_echoed_authorization_header_never_reaches_the_error() {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    // A server that echoes what it was sent, in every way it could.
    type Echo = fn(&str) -> String;
    let echoes: [(&str, Echo); 6] = [
        ("plain text", |auth| {
            format!("you sent Authorization: {auth}")
        }),
        ("description", |auth| {
            format!(r#"{{"type":"unauthorized","description":"bad credentials: {auth}"}}"#)
        }),
        ("type", |auth| {
            format!(r#"{{"type":"{auth}","description":"refused"}}"#)
        }),
        ("bare token in a Spring message", |auth| {
            let token = auth.split_once(' ').map(|(_, t)| t).unwrap_or(auth);
            format!(r#"{{"error":"Unauthorized","message":"token {token} is invalid"}}"#)
        }),
        ("decoded password", |auth| {
            let token = auth.split_once(' ').map(|(_, t)| t).unwrap_or(auth);
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(token)
                .map(|d| String::from_utf8_lossy(&d).into_owned())
                .unwrap_or_default();
            format!(r#"{{"type":"unauthorized","description":"user:password was {decoded}"}}"#)
        }),
        ("escaped in JSON, near the length limit", |auth| {
            let escaped: String = auth
                .chars()
                .map(|c| format!("\\u{:04x}", c as u32))
                .collect();
            format!(
                r#"{{"type":"unauthorized","description":"{} {escaped}"}}"#,
                "x".repeat(280)
            )
        }),
    ];
    for (status, what) in [
        ("401 Unauthorized", "401"),
        ("400 Bad Request", "400"),
        ("500 Internal Server Error", "500"),
    ] {
        for (how, echo) in echoes {
            let server = serve(move |_, head| {
                let auth = header_in(head, "authorization").unwrap_or_default();
                http(
                    status,
                    &[("Content-Type", "application/json")],
                    echo(&auth).as_bytes(),
                )
            });
            let api = client(&server);
            let (r, _) = within(SLOW, move || api.list_page(None));
            let e = r.unwrap_err();
            match (what, &e) {
                ("401", ApiError::Unauthorized(_))
                | ("400", ApiError::Status { status: 400, .. })
                | ("500", ApiError::Status { status: 500, .. }) => {}
                _ => panic!("{what} echoing {how}: {e:?}"),
            }
            let shown = format!("{e} {e:?}");
            for secret in [PASSWORD, &encoded, &encoded[..12]] {
                assert!(
                    !shown.contains(secret),
                    "{what} echoing {how}: the error shows a secret: {shown}"
                );
            }
            // The echo was really there to be hidden.
            assert!(
                header_in(&server.request(0), "authorization")
                    .is_some_and(|a| a.contains(&encoded)),
                "the client sent no Basic credentials"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Retry-After

#[test]
fn a_huge_retry_after_is_capped_by_the_total_time() {
    let retry = RetryPolicy {
        max_total: Duration::from_millis(800),
        ..policy()
    };
    for after in [
        "999999999",
        "99999999999999999999999999",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let server =
            serve(move |_, _| http("503 Service Unavailable", &[("Retry-After", after)], b""));
        let api = client_with(&server, retry);
        let (r, took) = within(SLOW, move || api.list_page(None));
        assert!(
            matches!(r, Err(ApiError::Status { status: 503, .. })),
            "{after}: {r:?}"
        );
        // It waited out the policy's total time once, then gave up: two requests.
        assert_eq!(server.count(), 2, "{after}");
        assert!(took >= Duration::from_millis(700), "{after}: {took:?}");
        assert!(took < Duration::from_secs(4), "{after}: {took:?}");
    }
}

#[test]
fn a_garbage_retry_after_is_ignored() {
    for after in ["soon", "-5", "1.5", "", "1e9", "Tomorrow at noon", "\u{1}"] {
        let after = after.to_string();
        let server = serve(move |n, _| {
            if n < 2 {
                http("429 Too Many Requests", &[("Retry-After", &after)], b"")
            } else {
                json(r#"[{"mediaName":"ok","contentLength":2}]"#)
            }
        });
        let api = client(&server);
        let (r, took) = within(QUICK, move || api.list_page(None));
        assert_eq!(r.map(|p| p.items.len()), Ok(1));
        assert_eq!(server.count(), 3);
        // The policy's own short backoff: not a wait the header asked for (capped at 5 s).
        assert!(took < policy().max_total / 2, "{took:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Uploads and deletes get the same treatment

#[test]
fn puts_and_deletes_against_broken_answers() {
    let server = serve(|n, _| match n {
        0 => Reply::Stall(Vec::new()),
        1 => raw(b""),
        _ => http(
            "201 Created",
            &[("Content-Type", "text/html")],
            b"<html>ok</html>",
        ),
    });
    let api = client(&server);
    let (r, _) = within(SLOW, move || {
        api.put("a b/c.png", Bytes::from_static(b"png!"), "image/png", None)
    });
    assert_eq!(r, Ok(()));
    assert_eq!(server.count(), 3);
    assert!(server
        .request(2)
        .starts_with("PUT /api/v2/users/9900000/media/a%20b/c.png "));

    let server = serve(|_, _| {
        http(
            "404 Not Found",
            &[("Content-Type", "text/html")],
            b"<html/>",
        )
    });
    let api = client(&server);
    let (r, _) = within(QUICK, move || api.delete("gone"));
    assert_eq!(r, Ok(()), "a delete of a missing name succeeds");

    let server = serve(|_, _| http("413 Payload Too Large", &[], b"<html>too big</html>"));
    let api = client(&server);
    let (r, _) = within(QUICK, move || {
        api.put("x", Bytes::from_static(b"1234"), "text/plain", None)
    });
    assert_eq!(
        r,
        Err(ApiError::TooLarge {
            size: 4,
            limit: None
        })
    );
    assert_eq!(server.count(), 1);
}

#[test]
fn echoed_oauth2_credentials_never_reach_the_error() {
    const CLIENT_SECRET: &str = "cl1ent-s3cret-never-shown";
    const TOKEN: &str = "access-t0ken-never-shown";
    let oauth = |server: &Server| {
        HttpApi::new(HttpConfig {
            base_url: format!("http://{}/api/v2", server.addr),
            token_url: format!("http://{}/oauth2/token", server.addr),
            connect_timeout: Duration::from_secs(1),
            request_timeout: REQUEST_TIMEOUT,
            retry: policy(),
            ..HttpConfig::new(
                ACCOUNT,
                Credentials::OAuth2 {
                    client_id: "hostile-client".into(),
                    client_secret: CLIENT_SECRET.into(),
                },
            )
        })
        .expect("client builds")
    };
    let echo = |head: &str| {
        let auth = header_in(head, "authorization").unwrap_or_default();
        format!(
            r#"{{"error":"invalid_client","error_description":"refused: {auth}","type":"{auth}","description":"refused: {auth}"}}"#
        )
    };
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("hostile-client:{CLIENT_SECRET}"));

    // The token endpoint echoes the client's Basic header.
    let server = serve(move |_, head| http("401 Unauthorized", &[], echo(head).as_bytes()));
    let api = oauth(&server);
    let (r, _) = within(QUICK, move || api.list_page(None));
    let e = r.unwrap_err();
    assert!(matches!(e, ApiError::Unauthorized(_)), "{e:?}");
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains(&encoded) && !shown.contains(CLIENT_SECRET),
        "{shown}"
    );
    assert!(server.request(0).starts_with("POST /oauth2/token "));

    // The media call echoes the bearer token (renewed once, refused again).
    let server = serve(move |_, head| {
        if head.starts_with("POST /oauth2/token ") {
            json(&format!(
                r#"{{"access_token":"{TOKEN}","expires_in":3600,"token_type":"Bearer"}}"#
            ))
        } else {
            http("401 Unauthorized", &[], echo(head).as_bytes())
        }
    });
    let api = oauth(&server);
    let (r, _) = within(QUICK, move || api.get("x"));
    let e = r.unwrap_err();
    assert!(matches!(e, ApiError::Unauthorized(_)), "{e:?}");
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert_eq!(server.count(), 4, "token, get, token again, get again");
}
