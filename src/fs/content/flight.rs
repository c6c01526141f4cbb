//! One download in flight, readable while it arrives.
//!
//! The hard part is single-flight with streaming: when several threads want a media that is not
//! cached, the first registers a [`Flight`] and downloads without holding the cache lock; the
//! others join that flight. The body arrives into one buffer of the announced length (a
//! [`PageBuf`]), and a reader of bytes `a..b` is answered as soon as they are in, while the
//! rest is still arriving: bytes below the fill mark are never written again, so they are handed
//! out as `Bytes` slices of that buffer without a copy. If an attempt is cut and retried, the
//! retry's bytes below the fill mark are compared with what was already handed out, and a
//! difference (the media changed between the attempts) fails the download rather than mixing
//! two versions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use super::super::error::FsError;
use super::super::pages::{self, PageBuf, SharedPageBuf};
use crate::api::{BodySink, Media};

/// The buffer a download fills, and its announced length.
struct Shared {
    buf: SharedPageBuf,
    len: usize,
}

/// Bytes `start..end` of a download's buffer, as the owner of a `Bytes`: only bytes below the
/// fill mark, which are never written again.
struct Part {
    shared: Arc<Shared>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for Part {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `start..end` lies below the fill mark (see `Flight::read` and
        // `FlightSink::advance`), and the sink never writes there again.
        unsafe { self.shared.buf.range(self.start, self.end) }
    }
}

fn part(shared: &Arc<Shared>, start: usize, end: usize) -> Bytes {
    Bytes::from_owner(Part {
        shared: shared.clone(),
        start,
        end,
    })
}

/// `size` bytes at `offset` of `body` (fewer at its end).
pub(crate) fn slice(body: &Bytes, offset: u64, size: u32) -> Bytes {
    let len = body.len() as u64;
    let start = offset.min(len) as usize;
    let end = offset.saturating_add(size as u64).min(len) as usize;
    body.slice(start..end)
}

/// Who started a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartedBy {
    /// A reader that needs the bytes.
    Reader,
    /// The read-ahead, before any reader asked (its failure stays quiet, and a reader that
    /// joined it fetches on its own).
    ReadAhead,
}

/// A download in progress: how far its body is in, then its result.
pub(crate) struct Flight {
    st: Mutex<FlightState>,
    cond: Condvar,
    started_by: StartedBy,
    /// A reader joined it.
    joined: AtomicBool,
}

struct FlightState {
    /// The buffer being filled (from the first attempt that announced a length).
    shared: Option<Arc<Shared>>,
    filled: usize,
    /// The lowest fill mark a waiting reader needs (`usize::MAX`: none waits), so that the
    /// downloader wakes readers when their bytes are in, not at every chunk.
    want: usize,
    /// Some bytes were handed out before the end (they are in the kernel's page cache now).
    served: bool,
    result: Option<Result<Media, FsError>>,
}

impl Flight {
    /// The download is over: keep its outcome and wake every reader.
    pub(super) fn end(&self, result: Result<Media, FsError>) {
        self.st.lock().result = Some(result);
        self.cond.notify_all();
    }

    pub(super) fn new(started_by: StartedBy) -> Flight {
        Flight {
            started_by,
            joined: AtomicBool::new(false),
            st: Mutex::new(FlightState {
                shared: None,
                filled: 0,
                want: usize::MAX,
                served: false,
                result: None,
            }),
            cond: Condvar::new(),
        }
    }

    /// Up to `size` bytes at `offset`, as soon as they are in (or the download's error).
    pub(crate) fn read(&self, offset: u64, size: u32) -> Result<Bytes, FsError> {
        let mut st = self.st.lock();
        loop {
            if let Some(r) = &st.result {
                return match r {
                    Ok(m) => Ok(slice(&m.body, offset, size)),
                    Err(e) => Err(e.clone()),
                };
            }
            if let Some(sh) = &st.shared {
                let len = sh.len as u64;
                let start = offset.min(len) as usize;
                let end = offset.saturating_add(size as u64).min(len) as usize;
                if end <= st.filled || start == end {
                    let b = part(sh, start, end);
                    st.served = true;
                    return Ok(b);
                }
                st.want = st.want.min(end);
            } else {
                st.want = 0; // the length is not known yet: any progress
            }
            self.cond.wait(&mut st);
        }
    }

