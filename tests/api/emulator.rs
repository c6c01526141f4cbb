//! The emulator over loopback, driven by a plain HTTP client (reqwest) and, where the exact
//! bytes on the wire matter (header capitalisation, short bodies, resets), by raw TCP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bwmediafs::api::path::encode_media_id;
use bwmediafs::emulator::{Emulator, EmulatorConfig, Faults, StatsSnapshot, StoreConfig};
use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;
use serde_json::Value;

const USER: &str = "demo-user";
const PASS: &str = "demo-password";
const CLIENT_ID: &str = "demo-client";
const CLIENT_SECRET: &str = "demo-secret";
const JSON_UTF8: &str = "application/json; charset=utf-8";

fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).expect("emulator starts")
}

fn start_default() -> Emulator {
    start(EmulatorConfig::default())
}

fn http() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

fn list_url(emu: &Emulator) -> String {
    format!("{}/users/{}/media", emu.base_url(), emu.account())
}

/// The URL of a media with `/` kept literal (each segment encoded): production's form.
fn literal_url(emu: &Emulator, name: &str) -> String {
    format!("{}/{}", list_url(emu), encode_media_id(name))
}

/// The URL of a media with every `/` sent as `%2F`: the generated SDKs' form.
fn encoded_url(emu: &Emulator, name: &str) -> String {
    format!(
        "{}/{}",
        list_url(emu),
        utf8_percent_encode(name, NON_ALPHANUMERIC)
    )
}

trait Basic {
    fn demo_auth(self) -> Self;
}

impl Basic for RequestBuilder {
    fn demo_auth(self) -> Self {
        self.basic_auth(USER, Some(PASS))
    }
}

fn put(c: &Client, url: &str, body: &[u8], content_type: &str) -> Response {
    c.put(url)
        .demo_auth()
        .header("Content-Type", content_type)
        .body(body.to_vec())
        .send()
        .expect("put answered")
}

fn get(c: &Client, url: &str) -> Response {
    c.get(url).demo_auth().send().expect("get answered")
}

fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Check a Bandwidth error answer: status, JSON content type, `type` field.
fn assert_error(resp: Response, status: u16, kind: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(header(&resp, "content-type"), Some(JSON_UTF8));
    let body: Value = serde_json::from_slice(&resp.bytes().expect("error body")).expect("json");
    assert_eq!(body["type"], kind, "{body}");
    assert!(body["description"].is_string(), "{body}");
    body
}

fn list_page(c: &Client, emu: &Emulator, token: Option<&str>) -> (Vec<Value>, Option<String>) {
    let mut req = c.get(list_url(emu)).demo_auth();
    if let Some(t) = token {
        req = req.header("Continuation-Token", t);
    }
    let resp = req.send().expect("list answered");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), Some(JSON_UTF8));
    let next = header(&resp, "continuation-token").map(str::to_string);
    let items: Vec<Value> =
        serde_json::from_slice(&resp.bytes().expect("list body")).expect("json");
    (items, next)
}

fn list_names(c: &Client, emu: &Emulator) -> Vec<String> {
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let (items, next) = list_page(c, emu, token.as_deref());
        names.extend(
            items
                .iter()
                .map(|i| i["mediaName"].as_str().unwrap().to_string()),
        );
        match next {
            Some(t) => token = Some(t),
            None => return names,
        }
    }
}

/// One raw HTTP/1.1 exchange with `Connection: close`: the response head and whatever body
/// bytes arrived, and how the stream ended (`Ok` = clean end, `Err` = a read error).
fn raw(addr: SocketAddr, request: &str) -> (String, Vec<u8>, std::io::Result<()>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).expect("send");
    let mut all = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(all.len());
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    (head, all[split..].to_vec(), end)
}

fn basic_header() -> String {
    use base64::Engine;
    format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"))
    )
}

fn content_length_of(head: &str) -> Option<usize> {
    head.lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
}

fn fetch_token(c: &Client, emu: &Emulator) -> Value {
    let resp = c
        .post(emu.token_url())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .expect("token answered");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), Some(JSON_UTF8));
    serde_json::from_slice(&resp.bytes().unwrap()).expect("token json")
}

