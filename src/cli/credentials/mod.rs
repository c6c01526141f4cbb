//! Where the account id and the secrets come from: the environment or a credentials file that
//! only its owner can read. Never from flags, which any local user sees in `ps`.
//!
//! The file holds the same `KEY=VALUE` lines as the environment (`BW_ACCOUNT_ID`,
//! `BW_CLIENT_ID`, `BW_CLIENT_SECRET`, `BW_USERNAME`, `BW_PASSWORD`, optionally `BW_BASE_URL`
//! and `BW_TOKEN_URL`); `#` starts a comment, `export ` and quotes are allowed so a shell can
//! source the same file.
//!
//! Under systemd, `LoadCredential=bwmediafs:FILE` puts such a file at
//! `$CREDENTIALS_DIRECTORY/bwmediafs` (readable by the service only); it is read when no file is
//! given, before the environment. Under `mount(8)` the environment is not the user's, so a
//! mount from fstab names its file with `-o credentials=FILE`. The account id may also come from
//! the mount's SOURCE (7 digits) when the credentials set none.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::api::auth::Credentials;

/// The account and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct Account {
    /// The 7-digit account id.
    pub account_id: String,
    /// How to authenticate.
    pub credentials: Credentials,
    /// `BW_BASE_URL` from the file, when it sets it.
    pub base_url: Option<String>,
    /// `BW_TOKEN_URL` from the file, when it sets it.
    pub token_url: Option<String>,
    /// What the user should hear although the credentials are usable: keys that are not
    /// settings (a misspelling), a half of a pair that is not used.
    pub warnings: Vec<String>,
}

/// Every key the credentials may set.
pub const KEYS: &[&str] = &[
    "BW_ACCOUNT_ID",
    "BW_CLIENT_ID",
    "BW_CLIENT_SECRET",
    "BW_USERNAME",
    "BW_PASSWORD",
    "BW_BASE_URL",
    "BW_TOKEN_URL",
];

/// The name of the credential systemd's `LoadCredential=` provides in `$CREDENTIALS_DIRECTORY`.
pub const SYSTEMD_CREDENTIAL: &str = "bwmediafs";

/// The systemd credential file, when the service has one.
fn systemd_credential() -> Option<PathBuf> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty())?;
    let path = Path::new(&dir).join(SYSTEMD_CREDENTIAL);
    path.exists().then_some(path)
}

/// `KEY=VALUE` settings, and the line each came from (none for the environment).
type Vars = HashMap<String, (String, Option<usize>)>;

/// Read credentials from `file` when given, else from systemd's credential
/// (`$CREDENTIALS_DIRECTORY/bwmediafs`) when there is one, else from the process environment.
/// `source_account` (the mount's 7-digit SOURCE) is the account id when none is set.
pub fn resolve(file: Option<&Path>, source_account: Option<&str>) -> Result<Account, String> {
    let file = file.map(Path::to_path_buf).or_else(systemd_credential);
    let (vars, origin) = match &file {
        Some(path) => (read_file(path)?, format!("in {}", path.display())),
        None => (
            std::env::vars()
                .filter(|(k, _)| k.starts_with("BW_"))
                .map(|(k, v)| (k, (v, None)))
                .collect(),
            "in the environment".to_string(),
        ),
    };
    from_vars(&vars, &origin, file.is_some(), source_account)
}

/// The known key `key` may be a misspelling of (two edits at most), if any.
fn near_miss(key: &str) -> Option<&'static str> {
    KEYS.iter()
        .copied()
        .filter(|k| strsim::damerau_levenshtein(k, key) <= 2)
        .min_by_key(|k| strsim::damerau_levenshtein(k, key))
}

/// One sentence per key that is not a setting. A file is ours, so every such key is named; the
/// environment holds other programs' `BW_*` variables too, so there only near misses are.
fn unknown_keys(vars: &Vars, origin: &str, whole_file: bool) -> Vec<String> {
    let mut found: Vec<(&String, Option<usize>)> = vars
        .iter()
        .filter(|(k, _)| !KEYS.contains(&k.as_str()))
        .filter(|(k, _)| whole_file || near_miss(k).is_some())
        .map(|(k, (_, line))| (k, *line))
        .collect();
    found.sort_by_key(|(k, line)| (*line, k.to_string()));
    found
        .into_iter()
        .map(|(key, line)| {
            let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
            let guess = match near_miss(key) {
                Some(known) => format!("; did you mean {known}?"),
                None => format!("; the settings are {}", KEYS.join(", ")),
            };
            format!("{key}{at} {origin} is not a setting of bwmediafs and is ignored{guess}")
        })
        .collect()
}

