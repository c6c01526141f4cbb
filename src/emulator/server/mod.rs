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
//! - **Uploads are read under a limit** (see `media`).
//!
//! Every API request is counted in `store.stats` by operation before anything can fail, so
//! tests can assert exact round trips, failures included.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use log::{debug, warn};
use parking_lot::RwLock;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod media;
mod reply;

use media::{get_media, list, off_the_runtime, put_media, read_limited, ReadError};
use reply::{injected_error, unknown_path, Reply};

use super::auth::{Auth, TokenError};
use super::faults::{ConnCtl, Fault, FaultIo, Faults};
use super::inbound::{self, CallbackConfig, InboundAnswer, InboundError, InboundRequest};
use super::store::Store;
use crate::api::path::decode_media_id;
use crate::api::MediaApi;

/// Everything a request handler needs.
pub(crate) struct Shared {
    pub account: String,
    pub auth: Auth,
    pub store: Arc<Store>,
    pub faults: RwLock<Faults>,
    /// Where inbound messages' callbacks go, and the client that sends them.
    pub callback: Option<(Arc<CallbackConfig>, reqwest::Client)>,
    /// The application id inbound callbacks name.
    pub application_id: String,
}

pub(super) const JSON: &str = "application/json; charset=utf-8";
pub(super) const CONTINUATION_TOKEN: HeaderName = HeaderName::from_static("continuation-token");
/// Largest token-request body read (a form with one or two fields).
pub(super) const TOKEN_BODY_LIMIT: u64 = 64 * 1024;
/// How long an upload body may take to arrive.
pub(super) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a refused (oversize) upload is read and discarded, and for how long, so the
/// client reads the 413 (see [`drain`]).
pub(super) const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The API operations, as counted in the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
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
    let _serving = stats.serving();

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
        (Op::Delete, Some(id)) => match off_the_runtime({
            let store = sh.store.clone();
            move || store.remove(&id)
        })
        .await
        {
            Ok(()) => Reply::empty(StatusCode::NO_CONTENT),
            Err(e) => Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-server-error",
                e.to_string(),
            ),
        },
        _ => Reply::empty(StatusCode::NOT_FOUND),
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

/// A message received by one of the account's numbers (see [`inbound`]).
async fn inbound_post(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: InboundRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return Reply::bad_request(format!("Bad inbound message JSON: {e}")).into_response()
        }
    };
    let id = inbound::message_id();
    let req = Arc::new(req);
    let stored = off_the_runtime({
        let (store, id, req) = (sh.store.clone(), id.clone(), req.clone());
        move || inbound::store_media(&store, &id, &req)
    })
    .await;
    let names = match stored {
        Ok(names) => names,
        Err(InboundError::Invalid(why)) => return Reply::bad_request(why).into_response(),
        Err(InboundError::TooLarge { name, size, limit }) => {
            let mut reply = Reply::too_large(size, limit);
            reply.headers.insert(
                HeaderName::from_static("x-emulator-file"),
                HeaderValue::from_str(&name).unwrap_or(HeaderValue::from_static("?")),
            );
            return reply.into_response();
        }
        Err(InboundError::Store(e)) => {
            return Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-server-error",
                e.to_string(),
            )
            .into_response()
        }
    };
    let urls: Vec<String> = names.iter().map(|n| sh.store.media_url(n)).collect();
    log::info!(
        "inbound message {id} from {} to {} with {} media",
        req.from,
        req.to,
        names.len()
    );
    if let Some((cb, client)) = &sh.callback {
        let body = inbound::callback_body(&id, &req, &sh.application_id, &urls);
        tokio::spawn(inbound::deliver(
            cb.clone(),
            client.clone(),
            id.clone(),
            Bytes::from(body.to_string()),
        ));
    }
    Json(InboundAnswer {
        message_id: id,
        media: names,
        urls,
        callback: sh.callback.is_some(),
    })
    .into_response()
}

/// The largest inbound message the control endpoint reads: a few files at the size limit, in
/// base64.
const INBOUND_BODY_LIMIT: usize = 64 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/_emulator/inbound",
            post(inbound_post).layer(axum::extract::DefaultBodyLimit::max(INBOUND_BODY_LIMIT)),
        )
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
mod tests;
