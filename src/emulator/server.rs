//! The HTTP side of the emulator: Bandwidth's media endpoints and OAuth2 token endpoint over
//! the [`Store`], plus the `/_emulator` control endpoints.
//!
//! Three things are done by hand rather than by axum's defaults, on purpose:
//! - **Media ids come from the raw request path.** The id is everything after `media/`,
//!   percent-decoded exactly once ([`decode_media_id`]), so `a/0/x.png` and `a%2F0%2Fx.png` are
//!   the same media and `%252F` stays `%2F`. A router path parameter would decode by its own
//!   rules, so API paths are matched here, in [`route`].
//! - **Connections are served by hyper directly** (not `axum::serve`): with title-case headers,
//!   so `Continuation-Token` goes out exactly so capitalised as clients (and SDKs) read it, and
//!   with each socket wrapped in [`FaultIo`] so a fault can abort it (see [`super::faults`]).
//! - **Uploads are read under a limit.** A declared `Content-Length` over the limit is refused
//!   before any byte of the body is buffered; without one, buffering stops one byte past the
//!   limit. Either way the rest of a refused body is read and discarded (up to 64 MiB, unless
//!   the client sent `Expect: 100-continue`): a client still writing its upload would otherwise
//!   get a broken pipe instead of the 413.
//!
//! Every API request is counted in `store.stats` by operation before anything can fail, so
//! tests can assert exact round trips, failures included.

use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use log::{debug, warn};
use parking_lot::RwLock;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::auth::{Auth, TokenError};
use super::faults::{ConnCtl, Fault, FaultBody, FaultIo, Faults};
use super::store::{Store, StoreError};
use crate::api::path::decode_media_id;
use crate::api::MediaApi;

/// Everything a request handler needs.
pub(crate) struct Shared {
    pub account: String,
    pub auth: Auth,
    pub store: Arc<Store>,
    pub faults: RwLock<Faults>,
}

const JSON: &str = "application/json; charset=utf-8";
const CONTINUATION_TOKEN: HeaderName = HeaderName::from_static("continuation-token");
/// Largest token-request body read (a form with one or two fields).
const TOKEN_BODY_LIMIT: u64 = 64 * 1024;
/// How long an upload body may take to arrive.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a refused (oversize) upload is read and discarded, and for how long, so the
/// client reads the 413 (see [`drain`]).
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The API operations, as counted in the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    List,
    Get,
    Put,
    Delete,
    Token,
}

/// What an API path names.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Token,
    List { account: String },
    Media { account: String, raw_id: String },
}

/// Match `/api/v1/oauth2/token`, `/api/v2/users/{accountId}/media` and
/// `/api/v2/users/{accountId}/media/{mediaId...}` on the raw (still percent-encoded) path.
fn route(path: &str) -> Option<Route> {
    if path == "/api/v1/oauth2/token" {
        return Some(Route::Token);
    }
    let rest = path.strip_prefix("/api/v2/users/")?;
    let (account, rest) = rest.split_once('/')?;
    let account = decode_media_id(account)?;
    if account.is_empty() {
        return None;
    }
    if rest == "media" {
        return Some(Route::List { account });
    }
    let raw_id = rest.strip_prefix("media/")?;
    if raw_id.is_empty() {
        return None;
    }
    Some(Route::Media {
        account,
        raw_id: raw_id.to_string(),
    })
}

fn op_of(route: &Route, method: &Method) -> Option<Op> {
    match (route, method) {
        (Route::Token, &Method::POST) => Some(Op::Token),
        (Route::List { .. }, &Method::GET | &Method::HEAD) => Some(Op::List),
        (Route::Media { .. }, &Method::GET | &Method::HEAD) => Some(Op::Get),
        (Route::Media { .. }, &Method::PUT) => Some(Op::Put),
        (Route::Media { .. }, &Method::DELETE) => Some(Op::Delete),
        _ => None,
    }
}

