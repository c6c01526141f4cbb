//! The command line of `bwmediafs`: flags, `-o` mount options as `mount` users know them, sizes.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Mount a Bandwidth account's media store as a directory.
///
/// Every media of the account appears as a file (names with `/` as directories); ls, cp, rm, mv,
/// editors and rsync work on them. Reads fetch a media once and keep it in memory; writes are
/// uploaded when the file is closed, and close reports a failed upload.
///
/// Credentials come from the environment (never from flags, which other users see in `ps`):
///   BW_ACCOUNT_ID                       your account id
///   BW_CLIENT_ID + BW_CLIENT_SECRET     OAuth2 client credentials (preferred)
///   BW_USERNAME  + BW_PASSWORD          or an API user (legacy)
/// or from a file given with --credentials holding the same KEY=VALUE lines (mode 600).
///
/// Try it without an account:   bwmediafs --demo /tmp/media
/// Unmount with:                umount /tmp/media   (or fusermount3 -u /tmp/media)
#[derive(Debug, Parser)]
#[command(name = "bwmediafs", version, verbatim_doc_comment)]
pub struct Args {
    /// The empty directory to mount the media store on (see -o nonempty).
    pub mountpoint: PathBuf,

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
    /// nonempty (mount over a directory that has entries).
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
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub read_ahead: usize,

    /// How long a listing is reused before the store is asked again; changes made elsewhere
    /// show up after this.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub metadata_ttl: Duration,

    /// Where the bytes of a file whose upload failed for good are kept, to re-upload later.
    /// Default: $XDG_STATE_HOME/bwmediafs/recovery (~/.local/state/bwmediafs/recovery).
    #[arg(long, value_name = "DIR")]
    pub recovery_dir: Option<PathBuf>,

    /// Timeout of one HTTP request (more than 0).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout, allow_hyphen_values = true)]
    pub timeout: Duration,

    /// How long one operation keeps retrying a failing server before it fails with EIO.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub retry_time: Duration,

    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Write the log to this file (useful in the background, where standard error is closed).
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
}

/// Parse every `-o` argument. Options that only matter to `mount` itself (`rw`, `dev`, `suid`,
/// `noatime`, `_netdev`, ...) are accepted and ignored, so fstab lines work.
pub fn parse_mount_flags(options: &[String]) -> Result<MountFlags, String> {
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
            "uid" => flags.uid = Some(number(value)?),
            "gid" => flags.gid = Some(number(value)?),
            "umask" => {
                flags.umask = Some(
                    value
                        .ok_or_else(|| "-o umask needs an octal value, as in umask=022".to_string())
                        .and_then(parse_octal)?,
                )
            }
            "dev"
            | "nodev"
            | "suid"
            | "nosuid"
            | "exec"
            | "noexec"
            | "atime"
            | "noatime"
            | "relatime"
            | "auto"
            | "noauto"
            | "user"
            | "nouser"
            | "users"
            | "_netdev"
            | "nofail"
            | "default_permissions"
            | "async" => {}
            _ => {
                return Err(format!(
                    "unknown mount option -o {opt}; known: ro, rw, allow_other, allow_root, \
                     uid=N, gid=N, umask=OCTAL, nonempty"
                ))
            }
        }
    }
    if flags.allow_other && flags.allow_root {
        return Err("-o allow_other and -o allow_root exclude each other; pick one".to_string());
    }
    Ok(flags)
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
        let f = parse_mount_flags(&["ro,allow_other".into(), "uid=1000,gid=100,umask=027".into()])
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
            }
        );
        assert!(parse_mount_flags(&["noatime,_netdev".into()]).is_ok());
        assert!(parse_mount_flags(&["bogus".into()])
            .unwrap_err()
            .contains("unknown"));
        assert!(parse_mount_flags(&["uid=me".into()])
            .unwrap_err()
            .contains("number"));
        assert!(parse_mount_flags(&["allow_other,allow_root".into()]).is_err());
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
