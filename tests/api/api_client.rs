//! The HTTP Media API client against the real emulator over loopback: every operation, paging,
//! awkward names, both authentication schemes and token renewal, the error statuses, retries
//! under injected faults (errors, Retry-After, cut and truncated bodies), and secrets in logs.
//!
//! A recording logger at Trace level is installed for the whole test binary (every test calls
//! [`init_log`]), so every record any test causes is checked by `secrets_never_reach_logs_or_errors`
//! and, for the demo secrets, at the end of each test through [`assert_no_secret_logged`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use bwmediafs::api::auth::Credentials;
use bwmediafs::api::http::{HttpApi, HttpConfig};
use bwmediafs::api::retry::RetryPolicy;
use bwmediafs::api::{list_all, ApiError, MediaApi, MAX_MEDIA_SIZE};
use bwmediafs::emulator::{Emulator, EmulatorConfig, Faults, StoreConfig};
use bytes::Bytes;

const PASSWORD: &str = "demo-password";
const SECRET: &str = "demo-secret";

// ---------------------------------------------------------------------------------------------
// Log recording

struct Recorder {
    records: Mutex<Vec<String>>,
}

impl log::Log for Recorder {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        if let Ok(mut r) = self.records.lock() {
            r.push(line);
        }
    }
    fn flush(&self) {}
}

fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<&'static Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let r: &'static Recorder = Box::leak(Box::new(Recorder {
            records: Mutex::new(Vec::new()),
        }));
        log::set_logger(r).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        r
    })
}

fn init_log() {
    recorder();
}

fn records() -> Vec<String> {
    recorder()
        .records
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default()
}

