//! The times of media: what the server's content is dated, and what this machine remembers of
//! it across remounts.
//!
//! The API has no timestamps, so a file's mtime comes from the best of what is known:
//! 1. our own writes: the time of the last change made here (a write, the create, a
//!    truncate), which the upload at close does not move (`stat` before and after the close
//!    agree, as on a local disk);
//! 2. a GET's `Last-Modified`, when the server sends one (whether production does is unknown);
//! 3. the time this machine first saw the media, kept across remounts of the same account in a
//!    small state file (`crate::fs::times`), so a remount does not make every file look new.
//!
//! Each remote file also has `uploaded_at`, the latest moment its bytes can have been uploaded:
//! it dates the media's expiry (`user.bandwidth.expires`). It differs from the mtime after a
//! rename (a copy under the new name: the bytes keep their mtime, the server's copy is new) and
//! after a `touch`.
//!
//! The hard cases:
//! - A `Last-Modified` is whole seconds and our own PUT is not: a date that matches the upload
//!   this mount remembers (within the second it was rounded to, and the PUT's own duration)
//!   is that upload, so the remembered times stay (an exact mtime, the mtime a rename kept);
//!   any other date means the media was uploaded again elsewhere, and it wins.
//! - A remembered time is used only for a media of the size remembered: another size is other
//!   bytes, uploaded since.
//! - A time the user chose (utimens: `touch`, `cp -p`, `rsync -a`, `tar x`) is shown until the
//!   bytes change, here or on the server (`Node::user_mtime`), and kept across remounts with
//!   the other times, so `rsync -a` after a remount finds the files it sent unchanged. The
//!   server says little of a change: a listing gives the size, and only a GET the bytes and
//!   perhaps a date. So a chosen time goes with another size (in a listing, or in the state
//!   file at a remount), other bytes from a GET, or a `Last-Modified` later than the latest
//!   moment the known bytes can have been uploaded (another upload since, whatever its bytes);
//!   an earlier date is the same bytes, recorded under it. Other bytes of the same size
//!   uploaded elsewhere while nothing here has read them, from a server that sends no date,
//!   cannot be told.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Ino, Kind, Namespace};
use crate::api::RETENTION;

/// How far a `Last-Modified` may lie before the upload it dates: it is rounded down to the
/// second, and our PUT is dated when it returned, after the server stored it.
const BEFORE_UPLOAD: Duration = Duration::from_secs(2);
/// What a `Last-Modified` is rounded down to.
const DATE_PRECISION: Duration = Duration::from_secs(1);
/// How far after: clocks a little apart.
const AFTER_UPLOAD: Duration = Duration::from_secs(1);
/// How long past the retention a name not seen is still remembered (a mount stopped for a
/// while, a clock a little off).
pub(crate) const FORGET_MARGIN: Duration = Duration::from_secs(3600);

/// What is remembered of one media, as the state file holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TimeRecord {
    /// Its mtime, in nanoseconds since the epoch.
    #[serde(rename = "m")]
    pub mtime: u64,
    /// The latest moment it can have been uploaded, in nanoseconds since the epoch.
    #[serde(rename = "u")]
    pub uploaded: u64,
    /// When the server last showed it, in seconds since the epoch.
    #[serde(rename = "s")]
    pub seen: u64,
    /// Its size then.
    #[serde(rename = "n")]
    pub size: u64,
    /// The mtime the user set on these bytes (utimens), in nanoseconds since the epoch. Absent
    /// from the files of older versions, which read as none.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub set: Option<u64>,
}

/// `t` in nanoseconds since the epoch (0 before it, the largest after year 2554).
pub(crate) fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The moment `n` nanoseconds after the epoch.
pub(crate) fn from_nanos(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n)
}

impl TimeRecord {
    /// Whether it is still worth keeping at `now`: the server showed it within the retention
    /// and a margin (else it is gone, or as good as).
    pub(crate) fn current(&self, now: SystemTime) -> bool {
        // A moment past what the clock can hold is not one the server showed: drop it.
        let Some(seen) = UNIX_EPOCH.checked_add(Duration::from_secs(self.seen)) else {
            return false;
        };
        match now.duration_since(seen) {
            Ok(age) => age <= RETENTION + FORGET_MARGIN,
            Err(_) => true,
        }
    }
}

/// Whether a `Last-Modified` of `lm` dates the upload remembered as done by `uploaded`.
fn same_upload(lm: SystemTime, uploaded: SystemTime) -> bool {
    lm <= uploaded + AFTER_UPLOAD && lm + BEFORE_UPLOAD >= uploaded
}

impl Namespace {
    /// The times remembered from earlier mounts: a media seen again gets its times back.
    pub(crate) fn remember(&mut self, records: impl IntoIterator<Item = (String, TimeRecord)>) {
        self.remembered.extend(records);
    }

