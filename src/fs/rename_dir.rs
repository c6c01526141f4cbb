//! Directory renames: every media under the directory is moved (a copy under the new name and
//! a delete of the old, see `rename`), several at once.
//!
//! The hard cases:
//! - A directory rename needs every media under it, so it first makes sure the listing is
//!   complete and fresh; ENOTEMPTY for its target is answered only from such a listing.
//! - A directory's media are moved [`MOVES_AT_ONCE`] at a time; after a failure no new move
//!   starts, and what did move is moved back (so `mv`, seeing no target, reports the error
//!   rather than moving the directory into a half-made one). The kernel holds the two parent
//!   directories locked for the whole rename (a listing of them waits); changes of the server
//!   inside the directory wait for it, and it for them (`rename_fence`); nothing else waits.
//! - A media found gone from the server meanwhile has nothing to move and is passed over.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::error::FsError;
use super::namespace::Ino;
use super::rename::Moved;
use super::upload::upload_target;
use super::MediaFs;
use crate::api::Media;
/// How many media of a directory rename are moved at once: the copies are round trips, so a
/// directory of 100 media at 50 ms takes about 2 s instead of 15 (8 is what `cp -r` reads with).
const MOVES_AT_ONCE: usize = 8;

/// A media of a directory rename that moved: its inode, its old path, and what the server now
/// holds under the new one.
type MovedMedia = (Ino, String, Holds);

/// What the server holds of a media a directory rename moved.
enum Holds {
    /// The copy under the new name.
    Copy(Media),
    /// Nothing: the file was never uploaded, its buffer uploads under the new name.
    NotUploaded,
    /// Nothing: the media was found gone from the server, there was nothing to move.
    Gone,
}

/// What the moves of a directory rename did.
#[derive(Default)]
struct MovesDone {
    /// The media that moved (or were found gone: nothing to move).
    moved: Vec<MovedMedia>,
    /// Copies made whose old name could not be deleted: the new path and what it holds.
    copies: Vec<(String, Media)>,
    /// The first failure.
    error: Option<FsError>,
}

impl MediaFs {
    /// Rename a directory: every media under it is moved (a copy and a delete each). When one
    /// fails, what did move is shown under the new name and the rest stays where it was.
    pub(super) fn rename_dir(
        &self,
        src: Ino,
        newparent: Ino,
        newname: &str,
        dst: Option<Ino>,
    ) -> Result<(), FsError> {
        // Every media under the directory must be known to move them all, and (with
        // write-back) on the server.
        self.ensure_complete()?;
        self.send_staged_under(src)?;
        let _moving = self.fence.begin_move(&self.ns, src);
        let (src_path, new_dir, files) = {
            let ns = self.ns.lock();
            let n = ns.live(src).ok_or(FsError::NotFound)?;
            let new_dir = ns.join(newparent, newname).ok_or(FsError::NotFound)?;
            let files: Vec<(Ino, String, bool)> = ns
                .files_under(src)
                .into_iter()
                .filter_map(|i| ns.node(i).map(|f| (i, f.path().to_string(), f.remote())))
                .collect();
            (n.path().to_string(), new_dir, files)
        };
        let new_path_of = |old: &str| match old.strip_prefix(src_path.as_str()) {
            Some(rest) => format!("{new_dir}{rest}"),
            None => old.to_string(),
        };
        let mut moved: Vec<MovedMedia> = Vec::new();
        let mut copies: Vec<(Ino, &str)> = Vec::new();
        for (ino, path, remote) in &files {
            if *remote {
                copies.push((*ino, path));
            } else {
                self.upload_under_new_name(*ino);
                moved.push((*ino, path.clone(), Holds::NotUploaded));
            }
        }
        let mut done = self.move_all(&copies, &new_path_of);
        if let Some(error) = done.error.take() {
            let stays = self.move_back(done, &new_path_of);
            self.show_moved_files(&stays, new_path_of);
            return Err(error);
        }
        moved.extend(done.moved);
        self.finish_dir_rename(src, dst, newparent, newname, &files, &moved);
        for (ino, _, remote) in &files {
            if !remote {
                self.restage(*ino);
            }
        }
        Ok(())
    }

