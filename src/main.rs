//! `bwmediafs [SOURCE] MOUNTPOINT`: the command-line front end (also `mount.bwmediafs`, the
//! helper mount(8) calls). It checks what it can before going to the background (mountpoint,
//! credentials, URLs), forks while it still has one thread, then in the child connects (the
//! OAuth2 token, then one list call, check the credentials: `cli::connect`), mounts, and tells
//! the parent (or systemd: READY=1). SIGINT, SIGTERM and SIGHUP upload what is dirty, then
//! unmount; `umount` ends it the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bwmediafs::api::auth::Credentials;
use bwmediafs::api::http::{HttpApi, HttpConfig, DEFAULT_BASE_URL, DEFAULT_TOKEN_URL};
use bwmediafs::api::retry::RetryPolicy;
use bwmediafs::cli::connect::{self, Endpoint};
use bwmediafs::cli::credentials::{self, Account};
use bwmediafs::cli::daemon::{self, Readiness};
use bwmediafs::cli::helper::{self, Invocation};
use bwmediafs::cli::logging::{self, LogOutput, LogSettings};
use bwmediafs::cli::options::{check_token_url, check_transport_security, Args, MountFlags};
use bwmediafs::cli::{demo, mountpoint, notify};
use bwmediafs::emulator::Emulator;
use bwmediafs::fs::{
    journal_dir_for, old_times_file, recovery_dir_for, times_file, FsOptions, MediaFs,
    WritebackOptions,
};
use bwmediafs::fuse::{self, MountOptions};

fn main() {
    // A panicking FUSE worker would leave its request unanswered and the caller hung for good;
    // ending the process instead turns the mount into a dead one that the next mount clears.
    std::panic::set_hook(Box::new(|info| {
        log::error!("internal error, stopping: {info}");
        eprintln!("bwmediafs: internal error, stopping: {info}");
        std::process::abort();
    }));
    // `bwmediafs status MOUNTPOINT`: what a running mount has not uploaded yet.
    if std::env::args_os().nth(1).is_some_and(|a| a == "status") {
        std::process::exit(bwmediafs::cli::status::run(std::env::args_os().skip(2)));
    }
    // Called as mount.bwmediafs by mount(8): its arguments in the ordinary form first, and a
    // HOME for the state directory.
    helper::ensure_home();
    let argv = match helper::invocation(std::env::args_os().collect()) {
        Ok(Invocation::Run(argv)) => argv,
        Ok(Invocation::Fake) => std::process::exit(0),
        Err(message) => fail(&message),
    };
    let mut args = bwmediafs::cli::completions::parse_args_from(argv);
    let flags = args.resolve().unwrap_or_else(|message| fail(&message));
    let log = logging::init(&LogSettings {
        verbose: args.verbose,
        foreground: args.foreground,
        log_file: args.log_file.as_deref(),
        mountpoint: &args.mountpoint,
    })
    .unwrap_or_else(|message| fail(&message));
    let mut readiness = Readiness::foreground();
    // The demo's emulator lives as long as the process: `exit` below ends it without waiting
    // for the idle connections of the client that the signal thread still holds.
    let mut emulator = None;
    let code = match run(&args, &flags, &log, &mut readiness, &mut emulator) {
        Ok(()) => 0,
        Err(message) => {
            // The log file tells the end of a story it holds; a failure that logged nothing
            // before leaves no file (the terminal has the message).
            if matches!(log, LogOutput::File(_)) && logging::file_written() {
                log::error!("{message}");
            }
            if readiness.is_background() {
                readiness.failed(&message); // the waiting parent prints it
            } else {
                eprintln!("bwmediafs: {message}");
            }
            1
        }
    };
    std::process::exit(code);
}

/// Print `message` as the program's error and exit 1 (before anything started).
fn fail(message: &str) -> ! {
    eprintln!("bwmediafs: {message}");
    std::process::exit(1);
}

