//! Read-ahead across files: when programs read files one after another in name order (`cp -r`,
//! `rsync`, `tar`, a loop over a folder), the next files are fetched before they are opened.
//!
//! The API has one GET per media and no ranges, so a tool that copies a tree pays a full round
//! trip per file, one at a time. A *scan* is a run of first reads of files that are neighbours
//! in name order ([`Namespace::files_after`](super::namespace::Namespace::files_after): the
//! depth-first order of the tree, which `readdir` lists). Scans are told apart by where they
//! are, not by who reads (a shell loop runs a new `cat` for every file), so several can run at
//! once.
//!
//! The hard part is spending nothing when there is no scan, and little when one stops:
//! - a first read that continues no scan starts one with a window of 0 (no fetch): `cat` of one
//!   file costs its own GET only;
//! - the next file in order opens the window at 1; each file read that had been fetched ahead
//!   doubles it, up to `--read-ahead`; a read that passes over files fetched ahead, or finds
//!   its prefetched body gone, halves it;
//! - after each read the files fetched ahead are the next `window` ones, so a scan that stops
//!   wastes at most the window.
//!
//! Bodies fetched ahead go into the data cache like any other (a reader that opens a file
//! while it is fetched joins that download), marked until their first use; unused ones and the
//! downloads in flight take at most a quarter of the cache. A fetch that fails is forgotten: a
//! reader that joined it fetches on its own and meets its own error. A fetch is dropped when
//! the file gained a write buffer or changed before it started, and a fetched body is checked
//! at open like any cached body, so a file changed or removed meanwhile is served as a plain
//! open would serve it.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::content::ContentCache;
use super::namespace::{Ino, Kind, Namespace};
use super::options::FsOptions;

/// Scans followed at once; a new one replaces the one that moved least recently.
const MAX_SCANS: usize = 8;
/// How long an idle fetcher thread waits for work before it ends.
const IDLE: Duration = Duration::from_secs(5);

/// The scans under way and the threads that fetch ahead of them.
pub(super) struct ReadAhead {
    /// The largest window (`--read-ahead`; 0: off).
    max: usize,
    /// Bytes that bodies fetched ahead and not used yet may take (a quarter of the cache).
    budget: u64,
    scans: Mutex<Scans>,
    pool: Arc<Pool>,
}

/// The fetches waiting for a thread, and the threads.
struct Pool {
    queue: Mutex<Queue>,
    work: Condvar,
}

struct Queue {
    jobs: VecDeque<Job>,
    /// Paths queued or being fetched.
    pending: HashSet<String>,
    /// Bytes of the bodies queued or being fetched.
    reserved: u64,
    threads: usize,
    idle: usize,
}

/// One file to fetch ahead, as the namespace knew it when the fetch was decided.
pub(super) struct Job {
    pub(super) ino: Ino,
    pub(super) path: String,
    pub(super) version: u64,
    size: u64,
}

/// What fetches a file ahead (the file system). The fetcher threads hold it weakly, so they
/// end with it.
pub(super) trait FetchAhead: Send + Sync {
    /// Fetch `job`'s file into the data cache, unless it changed since the fetch was decided;
    /// a failure is forgotten.
    fn fetch_ahead(&self, job: &Job);
}

/// The scans: pure bookkeeping of what was read and what is expected next.
#[derive(Default)]
struct Scans {
    list: Vec<Scan>,
    tick: u64,
}

struct Scan {
    /// The file read last.
    last: String,
    /// The files expected next, in order (the next `max(window, 1)` after `last`).
    expected: Vec<String>,
    /// How many of `expected` (from its start) were fetched ahead or needed no fetch.
    fetched: usize,
    /// How many files to fetch ahead.
    window: usize,
    /// When the scan last moved (for replacing the stalest).
    tick: u64,
}

impl Scans {
    /// `path` was read: move the scan it continues, or start one. Returns the scan's index, or
    /// `None` for a second read of a scan's last file (nothing moves). `kept` tells whether a
    /// body fetched ahead is still cached or coming.
    fn read(&mut self, path: &str, max: usize, kept: impl Fn(&str) -> bool) -> Option<usize> {
        self.tick += 1;
        if self.list.iter().any(|s| s.last == path) {
            return None;
        }
        let continued = self
            .list
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.expected.iter().position(|p| p == path).map(|at| (i, at)))
            .max_by_key(|&(i, _)| self.list[i].window);
        let i = match continued {
            Some((i, at)) => {
                let s = &mut self.list[i];
                let fetched = at < s.fetched;
                s.window = if at.min(s.fetched) > 0 || (fetched && !kept(path)) {
                    (s.window / 2).max(1)
                } else if fetched {
                    (s.window * 2).min(max)
                } else {
                    s.window.max(1)
                }
                .min(max);
                i
            }
            None => {
                let new = Scan {
                    last: String::new(),
                    expected: Vec::new(),
                    fetched: 0,
                    window: 0,
                    tick: 0,
                };
                if self.list.len() < MAX_SCANS {
                    self.list.push(new);
                    self.list.len() - 1
                } else {
                    let (stalest, _) = self.list.iter().enumerate().min_by_key(|(_, s)| s.tick)?;
                    self.list[stalest] = new;
                    stalest
                }
            }
        };
        let s = &mut self.list[i];
        s.last = path.to_string();
        s.tick = self.tick;
        Some(i)
    }
}

