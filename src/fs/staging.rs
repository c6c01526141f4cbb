//! Write-back in the core: a close stages the file's bytes in the journal and returns; the
//! uploader sends them (see [`super::writeback`]).
//!
//! The hard cases:
//! - A staged file keeps its write buffer after its last close, until the server holds the
//!   staged version: reads, `ls` and `stat` see the bytes at once, a listing walk keeps the
//!   name (the buffer pins it), and `fsync` uploads the buffer itself, as in the default mode.
//! - One journal version per buffer: staging a newer one forgets the older (the server needs
//!   only the newest, and the newest was acknowledged); an upload forgets the version it
//!   stored, and a removal forgets the file's version, so a crash never brings back a file
//!   that was removed or a version that was replaced.
//! - A close stages only while uploads succeed: when the journal is full or cannot be written,
//!   or the last background upload failed, the close uploads itself and returns the real result.
//! - A version the server refuses for good (400, 413, 415) goes to the recovery folder (one
//!   mechanism for kept bytes), and leaves the journal.

use std::collections::HashMap;

use bytes::Bytes;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::namespace::{Header, Ino, StoredHeaders};
use super::upload::staged_target;
use super::write::unload;
use super::write_buffer::{UploadCause, WriteBuf, WriteState};
use super::writeback::journal::{Entry, Journal, Op};
use super::writeback::uploader::{Outcome, Upload};
use super::writeback::DELETE_KEY;
use super::{FsError, MediaFs};

/// Where the upload of a renamed file under its new name stands (see [`MediaFs::new_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NewName {
    Stored,
    Pending,
    Refused,
}

impl MediaFs {
    /// In write-back mode, stage what a close of `ino` would upload. True when the close has
    /// nothing left to do (staged, or nothing to send); false when it must upload itself
    /// (uploads are failing, the journal cannot take it, or there is no write-back).
    pub(super) fn stage(&self, ino: Ino, buf: &Arc<WriteBuf>) -> bool {
        self.stage_if(ino, buf, true)
    }

    /// [`MediaFs::stage`]; `only_while_uploads_succeed` false stages even while uploads fail
    /// (a change already made, such as a rename, must be durable whatever the server does).
    fn stage_if(&self, ino: Ino, buf: &Arc<WriteBuf>, only_while_uploads_succeed: bool) -> bool {
        let Some(wb) = &self.writeback else {
            return false;
        };
        {
            let st = buf.state.lock();
            if !st.dirty || st.unlinked || st.staged_generation() == Some(st.generation) {
                return true; // nothing new to stage (and no need to read staged bytes back)
            }
        }
        if buf.state.lock().journal_source().is_some() {
            // A staged file renamed or truncated after its last close: its bytes wait on disk.
            if buf.loaded(|| self.file_bytes(ino), |_| ()).is_err() {
                return false;
            }
        }
        let (bytes, generation) = {
            let mut st = buf.state.lock();
            if !st.wants_upload(UploadCause::Sync) || st.staged_generation() == Some(st.generation)
            {
                return true;
            }
            if st.oversize.is_some() {
                return false; // the upload answers EFBIG
            }
            (st.data.freeze(), st.generation)
        };
        if only_while_uploads_succeed && wb.uploader.failing() {
            log::debug!(
                "{:?}: uploads are failing; this close uploads itself",
                self.path_of(ino)
            );
            return false;
        }
        let Some((target, headers)) = self
            .ns
            .lock()
            .live(ino)
            .map(|n| staged_target(n, n.path(), &bytes))
        else {
            return true;
        };
        let staged = wb.journal.stage(&target.path, &headers, &bytes);
        match staged {
            Ok(seq) => {
                wb.staged_one();
                let older = buf.state.lock().staged(generation, seq);
                if older.is_some_and(|o| o != seq) {
                    self.relink_deletes(ino, seq);
                }
                self.forget_versions(older.as_slice());
                wb.uploader.queue(ino, &self.uploads());
                true
            }
            Err(e) => {
                wb.stage_failed(&e);
                false
            }
        }
    }

