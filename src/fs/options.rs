//! How the file system behaves, and where it keeps its state.

use std::path::PathBuf;
use std::time::Duration;

use super::recovery::fnv1a;
use crate::api::http::DEFAULT_BASE_URL;
use crate::api::MAX_MEDIA_SIZE;

/// How the file system behaves.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// How long a listing (and what a GET or our PUT told us) is trusted.
    pub metadata_ttl: Duration,
    /// Bytes of media bodies kept in memory.
    pub cache_size: u64,
    /// Owner shown for every file (until chown).
    pub uid: u32,
    /// Group shown for every file (until chown).
    pub gid: u32,
    /// Permission bits shown for files (until chmod).
    pub file_mode: u16,
    /// Permission bits shown for directories (until chmod).
    pub dir_mode: u16,
    /// Refuse every change with EROFS.
    pub read_only: bool,
    /// Largest file a write or truncate may make.
    pub max_size: u64,
    /// Most files fetched ahead of a scan (0: none).
    pub read_ahead: usize,
    /// Where the bytes of uploads that failed for good are saved.
    pub recovery_dir: PathBuf,
    /// The state file that keeps the times of media across remounts (`None`: times are first
    /// seen in each mount).
    pub times_file: Option<PathBuf>,
    /// The state file of older versions, read when `times_file` does not exist yet (see
    /// [`old_times_file`]).
    pub old_times_file: Option<PathBuf>,
    /// Write-back (`--writeback`): closes stage their bytes and uploads run in the background.
    pub writeback: Option<super::writeback::WritebackOptions>,
}

impl Default for FsOptions {
    fn default() -> Self {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        FsOptions {
            metadata_ttl: Duration::from_secs(10),
            cache_size: 256 * 1024 * 1024,
            uid,
            gid,
            file_mode: 0o644,
            dir_mode: 0o755,
            read_only: false,
            max_size: MAX_MEDIA_SIZE,
            read_ahead: 8,
            recovery_dir: default_recovery_dir(uid),
            times_file: None,
            old_times_file: None,
            writeback: None,
        }
    }
}

/// Where bwmediafs keeps its state (recovered uploads, the background log, the times of media):
/// `$XDG_STATE_HOME/bwmediafs`, or `~/.local/state/bwmediafs`, or `/tmp/bwmediafs-UID`.
pub fn state_dir(uid: u32) -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|s| !s.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        });
    match state {
        Some(s) => s.join("bwmediafs"),
        None => PathBuf::from(format!("/tmp/bwmediafs-{uid}")),
    }
}

fn default_recovery_dir(uid: u32) -> PathBuf {
    state_dir(uid).join("recovery")
}

/// The state file that keeps the times of the media of `account` on the server at `base_url`
/// across remounts, in the state directory of the user running bwmediafs:
/// `times-ACCOUNT-HASH.json`, HASH a stable hash of the base URL. Servers are kept apart: every
/// local emulator serves the same account id, and a time one server's media had says nothing of
/// another's.
pub fn times_file(base_url: &str, account: &str) -> PathBuf {
    own_state_dir().join(format!("times-{}.json", store_key(base_url, account)))
}

/// The default recovery folder of the mounts of `account` on the server at `base_url`: a
/// folder of its own under the user's recovery folder, `recovery/ACCOUNT-HASH/`. Copies are
/// named after the media, so mounts of two stores sharing one folder would overwrite each
/// other's copies, and an upload on one would remove a copy of bytes the other never stored.
pub fn recovery_dir_for(base_url: &str, account: &str) -> PathBuf {
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    default_recovery_dir(uid).join(store_key(base_url, account))
}

/// The default write-back journal of the mounts of `account` on the server at `base_url`:
/// `journal/ACCOUNT-HASH/` under the state directory (one write-back mount of a store at a
/// time holds it).
pub fn journal_dir_for(base_url: &str, account: &str) -> PathBuf {
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    state_dir(uid)
        .join("journal")
        .join(store_key(base_url, account))
}

/// `ACCOUNT-HASH`, HASH a stable hash of the base URL: one media store.
fn store_key(base_url: &str, account: &str) -> String {
    let server = fnv1a(base_url.trim_end_matches('/').as_bytes());
    format!("{account}-{server:016x}")
}

/// The state file older versions kept the times of `account` in, keyed by the account alone
/// (`times-ACCOUNT.json`): read once, when `base_url` is Bandwidth's own, since that is where a
/// real account's media are; for any other server it may hold another server's times.
pub fn old_times_file(base_url: &str, account: &str) -> Option<PathBuf> {
    (base_url.trim_end_matches('/') == DEFAULT_BASE_URL)
        .then(|| own_state_dir().join(format!("times-{account}.json")))
}

/// The state directory of the user running bwmediafs.
fn own_state_dir() -> PathBuf {
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    state_dir(uid)
}