#[test]
fn put_get_overwrite_delete() {
    let emu = start_default();
    let c = http();
    let url = literal_url(&emu, "pic.png");

    let resp = c
        .put(&url)
        .demo_auth()
        .header("Content-Type", "image/png")
        .header("Cache-Control", "max-age=3600")
        .body(b"\x89PNG first".to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.bytes().unwrap().is_empty());

    let resp = get(&c, &url);
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), Some("image/png"));
    assert_eq!(header(&resp, "cache-control"), Some("max-age=3600"));
    assert_eq!(header(&resp, "content-length"), Some("10"));
    assert_eq!(&resp.bytes().unwrap()[..], b"\x89PNG first");

    // Overwrite: 204 again, new bytes and type, no cache control any more.
    assert_eq!(
        put(&c, &url, b"second version", "text/plain").status(),
        StatusCode::NO_CONTENT
    );
    let resp = get(&c, &url);
    assert_eq!(header(&resp, "content-type"), Some("text/plain"));
    assert_eq!(header(&resp, "cache-control"), None);
    assert_eq!(&resp.bytes().unwrap()[..], b"second version");

    let resp = c.delete(&url).demo_auth().send().unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_error(get(&c, &url), 404, "not-found");
    // Deleting a missing name answers 204, as production does.
    let resp = c.delete(&url).demo_auth().send().unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(emu.store().is_empty());
}

#[test]
fn put_without_content_type_stores_octet_stream() {
    let emu = start_default();
    let c = http();
    let url = literal_url(&emu, "blob");
    let resp = c
        .put(&url)
        .demo_auth()
        .body(vec![1u8, 2, 3])
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = get(&c, &url);
    assert_eq!(
        header(&resp, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(&resp.bytes().unwrap()[..], &[1, 2, 3]);
}

/// Found by fuzzing the emulator from Bandwidth's OpenAPI spec: a malformed `Content-Type`
/// was stored and echoed to every client that downloaded the media.
#[test]
fn an_upload_whose_content_type_is_not_a_media_type_is_refused_with_400() {
    let emu = start_default();
    let c = http();
    for bad in [
        "@0E4_K^j",
        "image",
        "image/",
        "/png",
        "image/*",
        "*/*",
        "text/plain; =x",
    ] {
        let url = literal_url(&emu, "bad.bin");
        let body = assert_error(put(&c, &url, b"bytes", bad), 400, "request-validation");
        assert!(
            body["description"]
                .as_str()
                .unwrap()
                .contains("Content-Type"),
            "{bad}: {body}"
        );
        assert_eq!(
            get(&c, &url).status(),
            StatusCode::NOT_FOUND,
            "{bad}: stored"
        );
    }
    for good in [
        "image/png",
        "text/plain; charset=utf-8",
        "application/vnd.3gpp.sms",
    ] {
        let url = literal_url(&emu, "good.bin");
        assert_eq!(
            put(&c, &url, b"b", good).status(),
            StatusCode::NO_CONTENT,
            "{good}"
        );
        assert_eq!(header(&get(&c, &url), "content-type"), Some(good));
    }
}

#[test]
fn get_ignores_accept_json() {
    let emu = start_default();
    let c = http();
    let body: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let url = literal_url(&emu, "a/0/photo.jpg");
    assert_eq!(
        put(&c, &url, &body, "image/jpeg").status(),
        StatusCode::NO_CONTENT
    );
    let resp = c
        .get(&url)
        .demo_auth()
        .header("Accept", "application/json")
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), Some("image/jpeg"));
    assert_eq!(header(&resp, "content-length"), Some("100000"));
    assert_eq!(resp.bytes().unwrap().to_vec(), body);
}

