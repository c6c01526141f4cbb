//! The command line of `bwmediafs`: flags, `-o` mount options as `mount` users know them, sizes.
//!
//! The hard part is that every setting has two spellings: a flag (`--cache-size 64M`) for people
//! and an `-o` option (`cache_size=64M`) for `mount(8)` and fstab, which can pass nothing else.
//! Both go through the same value parser ([`SETTINGS`] names it once per setting), and an `-o`
//! setting overrides the flag. `mount(8)` also hands the helper options meant for itself
//! (`_netdev`, `nofail`, `x-systemd.*`, `defaults`, and `dev,suid` that `mount.fuse3` adds):
//! those are accepted and ignored; anything else unknown is an error that names it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// What `--help` and the man page say before the options. A paragraph is one line, which clap
/// wraps to the terminal; the indented and aligned lines stay as they are.
const LONG_ABOUT: &str = "\
Mount a Bandwidth account's media store as a directory.

Every media of the account appears as a file (names with `/` as directories); ls, cp, rm, mv, \
editors and rsync work on them. Reads fetch a media once and keep it in memory; writes are \
uploaded when the file is closed, and close reports a failed upload.

Credentials come from the environment (never from flags, which other users see in `ps`):
  BW_ACCOUNT_ID                       your account id
  BW_CLIENT_ID + BW_CLIENT_SECRET     OAuth2 client credentials, made in the Bandwidth App
  BW_USERNAME  + BW_PASSWORD          legacy API user (HTTP Basic): emulators, old accounts
or from a file given with --credentials (-o credentials=FILE) holding the same KEY=VALUE \
lines (yours or root's, mode 600), or under systemd from $CREDENTIALS_DIRECTORY/bwmediafs \
(LoadCredential=bwmediafs:FILE). Bandwidth retired API users on 2026-12-02: production takes \
OAuth2 client credentials only.

Try it without an account:   bwmediafs --demo /tmp/media
Unmount with:                umount /tmp/media   (or fusermount3 -u /tmp/media)
From fstab:                  bwmediafs /mnt/media fuse.bwmediafs credentials=FILE,_netdev 0 0

umount, SIGTERM, SIGINT and SIGHUP upload what is not uploaded yet, then end the mount.

With --writeback a close returns once the bytes are safe on this machine's disk and uploads run \
in the background: `sync /mnt/media` waits for them, fsync still waits for the server, and \
what a crash leaves in the write-back journal the next mount uploads. `bwmediafs status \
MOUNTPOINT [--json]` says what is pending and what the server refused (exit 0: nothing \
pending, 1: some, 2: refused); `getfattr -n user.bandwidth.state FILE` says stored, pending \
or failed; `getfattr -n user.bandwidth.url` of a staged file uploads it first. In every \
mode, the status also shows the mount's counters: requests by kind, bytes up and down, \
retries and cache hits.

Every setting is also an -o option (credentials=FILE, cache_size=64M, metadata_ttl=10s, \
timeout=, retry_time=, base_url=, token_url=, log_file=, recovery_dir=, read_ahead=, \
file_mode=, dir_mode=, journal_dir=, journal_size=, drain_timeout=), which overrides the flag.

Logs: in the foreground, standard error; in the background, the file named after the \
mountpoint in $XDG_STATE_HOME/bwmediafs (~/.local/state/bwmediafs/mnt-media.log for \
/mnt/media; rotated at 4 MiB, two old files kept), which the mount names when it is ready; \
under systemd, the journal.";

/// Mount a Bandwidth account's media store as a directory.
#[derive(Debug, Parser)]
#[command(
    name = "bwmediafs",
    version,
    long_about = LONG_ABOUT,
    override_usage = "bwmediafs [OPTIONS] MOUNTPOINT\n       \
                      bwmediafs [OPTIONS] SOURCE MOUNTPOINT"
)]
pub struct Args {
    /// MOUNTPOINT, the empty directory to mount the media store on (see -o nonempty); or SOURCE
    /// then MOUNTPOINT, as mount(8) passes them: SOURCE is free text shown in the mount table,
    /// and a 7-digit SOURCE is the account id when the credentials set none.
    #[arg(value_name = "[SOURCE] MOUNTPOINT", num_args = 1..=2, required = true)]
    pub places: Vec<OsString>,