/// An answer before faults are applied to it: the body is whole, in memory.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    fn json(status: StatusCode, value: &impl Serialize) -> Reply {
        let body = match serde_json::to_vec(value) {
            Ok(v) => Bytes::from(v),
            Err(_) => Bytes::from_static(b"{}"),
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Bandwidth's error body: `{"type": ..., "description": ...}`.
    fn error(status: StatusCode, kind: &str, description: impl Into<String>) -> Reply {
        #[derive(Serialize)]
        struct ErrorBody<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            description: String,
        }
        Reply::json(
            status,
            &ErrorBody {
                kind,
                description: description.into(),
            },
        )
    }

    fn unauthorized() -> Reply {
        Reply::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication Failed",
        )
    }

    fn forbidden() -> Reply {
        Reply::error(StatusCode::FORBIDDEN, "forbidden", "Access Denied")
    }

    fn bad_request(description: impl Into<String>) -> Reply {
        Reply::error(StatusCode::BAD_REQUEST, "request-validation", description)
    }

    fn too_large(size: u64, limit: u64) -> Reply {
        Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request-entity-too-large",
            format!("The media is {size} bytes; the largest accepted is {limit} bytes"),
        )
    }

    fn into_response(self) -> Response {
        let mut resp = Response::new(Body::from(self.body));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp
    }

    /// The response, with a body fault applied when one was drawn.
    fn finish(self, fault: Option<Fault>, ctl: &ConnCtl) -> Response {
        let body_fault = match fault {
            Some(Fault::Cut) if self.body.is_empty() => {
                // Nothing to send half of: abort before the head is written.
                ctl.abort();
                return self.into_response();
            }
            Some(Fault::Cut) => FaultBody::cut(self.body.clone(), ctl.clone()),
            Some(Fault::Truncate) if !self.body.is_empty() => {
                FaultBody::truncate(self.body.clone())
            }
            _ => return self.into_response(),
        };
        let full_length = HeaderValue::from(self.body.len());
        let mut resp = Response::new(Body::new(body_fault));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, full_length);
        resp
    }
}

/// Spring's answer to a path it does not know (what production may send).
fn unknown_path(path: &str) -> Response {
    let timestamp = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    Reply::json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({
            "timestamp": timestamp,
            "status": 404,
            "error": "Not Found",
            "path": path,
        }),
    )
    .into_response()
}

fn injected_error(status: u16, retry_after_secs: u64) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status.as_u16() {
        429 => "too-many-requests".to_string(),
        500 => "internal-server-error".to_string(),
        503 => "service-unavailable".to_string(),
        _ => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
            .replace(' ', "-"),
    };
    let mut reply = Reply::error(status, &kind, "Injected by the emulator (fault injection)");
    if status == StatusCode::TOO_MANY_REQUESTS {
        reply
            .headers
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    }
    reply
}

/// Every request not matched by a control route: the API, or an unknown path.
async fn api_entry(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let Some(route) = route(&path) else {
        debug!("{method} {path} -> 404 (unknown path)");
        return unknown_path(&path);
    };
    let Some(op) = op_of(&route, &method) else {
        debug!("{method} {path} -> 405");
        let mut resp = Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            format!("{method} is not supported here"),
        )
        .into_response();
        let allow = match route {
            Route::Token => "POST",
            Route::List { .. } => "GET, HEAD",
            Route::Media { .. } => "GET, HEAD, PUT, DELETE",
        };
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return resp;
    };
    let stats = &sh.store.stats;
    let counter = match op {
        Op::List => &stats.list,
        Op::Get => &stats.get,
        Op::Put => &stats.put,
        Op::Delete => &stats.delete,
        Op::Token => &stats.token,
    };
    counter.fetch_add(1, Ordering::Relaxed);

    let ctl = req
        .extensions()
        .get::<ConnCtl>()
        .cloned()
        .unwrap_or_default();
    let faults = sh.faults.read().clone();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let fault = faults.draw(&mut rand::rng());
    let reply = match fault {
        Some(Fault::Error(status)) => injected_error(status, faults.retry_after_secs),
        _ => {
            let cut = fault == Some(Fault::Cut);
            handle(&sh, op, route, req, cut).await
        }
    };
    let status = reply.status;
    let resp = reply.finish(fault, &ctl);
    match fault {
        None => debug!(
            "{method} {path} -> {} in {:?}",
            status.as_u16(),
            started.elapsed()
        ),
        Some(f) => debug!(
            "{method} {path} -> {} in {:?} with fault {f:?}",
            status.as_u16(),
            started.elapsed()
        ),
    }
    resp
}

