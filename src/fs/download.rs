//! Downloads: a media is downloaded once (single-flight) into the data cache and served from
//! memory, and what a GET brings tells the namespace the size, the headers and whether the
//! bytes changed.
//!
//! The hard cases:
//! - A download that ends short or changes is an error, never short data; a GET that gets 404
//!   removes the name.
//! - A reader that joined a fetch ahead that failed downloads once more on its own: it meets
//!   its own error, not the fetch's.
//! - Bytes handed out while the body came in are in the kernel's page cache: the namespace
//!   learns which version they were (none, if the download failed).

use std::time::Instant;

use super::content::{Early, Fetch, FlightSink, Leader};
use super::error::FsError;
use super::error::{DOWNLOAD, READ_AHEAD};
use super::readahead::{FetchAhead, Job};
use super::MediaFs;
use crate::api::{ApiError, Media};

impl MediaFs {
    /// The body of `path`, from the data cache when `accept` takes the cached version, else by
    /// one GET (shared with concurrent callers). The namespace learns the size and headers.
    pub(super) fn download(
        &self,
        path: &str,
        accept: impl Fn(u64) -> bool,
    ) -> Result<Media, FsError> {
        self.download_once_more(path, &accept, true)
    }

    /// [`MediaFs::download`]; `anew` allows one more try after joining a fetch ahead that
    /// failed (a reader meets its own error, not the fetch's).
    pub(super) fn download_once_more(
        &self,
        path: &str,
        accept: &impl Fn(u64) -> bool,
        anew: bool,
    ) -> Result<Media, FsError> {
        match self.content.begin(path, accept) {
            Fetch::Cached(m) => Ok(m),
            Fetch::Joined(f) => match f.wait() {
                Err(_) if anew && f.forgotten() => self.download_once_more(path, accept, false),
                r => r,
            },
            Fetch::Lead(leader) => self.lead_download(path, leader, None, DOWNLOAD),
        }
    }

    /// Download `path` as the one leader of its flight; `early` is a reader answered as soon as
    /// its bytes are in (or with the outcome, if that comes first). `op` names the download in
    /// errors and decides how loudly they are logged (a fetch ahead fails quietly).
    pub(super) fn lead_download(
        &self,
        path: &str,
        leader: Leader<'_>,
        early: Option<Early>,
        op: &'static str,
    ) -> Result<Media, FsError> {
        let flight = leader.flight().clone();
        let mut sink = FlightSink::new(&flight, early);
        let result = self
            .api
            .get_into(path, &mut sink)
            .map_err(|e| self.api_error(op, path, e))
            .and_then(|headers| {
                let body = sink.finish().inspect_err(|e| match op {
                    DOWNLOAD => log::warn!("download of {path:?}: {e}"),
                    _ => log::debug!("{op} of {path:?}: {e}"),
                })?;
                self.record_download(path, Media { body, ..headers })
            });
        if let Err(FsError::Api {
            source: ApiError::NotFound,
            ..
        }) = &result
        {
            self.drop_missing_file(path);
        }
        let version = result.as_ref().ok().map(|(_, v)| *v);
        let result = leader.finish(result);
        // Asked once the flight has ended: a reader that took bytes before the end has marked
        // it served by then, and one that reads after the end takes the whole body, marking
        // its handle (`read_flight`).
        if flight.served() {
            // Bytes were handed out while the body came in: the kernel caches them; of a
            // download that failed, what it caches belongs to no version.
            let mut ns = self.ns.lock();
            if let Some(ino) = ns.resolve_file(path) {
                ns.kernel_caches(ino, version.unwrap_or(0));
            }
        }
        sink.answer_early(&result);
        result
    }

    /// A GET brought `m` for `path`: the namespace learns its size and headers. Returns the
    /// media and the content version to cache it under.
    pub(super) fn record_download(&self, path: &str, m: Media) -> Result<(Media, u64), FsError> {
        let len = m.body.len() as u64;
        let old = self.content.peek(path);
        // Writes not uploaded yet are newer than what the server holds, and so is their time.
        let written = {
            let ino = self.ns.lock().resolve_file(path);
            ino.and_then(|i| self.buffer_of(i))
                .is_some_and(|b| b.state.lock().dirty)
        };
        let mut ns = self.ns.lock();
        let ino = ns.remote_file(path, len, None, Instant::now());
        let print = self.content.fingerprint(path);
        let version = match ino {
            Some(ino) => ns.body_seen(ino, &m, written, |n| match (&old, print) {
                (Some((om, _)), _) => om.body != m.body,
                (None, Some(f)) if f.version == n.content_version() => !f.matches(&m.body),
                (None, _) => n.kernel_version() != 0,
            })?,
            None => 0,
        };
        drop(ns);
        Ok((m, version))
    }
}

impl FetchAhead for MediaFs {
    /// Fetch one file ahead, unless it changed, gained a write buffer, or is cached or coming.
    fn fetch_ahead(&self, job: &Job) {
        if self.buffer_of(job.ino).is_some() {
            return;
        }
        let unchanged = self
            .ns
            .lock()
            .live(job.ino)
            .is_some_and(|n| n.path() == job.path && n.content_version() == job.version);
        if !unchanged {
            return;
        }
        if let Some(leader) = self.content.begin_ahead(&job.path, |v| v == job.version) {
            // A failure is forgotten: whoever reads the file next fetches it on its own.
            let _ = self.lead_download(&job.path, leader, None, READ_AHEAD);
        }
    }
}
