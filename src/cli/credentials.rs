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
use std::os::unix::fs::PermissionsExt;
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
}

/// The name of the credential systemd's `LoadCredential=` provides in `$CREDENTIALS_DIRECTORY`.
pub const SYSTEMD_CREDENTIAL: &str = "bwmediafs";

/// The systemd credential file, when the service has one.
fn systemd_credential() -> Option<PathBuf> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty())?;
    let path = Path::new(&dir).join(SYSTEMD_CREDENTIAL);
    path.exists().then_some(path)
}

/// Read credentials from `file` when given, else from systemd's credential
/// (`$CREDENTIALS_DIRECTORY/bwmediafs`) when there is one, else from the process environment.
/// `source_account` (the mount's 7-digit SOURCE) is the account id when none is set.
pub fn resolve(file: Option<&Path>, source_account: Option<&str>) -> Result<Account, String> {
    let file = file.map(Path::to_path_buf).or_else(systemd_credential);
    let vars = match &file {
        Some(path) => read_file(path)?,
        None => std::env::vars()
            .filter(|(k, _)| k.starts_with("BW_"))
            .collect(),
    };
    let origin = match &file {
        Some(path) => format!("in {}", path.display()),
        None => "in the environment".to_string(),
    };
    from_vars(&vars, &origin, source_account)
}

fn from_vars(
    vars: &HashMap<String, String>,
    origin: &str,
    source_account: Option<&str>,
) -> Result<Account, String> {
    let get = |k: &str| {
        vars.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let account_id = get("BW_ACCOUNT_ID").or(source_account.map(str::to_string));
    let account_id = account_id.ok_or_else(|| {
        format!(
            "no account id {origin}: set BW_ACCOUNT_ID to your Bandwidth account id, or give \
             it as the SOURCE (`bwmediafs 9900000 MOUNTPOINT`), or try \
             `bwmediafs --demo MOUNTPOINT` to use the built-in emulator"
        )
    })?;
    let credentials = match (
        get("BW_CLIENT_ID"),
        get("BW_CLIENT_SECRET"),
        get("BW_USERNAME"),
        get("BW_PASSWORD"),
    ) {
        (Some(client_id), Some(client_secret), _, _) => Credentials::OAuth2 {
            client_id,
            client_secret,
        },
        (Some(_), None, _, _) => {
            return Err(format!(
                "BW_CLIENT_ID is set {origin} but BW_CLIENT_SECRET is not"
            ))
        }
        (None, Some(_), _, _) => {
            return Err(format!(
                "BW_CLIENT_SECRET is set {origin} but BW_CLIENT_ID is not"
            ))
        }
        (None, None, Some(username), Some(password)) => Credentials::Basic { username, password },
        (None, None, Some(_), None) => {
            return Err(format!(
                "BW_USERNAME is set {origin} but BW_PASSWORD is not"
            ))
        }
        _ => {
            return Err(format!(
                "no credentials {origin}: set BW_CLIENT_ID and BW_CLIENT_SECRET (OAuth2, \
                 preferred) or BW_USERNAME and BW_PASSWORD (API user), or pass --credentials FILE \
                 (-o credentials=FILE)"
            ))
        }
    };
    Ok(Account {
        account_id,
        credentials,
        base_url: get("BW_BASE_URL"),
        token_url: get("BW_TOKEN_URL"),
    })
}

/// Parse a credentials file, refusing one that group or others may read.
fn read_file(path: &Path) -> Result<HashMap<String, String>, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the credentials file {}: {e}", path.display()))?;
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

/// `KEY=VALUE` lines; the error is the 1-based number of the first bad line.
fn parse(text: &str) -> Result<HashMap<String, String>, usize> {
    let mut vars = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line.split_once('=').ok_or(i + 1)?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        vars.insert(k.trim().to_string(), v.to_string());
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_file(mode: u32, text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn a_private_file_gives_oauth2_credentials() {
        let f = write_file(
            0o600,
            "# mine\nexport BW_ACCOUNT_ID=9900000\nBW_CLIENT_ID='id'\nBW_CLIENT_SECRET=\"s3cr=t\"\n",
        );
        let a = resolve(Some(f.path()), None).unwrap();
        assert_eq!(a.account_id, "9900000");
        match a.credentials {
            Credentials::OAuth2 {
                client_id,
                client_secret,
            } => assert_eq!(
                (client_id.as_str(), client_secret.as_str()),
                ("id", "s3cr=t")
            ),
            other => panic!("expected OAuth2, got {other:?}"),
        }
    }

    #[test]
    fn a_file_others_can_read_is_refused_with_the_fix() {
        let f = write_file(0o644, "BW_ACCOUNT_ID=1\nBW_USERNAME=u\nBW_PASSWORD=p\n");
        let err = resolve(Some(f.path()), None).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(!err.contains("BW_PASSWORD=p"));
    }

    #[test]
    fn basic_credentials_and_missing_pieces() {
        let vars = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let a = from_vars(
            &vars(&[
                ("BW_ACCOUNT_ID", "1"),
                ("BW_USERNAME", "u"),
                ("BW_PASSWORD", "p"),
            ]),
            "here",
            None,
        )
        .unwrap();
        assert!(matches!(a.credentials, Credentials::Basic { .. }));
        let e = from_vars(&vars(&[("BW_USERNAME", "u")]), "here", None).unwrap_err();
        assert!(e.contains("BW_ACCOUNT_ID"), "{e}");
        let e = from_vars(
            &vars(&[("BW_ACCOUNT_ID", "1"), ("BW_CLIENT_ID", "x")]),
            "here",
            None,
        )
        .unwrap_err();
        assert!(e.contains("BW_CLIENT_SECRET"), "{e}");
        let e = from_vars(&vars(&[("BW_ACCOUNT_ID", "1")]), "here", None).unwrap_err();
        assert!(e.contains("BW_CLIENT_ID and BW_CLIENT_SECRET"), "{e}");
    }

    #[test]
    fn the_source_gives_the_account_id_only_when_none_is_set() {
        let vars = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let secret = [("BW_USERNAME", "u"), ("BW_PASSWORD", "p")];
        let a = from_vars(&vars(&secret), "here", Some("9900001")).unwrap();
        assert_eq!(a.account_id, "9900001");
        let mut with_id = secret.to_vec();
        with_id.push(("BW_ACCOUNT_ID", "9900000"));
        let a = from_vars(&vars(&with_id), "here", Some("9900001")).unwrap();
        assert_eq!(a.account_id, "9900000");
    }

    #[test]
    fn a_line_without_equals_is_reported_by_number() {
        assert_eq!(parse("A=1\n\nnonsense\n"), Err(3));
    }
}