    /// The whole media, once downloaded.
    pub(crate) fn wait(&self) -> Result<Media, FsError> {
        let mut st = self.st.lock();
        loop {
            if let Some(r) = &st.result {
                return r.clone();
            }
            self.cond.wait(&mut st);
        }
    }

    /// The result, if the download is over.
    pub(crate) fn result(&self) -> Option<Result<Media, FsError>> {
        self.st.lock().result.clone()
    }

    /// Whether bytes were handed out before the download ended.
    pub(crate) fn served(&self) -> bool {
        self.st.lock().served
    }

    pub(super) fn ahead(&self) -> bool {
        self.started_by == StartedBy::ReadAhead
    }

    pub(super) fn join(&self) {
        self.joined.store(true, Ordering::Relaxed);
    }

    pub(super) fn joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }

    /// A download started ahead of a scan that failed before handing out any byte: it is
    /// forgotten, and a reader that joined it fetches on its own (and meets its own error).
    pub(crate) fn forgotten(&self) -> bool {
        let st = self.st.lock();
        self.ahead() && !st.served && matches!(st.result, Some(Err(_)))
    }
}

/// What a download hands out before it ends: the range one reader waits for, and where its
/// answer goes (called exactly once).
pub(crate) struct Early {
    pub offset: u64,
    pub size: u32,
    pub reply: Box<dyn FnOnce(Result<Bytes, FsError>) + Send>,
}

/// The receiving end of a download: writes the body into the flight's buffer and wakes the
/// readers whose bytes are in.
pub(crate) struct FlightSink<'a> {
    flight: &'a Flight,
    shared: Option<Arc<Shared>>,
    /// Bytes in the shared buffer (only this sink raises it).
    filled: usize,
    /// Position of the current attempt in the body.
    pos: usize,
    /// Where a retry's bytes below `filled` land, to be compared.
    scratch: Vec<u8>,
    /// The body when no length was announced (readers then wait for the end).
    unknown: Option<Vec<u8>>,
    unknown_len: usize,
    failed: Option<String>,
    early: Option<Early>,
}

const SCRATCH: usize = 64 * 1024;