    /// File `ino`'s version `seq` replaced the one it had staged: the deletions a rename made
    /// that wait for its upload are staged again naming `seq`, before the replaced version
    /// leaves the journal, so that after a crash they still wait for the file's upload (`mv a
    /// b; mv b c` never leaves the server without `a` before `c` is stored).
    fn relink_deletes(&self, ino: Ino, seq: u64) {
        let Some(wb) = &self.writeback else {
            return;
        };
        let staged_as = self.path_of(ino);
        for (name, old) in wb.deletes.waiting_on(ino) {
            if name == staged_as {
                // Back under its old name (`mv a b; mv b a`): the upload replaces the old media,
                // and ends the deletion when it stores; left older than the upload in the
                // journal, a replay keeps the upload.
                continue;
            }
            match wb.journal.stage_delete(&name, Some(seq)) {
                Ok(new) => {
                    let replaced = wb.deletes.add(&name, new, Some(ino));
                    self.forget_versions(replaced.as_slice());
                    wb.uploader.queue(DELETE_KEY | new, &self.uploads());
                }
                Err(e) => {
                    wb.stage_failed(&e);
                    log::warn!(
                        "the deletion of {name:?} (journal version {old}) still names the \
                         upload it waited for: after a crash it may go before {:?} is stored",
                        self.path_of(ino)
                    );
                }
            }
        }
    }

    /// Forget journal versions (the server holds them, or they were replaced or removed).
    pub(super) fn forget_versions(&self, seqs: &[u64]) {
        if let (Some(wb), false) = (&self.writeback, seqs.is_empty()) {
            if let Err(e) = wb.journal.forget(seqs) {
                log::warn!(
                    "cannot remove uploaded versions from the write-back journal in {}: {e}; \
                     the next mount sends them again",
                    wb.journal.dir().display()
                );
            }
        }
    }

    /// The file system as the uploader's threads hold it.
    fn uploads(&self) -> Weak<dyn Upload> {
        self.me.clone()
    }

    /// Before the process ends: stage what open files hold dirty, then wait up to
    /// `--drain-timeout` for the uploads. What is left stays in the journal, said in one line.
    /// Errors: dirty files that could be neither staged nor uploaded.
    pub(super) fn drain(&self) -> Result<(), FsError> {
        let Some(wb) = &self.writeback else {
            return Ok(());
        };
        let mut first = Ok(());
        for (ino, buf) in self.write_buffers() {
            if !self.stage(ino, &buf) {
                if let Err(e) = self.upload(ino, &buf, UploadCause::Sync) {
                    first = first.and(Err(e));
                }
            }
        }
        let pending = wb.uploader.pending();
        let note = |text: &str| {
            log::info!("{text}");
            if let Some(progress) = self.progress.get() {
                progress(text);
            }
        };
        if pending > 0 {
            note(&format!(
                "uploading {pending} staged changes ({} bytes) before stopping, for up to {}",
                wb.journal.held(),
                humantime::format_duration(wb.drain_timeout)
            ));
        }
        let deadline = Instant::now() + wb.drain_timeout;
        let mut left = pending;
        while left > 0 && Instant::now() < deadline {
            let step = (Instant::now() + std::time::Duration::from_secs(1)).min(deadline);
            let now_left = wb.uploader.drain(step);
            if now_left != left && now_left > 0 {
                note(&format!(
                    "uploading {now_left} staged changes before stopping"
                ));
            }
            left = now_left;
        }
        wb.uploader.stop();
        if left > 0 {
            log::warn!(
                "{left} staged files are not uploaded yet: they stay in the write-back journal \
                 {}, and the next mount of this account uploads them",
                wb.journal.dir().display()
            );
        } else if pending > 0 {
            log::info!("every staged file is uploaded");
        }
        first
    }
}

