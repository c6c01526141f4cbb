//! The state file that keeps the times of media across remounts (the rules of the times
//! themselves are in `namespace::times`).
//!
//! One small JSON file per server and account under the state directory
//! (`times-ACCOUNT-HASH.json`, see `options::times_file`): for each media the server showed, its
//! mtime, the latest moment it can have been uploaded, when it was last seen, its size, and the
//! mtime the user set on those bytes. The hard cases:
//! - It is written atomically (a temporary file in the same directory, then a rename), at most
//!   every few seconds while times change and once more at unmount, by a thread of its own, never
//!   under the namespace's lock (which only hands out the records).
//! - It stays small: a media vanishes 48 hours after its upload, so a name not seen for longer
//!   (plus a margin) is dropped, and so is every name a complete listing no longer shows.
//! - It is a help, never a need: a missing file is a first mount, a corrupt or unwritable one
//!   a warning (once), and the mount goes on with times first seen now.
//! - Two mounts of one account on one machine share the file: a write keeps what another mount
//!   wrote since this one started, for names it does not know itself.
//! - Older versions kept one file per account (`times-ACCOUNT.json`), shared by every server.
//!   For Bandwidth's own server, where a real account's media are, it is read while the new
//!   file does not exist yet, and removed once the new one is written.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::namespace::{Namespace, TimeRecord};

/// How often the times are written while they change.
pub(super) const SAVE_EVERY: Duration = Duration::from_secs(5);

/// The version of the file's layout.
const VERSION: u32 = 1;

/// What the file holds.
#[derive(Debug, Serialize, Deserialize)]
struct TimesFile {
    version: u32,
    media: HashMap<String, TimeRecord>,
}

/// The state file of one mount.
#[derive(Debug)]
pub(super) struct Times {
    path: PathBuf,
    /// The file of older versions, read when `path` does not exist yet, removed once it does.
    old: Mutex<Option<PathBuf>>,
    /// One write at a time (the thread's and the one at unmount).
    writing: Mutex<()>,
    /// A write failed already (the warning is given once).
    failed: AtomicBool,
    /// When this mount started, in seconds since the epoch: a record in the file seen after then
    /// was written by another mount of the account, and is kept by our writes.
    started: u64,
}

impl Times {
    pub(super) fn new(path: PathBuf, old: Option<PathBuf>) -> Times {
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Times {
            path,
            old: Mutex::new(old),
            writing: Mutex::new(()),
            failed: AtomicBool::new(false),
            started,
        }
    }

    /// What another mount of the account wrote to the file since this one started, for names
    /// not among `ours` (nothing when the file cannot be read: the next write replaces it).
    fn others(&self, ours: &HashMap<String, TimeRecord>) -> Vec<(String, TimeRecord)> {
        let Ok(text) = std::fs::read(&self.path) else {
            return Vec::new();
        };
        let Ok(file) = serde_json::from_slice::<TimesFile>(&text) else {
            return Vec::new();
        };
        let now = SystemTime::now();
        file.media
            .into_iter()
            .filter(|(name, r)| r.seen > self.started && r.current(now) && !ours.contains_key(name))
            .collect()
    }

    /// What earlier mounts remembered, without what is too old to matter; nothing when there is
    /// no file yet or it cannot be read (a warning). Without a file, the one of older versions
    /// when there is one.
    pub(super) fn load(&self, now: SystemTime) -> HashMap<String, TimeRecord> {
        match std::fs::read(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::debug!("no times kept yet in {}", self.path.display());
                let old = self.old.lock().clone();
                match old.map(|old| (std::fs::read(&old), old)) {
                    Some((Ok(text), old)) => {
                        log::info!(
                            "the times of earlier mounts are read from {}, and kept from now on \
                             in {}",
                            old.display(),
                            self.path.display()
                        );
                        Self::parse(&old, &text, now)
                    }
                    _ => HashMap::new(),
                }
            }
            Err(e) => {
                log::warn!(
                    "cannot read the times of earlier mounts from {}: {e}; media show the time \
                     this mount first sees them",
                    self.path.display()
                );
                HashMap::new()
            }
            Ok(text) => Self::parse(&self.path, &text, now),
        }
    }

    /// The records of the file `path` holding `text`, without what is too old to matter.
    fn parse(path: &Path, text: &[u8], now: SystemTime) -> HashMap<String, TimeRecord> {
        match serde_json::from_slice::<TimesFile>(text) {
            Ok(f) if f.version == VERSION => {
                let mut media = f.media;
                media.retain(|_, r| r.current(now));
                log::debug!(
                    "{} media times from earlier mounts in {}",
                    media.len(),
                    path.display()
                );
                media
            }
            Ok(f) => {
                log::warn!(
                    "{} is of another version ({}); it is replaced, and media show the time this \
                     mount first sees them",
                    path.display(),
                    f.version
                );
                HashMap::new()
            }
            Err(e) => {
                log::warn!(
                    "{} is not a times file ({e}); it is replaced, and media show the time this \
                     mount first sees them",
                    path.display()
                );
                HashMap::new()
            }
        }
    }

    /// Write the times of media in `ns` to the file if they changed since it was last written
    /// (at unmount, and every [`SAVE_EVERY`] from a thread of the file system's).
    pub(super) fn save(&self, ns: &Mutex<Namespace>) {
        let records = {
            let mut ns = ns.lock();
            if !ns.times_dirty() {
                return;
            }
            ns.time_records(SystemTime::now())
        };
        self.write(records);
    }

    /// Write `records` in place of the file, atomically.
    fn write(&self, records: Vec<(String, TimeRecord)>) {
        let _one = self.writing.lock();
        let mut media: HashMap<String, TimeRecord> = records.into_iter().collect();
        let others = self.others(&media);
        media.extend(others);
        let file = TimesFile {
            version: VERSION,
            media,
        };
        match write_atomically(&self.path, &file) {
            Ok(()) => {
                log::trace!("{} media times written", file.media.len());
                if let Some(old) = self.old.lock().take() {
                    // Read at the start, if it was there: the new file holds what it held.
                    let _ = std::fs::remove_file(old);
                }
                if self.failed.swap(false, Ordering::Relaxed) {
                    log::info!(
                        "the times of media are written again to {}",
                        self.path.display()
                    );
                }
            }
            Err(e) => {
                if !self.failed.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "cannot keep the times of media in {}: {e}; after a remount, media will \
                         show the time they are first seen",
                        self.path.display()
                    );
                } else {
                    log::debug!("times not written to {}: {e}", self.path.display());
                }
            }
        }
    }
}

