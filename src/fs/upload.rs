//! Uploads: one PUT of a buffer's current bytes, the one rule for its headers, and what the
//! server then holds.
//!
//! The hard cases:
//! - Only a successful PUT of the current generation makes a buffer clean; a failure leaves it
//!   dirty and keeps its bytes in the recovery folder until an upload succeeds.
//! - The headers come from one rule (`upload_target`) for an upload, a rename's copy and the
//!   xattrs that show them.
//! - Uploads of one media go one at a time (the upload lock), so an older upload never lands
//!   after a newer one.
//! - An upload that replaces a media the server held says once that a reused name may send the
//!   wrong media (`reuse`).

use bytes::Bytes;

use super::error::FsError;
use super::error::UPLOAD;
use super::namespace::{Ino, Node};
use super::recovery::{remove_recovery, saved_copy};
use std::path::PathBuf;

use super::write_buffer::Superseded;
use super::write_buffer::{UploadCause, WriteBuf};
use super::MediaFs;
use crate::api::mime::SNIFF_LEN;
use crate::api::{content_type_for, content_type_of_bytes, Media, UNKNOWN_CONTENT_TYPE};

/// Where and how a file's bytes are uploaded.
#[derive(Debug, Clone)]
pub(crate) struct UploadTarget {
    pub path: String,
    pub content_type: String,
    pub cache_control: Option<String>,
}

/// [`upload_target`], with the headers the write-back journal stages for it: the same values,
/// and whether `n` set each itself (a replay makes only those the file's own).
pub(crate) fn staged_target(
    n: &Node,
    path: &str,
    head: &[u8],
) -> (UploadTarget, crate::fs::writeback::journal::Headers) {
    let target = upload_target(n, path, head);
    let headers = crate::fs::writeback::journal::Headers {
        content_type: target.content_type.clone(),
        cache_control: target.cache_control.clone(),
        content_type_set: n.content_type_override().is_some(),
        cache_control_set: n.cache_control_override().is_some(),
    };
    (target, headers)
}

/// The one rule for the headers of `n` uploaded under `path` (its own name, or the new one of a
/// rename), which the xattrs also show: the value set through the xattr; else, for the content
/// type, the one a new name implies (renaming to a known extension changes the type); else the
/// one the server holds for the media (when known); else the one the name implies; else the one
/// the bytes imply (`head`: the first bytes of what is uploaded). So a rewrite keeps the headers
/// the media was stored with, and `getfattr` shows what an upload sends.
pub(crate) fn upload_target(n: &Node, path: &str, head: &[u8]) -> UploadTarget {
    let stored = n.stored();
    let named = content_type_for(path);
    let renamed_to_known_type = path != n.path() && named != UNKNOWN_CONTENT_TYPE;
    UploadTarget {
        path: path.to_string(),
        content_type: n
            .content_type_override()
            .map(str::to_string)
            .or_else(|| renamed_to_known_type.then(|| named.clone()))
            // A type the server holds that is not a media type (stored by a laxer server, or
            // another client) is not sent again: a careful server refuses it.
            .or_else(|| {
                stored
                    .and_then(|h| h.content_type.clone())
                    .filter(|t| crate::api::check_media_type(t).is_ok())
            })
            .unwrap_or_else(|| implied_type(named, head)),
        cache_control: n
            .cache_control_override()
            .map(str::to_string)
            .or_else(|| stored.and_then(|h| h.cache_control.clone())),
    }
}

/// The type a media implies when nothing set one: the one its name implies (`named`), else the
/// one its first bytes imply, else [`UNKNOWN_CONTENT_TYPE`].
fn implied_type(named: String, head: &[u8]) -> String {
    if named != UNKNOWN_CONTENT_TYPE {
        return named;
    }
    content_type_of_bytes(head).map_or(named, str::to_string)
}

impl MediaFs {
    /// The first bytes of the write buffer of `ino` when it holds the file (what its next
    /// upload sends, for the type they imply); none otherwise.
    pub(super) fn buffer_head(&self, ino: Ino) -> Vec<u8> {
        let Some(buf) = self.buffer_of(ino) else {
            return Vec::new();
        };
        let st = buf.state.lock();
        if !st.loaded {
            return Vec::new();
        }
        let data = st.data.as_slice();
        data[..data.len().min(SNIFF_LEN)].to_vec()
    }

