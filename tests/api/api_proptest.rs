//! Property tests of the client's two parsers of outside input: media id <-> URL path
//! (`api::path`) and listing pages (`api::wire::parse_list`).
//!
//! Media ids: every string survives encode then decode; the encoded form uses only URL-path-safe
//! characters, keeps `/` as the only separator, and the URL built from it addresses exactly that
//! path (a URL parser normalises `.` and `..` segments away, so ids with such segments are refused
//! by the client instead of being sent to another name).
//!
//! Listing pages: `parse_list` never panics, on arbitrary bytes or on arbitrary JSON trees, and it
//! agrees with an independent oracle written on `serde_json::Value`: a page is accepted exactly
//! when it is an array of objects whose `mediaName` is a string and whose `contentLength` is an
//! integer in 0..=u64::MAX, and then every item carries exactly the input's name and length.
//! Regressions found while writing these are kept as plain `#[test]`s at the end.

use std::time::Duration;

use bwmediafs::api::auth::Credentials;
use bwmediafs::api::http::{HttpApi, HttpConfig};
use bwmediafs::api::path::{decode_media_id, encode_media_id, url_can_carry};
use bwmediafs::api::retry::RetryPolicy;
use bwmediafs::api::wire::parse_list;
use bwmediafs::api::{ApiError, MediaApi, MediaInfo};
use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Value};

/// `cases` cases; failures are saved in `proptest-regressions/api_proptest.txt` (tests run
/// from the crate's root) and tried first on every later run.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/api_proptest.txt",
        ))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Media ids

/// Strings rich in what matters to a URL: separators, escapes, dots, controls, non-ASCII.
fn awkward_name() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop_oneof![
            Just("/"), Just("%"), Just("%2F"), Just("%41"), Just("%zz"), Just("+"), Just("#"),
            Just("?"), Just(" "), Just("."), Just(".."), Just("~"), Just("\\"), Just(";"),
            Just("&"), Just("="), Just(":"), Just("@"), Just("\0"), Just("\t"), Just("\n"),
            Just("\r"), Just("\u{7f}"), Just("é"), Just("😀"), Just("\u{200b}"), Just("\u{fffd}"),
        ]
        .prop_map(str::to_string),
        3 => "[a-zA-Z0-9_-]{1,4}",
        2 => any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        3 => prop::collection::vec(piece, 0..16).prop_map(|v| v.concat()),
        1 => any::<String>(),
    ]
}

/// Whether `name` has a `.` or `..` segment, which a URL parser would resolve away.
fn has_dot_segment(name: &str) -> bool {
    name.split('/').any(|s| s == "." || s == "..")
}

