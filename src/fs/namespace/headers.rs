//! The headers of a node: what the server holds with the bytes (`stored`, when a GET or our
//! PUT told it), and what the xattrs set for the next upload (the overrides).
//!
//! The hard case: a change is sent at once, and a failed PUT undoes it, so a change hands back
//! what the node said before ([`HeadersBefore`]); a removal also forgets what the server holds
//! of that header, which the next upload replaces with what is implied.

use super::{Ino, Namespace, StoredHeaders};
use crate::fs::error::FsError;

/// A header the xattrs set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    ContentType,
    CacheControl,
}

/// What a node said of its headers before a change, to undo it.
pub(crate) struct HeadersBefore {
    content_type: Option<String>,
    cache_control: Option<String>,
    stored: Option<Box<StoredHeaders>>,
}

impl HeadersBefore {
    /// The headers the server held before the change, when known.
    pub(crate) fn stored(&self) -> Option<&StoredHeaders> {
        self.stored.as_deref()
    }
}

impl Namespace {
    /// Set `header` of `ino` to `value`, or (None) return it to what nothing set implies.
    pub(crate) fn set_header(
        &mut self,
        ino: Ino,
        header: Header,
        value: Option<String>,
    ) -> Result<HeadersBefore, FsError> {
        let n = self.node_mut(ino).ok_or(FsError::NotFound)?;
        let before = HeadersBefore {
            content_type: n.content_type_override.clone(),
            cache_control: n.cache_control_override.clone(),
            stored: n.stored.clone(),
        };
        let removed = value.is_none();
        let (slot, stored) = match header {
            Header::ContentType => (
                &mut n.content_type_override,
                n.stored.as_mut().map(|s| &mut s.content_type),
            ),
            Header::CacheControl => (
                &mut n.cache_control_override,
                n.stored.as_mut().map(|s| &mut s.cache_control),
            ),
        };
        *slot = value;
        if let (true, Some(stored)) = (removed, stored) {
            // The next upload replaces what the server holds with what is implied.
            *stored = None;
        }
        Ok(before)
    }

    /// The server holds the headers the change asked for already: what it holds stays known.
    pub(crate) fn headers_held(&mut self, ino: Ino, before: HeadersBefore) {
        if let Some(n) = self.node_mut(ino) {
            n.stored = before.stored;
        }
    }

    /// The change could not be sent: the node says what it said before.
    pub(crate) fn undo_header(&mut self, ino: Ino, before: HeadersBefore) {
        if let Some(n) = self.node_mut(ino) {
            n.content_type_override = before.content_type;
            n.cache_control_override = before.cache_control;
            n.stored = before.stored;
        }
    }
}