fn run(
    args: &Args,
    flags: &MountFlags,
    log: &LogOutput,
    readiness: &mut Readiness,
    emulator: &mut Option<Emulator>,
) -> Result<(), String> {
    // Everything that can be checked without threads happens before the fork, so its errors
    // come straight back to the user.
    let mountpoint = mountpoint::prepare(&args.mountpoint, flags.nonempty)?;
    let account = if args.demo {
        None
    } else {
        let account = credentials::resolve(args.credentials.as_deref(), args.source_account())?;
        for warning in &account.warnings {
            log.warn_user(warning);
        }
        Some(account)
    };
    let http = account
        .map(|account| http_config(args, account))
        .transpose()?;

    if !args.foreground {
        *readiness = daemon::background().map_err(|e| format!("cannot fork: {e}"))?;
    }
    // From here on every thread inherits these.
    daemon::block_exit_signals();
    if daemon::make_non_dumpable() {
        log::debug!("core dumps are off: the process is not dumpable");
    } else {
        log::warn!("could not mark the process non-dumpable: a core dump could hold credentials");
    }

    let (demo, fs, source) = open_store(args, flags, http, log)?;
    *emulator = demo;
    let mounted = fuse::mount(fs.clone(), &mountpoint, &mount_options(args, flags))
        .map_err(|e| format!("cannot mount on {}: {e}", mountpoint.display()))?;
    // READY=1 only once the mount answers: the kernel's INIT has been answered.
    mounted
        .wait_ready(std::time::Duration::from_secs(30))
        .map_err(|e| {
            format!(
                "mounted on {}, but it does not answer: {e}",
                mountpoint.display()
            )
        })?;
    log::info!("mounted {source} on {}", mountpoint.display());
    let status = format!("mounted {source} on {}", mountpoint.display());
    if notify::notify(&format!("READY=1\nSTATUS={status}")) {
        log::debug!("told systemd the mount is ready");
    }
    let hint = ready_hint(args, &mountpoint, &status, log);
    if args.foreground && !hint.is_empty() {
        eprintln!("{hint}");
    }
    readiness.ready(&hint, log.uses_stderr());

    spawn_signal_handler(fs.clone(), mountpoint.clone());
    fs.on_progress(|note| {
        notify::notify(&format!("STATUS={note}"));
    });
    mounted.wait();
    notify::stopping();
    finish(&fs, &mountpoint)
}

/// The kernel's options of the mount.
fn mount_options(args: &Args, flags: &MountFlags) -> MountOptions {
    MountOptions {
        allow_other: flags.allow_other,
        allow_root: flags.allow_root,
        read_only: flags.read_only,
        auto_unmount: flags.auto_unmount,
        fsname: args
            .source
            .clone()
            .unwrap_or_else(|| "bwmediafs".to_string()),
    }
}

/// After the unmount: upload what a lazy unmount left (normally every file was uploaded at
/// its close) and save the times of media.
fn finish(fs: &MediaFs, mountpoint: &std::path::Path) -> Result<(), String> {
    let flushed = fs.flush_all();
    fs.save_times();
    if let Err(e) = flushed {
        log::error!("some files could not be uploaded at unmount: {e}");
        return Err(format!(
            "unmounted, but some files could not be uploaded: {e}"
        ));
    }
    log::info!("unmounted {}", mountpoint.display());
    Ok(())
}

/// Reach the media store (the built-in emulator in demo mode, kept alive by the first value):
/// the file system over it, and what it is called in the log.
fn open_store(
    args: &Args,
    flags: &MountFlags,
    http: Option<HttpConfig>,
    log: &LogOutput,
) -> Result<(Option<Emulator>, Arc<MediaFs>, String), String> {
    let (emulator, http) = match http {
        Some(http) => (None, http),
        None => {
            let (emulator, mut http) =
                demo::start().map_err(|e| format!("cannot start the demo emulator: {e}"))?;
            http.retry = retry_policy(args);
            http.request_timeout = args.timeout;
            log::info!(
                "demo: emulator with sample media at {}",
                emulator.base_url()
            );
            (Some(emulator), http)
        }
    };
    let source = if args.demo {
        "the demo media store".to_string()
    } else {
        format!("the media of account {}", http.account_id)
    };
    let endpoint = Endpoint {
        base_url: http.base_url.clone(),
        token_url: http.token_url.clone(),
        account_id: http.account_id.clone(),
        basic: matches!(http.credentials, Credentials::Basic { .. }),
        retry_time: http.retry.max_total,
    };
    let mut opts = fs_options(args, flags);
    if !args.demo {
        // The demo's media are new at each start: nothing of their times is worth keeping.
        opts.times_file = Some(times_file(&http.base_url, &http.account_id));
        opts.old_times_file = old_times_file(&http.base_url, &http.account_id);
    }
    if args.recovery_dir.is_none() {
        // Copies are named after the media: each store has a folder of its own.
        opts.recovery_dir = recovery_dir_for(&http.base_url, &http.account_id);
    }
    if args.writeback || flags.writeback {
        opts.writeback = Some(WritebackOptions {
            journal_dir: args
                .journal_dir
                .clone()
                .unwrap_or_else(|| journal_dir_for(&http.base_url, &http.account_id)),
            journal_limit: args.journal_size,
            drain_timeout: args.drain_timeout,
        });
    }
    let api = HttpApi::new(http).map_err(|e| e.to_string())?;
    let fs = connect::open(Arc::new(api), opts, &endpoint, log)?;
    Ok((emulator, fs, source))
}

