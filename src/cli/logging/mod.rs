//! Where a mount logs, so that a person can find it: standard error in the foreground; the
//! journal under systemd; otherwise (in the background) a file of the mount's own, named after
//! its mountpoint the way `systemd-escape --path` names units (`/mnt/media` logs to
//! `$XDG_STATE_HOME/bwmediafs/mnt-media.log`), which the mount names when it is ready.
//!
//! The hard parts:
//! - Several mounts may share an output (the journal, one `--log-file`), so every line names
//!   its mount (the mountpoint).
//! - A mount runs for weeks: the file is rotated by size ([`RotatingFile`]: at
//!   [`ROTATE_AT`] bytes it becomes `.1`, the old `.1` becomes `.2`, the old `.2` goes).
//! - "Under systemd" is told by `JOURNAL_STREAM` naming our standard error (as systemd says to
//!   check), not by `INVOCATION_ID`, which the shells of a desktop's terminal inherit too. The
//!   journal adds its own timestamps, so lines carry none and start with the syslog priority
//!   (`<4>`), which the journal turns into the entry's priority.
//! - fuser logs the requests it answers ENOSYS for at WARN, with a dump of their arguments,
//!   and a second unmount attempt after a clean external `umount` (it cannot tell the mount is
//!   gone) as "Failed to umount filesystem: Invalid argument"; and at ERROR a reply to a
//!   request the kernel gave up on (its caller interrupted, or the mount gone at its end) as
//!   "Failed to send FUSE reply: No such file or directory". None is news to the user:
//!   [`Quiet`] turns each into one short debug line.

use std::io::Write;
use std::path::{Path, PathBuf};

mod rotating;
pub use rotating::{file_written, RotatingFile};

/// The size at which a log file is rotated.
pub const ROTATE_AT: u64 = 4 << 20;

/// How many rotated files are kept (`.1`, `.2`).
pub const KEEP: usize = 2;

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    /// Standard error, with timestamps (a terminal, or whatever the caller redirected it to).
    Stderr,
    /// Standard error that is systemd's journal: no timestamps, syslog priorities.
    Journal,
    /// A file (rotated).
    File(PathBuf),
}

impl LogOutput {
    /// How the ready message names it.
    pub fn describe(&self) -> String {
        match self {
            LogOutput::Stderr => "standard error".to_string(),
            LogOutput::Journal => "the journal".to_string(),
            LogOutput::File(path) => path.display().to_string(),
        }
    }

    /// Whether the log needs standard error kept open in the background.
    pub fn uses_stderr(&self) -> bool {
        !matches!(self, LogOutput::File(_))
    }

    /// Log a warning the user should see while the mount starts: when the log is a file, it
    /// goes to standard error too (still the terminal until the mount is ready).
    pub fn warn_user(&self, message: &str) {
        log::warn!("{message}");
        if !self.uses_stderr() {
            eprintln!("bwmediafs: warning: {message}");
        }
    }
}

/// What decides the output.
#[derive(Debug, Clone)]
pub struct LogSettings<'a> {
    /// `-v` count.
    pub verbose: u8,
    /// `-f`.
    pub foreground: bool,
    /// `--log-file` / `-o log_file=`.
    pub log_file: Option<&'a Path>,
    /// The mountpoint as given (named in every line, and in the default file's name).
    pub mountpoint: &'a Path,
}

/// The mountpoint as an absolute path, without touching it (it may be a dead mount).
pub fn mount_name(mountpoint: &Path) -> PathBuf {
    std::fs::canonicalize(mountpoint)
        .or_else(|_| std::path::absolute(mountpoint))
        .unwrap_or_else(|_| mountpoint.to_path_buf())
}