fn from_vars(
    vars: &Vars,
    origin: &str,
    whole_file: bool,
    source_account: Option<&str>,
) -> Result<Account, String> {
    let get = |k: &str| {
        vars.get(k)
            .map(|(v, _)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut warnings = unknown_keys(vars, origin, whole_file);
    // An error says what is wrong, then what else looks wrong (a misspelt key, usually).
    let fail = |message: String, warnings: &[String]| {
        let mut all = vec![message];
        all.extend(warnings.iter().cloned());
        Err(all.join("; also, "))
    };
    let account_id = match get("BW_ACCOUNT_ID").or(source_account.map(str::to_string)) {
        Some(id) => id,
        None => {
            return fail(
                format!(
                    "no account id {origin}: set BW_ACCOUNT_ID to your Bandwidth account id, or \
                     give it as the SOURCE (`bwmediafs 9900000 MOUNTPOINT`), or try \
                     `bwmediafs --demo MOUNTPOINT` to use the built-in emulator"
                ),
                &warnings,
            )
        }
    };
    let half = |set: &str, unset: &str| format!("{set} is set {origin} but {unset} is not");
    let credentials = match (
        get("BW_CLIENT_ID"),
        get("BW_CLIENT_SECRET"),
        get("BW_USERNAME"),
        get("BW_PASSWORD"),
    ) {
        (Some(client_id), Some(client_secret), username, password) => {
            if username.is_some() || password.is_some() {
                warnings.push(format!(
                    "BW_USERNAME and BW_PASSWORD {origin} are ignored: the OAuth2 client \
                     credentials (BW_CLIENT_ID, BW_CLIENT_SECRET) are used"
                ));
            }
            Credentials::OAuth2 {
                client_id,
                client_secret,
            }
        }
        (Some(_), None, _, _) => return fail(half("BW_CLIENT_ID", "BW_CLIENT_SECRET"), &warnings),
        (None, Some(_), _, _) => return fail(half("BW_CLIENT_SECRET", "BW_CLIENT_ID"), &warnings),
        (None, None, Some(username), Some(password)) => Credentials::Basic { username, password },
        (None, None, Some(_), None) => return fail(half("BW_USERNAME", "BW_PASSWORD"), &warnings),
        (None, None, None, Some(_)) => return fail(half("BW_PASSWORD", "BW_USERNAME"), &warnings),
        (None, None, None, None) => {
            return fail(
                format!(
                    "no credentials {origin}: set BW_CLIENT_ID and BW_CLIENT_SECRET (OAuth2 \
                     client credentials, created in the Bandwidth App), or pass \
                     --credentials FILE (-o credentials=FILE) with them; BW_USERNAME and \
                     BW_PASSWORD (an API user, HTTP Basic) serve only emulators and accounts \
                     that kept one"
                ),
                &warnings,
            )
        }
    };
    Ok(Account {
        account_id,
        credentials,
        base_url: get("BW_BASE_URL"),
        token_url: get("BW_TOKEN_URL"),
        warnings,
    })
}

/// Parse a credentials file, refusing one that group or others may read, or that belongs to
/// another user than the one mounting (or root): as ssh does with its own files, since the
/// owner of the file decides which account is mounted and where its credentials are sent.
fn read_file(path: &Path) -> Result<Vars, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the credentials file {}: {e}", path.display()))?;
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "refusing the credentials file {}: it belongs to user id {}, not to you (user id \
             {me}) or root, and its owner could change which account is mounted and where the \
             credentials are sent; use a file of your own (or `chown {me} {}`)",
            path.display(),
            meta.uid(),
            path.display()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "refusing the credentials file {}: its mode {mode:03o} lets other users read the \
             secrets in it; run `chmod 600 {}` first",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the credentials file {}: {e}", path.display()))?;
    parse(&text).map_err(|line| {
        format!(
            "the credentials file {} has a line that is not KEY=VALUE (line {line})",
            path.display()
        )
    })
}

/// `KEY=VALUE` lines, each with its 1-based line number; the error is the number of the first
/// bad line.
fn parse(text: &str) -> Result<Vars, usize> {
    let mut vars = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line.split_once('=').ok_or(i + 1)?;
        // A key is a name. Anything else is a broken line, said by its number only: its text
        // may hold a secret (`BW_CLIENT_SECRET abc==` splits at the padding).
        let k = k.trim();
        let is_name = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_name {
            return Err(i + 1);
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        vars.insert(k.to_string(), (v.to_string(), Some(i + 1)));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests;