    /// The directory to mount on (from `places`, set by [`Args::resolve`]).
    #[arg(skip)]
    pub mountpoint: PathBuf,

    /// The SOURCE of `bwmediafs SOURCE MOUNTPOINT`, if one was given.
    #[arg(skip)]
    pub source: Option<String>,

    /// Serve a built-in emulator with sample media instead of a real account (no credentials).
    #[arg(long)]
    pub demo: bool,

    /// Read BW_* credentials from this file (must not be readable by group or others).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,

    /// Messaging API base URL [default: https://messaging.bandwidth.com/api/v2].
    #[arg(long, env = "BW_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,

    /// OAuth2 token URL [default: https://api.bandwidth.com/api/v1/oauth2/token].
    #[arg(long, env = "BW_TOKEN_URL", value_name = "URL")]
    pub token_url: Option<String>,

    /// Allow a plain-http base or token URL to a host other than loopback. Credentials then cross
    /// the network unencrypted.
    #[arg(long)]
    pub allow_insecure_http: bool,

    /// Stay in the foreground (logs to standard error) instead of returning once mounted.
    #[arg(short, long)]
    pub foreground: bool,

    /// Mount options, comma-separated: ro, rw, allow_other, allow_root, uid=N, gid=N, umask=OCTAL,
    /// auto_unmount (the mount goes away when the process dies, even by kill -9; implies
    /// allow_root, which a user other than root may set only with user_allow_other in
    /// /etc/fuse.conf), writeback (as --writeback),
    /// nonempty (mount over a directory that has entries), and every setting below by its name
    /// with `_` (cache_size=64M, credentials=FILE, ...). Options of mount(8) itself (defaults,
    /// _netdev, nofail, noauto, x-systemd.*, ...) are ignored.
    #[arg(short = 'o', value_name = "OPTIONS", action = clap::ArgAction::Append)]
    pub options: Vec<String>,

    /// Permission bits of files (octal; default 644 less the umask).
    #[arg(long, value_name = "OCTAL", value_parser = parse_octal)]
    pub file_mode: Option<u16>,

    /// Permission bits of directories (octal; default 755 less the umask).
    #[arg(long, value_name = "OCTAL", value_parser = parse_octal)]
    pub dir_mode: Option<u16>,

    /// Memory for downloaded media (e.g. 64M, 1.5G; at least 4M, at most the machine's memory).
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_cache_size)]
    pub cache_size: u64,

    /// Fetch up to N files ahead when a program reads files one after another in name order
    /// (cp -r, rsync, tar, a loop over a folder); the window starts at 1 and grows while the
    /// files fetched ahead are used. 0 turns it off (so does --metadata-ttl 0).
    #[arg(long, value_name = "N", default_value = "8", value_parser = parse_count)]
    pub read_ahead: usize,

    /// How long a listing is reused before the store is asked again; changes made elsewhere
    /// show up after this.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub metadata_ttl: Duration,

    /// Where the bytes of a file whose upload failed for good are kept, to re-upload later
    /// (give each mount its own). Default: a folder for each account on each server,
    /// $XDG_STATE_HOME/bwmediafs/recovery/ACCOUNT-HASH (~/.local/state/bwmediafs/recovery/...).
    #[arg(long, value_name = "DIR")]
    pub recovery_dir: Option<PathBuf>,

    /// Timeout of one HTTP request (more than 0).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout, allow_hyphen_values = true)]
    pub timeout: Duration,

    /// How long one operation keeps retrying a failing server before it fails with EIO.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub retry_time: Duration,

    /// Write-back: a close returns once the new bytes are safe on this machine's disk (in the
    /// write-back journal, written and synced), and the upload runs in the background, up to 8
    /// at a time, so cp -r, rsync and tar into the mount go at network speed. fsync still
    /// returns only once the server holds the bytes. Another machine sees a file once it is
    /// uploaded. What a crash or kill -9 leaves in the journal, the next mount uploads. Also
    /// -o writeback.
    #[arg(long)]
    pub writeback: bool,

    /// With --writeback: where the journal is kept, on a local disk (not tmpfs, FUSE or a
    /// network file system). Default: a folder for each account on each server,
    /// $XDG_STATE_HOME/bwmediafs/journal/ACCOUNT-HASH.
    #[arg(long, value_name = "DIR")]
    pub journal_dir: Option<PathBuf>,

    /// With --writeback: the most bytes the journal holds; past it, closes upload themselves
    /// until uploads catch up.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_journal_size)]
    pub journal_size: u64,

    /// With --writeback: how long the end of the mount (umount, SIGTERM) keeps uploading what
    /// is pending; what is left stays in the journal for the next mount.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub drain_timeout: Duration,

    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Write the log to this file instead of the default (standard error in the foreground, a
    /// file named after the mountpoint in the background; see "Logs" above).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Print the completion script for SHELL (bash, zsh, fish, elvish or powershell) to standard
    /// output and exit; no mountpoint needed.
    #[arg(
        long,
        value_name = "SHELL",
        exclusive = true,
        hide_possible_values = true
    )]
    pub completions: Option<clap_complete::Shell>,
}

