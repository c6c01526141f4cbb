//! The `bwmediafs` command line: what a user sees when something is wrong before mounting, and
//! the demo. Failures must end with one clear sentence, a non-zero exit and no mount left.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use bwmediafs::cli::mountpoint;

/// Run bwmediafs to completion (background mode, as users do) with a timeout; (status, stderr).
fn run_to_end(args: &[&str], env: &[(String, String)]) -> (std::process::ExitStatus, String) {
    let mut cmd = command(env);
    cmd.args(args).stdin(Stdio::null());
    let out = timed("bwmediafs", move || cmd.output().expect("run bwmediafs"));
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mountpoint_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    (dir, mnt)
}

/// Unmounts in Drop whatever ended up mounted on the path (a test that fails must not leak).
struct Unmount(std::path::PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        if mountpoint::mounted_type(&self.0).is_some() {
            let _ = mountpoint::unmount(&self.0, true);
        }
    }
}

#[test]
fn bad_credentials_end_with_a_clear_message_and_no_mount() {
    let emulator = start_emulator(emulator_config());
    let (_dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    let mut env = oauth_env(&emulator);
    env.retain(|(k, _)| k != "BW_CLIENT_SECRET");
    env.push(("BW_CLIENT_SECRET".into(), "wrong-secret".into()));
    let (status, err) = run_to_end(&[mnt.to_str().unwrap()], &env);
    assert!(!status.success());
    assert!(
        err.contains("BW_CLIENT_SECRET"),
        "should name the variable to fix: {err}"
    );
    assert!(
        !err.contains("wrong-secret"),
        "the secret was printed: {err}"
    );
    assert!(
        err.contains("Bandwidth App") && !err.contains("cannot reach"),
        "a refusal is not an outage: {err}"
    );
    assert!(mountpoint::mounted_type(&mnt).is_none());
}

#[test]
fn refused_basic_credentials_say_that_basic_was_retired_and_what_to_set() {
    let emulator = start_emulator(emulator_config());
    let (_dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    let env = vec![
        ("BW_ACCOUNT_ID".to_string(), "9900000".to_string()),
        ("BW_USERNAME".to_string(), "test-user".to_string()),
        ("BW_PASSWORD".to_string(), "wrong-password".to_string()),
        ("BW_BASE_URL".to_string(), emulator.base_url()),
    ];
    let (status, err) = run_to_end(&[mnt.to_str().unwrap()], &env);
    assert!(!status.success());
    assert!(!err.contains("cannot reach"), "{err}");
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(
        err.contains("retired") && err.contains("2026-12-02"),
        "should say Basic was retired: {err}"
    );
    assert!(
        err.contains("Bandwidth App") && err.contains("BW_CLIENT_ID and BW_CLIENT_SECRET"),
        "should say what to create and set: {err}"
    );
    assert!(!err.contains("wrong-password"), "{err}");
    assert!(mountpoint::mounted_type(&mnt).is_none());
}

#[test]
fn missing_mountpoint_ends_with_a_clear_message() {
    let emulator = start_emulator(emulator_config());
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let (status, err) = run_to_end(&[missing.to_str().unwrap()], &oauth_env(&emulator));
    assert!(!status.success());
    assert!(
        err.contains("does not exist") && err.contains("mkdir -p"),
        "{err}"
    );
    assert_eq!(
        emulator.stats().list,
        0,
        "nothing should be asked of the server"
    );
}

#[test]
fn bad_option_values_say_what_is_wrong_and_what_is_allowed() {
    let (_dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    let m = mnt.to_str().unwrap();
    for (args, says) in [
        (vec!["--metadata-ttl", "-5s", m], "cannot be negative"),
        (vec!["--timeout", "0s", m], "more than 0"),
        (vec!["--cache-size", "0", m], "at least 4M"),
        (vec!["--cache-size", "lots", m], "such as 64M"),
    ] {
        let (status, err) = run_to_end(&args, &[]);
        assert!(!status.success(), "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("-- -5s"), "clap's tip for a flag: {err}");
    }
    // A fractional size is a size.
    let (_, err) = run_to_end(
        &["--cache-size", "1.5G", "--demo", "-o", "ro", "/nonexistent"],
        &[],
    );
    assert!(err.contains("does not exist"), "{err}");
    assert!(mountpoint::mounted_type(&mnt).is_none());
}

#[test]
fn a_wrong_base_url_or_a_forgotten_token_url_says_what_looks_wrong() {
    let emulator = start_emulator(emulator_config());
    let (_dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    let m = mnt.to_str().unwrap();
    // The base URL without /api/v2.
    let mut env = oauth_env(&emulator);
    let origin = emulator.base_url().replace("/api/v2", "");
    env.retain(|(k, _)| k != "BW_BASE_URL");
    env.push(("BW_BASE_URL".into(), origin.clone()));
    let (status, err) = run_to_end(&[m], &env);
    assert!(!status.success());
    assert!(err.contains("/api/v2") && err.contains(&origin), "{err}");
    // A local base URL and no token URL: the token request would go to production.
    let mut env = oauth_env(&emulator);
    env.retain(|(k, _)| k != "BW_TOKEN_URL");
    let t = std::time::Instant::now();
    let (status, err) = run_to_end(&[m], &env);
    assert!(!status.success());
    assert!(err.contains("--token-url"), "{err}");
    assert!(err.contains("/api/v1/oauth2/token"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(mountpoint::mounted_type(&mnt).is_none());
}

/// The first two lines the emulator binary prints, run with `envs`; the child to end.
fn emulator_banner(envs: &[(&str, &str)]) -> (std::process::Child, Vec<String>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bwmedia-emulator"))
        .args(["--listen", "127.0.0.1:0"])
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the emulator");
    let stdout = child.stdout.take().expect("stdout");
    let lines = timed("the emulator's banner", move || {
        std::io::BufReader::new(stdout)
            .lines()
            .take(2)
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    (child, lines)
}

#[test]
fn the_emulator_prints_a_command_that_mounts_it() {
    let (mut emulator, lines) = emulator_banner(&[]);
    let command = lines
        .iter()
        .find_map(|l| l.strip_prefix("to mount it: "))
        .unwrap_or_else(|| panic!("no mount command in {lines:?}"))
        .to_string();
    let (_dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    let line = command.replace(
        "bwmediafs MOUNTPOINT",
        &format!("{} {}", env!("CARGO_BIN_EXE_bwmediafs"), q(&mnt)),
    );
    let state = tempfile::tempdir().unwrap();
    let out = sh(&format!("XDG_STATE_HOME={} {line}", q(state.path())));
    let _ = emulator.kill();
    let _ = emulator.wait();
    assert!(
        out.status.success(),
        "`{line}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(mountpoint::mounted_type(&mnt).is_some());
    // A secret of the user's own is not printed.
    let (mut other, lines) = emulator_banner(&[("BW_EMULATOR_CLIENT_SECRET", "cs-Own-9x")]);
    let _ = other.kill();
    let _ = other.wait();
    assert!(lines.iter().all(|l| !l.contains("cs-Own-9x")), "{lines:?}");
}

#[test]
fn a_mountpoint_with_entries_is_refused_unless_nonempty() {
    let emulator = start_emulator(emulator_config());
    let (_dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    std::fs::write(mnt.join("mine.txt"), b"hidden by a mount").unwrap();
    let (status, err) = run_to_end(&[mnt.to_str().unwrap()], &oauth_env(&emulator));
    assert!(!status.success());
    assert!(
        err.contains("not empty") && err.contains("-o nonempty"),
        "{err}"
    );
    assert!(mountpoint::mounted_type(&mnt).is_none());
    assert_eq!(emulator.stats().list, 0, "refused before asking the server");
    // Asked for, it mounts over them.
    let (status, err) = run_to_end(
        &["-o", "nonempty", mnt.to_str().unwrap()],
        &oauth_env(&emulator),
    );
    assert!(status.success(), "{err}");
    assert!(mountpoint::mounted_type(&mnt).is_some());
}

/// A local port that nothing listens on: bound, noted, closed.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The index of the first line of `text` that contains `what` (for the order of messages).
fn line_of(text: &str, what: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(what))
}

#[test]
fn unreachable_server_says_it_is_still_trying_and_names_the_base_url() {
    let url = format!("http://127.0.0.1:{}/api/v2", closed_port());
    let (dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    let state = dir.path().join("state");
    let env = vec![
        ("BW_ACCOUNT_ID".to_string(), "9900000".to_string()),
        ("BW_USERNAME".to_string(), "u".to_string()),
        ("BW_PASSWORD".to_string(), PASSWORD.to_string()),
        ("BW_BASE_URL".to_string(), url.clone()),
        ("XDG_STATE_HOME".to_string(), state.display().to_string()),
    ];
    // Retried for 4 s: well past the moment the mount says it is still trying.
    let (status, err) = run_to_end(&["--retry-time", "4s", mnt.to_str().unwrap()], &env);
    assert!(!status.success());
    let trying = format!("still trying to reach the media store at {url}");
    let said = line_of(&err, &trying).unwrap_or_else(|| panic!("no progress note: {err}"));
    let failed = line_of(&err, "cannot reach the media store").expect("the final error");
    assert!(said < failed, "the note should come first: {err}");
    let last = err.lines().nth(failed).unwrap_or_default();
    assert!(
        last.contains(&url) && last.contains("--base-url") && last.contains("BW_BASE_URL"),
        "the final error should name the setting: {err}"
    );
    assert!(!err.contains(PASSWORD));
    // The log of the attempt tells the same story.
    let log = std::fs::read_dir(state.join("bwmediafs"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .expect("the mount's log file");
    assert!(
        log.contains(&trying) && log.contains("BW_BASE_URL"),
        "{log}"
    );
    assert!(mountpoint::mounted_type(&mnt).is_none());
}

#[test]
fn a_wrong_or_unreachable_token_url_names_the_token_url_setting() {
    let emulator = start_emulator(emulator_config());
    let (_dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    let m = mnt.to_str().unwrap();
    let with_token_url = |url: &str| {
        let mut env = oauth_env(&emulator);
        env.retain(|(k, _)| k != "BW_TOKEN_URL");
        env.push(("BW_TOKEN_URL".into(), url.to_string()));
        env
    };
    // A path the server does not have: HTTP 404, not retried.
    let wrong = emulator
        .token_url()
        .replace("/oauth2/token", "/oauth2/tokens");
    let (status, err) = run_to_end(&[m], &with_token_url(&wrong));
    assert!(!status.success());
    assert!(err.contains("HTTP 404"), "{err}");
    assert!(
        err.contains(&wrong) && err.contains("--token-url") && err.contains("BW_TOKEN_URL"),
        "{err}"
    );
    assert!(!err.contains("BW_BASE_URL"), "the base URL is fine: {err}");
    // Nothing listening there: still trying, then the same setting named.
    let closed = format!("http://127.0.0.1:{}/api/v1/oauth2/token", closed_port());
    let (status, err) = run_to_end(&["--retry-time", "3s", m], &with_token_url(&closed));
    assert!(!status.success());
    assert!(
        err.contains(&format!(
            "still trying to get an access token from {closed}"
        )),
        "{err}"
    );
    assert!(err.contains("BW_TOKEN_URL"), "{err}");
    assert_eq!(emulator.stats().list, 0, "no listing without a token");
    assert!(mountpoint::mounted_type(&mnt).is_none());
}

#[test]
fn failed_mount_attempts_leave_no_log_file() {
    let emulator = start_emulator(emulator_config());
    let (dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    let state = dir.path().join("state");
    let mut env = oauth_env(&emulator);
    env.push(("XDG_STATE_HOME".into(), state.display().to_string()));
    let missing = dir.path().join("nowhere");
    let mut refused = env.clone();
    refused.retain(|(k, _)| k != "BW_CLIENT_SECRET");
    refused.push(("BW_CLIENT_SECRET".into(), "wrong".into()));
    for (args, env, what) in [
        (
            vec![missing.to_str().unwrap()],
            &env,
            "a missing mountpoint",
        ),
        (vec![mnt.to_str().unwrap()], &refused, "refused credentials"),
    ] {
        let (status, err) = run_to_end(&args, env);
        assert!(!status.success(), "{what}");
        let logs: Vec<_> = std::fs::read_dir(state.join("bwmediafs"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(logs.is_empty(), "{what} left {logs:?}: {err}");
    }
}

#[test]
fn missing_credentials_say_which_variables_to_set() {
    let (_dir, mnt) = mountpoint_dir();
    let (status, err) = run_to_end(&[mnt.to_str().unwrap()], &[]);
    assert!(!status.success());
    assert!(
        err.contains("BW_ACCOUNT_ID") && err.contains("--demo"),
        "{err}"
    );
}

#[test]
fn a_credentials_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, mnt) = mountpoint_dir();
    let file = dir.path().join("creds");
    std::fs::write(
        &file,
        format!("BW_ACCOUNT_ID=9900000\nBW_USERNAME=u\nBW_PASSWORD={PASSWORD}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let args = [
        "--credentials",
        file.to_str().unwrap(),
        mnt.to_str().unwrap(),
    ];
    let (status, err) = run_to_end(&args, &[]);
    assert!(!status.success());
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!err.contains(PASSWORD));
}

/// A credentials file of mode 600 in `dir` holding `text`.
fn credentials_file(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.join("creds");
    std::fs::write(&file, text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    file
}

#[test]
fn unknown_keys_and_half_pairs_in_the_credentials_file_are_named() {
    let emulator = start_emulator(emulator_config());
    let (dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    let m = mnt.to_str().unwrap();
    let urls = format!(
        "BW_BASE_URL={}\nBW_TOKEN_URL={}\n",
        emulator.base_url(),
        emulator.token_url()
    );
    // A misspelt secret: the error names the key and the setting it resembles.
    let file = credentials_file(
        dir.path(),
        &format!("BW_ACCOUNT_ID=9900000\nBW_CLIENT_ID=test-client\nBW_CLIENT_SECERT={CLIENT_SECRET}\n{urls}"),
    );
    let (status, err) = run_to_end(&["--credentials", file.to_str().unwrap(), m], &[]);
    assert!(!status.success());
    assert!(
        err.contains("BW_CLIENT_SECERT (line 3)") && err.contains("did you mean BW_CLIENT_SECRET?"),
        "{err}"
    );
    assert!(!err.contains(CLIENT_SECRET), "{err}");
    // A space for the `=` before a secret ending in base64 padding: the line is refused by its
    // number, and the secret is not repeated as if it were a key.
    let file = credentials_file(
        dir.path(),
        &format!("BW_ACCOUNT_ID=9900000\nBW_CLIENT_ID=test-client\nBW_CLIENT_SECRET {CLIENT_SECRET}==\n{urls}"),
    );
    let (status, err) = run_to_end(&["--credentials", file.to_str().unwrap(), m], &[]);
    assert!(!status.success());
    assert!(err.contains("not KEY=VALUE (line 3)"), "{err}");
    assert!(!err.contains(CLIENT_SECRET), "{err}");
    // A password without its user: the missing half is named.
    let file = credentials_file(
        dir.path(),
        &format!("BW_ACCOUNT_ID=9900000\nBW_PASSWORD={PASSWORD}\n{urls}"),
    );
    let (status, err) = run_to_end(&["--credentials", file.to_str().unwrap(), m], &[]);
    assert!(!status.success());
    assert!(
        err.contains("BW_PASSWORD is set") && err.contains("BW_USERNAME is not"),
        "{err}"
    );
    // Usable credentials with a stray key: it mounts, with a warning naming the key.
    let file = credentials_file(
        dir.path(),
        &format!(
            "BW_ACCOUNT_ID=9900000\nBW_CLIENT_ID=test-client\nBW_CLIENT_SECRET={CLIENT_SECRET}\n\
             BW_TIMEOUT=5s\n{urls}"
        ),
    );
    let (status, err) = run_to_end(&["--credentials", file.to_str().unwrap(), m], &[]);
    assert!(status.success(), "{err}");
    assert!(
        err.contains("warning: BW_TIMEOUT (line 4)") && err.contains("not a setting"),
        "{err}"
    );
    sh_ok(&format!("umount {}", q(&mnt)));
}

#[test]
fn a_credentials_file_of_another_user_is_refused() {
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("skipped: only root can give a file to another user");
        return;
    }
    let emulator = start_emulator(emulator_config());
    let (dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    let file = credentials_file(
        dir.path(),
        &format!(
            "BW_ACCOUNT_ID=9900000\nBW_USERNAME=test-user\nBW_PASSWORD={PASSWORD}\nBW_BASE_URL={}\n",
            emulator.base_url()
        ),
    );
    let nobody = 65534;
    std::os::unix::fs::chown(&file, Some(nobody), None).unwrap();
    let args = [
        "--credentials",
        file.to_str().unwrap(),
        mnt.to_str().unwrap(),
    ];
    let (status, err) = run_to_end(&args, &[]);
    assert!(!status.success());
    assert!(
        err.contains("belongs to user id 65534") && err.contains("chown"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD));
    assert_eq!(emulator.stats().list, 0, "refused before asking the server");
}

#[test]
fn a_private_credentials_file_mounts() {
    use std::os::unix::fs::PermissionsExt;
    let emulator = start_emulator(emulator_config());
    let (dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    let file = dir.path().join("creds");
    std::fs::write(
        &file,
        format!(
            "BW_ACCOUNT_ID=9900000\nBW_USERNAME=test-user\nBW_PASSWORD={PASSWORD}\nBW_BASE_URL={}\n",
            emulator.base_url()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = [
        "--credentials",
        file.to_str().unwrap(),
        mnt.to_str().unwrap(),
    ];
    let (status, err) = run_to_end(&args, &[]);
    assert!(status.success(), "{err}");
    assert!(mountpoint::mounted_type(&mnt).is_some());
    assert_eq!(emulator.stats().list, 1);
    sh_ok(&format!("umount {}", q(&mnt)));
}

#[test]
fn plain_http_to_another_host_is_refused() {
    let (_dir, mnt) = mountpoint_dir();
    let env = vec![
        ("BW_ACCOUNT_ID".to_string(), "9900000".to_string()),
        ("BW_USERNAME".to_string(), "u".to_string()),
        ("BW_PASSWORD".to_string(), PASSWORD.to_string()),
        (
            "BW_BASE_URL".to_string(),
            "http://192.0.2.1/api/v2".to_string(),
        ),
    ];
    let (status, err) = run_to_end(&[mnt.to_str().unwrap()], &env);
    assert!(!status.success());
    assert!(err.contains("--allow-insecure-http"), "{err}");
}

#[test]
fn demo_mounts_in_the_background_serves_its_samples_and_umount_ends_it() {
    let (_dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    let mnt_s = mnt.to_str().unwrap().to_string();
    let mut cmd = command(&[]);
    cmd.args(["--demo", &mnt_s]).stdin(Stdio::null());
    let out = timed("bwmediafs --demo", move || cmd.output().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One line on standard error: what to try, how to unmount, where the log is.
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("umount") && said.contains("; log: "),
        "{said}"
    );
    // It returned once mounted: the samples are there at once.
    for (name, body) in bwmediafs::cli::demo::SAMPLES {
        let got = std::fs::read(mnt.join(name)).unwrap();
        assert!(&got[..] == *body, "{name} differs");
    }
    let pid = daemon_pid(&mnt_s).expect("the background bwmediafs process");
    sh_ok(&format!("umount {}", q(&mnt)));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "bwmediafs still running after umount"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn demo_in_the_foreground_ends_cleanly_on_sigterm() {
    let (_dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    let mut child = command(&[])
        .args(["--demo", "-f", mnt.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while mountpoint::mounted_type(&mnt).is_none() {
        assert!(std::time::Instant::now() < deadline, "demo did not mount");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(mnt.join("hello.txt").exists());
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = timed("exit after SIGTERM", move || child.wait().unwrap());
    assert!(status.success(), "{status}");
    assert!(mountpoint::mounted_type(&mnt).is_none());
}

#[test]
fn secrets_never_appear_in_the_trace_log() {
    let m = Mount::new();
    sh_ok(&format!(
        "echo x > {} && cat {} >/dev/null",
        q(&m.path("a")),
        q(&m.path("a"))
    ));
    sh_ok(&format!("ls -l {}", q(&m.mnt)));
    let log = m.log_text();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the log is not at trace level"
    );
    assert!(
        !log.contains(CLIENT_SECRET),
        "the client secret is in the log"
    );
    assert!(!log.contains(PASSWORD));
}

/// The pid of the bwmediafs process whose command line names `mountpoint`.
fn daemon_pid(mountpoint: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_ours =
            args.first()?.ends_with(b"bwmediafs") && args.contains(&mountpoint.as_bytes());
        is_ours.then_some(pid)
    })
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
        .unwrap_or(true)
}

/// The help `args` print with `COLUMNS` set to `columns` (none: unset), standard input and
/// output not a terminal, so the width comes from COLUMNS or clap's default of 100.
fn help_of(binary: &str, args: &[&str], columns: Option<usize>) -> String {
    let mut cmd = std::process::Command::new(binary);
    cmd.args(args).stdin(Stdio::null()).env_remove("COLUMNS");
    if let Some(c) = columns {
        cmd.env("COLUMNS", c.to_string());
    }
    let out = timed("--help", move || cmd.output().expect("run --help"));
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

#[test]
fn help_is_wrapped_to_the_terminal_width() {
    for binary in [
        env!("CARGO_BIN_EXE_bwmediafs"),
        env!("CARGO_BIN_EXE_bwmedia-emulator"),
    ] {
        for args in [["--help"], ["-h"]] {
            for (columns, width) in [(None, 100), (Some(72), 72), (Some(200), 200)] {
                let help = help_of(binary, &args, columns);
                assert!(help.lines().count() > 10, "{help}");
                for line in help.lines() {
                    assert!(
                        line.chars().count() <= width,
                        "{binary} {args:?} at {width} columns has a line of {}: {line}",
                        line.chars().count()
                    );
                }
            }
        }
    }
}

#[test]
fn the_fstab_line_has_one_first_field_everywhere() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let help = help_of(env!("CARGO_BIN_EXE_bwmediafs"), &["--help"], None);
    // The word before " /mnt/media fuse.bwmediafs" in each text: the line's first field.
    let firsts = |text: &str| -> Vec<String> {
        text.match_indices(" /mnt/media fuse.bwmediafs")
            .map(|(at, _)| {
                let before = &text[..at];
                let start = before
                    .rfind(|c: char| c.is_whitespace() || c == '\'')
                    .map_or(0, |i| i + 1);
                before[start..].to_string()
            })
            .collect()
    };
    let mut seen = Vec::new();
    for (what, text) in [
        ("README.md", read("README.md")),
        ("man/bwmediafs.1", read("man/bwmediafs.1")),
        ("--help", help),
    ] {
        let found = firsts(&text);
        assert!(!found.is_empty(), "{what} has no fstab line");
        seen.extend(found.into_iter().map(|f| (what, f)));
    }
    // The mount unit's What= is the same field.
    let unit = read("contrib/systemd/mnt-media.mount");
    let what = unit.lines().find_map(|l| l.strip_prefix("What=")).unwrap();
    seen.push(("contrib/systemd/mnt-media.mount", what.to_string()));
    assert!(
        seen.iter().all(|(_, f)| f == "bwmediafs"),
        "one first field everywhere: {seen:?}"
    );
}

#[test]
fn the_man_pages_copy_example_works_on_a_fresh_account() {
    let (_, lines) = bwmediafs::cli::man::bwmediafs_examples()
        .iter()
        .find(|(_, lines)| lines.iter().any(|l| l.starts_with("cp ")))
        .expect("an example with cp");
    let emulator = start_emulator(emulator_config());
    let home = tempfile::tempdir().unwrap();
    let mnt = home.path().join("media");
    let _guard = Unmount(mnt.clone());
    // The credentials file the example names, with the emulator's OAuth2 client in it.
    let config = home.path().join(".config/bwmediafs");
    std::fs::create_dir_all(&config).unwrap();
    let creds: String = oauth_env(&emulator)
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    std::fs::write(config.join("credentials"), creds).unwrap();
    std::fs::write(home.path().join("flyer.jpg"), b"\xff\xd8\xff a flyer").unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_bwmediafs"))
        .parent()
        .unwrap();
    // The caller's BW_* would override the file's URLs: only the file speaks.
    let script = format!(
        "set -e; unset BW_BASE_URL BW_TOKEN_URL RUST_LOG; \
         export HOME={home} XDG_STATE_HOME={home}/state PATH={bin}:$PATH; cd {home}\n{}",
        lines.join("\n"),
        home = q(home.path()),
        bin = q(bin),
    );
    let (ok, out, err) = sh_outcome(&script);
    assert!(ok, "the example failed:\n{}\n{err}", lines.join("\n"));
    let url = out.lines().last().unwrap_or_default();
    assert!(url.ends_with("/media/campaign/flyer.jpg"), "{out}");
    assert_eq!(
        emulator
            .store()
            .get("campaign/flyer.jpg")
            .unwrap()
            .body
            .as_ref(),
        b"\xff\xd8\xff a flyer"
    );
    sh_ok(&format!("umount {}", q(&mnt)));
}

#[test]
fn sighup_uploads_open_files_then_unmounts() {
    let mut m = Mount::new();
    let data = bytes(5000, 7);
    let mut f = timed("create", {
        let p = m.path("open.bin");
        move || std::fs::File::create(p).unwrap()
    });
    {
        use std::io::Write;
        f.write_all(&data).unwrap();
    }
    assert!(m.stored("open.bin").is_none_or(|b| b.is_empty()));
    m.signal(libc::SIGHUP);
    // Uploaded, then detached: the process ends once our descriptor is closed.
    let deadline = std::time::Instant::now() + OP_TIMEOUT;
    while m.stored("open.bin").as_deref() != Some(&data[..]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the open file was not uploaded on SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(f);
    let status = m
        .wait_exit(OP_TIMEOUT)
        .expect("bwmediafs still running after SIGHUP");
    assert!(status.success(), "exit status {status}:\n{}", m.log_text());
    assert!(!m.is_mounted());
}