/// One API operation, with authentication. `cut`: the upload's connection is to be aborted
/// in the middle of its body (nothing is stored).
async fn handle(sh: &Shared, op: Op, route: Route, req: Request, cut: bool) -> Reply {
    let (account, raw_id) = match route {
        Route::Token => return token(sh, req).await,
        Route::List { account } => (account, None),
        Route::Media { account, raw_id } => (account, Some(raw_id)),
    };
    if !sh.auth.check(req.headers()) {
        return Reply::unauthorized();
    }
    if account != sh.account {
        return Reply::forbidden();
    }
    let id = match raw_id.as_deref().map(decode_media_id) {
        Some(Some(id)) => Some(id),
        Some(None) => return Reply::bad_request("The media id is not valid UTF-8"),
        None => None,
    };
    match (op, id) {
        (Op::List, _) => list(sh, req.headers()),
        (Op::Get, Some(id)) => get_media(sh, &id),
        (Op::Put, Some(id)) => put_media(sh, &id, req, cut).await,
        (Op::Delete, Some(id)) => {
            sh.store.delete(&id);
            Reply::empty(StatusCode::NO_CONTENT)
        }
        _ => Reply::empty(StatusCode::NOT_FOUND),
    }
}

fn list(sh: &Shared, headers: &HeaderMap) -> Reply {
    let token = match headers.get(&CONTINUATION_TOKEN).map(|v| v.to_str()) {
        None => None,
        Some(Ok(t)) if t.trim().is_empty() => None,
        Some(Ok(t)) => Some(t.trim()),
        Some(Err(_)) => return Reply::bad_request("Invalid continuation token"),
    };
    let (items, next) = match sh.store.list_page(token) {
        Ok(page) => page,
        Err(_) => return Reply::bad_request("Invalid continuation token"),
    };

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Item<'a> {
        media_name: &'a str,
        content_length: u64,
        content: String,
    }
    let body: Vec<Item> = items
        .iter()
        .map(|m| Item {
            media_name: &m.name,
            content_length: m.content_length,
            content: sh.store.media_url(&m.name),
        })
        .collect();
    let mut reply = Reply::json(StatusCode::OK, &body);
    if let Some(next) = next {
        match HeaderValue::from_str(&next) {
            Ok(v) => {
                reply.headers.insert(CONTINUATION_TOKEN, v);
            }
            Err(_) => {
                return Reply::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal-server-error",
                    "Unencodable continuation token",
                )
            }
        }
    }
    reply
}

fn get_media(sh: &Shared, id: &str) -> Reply {
    let media = match sh.store.get(id) {
        Ok(m) => m,
        Err(_) => {
            return Reply::error(
                StatusCode::NOT_FOUND,
                "not-found",
                "The requested media was not found",
            )
        }
    };
    let mut headers = HeaderMap::new();
    let ct = HeaderValue::from_str(&media.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, ct);
    if let Some(cc) = media
        .cache_control
        .as_deref()
        .and_then(|cc| HeaderValue::from_str(cc).ok())
    {
        headers.insert(header::CACHE_CONTROL, cc);
    }
    Reply {
        status: StatusCode::OK,
        headers,
        body: media.body,
    }
}

enum ReadError {
    /// More than the limit arrived: how much had been seen, and the unread rest.
    TooLarge(u64, Body),
    /// The client went away or sent a broken body.
    Broken(String),
}

