//! The uploader: sends staged files to the server in the background, up to [`PARALLEL`] at
//! a time, each as often as it takes.
//!
//! It knows files only by a key (the inode) and asks an [`Upload`] (the file system) to send
//! whatever that file's newest staged version is when its turn comes. So:
//! - changes to one file go in the order they were made: a file is sent by one thread at a
//!   time, and a file queued again while it is being sent is sent once more after;
//! - a newer version replaces a queued older one for free (the turn sends the newest);
//! - different files go in parallel, starting at once, in the order they were queued;
//! - a transient failure is tried again after a backoff that doubles from [`FIRST_BACKOFF`]
//!   to [`MAX_BACKOFF`], for as long as the mount lives (each try already made the retries of
//!   `--retry-time`); a failure for good is the file system's to keep, and leaves the queue.
//!
//! Whether "uploads of this mount are failing" (so that a close uploads itself instead of
//! staging) is the last outcome: a failure that may pass sets it, a success clears it, and a
//! refusal for good of one file leaves it as it was. A success outside the uploader (a close
//! that uploaded itself, an fsync, a `sync`) clears it too ([`Uploader::went_through`]):
//! otherwise, once every pending file was sent that way, nothing would ever clear it and
//! every close would upload itself for the rest of the mount.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// How many files are sent at once (the pooled connections of the client).
pub const PARALLEL: usize = 8;
/// The first wait after a failed try.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long an idle thread waits for work before it ends.
const IDLE: Duration = Duration::from_secs(5);

/// What a turn of a file came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server holds the file's newest staged version (or there was nothing to send).
    Stored,
    /// A failure that may pass: try again after a backoff.
    Again,
    /// A failure for good: the file system keeps the bytes; the file leaves the queue.
    Failed,
    /// Nothing to do this turn (another path took care of it): the file leaves the queue, and
    /// says nothing of whether uploads fail.
    Skipped,
}

/// What sends a file (the file system): the uploader's threads hold it weakly, so they end
/// with it.
pub trait Upload: Send + Sync {
    /// Send the newest staged version of file `key`.
    fn upload_staged(&self, key: u64) -> Outcome;
}

/// The queue of files to send, and its threads.
pub struct Uploader {
    inner: Arc<Inner>,
}

struct Inner {
    st: Mutex<State>,
    /// A file became ready, or the uploader stops.
    work: Condvar,
    /// A file left the queue (for `drain`).
    settled: Condvar,
}

#[derive(Default)]
struct State {
    /// Files to send now, in the order they were queued.
    ready: VecDeque<u64>,
    /// Files waiting out a backoff, and when they may go.
    delayed: HashMap<u64, Instant>,
    /// Files being sent.
    running: HashSet<u64>,
    /// How many tries of each file failed in a row.
    tries: HashMap<u64, u32>,
    /// Files queued again while being sent.
    again: HashSet<u64>,
    threads: usize,
    failing: bool,
    stopped: bool,
}

impl State {
    fn pending(&self) -> usize {
        self.ready.len() + self.delayed.len() + self.running.len()
    }

    #[cfg(test)]
    fn is_pending(&self, key: u64) -> bool {
        self.running.contains(&key) || self.delayed.contains_key(&key) || self.ready.contains(&key)
    }

    /// The next file whose turn it is, moving files whose backoff ended to the ready queue;
    /// else how long until one's does.
    fn next(&mut self, now: Instant) -> Result<u64, Option<Duration>> {
        let due: Vec<u64> = self
            .delayed
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            self.delayed.remove(&key);
            self.ready.push_back(key);
        }
        match self.ready.pop_front() {
            Some(key) => {
                self.running.insert(key);
                Ok(key)
            }
            None => Err(self
                .delayed
                .values()
                .map(|at| at.saturating_duration_since(now))
                .min()),
        }
    }
}

