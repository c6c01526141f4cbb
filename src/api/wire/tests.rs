//! Parsing what the server says: listing pages, error bodies, statuses.

use super::*;

#[test]
fn list_pages_parse() {
    assert_eq!(parse_list(b"[]").unwrap(), vec![]);
    let items = parse_list(
        br#"[{"mediaName":"a/0/b.png","contentLength":12,"content":"http://x/a/0/b.png"},
             {"contentLength":0,"mediaName":"z","extra":{"nested":[1,2]}},
             {"mediaName":"big","contentLength":18446744073709551615}]"#,
    )
    .unwrap();
    assert_eq!(
        items,
        vec![
            MediaInfo {
                name: "a/0/b.png".into(),
                content_length: 12
            },
            MediaInfo {
                name: "z".into(),
                content_length: 0
            },
            MediaInfo {
                name: "big".into(),
                content_length: u64::MAX
            },
        ]
    );
}

#[test]
fn malformed_list_pages_are_errors() {
    for bad in [
        &b""[..],
        b"null",
        b"{}",
        b"{\"items\":[]}",
        b"[1]",
        b"[null]",
        b"[[]]",
        br#"[["a",1]]"#,
        br#"[{"mediaName":"a"}]"#,
        br#"[{"contentLength":1}]"#,
        br#"[{"mediaName":"a","contentLength":"12"}]"#,
        br#"[{"mediaName":"a","contentLength":-1}]"#,
        br#"[{"mediaName":"a","contentLength":1.5}]"#,
        br#"[{"mediaName":"a","contentLength":1e3}]"#,
        br#"[{"mediaName":"a","contentLength":null}]"#,
        br#"[{"mediaName":"a","contentLength":18446744073709551616}]"#,
        br#"[{"mediaName":7,"contentLength":1}]"#,
        br#"[{"mediaName":null,"contentLength":1}]"#,
        br#"[{"mediaName":"a","contentLength":1,"mediaName":"b"}]"#,
        br#"[{"mediaName":"a","contentLength":1}"#,
        br#"[{"mediaName":"a","contentLength":1}] trailing"#,
        b"<html>503</html>",
        b"\xff\xfe[]",
    ] {
        match parse_list(bad) {
            Err(ApiError::Malformed(m)) => assert!(!m.is_empty()),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bad)),
        }
    }
}

#[test]
fn error_bodies_of_all_kinds() {
    assert_eq!(
        parse_error_body(br#"{"type":"forbidden","description":"Access Denied"}"#),
        (Some("forbidden".into()), Some("Access Denied".into()))
    );
    assert_eq!(
        parse_error_body(
            br#"{"timestamp":"2024-01-01T00:00:00.000+00:00","status":404,"error":"Not Found","path":"/x"}"#
        ),
        (Some("Not Found".into()), None)
    );
    assert_eq!(
        parse_error_body(br#"{"timestamp":1,"status":500,"error":"Internal Server Error","message":"boom","path":"/x"}"#),
        (Some("Internal Server Error".into()), Some("boom".into()))
    );
    assert_eq!(
        parse_error_body(br#"{"error":"invalid_client","error_description":"bad secret"}"#),
        (Some("invalid_client".into()), Some("bad secret".into()))
    );
    for junk in [
        &b""[..],
        b"Not Found",
        b"<html><body>502 Bad Gateway</body></html>",
        b"[]",
        b"null",
        b"\"text\"",
        br#"{"type":5,"description":["x"]}"#,
        br#"{"type":"  ","description":""}"#,
        b"\xff\xff",
        b"{\"type\":\"x\"",
    ] {
        assert_eq!(parse_error_body(junk), (None, None), "{junk:?}");
    }
    let long = format!(
        r#"{{"type":"t","description":"{}\u0007end"}}"#,
        "é".repeat(1000)
    );
    let (_, d) = parse_error_body(long.as_bytes());
    let d = d.unwrap();
    assert!(d.chars().count() <= MAX_DESCRIPTION + 3 && d.ends_with("..."));
    let (_, d) = parse_error_body(br#"{"description":"a\nb\u0000c"}"#);
    assert_eq!(d.as_deref(), Some("a b c"));
}

/// Who a refused call names (the test's API user and account).
fn who() -> (String, String) {
    (
        "the API user \"u\" and its password were refused".to_string(),
        "9900000".to_string(),
    )
}

/// An upload of `size` bytes.
fn put(size: u64) -> Op<'static> {
    Op::Put {
        size,
        content_type: "image/png",
    }
}

/// Bandwidth's error body.
fn bw(t: &str, d: &str) -> Vec<u8> {
    format!(r#"{{"type":"{t}","description":"{d}"}}"#).into_bytes()
}

#[test]
fn refusals_and_missing_media_map_to_errors() {
    match status_error(
        401,
        &bw("unauthorized", "Authentication Failed"),
        &[],
        &Op::Other,
        who,
    ) {
        ApiError::Unauthorized(m) => {
            assert!(
                m.contains("\"u\"") && m.contains("Authentication Failed"),
                "{m}"
            )
        }
        e => panic!("{e:?}"),
    }
    match status_error(403, &bw("forbidden", "Access Denied"), &[], &Op::Other, who) {
        ApiError::Forbidden(m) => assert!(m.contains("9900000") && m.contains("Access Denied")),
        e => panic!("{e:?}"),
    }
    let spring = br#"{"timestamp":"x","status":404,"error":"Not Found","path":"/p"}"#;
    assert_eq!(
        status_error(404, spring, &[], &Op::Other, who),
        ApiError::NotFound
    );
    assert_eq!(
        status_error(404, b"", &[], &put(10), who),
        ApiError::NotFound
    );
}

#[test]
fn upload_and_server_statuses_map_to_errors() {
    let (small, big) = (put(10), put(MAX_MEDIA_SIZE + 1));
    let too_large = |size| ApiError::TooLarge {
        size,
        limit: Some(MAX_MEDIA_SIZE),
    };
    assert_eq!(
        status_error(413, b"", &[], &small, who),
        ApiError::TooLarge {
            size: 10,
            limit: None
        }
    );
    assert_eq!(
        status_error(400, b"junk", &[], &big, who),
        too_large(MAX_MEDIA_SIZE + 1)
    );
    assert_eq!(
        status_error(422, b"", &[], &big, who),
        too_large(MAX_MEDIA_SIZE + 1)
    );
    assert_eq!(
        status_error(400, &bw("request-validation", "bad"), &[], &small, who),
        ApiError::Status {
            status: 400,
            kind: Some("request-validation".into()),
            description: Some("bad".into())
        }
    );
    assert_eq!(
        status_error(415, b"", &[], &small, who),
        ApiError::UnsupportedType("image/png".into())
    );
    // 413 and 415 mean nothing special outside an upload.
    assert!(matches!(
        status_error(415, b"", &[], &Op::Other, who),
        ApiError::Status { status: 415, .. }
    ));
    for s in [429, 500, 502, 503, 504] {
        let e = status_error(s, b"<html>busy</html>", &[], &Op::Other, who);
        assert!(e.is_transient(), "{s}: {e:?}");
        assert!(e.to_string().contains(&s.to_string()));
    }
    for s in [400, 405, 409, 501] {
        let e = status_error(s, b"", &[], &Op::Other, who);
        assert_eq!(e.is_transient(), s >= 500, "{s}");
    }
}
