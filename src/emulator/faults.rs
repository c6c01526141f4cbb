//! Fault injection: what can go wrong between a client and Bandwidth, on demand.
//!
//! Each API request draws its fault once, in order: an error answer (`error_rate`), else a
//! connection cut in the middle of the body (`cut_rate`), else a truncated body
//! (`truncate_rate`). Latency is added to every API request whatever the draw.
//!
//! The hard part is making the two body faults look different on the wire, as they do in life:
//! - **truncate**: the response announces its full `Content-Length`, sends about half the bytes,
//!   then ends the connection cleanly (FIN). The client sees an early end of file.
//! - **cut**: the same half is sent, then the connection is *aborted*: `FaultIo` (the wrapper
//!   of every accepted socket) is told through its `ConnCtl`, fails every later read and
//!   write, and sets `SO_LINGER` to zero so that closing the socket sends a TCP reset. The client
//!   sees "connection reset" (possibly before it has read the bytes already sent). A reply
//!   without a body (204 of put/delete) is cut before its head is written; a put is cut while
//!   its body is being received, and nothing is stored.
//!
//! Between the half body and the end, `FaultBody` pauses briefly so hyper flushes the half
//! to the socket first: otherwise the bytes would die in hyper's write buffer with the
//! connection and both faults would degrade to "no response at all".

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The faults the emulator injects into API requests (media and token endpoints, never the
/// `/_emulator` control endpoints). `Default` (and the JSON `{}`) is "no faults".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added to every API request before it is answered.
    pub latency_ms: u64,
    /// Share of requests (0.0..=1.0) answered with an error status instead.
    pub error_rate: f64,
    /// The statuses an injected error picks from, at random.
    pub error_statuses: Vec<u16>,
    /// The `Retry-After` (seconds) an injected 429 carries.
    pub retry_after_secs: u64,
    /// Share of requests whose connection is aborted in the middle of the body.
    pub cut_rate: f64,
    /// Share of responses that announce their full length but send fewer bytes.
    pub truncate_rate: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            error_rate: 0.0,
            error_statuses: vec![500, 503, 429],
            retry_after_secs: 1,
            cut_rate: 0.0,
            truncate_rate: 0.0,
        }
    }
}

/// The fault one request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Answer this status (with a JSON body; 429 with `Retry-After`).
    Error(u16),
    /// Abort the connection in the middle of the body.
    Cut,
    /// Send fewer bytes than `Content-Length` announces, then end the connection.
    Truncate,
}

impl Faults {
    /// Check values that came from outside (the control endpoint, the command line).
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("cut_rate", self.cut_rate),
            ("truncate_rate", self.truncate_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0.0 and 1.0, not {rate}"));
            }
        }
        if self.error_rate > 0.0 && self.error_statuses.is_empty() {
            return Err("error_rate is set but error_statuses is empty".into());
        }
        for s in &self.error_statuses {
            if !(400..=599).contains(s) {
                return Err(format!("error status {s} is not a 4xx or 5xx status"));
            }
        }
        Ok(())
    }

    /// Draw the fault of one request.
    pub(crate) fn draw(&self, rng: &mut impl Rng) -> Option<Fault> {
        if self.error_rate > 0.0 && rng.random::<f64>() < self.error_rate {
            let status = if self.error_statuses.is_empty() {
                500
            } else {
                self.error_statuses[rng.random_range(0..self.error_statuses.len())]
            };
            // A status set through the library API is not validated: keep it an error.
            let status = if (400..=599).contains(&status) {
                status
            } else {
                500
            };
            return Some(Fault::Error(status));
        }
        if self.cut_rate > 0.0 && rng.random::<f64>() < self.cut_rate {
            return Some(Fault::Cut);
        }
        if self.truncate_rate > 0.0 && rng.random::<f64>() < self.truncate_rate {
            return Some(Fault::Truncate);
        }
        None
    }
}

/// The handle a request holds on its connection, to abort it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnCtl {
    aborted: Arc<AtomicBool>,
}

impl ConnCtl {
    /// From now on the connection fails every read and write, and closes with a reset.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
    }

    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }
}

