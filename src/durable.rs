//! Files made durable one at a time, each whole or absent after a crash: the write-back
//! journal's versions (`fs/writeback/journal.rs`) and the emulator's media in its data
//! directory (`emulator/store/disk.rs`).
//!
//! A file is a magic line, a JSON header line, then its bytes. It is written under a temporary
//! name, `fdatasync`ed, renamed to its final name and the directory `fsync`ed: only then is it
//! there for good. A crash at any step before the rename leaves the temporary file, which its
//! owner drops at the next start; after it, the whole file. A file found otherwise damaged
//! cannot come from a crash: it is moved to `damaged/` and kept, never deleted.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The most the magic and header lines of a durable file may take.
const HEADER_MAX: u64 = 64 * 1024;

/// The folder, inside a directory of durable files, where damaged ones are kept.
pub const DAMAGED_DIR: &str = "damaged";

/// Write `magic`, `header` (as one line of JSON) and `body` as the file `whole` in `dir`,
/// through the temporary `partial` (see the module's comment). On failure the temporary file
/// is removed.
pub fn write_whole(
    dir: &Path,
    partial: &Path,
    whole: &Path,
    magic: &str,
    header: &impl Serialize,
    body: &[u8],
) -> std::io::Result<()> {
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(partial)?;
        let line = serde_json::to_string(header).map_err(std::io::Error::other)?;
        f.write_all(format!("{magic}\n{line}\n").as_bytes())?;
        f.write_all(body)?;
        f.sync_data()?;
        std::fs::rename(partial, whole)?;
        sync_dir(dir)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(partial);
    }
    written
}

/// The header of a durable file whose first line must be `magic`; the reader is left at the
/// first byte of the body. Errors say what is wrong, for a person.
pub fn read_header<T: DeserializeOwned>(
    reader: &mut impl BufRead,
    magic: &str,
) -> Result<T, String> {
    // A stray file of any size is not read whole looking for the end of a line.
    let mut head = std::io::Read::take(reader, HEADER_MAX);
    let mut first = String::new();
    head.read_line(&mut first)
        .map_err(|e| format!("unreadable: {e}"))?;
    if first.trim_end() != magic {
        return Err(format!("it does not start with {magic:?}"));
    }
    let mut header = String::new();
    head.read_line(&mut header)
        .map_err(|e| format!("unreadable header: {e}"))?;
    serde_json::from_str(header.trim_end()).map_err(|e| format!("its header does not parse: {e}"))
}

/// Move the damaged file `path` of `dir` to `dir/damaged/` (made 0700); its new path.
pub fn set_aside(dir: &Path, path: &Path) -> std::io::Result<PathBuf> {
    let aside = dir.join(DAMAGED_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&aside)?;
    let target = aside.join(path.file_name().unwrap_or_default());
    std::fs::rename(path, &target)?;
    Ok(target)
}

/// Take the exclusive lock of the directory `dir` (its file `name`, made 0600) for as long as
/// the returned file is open; `None` when another process holds it.
pub fn lock(dir: &Path, name: &str) -> std::io::Result<Option<File>> {
    use std::os::unix::io::AsRawFd;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(name))?;
    // SAFETY: flock on a descriptor we own; it touches no memory.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(file))
}

/// `fsync` the directory `dir`, so that the names made or removed in it last.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