/// The checks every encoded form passes; `Err` says which failed.
fn check_encoding(name: &str) -> Result<(), String> {
    let encoded = encode_media_id(name);
    if decode_media_id(&encoded).as_deref() != Some(name) {
        return Err(format!("{encoded:?} does not decode back"));
    }
    if let Some(c) = encoded
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~%/".contains(*c)))
    {
        return Err(format!("{encoded:?} holds {c:?}"));
    }
    let bytes = encoded.as_bytes();
    for (i, _) in encoded.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
        if hex.len() != 2
            || !hex
                .iter()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b))
        {
            return Err(format!("{encoded:?}: a % at {i} is not an escape"));
        }
    }
    // `/` is the only separator, one for one, and each segment stands for its own.
    let segments: Vec<&str> = encoded.split('/').collect();
    let originals: Vec<&str> = name.split('/').collect();
    if segments.len() != originals.len() {
        return Err(format!("{encoded:?} has other separators than {name:?}"));
    }
    for (seg, orig) in segments.iter().zip(&originals) {
        if decode_media_id(seg).as_deref() != Some(*orig) {
            return Err(format!("segment {seg:?} does not decode to {orig:?}"));
        }
    }
    if url_can_carry(name) == has_dot_segment(name) {
        return Err("url_can_carry disagrees about dot segments".into());
    }
    // The URL the client builds addresses exactly that path.
    if !has_dot_segment(name) {
        let url = format!("http://127.0.0.1:9/api/v2/users/1/media/{encoded}");
        let parsed = reqwest::Url::parse(&url).map_err(|e| format!("{url}: {e}"))?;
        let expected = format!("/api/v2/users/1/media/{encoded}");
        if parsed.path() != expected || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(format!("{url} parses to path {:?}", parsed.path()));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn media_ids_round_trip_and_encode_to_safe_paths(name in awkward_name()) {
        if let Err(e) = check_encoding(&name) {
            prop_assert!(false, "{:?}: {}", name, e);
        }
    }

    #[test]
    fn decoding_any_path_never_panics(path in any::<String>()) {
        if let Some(id) = decode_media_id(&path) {
            // Decoding is the inverse of encoding, whatever form the path was in.
            prop_assert_eq!(decode_media_id(&encode_media_id(&id)), Some(id));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Listing pages

/// What a listing page must give, computed independently of `parse_list`: `None` when it must
/// be refused.
fn oracle(page: &Value) -> Option<Vec<MediaInfo>> {
    page.as_array()?
        .iter()
        .map(|item| {
            let item = item.as_object()?;
            Some(MediaInfo {
                name: item.get("mediaName")?.as_str()?.to_string(),
                content_length: item.get("contentLength")?.as_u64()?,
            })
        })
        .collect()
}

/// Numbers of every kind serde_json can hold.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        (0u64..5_000_000).prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(Value::from((1u64 << 53) + 1)),
        any::<i64>().prop_map(Value::from),
        (-5i64..0).prop_map(Value::from),
        // NaN and infinities become null.
        any::<f64>().prop_map(Value::from),
        (0u32..10_000).prop_map(|n| Value::from(f64::from(n))),
        Just(Value::from(-0.0f64)),
    ]
}

/// Any JSON value, as a tree; object keys lean towards the ones a page has.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("mediaName".to_string()),
        Just("contentLength".to_string()),
        Just("content".to_string()),
        any::<String>(),
    ]
}

/// Pages close to real ones: arrays of objects whose two fields are mostly right, sometimes
/// of the wrong type or missing, with extra fields.
fn page_like() -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        6 => awkward_name().prop_map(Value::String),
        1 => json_value(),
    ];
    let length = prop_oneof![
        6 => number(),
        1 => json_value(),
        1 => any::<u64>().prop_map(|n| Value::String(n.to_string())),
    ];
    let item = (
        prop::option::weighted(0.95, name),
        prop::option::weighted(0.95, length),
        prop::collection::btree_map(any::<String>(), json_value(), 0..3),
    )
        .prop_map(|(name, length, extra)| {
            let mut obj: serde_json::Map<String, Value> = extra
                .into_iter()
                .filter(|(k, _)| k != "mediaName" && k != "contentLength")
                .collect();
            if let Some(n) = name {
                obj.insert("mediaName".into(), n);
            }
            if let Some(l) = length {
                obj.insert("contentLength".into(), l);
            }
            Value::Object(obj)
        });
    prop::collection::vec(item, 0..8).prop_map(Value::Array)
}

/// `parse_list` on `page` agrees with the oracle, both ways.
fn check_page(page: &Value) -> Result<(), TestCaseError> {
    let body = serde_json::to_vec(page).map_err(|e| TestCaseError::fail(e.to_string()))?;
    match (parse_list(&body), oracle(page)) {
        (Ok(items), Some(expected)) => prop_assert_eq!(items, expected),
        (Err(ApiError::Malformed(m)), None) => prop_assert!(!m.is_empty()),
        (got, expected) => prop_assert!(
            false,
            "{}: parse_list gave {:?}, expected {:?}",
            String::from_utf8_lossy(&body),
            got,
            expected
        ),
    }
    Ok(())
}

/// `parse_list` on raw bytes: it may refuse them, but whatever it accepts is a page the oracle
/// accepts too, item for item. serde_json skips the string values of ignored fields without
/// checking their UTF-8, so the oracle judges the body with such bytes replaced (a bad byte
/// anywhere that matters, a name or a key, makes `parse_list` refuse the page).
fn check_bytes(body: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(items) = parse_list(body) {
        let value: Value = serde_json::from_str(&String::from_utf8_lossy(body))
            .map_err(|e| TestCaseError::fail(format!("accepted non-JSON: {e}")))?;
        prop_assert_eq!(Some(items), oracle(&value));
    }
    Ok(())
}