impl Upload for MediaFs {
    /// A background turn of file `key`: upload its buffer as a close would, and take it out of
    /// the table once the server holds it and no handle has it open; or send a staged deletion.
    fn upload_staged(&self, key: u64) -> Outcome {
        if key & DELETE_KEY != 0 {
            return self.delete_staged(key & !DELETE_KEY);
        }
        let ino = key;
        let Some(buf) = self.buffer_of(ino) else {
            return Outcome::Stored;
        };
        let outcome = match self.upload(ino, &buf, UploadCause::Background) {
            Ok(()) => {
                self.drop_clean_buffer(ino, &buf);
                if let Some(wb) = &self.writeback {
                    wb.failed.lock().remove(&self.path_of(ino));
                }
                Outcome::Stored
            }
            Err(e) if e.is_permanent() => {
                if let Some(wb) = &self.writeback {
                    wb.failed.lock().insert(self.path_of(ino), e.to_string());
                }
                // A rename's old name stays (its deletion ends first, so a crash now cannot
                // find the deletion without the upload it waited for).
                if let Some(wb) = &self.writeback {
                    for (name, deletion) in wb.deletes.waiting_on(ino) {
                        self.keep_old_name(&name, deletion);
                    }
                }
                // Kept in the recovery folder by the upload; no journal copy besides it.
                let seq = buf.state.lock().unstage();
                self.forget_versions(seq.as_slice());
                Outcome::Failed
            }
            Err(e) => match &self.writeback {
                // Its staged bytes were found damaged (and kept aside): nothing to try again.
                Some(wb) if self.staged_version_lost(&buf, &wb.journal) => {
                    log::error!("{:?} cannot be uploaded: {e}", self.path_of(ino));
                    self.drop_idle_buffer(ino, &buf);
                    Outcome::Failed
                }
                Some(wb) => {
                    wb.uploads_failing(&e);
                    Outcome::Again
                }
                None => Outcome::Again,
            },
        };
        // Not uploaded yet: the bytes wait on disk again.
        unload(&buf);
        outcome
    }
}

impl MediaFs {
    /// The file `ino` was removed (or replaced by a rename): its buffer never uploads, and its
    /// staged version leaves the journal.
    pub(super) fn buffer_unlinked(&self, ino: Ino) {
        if let Some(buf) = self.buffer_of(ino) {
            let open = buf.state.lock().handles > 0;
            if open && buf.state.lock().journal_source().is_some() {
                // Handles still open read on: their bytes leave the disk, not them.
                if let Err(e) = buf.loaded(|| self.file_bytes(ino), |_| ()) {
                    log::warn!(
                        "{:?}: its open handles cannot read it any more: {e}",
                        self.path_of(ino)
                    );
                }
            }
            let seq = {
                let mut st = buf.state.lock();
                st.unlinked = true;
                st.unstage()
            };
            self.forget_versions(seq.as_slice());
            self.drop_idle_buffer(ino, &buf);
        }
    }

    /// A staged file no handle has open was renamed before its upload: stage it under its new
    /// name (which forgets the version under the old one), so it costs one PUT and no DELETE.
    /// Without room in the journal it uploads now.
    pub(super) fn restage(&self, ino: Ino) {
        let (Some(_), Some(buf)) = (&self.writeback, self.buffer_of(ino)) else {
            return;
        };
        if buf.state.lock().handles > 0 {
            return; // its close stages it
        }
        if !self.stage_if(ino, &buf, false) {
            if let Err(e) = self.upload(ino, &buf, UploadCause::Sync) {
                log::warn!(
                    "{:?} could not be uploaded after its rename: {e}",
                    self.path_of(ino)
                );
            }
        }
    }

    /// Write-back: when the last handle of `ino` goes after a close that failed, the file goes
    /// back to the version an earlier close staged (as without write-back it goes back to what
    /// the server holds), and that version is what the background sends.
    pub(super) fn back_to_staged(&self, ino: Ino, buf: &Arc<WriteBuf>) {
        let Some(wb) = &self.writeback else {
            return;
        };
        let mut st = buf.state.lock();
        let Some(seq) = st.failed_after_staging() else {
            return;
        };
        let Some(len) = wb.journal.len_of(seq) else {
            return;
        };
        st.back_to_staged(seq, len);
        drop(st);
        log::info!(
            "{:?} shows again the version its last successful close staged; the bytes of the \
             close that failed stay in the recovery folder",
            self.path_of(ino)
        );
        wb.uploader.queue(ino, &self.uploads());
    }

