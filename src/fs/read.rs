//! Opens and reads (the downloads they start are `download`'s).
//!
//! The hard cases:
//! - Each read is answered as soon as its bytes have arrived (the first reader's thread answers
//!   early and stays to finish the download, which the next reads get as it arrives).
//! - Close-to-open consistency: an open after the TTL checks the bytes a cache would serve, and
//!   a size trusted past the TTL, with one GET (the API has no validators); when they changed,
//!   the open drops the kernel's page cache.
//! - `FOPEN_KEEP_CACHE` is granted only when the handle holds the body of the version the
//!   kernel cached, so whatever the kernel evicts is served from the same bytes.
//! - A handle's first read is what the read-ahead follows (`readahead`); a reader that joined
//!   a fetch ahead that failed fetches on its own.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;

use super::content::{Early, Fetch, Fingerprint, Flight};
use super::error::FsError;
use super::error::DOWNLOAD;
use super::handles::{Handle, HandleBody};
use super::listing::fresh;
use super::namespace::{Ino, Kind, Node};
use super::readahead::FetchAhead;
use super::types::Opened;
use super::write_buffer::{WriteBuf, WriteState};
use super::{content, process, MediaFs};
use crate::api::ApiError;

impl MediaFs {
    /// The whole body a reading handle reads, downloaded on first use.
    pub(super) fn body_for(&self, h: &Handle) -> Result<Bytes, FsError> {
        let media = match h.current_body()? {
            HandleBody::Failed(e, _) | HandleBody::Lost(e) => Err(e),
            HandleBody::Expect(print) => return self.expected_body(h, print),
            HandleBody::Ready(b) => return Ok(b),
            HandleBody::Flight(f) => match f.wait() {
                Err(_) if f.forgotten() => {
                    let (path, version) = self.path_version(h.ino)?;
                    self.download_once_more(&path, &|v| v == version, false)
                }
                r => r,
            },
            HandleBody::None => {
                let (path, version) = self.path_version(h.ino)?;
                self.download(&path, |v| v == version)
            }
        };
        let media = media.inspect_err(|_| h.drop_failed_flight())?;
        let mut body = h.body.lock();
        if let HandleBody::Ready(b) = &*body {
            return Ok(b.clone());
        }
        *body = HandleBody::Ready(media.body.clone());
        Ok(media.body)
    }

    /// The body of the version whose pages the kernel keeps for `h`, downloaded again: when
    /// the bytes are not the same any more, the handle fails for good.
    fn expected_body(&self, h: &Handle, print: Fingerprint) -> Result<Bytes, FsError> {
        let (path, _) = self.path_version(h.ino)?;
        let media = self.download(&path, |v| v == print.version)?;
        let mut body = h.body.lock();
        if !print.matches(&media.body) {
            log::warn!("{path:?} changed on the server while it was open; open it again");
            let e = FsError::BadDownload(
                "the media changed on the server while it was open; open it again".into(),
            );
            *body = HandleBody::Lost(e.clone());
            return Err(e);
        }
        *body = HandleBody::Ready(media.body.clone());
        Ok(media.body)
    }

    pub(super) fn path_version(&self, ino: Ino) -> Result<(String, u64), FsError> {
        let ns = self.ns.lock();
        let n = ns.live(ino).ok_or(FsError::NotFound)?;
        Ok((n.path().to_string(), n.content_version()))
    }

