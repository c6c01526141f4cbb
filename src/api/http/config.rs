//! Where and how to reach the Media API, and the checks a URL passes before any request.

use std::time::Duration;

use super::super::auth::Credentials;
use super::super::retry::RetryPolicy;
use super::super::ApiError;

/// Production's Messaging API base.
pub const DEFAULT_BASE_URL: &str = "https://messaging.bandwidth.com/api/v2";

/// Production's OAuth2 token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://api.bandwidth.com/api/v1/oauth2/token";

/// Where and how to reach the Media API.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The Messaging API base, e.g. [`DEFAULT_BASE_URL`]; with or without a trailing `/`.
    pub base_url: String,
    /// The OAuth2 token endpoint (unused with Basic credentials).
    pub token_url: String,
    /// The account whose media we see.
    pub account_id: String,
    /// How to authenticate.
    pub credentials: Credentials,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on one attempt of a call: the token request (when one is due), the request and its
    /// whole answer together.
    pub request_timeout: Duration,
    /// How failed attempts are retried.
    pub retry: RetryPolicy,
}

impl HttpConfig {
    /// Production's URLs, 5 s to connect, 30 s a request, the default retry policy.
    pub fn new(account_id: impl Into<String>, credentials: Credentials) -> HttpConfig {
        HttpConfig {
            base_url: DEFAULT_BASE_URL.to_string(),
            token_url: DEFAULT_TOKEN_URL.to_string(),
            account_id: account_id.into(),
            credentials,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// Check that `url` is an http(s) URL without credentials in it; `what` names it in errors.
pub(super) fn check_endpoint_url(url: &str, what: &str) -> Result<(), ApiError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ApiError::Config(format!("the {what} {url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ApiError::Config(format!(
            "the {what} must be http or https, not {:?}",
            parsed.scheme()
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ApiError::Config(format!(
            "the {what} may not contain credentials; give them separately"
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(ApiError::Config(format!(
            "the {what} may not have a query or fragment"
        )));
    }
    Ok(())
}