    /// The changes an earlier mount left in the journal: each name's newest is shown at once
    /// (a version as a file with a staged write buffer, a deletion as the name gone) and sent
    /// in the background; the older ones are forgotten.
    pub(super) fn replay(&self, entries: Vec<Entry>) {
        let Some(wb) = &self.writeback else {
            return;
        };
        let mut newest: HashMap<String, Entry> = HashMap::new();
        let mut older = Vec::new();
        for e in entries {
            // A rename's deletion of a name never wins over a version of that name, even a
            // staged one older than it: the upload replaces the old media (and, live, ends that
            // deletion when it stores).
            let renamed_away = e.change.op == Op::Delete && e.change.after.is_some();
            let put_kept = newest
                .get(&e.change.name)
                .is_some_and(|kept| kept.change.op == Op::Put);
            if renamed_away && put_kept {
                older.push(e.seq);
                continue;
            }
            if let Some(old) = newest.insert(e.change.name.clone(), e) {
                older.push(old.seq);
            }
        }
        self.forget_versions(&older);
        let mut left: Vec<Entry> = newest.into_values().collect();
        left.sort_by_key(|e| e.seq);
        let mut shown = 0;
        // The file each version replayed became: a rename's deletion waits for its upload.
        let mut replayed: HashMap<u64, Ino> = HashMap::new();
        for e in &left {
            if e.change.op == Op::Delete {
                let after = e.change.after.and_then(|put| replayed.get(&put).copied());
                wb.deletes.add(&e.change.name, e.seq, after);
                self.ns.lock().delete_pending(&e.change.name);
                wb.uploader.queue(DELETE_KEY | e.seq, &self.uploads());
                shown += 1;
                continue;
            }
            let name = &e.change.name;
            let ino = self
                .ns
                .lock()
                .remote_file(name, e.change.len, None, Instant::now());
            let Some(ino) = ino else {
                log::error!(
                    "{name:?} from the write-back journal cannot be shown as a path; it stays in \
                     {}",
                    wb.journal.dir().display()
                );
                continue;
            };
            self.restore_headers(ino, e);
            let buf = Arc::new(WriteBuf::from_state(WriteState::from_journal(
                e.seq,
                e.change.len,
            )));
            self.writes.lock().insert(ino, buf);
            wb.uploader.queue(ino, &self.uploads());
            replayed.insert(e.seq, ino);
            shown += 1;
        }
        if shown > 0 {
            log::info!(
                "{shown} changes an earlier mount left in the write-back journal are sent in the \
                 background"
            );
        }
    }

    /// Before a directory rename (write-back): what is staged under `dir` is uploaded first,
    /// so that the rename moves what the server holds. Fails with the first upload that fails.
    pub(super) fn send_staged_under(&self, dir: Ino) -> Result<(), FsError> {
        if self.writeback.is_none() {
            return Ok(());
        }
        self.upload_under(
            dir,
            |st| st.staged_generation().is_some(),
            "before a directory rename",
        )
    }