    /// Open a file for thread `pid` (as the kernel names it; 0: unknown). Write access (or
    /// O_TRUNC) attaches the inode's write buffer. An open after the TTL checks the bytes that
    /// it would serve from a cache (close-to-open consistency, see `MediaFs::revalidate_body`).
    ///
    /// The one place a cache hit is counted: an open for reading (no write access, no O_TRUNC)
    /// of a file no write buffer holds, whose current bytes the data cache holds, and which
    /// made no GET to check them. At most one per open, whatever it then reads.
    pub fn open(&self, ino: Ino, flags: i32, pid: u32) -> Result<Opened, FsError> {
        let acc = flags & libc::O_ACCMODE;
        let trunc = flags & libc::O_TRUNC != 0;
        let writes = acc == libc::O_WRONLY || acc == libc::O_RDWR || trunc;
        if writes {
            self.check_ro()?;
        }
        {
            let ns = self.ns.lock();
            // A name the kernel still caches for a removed node: it looks the name up again.
            let n = ns.live(ino).ok_or(FsError::Stale)?;
            if n.kind() == Kind::Dir {
                return Err(FsError::IsDir);
            }
        }
        let checked = if trunc {
            false
        } else {
            // Found gone from the server: the name the kernel still caches is dropped, and the
            // kernel looks it up again (so an `O_CREAT` open makes a new file).
            self.revalidate_body(ino).map_err(|e| match e {
                FsError::NotFound => FsError::Stale,
                e => e,
            })?
        };
        if !writes && !checked && self.buffer_of(ino).is_none() && self.body_cached(ino) {
            self.counters.cache_hit();
        }
        let buf = if writes {
            Some(self.acquire_buffer(ino, trunc)?)
        } else {
            None
        };
        let dirty = buf.is_some() || self.buffer_of(ino).is_some_and(|b| b.state.lock().dirty);
        // The kernel keeps its page cache only when this handle can serve the same bytes for
        // whatever the kernel no longer has: the handle holds the cached body of that version,
        // or its fingerprint, which a download of what the kernel evicted must match. So one
        // reader never sees two versions.
        let kept = self
            .ns
            .lock()
            .open_keeps_kernel_cache(ino, dirty, |n| self.kernel_version_body(n));
        let keep_cache = kept.is_some();
        let no_flush = buf.is_none();
        let body = kept.unwrap_or_default();
        let fh = self.add_handle(ino, flags, buf, pid, body);
        Ok(Opened {
            fh,
            keep_cache,
            no_flush,
            direct_io: acc == libc::O_WRONLY,
        })
    }

    /// Whether the data cache holds the body of `ino`'s current version.
    fn body_cached(&self, ino: Ino) -> bool {
        let ns = self.ns.lock();
        ns.live(ino).is_some_and(|n| {
            self.content
                .peek(n.path())
                .is_some_and(|(_, v)| v == n.content_version())
        })
    }

    /// What a handle serves of `n`'s current version, for the pages the kernel may evict: the
    /// cached body, or the fingerprint of the one the cache evicted.
    fn kernel_version_body(&self, n: &Node) -> Option<HandleBody> {
        let version = n.content_version();
        match self.content.peek(n.path()).filter(|(_, v)| *v == version) {
            Some((m, _)) => Some(HandleBody::Ready(m.body)),
            None => self
                .content
                .fingerprint(n.path())
                .filter(|f| f.version == version)
                .map(HandleBody::Expect),
        }
    }

    /// Close-to-open consistency: bytes this mount or the kernel would serve from a cache, and
    /// a size trusted past the TTL, are checked by one GET once they are older than the TTL
    /// (the API has no validators, so the GET brings the body, which the read then uses). When
    /// they changed, the content version moves on, so the open does not keep the kernel's page
    /// cache. A write buffer is the truth while it exists; bytes nobody caches, of a size known
    /// within the TTL, need no check (the first read fetches them). A media found gone is
    /// NotFound (its name is dropped). True when the bytes were checked (one GET).
    pub(super) fn revalidate_body(&self, ino: Ino) -> Result<bool, FsError> {
        if self.buffer_of(ino).is_some() {
            return Ok(false);
        }
        let path = {
            let ns = self.ns.lock();
            let Some(n) = ns.live(ino) else {
                return Err(FsError::NotFound);
            };
            let ttl = self.opts.metadata_ttl;
            let cached = n.kernel_version() != 0
                || self
                    .content
                    .peek(n.path())
                    .is_some_and(|(_, v)| v == n.content_version());
            // A size past the TTL (trusted on a multi-page account) is checked too: the read
            // that follows would fetch the body anyway, and the kernel reads by that size.
            let unchecked = cached || self.size_past_ttl(n);
            if !n.remote() || !unchecked || fresh(n.body_checked_at(), ttl) {
                return Ok(false);
            }
            n.path().to_string()
        };
        match self.download(&path, |_| false) {
            Ok(_) => Ok(true),
            Err(FsError::Api {
                source: ApiError::NotFound,
                ..
            }) => Err(FsError::NotFound),
            Err(e) => Err(e),
        }
    }