    /// The time a media `name` of `size` bytes that the server shows gets if it is new here:
    /// the remembered one, else `now`.
    pub(super) fn time_of_new(&self, name: &str, size: u64, now: SystemTime) -> SystemTime {
        self.remembered
            .get(name)
            .filter(|r| r.size == size)
            .map_or(now, |r| from_nanos(r.mtime))
    }

    /// The new file `ino` (of `size` bytes) is a media the server shows: its times are the
    /// remembered ones, else now (first seen).
    pub(super) fn first_seen(&mut self, ino: Ino, size: u64, now: SystemTime) {
        let Some(n) = self.nodes.get_mut(&ino) else {
            return;
        };
        let record = self.remembered.remove(&n.path).filter(|r| r.size == size);
        match record {
            Some(r) => {
                n.mtime = from_nanos(r.mtime);
                n.ctime = n.mtime;
                n.uploaded_at = Some(from_nanos(r.uploaded));
                n.user_mtime = r.set.map(from_nanos);
            }
            None => n.uploaded_at = Some(now),
        }
        self.times_dirty = true;
    }

    /// The server now holds other bytes under `ino` (seen at `now`, with no date): they are
    /// dated now.
    pub(super) fn changed_remotely(&mut self, ino: Ino, now: SystemTime) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.mtime = now;
            n.ctime = now;
            n.user_mtime = None;
            n.uploaded_at = Some(now);
            self.times_dirty = true;
        }
    }

    /// A GET brought the server's bytes of `ino`, dated `last_modified` when the server says;
    /// `changed`: they differ from the bytes known before. See the module comment.
    pub(crate) fn downloaded(
        &mut self,
        ino: Ino,
        last_modified: Option<SystemTime>,
        changed: bool,
    ) {
        let now = SystemTime::now();
        let Some(n) = self.nodes.get_mut(&ino) else {
            return;
        };
        // A date is whole seconds, rounded down: the upload was at most a second later.
        let (t, latest) = match last_modified {
            Some(lm) if !changed && n.uploaded_at.is_some_and(|u| same_upload(lm, u)) => return,
            Some(lm) => (lm, lm + DATE_PRECISION),
            None if changed => (now, now),
            None => return,
        };
        let uploaded_since = last_modified
            .zip(n.uploaded_at)
            .is_some_and(|(lm, u)| lm > u + AFTER_UPLOAD);
        if (changed || uploaded_since) && n.user_mtime.take().is_some() {
            // Other bytes, or an upload since: a time the user chose was for the bytes before.
            self.times_dirty = true;
        }
        if n.mtime != t || n.uploaded_at != Some(latest) {
            n.mtime = t;
            n.ctime = t;
            n.uploaded_at = Some(latest);
            self.times_dirty = true;
        }
    }

    /// Our own PUT of `ino` returned at `at`: the server's copy is that old. The times the file
    /// shows stay those of its last local change (the writes, the create or the truncate set
    /// them): an upload is not a change a program made, and times that moved at the close
    /// would show one `stat` before and another after it, once the kernel asks again.
    pub(super) fn put_done(&mut self, ino: Ino, at: SystemTime) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.uploaded_at = Some(at);
            self.times_dirty = true;
        }
    }

    /// The latest moment the media of `ino` can still exist: the retention after its upload.
    pub(crate) fn expires(&self, ino: Ino) -> Option<SystemTime> {
        let n = self.nodes.get(&ino)?;
        n.uploaded_at.map(|u| u + RETENTION)
    }

    /// A time the user chose was set (it is kept with the others).
    pub(crate) fn time_set(&mut self) {
        self.times_dirty = true;
    }

    /// Whether the times changed since the last [`Namespace::time_records`].
    pub(crate) fn times_dirty(&self) -> bool {
        self.times_dirty
    }

    /// What to remember of every media the server holds, at `now`: the live remote files, and
    /// what earlier mounts remembered of names not seen yet. Marks the times saved.
    pub(crate) fn time_records(&mut self, now: SystemTime) -> Vec<(String, TimeRecord)> {
        self.times_dirty = false;
        let mut out: Vec<(String, TimeRecord)> = self
            .nodes
            .values()
            .filter(|n| n.kind == Kind::File && n.remote && !n.removed)
            .filter_map(|n| {
                let uploaded = n.uploaded_at?;
                let seen = match n.verified_at {
                    Some(v) => now.checked_sub(v.elapsed()).unwrap_or(now),
                    None => now,
                };
                let seen = seen.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let record = TimeRecord {
                    mtime: nanos(n.mtime),
                    uploaded: nanos(uploaded),
                    seen,
                    size: n.size,
                    set: n.user_mtime.map(nanos),
                };
                Some((n.path.clone(), record))
            })
            .collect();
        self.remembered.retain(|_, r| r.current(now));
        out.extend(self.remembered.iter().map(|(k, r)| (k.clone(), *r)));
        out
    }

    /// A complete listing showed every media: what was remembered of the others is gone.
    pub(super) fn forget_unseen(&mut self) {
        if !self.remembered.is_empty() {
            self.remembered = Default::default();
            self.times_dirty = true;
        }
    }
}
