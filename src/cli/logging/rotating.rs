//! A log file that rotates itself by size, and whether this process has written to it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this process has written a line to its log file (see [`RotatingFile`]).
static FILE_WRITTEN: AtomicBool = AtomicBool::new(false);

/// Whether this process has written to its log file: a mount attempt that fails before logging
/// anything leaves no file behind, and its error then goes to the terminal only.
pub fn file_written() -> bool {
    FILE_WRITTEN.load(Ordering::Relaxed)
}

/// A log file that rotates itself by size: once a write would take it past `limit` bytes, the
/// file becomes `NAME.1` (`NAME.1` becomes `NAME.2`, and so on up to `keep`; the oldest goes)
/// and a new one starts. The logger writes a whole line per call, so lines are never split
/// across files. A rotation that fails (a read-only directory) keeps appending to the file.
/// The file is made at the first line, not before: a mount that fails before it has anything
/// to log leaves no empty file.
pub struct RotatingFile {
    path: PathBuf,
    /// `None` until the first line (when the file did not exist yet).
    file: Option<File>,
    size: u64,
    limit: u64,
    keep: usize,
}

impl RotatingFile {
    /// Append to `path`: its directory is made now (mode 700), the file at the first write
    /// unless it exists already. Fails when the directory cannot be made or written to.
    pub fn open(path: &Path, limit: u64, keep: usize) -> std::io::Result<RotatingFile> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let (file, size) = match path.exists() {
            true => {
                let file = Self::open_file(path)?;
                let size = file.metadata()?.len();
                (Some(file), size)
            }
            false => {
                writable(dir)?;
                (None, 0)
            }
        };
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            limit,
            keep,
        })
    }

    fn open_file(path: &Path) -> std::io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        for n in (1..self.keep).rev() {
            let from = self.numbered(n);
            if from.exists() {
                std::fs::rename(&from, self.numbered(n + 1))?;
            }
        }
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            std::fs::rename(&self.path, self.numbered(1))?;
        }
        self.file = Some(Self::open_file(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

/// Whether this process may make files in `dir` (so that a log file made later can be).
fn writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: access reads the NUL-terminated path it is given.
    match unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.limit && self.rotate().is_err() {
            // Keep logging where we are; try again after another `limit` bytes.
            self.size = 0;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(Self::open_file(&self.path)?),
        };
        let n = file.write(buf)?;
        self.size += n as u64;
        FILE_WRITTEN.store(true, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}
