//! Credentials and the `Authorization` header of every media call.
//!
//! Two schemes: HTTP Basic with an API user's name and password (the same header on every call),
//! and OAuth2 client credentials, where a client id and secret buy a bearer token at the token
//! endpoint. The hard parts of the second:
//! - the token is cached and renewed *before* it expires (60 s before, or at half its life when it
//!   lives under two minutes), by one thread while the others wait for it (no stampede);
//! - when renewal fails for a passing reason but the old token has not expired yet, the old one is
//!   still used;
//! - a media call answered 401 forgets the token it used (unless another thread already replaced
//!   it) so that the caller can renew once and retry once.
//!
//! Secrets never leave this module except inside header values marked sensitive (which `http`
//! prints as `Sensitive` in any Debug output): not in Debug, errors or logs.

use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};

use super::counters::{Counters, RequestKind};
use super::retry::{Attempt, Failure};
use super::transport::{read_limited, retry_after, transport_failure, MAX_ERROR_BODY};
use super::wire::parse_error_body;
use super::ApiError;

/// How the client proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// HTTP Basic with an API user (legacy; Bandwidth retires passwords in December 2026).
    Basic {
        /// The API user.
        username: String,
        /// Its password.
        password: String,
    },
    /// OAuth2 client credentials: exchanged for a bearer token at the token endpoint.
    OAuth2 {
        /// The client id.
        client_id: String,
        /// Its secret.
        client_secret: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::OAuth2 { client_id, .. } => f
                .debug_struct("OAuth2")
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
        }
    }
}

/// Tokens whose answer gives no lifetime are renewed after this long (a 401 renews sooner).
const TTL_WHEN_UNSAID: Duration = Duration::from_secs(300);

/// When to renew a token that lives `ttl`: 60 s before it expires, or at half its life when it
/// lives under two minutes.
pub fn renew_after(ttl: Duration) -> Duration {
    if ttl >= Duration::from_secs(120) {
        ttl - Duration::from_secs(60)
    } else {
        ttl / 2
    }
}

/// The `Authorization: Basic` value for `user:secret`, marked sensitive.
fn basic_header(user: &str, secret: &str) -> Result<HeaderValue, ApiError> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| ApiError::Config("credentials cannot be encoded".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A token answer, reduced to what we keep: the header to send and how long it lives.
#[derive(Clone)]
pub(crate) struct ParsedToken {
    pub header: HeaderValue,
    pub ttl: Duration,
}

impl fmt::Debug for ParsedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedToken")
            .field("header", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Parse `{"access_token": "...", "expires_in": 3600, "token_type": "Bearer"}`. Tolerant of an
/// `expires_in` sent as a string and of a missing `token_type`; strict about the token itself.
/// Error messages never quote the body (it holds the token).
pub(crate) fn parse_token(body: &[u8]) -> Result<ParsedToken, ApiError> {
    let bad = |what: &str| ApiError::Malformed(format!("the token endpoint's answer {what}"));
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad("is not JSON"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| bad("is not a JSON object"))?;
    let token = match obj.get("access_token") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim(),
        Some(_) => return Err(bad("has an access_token that is not a non-empty string")),
        None => return Err(bad("has no access_token")),
    };
    match obj.get("token_type") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(_) => return Err(bad("has a token_type other than Bearer")),
    }
    let ttl = match obj.get("expires_in") {
        None | Some(serde_json::Value::Null) => TTL_WHEN_UNSAID,
        Some(serde_json::Value::Number(n)) => match n.as_u64() {
            Some(s) => Duration::from_secs(s),
            None => match n.as_f64() {
                Some(f) if f.is_finite() && f >= 0.0 => Duration::from_secs_f64(f.min(1e9)),
                _ => return Err(bad("has a negative or invalid expires_in")),
            },
        },
        Some(serde_json::Value::String(s)) => match s.trim().parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => return Err(bad("has an expires_in that is not a number")),
        },
        Some(_) => return Err(bad("has an expires_in that is not a number")),
    };
    let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| bad("has an access_token with characters a header cannot carry"))?;
    header.set_sensitive(true);
    Ok(ParsedToken { header, ttl })
}

/// What the token request needs from the HTTP client: the token request is part of the media
/// call's attempt, so it shares that attempt's deadline and its retries.
pub(crate) struct TokenHttp<'a> {
    pub client: &'a reqwest::blocking::Client,
    pub attempt: &'a Attempt,
    pub counters: &'a Counters,
}

struct CachedToken {
    header: HeaderValue,
    renew_at: Instant,
    expires_at: Instant,
}

enum Scheme {
    Basic {
        username: String,
        header: HeaderValue,
    },
    OAuth2 {
        client_id: String,
        token_url: String,
        /// `Basic base64(id:secret)` for the token endpoint.
        client_header: HeaderValue,
        cache: Mutex<Option<CachedToken>>,
    },
}

/// The `Authorization` header source for one client.
pub(crate) struct Auth {
    scheme: Scheme,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scheme {
            Scheme::Basic { username, .. } => write!(f, "Basic({username:?})"),
            Scheme::OAuth2 {
                client_id,
                token_url,
                ..
            } => write!(f, "OAuth2({client_id:?} at {token_url})"),
        }
    }
}

