//! Write-back (`--writeback`): a close returns once the new bytes are durable on this machine's
//! disk, and the upload runs in the background.
//!
//! Two types of their own, each tested alone: the [`journal::Journal`] keeps every version a
//! close acknowledged until the server holds it (and gives it back after a crash), and the
//! [`uploader::Uploader`] sends files in the background, in parallel, each in order, again
//! after transient failures. The core drives them through [`Writeback`] (`fs/staging.rs`).

pub mod journal;
pub mod uploader;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use journal::{Entry, Journal, JournalError, Opened, StageError};
use uploader::Uploader;

/// The settings of write-back.
#[derive(Debug, Clone)]
pub struct WritebackOptions {
    /// Where the journal is (one per account and server).
    pub journal_dir: PathBuf,
    /// The most bytes the journal holds; a close past it uploads itself.
    pub journal_limit: u64,
    /// How long the end of the process waits for pending uploads.
    pub drain_timeout: Duration,
}

/// The journal and the uploader of a write-back mount.
pub(crate) struct Writeback {
    pub(crate) journal: Journal,
    pub(crate) uploader: Uploader,
    pub(crate) drain_timeout: Duration,
    /// Deletions staged and not yet done on the server.
    pub(crate) deletes: Deletes,
    /// What the server refused for good, by name, with its answer (until the name is stored).
    pub(crate) failed: Mutex<HashMap<String, String>>,
    /// Whether a failed staging was said in the log (once, until one works again).
    stage_warned: AtomicBool,
    /// Whether the end of the process drained the uploads already.
    drained: AtomicBool,
    /// Whether the log said that background uploads are failing (until one goes through).
    failing_said: AtomicBool,
}

impl Writeback {
    /// Open the journal `opts` names: write-back, and the versions a mount before left
    /// (oldest first).
    pub(crate) fn open(opts: &WritebackOptions) -> Result<(Writeback, Vec<Entry>), JournalError> {
        let Opened {
            journal,
            entries,
            damaged,
        } = Journal::open(&opts.journal_dir, opts.journal_limit)?;
        if !damaged.is_empty() {
            log::error!(
                "{} damaged files of the write-back journal were kept aside in {}: they are not \
                 uploaded; look at them, then remove them",
                damaged.len(),
                opts.journal_dir.join("damaged").display()
            );
        }
        let wb = Writeback {
            journal,
            uploader: Uploader::default(),
            drain_timeout: opts.drain_timeout,
            deletes: Deletes::default(),
            failed: Mutex::new(HashMap::new()),
            stage_warned: AtomicBool::new(false),
            drained: AtomicBool::new(false),
            failing_said: AtomicBool::new(false),
        };
        Ok((wb, entries))
    }

    /// A close could not stage its bytes: said once, until staging works again.
    pub(crate) fn stage_failed(&self, e: &StageError) {
        if !self.stage_warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "{e}: closes upload themselves, as without --writeback, until there is room"
            );
        }
    }

    /// Staging works (again).
    pub(crate) fn staged_one(&self) {
        if self.stage_warned.swap(false, Ordering::Relaxed) {
            log::info!("closes stage their bytes in the write-back journal again");
        }
    }

    /// A background upload or deletion failed (a failure that may pass): said once, until one
    /// goes through again.
    pub(crate) fn uploads_failing(&self, e: &crate::fs::FsError) {
        if !self.failing_said.swap(true, Ordering::Relaxed) {
            log::warn!(
                "background uploads are failing ({e}): they are tried again with a backoff, and \
                 closes upload themselves meanwhile"
            );
        }
    }

    /// An upload or deletion went through (in the background, or one a call made itself).
    pub(crate) fn uploads_recovered(&self) {
        self.uploader.went_through();
        if self.failing_said.swap(false, Ordering::Relaxed) {
            log::info!("uploads go through again: closes stage their bytes again");
        }
    }

    /// True the first time: the end of the process drains once.
    pub(crate) fn first_drain(&self) -> bool {
        !self.drained.swap(true, Ordering::Relaxed)
    }
}

/// The uploader's key of a staged deletion: its journal sequence number with the high bit set
/// (inode numbers never have it).
pub(crate) const DELETE_KEY: u64 = 1 << 63;

/// Deletions staged and not yet done on the server, by name: the one rule that keeps a
/// deletion and an upload of the same name in the order they were made.
#[derive(Default)]
pub(crate) struct Deletes {
    st: Mutex<PendingDeletes>,
    /// A deletion ended (done, cancelled, or given back after a failed try).
    changed: Condvar,
}