/// `path` escaped as `systemd-escape --path` does: `/mnt/media` -> `mnt-media`, `/` -> `-`;
/// bytes other than ASCII letters, digits, `:`, `_` and `.` (and a leading `.`) as `\xNN`.
pub fn escape_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let segments: Vec<&[u8]> = bytes
        .split(|b| *b == b'/')
        .filter(|s| !s.is_empty() && *s != b".")
        .collect();
    if segments.is_empty() {
        return "-".to_string();
    }
    let mut out = String::new();
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        for (j, &b) in segment.iter().enumerate() {
            let plain = b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.';
            if plain && !(i == 0 && j == 0 && b == b'.') {
                out.push(b as char);
            } else {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    out
}

/// The log file of a background mount on `mountpoint` without `--log-file`.
pub fn default_log_file(mountpoint: &Path) -> PathBuf {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    crate::fs::state_dir(uid).join(format!("{}.log", escape_path(&mount_name(mountpoint))))
}

/// Whether standard error is systemd's journal: `JOURNAL_STREAM` holds its `device:inode`.
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var("JOURNAL_STREAM").ok() else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    // SAFETY: fstat fills the struct it is given.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

/// Where the log goes for these settings (see the module comment).
pub fn output(settings: &LogSettings) -> LogOutput {
    if let Some(file) = settings.log_file {
        return LogOutput::File(file.to_path_buf());
    }
    if stderr_is_journal() {
        return LogOutput::Journal;
    }
    if settings.foreground {
        LogOutput::Stderr
    } else {
        LogOutput::File(default_log_file(settings.mountpoint))
    }
}

/// Start logging; returns where the log goes.
pub fn init(settings: &LogSettings) -> Result<LogOutput, String> {
    let default_filter = match settings.verbose {
        0 => "warn,fuser::session=error,bwmediafs=info",
        1 => "info,bwmediafs=debug",
        _ => "trace",
    };
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    let out = output(settings);
    let mount = mount_name(settings.mountpoint).display().to_string();
    if out == LogOutput::Journal {
        builder.format(move |buf, record| {
            writeln!(
                buf,
                "<{}>[{:5} {mount} {}] {}",
                syslog_priority(record.level()),
                record.level(),
                record.target(),
                record.args()
            )
        });
    } else {
        builder.format(move |buf, record| {
            writeln!(
                buf,
                "[{} {:5} {mount} {}] {}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                record.args()
            )
        });
    }
    if let LogOutput::File(path) = &out {
        let file = RotatingFile::open(path, ROTATE_AT, KEEP)
            .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    }
    let inner = builder.build();
    let max = inner.filter();
    log::set_boxed_logger(Box::new(Quiet { inner }))
        .map_err(|e| format!("cannot start logging: {e}"))?;
    log::set_max_level(max);
    Ok(out)
}

fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// The logger: env_logger, with fuser's noise made quiet (see the module comment).
struct Quiet {
    inner: env_logger::Logger,
}

/// The short debug line that replaces a fuser warning that is not news, if `record` is one.
fn demoted(record: &log::Record) -> Option<String> {
    if !record.target().starts_with("fuser") {
        return None;
    }
    let text = record.args().to_string();
    // The kernel gives up on a request whose caller was interrupted, and on every request
    // still pending when the mount goes: the reply that comes after finds no request (ENOENT).
    let gone = format!("(os error {})", libc::ENOENT);
    if record.level() == log::Level::Error
        && text.starts_with("Failed to send FUSE reply")
        && text.contains(&gone)
    {
        return Some("a reply came after the kernel had given up on its request".to_string());
    }
    if record.level() != log::Level::Warn {
        return None;
    }
    if let Some(call) = text.strip_prefix("[Not Implemented] ") {
        let op = call.split('(').next().unwrap_or(call);
        return Some(format!("{op}: not implemented, answered ENOSYS"));
    }
    let einval = text.contains(&format!("(os error {})", libc::EINVAL));
    if einval && (text.starts_with("Failed to umount") || text.starts_with("Unmount failed")) {
        return Some("the mount was already gone at the session's end".to_string());
    }
    None
}

impl Quiet {
    fn log_if_enabled(&self, record: &log::Record) {
        use log::Log;
        if self.inner.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }
}

impl log::Log for Quiet {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        match demoted(record) {
            Some(short) => {
                let mut quiet = log::Record::builder();
                quiet
                    .level(log::Level::Debug)
                    .target(record.target())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line());
                self.log_if_enabled(&quiet.args(format_args!("{short}")).build());
            }
            None => self.inner.log(record),
        }
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests;
