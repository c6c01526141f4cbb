//! The `bwmediafs` command line: what a user sees when something is wrong before mounting, and
//! the demo. Failures must end with one clear sentence, a non-zero exit and no mount left.

mod common;

use std::process::Stdio;
use std::time::Duration;

use bwmediafs::cli::mountpoint;
use common::*;

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

#[test]
fn unreachable_server_ends_with_a_clear_message_and_no_mount() {
    // A port that nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_dir, mnt) = mountpoint_dir();
    let _guard = Unmount(mnt.clone());
    let env = vec![
        ("BW_ACCOUNT_ID".to_string(), "9900000".to_string()),
        ("BW_USERNAME".to_string(), "u".to_string()),
        ("BW_PASSWORD".to_string(), PASSWORD.to_string()),
        (
            "BW_BASE_URL".to_string(),
            format!("http://127.0.0.1:{port}/api/v2"),
        ),
    ];
    let (status, err) = run_to_end(&["--retry-time", "1s", mnt.to_str().unwrap()], &env);
    assert!(!status.success());
    assert!(err.contains("cannot reach the media store"), "{err}");
    assert!(!err.contains(PASSWORD));
    assert!(mountpoint::mounted_type(&mnt).is_none());
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
