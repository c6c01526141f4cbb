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
            .map(|(k, v)| (k.to_string(), (v.to_string(), None)))
            .collect::<Vars>()
    };
    let a = from_vars(
        &vars(&[
            ("BW_ACCOUNT_ID", "1"),
            ("BW_USERNAME", "u"),
            ("BW_PASSWORD", "p"),
        ]),
        "here",
        false,
        None,
    )
    .unwrap();
    assert!(matches!(a.credentials, Credentials::Basic { .. }));
    let e = from_vars(&vars(&[("BW_USERNAME", "u")]), "here", false, None).unwrap_err();
    assert!(e.contains("BW_ACCOUNT_ID"), "{e}");
    let e = from_vars(
        &vars(&[("BW_ACCOUNT_ID", "1"), ("BW_CLIENT_ID", "x")]),
        "here",
        false,
        None,
    )
    .unwrap_err();
    assert!(e.contains("BW_CLIENT_SECRET"), "{e}");
    let e = from_vars(&vars(&[("BW_ACCOUNT_ID", "1")]), "here", false, None).unwrap_err();
    assert!(e.contains("BW_CLIENT_ID and BW_CLIENT_SECRET"), "{e}");
}

#[test]
fn the_source_gives_the_account_id_only_when_none_is_set() {
    let vars = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (v.to_string(), None)))
            .collect::<Vars>()
    };
    let secret = [("BW_USERNAME", "u"), ("BW_PASSWORD", "p")];
    let a = from_vars(&vars(&secret), "here", false, Some("9900001")).unwrap();
    assert_eq!(a.account_id, "9900001");
    let mut with_id = secret.to_vec();
    with_id.push(("BW_ACCOUNT_ID", "9900000"));
    let a = from_vars(&vars(&with_id), "here", false, Some("9900001")).unwrap();
    assert_eq!(a.account_id, "9900000");
}

#[test]
fn misspelt_keys_and_half_pairs_are_named() {
    let f = write_file(
        0o600,
        "BW_ACCOUNT_ID=1\nBW_CLIENT_ID=id\nBW_CLIENT_SECERT=s\nNOTE=x\n",
    );
    let e = resolve(Some(f.path()), None).unwrap_err();
    assert!(e.contains("BW_CLIENT_SECRET is not"), "{e}");
    assert!(
        e.contains("BW_CLIENT_SECERT (line 3)") && e.contains("did you mean BW_CLIENT_SECRET?"),
        "{e}"
    );
    assert!(e.contains("NOTE (line 4)"), "{e}");
    // The environment holds other programs' BW_* too: only near misses are named there.
    let env = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (v.to_string(), None)))
            .collect::<Vars>()
    };
    let a = from_vars(
        &env(&[
            ("BW_ACCOUNT_ID", "1"),
            ("BW_USERNAME", "u"),
            ("BW_PASSWORD", "p"),
            ("BW_NUMBER", "+19195550000"),
            ("BW_ACOUNT_ID", "2"),
        ]),
        "in the environment",
        false,
        None,
    )
    .unwrap();
    assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
    assert!(a.warnings[0].contains("did you mean BW_ACCOUNT_ID?"));
    let e = from_vars(
        &env(&[("BW_ACCOUNT_ID", "1"), ("BW_PASSWORD", "p")]),
        "here",
        false,
        None,
    )
    .unwrap_err();
    assert!(
        e.contains("BW_PASSWORD is set here but BW_USERNAME is not"),
        "{e}"
    );
}

#[test]
fn a_line_without_equals_is_reported_by_number() {
    assert_eq!(parse("A=1\n\nnonsense\n"), Err(3));
    // A space for the `=`: the key would carry the secret into the warning; the line is
    // refused by its number.
    assert_eq!(parse("BW_CLIENT_SECRET Zm9vYmFy==\n"), Err(1));
    assert_eq!(parse("1BAD=x\n"), Err(1));
}