    /// Up to `size` bytes at `offset` (fewer at the end of the file).
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Bytes, FsError> {
        let out = Arc::new(Mutex::new(None));
        let slot = out.clone();
        self.read_with(fh, offset, size, move |r| *slot.lock() = Some(r));
        let answer = out.lock().take();
        answer.unwrap_or_else(|| Err(FsError::Io("the read was not answered".into())))
    }

    /// [`MediaFs::read`], answered through `reply` (exactly once) as soon as the bytes are
    /// there. On a cold cache the caller's thread then stays to download the rest of the media,
    /// which the next reads (on other threads) get as it arrives.
    pub fn read_with(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
        reply: impl FnOnce(Result<Bytes, FsError>) + Send + 'static,
    ) {
        let h = match self.handles.get(fh) {
            Ok(h) => h,
            Err(e) => return reply(Err(e)),
        };
        if h.buf.is_none() && h.first_read() {
            let fetcher: Weak<dyn FetchAhead> = self.me.clone();
            self.read_ahead
                .note_read(h.ino, &self.ns, &self.content, &fetcher);
        }
        let (me, reader) = (self.me.clone(), h.clone());
        let reply = move |r: Result<Bytes, FsError>| {
            reply(r.map_err(|e| match me.upgrade() {
                Some(fs) => reader.read_error(e, || fs.path_of(reader.ino)),
                None => e,
            }))
        };
        self.read_handle(&h, offset, size, reply, true)
    }

    /// [`MediaFs::read_with`] on handle `h`; `anew` allows one more try after a fetch ahead
    /// the handle joined failed (a reader meets its own error, not the fetch's).
    fn read_handle(
        &self,
        h: &Handle,
        offset: u64,
        size: u32,
        reply: impl FnOnce(Result<Bytes, FsError>) + Send + 'static,
        anew: bool,
    ) {
        match self.read_buffer(h, offset, size) {
            Ok(Some(b)) => return reply(Ok(b)),
            Ok(None) => {}
            Err(e) => return reply(Err(e)),
        }
        let current = match h.current_body() {
            Ok(b) => b,
            Err(e) => return reply(Err(e)),
        };
        match current {
            HandleBody::Failed(e, _) | HandleBody::Lost(e) => reply(Err(e)),
            HandleBody::Expect(print) => match self.expected_body(h, print) {
                Ok(body) => {
                    self.mark_served(h);
                    reply(Ok(content::slice(&body, offset, size)))
                }
                Err(e) => reply(Err(e)),
            },
            HandleBody::Ready(body) => {
                self.mark_served(h);
                reply(Ok(content::slice(&body, offset, size)))
            }
            HandleBody::Flight(f) => {
                if let Some(Ok(m)) = f.result() {
                    *h.body.lock() = HandleBody::Ready(m.body.clone());
                    self.mark_served(h);
                    return reply(Ok(content::slice(&m.body, offset, size)));
                }
                self.read_flight(h, &f, offset, size, reply, anew)
            }
            HandleBody::None => {
                let (path, version) = match self.path_version(h.ino) {
                    Ok(pv) => pv,
                    Err(e) => return reply(Err(e)),
                };
                match self.content.begin(&path, |v| v == version) {
                    Fetch::Cached(m) => {
                        *h.body.lock() = HandleBody::Ready(m.body.clone());
                        self.mark_served(h);
                        reply(Ok(content::slice(&m.body, offset, size)))
                    }
                    Fetch::Joined(f) => {
                        *h.body.lock() = HandleBody::Flight(f.clone());
                        self.read_flight(h, &f, offset, size, reply, anew)
                    }
                    Fetch::Lead(leader) => {
                        *h.body.lock() = HandleBody::Flight(leader.flight().clone());
                        let early = Early {
                            offset,
                            size,
                            reply: Box::new(reply),
                        };
                        match self.lead_download(&path, leader, Some(early), DOWNLOAD) {
                            Ok(m) => *h.body.lock() = HandleBody::Ready(m.body),
                            Err(_) => h.drop_failed_flight(),
                        }
                    }
                }
            }
        }
    }