/// Read a request body, stopping as soon as it passes `limit` bytes (so memory stays bounded
/// whatever the client sends or declares).
async fn read_limited(body: Body, limit: u64) -> Result<Bytes, ReadError> {
    let mut body = body;
    // Frames are kept as they come (no copy); one arriving alone is stored as is.
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut seen = 0u64;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| ReadError::Broken(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len() as u64;
            if seen > limit {
                return Err(ReadError::TooLarge(seen, body));
            }
            if !data.is_empty() {
                chunks.push(data);
            }
        }
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut all = BytesMut::with_capacity(seen as usize);
            for c in &chunks {
                all.extend_from_slice(c);
            }
            all.freeze()
        }
    })
}

/// Read and discard up to `budget` bytes of a refused upload, so that a client still sending
/// it reads the refusal instead of failing on a broken pipe when the connection closes under
/// its unsent bytes. Memory stays constant; a longer or slower body is left to be cut.
async fn drain(mut body: Body, budget: u64) {
    let discard = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            seen += frame.data_ref().map(|d| d.len() as u64).unwrap_or(0);
            if seen > budget {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, discard).await;
}

/// Whether the client waits for `100 Continue` before sending its body (then it sends
/// nothing once refused, and there is nothing to drain).
fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A header as trimmed text (`None` when absent or blank); the error says which is unreadable.
fn header_text(headers: &HeaderMap, name: HeaderName) -> Result<Option<String>, String> {
    match headers.get(&name).map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(v)) if v.trim().is_empty() => Ok(None),
        Some(Ok(v)) => Ok(Some(v.trim().to_string())),
        Some(Err(_)) => Err(format!("The {name} header is not valid text")),
    }
}

async fn put_media(sh: &Shared, id: &str, req: Request, cut: bool) -> Reply {
    let limit = sh.store.config().max_size;
    let declared = declared_length(req.headers());
    if let Some(size) = declared {
        if size > limit {
            // Refused on the declared length: nothing is buffered or stored.
            if size <= DRAIN_LIMIT && !expects_continue(req.headers()) {
                drain(req.into_body(), DRAIN_LIMIT).await;
            }
            return Reply::too_large(size, limit);
        }
    }
    let content_type = match header_text(req.headers(), header::CONTENT_TYPE) {
        Ok(ct) => ct.unwrap_or_else(|| "application/octet-stream".to_string()),
        Err(e) => return Reply::bad_request(e),
    };
    let cache_control = match header_text(req.headers(), header::CACHE_CONTROL) {
        Ok(cc) => cc,
        Err(e) => return Reply::bad_request(e),
    };
    let mut body = req.into_body();
    if cut {
        // Take about half of the upload, then the connection dies: nothing is stored.
        let want = declared.unwrap_or(0) / 2;
        let mut seen = 0u64;
        while seen < want {
            match tokio::time::timeout(
                BODY_READ_TIMEOUT,
                poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)),
            )
            .await
            {
                Ok(Some(Ok(frame))) => {
                    seen += frame.data_ref().map(|d| d.len() as u64).unwrap_or(0)
                }
                _ => break,
            }
        }
        return Reply::empty(StatusCode::NO_CONTENT);
    }
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, read_limited(body, limit)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(ReadError::TooLarge(seen, rest))) => {
            drain(rest, DRAIN_LIMIT.saturating_sub(seen)).await;
            return Reply::too_large(seen, limit);
        }
        Ok(Err(ReadError::Broken(e))) => {
            return Reply::bad_request(format!("The upload body could not be read: {e}"))
        }
        Err(_) => {
            return Reply::error(
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "The upload body did not arrive in time",
            )
        }
    };
    match sh
        .store
        .put(id, bytes, &content_type, cache_control.as_deref())
    {
        Ok(()) => Reply::empty(StatusCode::NO_CONTENT),
        Err(StoreError::TooLarge { size, limit }) => Reply::too_large(size, limit),
        Err(e) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-server-error",
            format!("{e:?}"),
        ),
    }
}

