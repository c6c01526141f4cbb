//! The media endpoints: a listing page, a download, an upload read under the size limit.
//!
//! Uploads are read under a limit: a declared `Content-Length` over the limit is refused before
//! any byte of the body is buffered; without one, buffering stops one byte past the limit.
//! Either way the rest of a refused body is read and discarded (up to 64 MiB, unless the client
//! sent `Expect: 100-continue`): a client still writing its upload would otherwise get a broken
//! pipe instead of the 413.

use std::future::poll_fn;
use std::pin::Pin;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use serde::Serialize;

use super::reply::Reply;
use super::{Shared, BODY_READ_TIMEOUT, CONTINUATION_TOKEN, DRAIN_LIMIT, DRAIN_TIMEOUT};
use crate::api::MediaApi;
use crate::emulator::store::StoreError;

pub(super) fn list(sh: &Shared, headers: &HeaderMap) -> Reply {
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

pub(super) fn get_media(sh: &Shared, id: &str) -> Reply {
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
    if let Some(t) = sh.store.last_modified(&media) {
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(t)) {
            headers.insert(header::LAST_MODIFIED, v);
        }
    }
    Reply {
        status: StatusCode::OK,
        headers,
        body: media.body,
    }
}

pub(super) enum ReadError {
    /// More than the limit arrived: how much had been seen, and the unread rest.
    TooLarge(u64, Body),
    /// The client went away or sent a broken body.
    Broken(String),
}

/// Read a request body, stopping as soon as it passes `limit` bytes (so memory stays bounded
/// whatever the client sends or declares).
pub(super) async fn read_limited(body: Body, limit: u64) -> Result<Bytes, ReadError> {
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
pub(super) async fn drain(mut body: Body, budget: u64) {
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
pub(super) fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

pub(super) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A header as trimmed text (`None` when absent or blank); the error says which is unreadable.
pub(super) fn header_text(headers: &HeaderMap, name: HeaderName) -> Result<Option<String>, String> {
    match headers.get(&name).map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(v)) if v.trim().is_empty() => Ok(None),
        Some(Ok(v)) => Ok(Some(v.trim().to_string())),
        Some(Err(_)) => Err(format!("The {name} header is not valid text")),
    }
}

/// Run a change of the store (which writes and `fsync`s the data directory, if there is one)
/// on a thread made for blocking, so the runtime's threads go on serving meanwhile.
pub(super) async fn off_the_runtime<T: Send + 'static, E: From<StoreError> + Send + 'static>(
    change: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(change)
        .await
        .unwrap_or_else(|e| Err(StoreError::Disk(format!("the write stopped: {e}")).into()))
}

pub(super) async fn put_media(sh: &Shared, id: &str, req: Request, cut: bool) -> Reply {
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
    if let Err(why) = crate::api::check_media_type(&content_type) {
        return Reply::bad_request(format!(
            "The Content-Type header {content_type:?} is not a valid media type ({why}); send \
             one such as image/png or application/octet-stream"
        ));
    }
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
    let (store, id) = (sh.store.clone(), id.to_string());
    let stored =
        off_the_runtime(move || store.put(&id, bytes, &content_type, cache_control.as_deref()))
            .await;
    match stored {
        Ok(()) => Reply::empty(StatusCode::NO_CONTENT),
        Err(StoreError::TooLarge { size, limit }) => Reply::too_large(size, limit),
        Err(e) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-server-error",
            e.to_string(),
        ),
    }
}