    /// Read from a download the handle joined; after a fetch ahead that failed, fetch anew.
    fn read_flight(
        &self,
        h: &Handle,
        f: &Flight,
        offset: u64,
        size: u32,
        reply: impl FnOnce(Result<Bytes, FsError>) + Send + 'static,
        anew: bool,
    ) {
        let r = f.read(offset, size);
        match (&r, f.result()) {
            // The download had ended: the bytes came from the whole body, which the kernel
            // now caches as this handle's version.
            (Ok(_), Some(Ok(m))) => {
                *h.body.lock() = HandleBody::Ready(m.body);
                self.mark_served(h);
            }
            (Ok(_), _) => {}
            (Err(_), _) if anew && f.forgotten() => {
                *h.body.lock() = HandleBody::None;
                return self.read_handle(h, offset, size, reply, false);
            }
            (Err(_), _) => h.drop_failed_flight(),
        }
        reply(r)
    }

    /// Bytes from the write buffer of the handle's inode, when it has a loaded one (or one whose
    /// bytes are staged on disk, loaded from there).
    pub(super) fn read_buffer(
        &self,
        h: &Handle,
        offset: u64,
        size: u32,
    ) -> Result<Option<Bytes>, FsError> {
        let Some(buf) = h.buf.clone().or_else(|| self.buffer_of(h.ino)) else {
            return Ok(None);
        };
        let copy = |st: &mut WriteState| Bytes::copy_from_slice(st.read(offset, size));
        if h.buf.is_none() {
            // Someone else's buffer: read it when it holds the file (or keeps it staged on
            // disk), else the media itself.
            let mut st = buf.state.lock();
            if st.journal_source().is_none() {
                return Ok(st.loaded.then(|| copy(&mut st)));
            }
        }
        buf.loaded(|| self.file_bytes(h.ino), copy).map(Some)
    }

    /// A new handle of `ino` (see [`Handle::new`]) in the table; its number.
    pub(super) fn add_handle(
        &self,
        ino: Ino,
        flags: i32,
        buf: Option<Arc<WriteBuf>>,
        pid: u32,
        body: HandleBody,
    ) -> u64 {
        self.ns.lock().open_ref(ino);
        let opener = buf.as_ref().and_then(|_| process::process_of(pid));
        self.handles.add(Handle::new(ino, flags, buf, opener, body))
    }

    /// The first read of `h` from a whole body: the kernel's page cache now holds this version
    /// (for FOPEN_KEEP_CACHE next time).
    fn mark_served(&self, h: &Handle) {
        if h.first_serve() {
            self.ns.lock().kernel_caches_current(h.ino);
        }
    }

    /// The media at `path` is gone (from the server, or removed here): the data cache forgets
    /// it, and each open handle of it that has no body yet keeps the cached one first, when it
    /// is of the version that handle reads.
    pub(super) fn forget_body(&self, path: &str) {
        if let Some((media, version)) = self.content.peek(path) {
            let open = self.handles.all();
            let readers: Vec<Arc<Handle>> = {
                let ns = self.ns.lock();
                open.into_iter()
                    .filter(|h| {
                        ns.node(h.ino)
                            .is_some_and(|n| n.path() == path && n.content_version() == version)
                    })
                    .collect()
            };
            for h in readers {
                h.keep_body(&media);
            }
        }
        self.content.remove(path);
    }
}