#[test]
fn awkward_names_in_literal_and_encoded_forms() {
    let emu = start_default();
    let c = http();
    let long = format!("long/{}", "é".repeat(125)); // 5 + 250 = 255 bytes
    assert_eq!(long.len(), 255);
    let names = [
        "14762070468292kw2fuqty55yp2b2/0/bw.png".to_string(),
        "with space/and more spaces.txt".to_string(),
        "100% sure".to_string(),
        "%2F is not a slash".to_string(),
        "a+b=c".to_string(),
        "hash#tag".to_string(),
        "what?query=1&x".to_string(),
        "ünïcödé/日本語/😀.gif".to_string(),
        "semi;colon,comma@at".to_string(),
        long,
    ];
    for (i, name) in names.iter().enumerate() {
        let body = format!("body of {i}");
        // Upload through one form, read through the other, and back.
        let (up, down) = if i % 2 == 0 {
            (literal_url(&emu, name), encoded_url(&emu, name))
        } else {
            (encoded_url(&emu, name), literal_url(&emu, name))
        };
        assert_eq!(
            put(&c, &up, body.as_bytes(), "text/plain").status(),
            StatusCode::NO_CONTENT,
            "{name}"
        );
        let resp = get(&c, &down);
        assert_eq!(resp.status(), StatusCode::OK, "{name}");
        assert_eq!(resp.text().unwrap(), body, "{name}");
        let resp = get(&c, &up);
        assert_eq!(resp.status(), StatusCode::OK, "{name}");
    }
    let mut expected: Vec<String> = names.to_vec();
    expected.sort();
    assert_eq!(list_names(&c, &emu), expected);
    assert_eq!(emu.store().names(), expected);
    // Each listing item's content URL reaches the media.
    let (items, _) = list_page(&c, &emu, None);
    for item in &items {
        let resp = get(&c, item["content"].as_str().unwrap());
        assert_eq!(resp.status(), StatusCode::OK, "{item}");
    }
    // `%252F` is a literal `%2F` in the name, not a slash: decoded once only.
    let resp = get(
        &c,
        &format!("{}/%252F%20is%20not%20a%20slash", list_url(&emu)),
    );
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = get(
        &c,
        &format!("{}/%2F%20is%20not%20a%20slash", list_url(&emu)),
    );
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    for name in &names {
        let resp = c
            .delete(encoded_url(&emu, name))
            .demo_auth()
            .send()
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    assert!(emu.store().is_empty());
}

#[test]
fn pagination_of_2500_media() {
    let emu = start_default();
    let c = http();
    let mut expected = Vec::new();
    for i in 0..2500 {
        let name = format!("msg{:04}/{}/f.png", (i * 7919) % 2500, i % 3);
        emu.store()
            .put(&name, Bytes::from(vec![b'x'; i % 50]), "image/png", None)
            .unwrap();
        expected.push(name);
    }
    expected.sort();
    expected.dedup();
    assert_eq!(expected.len(), 2500);

    for page_size in [1000usize, 7] {
        emu.store().set_config(StoreConfig {
            page_size,
            ..emu.store().config()
        });
        emu.reset_stats();
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let (items, next) = list_page(&c, &emu, token.as_deref());
            pages += 1;
            assert!(items.len() <= page_size);
            for item in &items {
                let name = item["mediaName"].as_str().unwrap();
                let stored = emu.store().get(name).unwrap();
                assert_eq!(
                    item["contentLength"].as_u64(),
                    Some(stored.body.len() as u64)
                );
                assert!(item["contentLength"].is_u64(), "an integer: {item}");
                assert_eq!(
                    item["content"].as_str(),
                    Some(literal_url(&emu, name).as_str())
                );
                names.push(name.to_string());
            }
            match next {
                Some(t) => {
                    assert_eq!(items.len(), page_size, "only the last page is short");
                    token = Some(t);
                }
                None => break,
            }
        }
        assert_eq!(pages, 2500usize.div_ceil(page_size));
        assert_eq!(names, expected, "every name once, sorted");
        assert_eq!(emu.stats().list, pages as u64);
    }
}

