//! Running operations on the mount.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};

use bwmediafs::emulator::store::Store;
use bwmediafs::emulator::Faults;
use bytes::Bytes;

use crate::common::*;
use crate::ops::{AfterFailure, Op, Outcome};
use crate::tree::{walk, Tree};

/// Close a descriptor and return its error (the upload's, for a written file).
pub(crate) fn close(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just taken from the File, so it is open and closed exactly once.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn write_at(path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)?;
    close(f)
}

fn truncate_path(path: &Path, len: u64) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::truncate(c.as_ptr(), len as libc::off_t) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn on_mount(op: Op, root: PathBuf) -> io::Result<Option<Vec<u8>>> {
    let p = |rel: &str| root.join(rel);
    match op {
        Op::Create { path, len, seed } => {
            let mut f = File::create(p(&path))?;
            f.write_all(&bytes(len, seed))?;
            close(f)?;
        }
        Op::WriteAt {
            path,
            offset,
            len,
            seed,
        } => write_at(&p(&path), offset, &bytes(len, seed))?,
        Op::Append { path, len, seed } => {
            let mut f = OpenOptions::new().append(true).open(p(&path))?;
            f.write_all(&bytes(len, seed))?;
            close(f)?;
        }
        Op::Truncate { path, len, by_path } => {
            if by_path {
                truncate_path(&p(&path), len)?;
            } else {
                let f = OpenOptions::new().write(true).open(p(&path))?;
                f.set_len(len)?;
                close(f)?;
            }
        }
        Op::Read { path } => return std::fs::read(p(&path)).map(Some),
        Op::List { path } => {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(p(&path))? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let slash = if entry.file_type()?.is_dir() { "/" } else { "" };
                names.push(format!("{name}{slash}"));
            }
            names.sort();
            return Ok(Some(names.join("\n").into_bytes()));
        }
        Op::Rename { from, to } => std::fs::rename(p(&from), p(&to))?,
        Op::Unlink { path } => std::fs::remove_file(p(&path))?,
        Op::Mkdir { path } => std::fs::create_dir(p(&path))?,
        Op::Rmdir { path } => std::fs::remove_dir(p(&path))?,
        Op::DupWrite { path, len, seed } => {
            let data = bytes(len, seed);
            let (first, second) = data.split_at(len / 2);
            let mut f = File::create(p(&path))?;
            f.write_all(first)?;
            // SAFETY: duplicating a descriptor we own; the copy is owned by `dup` alone.
            let fd = unsafe { libc::dup(std::os::unix::io::AsRawFd::as_raw_fd(&f)) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just returned by dup and is owned by nothing else.
            let dup = unsafe { <File as std::os::unix::io::FromRawFd>::from_raw_fd(fd) };
            close(dup)?;
            f.write_all(second)?;
            close(f)?;
        }
        Op::ShellLoop { path, n } => {
            let out = sh(&format!(
                "for i in $(seq {n}); do /bin/echo $i; done > {}",
                q(&p(&path))
            ));
            if !out.status.success() {
                return Err(shell_error(&String::from_utf8_lossy(&out.stderr)));
            }
        }
        Op::Oversize { path } => {
            let mut f = File::create(p(&path))?;
            let big = vec![7u8; bwmediafs::api::MAX_MEDIA_SIZE as usize + 1];
            let written = f.write_all(&big);
            let closed = close(f);
            written?;
            closed?;
        }
        Op::ApiPut { .. } | Op::ApiDelete { .. } | Op::FailedFsync { .. } | Op::Outage { .. } => {
            unreachable!("not a plain mount operation")
        }
    }
    Ok(None)
}

/// The errno a shell's message names.
fn shell_error(stderr: &str) -> io::Error {
    let errno = [
        ("Is a directory", libc::EISDIR),
        ("Not a directory", libc::ENOTDIR),
        ("No such file or directory", libc::ENOENT),
        ("Input/output error", libc::EIO),
    ]
    .into_iter()
    .find(|(text, _)| stderr.contains(text))
    .map_or(-1, |(_, e)| e);
    io::Error::from_raw_os_error(errno)
}

/// `path` created and written (nothing uploaded yet), then the server made to fail every
/// request; the file is still open.
fn written_while_failing(m: &Mount, path: &str, data: &[u8]) -> io::Result<File> {
    let p = m.path(path);
    let d = data.to_vec();
    let f = timed("create", move || -> io::Result<File> {
        let mut f = File::create(p)?;
        f.write_all(&d)?;
        Ok(f)
    })?;
    m.emulator.set_faults(Faults {
        error_rate: 1.0,
        error_statuses: vec![503],
        ..Faults::default()
    });
    Ok(f)
}

