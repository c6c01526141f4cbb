//! Renames of files and directories: the API has no rename, so each media is copied (a PUT under
//! the new name) and the old name deleted.
//!
//! The hard cases:
//! - A rename of a closed file checks bytes older than the TTL first, like an open, so a copy
//!   never carries bytes replaced elsewhere.
//! - If the delete fails after the copy, both names remain (nothing is lost) and the error is
//!   returned.
//! - A file never uploaded has nothing to copy: its buffer uploads under the new name.
//! - A file written while its copy was made stays dirty (the copy holds older bytes).
//! - A directory rename moves each media under it this way (`rename_dir`).
//! - With write-back, a file's rename is journaled instead (`MediaFs::rename_later`): the copy
//!   and the delete go in the background, the delete only once the copy is stored.

use std::ffi::OsStr;
use std::time::Instant;

use bytes::Bytes;

use super::error::FsError;
use super::namespace::{Ino, Kind, StoredHeaders};
use super::recovery::remove_recovery;
use super::types::{RENAME_EXCHANGE, RENAME_NOREPLACE};
use super::upload::upload_target;
use super::MediaFs;
use crate::api::Media;

/// How a move of one media (a copy under the new name, then a delete of the old) ended.
pub(super) enum Moved {
    /// The new name holds the media and the old one is gone: what the server now holds.
    Done(Media),
    /// The copy was made but the old name could not be deleted: both names exist.
    CopiedNotDeleted { copy: Media, error: FsError },
    /// The media was gone from the server (deleted elsewhere, or expired): nothing to move.
    Gone,
    /// Nothing changed on the server.
    Failed(FsError),
}

impl MediaFs {
    /// The bytes to copy for a rename, and the write buffer generation they are (None: not from a
    /// write buffer).
    pub(super) fn bytes_of(&self, ino: Ino) -> Result<(Bytes, Option<u64>), FsError> {
        if let Some(buf) = self.buffer_of(ino) {
            return buf.loaded(
                || self.file_bytes(ino),
                |st| (st.data.freeze(), Some(st.generation)),
            );
        }
        self.revalidate_body(ino)?;
        let (path, version) = {
            let ns = self.ns.lock();
            let n = ns.node(ino).ok_or(FsError::NotFound)?;
            (n.path().to_string(), n.content_version())
        };
        Ok((self.download(&path, |v| v == version)?.body, None))
    }

    /// Copy one file to `new_path` on the server, then delete the old name.
    pub(super) fn move_media(&self, ino: Ino, new_path: &str) -> Moved {
        match self.copy_then_delete(ino, new_path) {
            Ok(media) => Moved::Done(media),
            Err((error, Some(copy))) => Moved::CopiedNotDeleted { copy, error },
            Err((error, None)) if error.is_not_found() => Moved::Gone,
            Err((error, None)) => Moved::Failed(error),
        }
    }

    #[allow(clippy::result_large_err)]
    fn copy_then_delete(
        &self,
        ino: Ino,
        new_path: &str,
    ) -> Result<Media, (FsError, Option<Media>)> {
        let (bytes, generation) = self.bytes_of(ino).map_err(|e| (e, None))?;
        let (old_path, target) = {
            let ns = self.ns.lock();
            let n = ns.node(ino).ok_or((FsError::NotFound, None))?;
            (n.path().to_string(), upload_target(n, new_path, &bytes))
        };
        let media = self.put_media(target, bytes).map_err(|e| {
            // Nothing is lost (the old name stays), so there is no recovery note to say it.
            log::warn!("{e}");
            (e, None)
        })?;
        // The copy holds the buffer's bytes: it is clean unless written since.
        if let (Some(buf), Some(generation)) = (self.buffer_of(ino), generation) {
            if let Some(file) = self.mark_uploaded(&buf, generation) {
                remove_recovery(&file);
            }
        }
        if let Err(e) = self.api.delete(&old_path) {
            return Err((self.api_error("delete", &old_path, e), Some(media)));
        }
        Ok(media)
    }

    /// A file never uploaded was renamed: its buffer uploads under the new name.
    pub(super) fn upload_under_new_name(&self, ino: Ino) {
        if let Some(buf) = self.buffer_of(ino) {
            buf.state.lock().mark_for_upload();
        }
    }