#[test]
fn continuation_token_header_is_capitalised_and_absent_on_the_last_page() {
    let emu = start(EmulatorConfig {
        store: StoreConfig {
            page_size: 2,
            ..StoreConfig::default()
        },
        ..EmulatorConfig::default()
    });
    for name in ["a", "b", "c"] {
        emu.store()
            .put(name, Bytes::from_static(b"1"), "text/plain", None)
            .unwrap();
    }
    let path = format!("/api/v2/users/{}/media", emu.account());
    let (head, body, _) = raw(
        emu.addr(),
        &format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
            basic_header()
        ),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let token = head
        .lines()
        .find_map(|l| l.strip_prefix("Continuation-Token: "))
        .unwrap_or_else(|| panic!("no exactly capitalised Continuation-Token in {head}"))
        .trim()
        .to_string();
    assert!(head.contains("\r\nContent-Type: application/json; charset=utf-8\r\n"));
    let items: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(items.len(), 2);

    let (head, body, _) = raw(
        emu.addr(),
        &format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\n{}Continuation-Token: {token}\r\nConnection: close\r\n\r\n",
            basic_header()
        ),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("continuation-token"),
        "{head}"
    );
    let items: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["mediaName"], "c");
}

#[test]
fn bad_continuation_token_is_400() {
    let emu = start_default();
    let c = http();
    for token in ["garbage", "bm90IG91cnM=", "%%%"] {
        let resp = c
            .get(list_url(&emu))
            .demo_auth()
            .header("Continuation-Token", token)
            .send()
            .unwrap();
        assert_error(resp, 400, "request-validation");
    }
}

#[test]
fn basic_auth_failures_are_401_and_other_accounts_403() {
    let emu = start_default();
    let c = http();
    let url = literal_url(&emu, "x");
    let expected = serde_json::json!({"type":"unauthorized","description":"Authentication Failed"});
    for req in [
        c.get(&url),
        c.get(&url).basic_auth(USER, Some("wrong")),
        c.get(&url).basic_auth("someone", Some(PASS)),
        c.get(&url).basic_auth(CLIENT_ID, Some(CLIENT_SECRET)),
        c.get(&url).bearer_auth("not-a-token"),
        c.get(&url).header("Authorization", "Digest abc"),
    ] {
        let body = assert_error(req.send().unwrap(), 401, "unauthorized");
        assert_eq!(body, expected);
    }
    // Every operation is guarded, and nothing happens without credentials.
    let resp = c.put(&url).body("x").send().unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = c.delete(&url).send().unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = c.get(list_url(&emu)).send().unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(emu.store().is_empty());

    let other = format!("{}/users/1234567/media", emu.base_url());
    let body = assert_error(get(&c, &other), 403, "forbidden");
    assert_eq!(
        body,
        serde_json::json!({"type":"forbidden","description":"Access Denied"})
    );
    let resp = put(&c, &format!("{other}/x"), b"x", "text/plain");
    assert_error(resp, 403, "forbidden");
    // Bad credentials on another account: 401 first.
    let resp = c.get(&other).basic_auth(USER, Some("bad")).send().unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(emu.store().is_empty());
}

#[test]
fn oauth2_tokens_work_and_expire() {
    let emu = start(EmulatorConfig {
        token_ttl: Duration::from_millis(1200),
        ..EmulatorConfig::default()
    });
    let c = http();
    let token = fetch_token(&c, &emu);
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 2);
    let access = token["access_token"].as_str().unwrap().to_string();
    assert!(access.len() >= 32);

    let url = literal_url(&emu, "via/token.txt");
    let resp = c.put(&url).bearer_auth(&access).body("hi").send().unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = c.get(&url).bearer_auth(&access).send().unwrap();
    assert_eq!(resp.text().unwrap(), "hi");
    let resp = c
        .get(format!("{}/users/42/media", emu.base_url()))
        .bearer_auth(&access)
        .send()
        .unwrap();
    assert_error(resp, 403, "forbidden");

    std::thread::sleep(Duration::from_millis(1500));
    let resp = c.get(&url).bearer_auth(&access).send().unwrap();
    assert_error(resp, 401, "unauthorized");
    // A fresh token works again.
    let fresh = fetch_token(&c, &emu)["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(fresh, access);
    let resp = c.get(&url).bearer_auth(&fresh).send().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(emu.stats().token, 2);
}