impl Auth {
    pub(crate) fn new(credentials: &Credentials, token_url: &str) -> Result<Auth, ApiError> {
        let scheme = match credentials {
            Credentials::Basic { username, password } => {
                if username.contains(':') {
                    return Err(ApiError::Config(
                        "the API username may not contain ':' (HTTP Basic cannot carry it)".into(),
                    ));
                }
                Scheme::Basic {
                    username: username.clone(),
                    header: basic_header(username, password)?,
                }
            }
            Credentials::OAuth2 {
                client_id,
                client_secret,
            } => {
                if client_id.contains(':') {
                    return Err(ApiError::Config(
                        "the OAuth2 client id may not contain ':' (HTTP Basic cannot carry it)"
                            .into(),
                    ));
                }
                Scheme::OAuth2 {
                    client_id: client_id.clone(),
                    token_url: token_url.to_string(),
                    client_header: basic_header(client_id, client_secret)?,
                    cache: Mutex::new(None),
                }
            }
        };
        Ok(Auth { scheme })
    }

    /// Whether a 401 may be cured by a new token.
    pub(crate) fn renewable(&self) -> bool {
        matches!(self.scheme, Scheme::OAuth2 { .. })
    }

    /// The message of a 401 from a media call made with these credentials.
    pub(crate) fn refused_message(&self, after_renewal: bool) -> String {
        match &self.scheme {
            Scheme::Basic { username, .. } => {
                format!("the API user {username:?} and its password were refused")
            }
            Scheme::OAuth2 { client_id, .. } if after_renewal => format!(
                "the access token of client id {client_id:?} was refused, even freshly renewed"
            ),
            Scheme::OAuth2 { client_id, .. } => {
                format!("the access token of client id {client_id:?} was refused")
            }
        }
    }

    /// The `Authorization` value for the next media call: fetches or renews the token if needed
    /// (one token request, within the call's attempt; a failure is that attempt's failure).
    pub(crate) fn header(&self, http: &TokenHttp<'_>) -> Result<HeaderValue, Failure> {
        match &self.scheme {
            Scheme::Basic { header, .. } => Ok(header.clone()),
            Scheme::OAuth2 {
                client_id,
                token_url,
                client_header,
                cache,
            } => {
                // Held across the token request: one thread renews, the others wait for it.
                let mut cache = cache.lock();
                let now = Instant::now();
                if let Some(t) = cache.as_ref() {
                    if now < t.renew_at {
                        return Ok(t.header.clone());
                    }
                }
                match fetch_token(http, token_url, client_id, client_header) {
                    Ok(parsed) => {
                        let now = Instant::now();
                        let renew = renew_after(parsed.ttl);
                        log::debug!(
                            "got an access token for client id {client_id:?}, valid {:?}, renewing in {renew:?}",
                            parsed.ttl
                        );
                        let header = parsed.header.clone();
                        *cache = Some(CachedToken {
                            header: parsed.header,
                            renew_at: now + renew,
                            expires_at: now + parsed.ttl,
                        });
                        Ok(header)
                    }
                    Err(e) => match cache.as_ref() {
                        Some(t) if e.retryable && Instant::now() < t.expires_at => {
                            log::debug!(
                                "token renewal failed ({}); the current token is still valid",
                                e.error
                            );
                            Ok(t.header.clone())
                        }
                        _ => Err(e),
                    },
                }
            }
        }
    }

    /// A media call made with `used` was answered 401: forget that token, unless another thread
    /// has already replaced it.
    pub(crate) fn refused(&self, used: &HeaderValue) {
        if let Scheme::OAuth2 { cache, .. } = &self.scheme {
            let mut cache = cache.lock();
            if cache.as_ref().is_some_and(|t| t.header == *used) {
                log::debug!("the access token was refused; it will be renewed");
                *cache = None;
            }
        }
    }
}

/// `POST token_url` with the client's Basic header and `grant_type=client_credentials`: one
/// attempt, retried with the media call it serves.
fn fetch_token(
    http: &TokenHttp<'_>,
    token_url: &str,
    client_id: &str,
    client_header: &HeaderValue,
) -> Result<ParsedToken, Failure> {
    let resp = http
        .client
        .post(token_url)
        .timeout(http.attempt.remaining())
        .header(AUTHORIZATION, client_header.clone())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .body("grant_type=client_credentials")
        .send()
        .map_err(|e| transport_failure("token request", &e))?;
    http.counters.request(RequestKind::Token);
    let status = resp.status().as_u16();
    let retry_after = retry_after(&resp);
    if resp.status().is_success() {
        let body = read_limited(resp, MAX_ERROR_BODY).map_err(|e| {
            Failure::transient(ApiError::Transport(format!(
                "the token answer was cut: {e}"
            )))
        })?;
        return parse_token(&body).map_err(Failure::fatal);
    }
    let body = read_limited(resp, MAX_ERROR_BODY).unwrap_or_default();
    let (kind, description) = parse_error_body(&body);
    let said = description
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    let refused = format!(
        "the token endpoint refused client id {client_id:?} and its secret{said}; check the client id and secret"
    );
    let invalid_client = kind.as_deref() == Some("invalid_client");
    let error = match status {
        401 => ApiError::Unauthorized(refused),
        400 if invalid_client => ApiError::Unauthorized(refused),
        403 => ApiError::Forbidden(refused),
        _ => ApiError::Status {
            status,
            kind,
            description: Some(format!(
                "from the token endpoint{}",
                description.map(|d| format!(": {d}")).unwrap_or_default()
            )),
        },
    };
    let mut failure = Failure::from(error);
    if failure.retryable {
        failure.retry_after = retry_after;
    }
    Err(failure)
}

#[cfg(test)]
mod tests;