/// JSON text of a one-item page whose `contentLength` is `length` verbatim.
fn page_with_length(length: &str) -> String {
    format!(r#"[{{"mediaName":"m","contentLength":{length}}}]"#)
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn any_json_tree_is_judged_like_the_oracle(page in json_value()) {
        check_page(&page)?;
    }

    #[test]
    fn pages_close_to_real_ones_are_judged_like_the_oracle(page in page_like()) {
        check_page(&page)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        check_bytes(&body)?;
    }

    #[test]
    fn damaged_pages_never_panic_and_never_half_succeed(
        page in page_like(),
        cut in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let body = serde_json::to_vec(&page).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut damaged = body[..cut.index(body.len() + 1)].to_vec();
        let at = at.index(damaged.len() + 1);
        damaged.insert(at, byte);
        check_bytes(&damaged)?;
    }

    #[test]
    fn lengths_are_exact_integers_in_u64_or_refused(
        length in prop_oneof![
            "(0|[1-9][0-9]{0,25})",
            "0[0-9]{1,3}",
            "-[0-9]{1,21}",
            "[0-9]{1,20}\\.[0-9]{1,3}",
            "[0-9]{1,3}[eE][+-]?[0-9]{1,3}",
            any::<u64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| format!("{}", u128::from(n) + u128::from(u64::MAX))),
        ]
    ) {
        let canonical = (length == "0" || !length.starts_with('0'))
            && length.bytes().all(|b| b.is_ascii_digit());
        let expected = if canonical { length.parse::<u64>().ok() } else { None };
        match (parse_list(page_with_length(&length).as_bytes()), expected) {
            (Ok(items), Some(n)) => prop_assert_eq!(
                items,
                vec![MediaInfo { name: "m".into(), content_length: n }]
            ),
            (Err(ApiError::Malformed(_)), None) => {}
            (got, _) => prop_assert!(false, "contentLength {}: {:?}", length, got),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions and edges, kept as plain tests

#[test]
fn lengths_at_the_edges() {
    for (length, expected) in [
        ("0", Some(0)),
        ("9007199254740993", Some(9_007_199_254_740_993)),
        ("18446744073709551615", Some(u64::MAX)),
        ("18446744073709551616", None),
        ("-0", None),
        ("-1", None),
        ("0.0", None),
        ("1.0", None),
        ("1e0", None),
        ("01", None),
        ("+1", None),
        ("0x10", None),
        ("NaN", None),
        ("Infinity", None),
        ("\"1\"", None),
        ("null", None),
        ("true", None),
        ("[1]", None),
        ("{}", None),
    ] {
        let got = parse_list(page_with_length(length).as_bytes());
        match expected {
            Some(n) => assert_eq!(
                got,
                Ok(vec![MediaInfo {
                    name: "m".into(),
                    content_length: n
                }]),
                "{length}"
            ),
            None => assert!(
                matches!(got, Err(ApiError::Malformed(_))),
                "{length}: {got:?}"
            ),
        }
    }
}

#[test]
fn pages_the_oracle_and_the_parser_must_agree_on() {
    for page in [
        json!([]),
        json!({}),
        json!(null),
        json!([{"mediaName": "", "contentLength": 0}]),
        json!([{"mediaName": "a", "contentLength": 1, "medianame": 5, "ContentLength": "x"}]),
        json!([{"mediaName": "a", "contentLength": -0.0}]),
        json!([{"mediaName": "a", "contentLength": 3.0}]),
        json!([{"mediaName": ["a"], "contentLength": 1}]),
        json!([{"mediaName": "\u{0}\n/..", "contentLength": 1}]),
        json!([[{"mediaName": "a", "contentLength": 1}]]),
        // Found by `any_json_tree_is_judged_like_the_oracle`: a derived Deserialize took an
        // array of the fields in order for an item.
        json!([["", 0]]),
        json!([["a.png", 12]]),
        json!([["a.png", 12, "extra"]]),
        json!([{"mediaName": "a", "contentLength": 1}, ["b", 2]]),
    ] {
        check_page(&page).unwrap_or_else(|e| panic!("{page}: {e}"));
    }
}

#[test]
fn junk_inside_ignored_fields_is_ignored() {
    // Found by `damaged_pages_never_panic_and_never_half_succeed`: the values of fields the
    // client ignores are skipped unchecked (a bad UTF-8 byte, a lone surrogate escape), while
    // the same junk in a name or a key refuses the page.
    let item = || {
        Ok(vec![MediaInfo {
            name: "a".into(),
            content_length: 1,
        }])
    };
    for body in [
        &b"[{\"mediaName\":\"a\",\"contentLength\":1,\"content\":\"\x80\"}]"[..],
        br#"[{"mediaName":"a","contentLength":1,"content":"\ud800"}]"#,
    ] {
        assert_eq!(
            parse_list(body),
            item(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    check_bytes(b"[{\"mediaName\":\"a\",\"contentLength\":1,\"content\":\"\x80\"}]").unwrap();
    for body in [
        &b"[{\"mediaName\":\"a\x80\",\"contentLength\":1}]"[..],
        b"[{\"mediaName\":\"a\",\"contentLength\":1,\"x\x80\":1}]",
        br#"[{"mediaName":"\ud800","contentLength":1}]"#,
        br#"[{"mediaName":"a","contentLength":1,"x":"\q"}]"#,
    ] {
        assert!(
            matches!(parse_list(body), Err(ApiError::Malformed(_))),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn bodies_that_are_not_pages() {
    for body in [
        &b""[..],
        b" ",
        b"\xef\xbb\xbf[]",
        b"[]\x00",
        b"[",
        b"]",
        b"\"\\ud800\"",
        br#"[{"mediaName":"\ud800","contentLength":1}]"#,
        br#"[{"mediaName":"a","contentLength":1,"mediaName":"b"}]"#,
        br#"[{"mediaName":"a","contentLength":1,"contentLength":1}]"#,
    ] {
        assert!(
            matches!(parse_list(body), Err(ApiError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    // Deep nesting is refused by serde_json's recursion limit, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        parse_list(deep.as_bytes()),
        Err(ApiError::Malformed(_))
    ));
}

#[test]
fn awkward_media_ids() {
    for name in [
        "",
        "/",
        "//",
        "a//b",
        "/lead",
        "trail/",
        "%",
        "%2F",
        "%252F",
        "a+b c",
        "#?&=;:@",
        "\\a\\b",
        "\0\t\n\r\u{7f}",
        "...",
        ".a/b.",
        "é/ü 😀",
        "\u{feff}\u{200b}",
    ] {
        if let Err(e) = check_encoding(name) {
            panic!("{name:?}: {e}");
        }
    }
}

/// A client that never reaches a server: nothing listens on port 9 of the loopback.
fn offline_client() -> HttpApi {
    HttpApi::new(HttpConfig {
        base_url: "http://127.0.0.1:9/api/v2".into(),
        connect_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_millis(200),
        retry: RetryPolicy::none(),
        ..HttpConfig::new(
            "9900000",
            Credentials::Basic {
                username: "u".into(),
                password: "p".into(),
            },
        )
    })
    .expect("client builds")
}

#[test]
fn ids_with_dot_segments_are_refused_not_sent_elsewhere() {
    // A URL parser resolves `.` and `..` (and their %2E forms): `a/../b` would reach `b`, and
    // `..` the account itself. No request may be made for them.
    let api = offline_client();
    for name in [
        "..",
        ".",
        "a/..",
        "../b",
        "a/../b",
        "a/./b",
        "x/../../..",
        "./",
    ] {
        for r in [
            api.get(name).map(|_| ()),
            api.put(name, Bytes::from_static(b"x"), "text/plain", None),
            api.delete(name),
        ] {
            match r {
                Err(ApiError::Config(m)) => assert!(m.contains("segment"), "{name:?}: {m}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
    }
    assert_eq!(api.requests_answered(), 0);
    // Dots that are not whole segments are ordinary names.
    for name in ["...", ".a", "a.", "a/.b/..c"] {
        assert!(
            matches!(api.get(name), Err(ApiError::Transport(_))),
            "{name:?}"
        );
    }
}
