//! The harness of the mount tests: an emulator on loopback (port 0), the built `bwmediafs`
//! binary mounted in the foreground against it in a temp dir, and a guard whose `Drop` always
//! unmounts and reaps the process, even when the test fails. Every operation on the mount runs
//! with a timeout, so a hang fails the test instead of hanging CI.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bwmediafs::cli::mountpoint;
use bwmediafs::emulator::store::StatsSnapshot;
use bwmediafs::emulator::{Emulator, EmulatorConfig};

/// How long any single operation on the mount may take before the test fails.
pub const OP_TIMEOUT: Duration = Duration::from_secs(60);

pub const PASSWORD: &str = "pw-Zq8x-never-logged";
pub const CLIENT_SECRET: &str = "cs-Jm4t-never-logged";

/// An emulator whose credentials are distinctive strings, so tests can grep logs for them.
pub fn emulator_config() -> EmulatorConfig {
    EmulatorConfig {
        basic: Some(("test-user".into(), PASSWORD.into())),
        oauth: Some(("test-client".into(), CLIENT_SECRET.into())),
        ..EmulatorConfig::default()
    }
}

pub fn start_emulator(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).expect("start the emulator")
}

/// The last resort of every mount guard, in-process or not: dropped after the guard has ended
/// the mount its own way, it detaches the mount lazily and aborts its FUSE connection if the
/// mount is still there, so that nothing that touches the path later hangs.
pub struct LastResort {
    path: PathBuf,
    /// The mount's FUSE connection (the minor number of its device).
    connection: Option<u32>,
}

impl LastResort {
    /// The guard of the mount on `path`. The connection is read from the mount table, not by
    /// a stat of the mount: a stat would fill the kernel's attribute cache, which then answers
    /// for a daemon that has died.
    pub fn new(path: &Path) -> LastResort {
        LastResort {
            path: path.to_path_buf(),
            connection: mountpoint::mount_minor(path),
        }
    }
}

impl Drop for LastResort {
    fn drop(&mut self) {
        if mountpoint::mounted_type(&self.path).is_none() {
            return;
        }
        eprintln!(
            "{} is still mounted: detaching it and aborting its connection",
            self.path.display()
        );
        let _ = mountpoint::unmount(&self.path, true);
        if let Some(c) = self.connection {
            let _ = std::fs::write(format!("/sys/fs/fuse/connections/{c}/abort"), "1");
        }
    }
}

/// A running `bwmediafs -f` on a temp dir.
pub struct Mount {
    /// Shared, so that the next mount of a remount finds the same server.
    pub emulator: Arc<Emulator>,
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    /// Dropped last, after `Drop` has unmounted and reaped the process.
    last_resort: Option<LastResort>,
}

/// The environment that gives the binary the emulator's OAuth2 client.
pub fn oauth_env(emulator: &Emulator) -> Vec<(String, String)> {
    let account = "9900000".to_string();
    vec![
        ("BW_ACCOUNT_ID".into(), account),
        ("BW_CLIENT_ID".into(), "test-client".into()),
        ("BW_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
        ("BW_BASE_URL".into(), emulator.base_url()),
        ("BW_TOKEN_URL".into(), emulator.token_url()),
    ]
}

/// The `bwmediafs` command with a clean environment (no BW_* of the caller's) plus `env`.
pub fn command(env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bwmediafs"));
    for (k, _) in std::env::vars() {
        if k.starts_with("BW_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    // A background bwmediafs logs under the state directory: keep that out of the real home.
    cmd.env(
        "XDG_STATE_HOME",
        std::env::temp_dir().join("bwmediafs-test-state"),
    );
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

impl Mount {
    /// Mount with default settings on a fresh emulator.
    pub fn new() -> Mount {
        Mount::with(start_emulator(emulator_config()), &[])
    }

    /// Mount `emulator` with extra command-line arguments.
    pub fn with(emulator: impl Into<Arc<Emulator>>, args: &[&str]) -> Mount {
        let emulator = emulator.into();
        let env = oauth_env(&emulator);
        Mount::with_env(emulator, args, &env)
    }

    pub fn with_env(
        emulator: impl Into<Arc<Emulator>>,
        args: &[&str],
        env: &[(String, String)],
    ) -> Mount {
        let mut mount = Mount::spawn(emulator, args, env);
        mount.wait_mounted();
        mount
    }

    /// Start `bwmediafs -f` without waiting for the mount (see [`Mount::wait_mounted`]). Its
    /// state directory (where it keeps the times of media) and its recovery folder are its own,
    /// unless `env` gives `XDG_STATE_HOME`: then both are the defaults under it, shared with the
    /// mounts given the same (mounts of tests that run at once share an account id).
    pub fn spawn(
        emulator: impl Into<Arc<Emulator>>,
        args: &[&str],
        env: &[(String, String)],
    ) -> Mount {
        let emulator = emulator.into();
        let dir = tempfile::tempdir().expect("temp dir");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mountpoint");
        let mnt = std::fs::canonicalize(&mnt).expect("canonical mountpoint");
        let log = dir.path().join("bwmediafs.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = command(env);
        if !env.iter().any(|(k, _)| k == "XDG_STATE_HOME") {
            cmd.env("XDG_STATE_HOME", dir.path().join("state"));
            cmd.arg("--recovery-dir").arg(dir.path().join("recovery"));
        }
        let child = cmd
            .arg("-f")
            .arg("-vv")
            .args(args)
            .arg(&mnt)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("spawn bwmediafs");
        Mount {
            emulator,
            dir,
            mnt,
            log,
            child: Some(child),
            last_resort: None,
        }
    }

    /// Wait until the kernel mount is in place (failing the test if the process ends first).
    pub fn wait_mounted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while mountpoint::mounted_type(&self.mnt).is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "bwmediafs exited with {status} before mounting:\n{}",
                        self.log_text()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "not mounted after 30 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.last_resort = Some(LastResort::new(&self.mnt));
    }

    /// A path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// The bytes the server holds under `name`.
    pub fn stored(&self, name: &str) -> Option<Vec<u8>> {
        stored_in(self.emulator.store(), name)
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.emulator.stats()
    }

    pub fn reset_stats(&self) {
        self.emulator.reset_stats();
    }

    pub fn peak_in_flight(&self) -> u64 {
        self.emulator.peak_in_flight()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Send a signal to the bwmediafs process.
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(pid as i32, signal) };
        }
    }

    /// Wait for the process to end (after umount or a signal); its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_mounted(&self) -> bool {
        mountpoint::mounted_type(&self.mnt).is_some()
    }

    /// `umount`, and wait for the process to end (failing the test if it does not, or fails).
    pub fn unmount(&mut self) {
        mountpoint::unmount(&self.mnt, false).expect("umount");
        let status = self.wait_exit(Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "bwmediafs after umount: {status:?}\n{}",
            self.log_text()
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.is_mounted() {
            let _ = mountpoint::unmount(&self.mnt, false);
            if self.is_mounted() {
                let _ = mountpoint::unmount(&self.mnt, true);
            }
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        // Then `last_resort` drops: it detaches and aborts what is still mounted.
    }
}

/// The bytes `store` holds under `name`.
pub fn stored_in(store: &bwmediafs::emulator::store::Store, name: &str) -> Option<Vec<u8>> {
    store.get(name).ok().map(|s| s.body.to_vec())
}

/// Run `f` on another thread; fail the test if it takes longer than [`OP_TIMEOUT`].
pub fn timed<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(OP_TIMEOUT) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no answer after {OP_TIMEOUT:?} (hung)")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked (see above)"),
    }
}

