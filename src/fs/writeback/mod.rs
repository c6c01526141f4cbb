//! Write-back (`--writeback`): a close returns once the new bytes are durable on this machine's
//! disk, and the upload runs in the background.
//!
//! Two types of their own, each tested alone: the [`journal::Journal`] keeps every version a
//! close acknowledged until the server holds it (and gives it back after a crash), and the
//! [`uploader::Uploader`] sends files in the background, in parallel, each in order, again
//! after transient failures. The core drives them through [`Writeback`] (`fs/staging.rs`).

pub mod journal;
pub mod uploader;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    /// Whether a failed staging was said in the log (once, until one works again).
    stage_warned: AtomicBool,
    /// Whether the end of the process drained the uploads already.
    drained: AtomicBool,
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
            stage_warned: AtomicBool::new(false),
            drained: AtomicBool::new(false),
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

    /// True the first time: the end of the process drains once.
    pub(crate) fn first_drain(&self) -> bool {
        !self.drained.swap(true, Ordering::Relaxed)
    }
}