impl ReadAhead {
    /// The read-ahead of a mount with `opts`. With a metadata TTL of zero it is off: every open
    /// checks the body again with a GET, so a body fetched ahead would be fetched twice.
    pub(super) fn new(opts: &FsOptions) -> ReadAhead {
        let max = if opts.metadata_ttl.is_zero() {
            0
        } else {
            opts.read_ahead
        };
        ReadAhead {
            max,
            budget: opts.cache_size / 4,
            scans: Mutex::new(Scans::default()),
            pool: Arc::new(Pool {
                queue: Mutex::new(Queue {
                    jobs: VecDeque::new(),
                    pending: HashSet::new(),
                    reserved: 0,
                    threads: 0,
                    idle: 0,
                }),
                work: Condvar::new(),
            }),
        }
    }
}

impl ReadAhead {
    /// The first read of a reading handle of `ino`: follow the scan it continues (or start one)
    /// and queue the next files of its window that are neither cached nor coming, for threads
    /// that fetch them through `fetcher`.
    pub(super) fn note_read(
        &self,
        ino: Ino,
        ns: &Mutex<Namespace>,
        content: &ContentCache,
        fetcher: &Weak<dyn FetchAhead>,
    ) {
        if self.max == 0 {
            return;
        }
        let spawn = {
            // Lock order: scans -> namespace -> {content cache, fetch queue}.
            let mut scans = self.scans.lock();
            let ns = ns.lock();
            let Some(node) = ns.live(ino).filter(|n| n.kind() == Kind::File) else {
                return;
            };
            let pool = &self.pool;
            let kept = |p: &str| content.holds(p) || pool.queue.lock().pending.contains(p);
            let Some(i) = scans.read(node.path(), self.max, kept) else {
                return;
            };
            let scan = &mut scans.list[i];
            let next = ns.files_after(ino, scan.window.max(1));
            scan.expected = next.iter().map(|n| n.path().to_string()).collect();
            // The body about to be read is no longer ahead of anything.
            content.mark_used(node.path());
            let mut q = pool.queue.lock();
            let mut room = self
                .budget
                .saturating_sub(content.unused_ahead() + q.reserved);
            let mut fetched = 0;
            for n in next.iter().take(scan.window) {
                let needless = !n.remote()
                    || n.size() == 0
                    || q.pending.contains(n.path())
                    || content.cached_at(n.path(), n.content_version());
                if !needless {
                    if n.size() > room {
                        break;
                    }
                    room -= n.size();
                    q.reserved += n.size();
                    q.pending.insert(n.path().to_string());
                    q.jobs.push_back(Job {
                        ino: n.ino(),
                        path: n.path().to_string(),
                        version: n.content_version(),
                        size: n.size(),
                    });
                    pool.work.notify_one();
                }
                fetched += 1;
            }
            scan.fetched = fetched;
            log::trace!(
                "read-ahead: {:?} read, window {}, {} fetched ahead",
                node.path(),
                scan.window,
                fetched
            );
            let wanted = q.jobs.len().saturating_sub(q.idle);
            let spawn = wanted.min(self.max.saturating_sub(q.threads));
            q.threads += spawn;
            spawn
        };
        for _ in 0..spawn {
            let pool = self.pool.clone();
            let fetcher = fetcher.clone();
            let started = std::thread::Builder::new()
                .name("read-ahead".into())
                .spawn(move || fetch_jobs(&pool, &fetcher));
            if let Err(e) = started {
                log::debug!("read-ahead: no thread ({e})");
                self.pool.queue.lock().threads -= 1;
            }
        }
    }

    /// Wait (up to 10 s) until no fetch ahead is queued or running.
    #[cfg(test)]
    pub(super) fn settle(&self) {
        let t0 = std::time::Instant::now();
        while !self.pool.queue.lock().pending.is_empty() && t0.elapsed().as_secs() < 10 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A fetcher thread: runs jobs until the file system is gone or no job came for [`IDLE`].
fn fetch_jobs(pool: &Pool, fetcher: &Weak<dyn FetchAhead>) {
    loop {
        let job = {
            let mut q = pool.queue.lock();
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                q.idle += 1;
                let timed_out = pool.work.wait_for(&mut q, IDLE).timed_out();
                q.idle -= 1;
                if timed_out && q.jobs.is_empty() {
                    q.threads -= 1;
                    return;
                }
            }
        };
        let alive = fetcher.upgrade();
        if let Some(fetcher) = &alive {
            fetcher.fetch_ahead(&job);
        }
        let mut q = pool.queue.lock();
        q.pending.remove(&job.path);
        q.reserved -= job.size;
        if alive.is_none() {
            q.threads -= 1;
            return;
        }
    }
}

#[cfg(test)]
mod tests;