/// An accepted socket that can be aborted from a request handler (see the module comment).
pub(crate) struct FaultIo {
    inner: TcpStream,
    ctl: ConnCtl,
}

impl FaultIo {
    pub(crate) fn new(inner: TcpStream, ctl: ConnCtl) -> FaultIo {
        FaultIo { inner, ctl }
    }

    fn aborted_error() -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection cut by the emulator (fault injection)",
        )
    }
}

impl Drop for FaultIo {
    fn drop(&mut self) {
        if self.ctl.is_aborted() {
            // Zero linger: close() sends a reset instead of a clean end of stream.
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for FaultIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ctl.is_aborted() {
            return Poll::Ready(Err(Self::aborted_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.ctl.is_aborted() {
            return Poll::Ready(Err(Self::aborted_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.ctl.is_aborted() {
            return Poll::Ready(Err(Self::aborted_error()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ctl.is_aborted() {
            return Poll::Ready(Err(Self::aborted_error()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ctl.is_aborted() {
            return Poll::Ready(Err(Self::aborted_error()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// How long a faulty body waits after its partial bytes, so that they reach the socket.
const FLUSH_PAUSE: Duration = Duration::from_millis(20);

enum BodyState {
    Prefix(Bytes),
    Pause(Pin<Box<tokio::time::Sleep>>),
    Done,
}

/// A response body that sends the first half of `body`, pauses, then either aborts the
/// connection (cut) or just ends (truncate). Its size hint is unknown, so hyper announces the
/// `Content-Length` header the response carries: the full length.
pub(crate) struct FaultBody {
    state: BodyState,
    /// `Some` to cut: the connection to abort.
    cut: Option<ConnCtl>,
}

impl FaultBody {
    pub(crate) fn cut(body: Bytes, ctl: ConnCtl) -> FaultBody {
        FaultBody {
            state: BodyState::Prefix(half(body)),
            cut: Some(ctl),
        }
    }

    pub(crate) fn truncate(body: Bytes) -> FaultBody {
        FaultBody {
            state: BodyState::Prefix(half(body)),
            cut: None,
        }
    }
}

fn half(mut body: Bytes) -> Bytes {
    body.truncate(body.len() / 2);
    body
}

impl http_body::Body for FaultBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                BodyState::Prefix(prefix) => {
                    let prefix = std::mem::take(prefix);
                    this.state = BodyState::Pause(Box::pin(tokio::time::sleep(FLUSH_PAUSE)));
                    if !prefix.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(prefix))));
                    }
                }
                BodyState::Pause(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state = BodyState::Done;
                    if let Some(ctl) = &this.cut {
                        ctl.abort();
                        return Poll::Ready(Some(Err(FaultIo::aborted_error())));
                    }
                    return Poll::Ready(None);
                }
                BodyState::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_json_means_no_faults() {
        let f: Faults = serde_json::from_str("{}").unwrap();
        assert_eq!(f, Faults::default());
        let mut rng = rand::rng();
        assert!((0..1000).all(|_| f.draw(&mut rng).is_none()));
    }

    #[test]
    fn full_rates_always_fire_in_order() {
        let mut rng = rand::rng();
        let f = Faults {
            error_rate: 1.0,
            error_statuses: vec![503],
            cut_rate: 1.0,
            ..Faults::default()
        };
        assert!((0..100).all(|_| f.draw(&mut rng) == Some(Fault::Error(503))));
        let f = Faults {
            cut_rate: 1.0,
            truncate_rate: 1.0,
            ..Faults::default()
        };
        assert!((0..100).all(|_| f.draw(&mut rng) == Some(Fault::Cut)));
    }

    #[test]
    fn validation_refuses_nonsense() {
        let bad_rate = Faults {
            cut_rate: 1.5,
            ..Faults::default()
        };
        assert!(bad_rate.validate().is_err());
        let bad_status = Faults {
            error_statuses: vec![200],
            ..Faults::default()
        };
        assert!(bad_status.validate().is_err());
        assert!(Faults::default().validate().is_ok());
    }
}