/// `value` as JSON in `path`, through a temporary file beside it and a rename, so that a reader
/// (or a crash) sees the old file or the new one, never half of one.
fn write_atomically(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        let text = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `t` as RFC 3339 in UTC, rounded up to the second (`2026-12-03T14:05:00Z`): the form of a
/// latest moment.
pub(super) fn rfc3339_up(t: SystemTime) -> String {
    let sub = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let t = if sub > 0 {
        t + Duration::from_nanos(u64::from(1_000_000_000 - sub))
    } else {
        t
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn latest_moments_round_up_to_the_second() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_306_700);
        assert_eq!(rfc3339_up(t), "2026-12-03T14:05:00Z");
        assert_eq!(
            rfc3339_up(t + Duration::from_millis(1)),
            "2026-12-03T14:05:01Z"
        );
    }

    fn record(seen: u64) -> TimeRecord {
        TimeRecord {
            mtime: 1,
            uploaded: 2,
            seen,
            size: 3,
            set: None,
        }
    }

    #[test]
    fn the_file_round_trips_and_forgets_what_is_too_old() {
        let dir = tempfile::tempdir().unwrap();
        let times = Times::new(dir.path().join("state/times-1.json"), None);
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        times.write(vec![
            ("a/0/x.png".into(), record(secs - 3600)),
            ("old".into(), record(secs - 50 * 3600)),
        ]);
        let loaded = times.load(now);
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded["a/0/x.png"], record(secs - 3600));
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("times-1.json")]);
    }

    #[test]
    fn a_moment_past_what_the_clock_holds_is_dropped_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("times-1.json");
        std::fs::write(
            &path,
            br#"{"version":1,"media":{"x":{"m":1,"u":1,"s":18446744073709551615,"n":2}}}"#,
        )
        .unwrap();
        assert!(Times::new(path, None).load(SystemTime::now()).is_empty());
    }

    #[test]
    fn a_write_keeps_what_another_mount_wrote_since_this_one_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("times-1.json");
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // Written before this mount started: loaded by it, and its own to drop.
        let before = Times::new(path.clone(), None);
        before.write(vec![("old".into(), record(secs - 60))]);
        let ours = Times::new(path.clone(), None);
        let other = Times::new(path.clone(), None);
        other.write(vec![("theirs".into(), record(secs + 2))]);
        ours.write(vec![("mine".into(), record(secs + 2))]);
        let loaded = ours.load(SystemTime::now());
        let mut names: Vec<&String> = loaded.keys().collect();
        names.sort();
        assert_eq!(names, vec!["mine", "theirs"]);
    }

    #[test]
    fn the_file_of_older_versions_is_read_until_the_new_one_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (
            dir.path().join("times-1.json"),
            dir.path().join("times-1-x.json"),
        );
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // Written by an older version: no time set by the user in it.
        std::fs::write(
            &old,
            format!(r#"{{"version":1,"media":{{"x":{{"m":1,"u":2,"s":{secs},"n":3}}}}}}"#),
        )
        .unwrap();
        let times = Times::new(new.clone(), Some(old.clone()));
        let loaded = times.load(SystemTime::now());
        assert_eq!(loaded["x"], record(secs));
        let set = TimeRecord {
            set: Some(7),
            ..record(secs)
        };
        times.write(vec![("x".into(), set)]);
        assert!(!old.exists(), "the old file stays beside the new one");
        assert_eq!(Times::new(new, None).load(SystemTime::now())["x"], set);
    }

    #[test]
    fn a_missing_or_corrupt_file_is_no_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("times-1.json");
        let times = Times::new(path.clone(), None);
        assert!(times.load(SystemTime::now()).is_empty());
        std::fs::write(&path, b"{not json").unwrap();
        assert!(times.load(SystemTime::now()).is_empty());
        std::fs::write(&path, br#"{"version":99,"media":{}}"#).unwrap();
        assert!(times.load(SystemTime::now()).is_empty());
        // And it is replaced by the next write.
        times.write(vec![("a".into(), record(0))]);
        assert!(std::fs::read_to_string(&path).unwrap().contains("\"a\""));
    }
}