    /// Upload the buffer if `cause` asks for it (see [`super::buffer`]): one PUT of its current bytes,
    /// which alone makes it clean. A failure leaves it dirty, keeps its bytes in the recovery
    /// directory until an upload succeeds, and is returned (to `close`).
    pub(super) fn upload(
        &self,
        ino: Ino,
        buf: &WriteBuf,
        cause: UploadCause,
    ) -> Result<(), FsError> {
        {
            let st = buf.state.lock();
            if !st.wants_upload(cause) && st.journal_source().is_none() {
                return Ok(());
            }
        }
        // Under a directory being renamed, the upload waits and goes to the new name; a rename
        // starting meanwhile waits for it (`rename_fence`).
        let _changing = self.fence.change_under(&self.ns, &[ino]);
        let _one_at_a_time = buf.upload.lock();
        if buf.state.lock().journal_source().is_some() {
            // Staged bytes wait on disk (see `WriteState::unload`, done under this lock): read
            // them back first.
            buf.loaded(|| self.file_bytes(ino), |_| ())?;
        }
        let (bytes, generation) = {
            let mut st = buf.state.lock();
            if !st.wants_upload(cause) {
                return Ok(());
            }
            if let Some(size) = st.oversize {
                // The program already got EFBIG for the write that crossed the limit; what it
                // wrote before is a truncated file, which must not replace the media.
                return Err(FsError::TooLarge {
                    size,
                    limit: self.opts.max_size,
                });
            }
            (st.data.freeze(), st.generation)
        };
        let target = self
            .ns
            .lock()
            .live(ino)
            .map(|n| (upload_target(n, n.path(), &bytes), n.remote()));
        let Some((target, replaces)) = target else {
            return Ok(());
        };
        let path = target.path.clone();
        match self.put_media(target, bytes.clone()) {
            Ok(media) => {
                // The namespace and the data cache learn the new version before the buffer is
                // clean: a buffer that goes once clean would otherwise leave, for a moment, the
                // old version for a reader to open.
                let version = self.ns.lock().uploaded(ino, &media);
                self.content.insert(&path, media, version);
                // The copy this buffer saved, else one an earlier buffer saved of these bytes.
                let superseded = self
                    .mark_uploaded(buf, generation)
                    .or_else(|| saved_copy(&self.opts.recovery_dir, &path, &bytes));
                if let Some(file) = superseded {
                    remove_recovery(&file);
                    log::info!(
                        "{path:?} is uploaded after all; its copy {} is removed",
                        file.display()
                    );
                }
                if replaces {
                    self.reuse_hints.replaced(&path);
                }
                Ok(())
            }
            Err(e) => {
                let mut st = buf.state.lock();
                // In the background, a failure that may pass keeps the bytes in the journal.
                let keep = cause != UploadCause::Background || e.is_permanent();
                if keep && st.saved_generation() != Some(generation) && !st.unlinked {
                    let file = self.recover(&path, &bytes, &e);
                    st.saved = file.map(|f| (generation, f));
                }
                Err(e)
            }
        }
    }

    /// One PUT of `bytes` as `target` says; what the server then holds.
    pub(super) fn put_media(&self, target: UploadTarget, bytes: Bytes) -> Result<Media, FsError> {
        let UploadTarget {
            path,
            content_type,
            cache_control,
        } = target;
        // A staged deletion of this name must not land after this upload.
        let held = self.hold_delete(&path);
        let put = self
            .api
            .put(
                &path,
                bytes.clone(),
                &content_type,
                cache_control.as_deref(),
            )
            .map_err(|e| self.api_error(UPLOAD, &path, e));
        if let Some(seq) = held {
            self.release_delete(&path, seq, put.is_ok());
        }
        put?;
        if let Some(wb) = &self.writeback {
            wb.uploads_recovered();
        }
        Ok(Media {
            body: bytes,
            content_type: Some(content_type),
            cache_control,
            last_modified: None,
        })
    }

    /// The server holds `generation` of `buf`: it is clean unless written since, and the
    /// journal version it makes useless is forgotten. The recovery copy of exactly those bytes,
    /// to remove.
    pub(super) fn mark_uploaded(&self, buf: &WriteBuf, generation: u64) -> Option<PathBuf> {
        let Superseded { recovery, version } = buf.state.lock().uploaded(generation);
        self.forget_versions(version.as_slice());
        recovery
    }
}
