//! The client's own checks: configuration, URLs, refusals made without a request.

use super::*;

fn basic() -> Credentials {
    Credentials::Basic {
        username: "u".into(),
        password: "pw-secret".into(),
    }
}

#[test]
fn config_defaults() {
    let c = HttpConfig::new("9900000", basic());
    assert_eq!(c.base_url, DEFAULT_BASE_URL);
    assert_eq!(c.token_url, DEFAULT_TOKEN_URL);
    assert_eq!(c.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.request_timeout, Duration::from_secs(30));
    assert_eq!(c.retry, RetryPolicy::default());
    assert!(!format!("{c:?}").contains("pw-secret"));
}

#[test]
fn media_urls_with_and_without_trailing_slash() {
    for base in ["http://127.0.0.1:9/api/v2", "http://127.0.0.1:9/api/v2/"] {
        let api = HttpApi::new(HttpConfig {
            base_url: base.into(),
            ..HttpConfig::new("9900000", basic())
        })
        .unwrap();
        assert_eq!(
            api.media_url("a b/0/c#d?.png"),
            "http://127.0.0.1:9/api/v2/users/9900000/media/a%20b/0/c%23d%3F.png"
        );
        assert_eq!(api.requests_answered(), 0);
        assert!(!format!("{api:?}").contains("pw-secret"));
    }
    let api = HttpApi::new(HttpConfig::new("9900000", basic())).unwrap();
    assert_eq!(
        api.media_url("x.png"),
        "https://messaging.bandwidth.com/api/v2/users/9900000/media/x.png"
    );
}

#[test]
fn bad_configs_are_refused() {
    let with = |base: &str, account: &str| {
        HttpApi::new(HttpConfig {
            base_url: base.into(),
            ..HttpConfig::new(account, basic())
        })
    };
    for (base, account) in [
        ("not a url", "9900000"),
        ("ftp://h/api/v2", "9900000"),
        ("http://user:pw@h/api/v2", "9900000"),
        ("http://h/api/v2?x=1", "9900000"),
        ("http://h/api/v2", ""),
        ("http://h/api/v2", "99/00"),
        ("http://h/api/v2", "99 00"),
    ] {
        let e = with(base, account).unwrap_err();
        assert!(matches!(e, ApiError::Config(_)), "{base} {account}: {e:?}");
        assert!(!e.to_string().contains("pw"), "{e}");
    }
}

#[test]
fn oversize_uploads_are_refused_without_a_request() {
    let api = HttpApi::new(HttpConfig {
        base_url: "http://127.0.0.1:9/api/v2".into(),
        ..HttpConfig::new("9900000", basic())
    })
    .unwrap();
    let body = Bytes::from(vec![0u8; MAX_MEDIA_SIZE as usize + 1]);
    assert_eq!(
        api.put("big", body, "image/png", None),
        Err(ApiError::TooLarge {
            size: MAX_MEDIA_SIZE + 1,
            limit: Some(MAX_MEDIA_SIZE)
        })
    );
    assert_eq!(api.requests_answered(), 0);
}

#[test]
fn nothing_listens_is_a_transport_error_after_retries() {
    // A port just released: nothing listens there, so the connection is refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let api = HttpApi::new(HttpConfig {
        base_url: format!("http://127.0.0.1:{port}/api/v2"),
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_total: Duration::from_secs(5),
        },
        ..HttpConfig::new("9900000", basic())
    })
    .unwrap();
    match api.get("x.png") {
        Err(ApiError::Transport(m)) => {
            assert!(m.contains("gave up after 3 tries"), "{m}");
            assert!(m.contains("could not connect"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // Three attempts, none of which reached a server: no request is counted, two retries are.
    let counted = api.counters.snapshot();
    assert_eq!((counted.requests.total(), counted.retries), (0, 2));
}