/// One setting that is both a flag and an `-o` option: its `-o` name and how a value is applied,
/// with the flag's own parser.
struct Setting {
    name: &'static str,
    apply: fn(&mut Args, &str) -> Result<(), String>,
}

/// A path setting's value: anything but empty.
fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        Err("needs a path".to_string())
    } else {
        Ok(PathBuf::from(s))
    }
}

/// A URL setting's value: anything but empty (checked later, with the flag's value).
fn parse_text(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("needs a value".to_string())
    } else {
        Ok(s.to_string())
    }
}

/// The settings `-o NAME=VALUE` may set, each through the parser of its flag.
const SETTINGS: &[Setting] = &[
    Setting {
        name: "credentials",
        apply: |a, v| {
            a.credentials = Some(parse_path(v)?);
            Ok(())
        },
    },
    Setting {
        name: "base_url",
        apply: |a, v| {
            a.base_url = Some(parse_text(v)?);
            Ok(())
        },
    },
    Setting {
        name: "token_url",
        apply: |a, v| {
            a.token_url = Some(parse_text(v)?);
            Ok(())
        },
    },
    Setting {
        name: "cache_size",
        apply: |a, v| {
            a.cache_size = parse_cache_size(v)?;
            Ok(())
        },
    },
    Setting {
        name: "metadata_ttl",
        apply: |a, v| {
            a.metadata_ttl = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "timeout",
        apply: |a, v| {
            a.timeout = parse_timeout(v)?;
            Ok(())
        },
    },
    Setting {
        name: "retry_time",
        apply: |a, v| {
            a.retry_time = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "log_file",
        apply: |a, v| {
            a.log_file = Some(parse_path(v)?);
            Ok(())
        },
    },
    Setting {
        name: "recovery_dir",
        apply: |a, v| {
            a.recovery_dir = Some(parse_path(v)?);
            Ok(())
        },
    },
    Setting {
        name: "journal_dir",
        apply: |a, v| {
            a.journal_dir = Some(parse_path(v)?);
            Ok(())
        },
    },
    Setting {
        name: "journal_size",
        apply: |a, v| {
            a.journal_size = parse_journal_size(v)?;
            Ok(())
        },
    },
    Setting {
        name: "drain_timeout",
        apply: |a, v| {
            a.drain_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "read_ahead",
        apply: |a, v| {
            a.read_ahead = parse_count(v)?;
            Ok(())
        },
    },
    Setting {
        name: "file_mode",
        apply: |a, v| {
            a.file_mode = Some(parse_octal(v)?);
            Ok(())
        },
    },
    Setting {
        name: "dir_mode",
        apply: |a, v| {
            a.dir_mode = Some(parse_octal(v)?);
            Ok(())
        },
    },
];

/// Options that belong to `mount(8)`, `mount.fuse3` or the kernel's generic mount flags, not to
/// bwmediafs: accepted and ignored. (`nodev` and `nosuid` always hold: the mount is made with
/// them.)
const IGNORED: &[&str] = &[
    "defaults",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "diratime",
    "nodiratime",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "sync",
    "async",
    "silent",
    "loud",
    "default_permissions",
];

/// Prefixes of ignored options with a value or a family of names: `x-systemd.automount`,
/// `x-gvfs-show`, `comment=...`.
const IGNORED_PREFIXES: &[&str] = &["x-", "comment="];

impl Args {
    /// Sort out the positionals (`MOUNTPOINT` or `SOURCE MOUNTPOINT`) and apply the `-o`
    /// options: settings override their flags, the rest are returned as [`MountFlags`].
    pub fn resolve(&mut self) -> Result<MountFlags, String> {
        let mut places = self.places.iter();
        let (source, mountpoint) = match (places.next(), places.next()) {
            (Some(s), Some(m)) => (Some(s), m),
            (Some(m), None) => (None, m),
            _ => return Err("give the MOUNTPOINT to mount on".to_string()),
        };
        self.mountpoint = PathBuf::from(mountpoint);
        self.source = source
            .map(|s| {
                s.to_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("the SOURCE {s:?} is not valid UTF-8"))
            })
            .transpose()?;
        if let Some(source) = &self.source {
            if source.contains(',') || source.chars().any(char::is_control) {
                return Err(format!(
                    "the SOURCE {source:?} cannot be a mount's name (no commas or control \
                     characters); use the account id, or any plain word"
                ));
            }
        }
        let options = std::mem::take(&mut self.options);
        let flags = parse_mount_flags(&options, Some(&mut *self));
        self.options = options;
        flags
    }

    /// The account id the SOURCE names: a SOURCE of 7 digits, as Bandwidth's account ids are.
    pub fn source_account(&self) -> Option<&str> {
        self.source
            .as_deref()
            .filter(|s| s.len() == 7 && s.bytes().all(|b| b.is_ascii_digit()))
    }
}

/// What `-o` said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountFlags {
    /// `ro`.
    pub read_only: bool,
    /// `allow_other`.
    pub allow_other: bool,
    /// `allow_root`.
    pub allow_root: bool,
    /// `uid=N`: the owner shown.
    pub uid: Option<u32>,
    /// `gid=N`: the group shown.
    pub gid: Option<u32>,
    /// `umask=NNN`: bits taken off the modes shown.
    pub umask: Option<u16>,
    /// `nonempty`: mount over a directory that has entries (hiding them).
    pub nonempty: bool,
    /// `auto_unmount`: the kernel mount goes when the process ends, even by `kill -9`.
    pub auto_unmount: bool,
    /// `writeback`: as `--writeback`.
    pub writeback: bool,
}

/// Parse every `-o` argument: the mount flags are returned, the settings applied to `args` (given
/// none, a setting is refused as unknown). Options that only matter to `mount(8)` itself
/// ([`IGNORED`]) are accepted and ignored.
pub fn parse_mount_flags(
    options: &[String],
    mut args: Option<&mut Args>,
) -> Result<MountFlags, String> {
    let mut flags = MountFlags::default();
    for opt in options
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        let number = |v: Option<&str>| -> Result<u32, String> {
            v.and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("-o {key} needs a number, as in {key}=1000"))
        };
        match key {
            "ro" => flags.read_only = true,
            "rw" => flags.read_only = false,
            "allow_other" => flags.allow_other = true,
            "allow_root" => flags.allow_root = true,
            "nonempty" => flags.nonempty = true,
            "auto_unmount" => flags.auto_unmount = true,
            "writeback" => flags.writeback = true,
            "uid" => flags.uid = Some(number(value)?),
            "gid" => flags.gid = Some(number(value)?),
            "umask" => {
                flags.umask = Some(
                    value
                        .ok_or_else(|| "-o umask needs an octal value, as in umask=022".to_string())
                        .and_then(parse_octal)?,
                )
            }
            _ if value.is_none() && IGNORED.contains(&key) => {}
            _ if IGNORED_PREFIXES.iter().any(|p| opt.starts_with(p)) => {}
            _ => {
                let setting = SETTINGS.iter().find(|s| s.name == key);
                match (setting, args.as_deref_mut(), value) {
                    (Some(setting), Some(args), Some(value)) => (setting.apply)(args, value)
                        .map_err(|e| format!("-o {key}={value}: {e}"))?,
                    (Some(_), Some(_), None) => {
                        return Err(format!("-o {key} needs a value, as in {key}=VALUE"))
                    }
                    _ => {
                        let settings: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
                        // The value of an unknown option is not repeated: it could be a
                        // secret someone tried to pass (`-o password=...`).
                        let opt = if value.is_some() {
                            format!("{key}=...")
                        } else {
                            opt.to_string()
                        };
                        return Err(format!(
                            "unknown mount option -o {opt}; known: ro, rw, allow_other, \
                             allow_root, uid=N, gid=N, umask=OCTAL, nonempty, auto_unmount, \
                             writeback, \
                             {}=VALUE, and \
                             the options of mount(8) (defaults, _netdev, nofail, x-*, ...)",
                            settings.join("=VALUE, ")
                        ));
                    }
                }
            }
        }
    }
    if flags.allow_other && flags.allow_root {
        return Err("-o allow_other and -o allow_root exclude each other; pick one".to_string());
    }
    Ok(flags)
}