    /// With write-back, the rename of a file the server holds is journaled instead of sent:
    /// its bytes are staged under the new name (a download first when no buffer holds them)
    /// and the deletion of the old name is staged to follow once the new name is stored, so a
    /// crash leaves both names, never neither; both go in the background. True when done (the
    /// file is renamed here); false when the caller must move it now (no write-back, uploads
    /// failing, or the journal cannot take it).
    pub(super) fn rename_later(
        &self,
        src: Ino,
        to: (Option<Ino>, Ino, &str),
        old_path: &str,
        new_path: &str,
    ) -> Result<bool, FsError> {
        let Some(wb) = &self.writeback else {
            return Ok(false);
        };
        if wb.uploader.failing() {
            return Ok(false);
        }
        let buf = match self.buffer_of(src) {
            Some(buf) => buf,
            None => {
                let (bytes, _) = self.bytes_of(src)?;
                let fresh = WriteBuf::from_state(WriteState::holding(bytes));
                let mut writes = self.writes.lock();
                writes.entry(src).or_insert_with(|| Arc::new(fresh)).clone()
            }
        };
        // The bytes staged are exactly the generation they are marked as (a write after them
        // makes a newer one, which its close stages).
        let (bytes, generation) = buf.loaded(
            || self.file_bytes(src),
            |st| {
                st.mark_for_upload();
                (st.data.freeze(), st.generation)
            },
        )?;
        let (target, headers) = {
            let ns = self.ns.lock();
            let n = ns.live(src).ok_or(FsError::NotFound)?;
            staged_target(n, new_path, &bytes)
        };
        let staged = wb
            .journal
            .stage(&target.path, &headers, &bytes)
            .and_then(|put| match wb.journal.stage_delete(old_path, Some(put)) {
                Ok(delete) => Ok((put, delete)),
                Err(e) => {
                    self.forget_versions(&[put]);
                    Err(e)
                }
            });
        let (put, delete) = match staged {
            Ok(seqs) => seqs,
            Err(e) => {
                wb.stage_failed(&e);
                self.drop_idle_buffer(src, &buf);
                return Ok(false);
            }
        };
        wb.staged_one();
        let (dst, newparent, newname) = to;
        let replaces = dst.is_some_and(|d| self.ns.lock().live(d).is_some_and(|n| n.remote()));
        self.finish_rename(src, dst, newparent, newname, old_path, None);
        self.ns.lock().renamed_not_uploaded(
            src,
            StoredHeaders {
                content_type: Some(target.content_type.clone()),
                cache_control: target.cache_control.clone(),
            },
        );
        if replaces {
            // The media it replaces is on the server until the upload: a `rm` before it must
            // delete that media.
            self.ns.lock().on_server_already(src);
        }
        let older = buf.state.lock().staged(generation, put);
        if older.is_some_and(|o| o != put) {
            self.relink_deletes(src, put);
        }
        self.forget_versions(older.as_slice());
        let older = wb.deletes.add(old_path, delete, Some(src));
        self.forget_versions(older.as_slice());
        self.ns.lock().delete_pending(old_path);
        wb.uploader.queue(src, &self.uploads());
        wb.uploader.queue(DELETE_KEY | delete, &self.uploads());
        unload(&buf);
        Ok(true)
    }

    /// With write-back, stage the deletion of the media at `path` instead of sending it: true
    /// when staged (the caller removes the name at once), false when the caller must delete
    /// it now (no write-back, uploads failing, or the journal cannot take it).
    pub(super) fn delete_later(&self, path: &str) -> bool {
        let Some(wb) = &self.writeback else {
            return false;
        };
        if wb.uploader.failing() {
            return false;
        }
        match wb.journal.stage_delete(path, None) {
            Ok(seq) => {
                wb.staged_one();
                let older = wb.deletes.add(path, seq, None);
                self.forget_versions(older.as_slice());
                self.ns.lock().delete_pending(path);
                wb.uploader.queue(DELETE_KEY | seq, &self.uploads());
                true
            }
            Err(e) => {
                wb.stage_failed(&e);
                false
            }
        }
    }

    /// The uploader's turn of staged deletion `seq`.
    fn delete_staged(&self, seq: u64) -> Outcome {
        let Some(wb) = &self.writeback else {
            return Outcome::Stored;
        };
        // A rename's old name goes only once the new one is stored: it is uploaded now if
        // staged, before the deletion is taken (an upload of that very name holds the
        // deletion, and would wait for it forever if this turn had taken it: `mv a b; mv b a`).
        if let Some(ino) = wb.deletes.after(seq) {
            self.upload_staged(ino);
            match self.new_name(ino) {
                NewName::Stored => {}
                NewName::Pending => return Outcome::Again,
                NewName::Refused => {
                    if let Some(name) = wb.deletes.name_of(seq) {
                        self.keep_old_name(&name, seq);
                    }
                    return Outcome::Failed;
                }
            }
        }
        let Some(name) = wb.deletes.take(seq) else {
            // Done by a new upload of the name, held by one under way, or replaced.
            return Outcome::Skipped;
        };
        match self.send_delete(&name, seq) {
            Ok(()) => {
                wb.uploads_recovered();
                Outcome::Stored
            }
            Err(e) if e.is_permanent() => Outcome::Failed,
            Err(e) => {
                wb.deletes.give_back(&name, seq);
                wb.uploads_failing(&e);
                Outcome::Again
            }
        }
    }

    /// Where the upload of renamed file `ino` under its new name stands.
    fn new_name(&self, ino: Ino) -> NewName {
        match self.ns.lock().live(ino) {
            // Removed since: nothing waits for it.
            None => return NewName::Stored,
            Some(n) if n.remote() => return NewName::Stored,
            Some(_) => {}
        }
        let staged = self
            .buffer_of(ino)
            .is_some_and(|b| b.state.lock().staged_generation().is_some());
        match staged {
            true => NewName::Pending,
            // Neither stored nor staged: the server refused it for good.
            false => NewName::Refused,
        }
    }