#[derive(Default)]
struct PendingDeletes {
    /// Name -> (journal sequence number, whether its DELETE is being sent).
    by_name: HashMap<String, (u64, bool)>,
    by_seq: HashMap<u64, String>,
    /// A rename's deletion -> the file whose upload under the new name goes first.
    after: HashMap<u64, u64>,
}

impl Deletes {
    /// Stage the deletion of `name` as journal version `seq`, to be sent once file `after` is
    /// uploaded when given (a rename's old name): an older one of the same name it replaces (to
    /// forget), if any.
    pub(crate) fn add(&self, name: &str, seq: u64, after: Option<u64>) -> Option<u64> {
        let mut st = self.st.lock();
        let old = st.by_name.insert(name.to_string(), (seq, false));
        st.by_seq.insert(seq, name.to_string());
        if let Some(ino) = after {
            st.after.insert(seq, ino);
        }
        let old = old.map(|(s, _)| s);
        if let Some(s) = old {
            st.by_seq.remove(&s);
            st.after.remove(&s);
        }
        old
    }

    /// The name deletion `seq` removes, while it is pending.
    pub(crate) fn name_of(&self, seq: u64) -> Option<String> {
        self.st.lock().by_seq.get(&seq).cloned()
    }

    /// The file whose upload deletion `seq` waits for, if any.
    pub(crate) fn after(&self, seq: u64) -> Option<u64> {
        self.st.lock().after.get(&seq).copied()
    }

    /// The deletions that wait for file `ino`'s upload: name and sequence number of each.
    pub(crate) fn waiting_on(&self, ino: u64) -> Vec<(String, u64)> {
        let st = self.st.lock();
        st.after
            .iter()
            .filter(|(_, i)| **i == ino)
            .filter_map(|(seq, _)| st.by_seq.get(seq).map(|name| (name.clone(), *seq)))
            .collect()
    }

    /// The turn of deletion `seq`: its name, now marked as being sent; none when it was
    /// cancelled or replaced meanwhile.
    pub(crate) fn take(&self, seq: u64) -> Option<String> {
        let mut st = self.st.lock();
        let name = st.by_seq.get(&seq)?.clone();
        match st.by_name.get_mut(&name) {
            Some((s, running)) if *s == seq && !*running => {
                *running = true;
                Some(name)
            }
            _ => None,
        }
    }

    /// Deletion `seq` of `name` is over (done, or given up): it leaves the table.
    pub(crate) fn finish(&self, name: &str, seq: u64) {
        let mut st = self.st.lock();
        if st.by_name.get(name).is_some_and(|(s, _)| *s == seq) {
            st.by_name.remove(name);
        }
        st.by_seq.remove(&seq);
        st.after.remove(&seq);
        self.changed.notify_all();
    }

    /// A try of deletion `seq` of `name` failed: it waits for its next turn.
    pub(crate) fn give_back(&self, name: &str, seq: u64) {
        let mut st = self.st.lock();
        if let Some((s, running)) = st.by_name.get_mut(name) {
            if *s == seq {
                *running = false;
            }
        }
        self.changed.notify_all();
    }

    /// Before `name` is stored again: a pending deletion of it is held (not sent) while the
    /// upload runs, and its sequence number returned; one being sent is waited for first. The
    /// upload then ends it ([`Deletes::finish`]: the new media replaces the old) or gives it
    /// back ([`Deletes::give_back`]: the old media must still go).
    pub(crate) fn hold(&self, name: &str) -> Option<u64> {
        let mut st = self.st.lock();
        loop {
            match st.by_name.get_mut(name) {
                None => return None,
                Some((_, true)) => self.changed.wait(&mut st),
                Some((seq, running)) => {
                    *running = true;
                    return Some(*seq);
                }
            }
        }
    }

    /// The names whose deletion is pending under `prefix` (every one, for an empty prefix), with
    /// their sequence numbers.
    pub(crate) fn under(&self, prefix: &str) -> Vec<(String, u64)> {
        let st = self.st.lock();
        st.by_name
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(n, (s, _))| (n.clone(), *s))
            .collect()
    }

    /// Wait until deletion `seq` of `name` is not being sent by another thread; then take it
    /// (true), or find it over (false).
    pub(crate) fn take_or_wait(&self, name: &str, seq: u64) -> bool {
        let mut st = self.st.lock();
        loop {
            match st.by_name.get_mut(name) {
                Some((s, running)) if *s == seq => {
                    if !*running {
                        *running = true;
                        return true;
                    }
                    self.changed.wait(&mut st);
                }
                _ => return false,
            }
        }
    }
}
