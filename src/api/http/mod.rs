//! [`HttpApi`]: the Media API over HTTP, with one pooled blocking reqwest client (keep-alive,
//! connections reused across calls and threads).
//!
//! The hard parts:
//! - **Never short data.** A body is accepted only when it has exactly the bytes its
//!   `Content-Length` announced; a cut or short body is a transient failure (retried), and if it
//!   persists the call fails. A reader never sees a prefix passed off as the whole media.
//! - **What the server says** (listing pages, error bodies, what each status means) is parsed in
//!   [`super::wire`]: strictly for listings, tolerantly for errors.
//! - **Secrets.** The `Authorization` value is built in `auth`, marked sensitive, and never
//!   logged; reqwest logs raw connection bytes only with `connection_verbose`, which stays off,
//!   and hyper logs through `tracing` (not `log`), without header values.
//!
//! Every call goes through [`retry::run`]: 429, 5xx, network failures and short bodies are
//! retried with backoff; a 401 under OAuth2 renews the token once and repeats the request once.
//! An attempt has one deadline for all it does (the token request, the request, its body), so a
//! call ends within the retry time plus one request timeout however the server fails.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{
    HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LAST_MODIFIED,
};

mod calls;
mod config;

use config::check_endpoint_url;
pub use config::{HttpConfig, DEFAULT_BASE_URL, DEFAULT_TOKEN_URL};

use super::auth::{Auth, Credentials, TokenHttp};
use super::counters::{Counters, RequestKind};
use super::path::{encode_media_id, url_can_carry};
use super::retry::{self, Attempt, Failure, RetryPolicy};
use super::transport::{
    announced_length, chain, cut, drain, read_body, read_limited, retry_after, transport_failure,
    VecSink, MAX_ERROR_BODY,
};
use super::wire::{parse_list, secrets_of, status_error, Op};
use super::{ApiError, BodySink, ListPage, Media, MediaApi, MAX_MEDIA_SIZE};

/// The request and response header that carries the listing's continuation token.
const CONTINUATION_TOKEN: HeaderName = HeaderName::from_static("continuation-token");

/// The most of a listing page we accept (1000 items are ~100 KB).
const MAX_LIST_BODY: u64 = 32 * 1024 * 1024;
/// The most of a media we accept: well above the 3.75 MB limit, low enough to bound memory.
const MAX_GET_BODY: u64 = 64 * 1024 * 1024;

/// The Media API of one account over HTTP.
pub struct HttpApi {
    client: Client,
    /// `{base_url}/users/{account}/media`
    media_base: String,
    account_id: String,
    auth: Auth,
    retry: RetryPolicy,
    /// The most one attempt (token request, request and body together) may take.
    attempt_limit: Duration,
    /// What this client asked of the server (see [`Counters`] for where each is counted).
    counters: Arc<Counters>,
}