async fn token(sh: &Shared, req: Request) -> Reply {
    #[derive(Serialize)]
    struct OAuthError<'a> {
        error: &'a str,
        error_description: &'a str,
    }
    let headers = req.headers().clone();
    let form = match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        read_limited(req.into_body(), TOKEN_BODY_LIMIT),
    )
    .await
    {
        Ok(Ok(form)) => form,
        Ok(Err(ReadError::TooLarge(..))) => {
            return Reply::json(
                StatusCode::BAD_REQUEST,
                &OAuthError {
                    error: "invalid_request",
                    error_description: "The request body is too large",
                },
            )
        }
        _ => {
            return Reply::json(
                StatusCode::BAD_REQUEST,
                &OAuthError {
                    error: "invalid_request",
                    error_description: "The request body could not be read",
                },
            )
        }
    };
    let mut reply = match sh.auth.issue_token(&headers, &form) {
        Ok(grant) => Reply::json(StatusCode::OK, &grant),
        Err(TokenError::InvalidClient(why)) => Reply::json(
            StatusCode::UNAUTHORIZED,
            &OAuthError {
                error: "invalid_client",
                error_description: why,
            },
        ),
        Err(TokenError::InvalidRequest(why)) => Reply::json(
            StatusCode::BAD_REQUEST,
            &OAuthError {
                error: "invalid_request",
                error_description: why,
            },
        ),
        Err(TokenError::UnsupportedGrantType) => Reply::json(
            StatusCode::BAD_REQUEST,
            &OAuthError {
                error: "unsupported_grant_type",
                error_description: "Only grant_type=client_credentials is supported",
            },
        ),
    };
    reply
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

async fn stats_get(State(sh): State<Arc<Shared>>) -> Response {
    Json(sh.store.stats.snapshot()).into_response()
}

async fn stats_reset(State(sh): State<Arc<Shared>>) -> Response {
    sh.store.stats.reset();
    Json(sh.store.stats.snapshot()).into_response()
}

async fn faults_get(State(sh): State<Arc<Shared>>) -> Response {
    Json(sh.faults.read().clone()).into_response()
}

async fn faults_put(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return Reply::bad_request(format!("Bad faults JSON: {e}")).into_response();
        }
    };
    if let Err(e) = faults.validate() {
        return Reply::bad_request(e).into_response();
    }
    debug!("faults set to {faults:?}");
    *sh.faults.write() = faults.clone();
    Json(faults).into_response()
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_emulator/stats", get(stats_get))
        .route("/_emulator/stats/reset", post(stats_reset))
        .route("/_emulator/faults", get(faults_get).put(faults_put))
        .fallback(api_entry)
        .with_state(shared)
}

/// Accept connections until `shutdown` changes (or its sender is dropped), serving each on its
/// own task with HTTP/1.1 keep-alive and title-case response headers.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, say: wait a little rather than spin.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctl = ConnCtl::default();
        let io = TokioIo::new(FaultIo::new(stream, ctl.clone()));
        let router = router.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ctl.clone());
                    let mut router = router.clone();
                    async move {
                        let resp: Result<Response, Infallible> =
                            tower_service::Service::call(&mut router, req).await;
                        resp
                    }
                });
            let result = hyper::server::conn::http1::Builder::new()
                .title_case_headers(true)
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(io, service)
                .await;
            if let Err(e) = result {
                debug!("connection from {peer} ended: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_use_the_raw_path() {
        assert_eq!(route("/api/v1/oauth2/token"), Some(Route::Token));
        assert_eq!(
            route("/api/v2/users/123/media"),
            Some(Route::List {
                account: "123".into()
            })
        );
        assert_eq!(
            route("/api/v2/users/123/media/a%2F0%2Fx.png"),
            Some(Route::Media {
                account: "123".into(),
                raw_id: "a%2F0%2Fx.png".into()
            })
        );
        assert_eq!(
            route("/api/v2/users/123/media/a/0/x.png"),
            Some(Route::Media {
                account: "123".into(),
                raw_id: "a/0/x.png".into()
            })
        );
        assert_eq!(route("/api/v2/users/123/media/"), None);
        assert_eq!(route("/api/v2/users/123/other"), None);
        assert_eq!(route("/api/v2/users/123"), None);
        assert_eq!(route("/"), None);
    }
}