    /// Move each media of `copies` to its new path, [`MOVES_AT_ONCE`] at a time. After the first
    /// failure no new move starts; the ones under way finish. A media found gone (deleted
    /// elsewhere) has nothing to move and is passed over.
    fn move_all(
        &self,
        copies: &[(Ino, &str)],
        new_path_of: &(dyn Fn(&str) -> String + Sync),
    ) -> MovesDone {
        let outcomes = at_once(copies, AfterAFailure::StartNoMore, |&(ino, path)| {
            let new_path = new_path_of(path);
            match self.move_media(ino, &new_path) {
                Moved::Done(media) => Ok((ino, path.to_string(), Holds::Copy(media))),
                Moved::Gone => {
                    log::info!("{path:?} is gone from the server: there is nothing to move");
                    Ok((ino, path.to_string(), Holds::Gone))
                }
                Moved::CopiedNotDeleted { copy, error } => {
                    Err((error, Some(Box::new((new_path, copy)))))
                }
                Moved::Failed(error) => Err((error, None)),
            }
        });
        let mut done = MovesDone::default();
        for outcome in outcomes {
            match outcome {
                Ok(m) => done.moved.push(m),
                Err((error, copy)) => {
                    done.copies.extend(copy.map(|c| *c));
                    done.error.get_or_insert(error);
                }
            }
        }
        done
    }

    /// A directory rename failed part way: put the media that did move back under their old
    /// names (a PUT of the bytes just copied, a delete of the copy), and delete the copies whose
    /// old name could not be deleted, so that the directory is where it was, as after any
    /// failed rename, rather than half here and half there (and `mv`, seeing the target exist,
    /// moving the rest into it). Returns the media that could not go back; they are shown
    /// under the new name, as is a copy that cannot be deleted (beside its media).
    fn move_back(
        &self,
        done: MovesDone,
        new_path_of: &(dyn Fn(&str) -> String + Sync),
    ) -> Vec<MovedMedia> {
        let MovesDone { moved, copies, .. } = done;
        let outcomes = at_once(
            &moved,
            AfterAFailure::GoOn,
            |(ino, old, media)| -> Result<(), FsError> {
                let Holds::Copy(media) = media else {
                    return Ok(());
                };
                let new_path = new_path_of(old);
                let target = {
                    let ns = self.ns.lock();
                    let n = ns.node(*ino).ok_or(FsError::NotFound)?;
                    upload_target(n, old, &media.body)
                };
                self.put_media(target, media.body.clone())?;
                if let Err(e) = self.api.delete(&new_path) {
                    log::warn!("{}", self.api_error("delete", &new_path, e));
                    self.record_copy(&new_path, media);
                }
                Ok(())
            },
        );
        at_once(&copies, AfterAFailure::GoOn, |(new_path, copy)| {
            if let Err(e) = self.api.delete(new_path) {
                log::warn!("{}", self.api_error("delete", new_path, e));
                self.record_copy(new_path, copy);
            }
            Ok::<(), FsError>(())
        });
        let back = outcomes.iter().filter(|o| o.is_ok()).count();
        let stays: Vec<MovedMedia> = moved
            .into_iter()
            .zip(outcomes)
            .filter_map(|(m, o)| o.is_err().then_some(m))
            .collect();
        log::warn!(
            "a directory rename failed part way: {back} media moved back to the old name, {} \
             left under the new one",
            stays.len()
        );
        stays
    }

