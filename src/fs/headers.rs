//! Header changes through the xattrs (`user.bandwidth.content_type`, `.cache_control`): they
//! reach the server at once.
//!
//! The API stores a media's `Content-Type` and `Cache-Control` only with its bytes, so a change
//! is one PUT of the current bytes with the new headers (plus one GET when the bytes are not
//! cached). The hard cases:
//! - A dirty write buffer uploads soon anyway (its close or fsync): its next upload carries the
//!   change, and nothing is sent now. A file never uploaded is the same.
//! - A failed PUT is the `setxattr`'s error and the change is undone, so `getfattr` keeps
//!   showing what the server holds.
//! - A change to what the server holds already costs nothing.
//! - A removal returns to what the name (or the bytes) imply: the value set is forgotten, and so
//!   is the one the server holds, which the next upload (now, or the dirty buffer's) replaces.
//! - The PUT holds the file's upload lock, so it never lands after a newer upload of its bytes.

use super::error::FsError;
pub(super) use super::namespace::Header;
use super::namespace::Ino;
use super::recovery::remove_recovery;
use super::upload::upload_target;
use super::MediaFs;

impl MediaFs {
    /// Set `header` of file `ino` to `value` (None: remove it), on the server at once: one PUT
    /// with the current bytes (see the module comment).
    pub(super) fn change_header(
        &self,
        ino: Ino,
        header: Header,
        value: Option<String>,
    ) -> Result<(), FsError> {
        let _changing = self.fence.change_under(&self.ns, &[ino]);
        let buf = self.buffer_of(ino);
        let one_at_a_time = buf.as_ref().map(|b| b.upload.lock());
        let pending = buf.as_ref().is_some_and(|b| {
            let st = b.state.lock();
            st.dirty || st.unlinked
        });
        {
            let mut ns = self.ns.lock();
            let n = ns.node(ino).ok_or(FsError::NotFound)?;
            if pending || !n.remote() || n.removed() {
                ns.set_header(ino, header, value)?;
                drop(ns);
                drop(one_at_a_time);
                // With write-back, a file staged and closed is staged again with the header,
                // so that a crash keeps the change too.
                if buf.is_some_and(|b| b.state.lock().staged_generation().is_some()) {
                    self.upload_under_new_name(ino);
                    self.restage(ino);
                }
                return Ok(());
            }
        }
        let (bytes, generation) = self.bytes_of(ino)?;
        let (target, before) = {
            let mut ns = self.ns.lock();
            let before = ns.set_header(ino, header, value)?;
            let n = ns.node(ino).ok_or(FsError::NotFound)?;
            let target = upload_target(n, n.path(), &bytes);
            let unchanged = before.stored().is_some_and(|h| {
                h.content_type.as_deref() == Some(target.content_type.as_str())
                    && h.cache_control == target.cache_control
            });
            if unchanged {
                // Nothing to send: the server holds these headers.
                ns.headers_held(ino, before);
                return Ok(());
            }
            (target, before)
        };
        let path = target.path.clone();
        match self.put_media(target, bytes) {
            Ok(media) => {
                // As after any upload: the new version is known before the buffer is clean.
                let version = self.ns.lock().uploaded(ino, &media);
                self.content.insert(&path, media, version);
                if let (Some(buf), Some(generation)) = (&buf, generation) {
                    if let Some(file) = self.mark_uploaded(buf, generation) {
                        remove_recovery(&file);
                    }
                }
                Ok(())
            }
            Err(e) => {
                log::warn!("the headers of {path:?} are unchanged: {e}");
                self.ns.lock().undo_header(ino, before);
                Err(e)
            }
        }
    }
}
