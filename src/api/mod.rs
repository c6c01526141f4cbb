//! The Media API as the rest of the program sees it: one trait, [`MediaApi`], with the four
//! operations Bandwidth offers (list one page, get, put, delete), and one error type, [`ApiError`].
//!
//! Two implementations exist: [`http::HttpApi`] talks to the real service (or the emulator) over
//! HTTP, and [`crate::emulator::store::Store`] answers in-process for fast unit tests of the core.
//! The hard parts live below this trait: retries ([`retry`]), tokens ([`auth`]) and the mapping of
//! media ids with `/` to URL paths ([`path`]).

pub mod auth;
pub mod counters;
pub mod http;
pub mod mime;
pub mod path;
pub mod retry;
mod transport;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

pub use counters::{Counters, CountersSnapshot, RequestKind};
pub use mime::{check_media_type, content_type_for, content_type_of_bytes, UNKNOWN_CONTENT_TYPE};

/// Bandwidth's documented per-file limit: 3.75 MB (3.75 × 1024 × 1024 bytes).
pub const MAX_MEDIA_SIZE: u64 = 3_932_160;

/// How long Bandwidth keeps a media after its upload: 48 hours, then it vanishes.
pub const RETENTION: Duration = Duration::from_secs(48 * 3600);

/// Pages a full listing may take before it is judged endless (100 million media at 1000 a page).
pub const MAX_LIST_PAGES: usize = 100_000;

/// One item of a listing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// The media id: everything after `media/` in its URL; may contain `/`.
    pub name: String,
    /// Its size in bytes.
    pub content_length: u64,
}

/// One page of a listing, and the token that fetches the next (absent on the last page).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The media of this page.
    pub items: Vec<MediaInfo>,
    /// The continuation token of the next page.
    pub next: Option<String>,
}

/// A downloaded media: its bytes and the headers stored with it at upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// The bytes.
    pub body: Bytes,
    /// The `Content-Type` stored with it.
    pub content_type: Option<String>,
    /// The `Cache-Control` stored with it.
    pub cache_control: Option<String>,
    /// When the server says the media was last stored (a GET's `Last-Modified`, when it sends
    /// one; whether production does is unknown).
    pub last_modified: Option<SystemTime>,
}

/// Why a call failed. Each variant is one row of the design's error table; the core maps them to
/// errno in exactly one place (`fs::error`). Messages never contain credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 401: the credentials were refused.
    #[error("authentication failed (HTTP 401): {0}")]
    Unauthorized(String),
    /// 403: the credentials are good but not for this account.
    #[error("access denied (HTTP 403): {0}")]
    Forbidden(String),
    /// 404: no such media.
    #[error("no such media")]
    NotFound,
    /// The upload is over the size limit (413, or any 4xx on an upload larger than the limit).
    #[error("media too large: {size} bytes{}", too_large_limit(.limit))]
    TooLarge {
        /// The size of the upload.
        size: u64,
        /// The largest a media may be, when known: a 413 for an upload within Bandwidth's
        /// limit says only that this server's limit is lower.
        limit: Option<u64>,
    },
    /// 415: the server refused the content type.
    #[error("content type {0:?} refused by the server (HTTP 415)")]
    UnsupportedType(String),
    /// Any other HTTP status, after the retries it deserved.
    #[error("HTTP {status} from the server{}{}", .kind.as_deref().map(|k| format!(" ({k})")).unwrap_or_default(), .description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        /// The HTTP status.
        status: u16,
        /// The `type` of the error body, when it had one.
        kind: Option<String>,
        /// The `description` of the error body (secrets masked), when it had one.
        description: Option<String>,
    },
    /// No answer: connection refused or reset, timeout, DNS (after all retries).
    #[error("network error: {0}")]
    Transport(String),
    /// An answer that does not follow the API: bad JSON, wrong types, a short body, endless pages.
    #[error("malformed answer from the server: {0}")]
    Malformed(String),
    /// A local problem that no retry can fix (bad configuration).
    #[error("{0}")]
    Config(String),
    /// A header value that HTTP cannot carry (a control character): refused before sending.
    #[error("{0}")]
    InvalidHeader(String),
}

/// How a [`ApiError::TooLarge`] names the limit.
fn too_large_limit(limit: &Option<u64>) -> String {
    match limit {
        Some(l) => format!(", the limit is {l} bytes"),
        None => format!(
            "; the server refused it (HTTP 413), so its limit is below Bandwidth's {MAX_MEDIA_SIZE} bytes"
        ),
    }
}

impl ApiError {
    /// Whether a retry may succeed: 429, 5xx and network failures.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => *status == 429 || *status >= 500,
            ApiError::Transport(_) => true,
            _ => false,
        }
    }
}

/// Where [`MediaApi::get_into`] writes a body as it arrives: the caller reads into
/// [`BodySink::space`] and reports with [`BodySink::advance`], so the bytes are copied once.
pub trait BodySink {
    /// An attempt begins: the answer announced `len` bytes (`None`: no length announced). A
    /// retry after a cut calls this again, and the body starts over from its first byte.
    fn start(&mut self, len: Option<u64>);
    /// Room for the next bytes. Empty only when the announced length has been received.
    fn space(&mut self) -> &mut [u8];
    /// The first `n` bytes of the last [`BodySink::space`] hold the next bytes of the body.
    fn advance(&mut self, n: usize);
}