    /// The upload under the new name of a rename was refused for good (its bytes are in the
    /// recovery folder): the old name stays, shown again as the server has it.
    fn keep_old_name(&self, name: &str, seq: u64) {
        let Some(wb) = &self.writeback else {
            return;
        };
        log::error!(
            "{name:?} stays: the server refused its copy under the new name, so the rename is \
             undone there"
        );
        self.forget_versions(&[seq]);
        wb.deletes.finish(name, seq);
        let mut ns = self.ns.lock();
        ns.delete_done(name);
        ns.local_change_path(name);
    }

    /// Send staged deletion `seq` of `name` (taken by this thread). Done, or refused for good
    /// (said in the log): it leaves the journal and the name is shown again as the server has
    /// it. A failure that may pass is returned, and the deletion stays.
    fn send_delete(&self, name: &str, seq: u64) -> Result<(), FsError> {
        let Some(wb) = &self.writeback else {
            return Ok(());
        };
        let result = self
            .api
            .delete(name)
            .map_err(|e| self.api_error("delete", name, e));
        match &result {
            Err(e) if !e.is_permanent() => return result,
            Err(e) => log::error!("the server refused to delete {name:?} ({e}): it stays"),
            Ok(()) => {}
        }
        // Out of the journal before it leaves the table: a sync that waits for it then finds
        // it wholly done.
        self.forget_versions(&[seq]);
        wb.deletes.finish(name, seq);
        let mut ns = self.ns.lock();
        ns.delete_done(name);
        // A listing page fetched before the deletion must not bring the name back.
        ns.local_change_path(name);
        drop(ns);
        result
    }

    /// Before `name` is stored: a staged deletion of it is held while the upload runs (one
    /// being sent is waited for, so it cannot land after); its sequence number.
    pub(super) fn hold_delete(&self, name: &str) -> Option<u64> {
        self.writeback.as_ref()?.deletes.hold(name)
    }

    /// The upload of `name` that held staged deletion `seq` ended: stored, the new media
    /// replaced the old and the deletion is over; else the old media must still go, and the
    /// deletion waits for its turn again.
    pub(super) fn release_delete(&self, name: &str, seq: u64, stored: bool) {
        let Some(wb) = &self.writeback else {
            return;
        };
        if stored {
            self.forget_versions(&[seq]);
            wb.deletes.finish(name, seq);
            self.ns.lock().delete_done(name);
        } else {
            wb.deletes.give_back(name, seq);
            wb.uploader.queue(DELETE_KEY | seq, &self.uploads());
        }
    }

    /// `sync DIR` with write-back: send now the staged deletions under `prefix` (the
    /// directory's path and a `/`, or empty for the root), waiting for those being sent.
    pub(super) fn send_deletes_under(&self, prefix: &str) -> Result<(), FsError> {
        let Some(wb) = &self.writeback else {
            return Ok(());
        };
        let mut first = Ok(());
        for (name, seq) in wb.deletes.under(prefix) {
            // A rename's old name goes only once the new one is stored: uploaded now if staged,
            // before the deletion is taken (see `delete_staged`).
            if let Some(ino) = wb.deletes.after(seq) {
                let uploaded = self.upload_if_staged(ino);
                let new_name = self.new_name(ino);
                if new_name != NewName::Stored {
                    let e = uploaded.err().unwrap_or_else(|| {
                        FsError::Io(format!("the new name of {name:?} is not stored"))
                    });
                    if new_name == NewName::Refused {
                        self.keep_old_name(&name, seq);
                    }
                    log::error!("sync: {name:?} is not deleted: {e}");
                    first = first.and(Err(e));
                    continue;
                }
            }
            if !wb.deletes.take_or_wait(&name, seq) {
                continue; // sent meanwhile, or ended by an upload of the name
            }
            if let Err(e) = self.send_delete(&name, seq) {
                wb.deletes.give_back(&name, seq);
                log::error!("sync: {name:?} is not deleted: {e}");
                first = first.and(Err(e));
            }
        }
        first
    }