/// What the mount tells the user once it is ready: in the background, what is mounted where and
/// where it logs; the demo also says what to try (in the foreground too).
fn ready_hint(args: &Args, mountpoint: &Path, status: &str, log: &LogOutput) -> String {
    let log_note = format!("; log: {}", log.describe());
    match (args.demo, args.foreground) {
        (true, foreground) => format!(
            "bwmediafs: demo media store mounted on {0}; try `ls -lR {0}`, unmount with \
             `umount {0}`{1}",
            mountpoint.display(),
            if foreground { "" } else { &log_note }
        ),
        (false, false) => format!("bwmediafs: {status}{log_note}"),
        (false, true) => String::new(),
    }
}

/// On SIGINT/SIGTERM/SIGHUP: upload dirty files, then unmount, which ends `mounted.wait()`.
/// With write-back the mount goes at once, and the uploads pending are sent after it (`finish`).
fn spawn_signal_handler(fs: Arc<MediaFs>, mountpoint: PathBuf) {
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let signal = daemon::wait_for_signal();
            notify::stopping();
            if fs.writes_back() {
                log::info!("{signal}: unmounting, then uploading what is pending");
            } else {
                log::info!("{signal}: uploading open files, then unmounting");
                if let Err(e) = fs.flush_all() {
                    log::error!("{e}");
                }
            }
            if let Err(e) = unmount(&mountpoint) {
                log::error!(
                    "cannot unmount {}: {e}; run `umount -l {}`",
                    mountpoint.display(),
                    mountpoint.display()
                );
            }
        });
    if let Err(e) = spawned {
        log::warn!("no signal handler ({e}): unmount with umount instead of a signal");
    }
}

/// Unmount at once, or (files still open: the usual reason) detach the mount so it ends when
/// the last of them is closed. Only a failed detach is worth a warning.
fn unmount(mountpoint: &Path) -> Result<(), String> {
    mountpoint::unmount(mountpoint, false).or_else(|e| {
        mountpoint::unmount(mountpoint, true)?;
        log::info!(
            "{} is in use ({e}): detached; the mount ends when the files open on it are closed",
            mountpoint.display()
        );
        Ok(())
    })
}

fn http_config(args: &Args, account: Account) -> Result<HttpConfig, String> {
    let base_url = args
        .base_url
        .clone()
        .or(account.base_url)
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    let token_url = args
        .token_url
        .clone()
        .or(account.token_url)
        .unwrap_or_else(|| DEFAULT_TOKEN_URL.to_string());
    check_transport_security(&base_url, args.allow_insecure_http)?;
    check_transport_security(&token_url, args.allow_insecure_http)?;
    if matches!(account.credentials, Credentials::OAuth2 { .. }) {
        check_token_url(&base_url, &token_url, DEFAULT_TOKEN_URL)?;
    }
    let mut http = HttpConfig::new(account.account_id, account.credentials);
    http.base_url = base_url;
    http.token_url = token_url;
    http.request_timeout = args.timeout;
    http.retry = retry_policy(args);
    Ok(http)
}

fn retry_policy(args: &Args) -> RetryPolicy {
    RetryPolicy {
        max_total: args.retry_time,
        ..RetryPolicy::default()
    }
}

fn fs_options(args: &Args, flags: &MountFlags) -> FsOptions {
    let defaults = FsOptions::default();
    let umask = flags.umask;
    FsOptions {
        metadata_ttl: args.metadata_ttl,
        cache_size: args.cache_size,
        read_ahead: args.read_ahead,
        uid: flags.uid.unwrap_or(defaults.uid),
        gid: flags.gid.unwrap_or(defaults.gid),
        file_mode: args
            .file_mode
            .or(umask.map(|u| 0o666 & !u))
            .unwrap_or(defaults.file_mode),
        dir_mode: args
            .dir_mode
            .or(umask.map(|u| 0o777 & !u))
            .unwrap_or(defaults.dir_mode),
        read_only: flags.read_only,
        recovery_dir: args.recovery_dir.clone().unwrap_or(defaults.recovery_dir),
        ..defaults
    }
}