    /// Every media under `src` moved: move the directory itself in the namespace.
    fn finish_dir_rename(
        &self,
        src: Ino,
        dst: Option<Ino>,
        newparent: Ino,
        newname: &str,
        files: &[(Ino, String, bool)],
        moved: &[MovedMedia],
    ) {
        let mut inserts = Vec::new();
        {
            let mut ns = self.ns.lock();
            if let Some(d) = dst {
                ns.detach(d);
            }
            let old_parent = ns.node(src).map(|n| n.parent());
            ns.move_node(src, newparent, newname);
            ns.local_change(src);
            for (ino, old, media) in moved {
                ns.local_change_path(old);
                match media {
                    Holds::Copy(m) => {
                        let v = ns.uploaded(*ino, m);
                        let p = ns
                            .node(*ino)
                            .map(|n| n.path().to_string())
                            .unwrap_or_default();
                        inserts.push((p, m.clone(), v));
                    }
                    // Found gone from the server: it is not shown under the new name.
                    Holds::Gone => {
                        let parent = ns.node(*ino).map(|n| n.parent());
                        ns.detach(*ino);
                        if let Some(p) = parent {
                            ns.keep_emptied(p);
                        }
                    }
                    Holds::NotUploaded => {}
                }
            }
            if let Some(p) = old_parent {
                ns.keep_emptied(p);
            }
        }
        for (_, old, _) in files {
            self.content.remove(old);
        }
        for (p, m, v) in inserts {
            self.content.insert(&p, m, v);
        }
    }

    /// A directory rename stopped half way: show each media that did move under its new name,
    /// one at a time; the rest stays where it was.
    fn show_moved_files(&self, moved: &[MovedMedia], new_path_of: impl Fn(&str) -> String) {
        for (ino, old, media) in moved {
            let Holds::Copy(m) = media else { continue };
            let new_path = new_path_of(old);
            let (parent_path, base) = new_path.rsplit_once('/').unwrap_or(("", &new_path));
            let mut ns = self.ns.lock();
            let dir = ns.ensure_dirs(parent_path);
            let old_parent = ns.node(*ino).map(|n| n.parent());
            if let Some(existing) = ns.file_in(dir, base) {
                ns.detach(existing);
            }
            ns.move_node(*ino, dir, base);
            ns.local_change_path(old);
            let v = ns.uploaded(*ino, m);
            if let Some(p) = old_parent {
                ns.keep_emptied(p);
            }
            drop(ns);
            self.content.remove(old);
            self.content.insert(&new_path, m.clone(), v);
        }
    }
}

/// What [`at_once`] does after an item fails.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterAFailure {
    /// No item starts after it (the ones under way finish): a rename stops at its first error.
    StartNoMore,
    /// Every item is worked on: a move back does all it can.
    GoOn,
}

/// `work` on each of `items`, [`MOVES_AT_ONCE`] at a time, on short-lived threads with the
/// calling thread one of them (so the work goes on if no thread can start); the outcome of each
/// item it started, in the order of `items`.
fn at_once<T: Sync, R: Send, E: Send>(
    items: &[T],
    after_a_failure: AfterAFailure,
    work: impl Fn(&T) -> Result<R, E> + Sync,
) -> Vec<Result<R, E>> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let outcomes: Mutex<Vec<(usize, Result<R, E>)>> = Mutex::new(Vec::new());
    let worker = || {
        while !stop.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            let outcome = work(item);
            if outcome.is_err() && after_a_failure == AfterAFailure::StartNoMore {
                stop.store(true, Ordering::Relaxed);
            }
            outcomes.lock().push((i, outcome));
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..MOVES_AT_ONCE.min(items.len()) {
            let spawned = std::thread::Builder::new()
                .name("bwmediafs-mv".into())
                .spawn_scoped(scope, worker);
            if spawned.is_err() {
                break;
            }
        }
        worker();
    });
    let mut outcomes = outcomes.into_inner();
    outcomes.sort_by_key(|(i, _)| *i);
    outcomes.into_iter().map(|(_, o)| o).collect()
}