/// `create path` with the server failing at the fsync, then what `then` says.
pub(crate) fn failed_fsync(
    m: &Mount,
    path: &str,
    data: &[u8],
    then: AfterFailure,
    writeback: bool,
) -> io::Result<()> {
    let f = written_while_failing(m, path, data)?;
    let failed = f.sync_all();
    if then != AfterFailure::CloseWhileFailing {
        m.emulator.set_faults(Faults::default());
    }
    let result = match failed {
        Ok(()) => Err(io::Error::other(
            "an fsync succeeded while the server failed",
        )),
        Err(e) if e.raw_os_error() != Some(libc::EIO) => Err(e),
        Err(_) => match then {
            AfterFailure::FsyncAgain => f.sync_all().and_then(|()| close(f)),
            AfterFailure::Close | AfterFailure::CloseWhileFailing => close(f),
        },
    };
    m.emulator.set_faults(Faults::default());
    // With write-back the close stages the bytes: nothing to recover.
    if then == AfterFailure::CloseWhileFailing
        && !writeback
        && !in_recovery(&m.dir.path().join("recovery"), data)
    {
        return Err(io::Error::other("the bytes are not in the recovery folder"));
    }
    result
}

/// Whether a file of the recovery folder `dir` holds exactly `data`.
pub(crate) fn in_recovery(dir: &Path, data: &[u8]) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::read(e.path()).is_ok_and(|b| b == data))
}

/// `create path`, closed while the server is down for a moment shorter than the retry time.
fn across_outage(m: &Mount, path: &str, data: &[u8]) -> io::Result<()> {
    let f = written_while_failing(m, path, data)?;
    // The server comes back 400 ms later, well within the retry time: the close succeeds.
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(400));
            m.emulator.set_faults(Faults::default());
        });
        close(f)
    })
}

/// An operation's result as an outcome: its errno when it failed.
pub(crate) fn outcome(r: io::Result<Option<Vec<u8>>>) -> Outcome {
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// A change made through the API, behind the target's back.
pub(crate) fn run_api(store: &Store, op: &Op) -> Outcome {
    match op {
        Op::ApiPut { name, len, seed } => {
            let put = store.put(
                name,
                Bytes::from(bytes(*len, *seed)),
                &bwmediafs::api::content_type_for(name),
                None,
            );
            if let Err(e) = put {
                panic!("API put of {name}: {e:?}");
            }
            Ok(None)
        }
        Op::ApiDelete { name } => {
            store.delete(name);
            Ok(None)
        }
        _ => unreachable!("not an API operation"),
    }
}

/// What the model test runs against: a real mount of the binary, or the core alone.
pub(crate) trait Target {
    /// Run one operation that is not an API one.
    fn run(&self, op: &Op) -> Outcome;
    /// Every file (its bytes and stat size) and directory the target shows.
    fn tree(&self) -> Result<Tree, String>;
    /// The store behind it.
    fn store(&self) -> &Store;
    /// Where bwmediafs logs, for the report of a failure.
    fn log(&self) -> Option<PathBuf>;
    /// The core alone: no kernel, no shell, no retries.
    fn is_core(&self) -> bool;
    /// Write-back: the store follows in the background (see [`crate::writeback`]).
    fn writes_back(&self) -> bool {
        false
    }
    /// Wait until the store holds every change made so far (`sync` of the whole mount).
    fn settle(&self) {}
    /// `kill -9` the daemon and mount the account again on the same journal.
    fn restart(&self) {}
    /// Make the server answer every request 503 (`down`), or answer again.
    fn outage(&self, _down: bool) {}
}

impl Target for Mount {
    fn run(&self, op: &Op) -> Outcome {
        run_on_mount(self, op, false)
    }
    fn tree(&self) -> Result<Tree, String> {
        let root = self.mnt.clone();
        timed("walk the tree", move || walk(root)).map_err(|e| format!("walking: {e}"))
    }
    fn store(&self) -> &Store {
        self.emulator.store()
    }
    fn log(&self) -> Option<PathBuf> {
        Some(self.log.clone())
    }
    fn is_core(&self) -> bool {
        false
    }
}

/// Run `op` on mount `m` (`writeback`: mounted with `--writeback`).
pub(crate) fn run_on_mount(m: &Mount, op: &Op, writeback: bool) -> Outcome {
    match op {
        Op::FailedFsync {
            path,
            len,
            seed,
            then,
        } => outcome(failed_fsync(m, path, &bytes(*len, *seed), *then, writeback).map(|()| None)),
        Op::Outage { path, len, seed } => {
            outcome(across_outage(m, path, &bytes(*len, *seed)).map(|()| None))
        }
        _ => {
            let (op, root) = (op.clone(), m.mnt.clone());
            outcome(timed(&op.to_string(), move || on_mount(op, root)))
        }
    }
}
