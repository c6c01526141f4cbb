//! Reading answers, for the media calls (`http`) and the token endpoint (`auth`) alike: bodies
//! checked against their announced length, capped, and read into a sink as they arrive; and
//! what a failed attempt stands for (transient or not, Retry-After).

use std::error::Error as StdError;
use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use reqwest::blocking::Response;
use reqwest::header::{CONTENT_LENGTH, RETRY_AFTER};

use super::retry::{parse_retry_after, Failure};
use super::{ApiError, BodySink};

/// The most of an error (or token) body we read.
pub(crate) const MAX_ERROR_BODY: u64 = 64 * 1024;

/// A [`BodySink`] into one vector: the whole body at the end.
#[derive(Default)]
pub(super) struct VecSink {
    buf: Vec<u8>,
    len: usize,
    /// The answer announced its length (the vector has it); else it grows as bytes come.
    announced: bool,
}

impl VecSink {
    /// The body received.
    pub(super) fn into_bytes(mut self) -> Bytes {
        self.buf.truncate(self.len);
        Bytes::from(self.buf)
    }
}

impl BodySink for VecSink {
    fn start(&mut self, len: Option<u64>) {
        self.len = 0;
        // Zeroed by the allocator (fresh pages), not by a pass over the memory.
        self.buf = vec![0; len.map_or(0, |n| n as usize)];
        self.announced = len.is_some();
    }

    fn space(&mut self) -> &mut [u8] {
        if !self.announced && self.buf.len() < self.len + 64 * 1024 {
            self.buf.resize(self.len + 64 * 1024, 0);
        }
        &mut self.buf[self.len..]
    }

    fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

/// The `Content-Length` of an answer, refused when over `cap`.
pub(super) fn announced_length(
    resp: &Response,
    cap: u64,
    what: &str,
) -> Result<Option<u64>, Failure> {
    let announced = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    match announced {
        Some(n) if n > cap => Err(Failure::fatal(ApiError::Malformed(format!(
            "the {what} announces {n} bytes, more than the {cap} accepted"
        )))),
        _ => Ok(announced),
    }
}

/// A body that stopped before its end: transient.
pub(super) fn cut(
    what: &str,
    body: &str,
    got: u64,
    announced: Option<u64>,
    e: &std::io::Error,
) -> Failure {
    let of = announced.map(|n| format!(" of {n}")).unwrap_or_default();
    Failure::transient(ApiError::Transport(format!(
        "{what}: the {body} was cut after {got}{of} bytes: {}",
        chain(e)
    )))
}

/// An error and its causes, one line: reqwest's own message hides the useful part in `source`.
pub(super) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

/// A request that got no answer: connection refused or reset, timeout, DNS. All transient.
pub(crate) fn transport_failure(what: &str, e: &reqwest::Error) -> Failure {
    if e.is_builder() {
        return Failure::fatal(ApiError::Config(format!("{what}: {}", chain(e))));
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    Failure::transient(ApiError::Transport(format!("{what} {kind}: {}", chain(e))))
}

/// The wait an answer's `Retry-After` header asks for, when it has a valid one.
pub(crate) fn retry_after(resp: &Response) -> Option<Duration> {
    resp.headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Up to `cap` bytes of a body (the rest is not read): for error and token answers.
pub(crate) fn read_limited(resp: Response, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    resp.take(cap).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Read a small success body to its end so the connection goes back to the pool.
pub(super) fn drain(resp: Response) {
    let _ = read_limited(resp, MAX_ERROR_BODY);
}

/// A whole body, exactly as long as announced. Cut or short: transient. Over `cap`: malformed.
pub(super) fn read_body(mut resp: Response, cap: u64, what: &str) -> Result<Bytes, Failure> {
    let announced = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(n) = announced {
        if n > cap {
            return Err(Failure::fatal(ApiError::Malformed(format!(
                "the {what} announces {n} bytes, more than the {cap} accepted"
            ))));
        }
    }
    let of = announced.map(|n| format!(" of {n}")).unwrap_or_default();
    let mut buf = Vec::with_capacity(announced.unwrap_or(0) as usize);
    if let Err(e) = (&mut resp).take(cap + 1).read_to_end(&mut buf) {
        return Err(Failure::transient(ApiError::Transport(format!(
            "the {what} was cut after {}{of} bytes: {}",
            buf.len(),
            chain(&e)
        ))));
    }
    let got = buf.len() as u64;
    if got > cap {
        return Err(Failure::fatal(ApiError::Malformed(format!(
            "the {what} is larger than the {cap} bytes accepted"
        ))));
    }
    if let Some(n) = announced {
        if got != n {
            return Err(Failure::transient(ApiError::Malformed(format!(
                "the {what} has {got} bytes where {n} were announced"
            ))));
        }
    }
    Ok(Bytes::from(buf))
}