impl<'a> FlightSink<'a> {
    pub(crate) fn new(flight: &'a Flight, early: Option<Early>) -> FlightSink<'a> {
        FlightSink {
            flight,
            shared: None,
            filled: 0,
            pos: 0,
            scratch: Vec::new(),
            unknown: None,
            unknown_len: 0,
            failed: None,
            early,
        }
    }

    fn fail(&mut self, why: String) {
        if self.failed.is_none() {
            self.failed = Some(why);
        }
    }

    /// The body received, once the API call succeeded.
    pub(crate) fn finish(&mut self) -> Result<Bytes, FsError> {
        if let Some(why) = self.failed.take() {
            return Err(FsError::BadDownload(why));
        }
        if let Some(mut v) = self.unknown.take() {
            v.truncate(self.unknown_len);
            return Ok(Bytes::from(v));
        }
        match &self.shared {
            Some(sh) if self.filled == sh.len && self.pos == sh.len => Ok(part(sh, 0, sh.len)),
            Some(sh) => Err(FsError::BadDownload(format!(
                "the download ended after {} of {} bytes",
                self.pos, sh.len
            ))),
            None => Ok(Bytes::new()),
        }
    }

    /// Answer the early reader from the final result if its bytes were not handed out yet.
    pub(crate) fn answer_early(&mut self, result: &Result<Media, FsError>) {
        if let Some(e) = self.early.take() {
            (e.reply)(match result {
                Ok(m) => Ok(slice(&m.body, e.offset, e.size)),
                Err(err) => Err(err.clone()),
            });
        }
    }
}

impl BodySink for FlightSink<'_> {
    fn start(&mut self, len: Option<u64>) {
        self.pos = 0;
        self.unknown = None;
        self.unknown_len = 0;
        let Some(len) = len else {
            if self.shared.is_some() {
                self.fail(
                    "the media changed while it was read (a retry announced no length)".into(),
                );
            }
            self.unknown = Some(Vec::new());
            return;
        };
        match &self.shared {
            Some(sh) if sh.len as u64 == len => {} // a retry: compared up to `filled`
            Some(_) => self.fail(
                "the media changed while it was read (a retry announced another length)".into(),
            ),
            None => {
                let Ok(len) = usize::try_from(len) else {
                    self.fail(format!("{len} bytes do not fit in memory"));
                    return;
                };
                match PageBuf::new(len) {
                    Ok(buf) => {
                        let sh = Arc::new(Shared {
                            buf: SharedPageBuf::new(buf),
                            len,
                        });
                        let ahead = sh.clone();
                        pages::in_background(move || ahead.buf.populate(ahead.len));
                        self.flight.st.lock().shared = Some(sh.clone());
                        self.shared = Some(sh);
                    }
                    Err(e) => self.fail(format!("no memory for {len} bytes: {e}")),
                }
            }
        }
    }

    fn space(&mut self) -> &mut [u8] {
        if self.failed.is_some() {
            // Read on to the end of the attempt (the connection stays usable); keep nothing.
            self.scratch.resize(SCRATCH, 0);
            return &mut self.scratch;
        }
        if let Some(v) = &mut self.unknown {
            if v.len() < self.unknown_len + SCRATCH {
                v.resize(self.unknown_len + SCRATCH, 0);
            }
            return &mut v[self.unknown_len..];
        }
        let Some(sh) = &self.shared else {
            return &mut [];
        };
        if self.pos < self.filled {
            let n = (self.filled - self.pos).min(SCRATCH);
            self.scratch.resize(n, 0);
            return &mut self.scratch[..n];
        }
        // SAFETY: `filled..len` is written only by this sink and read by nobody until `filled`
        // passes it (readers only take bytes below `filled`).
        unsafe { sh.buf.range_mut(self.filled, sh.len) }
    }

    fn advance(&mut self, n: usize) {
        if self.failed.is_some() {
            return;
        }
        if self.unknown.is_some() {
            self.unknown_len += n;
            return;
        }
        let Some(sh) = self.shared.clone() else {
            return;
        };
        if self.pos < self.filled {
            // SAFETY: below `filled`: nobody writes there.
            let old = unsafe { sh.buf.range(self.pos, self.pos + n) };
            if old != &self.scratch[..n] {
                self.fail(
                    "the media changed while it was read (a retry brought other bytes)".into(),
                );
            }
            self.pos += n;
            return;
        }
        self.pos += n;
        self.filled = self.pos;
        let wake = {
            let mut st = self.flight.st.lock();
            st.filled = self.filled;
            if let Some(e) = &self.early {
                let len = sh.len as u64;
                let end = e.offset.saturating_add(e.size as u64).min(len) as usize;
                if end <= self.filled {
                    st.served = true;
                }
            }
            let wake = self.filled >= st.want;
            if wake {
                st.want = usize::MAX;
            }
            wake
        };
        if wake {
            self.flight.cond.notify_all();
        }
        if let Some(e) = &self.early {
            let len = sh.len as u64;
            let start = e.offset.min(len) as usize;
            let end = e.offset.saturating_add(e.size as u64).min(len) as usize;
            if end <= self.filled {
                if let Some(e) = self.early.take() {
                    (e.reply)(Ok(part(&sh, start, end)));
                }
            }
        }
    }
}
