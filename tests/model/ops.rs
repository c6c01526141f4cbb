//! The operations: what a step does, and how it is shown.

use std::fmt;
use std::io;

#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Create or replace a whole file (O_CREAT|O_TRUNC, write, close).
    Create {
        path: String,
        len: usize,
        seed: u64,
    },
    /// Open an existing file for writing, seek, write, close.
    WriteAt {
        path: String,
        offset: u64,
        len: usize,
        seed: u64,
    },
    /// Open an existing file with O_APPEND, write, close.
    Append {
        path: String,
        len: usize,
        seed: u64,
    },
    /// truncate(2) on the path, or ftruncate on an open descriptor.
    Truncate {
        path: String,
        len: u64,
        by_path: bool,
    },
    Read {
        path: String,
    },
    /// List one directory (names, directories with a trailing `/`).
    List {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Unlink {
        path: String,
    },
    Mkdir {
        path: String,
    },
    Rmdir {
        path: String,
    },
    /// A put made directly through the API.
    ApiPut {
        name: String,
        len: usize,
        seed: u64,
    },
    /// A delete made directly through the API.
    ApiDelete {
        name: String,
    },
    /// Create or replace a whole file while the server fails: the fsync fails, then `then`.
    FailedFsync {
        path: String,
        len: usize,
        seed: u64,
        then: AfterFailure,
    },
    /// Create or replace a whole file while the server is down for a moment (shorter than the
    /// retry time) when it is closed.
    Outage {
        path: String,
        len: usize,
        seed: u64,
    },
    /// Create or replace a whole file through two descriptors of one open (`dup`): the first
    /// is closed half way through.
    DupWrite {
        path: String,
        len: usize,
        seed: u64,
    },
    /// `for i in $(seq n); do /bin/echo $i; done > path`: every command closes the file.
    ShellLoop {
        path: String,
        n: usize,
    },
    /// Replace a file with more than the size limit: EFBIG, and the server keeps what it had.
    Oversize {
        path: String,
    },
}

/// What a program does after an fsync failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// The server heals; the program fsyncs again, then closes.
    FsyncAgain,
    /// The server heals; the program closes.
    Close,
    /// The program closes while the server still fails: EIO, the bytes in the recovery folder.
    CloseWhileFailing,
}

/// The bytes `ShellLoop` writes.
pub(crate) fn loop_output(n: usize) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Create { path, len, seed } => write!(f, "create {path} ({len} bytes, seed {seed})"),
            Op::WriteAt {
                path,
                offset,
                len,
                seed,
            } => write!(f, "write {path} at {offset} ({len} bytes, seed {seed})"),
            Op::Append { path, len, seed } => write!(f, "append {path} ({len} bytes, seed {seed})"),
            Op::Truncate { path, len, by_path } => {
                let how = if *by_path { "truncate" } else { "ftruncate" };
                write!(f, "{how} {path} to {len}")
            }
            Op::Read { path } => write!(f, "read {path}"),
            Op::List { path } => write!(f, "list {path}/"),
            Op::Rename { from, to } => write!(f, "rename {from} -> {to}"),
            Op::Unlink { path } => write!(f, "unlink {path}"),
            Op::Mkdir { path } => write!(f, "mkdir {path}"),
            Op::Rmdir { path } => write!(f, "rmdir {path}"),
            Op::ApiPut { name, len, seed } => {
                write!(f, "API put {name} ({len} bytes, seed {seed})")
            }
            Op::ApiDelete { name } => write!(f, "API delete {name}"),
            Op::FailedFsync {
                path,
                len,
                seed,
                then,
            } => write!(
                f,
                "create {path} ({len} bytes, seed {seed}) with a failing fsync, then {then:?}"
            ),
            Op::Outage { path, len, seed } => {
                write!(
                    f,
                    "create {path} ({len} bytes, seed {seed}) across an outage"
                )
            }
            Op::DupWrite { path, len, seed } => {
                write!(f, "create {path} ({len} bytes, seed {seed}) through a dup")
            }
            Op::ShellLoop { path, n } => write!(f, "loop of {n} commands > {path}"),
            Op::Oversize { path } => write!(f, "oversize copy > {path}"),
        }
    }
}

/// What an operation returns: the bytes for a read, nothing for the others, or an errno.
pub(crate) type Outcome = Result<Option<Vec<u8>>, i32>;

pub(crate) fn show(o: &Outcome) -> String {
    match o {
        Ok(None) => "ok".into(),
        Ok(Some(b)) => format!("ok, {} bytes", b.len()),
        Err(e) => format!("{} ({e})", io::Error::from_raw_os_error(*e)),
    }
}