/// The four operations of Bandwidth's Media API for one account.
pub trait MediaApi: Send + Sync {
    /// One page of the listing; `token` is the previous page's `next`.
    fn list_page(&self, token: Option<&str>) -> Result<ListPage, ApiError>;
    /// The whole media (the API has no ranges).
    fn get(&self, name: &str) -> Result<Media, ApiError>;
    /// [`MediaApi::get`], handing the body to `sink` while it arrives (so a reader can be served
    /// before the end). The returned media has the headers and an empty body; the body is what
    /// the sink received in its last attempt, which has exactly the announced length.
    fn get_into(&self, name: &str, sink: &mut dyn BodySink) -> Result<Media, ApiError> {
        let m = self.get(name)?;
        sink.start(Some(m.body.len() as u64));
        let mut rest = &m.body[..];
        while !rest.is_empty() {
            let space = sink.space();
            let n = space.len().min(rest.len());
            if n == 0 {
                break;
            }
            space[..n].copy_from_slice(&rest[..n]);
            sink.advance(n);
            rest = &rest[n..];
        }
        Ok(Media {
            body: Bytes::new(),
            ..m
        })
    }
    /// Store `body` under `name`, replacing any media of that name.
    fn put(
        &self,
        name: &str,
        body: Bytes,
        content_type: &str,
        cache_control: Option<&str>,
    ) -> Result<(), ApiError>;
    /// Remove `name`; removing a missing name succeeds (as production does).
    fn delete(&self, name: &str) -> Result<(), ApiError>;
    /// The URL of a media, as one would put it in an MMS.
    fn media_url(&self, name: &str) -> String;
    /// The counters of the requests this API makes, which the core shares to count its cache
    /// hits beside them (so `bwmediafs status` reads one object); `None` for an API that
    /// counts nothing (the in-process store of the unit tests).
    fn counters(&self) -> Option<Arc<Counters>> {
        None
    }
}

/// Walk every page of the listing, calling `on_page` for each as it arrives (so a reader can
/// stream entries). Stops with [`ApiError::Malformed`] when a continuation token repeats or the
/// walk passes [`MAX_LIST_PAGES`]: a server that never ends its listing must not hang us.
pub fn walk_pages(api: &dyn MediaApi, on_page: impl FnMut(&ListPage)) -> Result<usize, ApiError> {
    walk_pages_bounded(api, MAX_LIST_PAGES, on_page)
}

/// [`walk_pages`] with the bound on pages given: the walk fails with [`ApiError::Malformed`]
/// rather than ask for page `max_pages + 1`. Returns the number of pages walked.
pub fn walk_pages_bounded(
    api: &dyn MediaApi,
    max_pages: usize,
    mut on_page: impl FnMut(&ListPage),
) -> Result<usize, ApiError> {
    let mut guard = ListingGuard::new(max_pages);
    let mut token: Option<String> = None;
    loop {
        let page = api.list_page(token.as_deref())?;
        on_page(&page);
        if !guard.page(page.next.as_deref())? {
            return Ok(guard.pages());
        }
        token = page.next;
    }
}

/// The one guard of every listing walk against a server that would make it endless: a page
/// whose continuation token repeats an earlier one, or a listing longer than its page bound,
/// ends the walk with [`ApiError::Malformed`].
#[derive(Debug, Clone)]
pub struct ListingGuard {
    max_pages: usize,
    pages: usize,
    seen: std::collections::HashSet<String>,
}

impl ListingGuard {
    /// A guard for a walk of at most `max_pages` pages.
    pub fn new(max_pages: usize) -> ListingGuard {
        ListingGuard {
            max_pages,
            pages: 0,
            seen: std::collections::HashSet::new(),
        }
    }

    /// One more page arrived, with `next` as its continuation token: whether the walk goes on
    /// (false after the last page), or why it must not.
    pub fn page(&mut self, next: Option<&str>) -> Result<bool, ApiError> {
        self.pages += 1;
        let Some(next) = next else {
            return Ok(false);
        };
        if !self.seen.insert(next.to_string()) {
            return Err(ApiError::Malformed(format!(
                "the listing repeats a continuation token after {} pages",
                self.pages
            )));
        }
        if self.pages >= self.max_pages {
            return Err(ApiError::Malformed(format!(
                "the listing did not end after {} pages",
                self.pages
            )));
        }
        Ok(true)
    }

    /// Pages seen so far.
    pub fn pages(&self) -> usize {
        self.pages
    }
}

/// Every media of the account, all pages walked.
pub fn list_all(api: &dyn MediaApi) -> Result<Vec<MediaInfo>, ApiError> {
    let mut all = Vec::new();
    walk_pages(api, |page| all.extend(page.items.iter().cloned()))?;
    Ok(all)
}
