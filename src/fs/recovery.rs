//! The recovery folder: the bytes of an upload that failed, kept until they are uploaded.
//!
//! The hard cases:
//! - A copy goes once its bytes reach the server, whichever way: a retried fsync or close of
//!   the same file, or a later upload of the same bytes under the same name (the logged `cp`, a
//!   program that writes them again). An upload of other bytes leaves it: they never reached
//!   the server.
//! - A server that refuses the bytes as too large would refuse the same copy again: the log
//!   says to make the file smaller instead of giving the command.
//! - Any legal media name must fit: a name is one file name with `/` and `%` percent-encoded, so
//!   it tells the media name; a name longer than a file name may be is cut to a hash of the
//!   full name and its end, with the full name in `FILE.name` beside it.
//! - The logged command that uploads the bytes again is quoted for the shell whatever the name.
//! - The files are private (0600 in a 0700 folder) and written with fsync, so they survive a
//!   crash of the machine.

use std::path::{Path, PathBuf};

use super::error::FsError;
use super::MediaFs;
use crate::api::{ApiError, MAX_MEDIA_SIZE};

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

/// The file name a media's bytes are saved under in the recovery directory: the media name with
/// `%` and `/` percent-encoded (`a/b%c.png` -> `a%2Fb%25c.png`), so it is one safe, reversible
/// file name; when that is longer than a file name may be, a hash of the full name and the end
/// of the name (the full name is then kept beside it).
pub(crate) fn recovery_file_name(name: &str) -> String {
    let out = flat_name(name);
    if out.len() <= RECOVERY_NAME_MAX {
        return out;
    }
    // Keep the end (the file's own name and its extension), cut at a character boundary.
    let mut tail = out.len() - RECOVERY_TAIL;
    while !out.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{:016x}-{}", fnv1a(name.as_bytes()), &out[tail..])
}

/// `name` as one file name: `%`, `/` and NUL percent-encoded.
fn flat_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '\0' => out.push_str("%00"),
            c => out.push(c),
        }
    }
    out
}

/// The longest recovery file name: a file name's limit, less room for the `.name` beside it.
const RECOVERY_NAME_MAX: usize = 250;
/// How much of the end of a long name a recovery file name keeps.
const RECOVERY_TAIL: usize = 200;
/// What a recovery file's full media name is kept in, beside it, when its file name is cut.
const FULL_NAME_SUFFIX: &str = ".name";

/// A stable 64-bit hash (FNV-1a), so the same media is saved under the same file every time
/// (and the times of one server are kept in the same file, `options::times_file`).
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A shell command that uploads the recovery file `file` again as `target` (any name, quotes
/// included).
pub(crate) fn reupload_command(file: &Path, target: &Path) -> String {
    format!(
        "cp -- {} {}",
        shell_quote(&file.to_string_lossy()),
        shell_quote(&target.to_string_lossy())
    )
}

/// `s` in single quotes for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Save `data` as `dir/<recovery_file_name(name)>` (the directory is made 0700, the files 0600)
/// and return the file's path. When the file name had to be cut, the full media name is kept
/// beside it in `<file>.name`.
pub(crate) fn save_recovery(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let path = dir.join(recovery_file_name(name));
    if flat_name(name).len() > RECOVERY_NAME_MAX {
        write_private(&full_name_file(&path), name.as_bytes())?;
    }
    write_private(&path, data)?;
    Ok(path)
}

/// The recovery file of media `name`, if it holds exactly `data` (so an upload of `data` as
/// `name` makes it useless). One `stat` when there is none, as after nearly every upload.
pub(crate) fn saved_copy(dir: &Path, name: &str, data: &[u8]) -> Option<PathBuf> {
    let path = dir.join(recovery_file_name(name));
    let len = std::fs::metadata(&path).ok()?.len();
    if len != data.len() as u64 {
        return None;
    }
    // A cut file name is a hash: the full name beside it says whose bytes these are.
    if flat_name(name).len() > RECOVERY_NAME_MAX
        && std::fs::read(full_name_file(&path)).ok()? != name.as_bytes()
    {
        return None;
    }
    (std::fs::read(&path).ok()? == data).then_some(path)
}

/// Remove a recovery file (and the full name beside it) whose bytes reached the server.
pub(crate) fn remove_recovery(file: &Path) {
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(full_name_file(file));
}

fn full_name_file(file: &Path) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(FULL_NAME_SUFFIX);
    PathBuf::from(p)
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

impl MediaFs {
    /// Save the bytes of a failed upload and say, once, where and how to upload them again.
    /// The file they are saved in, if saving worked.
    pub(super) fn recover(&self, path: &str, bytes: &[u8], err: &FsError) -> Option<PathBuf> {
        let mnt = self
            .mountpoint
            .lock()
            .clone()
            .unwrap_or_else(|| PathBuf::from("MOUNTPOINT"));
        match save_recovery(&self.opts.recovery_dir, path, bytes) {
            Ok(file) => {
                let what_to_do = match too_large_limit(err) {
                    // The same bytes would be refused again.
                    Some(limit) => format!(
                        "the server will refuse them again: make the file smaller ({limit}) and \
                         copy the smaller file to {}",
                        mnt.join(path).display()
                    ),
                    None => format!(
                        "every later fsync or close tries again; to upload them yourself: {}",
                        reupload_command(&file, &mnt.join(path))
                    ),
                };
                log::error!(
                    "the upload of {path:?} failed ({err}); its {} bytes are kept in {}; {what_to_do}",
                    bytes.len(),
                    file.display(),
                );
                Some(file)
            }
            Err(io) => {
                log::error!(
                    "the upload of {path:?} failed ({err}), and saving its {} bytes in {} failed \
                     too ({io}): they are only in memory until an upload succeeds or the file \
                     is closed",
                    bytes.len(),
                    self.opts.recovery_dir.display()
                );
                None
            }
        }
    }
}

/// When `err` is the server refusing an upload as too large: what its limit is, in words (a
/// 413 for a file within Bandwidth's limit says only that this server's is lower).
fn too_large_limit(err: &FsError) -> Option<String> {
    match err {
        FsError::Api {
            source: ApiError::TooLarge { limit, .. },
            ..
        } => Some(match limit {
            Some(l) => format!("at most {l} bytes"),
            None => format!(
                "the server's limit is below Bandwidth's {MAX_MEDIA_SIZE} bytes and it does \
                 not say how far"
            ),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn recovery_names_are_flat_and_reversible() {
        assert_eq!(recovery_file_name("a/b%c.png"), "a%2Fb%25c.png");
        assert_eq!(recovery_file_name("plain.txt"), "plain.txt");
    }

    #[test]
    pub(super) fn recovery_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rec/sub");
        let p = save_recovery(&dir, "x/y.txt", b"hello").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert_eq!(p.file_name().unwrap(), "x%2Fy.txt");
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