impl std::fmt::Debug for HttpApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpApi")
            .field("media_base", &self.media_base)
            .field("auth", &self.auth)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl HttpApi {
    /// A client for `config`: checks the URLs and account id, and builds the connection pool.
    /// No request is made (the first call fetches the OAuth2 token).
    pub fn new(config: HttpConfig) -> Result<HttpApi, ApiError> {
        let base = config.base_url.trim().trim_end_matches('/');
        check_endpoint_url(base, "base URL")?;
        if matches!(config.credentials, Credentials::OAuth2 { .. }) {
            check_endpoint_url(config.token_url.trim(), "token URL")?;
        }
        let account = config.account_id.trim();
        if account.is_empty()
            || !account
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ApiError::Config(format!(
                "the account id {account:?} is not valid (Bandwidth's are 7 digits)"
            )));
        }
        let auth = Auth::new(&config.credentials, config.token_url.trim())?;
        let client = Client::builder()
            .user_agent(concat!("bwmediafs/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32)
            .tcp_nodelay(true)
            // A redirect is not part of the API; following one could carry credentials away.
            .redirect(reqwest::redirect::Policy::none())
            // Raw connection bytes (headers included) are logged only when this is on.
            .connection_verbose(false)
            .build()
            .map_err(|e| {
                ApiError::Config(format!("cannot build the HTTP client: {}", chain(&e)))
            })?;
        Ok(HttpApi {
            client,
            media_base: format!("{base}/users/{account}/media"),
            account_id: account.to_string(),
            auth,
            retry: config.retry,
            attempt_limit: config.request_timeout,
            counters: Arc::default(),
        })
    }

    /// HTTP requests the server has answered so far (every attempt, token requests included;
    /// see [`Counters::request`]).
    pub fn requests_answered(&self) -> u64 {
        self.counters.snapshot().requests.total()
    }

    /// The account this client works on.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// Under OAuth2, get the access token now (retried like any call) rather than within the
    /// first media call: a failure here is the token endpoint's, which a mount reports with the
    /// token URL to check. The token is kept for the calls that follow, so this costs no extra
    /// request. With Basic credentials there is nothing to get and nothing is sent.
    pub fn authenticate(&self) -> Result<(), ApiError> {
        if !self.auth.renewable() {
            return Ok(());
        }
        self.with_retries("token request", |attempt| {
            self.auth
                .header(&TokenHttp {
                    client: &self.client,
                    attempt: &attempt,
                    counters: &self.counters,
                })
                .map(drop)
        })
    }

    /// Run one call's attempts under the retry policy; each attempt after the first is counted
    /// as a retry.
    fn with_retries<T>(
        &self,
        what: &str,
        mut attempt: impl FnMut(Attempt) -> Result<T, Failure>,
    ) -> Result<T, ApiError> {
        retry::run(&self.retry, what, self.attempt_limit, |a| {
            if a.number > 1 {
                self.counters.retry();
            }
            attempt(a)
        })
    }

    /// Send one request of `kind` built by `build`, with authorization; under OAuth2 a 401 renews
    /// the token and repeats the request, once per call (`renewed` spans the call's attempts).
    /// Answers with any status are returned, with the `Authorization` value they answered (so
    /// that an error answer can be stripped of it); only a failure to get an answer is an error.
    /// Each answered request is counted, with the `upload` bytes of its body (a PUT's media; 0
    /// for the others). Everything happens within `attempt`'s deadline, the token request
    /// included.
    fn send(
        &self,
        kind: RequestKind,
        upload: u64,
        what: &str,
        attempt: &Attempt,
        renewed: &mut bool,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<(Response, HeaderValue), Failure> {
        loop {
            let authorization = self.auth.header(&TokenHttp {
                client: &self.client,
                attempt,
                counters: &self.counters,
            })?;
            let resp = build()
                .timeout(attempt.remaining())
                .header(AUTHORIZATION, authorization.clone())
                .send()
                .map_err(|e| transport_failure(what, &e))?;
            self.counters.request(kind);
            if upload > 0 {
                self.counters.uploaded(upload);
            }
            log::trace!("{what}: HTTP {}", resp.status().as_u16());
            if resp.status().as_u16() == 401 && self.auth.renewable() && !*renewed {
                *renewed = true;
                self.auth.refused(&authorization);
                drain(resp);
                continue;
            }
            return Ok((resp, authorization));
        }
    }

    /// The failure an answer with a non-success status stands for. `authorization` is the value
    /// the request carried: a server may echo it, and no error may show it.
    fn status_failure(
        &self,
        resp: Response,
        authorization: &HeaderValue,
        op: &Op<'_>,
        renewed: bool,
    ) -> Failure {
        let status = resp.status().as_u16();
        let retry_after = retry_after(&resp);
        let body = read_limited(resp, MAX_ERROR_BODY).unwrap_or_default();
        let hide = secrets_of(authorization);
        let error = status_error(status, &body, &hide, op, || {
            (self.auth.refused_message(renewed), self.account_id.clone())
        });
        let mut failure = Failure::from(error);
        if failure.retryable {
            failure.retry_after = retry_after;
        }
        failure
    }

    fn list_once(
        &self,
        token: Option<&HeaderValue>,
        attempt: &Attempt,
        renewed: &mut bool,
    ) -> Result<ListPage, Failure> {
        let (resp, authorization) =
            self.send(RequestKind::List, 0, "list", attempt, renewed, || {
                let req = self
                    .client
                    .get(&self.media_base)
                    .header(ACCEPT, "application/json");
                match token {
                    Some(t) => req.header(CONTINUATION_TOKEN, t.clone()),
                    None => req,
                }
            })?;
        if !resp.status().is_success() {
            return Err(self.status_failure(resp, &authorization, &Op::Other, *renewed));
        }
        let next = match resp.headers().get(CONTINUATION_TOKEN) {
            None => None,
            Some(v) => match v.to_str() {
                Ok(s) if s.trim().is_empty() => None,
                Ok(s) => Some(s.trim().to_string()),
                Err(_) => {
                    return Err(Failure::fatal(ApiError::Malformed(
                        "the listing's Continuation-Token header is not visible ASCII".into(),
                    )))
                }
            },
        };
        let body = read_body(resp, MAX_LIST_BODY, "listing page")?;
        let items = parse_list(&body).map_err(Failure::fatal)?;
        Ok(ListPage { items, next })
    }

    /// One attempt of [`MediaApi::get_into`]: the body goes to `sink` as it arrives.
    fn get_once_into(
        &self,
        url: &str,
        what: &str,
        attempt: &Attempt,
        renewed: &mut bool,
        sink: &mut dyn BodySink,
    ) -> Result<Media, Failure> {
        let (mut resp, authorization) =
            self.send(RequestKind::Get, 0, what, attempt, renewed, || {
                self.client.get(url).header(ACCEPT, "*/*")
            })?;
        if !resp.status().is_success() {
            return Err(self.status_failure(resp, &authorization, &Op::Other, *renewed));
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(CONTENT_TYPE);
        let cache_control = header(CACHE_CONTROL);
        // A date that does not parse is no date: the time then comes from elsewhere.
        let last_modified = header(LAST_MODIFIED).and_then(|d| httpdate::parse_http_date(&d).ok());
        let announced = announced_length(&resp, MAX_GET_BODY, "media")?;
        sink.start(announced);
        let mut got: u64 = 0;
        loop {
            let space = sink.space();
            if space.is_empty() {
                // All that was announced is in: the answer must end here.
                let mut probe = [0u8; 1];
                match resp.read(&mut probe) {
                    Ok(0) => break,
                    Ok(_) => {
                        return Err(Failure::transient(ApiError::Malformed(format!(
                            "the media has more than the {got} bytes announced"
                        ))))
                    }
                    Err(e) => return Err(cut(what, "media", got, announced, &e)),
                }
            }
            let n = match resp.read(space) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Err(cut(what, "media", got, announced, &e)),
            };
            got += n as u64;
            self.counters.downloaded(n as u64);
            sink.advance(n);
            if got > MAX_GET_BODY {
                return Err(Failure::fatal(ApiError::Malformed(format!(
                    "the media is larger than the {MAX_GET_BODY} bytes accepted"
                ))));
            }
        }
        if let Some(n) = announced {
            if got != n {
                return Err(Failure::transient(ApiError::Malformed(format!(
                    "the media has {got} bytes where {n} were announced"
                ))));
            }
        }
        Ok(Media {
            body: Bytes::new(),
            content_type,
            cache_control,
            last_modified,
        })
    }
}

#[cfg(test)]
mod tests;