#[test]
fn token_endpoint_refuses_bad_requests() {
    let emu = start_default();
    let c = http();
    let post = |id: &str, secret: &str, body: &str| {
        c.post(emu.token_url())
            .basic_auth(id, Some(secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    let resp = post(CLIENT_ID, "wrong", "grant_type=client_credentials");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_slice(&resp.bytes().unwrap()).unwrap();
    assert_eq!(body["error"], "invalid_client");
    // API-user credentials are not OAuth2 client credentials.
    let resp = post(USER, PASS, "grant_type=client_credentials");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = post(CLIENT_ID, CLIENT_SECRET, "grant_type=password");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&resp.bytes().unwrap()).unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
    let resp = c.get(emu.token_url()).send().unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn either_method_may_be_disabled() {
    let c = http();
    let oauth_only = start(EmulatorConfig {
        basic: None,
        ..EmulatorConfig::default()
    });
    assert_eq!(
        get(&c, &list_url(&oauth_only)).status(),
        StatusCode::UNAUTHORIZED
    );
    let token = fetch_token(&c, &oauth_only)["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = c
        .get(list_url(&oauth_only))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let basic_only = start(EmulatorConfig {
        oauth: None,
        ..EmulatorConfig::default()
    });
    let resp = c
        .post(basic_only.token_url())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .body("grant_type=client_credentials")
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&c, &list_url(&basic_only)).status(), StatusCode::OK);
}

#[test]
fn oversize_upload_is_413_and_stores_nothing() {
    let emu = start_default();
    let c = http();
    let limit = bwmediafs::api::MAX_MEDIA_SIZE as usize;
    let url = literal_url(&emu, "big.bin");

    let resp = put(&c, &url, &vec![7u8; limit + 1], "application/octet-stream");
    assert_error(resp, 413, "request-entity-too-large");
    assert!(emu.store().is_empty());
    assert_eq!(get(&c, &url).status(), StatusCode::NOT_FOUND);

    // Exactly the limit is fine.
    let resp = put(&c, &url, &vec![7u8; limit], "application/octet-stream");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(emu.store().get("big.bin").unwrap().body.len(), limit);
}

#[test]
fn oversize_upload_without_content_length_is_413() {
    let emu = start(EmulatorConfig {
        store: StoreConfig {
            max_size: 10_000,
            ..StoreConfig::default()
        },
        ..EmulatorConfig::default()
    });
    let c = http();
    let url = literal_url(&emu, "chunked.bin");
    // A reader body of unknown size goes out chunked: no Content-Length to refuse by.
    let resp = c
        .put(&url)
        .demo_auth()
        .body(reqwest::blocking::Body::new(
            std::io::repeat(1).take(10_001),
        ))
        .send()
        .unwrap();
    assert_error(resp, 413, "request-entity-too-large");
    // Far over the limit: still a clean 413 (the rest is drained, not buffered).
    let resp = c
        .put(&url)
        .demo_auth()
        .body(reqwest::blocking::Body::new(
            std::io::repeat(1).take(8_000_000),
        ))
        .send()
        .unwrap();
    assert_error(resp, 413, "request-entity-too-large");
    assert!(emu.store().is_empty());
    let resp = c
        .put(&url)
        .demo_auth()
        .body(reqwest::blocking::Body::new(
            std::io::repeat(1).take(10_000),
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(emu.store().len(), 1);
}

#[test]
fn oversize_upload_expecting_continue_is_refused_before_the_body() {
    let emu = start_default();
    let path = format!("/api/v2/users/{}/media/big.bin", emu.account());
    let (head, body, _) = raw(
        emu.addr(),
        &format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\n{}Content-Type: image/png\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            basic_header()
        ),
    );
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["type"], "request-entity-too-large");
    assert!(emu.store().is_empty());
}

#[test]
fn retention_expires_media() {
    let emu = start(EmulatorConfig {
        store: StoreConfig {
            retention: Duration::from_millis(1000),
            ..StoreConfig::default()
        },
        ..EmulatorConfig::default()
    });
    let c = http();
    let url = literal_url(&emu, "short-lived.txt");
    assert_eq!(
        put(&c, &url, b"soon gone", "text/plain").status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(get(&c, &url).status(), StatusCode::OK);
    assert_eq!(list_names(&c, &emu), vec!["short-lived.txt"]);
    std::thread::sleep(Duration::from_millis(1300));
    assert_error(get(&c, &url), 404, "not-found");
    assert!(list_names(&c, &emu).is_empty());
}

#[test]
fn error_rate_one_gives_only_errors_and_429_carries_retry_after() {
    let emu = start_default();
    let c = http();
    let url = literal_url(&emu, "f.txt");
    emu.store()
        .put("f.txt", Bytes::from_static(b"data"), "text/plain", None)
        .unwrap();
    emu.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let resp = get(&c, &url);
        let status = resp.status().as_u16();
        assert!([500, 503, 429].contains(&status), "{status}");
        if status == 429 {
            assert_eq!(header(&resp, "retry-after"), Some("1"));
        }
        assert_eq!(header(&resp, "content-type"), Some(JSON_UTF8));
        seen.insert(status);
    }
    assert_eq!(seen.len(), 3, "every configured status is drawn: {seen:?}");

    emu.set_faults(Faults {
        error_rate: 1.0,
        error_statuses: vec![429],
        retry_after_secs: 7,
        ..Faults::default()
    });
    for resp in [
        get(&c, &url),
        get(&c, &list_url(&emu)),
        put(&c, &url, b"x", "text/plain"),
        c.delete(&url).demo_auth().send().unwrap(),
        c.post(emu.token_url())
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .body("grant_type=client_credentials")
            .send()
            .unwrap(),
    ] {
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&resp, "retry-after"), Some("7"));
        assert_error(resp, 429, "too-many-requests");
    }
    // Nothing was changed by the failed put and delete.
    assert_eq!(&emu.store().get("f.txt").unwrap().body[..], b"data");
    // Control endpoints are never faulty.
    let resp = c
        .get(format!("{}/_emulator/stats", emu.root_url()))
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[test]
fn truncated_bodies_announce_more_than_they_send() {
    let emu = start_default();
    let body = vec![b'z'; 200_000];
    emu.store()
        .put(
            "t.bin",
            Bytes::from(body.clone()),
            "application/octet-stream",
            None,
        )
        .unwrap();
    emu.set_faults(Faults {
        truncate_rate: 1.0,
        ..Faults::default()
    });
    let path = format!("/api/v2/users/{}/media/t.bin", emu.account());
    let (head, got, end) = raw(
        emu.addr(),
        &format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
            basic_header()
        ),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(content_length_of(&head), Some(200_000));
    assert!(
        !got.is_empty() && got.len() < 200_000,
        "{} bytes",
        got.len()
    );
    assert!(end.is_ok(), "a truncated body ends cleanly: {end:?}");

    // A client notices: an error, never a short body taken for whole.
    let c = http();
    for url in [literal_url(&emu, "t.bin"), list_url(&emu)] {
        match c.get(&url).demo_auth().send() {
            Err(_) => {}
            Ok(resp) => {
                let announced: usize = header(&resp, "content-length").unwrap().parse().unwrap();
                match resp.bytes() {
                    Err(_) => {}
                    Ok(b) => assert!(b.len() < announced),
                }
            }
        }
    }
}

#[test]
fn cut_connections_reset_in_the_middle_of_the_body() {
    let emu = start_default();
    let body = vec![b'c'; 300_000];
    emu.store()
        .put("c.bin", Bytes::from(body), "application/octet-stream", None)
        .unwrap();
    emu.set_faults(Faults {
        cut_rate: 1.0,
        ..Faults::default()
    });
    let path = format!("/api/v2/users/{}/media/c.bin", emu.account());
    let (head, got, end) = raw(
        emu.addr(),
        &format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
            basic_header()
        ),
    );
    // Either the reset arrives after the partial bytes were read, or it destroys them first.
    assert!(got.len() < 300_000, "{} bytes", got.len());
    if head.starts_with("HTTP/1.1 200") {
        assert_eq!(content_length_of(&head), Some(300_000));
    }
    let err = end.expect_err("a cut connection ends with a reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    let c = http();
    for _ in 0..5 {
        let r = c.get(literal_url(&emu, "c.bin")).demo_auth().send();
        if let Ok(resp) = r {
            assert!(resp.bytes().is_err(), "a cut body must not read as whole");
        }
    }
    // A cut upload stores nothing; a cut delete answers nothing.
    let r = c
        .put(literal_url(&emu, "new.bin"))
        .demo_auth()
        .body(vec![1u8; 100_000])
        .send();
    assert!(r.is_err(), "{r:?}");
    assert!(emu.store().get("new.bin").is_err());
    let r = c.delete(literal_url(&emu, "c.bin")).demo_auth().send();
    assert!(r.is_err(), "{r:?}");
    assert_eq!(emu.stats().put, 1);
}

#[test]
fn latency_delays_api_requests_only() {
    let emu = start_default();
    let c = http();
    emu.set_faults(Faults {
        latency_ms: 1000,
        ..Faults::default()
    });
    let t = Instant::now();
    assert_eq!(get(&c, &list_url(&emu)).status(), StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(1000));
    let t = Instant::now();
    let resp = c
        .get(format!("{}/_emulator/stats", emu.root_url()))
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn requests_are_served_concurrently() {
    let emu = start_default();
    emu.set_faults(Faults {
        latency_ms: 400,
        ..Faults::default()
    });
    let url = list_url(&emu);
    let t = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || get(&http(), &url).status())
        })
        .collect();
    for th in threads {
        assert_eq!(th.join().unwrap(), StatusCode::OK);
    }
    // In sequence this would take 6.4 s.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(emu.stats().list, 16);
}