    /// Rename a file or directory (copy + delete of each media: the API has no rename).
    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<(), FsError> {
        self.check_ro()?;
        if flags & RENAME_EXCHANGE != 0 || flags & !RENAME_NOREPLACE != 0 {
            return Err(FsError::Invalid("unsupported rename flags".into()));
        }
        let new_s = self.component(newname)?;
        // A rename changes the server in both directories (see `moves`).
        let _changing = self.fence.change_under(&self.ns, &[parent, newparent]);
        let src = self.child_or_lookup(parent, name)?;
        let dst = match self.child_or_lookup(newparent, newname) {
            Ok(i) => Some(i),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if dst == Some(src) {
            return Ok(());
        }
        if dst.is_some() && flags & RENAME_NOREPLACE != 0 {
            return Err(FsError::Exists);
        }
        let (src_kind, dst_kind) = {
            let ns = self.ns.lock();
            ns.live_dir(newparent)?;
            let sk = ns.live(src).ok_or(FsError::NotFound)?.kind();
            let dk = dst.and_then(|d| ns.live(d)).map(|n| n.kind());
            if sk == Kind::Dir && ns.is_within(newparent, src) {
                return Err(FsError::Invalid(
                    "cannot move a directory into itself".into(),
                ));
            }
            (sk, dk)
        };
        if let (Kind::Dir, Some(d), Some(Kind::Dir)) = (src_kind, dst, dst_kind) {
            // Only a fresh complete listing can say whether the target is empty: media may have
            // come or gone elsewhere (free when the listing is fresh; rename_dir needs it too).
            self.ensure_complete()?;
            if self
                .ns
                .lock()
                .live(d)
                .is_some_and(|n| !n.children().is_empty())
            {
                return Err(FsError::NotEmpty);
            }
        }
        match (src_kind, dst_kind) {
            (Kind::File, Some(Kind::Dir)) => Err(FsError::IsDir),
            (Kind::Dir, Some(Kind::File)) => Err(FsError::NotDir),
            (Kind::File, _) => self.rename_file(src, newparent, new_s, dst),
            (Kind::Dir, _) => self.rename_dir(src, newparent, new_s, dst),
        }
    }

    pub(super) fn rename_file(
        &self,
        src: Ino,
        newparent: Ino,
        newname: &str,
        dst: Option<Ino>,
    ) -> Result<(), FsError> {
        // An upload under way (a background one, with write-back) ends first, so the rename
        // sees whether it stored the file.
        let buf = self.buffer_of(src);
        let uploading = buf.as_ref().map(|b| b.upload.lock());
        let (old_path, new_path, remote, replaces) = {
            let ns = self.ns.lock();
            let n = ns.live(src).ok_or(FsError::NotFound)?;
            // A file replaced keeps its media name (it may be shown under a derived one).
            let replaced = dst.and_then(|d| ns.live(d));
            let new_path = match replaced {
                Some(d) => d.path().to_string(),
                None => ns.join(newparent, newname).ok_or(FsError::NotFound)?,
            };
            let replaces = replaced.is_some_and(|d| d.remote());
            (n.path().to_string(), new_path, n.remote(), replaces)
        };
        let newname = new_path.rsplit('/').next().unwrap_or(newname);
        if let Some(d) = dst {
            self.preload_readers(d);
        }
        if !remote {
            // Never uploaded: nothing to copy. A file a journaled rename left with the headers
            // it decided gets those the new name decides (a new extension's type), as a copy
            // would.
            let head = self.buffer_head(src);
            let decided = {
                let ns = self.ns.lock();
                ns.live(src)
                    .filter(|n| n.stored().is_some())
                    .map(|n| upload_target(n, &new_path, &head))
            };
            self.upload_under_new_name(src);
            self.finish_rename(src, dst, newparent, newname, &old_path, None);
            if let Some(target) = decided {
                self.ns.lock().renamed_not_uploaded(
                    src,
                    StoredHeaders {
                        content_type: Some(target.content_type),
                        cache_control: target.cache_control,
                    },
                );
            }
            if replaces {
                // The media it replaces is on the server until the upload: a `rm` before it
                // must delete that media.
                self.ns.lock().on_server_already(src);
            }
            drop(uploading);
            self.restage(src);
            return Ok(());
        }
        // With write-back: staged under the new name, and sent in the background.
        if self.rename_later(src, (dst, newparent, newname), &old_path, &new_path)? {
            if replaces {
                self.reuse_hints.replaced(&new_path);
            }
            return Ok(());
        }
        match self.move_media(src, &new_path) {
            Moved::Done(media) => {
                self.finish_rename(src, dst, newparent, newname, &old_path, Some(&media));
                if replaces {
                    self.reuse_hints.replaced(&new_path);
                }
                Ok(())
            }
            Moved::CopiedNotDeleted { copy, error } => {
                // The copy exists, the old name too: show both.
                self.record_copy(&new_path, &copy);
                Err(error)
            }
            // Deleted elsewhere (its name is dropped): there is nothing to rename.
            Moved::Gone => Err(FsError::NotFound),
            Moved::Failed(error) => Err(error),
        }
    }

    /// A copy of a media was made at `path` but its source stays.
    pub(super) fn record_copy(&self, path: &str, media: &Media) {
        let version = {
            let mut ns = self.ns.lock();
            let ino = ns.remote_file(path, media.body.len() as u64, None, Instant::now());
            ino.map(|i| ns.uploaded(i, media))
        };
        if let Some(v) = version {
            self.content.insert(path, media.clone(), v);
        }
    }

    /// Move `src` into place in the namespace after the server side is done.
    pub(super) fn finish_rename(
        &self,
        src: Ino,
        dst: Option<Ino>,
        newparent: Ino,
        newname: &str,
        old_path: &str,
        media: Option<&Media>,
    ) {
        if let Some(d) = dst {
            self.buffer_unlinked(d);
        }
        let (new_path, version) = {
            let mut ns = self.ns.lock();
            let old_parent = ns.node(src).map(|n| n.parent());
            if let Some(d) = dst {
                ns.detach(d);
            }
            ns.move_node(src, newparent, newname);
            ns.local_change(src);
            ns.local_change_path(old_path);
            if let Some(p) = old_parent {
                ns.keep_emptied(p);
            }
            let version = media.map(|m| ns.uploaded(src, m));
            (
                ns.node(src)
                    .map(|n| n.path().to_string())
                    .unwrap_or_default(),
                version,
            )
        };
        self.content.remove(old_path);
        if let (Some(m), Some(v)) = (media, version) {
            self.content.insert(&new_path, m.clone(), v);
        }
    }
}
