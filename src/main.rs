//! `bwmediafs MOUNTPOINT`: the command-line front end. It checks what it can before going to the
//! background (mountpoint, credentials, URLs), forks while it still has one thread, then in the
//! child connects (one list call checks the credentials), mounts, and tells the parent. SIGINT,
//! SIGTERM and SIGHUP upload what is dirty, then unmount; `umount` ends it the same way.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bwmediafs::api::auth::Credentials;
use bwmediafs::api::http::{HttpApi, HttpConfig, DEFAULT_BASE_URL, DEFAULT_TOKEN_URL};
use bwmediafs::api::retry::RetryPolicy;
use bwmediafs::api::ApiError;
use bwmediafs::cli::credentials::{self, Account};
use bwmediafs::cli::daemon::{self, Readiness};
use bwmediafs::cli::options::{
    check_token_url, check_transport_security, parse_mount_flags, Args, MountFlags,
};
use bwmediafs::cli::{demo, mountpoint};
use bwmediafs::emulator::Emulator;
use bwmediafs::fs::{FsError, FsOptions, MediaFs};
use bwmediafs::fuse::{self, MountOptions};

fn main() {
    // A panicking FUSE worker would leave its request unanswered and the caller hung for good;
    // ending the process instead turns the mount into a dead one that the next mount clears.
    std::panic::set_hook(Box::new(|info| {
        log::error!("internal error, stopping: {info}");
        eprintln!("bwmediafs: internal error, stopping: {info}");
        std::process::abort();
    }));
    let args = bwmediafs::cli::completions::parse_args_from(std::env::args_os());
    if let Err(message) = init_logging(&args) {
        eprintln!("bwmediafs: {message}");
        std::process::exit(1);
    }
    let mut readiness = Readiness::foreground();
    let code = match run(&args, &mut readiness) {
        Ok(()) => 0,
        Err(message) => {
            if args.log_file.is_some() || !args.foreground {
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

fn run(args: &Args, readiness: &mut Readiness) -> Result<(), String> {
    // Everything that can be checked without threads happens before the fork, so its errors
    // come straight back to the user.
    let flags = parse_mount_flags(&args.options)?;
    let mountpoint = mountpoint::prepare(&args.mountpoint, flags.nonempty)?;
    let account = if args.demo {
        None
    } else {
        Some(credentials::resolve(args.credentials.as_deref())?)
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

    // Kept alive for the life of the mount in demo mode.
    let (_emulator, fs, source) = connect(args, &flags, http)?;
    let mount_options = MountOptions {
        allow_other: flags.allow_other,
        allow_root: flags.allow_root,
        read_only: flags.read_only,
        fsname: "bwmediafs".to_string(),
    };
    let mounted = fuse::mount(fs.clone(), &mountpoint, &mount_options)
        .map_err(|e| format!("cannot mount on {}: {e}", mountpoint.display()))?;
    log::info!("mounted {source} on {}", mountpoint.display());
    let hint = ready_hint(args, &mountpoint);
    if args.foreground && !hint.is_empty() {
        eprintln!("{hint}");
    }
    readiness.ready(&hint);

    spawn_signal_handler(fs.clone(), mountpoint.clone());
    mounted.wait();
    // Normally every file was uploaded at its close; this catches what a lazy unmount left.
    if let Err(e) = fs.flush_all() {
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
fn connect(
    args: &Args,
    flags: &MountFlags,
    http: Option<HttpConfig>,
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
    let base_url = http.base_url.clone();
    let api = HttpApi::new(http).map_err(|e| e.to_string())?;
    let fs = MediaFs::connect(Arc::new(api), fs_options(args, flags)).map_err(|e| match e {
        FsError::Api {
            source: ApiError::NotFound,
            ..
        } => format!(
            "the server has no media listing under the base URL {base_url} (HTTP 404); \
                 check it: Bandwidth's is {DEFAULT_BASE_URL}, ending with /api/v2"
        ),
        e => format!("cannot reach the media store: {e}"),
    })?;
    Ok((emulator, fs, source))
}

/// What a demo mount tells the user once it is ready (nothing for a real mount).
fn ready_hint(args: &Args, mountpoint: &Path) -> String {
    let log_note = if args.foreground {
        String::new()
    } else {
        let log = args.log_file.clone().unwrap_or_else(default_log_file);
        format!(" (log: {})", log.display())
    };
    if args.demo {
        format!(
            "bwmediafs: demo media store mounted on {0}; try `ls -lR {0}`, unmount with \
             `umount {0}`{log_note}",
            mountpoint.display()
        )
    } else {
        String::new()
    }
}

/// On SIGINT/SIGTERM/SIGHUP: upload dirty files, then unmount, which ends `mounted.wait()`.
fn spawn_signal_handler(fs: Arc<MediaFs>, mountpoint: PathBuf) {
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let signal = daemon::wait_for_signal();
            log::info!("{signal}: uploading open files, then unmounting");
            if let Err(e) = fs.flush_all() {
                log::error!("{e}");
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

fn unmount(mountpoint: &Path) -> Result<(), String> {
    mountpoint::unmount(mountpoint, false).or_else(|e| {
        log::warn!("unmount failed ({e}); detaching lazily");
        mountpoint::unmount(mountpoint, true)
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

/// The log of a background mount without `--log-file`.
fn default_log_file() -> PathBuf {
    // SAFETY: getuid cannot fail.
    bwmediafs::fs::state_dir(unsafe { libc::getuid() }).join("bwmediafs.log")
}

fn init_logging(args: &Args) -> Result<(), String> {
    let default_filter = match args.verbose {
        0 => "warn,fuser::session=error,bwmediafs=info",
        1 => "info,bwmediafs=debug",
        _ => "trace",
    };
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    builder.format_timestamp_millis();
    // In the background standard error goes nowhere: without --log-file, log to a file in the
    // state directory, so warnings such as a recovered upload reach the user.
    let background_log = (!args.foreground && args.log_file.is_none()).then(default_log_file);
    if let Some(path) = args.log_file.as_ref().or(background_log.as_ref()) {
        if let Some(dir) = path.parent() {
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    }
    builder
        .try_init()
        .map_err(|e| format!("cannot start logging: {e}"))
}