/// How long to wait after `tries` failed tries.
pub fn backoff(tries: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << tries.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

impl Default for Uploader {
    fn default() -> Uploader {
        Uploader {
            inner: Arc::new(Inner {
                st: Mutex::new(State::default()),
                work: Condvar::new(),
                settled: Condvar::new(),
            }),
        }
    }
}

impl Uploader {
    /// Queue file `key` to be sent by `sender` (once more, if it is being sent now).
    pub fn queue(&self, key: u64, sender: &Weak<dyn Upload>) {
        let spawn = {
            let mut st = self.inner.st.lock();
            if st.stopped {
                return;
            }
            if st.running.contains(&key) {
                st.again.insert(key);
                return;
            }
            if let Some(at) = st.delayed.get_mut(&key) {
                // A new version goes at once, not after the old one's backoff.
                *at = Instant::now();
            } else if !st.ready.contains(&key) {
                st.ready.push_back(key);
            }
            let wanted = st.ready.len() + st.delayed.len();
            let spawn = wanted.min(PARALLEL.saturating_sub(st.threads));
            st.threads += spawn;
            spawn
        };
        self.inner.work.notify_all();
        for _ in 0..spawn {
            let inner = self.inner.clone();
            let sender = sender.clone();
            let started = std::thread::Builder::new()
                .name("upload".into())
                .spawn(move || inner.run(&sender));
            if let Err(e) = started {
                log::warn!("no thread to upload in the background ({e})");
                self.inner.st.lock().threads -= 1;
            }
        }
    }

    /// How many files wait to be sent (or are being sent).
    pub fn pending(&self) -> usize {
        self.inner.st.lock().pending()
    }

    /// Whether file `key` waits to be sent (or is being sent).
    #[cfg(test)]
    pub fn is_pending(&self, key: u64) -> bool {
        self.inner.st.lock().is_pending(key)
    }

    /// Whether uploads are failing: the last turn of any file did not store it.
    pub fn failing(&self) -> bool {
        self.inner.st.lock().failing
    }

    /// An upload made outside the uploader went through: uploads are not failing.
    pub fn went_through(&self) {
        self.inner.st.lock().failing = false;
    }

    /// Wait until nothing is pending, or until `deadline`; how many files are left.
    pub fn drain(&self, deadline: Instant) -> usize {
        let mut st = self.inner.st.lock();
        while st.pending() > 0 {
            if self.inner.settled.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        st.pending()
    }

    /// Send nothing more: the threads end after the turn they are in.
    pub fn stop(&self) {
        self.inner.st.lock().stopped = true;
        self.inner.work.notify_all();
    }
}

impl Inner {
    /// A thread: takes turns until the sender is gone, the uploader stops, or nothing came for
    /// [`IDLE`].
    fn run(&self, sender: &Weak<dyn Upload>) {
        loop {
            let key = {
                let mut st = self.st.lock();
                loop {
                    if st.stopped {
                        st.threads -= 1;
                        return;
                    }
                    match st.next(Instant::now()) {
                        Ok(turn) => break turn,
                        Err(wait) => {
                            let idle = wait.is_none();
                            let timed_out = self
                                .work
                                .wait_for(&mut st, wait.unwrap_or(IDLE))
                                .timed_out();
                            if idle && timed_out && st.ready.is_empty() && st.delayed.is_empty() {
                                st.threads -= 1;
                                return;
                            }
                        }
                    }
                }
            };
            let outcome = match sender.upgrade() {
                Some(sender) => sender.upload_staged(key),
                None => {
                    let mut st = self.st.lock();
                    st.running.remove(&key);
                    st.threads -= 1;
                    self.settled.notify_all();
                    return;
                }
            };
            self.done(key, outcome);
        }
    }

    /// File `key`'s turn came to `outcome`.
    fn done(&self, key: u64, outcome: Outcome) {
        let mut st = self.st.lock();
        st.running.remove(&key);
        let again = st.again.remove(&key);
        // One file refused for good says nothing of the others.
        match outcome {
            Outcome::Again => st.failing = true,
            Outcome::Stored => st.failing = false,
            Outcome::Failed | Outcome::Skipped => {}
        }
        match outcome {
            Outcome::Again => {
                let tries = st.tries.entry(key).or_default();
                *tries += 1;
                let wait = backoff(*tries);
                // A version queued meanwhile goes at once.
                let at = Instant::now() + if again { Duration::ZERO } else { wait };
                st.delayed.insert(key, at);
            }
            Outcome::Stored | Outcome::Failed | Outcome::Skipped => {
                st.tries.remove(&key);
                if again {
                    st.ready.push_back(key);
                }
            }
        }
        drop(st);
        self.work.notify_all();
        self.settled.notify_all();
    }
}

#[cfg(test)]
mod tests;
