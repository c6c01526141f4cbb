//! The emulator's two ways in, as Bandwidth's: HTTP Basic with an API user's username and
//! password, and Bearer tokens issued by the OAuth2 client-credentials endpoint.
//!
//! Tokens are random, kept with their expiry in memory, and refused once expired, so clients'
//! refresh logic can be tested with a TTL of a second. Credentials are compared in constant
//! time and never logged.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use base64::Engine;
use parking_lot::Mutex;
use rand::Rng;
use serde::Serialize;

/// Credentials and issued tokens of one emulator.
pub(crate) struct Auth {
    basic: Option<(String, String)>,
    oauth: Option<(String, String)>,
    token_ttl: Duration,
    tokens: Mutex<HashMap<String, Instant>>,
}

/// The answer of a successful token request.
#[derive(Debug, Serialize)]
pub(crate) struct TokenGrant {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

/// Why a token request failed (RFC 6749 section 5.2 error codes).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// 401 `invalid_client`.
    InvalidClient(&'static str),
    /// 400 `invalid_request`.
    InvalidRequest(&'static str),
    /// 400 `unsupported_grant_type`.
    UnsupportedGrantType,
}

enum Presented {
    Basic(Vec<u8>, Vec<u8>),
    Bearer(String),
}

fn presented(headers: &HeaderMap) -> Option<Presented> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let colon = raw.iter().position(|&b| b == b':')?;
        Some(Presented::Basic(
            raw[..colon].to_vec(),
            raw[colon + 1..].to_vec(),
        ))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Presented::Bearer(rest.to_string()))
    } else {
        None
    }
}

/// Equality whose time does not depend on where the inputs differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn pair_matches(expected: &Option<(String, String)>, user: &[u8], pass: &[u8]) -> bool {
    match expected {
        Some((u, p)) => ct_eq(u.as_bytes(), user) & ct_eq(p.as_bytes(), pass),
        None => false,
    }
}

impl Auth {
    pub(crate) fn new(
        basic: Option<(String, String)>,
        oauth: Option<(String, String)>,
        token_ttl: Duration,
    ) -> Auth {
        Auth {
            basic,
            oauth,
            token_ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a media request carries good credentials: the API user's Basic pair, or a
    /// Bearer token this emulator issued and that has not expired.
    pub(crate) fn check(&self, headers: &HeaderMap) -> bool {
        match presented(headers) {
            Some(Presented::Basic(user, pass)) => pair_matches(&self.basic, &user, &pass),
            Some(Presented::Bearer(token)) => {
                let tokens = self.tokens.lock();
                matches!(tokens.get(&token), Some(expiry) if Instant::now() < *expiry)
            }
            None => false,
        }
    }

    /// `POST /api/v1/oauth2/token`: Basic auth of client_id:client_secret and a form body with
    /// `grant_type=client_credentials`.
    pub(crate) fn issue_token(
        &self,
        headers: &HeaderMap,
        form: &[u8],
    ) -> Result<TokenGrant, TokenError> {
        if self.oauth.is_none() {
            return Err(TokenError::InvalidClient(
                "OAuth2 is disabled on this emulator",
            ));
        }
        match presented(headers) {
            Some(Presented::Basic(id, secret)) if pair_matches(&self.oauth, &id, &secret) => {}
            _ => return Err(TokenError::InvalidClient("Client authentication failed")),
        }
        let grant = form_value(form, "grant_type")
            .ok_or(TokenError::InvalidRequest("grant_type is missing"))?;
        if grant != "client_credentials" {
            return Err(TokenError::UnsupportedGrantType);
        }

        let mut raw = [0u8; 32];
        rand::rng().fill(&mut raw);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, expiry| *expiry > now);
        tokens.insert(token.clone(), now + self.token_ttl);
        let ttl = self.token_ttl;
        Ok(TokenGrant {
            access_token: token,
            token_type: "Bearer",
            // Whole seconds, rounded up so a sub-second TTL does not announce 0.
            expires_in: ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0),
        })
    }
}

/// The value of `key` in an `application/x-www-form-urlencoded` body.
fn form_value(form: &[u8], key: &str) -> Option<String> {
    let form = std::str::from_utf8(form).ok()?;
    form.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k)? == key).then(|| form_decode(v)).flatten()
    })
}

fn form_decode(s: &str) -> Option<String> {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn basic(user: &str, pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {enc}")).unwrap(),
        );
        h
    }

    fn auth(ttl: Duration) -> Auth {
        Auth::new(
            Some(("u".into(), "p:w".into())),
            Some(("c".into(), "s".into())),
            ttl,
        )
    }

    #[test]
    fn basic_pairs() {
        let a = auth(Duration::from_secs(60));
        assert!(a.check(&basic("u", "p:w")));
        assert!(!a.check(&basic("u", "p")));
        assert!(!a.check(&basic("c", "s")));
        assert!(!a.check(&HeaderMap::new()));
    }

    #[test]
    fn tokens_are_issued_and_expire() {
        let a = auth(Duration::from_millis(100));
        let g = a
            .issue_token(&basic("c", "s"), b"grant_type=client_credentials")
            .unwrap();
        assert_eq!(g.expires_in, 1);
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", g.access_token)).unwrap(),
        );
        assert!(a.check(&h));
        std::thread::sleep(Duration::from_millis(150));
        assert!(!a.check(&h));
    }

    #[test]
    fn token_request_errors() {
        let a = auth(Duration::from_secs(60));
        assert!(matches!(
            a.issue_token(&basic("c", "x"), b"grant_type=client_credentials"),
            Err(TokenError::InvalidClient(_))
        ));
        assert_eq!(
            a.issue_token(&basic("c", "s"), b"grant_type=password")
                .unwrap_err(),
            TokenError::UnsupportedGrantType
        );
        assert!(matches!(
            a.issue_token(&basic("c", "s"), b"scope=x"),
            Err(TokenError::InvalidRequest(_))
        ));
    }
}
