//! `bwmediafs status MOUNTPOINT [--json]`: what a mount has not sent to the server yet, what
//! the server refused, and the mount's counters (requests by kind, bytes each way, retries,
//! cache hits; `crate::api::Counters` defines each), read from the `user.bandwidth.status`
//! attribute of the mount's root (so it needs no socket and works for any user who can read
//! the mount).
//!
//! Exit status: 0 when nothing is pending, 1 when some is, 2 when the server refused something
//! for good, 3 when the status cannot be read.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::fs::XATTR_STATUS;

/// Show what a bwmediafs mount has not uploaded yet, and its counters.
#[derive(Debug, Parser)]
#[command(name = "bwmediafs status")]
pub struct StatusArgs {
    /// The mountpoint of a running bwmediafs.
    pub mountpoint: PathBuf,
    /// Print the status as JSON (writeback, pending, pending_bytes, oldest_pending_seconds,
    /// failing, failed: [{name, error}], journal, counters: {requests: {list, get, put, delete,
    /// token}, bytes_up, bytes_down, retries, cache_hits}).
    #[arg(long)]
    pub json: bool,
}

/// Run `bwmediafs status` with `args` (what follows `status`); the exit status.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let argv = std::iter::once(OsString::from("bwmediafs status")).chain(args);
    let args = match StatusArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 3 } else { 0 };
        }
    };
    let text = match read_status(&args.mountpoint) {
        Ok(t) => t,
        Err(message) => {
            eprintln!("bwmediafs status: {message}");
            return 3;
        }
    };
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("bwmediafs status: the mount answered something else than its status: {e}");
            return 3;
        }
    };
    if args.json {
        println!("{value}");
    } else {
        print!("{}", describe(&args.mountpoint, &value));
    }
    exit_status(&value)
}

/// 2 when something failed for good, 1 when something is pending, else 0.
pub fn exit_status(value: &serde_json::Value) -> i32 {
    let failed = value["failed"].as_array().is_some_and(|f| !f.is_empty());
    let pending = value["pending"].as_u64().unwrap_or(0);
    match (failed, pending) {
        (true, _) => 2,
        (false, 0) => 0,
        (false, _) => 1,
    }
}

/// The status in words, the counters last.
pub fn describe(mountpoint: &Path, value: &serde_json::Value) -> String {
    let mut out = describe_pending(mountpoint, value);
    if let Some(counters) = describe_counters(&value["counters"]) {
        out.push_str(&counters);
    }
    out
}

/// What is pending and what was refused, in words.
fn describe_pending(mountpoint: &Path, value: &serde_json::Value) -> String {
    let mut out = String::new();
    let mnt = mountpoint.display();
    if value["writeback"] != serde_json::Value::Bool(true) {
        out.push_str(&format!(
            "{mnt}: without --writeback every close uploads before it returns: nothing pending\n"
        ));
        return out;
    }
    let pending = value["pending"].as_u64().unwrap_or(0);
    if pending == 0 {
        out.push_str(&format!("{mnt}: everything is on the server\n"));
    } else {
        let bytes = value["pending_bytes"].as_u64().unwrap_or(0);
        let oldest = value["oldest_pending_seconds"]
            .as_u64()
            .map(|s| format!(", the oldest staged {s} s ago"))
            .unwrap_or_default();
        let changes = if pending == 1 { "change" } else { "changes" };
        out.push_str(&format!(
            "{mnt}: {pending} {changes} pending ({:.1} MiB staged{oldest})\n",
            bytes as f64 / (1024.0 * 1024.0)
        ));
    }
    if value["failing"] == serde_json::Value::Bool(true) {
        out.push_str(
            "uploads are failing (see the mount's log); they are tried again, and closes upload \
             themselves meanwhile\n",
        );
    }
    if let Some(failed) = value["failed"].as_array().filter(|f| !f.is_empty()) {
        out.push_str("refused by the server for good (the bytes are in the recovery folder):\n");
        for f in failed {
            out.push_str(&format!(
                "  {}: {}\n",
                f["name"].as_str().unwrap_or("?"),
                f["error"].as_str().unwrap_or("?")
            ));
        }
    }
    out
}

/// The counters in two lines, such as "requests: 3 list, 10 get, 5 put, 0 delete, 1 token" and
/// "1.2 MiB up, 3.4 MiB down; 2 retries; 7 cache hits"; `None` from a mount that shows none
/// (of a version without them).
fn describe_counters(counters: &serde_json::Value) -> Option<String> {
    if !counters.is_object() {
        return None;
    }
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let requests = &counters["requests"];
    let kinds: Vec<String> = ["list", "get", "put", "delete", "token"]
        .iter()
        .map(|k| format!("{} {k}", n(&requests[*k])))
        .collect();
    let plural = |count: u64, one: &str, many: &str| {
        format!("{count} {}", if count == 1 { one } else { many })
    };
    Some(format!(
        "requests: {}\n{} up, {} down; {}; {}\n",
        kinds.join(", "),
        human_bytes(n(&counters["bytes_up"])),
        human_bytes(n(&counters["bytes_down"])),
        plural(n(&counters["retries"]), "retry", "retries"),
        plural(n(&counters["cache_hits"]), "cache hit", "cache hits"),
    ))
}

/// `bytes` for a reader: "512 B", "48.2 KiB", "3.4 MiB", "1.2 GiB".
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn read_status(mountpoint: &Path) -> Result<String, String> {
    let path = CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| "the mountpoint holds a NUL byte".to_string())?;
    let name = CString::new(XATTR_STATUS).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: both strings are NUL-terminated and `buf` is as long as we say.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => format!(
                "{} is not the root of a bwmediafs mount (or one of a version without status)",
                mountpoint.display()
            ),
            _ => format!("cannot read the status of {}: {e}", mountpoint.display()),
        });
    }
    buf.truncate(n as usize);
    String::from_utf8(buf).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_in_words() {
        let value = serde_json::json!({
            "writeback": false,
            "pending": 0,
            "failed": [],
            "counters": {
                "requests": {"list": 3, "get": 10, "put": 5, "delete": 0, "token": 1},
                "bytes_up": 1_258_291,
                "bytes_down": 500,
                "retries": 1,
                "cache_hits": 7,
            },
        });
        let text = describe(Path::new("/mnt/media"), &value);
        assert_eq!(
            text,
            "/mnt/media: without --writeback every close uploads before it returns: nothing \
             pending\nrequests: 3 list, 10 get, 5 put, 0 delete, 1 token\n1.2 MiB up, 500 B \
             down; 1 retry; 7 cache hits\n"
        );
        assert_eq!(exit_status(&value), 0);
        // A mount of a version without counters: no counter line.
        let old = serde_json::json!({"writeback": false, "pending": 0, "failed": []});
        assert!(!describe(Path::new("/m"), &old).contains("requests"));
    }

    #[test]
    fn bytes_in_words() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(49_357), "48.2 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