#[test]
fn faults_endpoint_sets_reads_and_clears() {
    let emu = start_default();
    let c = http();
    let faults_url = format!("{}/_emulator/faults", emu.root_url());
    let resp = c
        .put(&faults_url)
        .header("Content-Type", "application/json")
        .body(r#"{"error_rate":1.0,"error_statuses":[503]}"#)
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(emu.faults().error_rate, 1.0);
    let current: Value =
        serde_json::from_slice(&c.get(&faults_url).send().unwrap().bytes().unwrap()).unwrap();
    assert_eq!(current["error_rate"], 1.0);
    assert_eq!(current["error_statuses"], serde_json::json!([503]));
    assert_eq!(current["cut_rate"], 0.0);
    assert_error(get(&c, &list_url(&emu)), 503, "service-unavailable");

    // `{}`: no faults of any kind.
    let resp = c.put(&faults_url).body("{}").send().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(emu.faults(), Faults::default());
    for _ in 0..20 {
        assert_eq!(get(&c, &list_url(&emu)).status(), StatusCode::OK);
    }
    // Nonsense is refused and changes nothing.
    for bad in [
        r#"{"error_rate":2}"#,
        r#"{"error_statuses":[200]}"#,
        "not json",
    ] {
        let resp = c.put(&faults_url).body(bad).send().unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(emu.faults(), Faults::default());
}

#[test]
fn faults_can_be_set_at_start() {
    let emu = start(EmulatorConfig {
        faults: Faults {
            error_rate: 1.0,
            error_statuses: vec![500],
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    });
    assert_error(get(&http(), &list_url(&emu)), 500, "internal-server-error");
}

#[test]
fn stats_count_every_request_and_reset() {
    let emu = start_default();
    let c = http();
    let stats_url = format!("{}/_emulator/stats", emu.root_url());
    let url = literal_url(&emu, "s.txt");
    put(&c, &url, b"1", "text/plain");
    put(&c, &url, b"2", "text/plain");
    get(&c, &url);
    get(&c, &literal_url(&emu, "missing"));
    c.get(&url).send().unwrap(); // 401 counts too
    get(&c, &list_url(&emu));
    c.delete(&url).demo_auth().send().unwrap();
    fetch_token(&c, &emu);
    emu.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    get(&c, &url); // injected errors count too
    emu.set_faults(Faults::default());
    // Unknown paths and wrong methods are no operation.
    c.get(format!("{}/nowhere", emu.root_url())).send().unwrap();
    c.post(&url).demo_auth().send().unwrap();

    let expected = StatsSnapshot {
        list: 1,
        get: 4,
        put: 2,
        delete: 1,
        token: 1,
    };
    assert_eq!(emu.stats(), expected);
    let over_http: StatsSnapshot =
        serde_json::from_slice(&c.get(&stats_url).send().unwrap().bytes().unwrap()).unwrap();
    assert_eq!(over_http, expected);
    let raw_json: Value =
        serde_json::from_slice(&c.get(&stats_url).send().unwrap().bytes().unwrap()).unwrap();
    assert_eq!(
        raw_json,
        serde_json::json!({"list":1,"get":4,"put":2,"delete":1,"token":1})
    );

    let resp = c.post(format!("{stats_url}/reset")).send().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(emu.stats(), StatsSnapshot::default());
    get(&c, &url);
    assert_eq!(emu.stats().get, 1);
    emu.reset_stats();
    assert_eq!(emu.stats(), StatsSnapshot::default());
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405() {
    let emu = start_default();
    let c = http();
    for path in [
        "/",
        "/api/v2/users",
        "/api/v2/users/9900000",
        "/api/v2/users/9900000/mediax",
        "/api/v2/users/9900000/media/",
        "/api/v3/users/9900000/media",
        "/_emulator/nothing",
    ] {
        let resp = c
            .get(format!("{}{path}", emu.root_url()))
            .demo_auth()
            .send()
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let resp = c.post(list_url(&emu)).demo_auth().send().unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let resp = c.patch(literal_url(&emu, "x")).demo_auth().send().unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn seed_directory_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/0")).unwrap();
    std::fs::write(dir.path().join("a/0/x.png"), b"png").unwrap();
    std::fs::write(dir.path().join("top.txt"), b"text").unwrap();
    let emu = start(EmulatorConfig {
        seed: Some(dir.path().to_path_buf()),
        ..EmulatorConfig::default()
    });
    let c = http();
    assert_eq!(list_names(&c, &emu), vec!["a/0/x.png", "top.txt"]);
    let resp = get(&c, &encoded_url(&emu, "a/0/x.png"));
    assert_eq!(header(&resp, "content-type"), Some("image/png"));
    assert_eq!(&resp.bytes().unwrap()[..], b"png");
}

#[test]
fn drop_stops_the_server_even_with_open_connections() {
    let emu = start_default();
    let addr = emu.addr();
    // An idle keep-alive connection and a half-sent request stay open across the drop.
    let c = http();
    assert_eq!(get(&c, &list_url(&emu)).status(), StatusCode::OK);
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET /api/v2/users/9900000/media HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let t = Instant::now();
    drop(emu);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(TcpStream::connect(addr).is_err());
}

/// Kills the spawned binary by pid, whatever happens to the test.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn binary_prints_its_address_and_stops_on_sigterm() {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_bwmedia-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--page-size",
            "2",
            "--account",
            "1234567",
        ])
        .env("BW_EMULATOR_PASSWORD", "from-env")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the emulator binary");
    let mut guard = ChildGuard(child);
    let stdout = guard.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the binary prints its address");
    let addr = line
        .trim_end()
        .strip_prefix("listening on http://127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let port: u16 = addr.parse().expect("a port");
    assert_ne!(port, 0);

    let c = http();
    let list = format!("http://127.0.0.1:{port}/api/v2/users/1234567/media");
    let resp = c
        .get(&list)
        .basic_auth(USER, Some("from-env"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = c.get(&list).basic_auth(USER, Some(PASS)).send().unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let pid = guard.0.id() as libc::pid_t;
    // SAFETY: kill(2) on the pid of the child this test spawned and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}