/// The journal's size: a size such as 512M or 2G, at least 64M.
pub fn parse_journal_size(s: &str) -> Result<u64, String> {
    let size = parse_size(s)?;
    if size < 64 << 20 {
        return Err(format!(
            "{s:?} is too small for the write-back journal: give at least 64M"
        ));
    }
    Ok(size)
}

/// A count such as the read-ahead window: a whole number, 0 or more.
pub fn parse_count(s: &str) -> Result<usize, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number such as 8 (0 turns it off)"))
}

/// `644`, `0644` or `0o644`.
pub fn parse_octal(s: &str) -> Result<u16, String> {
    let digits = s.trim_start_matches("0o");
    u16::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{s:?} is not an octal mode such as 644"))
}

/// A byte count: `1048576`, `512K`, `64M`, `1.5G` (powers of 1024; a trailing `iB` or `B` is
/// allowed).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => {
                    return Err(format!(
                        "{s:?}: unknown unit; give a size such as 64M or 1.5G (units K, M, G, T)"
                    ))
                }
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let digits = digits.trim();
    let bytes = if digits.contains('.') {
        digits
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(|n| n * (1u64 << shift) as f64)
            .filter(|n| *n < u64::MAX as f64)
            .map(|n| n.round() as u64)
    } else {
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1u64 << shift))
    };
    bytes.ok_or_else(|| format!("{s:?} is not a size such as 64M, 1.5G or 1G"))
}