fn assert_no_secret_logged(secrets: &[&str]) {
    for line in records() {
        for s in secrets {
            assert!(!line.contains(s), "a log record holds a secret: {line}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn start(config: EmulatorConfig) -> Emulator {
    init_log();
    Emulator::start(config).expect("emulator starts")
}

fn emulator() -> Emulator {
    start(EmulatorConfig::default())
}

fn basic() -> Credentials {
    Credentials::Basic {
        username: "demo-user".into(),
        password: PASSWORD.into(),
    }
}

fn oauth() -> Credentials {
    Credentials::OAuth2 {
        client_id: "demo-client".into(),
        client_secret: SECRET.into(),
    }
}

/// Quick retries: tests must not wait seconds for backoff.
fn quick_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(20),
        max_total: Duration::from_secs(20),
    }
}

fn config(emu: &Emulator, credentials: Credentials) -> HttpConfig {
    HttpConfig {
        base_url: emu.base_url(),
        token_url: emu.token_url(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        retry: quick_retry(4),
        ..HttpConfig::new(emu.account(), credentials)
    }
}

fn client(emu: &Emulator, credentials: Credentials) -> HttpApi {
    HttpApi::new(config(emu, credentials)).expect("client builds")
}

fn with_retry(emu: &Emulator, credentials: Credentials, retry: RetryPolicy) -> HttpApi {
    HttpApi::new(HttpConfig {
        retry,
        ..config(emu, credentials)
    })
    .expect("client builds")
}

/// Deterministic, distinct content of a given size.
fn content(seed: usize, len: usize) -> Bytes {
    let mut x = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Bytes::from(
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect::<Vec<u8>>(),
    )
}

fn store_directly(emu: &Emulator, name: &str, body: Bytes) {
    emu.store()
        .put(name, body, "application/octet-stream", None)
        .expect("store accepts");
}

// ---------------------------------------------------------------------------------------------
// Operations

#[test]
fn every_operation_round_trips() {
    let emu = emulator();
    let api = client(&emu, basic());
    let body = content(1, 5000);

    api.put("cat.png", body.clone(), "image/png", Some("max-age=60"))
        .unwrap();
    let got = api.get("cat.png").unwrap();
    assert_eq!(got.body, body);
    assert_eq!(got.content_type.as_deref(), Some("image/png"));
    assert_eq!(got.cache_control.as_deref(), Some("max-age=60"));

    // Overwrite, without Cache-Control this time.
    api.put("cat.png", Bytes::from_static(b"meow"), "text/plain", None)
        .unwrap();
    let got = api.get("cat.png").unwrap();
    assert_eq!(&got.body[..], b"meow");
    assert_eq!(got.content_type.as_deref(), Some("text/plain"));
    assert_eq!(got.cache_control, None);

    // An empty media.
    api.put("empty", Bytes::new(), "application/octet-stream", None)
        .unwrap();
    assert_eq!(api.get("empty").unwrap().body.len(), 0);

    let page = api.list_page(None).unwrap();
    assert_eq!(page.next, None);
    let mut items: Vec<_> = page
        .items
        .iter()
        .map(|i| (i.name.as_str(), i.content_length))
        .collect();
    items.sort();
    assert_eq!(items, [("cat.png", 4), ("empty", 0)]);

    api.delete("cat.png").unwrap();
    assert_eq!(api.get("cat.png"), Err(ApiError::NotFound));
    // Deleting a missing name succeeds, as in production.
    api.delete("cat.png").unwrap();
    assert_eq!(
        list_all(&api)
            .unwrap()
            .iter()
            .map(|i| &i.name[..])
            .collect::<Vec<_>>(),
        ["empty"]
    );

    let s = emu.stats();
    assert_eq!((s.list, s.get, s.put, s.delete, s.token), (2, 4, 3, 2, 0));
    assert_eq!(api.requests_answered(), 11);
    assert_eq!(
        api.media_url("a b/c.png"),
        format!(
            "{}/users/{}/media/a%20b/c.png",
            emu.base_url(),
            emu.account()
        )
    );
    assert_no_secret_logged(&[PASSWORD, SECRET]);
}

#[test]
fn base_url_with_trailing_slash_works() {
    let emu = emulator();
    let api = HttpApi::new(HttpConfig {
        base_url: format!("{}/", emu.base_url()),
        ..config(&emu, basic())
    })
    .unwrap();
    api.put("x", Bytes::from_static(b"1"), "text/plain", None)
        .unwrap();
    assert_eq!(&api.get("x").unwrap().body[..], b"1");
}

#[test]
fn get_of_a_missing_name_is_not_found() {
    let emu = emulator();
    let api = client(&emu, basic());
    assert_eq!(api.get("nothing/here.png"), Err(ApiError::NotFound));
    // Not retried.
    assert_eq!(emu.stats().get, 1);
}

#[test]
fn oversize_upload_is_too_large() {
    let emu = emulator();
    let api = client(&emu, basic());
    let size = MAX_MEDIA_SIZE as usize + 1;
    match api.put(
        "big.bin",
        content(3, size),
        "application/octet-stream",
        None,
    ) {
        Err(ApiError::TooLarge { size: s, limit }) => {
            assert_eq!(s, size as u64);
            assert_eq!(limit, Some(MAX_MEDIA_SIZE));
        }
        other => panic!("{other:?}"),
    }
    // Refused before sending: a doomed upload costs no request.
    assert_eq!((emu.stats().put, api.requests_answered()), (0, 0));
    assert_eq!(api.get("big.bin"), Err(ApiError::NotFound));
    // Exactly at the limit is fine.
    let at = content(4, MAX_MEDIA_SIZE as usize);
    api.put("max.bin", at.clone(), "application/octet-stream", None)
        .unwrap();
    assert_eq!(api.get("max.bin").unwrap().body, at);
}

#[test]
fn a_413_from_the_server_is_too_large() {
    // A server with a lower limit than Bandwidth's documented one.
    let emu = start(EmulatorConfig {
        store: StoreConfig {
            max_size: 1000,
            ..StoreConfig::default()
        },
        ..EmulatorConfig::default()
    });
    let api = client(&emu, basic());
    let refused = api.put("b.bin", content(5, 1001), "application/octet-stream", None);
    assert_eq!(
        refused,
        Err(ApiError::TooLarge {
            size: 1001,
            limit: None
        })
    );
    // The message does not claim Bandwidth's limit is the one that refused it.
    let said = refused.unwrap_err().to_string();
    assert!(
        said.contains("HTTP 413") && !said.contains("the limit is"),
        "{said}"
    );
    // Not retried.
    assert_eq!(emu.stats().put, 1);
    api.put("b.bin", content(5, 1000), "application/octet-stream", None)
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Paging

fn paging(page_size: usize) {
    let emu = start(EmulatorConfig {
        store: StoreConfig {
            page_size,
            ..StoreConfig::default()
        },
        ..EmulatorConfig::default()
    });
    let mut expected = Vec::new();
    for i in 0..2500 {
        let name = format!("p/{:04}/m{i}.bin", i % 37);
        store_directly(&emu, &name, content(i, i % 50));
        expected.push((name, (i % 50) as u64));
    }
    expected.sort();
    let api = client(&emu, basic());
    let mut got: Vec<_> = list_all(&api)
        .unwrap()
        .into_iter()
        .map(|i| (i.name, i.content_length))
        .collect();
    got.sort();
    assert_eq!(got.len(), 2500);
    assert_eq!(got, expected);
    assert_eq!(emu.stats().list, 2500_u64.div_ceil(page_size as u64));
}

#[test]
fn paging_over_2500_media_by_1000() {
    paging(1000);
}

#[test]
fn paging_over_2500_media_by_7() {
    paging(7);
}

// ---------------------------------------------------------------------------------------------
// Names

#[test]
fn awkward_names_round_trip() {
    let emu = emulator();
    let api = client(&emu, oauth());
    let long: String = "n".repeat(251) + ".png";
    assert_eq!(long.len(), 255);
    let long_unicode: String = "é".repeat(127) + "x"; // 255 bytes of UTF-8
    assert_eq!(long_unicode.len(), 255);
    let names = [
        "14762070468292kw2fuqty55yp2b2/0/bw.png",
        "with space.jpg",
        "100%.txt",
        "%41%2F",
        "a+b=c.gif",
        "hash#tag.png",
        "what?.png",
        "q?x=1&y=2#frag",
        "ünïcødé/日本語/😀.png",
        "semi;colon,comma'quote\"",
        "tilde~dash-under_score.dot",
        "trailing/slash/",
        "brackets[1]{2}<3>|\\^`",
        long.as_str(),
        long_unicode.as_str(),
    ];
    for (i, name) in names.iter().enumerate() {
        api.put(name, content(i, 100 + i), "application/octet-stream", None)
            .unwrap_or_else(|e| panic!("put {name:?}: {e}"));
    }
    let mut listed: Vec<_> = list_all(&api)
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    listed.sort();
    let mut want: Vec<_> = names.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    // The emulator stored them under exactly those names.
    assert_eq!(emu.store().names(), want);
    for (i, name) in names.iter().enumerate() {
        let got = api
            .get(name)
            .unwrap_or_else(|e| panic!("get {name:?}: {e}"));
        assert_eq!(got.body, content(i, 100 + i), "{name:?}");
    }
    for name in names {
        api.delete(name).unwrap();
        assert_eq!(api.get(name), Err(ApiError::NotFound), "{name:?}");
    }
    assert!(emu.store().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Authentication

#[test]
fn oauth2_token_is_fetched_once_and_reused() {
    let emu = emulator();
    let api = client(&emu, oauth());
    for i in 0..5 {
        api.put(&format!("t{i}"), content(i, 10), "text/plain", None)
            .unwrap();
    }
    assert_eq!(list_all(&api).unwrap().len(), 5);
    let s = emu.stats();
    assert_eq!((s.token, s.put, s.list), (1, 5, 1));
    assert_eq!(api.requests_answered(), 7);
}

#[test]
fn oauth2_token_is_renewed_before_it_expires() {
    let emu = start(EmulatorConfig {
        token_ttl: Duration::from_secs(2),
        ..EmulatorConfig::default()
    });
    let api = client(&emu, oauth());
    api.put("x", Bytes::from_static(b"x"), "text/plain", None)
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3500) {
        assert_eq!(&api.get("x").unwrap().body[..], b"x");
        thread::sleep(Duration::from_millis(100));
    }
    let s = emu.stats();
    // Renewed at half life (1 s): at least 3 tokens over 3.5 s, and no call refused.
    assert!(s.token >= 3, "{s:?}");
    assert!(s.token <= 6, "{s:?}");
    assert_eq!(api.requests_answered(), s.token + s.get + s.put);
}

#[test]
fn a_refused_token_is_renewed_once_and_the_call_retried() {
    // An emulator restarted on the same port forgets the tokens it issued: the cached token
    // is refused (401), the client renews it and repeats the request once.
    let first = emulator();
    let addr: SocketAddr = first.addr();
    let api = client(&first, oauth());
    api.put("x", Bytes::from_static(b"1"), "text/plain", None)
        .unwrap();
    assert_eq!(first.stats().token, 1);
    drop(first);
    let second = start(EmulatorConfig {
        listen: addr,
        ..EmulatorConfig::default()
    });
    api.put("x", Bytes::from_static(b"2"), "text/plain", None)
        .unwrap();
    let s = second.stats();
    assert_eq!((s.token, s.put), (1, 2), "{s:?}");
    assert_eq!(&second.store().get("x").unwrap().body[..], b"2");
}

#[test]
fn wrong_password_is_unauthorized() {
    let emu = emulator();
    let api = client(
        &emu,
        Credentials::Basic {
            username: "demo-user".into(),
            password: "wrong-password-123".into(),
        },
    );
    match api.list_page(None) {
        Err(ApiError::Unauthorized(m)) => {
            assert!(m.contains("demo-user"), "{m}");
            assert!(!m.contains("wrong-password-123"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // Not retried.
    assert_eq!(emu.stats().list, 1);
    assert_no_secret_logged(&["wrong-password-123"]);
}

#[test]
fn wrong_client_secret_is_unauthorized() {
    let emu = emulator();
    let api = client(
        &emu,
        Credentials::OAuth2 {
            client_id: "demo-client".into(),
            client_secret: "wrong-secret-456".into(),
        },
    );
    match api.get("x") {
        Err(ApiError::Unauthorized(m)) => {
            assert!(m.contains("client id") && m.contains("secret"), "{m}");
            assert!(m.contains("refused"), "{m}");
            assert!(!m.contains("wrong-secret-456"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let s = emu.stats();
    assert_eq!((s.token, s.get), (1, 0), "{s:?}");
    assert_no_secret_logged(&["wrong-secret-456"]);
}

#[test]
fn another_account_is_forbidden() {
    let emu = emulator();
    for creds in [basic(), oauth()] {
        let api = HttpApi::new(HttpConfig {
            account_id: "9900001".into(),
            ..config(&emu, creds)
        })
        .unwrap();
        match api.list_page(None) {
            Err(ApiError::Forbidden(m)) => assert!(m.contains("9900001"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(api.get("x"), Err(ApiError::Forbidden(_))));
    }
}

// ---------------------------------------------------------------------------------------------
// Retries and faults

#[test]
fn retries_ride_out_30_percent_errors() {
    let emu = emulator();
    emu.set_faults(Faults {
        error_rate: 0.3,
        error_statuses: vec![503, 500, 502],
        ..Faults::default()
    });
    let api = with_retry(&emu, oauth(), quick_retry(12));
    for i in 0..50 {
        api.put(&format!("r/{i}"), content(i, 1000 + i), "image/jpeg", None)
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
    }
    for i in 0..50 {
        let got = api
            .get(&format!("r/{i}"))
            .unwrap_or_else(|e| panic!("get {i}: {e}"));
        assert_eq!(got.body, content(i, 1000 + i));
    }
    assert_eq!(list_all(&api).unwrap().len(), 50);
    let s = emu.stats();
    assert!(s.put > 50 && s.get > 50, "some were retried: {s:?}");
    assert_eq!(api.requests_answered(), s.put + s.get + s.list + s.token);
}

#[test]
fn retry_after_is_honoured() {
    let emu = emulator();
    emu.set_faults(Faults {
        error_rate: 1.0,
        error_statuses: vec![429],
        retry_after_secs: 1,
        ..Faults::default()
    });
    // Two attempts with a 2 ms backoff: only Retry-After can explain a second's wait.
    let api = with_retry(
        &emu,
        basic(),
        RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(2),
            max_total: Duration::from_secs(10),
        },
    );
    let start = Instant::now();
    let err = api.get("x").unwrap_err();
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    match &err {
        ApiError::Status { status: 429, .. } => {}
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("gave up after 2 tries"), "{err}");
    assert_eq!(emu.stats().get, 2);

    // And the call succeeds once the server relents.
    emu.set_faults(Faults::default());
    store_directly(&emu, "x", Bytes::from_static(b"ok"));
    assert_eq!(&api.get("x").unwrap().body[..], b"ok");
}

#[test]
fn retry_after_is_capped_by_the_total_time() {
    let emu = emulator();
    emu.set_faults(Faults {
        error_rate: 1.0,
        error_statuses: vec![429],
        retry_after_secs: 60,
        ..Faults::default()
    });
    let api = with_retry(
        &emu,
        basic(),
        RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(2),
            max_total: Duration::from_millis(700),
        },
    );
    let start = Instant::now();
    assert!(api.list_page(None).is_err());
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn counters_count_each_answered_attempt_its_body_and_the_retries() {
    let emu = emulator();
    let api = with_retry(&emu, oauth(), quick_retry(3));
    api.authenticate().unwrap();
    let body = content(1, 5000);
    emu.set_faults(Faults {
        error_rate: 1.0,
        error_statuses: vec![503],
        ..Faults::default()
    });
    // Three attempts answered 503: three PUTs, their bodies, two retries.
    assert!(api.put("c.bin", body.clone(), "image/png", None).is_err());
    emu.set_faults(Faults::default());
    api.put("c.bin", body.clone(), "image/png", None).unwrap();
    assert_eq!(api.get("c.bin").unwrap().body, body);
    api.delete("c.bin").unwrap();
    let counted = api.counters().expect("the HTTP client counts").snapshot();
    let s = emu.stats();
    assert_eq!((s.token, s.put, s.get, s.delete, s.list), (1, 4, 1, 1, 0));
    let r = counted.requests;
    assert_eq!((r.token, r.put, r.get, r.delete, r.list), (1, 4, 1, 1, 0));
    assert_eq!(counted.bytes_up, 4 * 5000);
    assert_eq!(counted.bytes_down, 5000);
    assert_eq!(counted.retries, 2);
    assert_eq!(counted.cache_hits, 0);
}

#[test]
fn slow_answers_time_out_and_are_retried() {
    let emu = emulator();
    store_directly(&emu, "slow", Bytes::from_static(b"zzz"));
    emu.set_faults(Faults {
        latency_ms: 1500,
        ..Faults::default()
    });
    let api = HttpApi::new(HttpConfig {
        request_timeout: Duration::from_millis(300),
        retry: quick_retry(2),
        ..config(&emu, basic())
    })
    .unwrap();
    let start = Instant::now();
    match api.get("slow") {
        Err(ApiError::Transport(m)) => {
            assert!(
                m.contains("timed out") && m.contains("gave up after 2 tries"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_millis(1400),
        "{:?}",
        start.elapsed()
    );
    emu.set_faults(Faults {
        latency_ms: 50,
        ..Faults::default()
    });
    assert_eq!(&api.get("slow").unwrap().body[..], b"zzz");
}

#[test]
fn cut_and_truncated_bodies_are_never_returned() {
    let emu = emulator();
    let body = content(9, 200_000);
    store_directly(&emu, "whole.bin", body.clone());
    let api = client(&emu, basic());
    for faults in [
        Faults {
            truncate_rate: 1.0,
            ..Faults::default()
        },
        Faults {
            cut_rate: 1.0,
            ..Faults::default()
        },
        Faults {
            cut_rate: 1.0,
            truncate_rate: 1.0,
            ..Faults::default()
        },
    ] {
        emu.set_faults(faults.clone());
        emu.reset_stats();
        match api.get("whole.bin") {
            Err(ApiError::Transport(m)) | Err(ApiError::Malformed(m)) => {
                assert!(m.contains("gave up after 4 tries"), "{m}")
            }
            other => panic!("{faults:?}: {:?}", other.map(|m| m.body.len())),
        }
        assert_eq!(emu.stats().get, 4, "{faults:?}");
        match api.list_page(None) {
            Err(ApiError::Transport(_)) | Err(ApiError::Malformed(_)) => {}
            other => panic!("{faults:?}: {other:?}"),
        }
    }
}

#[test]
fn under_random_cuts_every_successful_get_is_exact() {
    let emu = emulator();
    let n = 50;
    for i in 0..n {
        store_directly(&emu, &format!("f{i}"), content(i, 20_000 + 37 * i));
    }
    emu.set_faults(Faults {
        cut_rate: 0.3,
        truncate_rate: 0.3,
        ..Faults::default()
    });
    let api = with_retry(&emu, basic(), quick_retry(8));
    let mut ok = 0;
    for i in 0..n {
        match api.get(&format!("f{i}")) {
            Ok(m) => {
                assert_eq!(m.body, content(i, 20_000 + 37 * i), "f{i}");
                ok += 1;
            }
            Err(ApiError::Transport(_)) | Err(ApiError::Malformed(_)) => {}
            Err(e) => panic!("f{i}: {e:?}"),
        }
    }
    assert!(ok >= n / 2, "only {ok} of {n} succeeded");
    assert!(emu.stats().get > n as u64, "faults were injected");

    // Puts under the same faults: retried until stored whole.
    for i in 0..20 {
        let name = format!("w{i}");
        if api
            .put(
                &name,
                content(100 + i, 30_000),
                "application/octet-stream",
                None,
            )
            .is_ok()
        {
            assert_eq!(
                emu.store().get(&name).unwrap().body,
                content(100 + i, 30_000)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connections and threads

#[test]
fn connections_are_kept_alive_and_reused() {
    let emu = emulator();
    let relay = recording_relay(emu.addr());
    let api = HttpApi::new(HttpConfig {
        base_url: via(&emu, &relay, &emu.base_url()),
        ..config(&emu, basic())
    })
    .unwrap();
    for i in 0..30 {
        let name = format!("k{i}");
        api.put(&name, content(i, 3000), "image/png", None).unwrap();
        assert_eq!(api.get(&name).unwrap().body, content(i, 3000));
    }
    assert_eq!(list_all(&api).unwrap().len(), 30);
    api.delete("k0").unwrap();
    assert_eq!(api.get("k0"), Err(ApiError::NotFound));
    assert_eq!(api.requests_answered(), 63);
    // One connection carries them all (a second may open if the first is not yet back in the
    // pool when the next request starts).
    let conns = relay.connections.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&conns),
        "{conns} connections for 63 requests"
    );
}

#[test]
fn one_client_serves_many_threads_with_one_token() {
    let emu = emulator();
    let relay = recording_relay(emu.addr());
    let api = Arc::new(
        HttpApi::new(HttpConfig {
            base_url: via(&emu, &relay, &emu.base_url()),
            ..config(&emu, oauth())
        })
        .unwrap(),
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let api = api.clone();
            thread::spawn(move || {
                for i in 0..10 {
                    let name = format!("t{t}/m{i}");
                    let body = content(t * 100 + i, 500 + i);
                    api.put(&name, body.clone(), "text/plain", None).unwrap();
                    assert_eq!(api.get(&name).unwrap().body, body);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(list_all(&*api).unwrap().len(), 80);
    let s = emu.stats();
    assert_eq!((s.token, s.put, s.get), (1, 80, 80), "{s:?}");
    let conns = relay.connections.load(Ordering::SeqCst);
    // About one per thread; a few more when a request starts before a finished connection is
    // back in the pool. Never one per request.
    assert!(
        (1..=16).contains(&conns),
        "{conns} connections for 161 requests"
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets

/// A TCP relay to `target` that records what the server sends back (to learn the access token
/// the client was given) and counts connections. Serves connections until the test ends.
fn recording_relay(target: SocketAddr) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicU64::new(0));
    let seen2 = seen.clone();
    let connections2 = connections.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { return };
            connections2.fetch_add(1, Ordering::SeqCst);
            let Ok(mut server) = TcpStream::connect(target) else {
                return;
            };
            let (Ok(mut client2), Ok(mut server2)) = (client.try_clone(), server.try_clone())
            else {
                return;
            };
            thread::spawn(move || {
                let _ = std::io::copy(&mut client2, &mut server2);
                let _ = server2.shutdown(std::net::Shutdown::Write);
            });
            let seen = seen2.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match server.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if let Ok(mut s) = seen.lock() {
                                s.extend_from_slice(&buf[..n]);
                            }
                            if client.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    Relay {
        addr,
        seen,
        connections,
    }
}

/// A relay's address, what the server sent through it, and how many connections it accepted.
struct Relay {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
    connections: Arc<AtomicU64>,
}

/// `url` (of `emu`) through `relay`.
fn via(emu: &Emulator, relay: &Relay, url: &str) -> String {
    let through = url.replace(&emu.addr().to_string(), &relay.addr.to_string());
    assert_ne!(through, url);
    through
}

fn access_tokens_in(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let key = "\"access_token\":\"";
    let mut rest = &text[..];
    while let Some(at) = rest.find(key) {
        rest = &rest[at + key.len()..];
        if let Some(end) = rest.find('"') {
            out.push(rest[..end].to_string());
        }
    }
    out
}

#[test]
fn secrets_never_reach_logs_or_errors() {
    let emu = start(EmulatorConfig {
        token_ttl: Duration::from_secs(2),
        ..EmulatorConfig::default()
    });
    let relay = recording_relay(emu.addr());
    let token_url = via(&emu, &relay, &emu.token_url());

    let mut errors: Vec<ApiError> = Vec::new();
    let oauth_api = HttpApi::new(HttpConfig {
        token_url: token_url.clone(),
        ..config(&emu, oauth())
    })
    .unwrap();
    let basic_api = client(&emu, basic());
    oauth_api
        .put(
            "s/a.txt",
            Bytes::from_static(b"a"),
            "text/plain",
            Some("no-cache"),
        )
        .unwrap();
    basic_api.get("s/a.txt").unwrap();
    errors.extend(oauth_api.get("missing").err());
    errors.extend(basic_api.get("missing").err());
    // Past a renewal.
    thread::sleep(Duration::from_millis(1200));
    oauth_api.get("s/a.txt").unwrap();
    list_all(&oauth_api).unwrap();
    oauth_api.delete("s/a.txt").unwrap();

    // Failing authentication, both ways, and a forbidden account.
    let bad_basic = client(
        &emu,
        Credentials::Basic {
            username: "demo-user".into(),
            password: "bad-pass-789".into(),
        },
    );
    errors.extend(bad_basic.get("x").err());
    let bad_oauth = HttpApi::new(HttpConfig {
        token_url: token_url.clone(),
        ..config(
            &emu,
            Credentials::OAuth2 {
                client_id: "demo-client".into(),
                client_secret: "bad-secret-789".into(),
            },
        )
    })
    .unwrap();
    errors.extend(bad_oauth.list_page(None).err());
    let other = HttpApi::new(HttpConfig {
        account_id: "1234567".into(),
        ..config(&emu, oauth())
    })
    .unwrap();
    errors.extend(other.put("x", Bytes::new(), "text/plain", None).err());
    // Transient failures, logged at debug as they are retried.
    emu.set_faults(Faults {
        error_rate: 1.0,
        error_statuses: vec![503],
        ..Faults::default()
    });
    errors.extend(basic_api.get("x").err());
    errors.extend(oauth_api.get("x").err());
    emu.set_faults(Faults::default());
    assert!(errors.len() >= 7, "{errors:?}");

    let tokens = access_tokens_in(&relay.seen.lock().unwrap());
    assert!(tokens.len() >= 2, "the relay saw the token answers");
    let mut secrets: Vec<&str> = vec![PASSWORD, SECRET, "bad-pass-789", "bad-secret-789"];
    secrets.extend(tokens.iter().map(String::as_str));
    // Base64 of the Basic credentials too.
    let encoded: Vec<String> = [
        "demo-user:demo-password",
        "demo-client:demo-secret",
        "demo-user:bad-pass-789",
        "demo-client:bad-secret-789",
    ]
    .iter()
    .map(|s| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    })
    .collect();
    secrets.extend(encoded.iter().map(String::as_str));

    let lines = records();
    assert!(
        lines.iter().any(|l| l.starts_with("DEBUG bwmediafs::api")),
        "the client logs at debug"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("TRACE")),
        "trace records are captured"
    );
    assert_no_secret_logged(&secrets);
    for e in &errors {
        let shown = format!("{e} {e:?}");
        for s in &secrets {
            assert!(!shown.contains(s), "an error shows a secret: {shown}");
        }
    }
    let shown = format!("{oauth_api:?} {basic_api:?} {:?}", config(&emu, oauth()));
    for s in &secrets {
        assert!(!shown.contains(s), "Debug shows a secret: {shown}");
    }
}
