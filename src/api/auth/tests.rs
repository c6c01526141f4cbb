//! Credentials and tokens: redaction, headers, renewal, token answers.

use super::*;

#[test]
fn debug_redacts_secrets() {
    let basic = Credentials::Basic {
        username: "demo-user".into(),
        password: "hunter2-password".into(),
    };
    let oauth = Credentials::OAuth2 {
        client_id: "demo-client".into(),
        client_secret: "s3cr3t-value".into(),
    };
    let b = format!("{basic:?} {basic:#?}");
    let o = format!("{oauth:?} {oauth:#?}");
    assert!(b.contains("demo-user") && !b.contains("hunter2"), "{b}");
    assert!(o.contains("demo-client") && !o.contains("s3cr3t"), "{o}");
    assert!(b.contains("redacted") && o.contains("redacted"));

    let auth = Auth::new(&basic, "http://t").unwrap();
    assert!(!format!("{auth:?}").contains("hunter2"));
    let auth = Auth::new(&oauth, "http://t").unwrap();
    assert!(!format!("{auth:?}").contains("s3cr3t"));
}

#[test]
fn basic_header_is_sensitive_and_correct() {
    let h = basic_header("Aladdin", "open sesame").unwrap();
    assert!(h.is_sensitive());
    assert_eq!(h.to_str().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    assert_eq!(format!("{h:?}"), "Sensitive");
}

#[test]
fn colon_in_username_is_a_config_error() {
    let c = Credentials::Basic {
        username: "a:b".into(),
        password: "p".into(),
    };
    assert!(matches!(Auth::new(&c, ""), Err(ApiError::Config(_))));
}

#[test]
fn renewal_is_a_minute_early_or_at_half_life() {
    let s = Duration::from_secs;
    assert_eq!(renew_after(s(3600)), s(3540));
    assert_eq!(renew_after(s(120)), s(60));
    assert_eq!(renew_after(s(119)), Duration::from_millis(59_500));
    assert_eq!(renew_after(s(2)), s(1));
    assert_eq!(renew_after(s(0)), s(0));
}

#[test]
fn token_answers() {
    let t = parse_token(br#"{"access_token":"abc.def","expires_in":3600,"token_type":"Bearer"}"#)
        .unwrap();
    assert_eq!(t.header.to_str().unwrap(), "Bearer abc.def");
    assert!(t.header.is_sensitive());
    assert_eq!(t.ttl, Duration::from_secs(3600));
    assert!(!format!("{t:?}").contains("abc.def"));

    let t =
        parse_token(br#"{"access_token":"x","expires_in":"60","token_type":"bearer","scope":"a"}"#)
            .unwrap();
    assert_eq!(t.ttl, Duration::from_secs(60));
    let t = parse_token(br#"{"access_token":"x"}"#).unwrap();
    assert_eq!(t.ttl, TTL_WHEN_UNSAID);
    let t = parse_token(br#"{"access_token":"x","expires_in":1.5}"#).unwrap();
    assert_eq!(t.ttl, Duration::from_millis(1500));

    for bad in [
        &b""[..],
        b"null",
        b"[]",
        b"{}",
        br#"{"access_token":""}"#,
        br#"{"access_token":42}"#,
        br#"{"access_token":"x","token_type":"MAC"}"#,
        br#"{"access_token":"x","expires_in":-5}"#,
        br#"{"access_token":"x","expires_in":"soon"}"#,
        br#"{"access_token":"x","expires_in":[1]}"#,
        b"{\"access_token\":\"a\\nb\"}",
    ] {
        let e = parse_token(bad).unwrap_err();
        assert!(matches!(e, ApiError::Malformed(_)), "{bad:?}: {e:?}");
    }
    // The token never shows in an error, even when the answer is half right.
    let e = parse_token(br#"{"access_token":"TOPSECRET","token_type":"MAC"}"#).unwrap_err();
    assert!(!format!("{e} {e:?}").contains("TOPSECRET"));
}