/// Run a shell command line with a timeout; its output.
pub fn sh(script: &str) -> Output {
    Command::new("timeout")
        .arg(OP_TIMEOUT.as_secs().to_string())
        .arg("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run bash")
}

/// Run a shell command line: whether it succeeded, its standard output and its errors.
pub fn sh_outcome(script: &str) -> (bool, String, String) {
    let out = sh(script);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run a shell command line that must succeed; its standard output.
pub fn sh_ok(script: &str) -> String {
    let out = sh(script);
    assert!(
        out.status.success(),
        "`{script}` failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Quote a path for a shell command line.
pub fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// Compare bytes without printing megabytes when they differ.
#[track_caller]
pub fn assert_bytes(got: Option<&[u8]>, want: &[u8], what: &str) {
    match got {
        None => panic!("{what}: missing (want {} bytes)", want.len()),
        Some(got) if got != want => {
            let first = got.iter().zip(want).position(|(a, b)| a != b);
            panic!(
                "{what}: {} bytes differ from the {} expected (first difference at {first:?})",
                got.len(),
                want.len()
            )
        }
        Some(_) => {}
    }
}

/// An emulator holding `media` before anything mounts it.
pub fn emulator_with(media: &[(&str, &[u8])]) -> Emulator {
    let emulator = start_emulator(emulator_config());
    for (name, body) in media {
        emulator
            .store()
            .put(
                name,
                bytes::Bytes::copy_from_slice(body),
                &bwmediafs::api::content_type_for(name),
                None,
            )
            .expect("seed the emulator");
    }
    emulator
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every request of `emulator` answered 503 from now on.
pub fn server_down(emulator: &Emulator) {
    emulator.set_faults(bwmediafs::emulator::Faults {
        error_rate: 1.0,
        error_statuses: vec![503],
        ..Default::default()
    });
}

/// `emulator` answers every request again.
pub fn server_up(emulator: &Emulator) {
    emulator.set_faults(bwmediafs::emulator::Faults::default());
}

/// The environment of a mount of `emulator` that keeps its state (times, journal) in `state`,
/// shared with the other mounts given the same.
pub fn env_keeping(emulator: &Emulator, state: &Path) -> Vec<(String, String)> {
    let mut env = oauth_env(emulator);
    env.push(("XDG_STATE_HOME".into(), state.display().to_string()));
    env
}

/// Wait until `done` holds, asking every 20 ms; fail the test, saying `what` (and the
/// message `why` gives then), when it does not within `limit`.
pub fn wait_for(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
    why: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} after {limit:?}:\n{}",
            why()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `close(2)` of `f`, with its result (dropping a `File` ignores it).
pub fn close(f: std::fs::File) -> std::io::Result<()> {
    use std::os::unix::io::IntoRawFd;
    let fd = f.into_raw_fd();
    // SAFETY: `fd` is ours and closed once.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
