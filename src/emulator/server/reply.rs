//! An answer before faults are applied to it, and the error answers every endpoint shares.

use std::time::SystemTime;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;

use super::JSON;
use crate::emulator::faults::{ConnCtl, Fault, FaultBody};

/// An answer before faults are applied to it: the body is whole, in memory.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl Reply {
    pub(super) fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    pub(super) fn json(status: StatusCode, value: &impl Serialize) -> Reply {
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
    pub(super) fn error(status: StatusCode, kind: &str, description: impl Into<String>) -> Reply {
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

    pub(super) fn unauthorized() -> Reply {
        Reply::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication Failed",
        )
    }

    pub(super) fn forbidden() -> Reply {
        Reply::error(StatusCode::FORBIDDEN, "forbidden", "Access Denied")
    }

    pub(super) fn bad_request(description: impl Into<String>) -> Reply {
        Reply::error(StatusCode::BAD_REQUEST, "request-validation", description)
    }

    pub(super) fn too_large(size: u64, limit: u64) -> Reply {
        Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request-entity-too-large",
            format!("The media is {size} bytes; the largest accepted is {limit} bytes"),
        )
    }

    pub(super) fn into_response(self) -> Response {
        let mut resp = Response::new(Body::from(self.body));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp
    }

    /// The response, with a body fault applied when one was drawn.
    pub(super) fn finish(self, fault: Option<Fault>, ctl: &ConnCtl) -> Response {
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
pub(super) fn unknown_path(path: &str) -> Response {
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

pub(super) fn injected_error(status: u16, retry_after_secs: u64) -> Reply {
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