    /// The bytes of `ino` when its write buffer keeps them staged on disk, read back from the
    /// journal.
    pub(super) fn staged_bytes(&self, ino: Ino) -> Option<Result<Bytes, FsError>> {
        let wb = self.writeback.as_ref()?;
        let seq = self.buffer_of(ino)?.state.lock().journal_source()?;
        Some(wb.journal.body(seq).map_err(|e| {
            FsError::Io(format!(
                "the staged bytes of {:?} cannot be read from the write-back journal: {e}",
                self.path_of(ino)
            ))
        }))
    }

    /// Where a file's bytes are, with write-back: `failed` (refused for good, in the recovery
    /// folder), `pending` (staged, or written and not uploaded) or `stored`.
    pub(super) fn upload_state(&self, ino: Ino) -> &'static str {
        let Some(buf) = self.buffer_of(ino) else {
            return "stored";
        };
        let st = buf.state.lock();
        match (st.dirty, st.saved_generation()) {
            (false, _) => "stored",
            (true, Some(g)) if g == st.generation => "failed",
            (true, _) => "pending",
        }
    }

    /// With write-back, upload `ino` now if a close staged it (what `fsync` does), so that its
    /// URL works when this returns.
    pub(super) fn upload_if_staged(&self, ino: Ino) -> Result<(), FsError> {
        let Some(buf) = self.buffer_of(ino) else {
            return Ok(());
        };
        if buf.state.lock().staged_generation().is_none() {
            return Ok(());
        }
        self.upload(ino, &buf, UploadCause::Sync)?;
        self.drop_clean_buffer(ino, &buf);
        Ok(())
    }

    /// What `bwmediafs status` shows, as JSON: the changes pending (files and deletions), the
    /// bytes staged, how old the oldest is, whether uploads are failing, what the server
    /// refused for good, and in every mode the mount's counters (`crate::api::Counters`).
    pub(super) fn status(&self) -> String {
        let mut value = match &self.writeback {
            None => serde_json::json!({ "writeback": false, "pending": 0, "failed": [] }),
            Some(wb) => {
                let failed: Vec<serde_json::Value> = wb
                    .failed
                    .lock()
                    .iter()
                    .map(|(name, error)| serde_json::json!({ "name": name, "error": error }))
                    .collect();
                serde_json::json!({
                    "writeback": true,
                    "pending": wb.uploader.pending(),
                    "pending_bytes": wb.journal.held(),
                    "oldest_pending_seconds": wb.journal.oldest_age().map(|a| a.as_secs()),
                    "failing": wb.uploader.failing(),
                    "failed": failed,
                    "journal": wb.journal.dir(),
                })
            }
        };
        value["counters"] = serde_json::json!(self.counters.snapshot());
        value.to_string()
    }

    /// Whether the buffer's bytes were to come from a journal version the journal no longer
    /// holds (found damaged and kept aside): then it is unstaged.
    fn staged_version_lost(&self, buf: &WriteBuf, journal: &Journal) -> bool {
        let mut st = buf.state.lock();
        match st.journal_source() {
            Some(seq) if !journal.holds(seq) => {
                // Its bytes are kept aside as damaged: reads go to what the server holds.
                st.lost_on_disk();
                true
            }
            _ => false,
        }
    }

    /// The headers a replayed version was staged with: those set on the file become its own
    /// again (as they were); the others are what the server held or the bytes implied, and are
    /// kept as the server's, so that a later rename to another extension changes the type as it
    /// would have without the crash.
    fn restore_headers(&self, ino: Ino, e: &Entry) {
        let c = &e.change;
        let mut ns = self.ns.lock();
        let mut held = StoredHeaders::default();
        if c.content_type_set {
            let _ = ns.set_header(ino, Header::ContentType, Some(c.content_type.clone()));
        } else if c.content_type != crate::api::content_type_for(&c.name) {
            held.content_type = Some(c.content_type.clone());
        }
        match &c.cache_control {
            Some(cc) if c.cache_control_set => {
                let _ = ns.set_header(ino, Header::CacheControl, Some(cc.clone()));
            }
            cc => held.cache_control = cc.clone(),
        }
        if held.content_type.is_some() || held.cache_control.is_some() {
            ns.held_headers(ino, held);
        }
    }
}
