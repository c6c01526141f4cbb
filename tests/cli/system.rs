//! bwmediafs as the system runs it: mount(8) with an fstab line of each type, systemd's
//! readiness protocol and credentials, and where a background mount's log goes. All against the
//! emulator on loopback, each test in its own temp dirs.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use bwmediafs::cli::mountpoint;

/// Ends, in `Drop`, whatever is still mounted on the path, for mounts whose daemon is not our
/// child (mount(8) and background mounts): a lazy unmount and an abort of the FUSE connection.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        drop(LastResort::new(&self.0));
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A temp dir with an empty mountpoint in it (canonical, as the mount table shows it).
fn mountpoint_in(dir: &Path, name: &str) -> PathBuf {
    let mnt = dir.join(name);
    std::fs::create_dir(&mnt).unwrap();
    std::fs::canonicalize(&mnt).unwrap()
}

/// A credentials file (mode 600) with the emulator's OAuth2 client and no account id: the
/// mount's SOURCE gives that.
fn credentials_file(path: &Path) {
    std::fs::write(
        path,
        format!(
            "BW_ACCOUNT_ID=9900000\nBW_CLIENT_ID=test-client\nBW_CLIENT_SECRET={CLIENT_SECRET}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Wait until `file` holds `text` (the daemon writes its log on its own time).
fn wait_for_text(file: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = std::fs::read_to_string(file).unwrap_or_default();
        if now.contains(text) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{} never said {text:?}:\n{now}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The links an install makes so that mount(8) finds this build, for the life of a test.
///
/// mount(8) runs its helpers with a fixed `PATH` (`/usr/local/sbin:/usr/local/bin:/usr/sbin:
/// /usr/bin:/sbin:/bin`) and looks for `mount.TYPE` only in `/sbin` (and `/sbin/fs.d`,
/// `/sbin/fs`), so no temp dir can stand in: type `fuse.bwmediafs` goes through `mount.fuse3`,
/// which runs `bwmediafs` from that `PATH`, and type `bwmediafs` runs `/sbin/mount.bwmediafs`.
/// So the test links `/usr/local/sbin/bwmediafs` (first on that `PATH`, ahead of an installed
/// `/usr/bin/bwmediafs`) and `/sbin/mount.bwmediafs` to the binary under test, and removes them
/// in `Drop`. A link is only made where nothing is, or where a link to another test build was
/// left (`.../target/.../bwmediafs`); an installed bwmediafs there fails the test rather than
/// being replaced or tested in place of this build. An exclusive lock on a file in /run/lock
/// keeps test runs (of this and other checkouts) from using the links at the same time.
struct InstalledLinks {
    links: Vec<PathBuf>,
    _lock: std::fs::File,
}

const LINKS: &[&str] = &["/usr/local/sbin/bwmediafs", "/sbin/mount.bwmediafs"];

impl InstalledLinks {
    fn new() -> InstalledLinks {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/lock/bwmediafs-test-links.lock")
            .expect("open the lock file of the test links");
        // SAFETY: flock on a descriptor we own; blocks until other runs are done.
        let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        assert_eq!(locked, 0, "cannot lock the test links");
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_bwmediafs"));
        let mut links = Vec::new();
        for link in LINKS.iter().map(PathBuf::from) {
            if let Ok(meta) = std::fs::symlink_metadata(&link) {
                let target = std::fs::read_link(&link).ok();
                let left_by_a_test = meta.file_type().is_symlink()
                    && target.as_ref().is_some_and(|t| {
                        t.to_string_lossy().contains("/target/")
                            && t.file_name().is_some_and(|n| n == "bwmediafs")
                    });
                assert!(
                    left_by_a_test,
                    "{} exists and is not a test build's link ({target:?}): mount(8) would run \
                     it instead of this build; test on a machine without bwmediafs installed",
                    link.display()
                );
                std::fs::remove_file(&link).expect("remove a stale test link");
            }
            std::os::unix::fs::symlink(&binary, &link).expect("link the binary under test");
            links.push(link);
        }
        InstalledLinks { links, _lock: lock }
    }
}

impl Drop for InstalledLinks {
    fn drop(&mut self) {
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_bwmediafs"));
        for link in &self.links {
            if std::fs::read_link(link).ok().as_ref() == Some(&binary) {
                let _ = std::fs::remove_file(link);
            }
        }
    }
}

/// `mount -T FSTAB MOUNTPOINT` of the fstab line of README, with type `fstype`, then a file
/// written and one read through it, then `umount MOUNTPOINT`.
fn fstab_round_trip(fstype: &str) {
    if !is_root() {
        eprintln!("skipped: mount(8) takes --fstab and mounts fuse only for root");
        return;
    }
    let _links = InstalledLinks::new();
    let emulator = emulator_with(&[("in/0/photo.jpg", b"jpeg bytes")]);
    let dir = tempfile::tempdir().unwrap();
    let mnt = mountpoint_in(dir.path(), "media");
    let _guard = Unmount(mnt.clone());
    let creds = dir.path().join("bwmediafs.conf");
    credentials_file(&creds);
    let fstab = dir.path().join("fstab");
    // The emulator's URLs stand for production's, which a real fstab line leaves out.
    std::fs::write(
        &fstab,
        format!(
            "# the README's line\nbwmediafs {} {fstype} credentials={},base_url={},token_url={},\
             allow_other,_netdev,nofail 0 0\n",
            mnt.display(),
            creds.display(),
            emulator.base_url(),
            emulator.token_url()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut mount = std::process::Command::new("mount");
    mount
        .arg("-T")
        .arg(&fstab)
        .arg(&mnt)
        .env("XDG_STATE_HOME", &state)
        .stdin(Stdio::null());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("BW_")) {
        mount.env_remove(k);
    }
    let out = timed("mount", move || mount.output().expect("run mount"));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "mount failed ({}): {said}",
        out.status
    );
    assert_eq!(
        mountpoint::mounted_type(&mnt).as_deref(),
        Some("fuse.bwmediafs")
    );
    assert_eq!(
        sh_ok(&format!("findmnt -n -o SOURCE {}", q(&mnt))).trim(),
        "bwmediafs",
        "the SOURCE names the mount"
    );
    let log = said
        .trim()
        .rsplit_once("; log: ")
        .map(|(_, file)| PathBuf::from(file))
        .unwrap_or_else(|| panic!("no log named in {said:?}"));
    assert!(log.starts_with(&state), "{}", log.display());

    let written = mnt.join("from-fstab.txt");
    timed("write", {
        let written = written.clone();
        move || std::fs::write(written, b"through mount(8)\n").unwrap()
    });
    assert_eq!(
        stored_in(emulator.store(), "from-fstab.txt").as_deref(),
        Some(&b"through mount(8)\n"[..])
    );
    let read = timed("read", {
        let p = mnt.join("in/0/photo.jpg");
        move || std::fs::read(p).unwrap()
    });
    assert_eq!(read, b"jpeg bytes");

    sh_ok(&format!("umount {}", q(&mnt)));
    assert!(mountpoint::mounted_type(&mnt).is_none());
    wait_for_text(&log, &format!("unmounted {}", mnt.display()));
}

#[test]
fn an_fstab_line_of_type_fuse_bwmediafs_mounts_with_mount_and_ends_with_umount() {
    fstab_round_trip("fuse.bwmediafs");
}

#[test]
fn an_fstab_line_of_type_bwmediafs_mounts_through_mount_bwmediafs() {
    fstab_round_trip("bwmediafs");
}

#[test]
fn systemd_hears_ready_once_the_mount_answers_and_stopping_at_sigterm() {
    let emulator = start_emulator(emulator_config());
    let systemd = tempfile::tempdir().unwrap();
    let socket = systemd.path().join("notify");
    let listener = UnixDatagram::bind(&socket).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // LoadCredential=bwmediafs:FILE puts the file here; the environment has no BW_* at all.
    let credentials = systemd.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    credentials_file(&credentials.join("bwmediafs"));
    let env = vec![
        ("NOTIFY_SOCKET".to_string(), socket.display().to_string()),
        (
            "CREDENTIALS_DIRECTORY".to_string(),
            credentials.display().to_string(),
        ),
    ];
    let urls = format!(
        "base_url={},token_url={}",
        emulator.base_url(),
        emulator.token_url()
    );
    let mut m = Mount::spawn(emulator, &["-o", &urls, "9900000"], &env);
    let receive = |what: &str| {
        let mut buf = [0u8; 4096];
        let n = listener
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {what} from bwmediafs: {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = receive("READY=1");
    // At the moment READY=1 arrives, the mount must be in the mount table.
    let mounted_at_ready = mountpoint::mounted_type(&m.mnt);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert_eq!(
        mounted_at_ready.as_deref(),
        Some("fuse.bwmediafs"),
        "READY=1 came before the mount:\n{}",
        m.log_text()
    );
    assert!(
        ready.contains("STATUS=mounted the media of account 9900000"),
        "{ready:?}"
    );
    m.wait_mounted();
    std::fs::write(m.path("unit.txt"), b"under systemd").unwrap();
    assert_eq!(m.stored("unit.txt").as_deref(), Some(&b"under systemd"[..]));

    m.signal(libc::SIGTERM);
    assert_eq!(receive("STOPPING=1"), "STOPPING=1");
    let status = m
        .wait_exit(Duration::from_secs(20))
        .expect("bwmediafs still running after SIGTERM");
    assert!(status.success(), "{status}:\n{}", m.log_text());
    assert!(!m.is_mounted());
}

#[test]
fn a_background_mount_says_where_it_logs_and_each_mount_has_a_log_of_its_own() {
    let emulator = start_emulator(emulator_config());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mnts = [
        mountpoint_in(dir.path(), "one"),
        mountpoint_in(dir.path(), "two-2"),
    ];
    let _guards = mnts.clone().map(Unmount);
    let mut logs = Vec::new();
    for mnt in &mnts {
        let mut cmd = command(&oauth_env(&emulator));
        cmd.env("XDG_STATE_HOME", &state)
            .arg(mnt)
            .stdin(Stdio::null());
        let out = timed("bwmediafs", move || cmd.output().expect("run bwmediafs"));
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{said}");
        let prefix = format!(
            "bwmediafs: mounted the media of account 9900000 on {}; log: ",
            mnt.display()
        );
        assert_eq!(said.lines().count(), 1, "one line: {said:?}");
        let log = PathBuf::from(
            said.trim_end()
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{said:?} does not start with {prefix:?}")),
        );
        assert_eq!(log.parent(), Some(&*state.join("bwmediafs")));
        let text = wait_for_text(&log, "mounted the media");
        // Every line names its mount.
        assert!(
            text.lines().all(|l| l.contains(&mnt.display().to_string())),
            "{text}"
        );
        logs.push(log);
    }
    let names: Vec<String> = logs
        .iter()
        .map(|l| l.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names[0].ends_with("-one.log"), "{names:?}");
    assert!(names[1].ends_with("-two\\x2d2.log"), "{names:?}");
    for mnt in &mnts {
        sh_ok(&format!("umount {}", q(mnt)));
    }
    for (mnt, log) in mnts.iter().zip(&logs) {
        wait_for_text(log, &format!("unmounted {}", mnt.display()));
    }
}

#[test]
fn under_the_journal_a_background_mount_logs_to_standard_error_without_timestamps() {
    use std::os::unix::fs::MetadataExt;
    let emulator = start_emulator(emulator_config());
    let dir = tempfile::tempdir().unwrap();
    let mnt = mountpoint_in(dir.path(), "media");
    let _guard = Unmount(mnt.clone());
    // systemd says a standard error is the journal by its device and inode in JOURNAL_STREAM;
    // a file stands in for the journal's socket.
    let journal = dir.path().join("journal");
    let stderr = std::fs::File::create(&journal).unwrap();
    let meta = stderr.metadata().unwrap();
    let mut cmd = command(&oauth_env(&emulator));
    cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .arg(&mnt)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let status = timed("bwmediafs", move || cmd.status().expect("run bwmediafs"));
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&journal).unwrap()
    );
    let text = wait_for_text(&journal, "mounted the media of account");
    assert!(text.contains("; log: the journal"), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("] mounted the media"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.starts_with(&format!("<6>[INFO  {} bwmediafs]", mnt.display())),
        "a priority, the mount, no timestamp: {line}"
    );
    // The daemon kept its standard error: the unmount is logged there too.
    sh_ok(&format!("umount {}", q(&mnt)));
    wait_for_text(&journal, &format!("unmounted {}", mnt.display()));
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("state/bwmediafs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .collect();
    assert!(logs.is_empty(), "a log file besides the journal: {logs:?}");
}