/// The smallest data cache: room for one media of up to 3.75 MB.
const MIN_CACHE: u64 = 4 << 20;

/// The size of the data cache: at least [`MIN_CACHE`], at most this machine's memory.
pub fn parse_cache_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if n < MIN_CACHE {
        return Err(format!(
            "{s:?} is too small: the cache needs room for one media of up to 3.75 MB; give at \
             least 4M"
        ));
    }
    if let Some(memory) = physical_memory() {
        if n > memory {
            return Err(format!(
                "{s:?} is more than this machine's {} MiB of memory; give at most that",
                memory >> 20
            ));
        }
    }
    Ok(n)
}

/// The machine's memory, from `/proc/meminfo`.
fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// A duration such as `10s`, `500ms` or `2m`; never negative.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!(
            "{s:?}: a duration cannot be negative; give one such as 10s, 500ms or 2m"
        ));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{s:?} is not a duration such as 10s, 500ms or 2m ({e})"))
}

/// The timeout of one request: a duration, more than zero.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "{s:?}: the timeout must be more than 0, or no request could be answered; give one \
             such as 30s"
        ));
    }
    Ok(d)
}

/// Whether `url` (http or https) names a loopback host.
fn is_loopback(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// A local base URL with production's token URL is a forgotten `--token-url` (the token request
/// would go to Bandwidth and fail after its retries): say so before anything is sent.
pub fn check_token_url(
    base_url: &str,
    token_url: &str,
    default_token_url: &str,
) -> Result<(), String> {
    if is_loopback(base_url) && !is_loopback(token_url) && token_url == default_token_url {
        let origin = base_url.split("/api/").next().unwrap_or(base_url);
        return Err(format!(
            "the base URL {base_url} is local but the token URL is Bandwidth's production one; \
             set --token-url (or BW_TOKEN_URL) to the local one, such as \
             {origin}/api/v1/oauth2/token"
        ));
    }
    Ok(())
}

/// Refuse plain http to anything but loopback unless the user asked for it.
pub fn check_transport_security(url: &str, allow_insecure_http: bool) -> Result<(), String> {
    if url.strip_prefix("http://").is_none() {
        return if url.starts_with("https://") {
            Ok(())
        } else {
            Err(format!("{url:?} is not an http(s) URL"))
        };
    }
    if is_loopback(url) || allow_insecure_http {
        Ok(())
    } else {
        Err(format!(
            "refusing plain-http URL {url}: credentials would cross the network unencrypted; \
             use https, or pass --allow-insecure-http if you really mean it"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_parse_as_mount_users_expect() {
        let f = parse_mount_flags(
            &["ro,allow_other".into(), "uid=1000,gid=100,umask=027".into()],
            None,
        )
        .unwrap();
        assert_eq!(
            f,
            MountFlags {
                read_only: true,
                allow_other: true,
                allow_root: false,
                uid: Some(1000),
                gid: Some(100),
                umask: Some(0o027),
                nonempty: false,
                auto_unmount: false,
                writeback: false,
            }
        );
        assert!(parse_mount_flags(&["noatime,_netdev".into()], None).is_ok());
        assert!(
            parse_mount_flags(&["writeback".into()], None)
                .unwrap()
                .writeback
        );
        assert!(
            parse_mount_flags(&["auto_unmount".into()], None)
                .unwrap()
                .auto_unmount
        );
        assert!(parse_mount_flags(&["bogus".into()], None)
            .unwrap_err()
            .contains("unknown"));
        assert!(parse_mount_flags(&["uid=me".into()], None)
            .unwrap_err()
            .contains("number"));
        assert!(parse_mount_flags(&["allow_other,allow_root".into()], None).is_err());
    }

    fn resolved(argv: &[&str]) -> Result<(Args, MountFlags), String> {
        let mut args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        let flags = args.resolve()?;
        Ok((args, flags))
    }

    #[test]
    fn every_setting_is_also_an_o_option_with_the_flags_parser() {
        let (a, f) = resolved(&[
            "bwmediafs",
            "--cache-size",
            "64M",
            "-o",
            "credentials=/etc/bw,cache_size=1.5G,metadata_ttl=2s,timeout=5s,retry_time=0s",
            "-o",
            "base_url=https://b/api/v2,token_url=https://t/token,log_file=/l,recovery_dir=/r",
            "-o",
            "read_ahead=0,file_mode=600,dir_mode=0700,allow_other,_netdev,nofail,defaults",
            "-o",
            "x-systemd.automount,x-gvfs-show,comment=x,dev,suid,rw,noatime,users,noauto",
            "9900000",
            "/mnt/media",
        ])
        .unwrap();
        assert_eq!(a.source.as_deref(), Some("9900000"));
        assert_eq!(a.source_account(), Some("9900000"));
        assert_eq!(a.mountpoint, PathBuf::from("/mnt/media"));
        assert_eq!(a.credentials, Some(PathBuf::from("/etc/bw")));
        assert_eq!(a.cache_size, 3 << 29, "-o overrides the flag");
        assert_eq!(a.metadata_ttl, Duration::from_secs(2));
        assert_eq!(a.timeout, Duration::from_secs(5));
        assert_eq!(a.retry_time, Duration::ZERO);
        assert_eq!(a.base_url.as_deref(), Some("https://b/api/v2"));
        assert_eq!(a.token_url.as_deref(), Some("https://t/token"));
        assert_eq!(a.log_file, Some(PathBuf::from("/l")));
        assert_eq!(a.recovery_dir, Some(PathBuf::from("/r")));
        assert_eq!(a.read_ahead, 0);
        assert_eq!((a.file_mode, a.dir_mode), (Some(0o600), Some(0o700)));
        assert!(f.allow_other && !f.read_only);
    }

    #[test]
    fn one_place_is_the_mountpoint_and_bad_settings_name_themselves() {
        let (a, _) = resolved(&["bwmediafs", "/mnt/media"]).unwrap();
        assert_eq!(
            (a.source, a.mountpoint),
            (None, PathBuf::from("/mnt/media"))
        );
        let (a, _) = resolved(&["bwmediafs", "media-of-shop", "/m"]).unwrap();
        assert_eq!(a.source_account(), None, "only 7 digits are an account id");
        assert!(resolved(&["bwmediafs", "a", "b", "c"]).is_err());
        let e = resolved(&["bwmediafs", "-o", "timeout=0s", "/m"]).unwrap_err();
        assert!(
            e.contains("-o timeout=0s") && e.contains("more than 0"),
            "{e}"
        );
        let e = resolved(&["bwmediafs", "-o", "cache_size", "/m"]).unwrap_err();
        assert!(e.contains("needs a value"), "{e}");
        let e = resolved(&["bwmediafs", "-o", "read_ahead=-1", "/m"]).unwrap_err();
        assert!(e.contains("whole number"), "{e}");
        let e = resolved(&["bwmediafs", "-o", "rw,frobnicate", "/m"]).unwrap_err();
        assert!(e.contains("unknown mount option -o frobnicate;"), "{e}");
        let e = resolved(&["bwmediafs", "-o", "password=s3cr3t", "/m"]).unwrap_err();
        assert!(
            e.contains("-o password=...") && !e.contains("s3cr3t"),
            "{e}"
        );
        assert!(e.contains("credentials=VALUE"), "{e}");
        let e = resolved(&["bwmediafs", "a,b", "/m"]).unwrap_err();
        assert!(e.contains("comma"), "{e}");
    }

    #[test]
    fn sizes_and_modes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("12Q").is_err());
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("0.5K"), Ok(512));
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_octal("0644"), Ok(0o644));
        assert!(parse_octal("9").is_err());
    }

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        assert!(check_transport_security("http://127.0.0.1:8080/api/v2", false).is_ok());
        assert!(check_transport_security("http://localhost/api", false).is_ok());
        assert!(check_transport_security("http://[::1]:80/x", false).is_ok());
        assert!(check_transport_security("https://messaging.bandwidth.com/api/v2", false).is_ok());
        let e = check_transport_security("http://10.1.2.3/api", false).unwrap_err();
        assert!(e.contains("--allow-insecure-http"), "{e}");
        assert!(check_transport_security("http://example.com/api", true).is_ok());
        assert!(check_transport_security("ftp://x", true).is_err());
    }

    #[test]
    fn bad_values_say_what_is_wrong_and_what_is_allowed() {
        assert!(parse_cache_size("0").unwrap_err().contains("at least 4M"));
        assert!(parse_cache_size("1000T").unwrap_err().contains("memory"));
        assert_eq!(parse_cache_size("64M"), Ok(64 << 20));
        assert!(parse_duration("-5s")
            .unwrap_err()
            .contains("cannot be negative"));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_timeout("0s").unwrap_err().contains("more than 0"));
        assert_eq!(parse_timeout("3s"), Ok(Duration::from_secs(3)));
    }
}
