//! Reliability through a real mount, driven by the emulator's fault knobs: nothing lost, nothing
//! corrupted, nothing hangs; and the security promises that only a running process can show.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::common::*;
use bwmediafs::emulator::{Emulator, EmulatorConfig, Faults};
use bytes::Bytes;

/// Write a whole file through the mount; the result of the last step (close included).
fn write_file(path: std::path::PathBuf, data: Vec<u8>) -> std::io::Result<()> {
    timed("write", move || {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&data)?;
        // close() reports the upload's error through flush; sync_all makes it observable here.
        f.sync_all()
    })
}

#[test]
fn twenty_percent_faults_lose_and_corrupt_nothing() {
    let emulator = start_emulator(emulator_config());
    for i in 0..100u64 {
        emulator
            .store()
            .put(
                &format!("out/{i:03}"),
                Bytes::from(bytes(20_000 + i as usize * 100, i)),
                "application/octet-stream",
                None,
            )
            .unwrap();
    }
    let m = Mount::with(emulator, &["--retry-time", "20s"]);
    m.emulator.set_faults(Faults {
        error_rate: 0.10,
        error_statuses: vec![500, 503, 429],
        retry_after_secs: 0,
        cut_rate: 0.05,
        truncate_rate: 0.05,
        ..Faults::default()
    });
    let mut failures = 0;
    for i in 0..100u64 {
        let data = bytes(30_000 + i as usize, 1000 + i);
        match write_file(m.path(&format!("in-{i:03}")), data.clone()) {
            Ok(()) => assert_eq!(
                m.stored(&format!("in-{i:03}")).as_deref(),
                Some(&data[..]),
                "close succeeded but the media is not stored"
            ),
            Err(e) => {
                failures += 1;
                eprintln!("upload {i} failed: {e}");
            }
        }
    }
    for i in 0..100u64 {
        let p = m.path(&format!("out/{i:03}"));
        match timed("read", move || std::fs::read(p)) {
            Ok(body) => assert!(
                body == bytes(20_000 + i as usize * 100, i),
                "read of out/{i:03} returned wrong bytes"
            ),
            Err(e) => {
                failures += 1;
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
            }
        }
    }
    // With 6 attempts per request, a failure for good is vanishingly rare at 20%.
    assert!(
        failures <= 2,
        "{failures} operations failed despite retries"
    );
    let s = m.stats();
    assert!(s.get + s.put > 200, "faults were not exercised: {s:?}");
}

#[test]
fn an_upload_that_fails_for_good_fails_close_and_keeps_the_bytes() {
    let m = Mount::with(start_emulator(emulator_config()), &["--retry-time", "1s"]);
    std::fs::create_dir_all(m.path("msg/0")).unwrap();
    m.emulator.set_faults(Faults {
        error_rate: 1.0,
        error_statuses: vec![503],
        ..Faults::default()
    });
    let data = bytes(12_345, 77);
    let err = write_file(m.path("msg/0/lost.png"), data.clone()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    m.emulator.set_faults(Faults::default());
    assert!(
        m.stored("msg/0/lost.png").is_none(),
        "{} should not be stored",
        "msg/0/lost.png"
    );
    // The bytes wait in the recovery folder, and the log says where and how to re-upload.
    let recovery = m.dir.path().join("recovery");
    let kept: Vec<_> = std::fs::read_dir(&recovery)
        .expect("recovery dir")
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert!(
        kept.contains(&data),
        "the written bytes are not in the recovery folder"
    );
    let log = m.log_text();
    assert!(
        log.contains(recovery.to_str().unwrap()),
        "the log does not name the recovery file"
    );
}

#[test]
fn an_unreachable_server_fails_fast_and_the_mount_recovers_by_itself() {
    let config = emulator_config();
    let m = Mount::with(
        start_emulator(config.clone()),
        &[
            "--retry-time",
            "2s",
            "--timeout",
            "2s",
            "--metadata-ttl",
            "1s",
        ],
    );
    let addr = m.emulator.addr();
    let mut m = m;
    m.emulator.shutdown();
    m.emulator.wait();
    std::thread::sleep(Duration::from_millis(1100)); // let the listing expire
    let t = Instant::now();
    let p = m.path("never-seen");
    let r = timed("read while down", move || std::fs::read(p));
    let e = r.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    let w = write_file(m.path("while-down"), b"x".to_vec());
    assert!(w.is_err(), "a write while the server is down succeeded");

    // The server comes back on the same address; the mount works again without a remount.
    let back = Emulator::start(EmulatorConfig {
        listen: addr,
        ..config
    })
    .expect("restart the emulator");
    back.store()
        .put("back", Bytes::from_static(b"again"), "text/plain", None)
        .unwrap();
    m.emulator = back.into();
    std::thread::sleep(Duration::from_millis(1100));
    let p = m.path("back");
    assert_eq!(
        timed("read after", move || std::fs::read(p)).unwrap(),
        b"again"
    );
    write_file(m.path("after"), b"ok".to_vec()).unwrap();
    assert_eq!(m.stored("after").unwrap(), b"ok");
}

#[test]
fn a_kill_9_at_once_after_mounting_always_ends_the_process() {
    // The moment the mount appears is when the daemon makes sure it answers: a daemon that did
    // so by a system call into its own mount could be killed with that request open, and
    // then never end (seen in CI).
    for round in 0..15 {
        let mut m = Mount::new();
        m.signal(libc::SIGKILL);
        assert!(
            m.wait_exit(Duration::from_secs(10)).is_some(),
            "round {round}: a killed bwmediafs did not end"
        );
    }
}

#[test]
fn with_auto_unmount_a_kill_9_leaves_no_mount_behind() {
    let mut m = Mount::with(start_emulator(emulator_config()), &["-o", "auto_unmount"]);
    write_file(m.path("f.txt"), b"kept".to_vec()).unwrap();
    assert_eq!(m.stored("f.txt").unwrap(), b"kept");
    m.signal(libc::SIGKILL);
    m.wait_exit(Duration::from_secs(10)).expect("killed");
    // fusermount3 saw the process end and removed the mount: no dead mount is left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while bwmediafs::cli::mountpoint::mounted_type(&m.mnt).is_some() {
        assert!(Instant::now() < deadline, "the mount outlived its process");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::fs::read_dir(&m.mnt).unwrap().next().is_none());
}

#[test]
fn a_dead_mount_after_kill_9_is_cleared_by_the_next_mount() {
    let mut first = Mount::new();
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(10)).expect("killed");
    let err = std::fs::metadata(&first.mnt).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    // A new bwmediafs on the same mountpoint clears the dead mount and mounts.
    let mnt = first.mnt.clone();
    let log = first.dir.path().join("second.log");
    let mut child = command(&oauth_env(&first.emulator))
        .args(["-f", mnt.to_str().unwrap()])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Mounted and answering: between the clearing of the dead mount and the new mount the
    // directory is plain (and answers too), so the mount table must show the new mount.
    let serving = |mnt: &std::path::Path| {
        bwmediafs::cli::mountpoint::mounted_type(mnt).is_some() && std::fs::metadata(mnt).is_ok()
    };
    while !serving(&mnt) {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            panic!(
                "second mount failed:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("dead mount"), "{text}");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = timed("exit", move || child.wait().unwrap());
    assert!(
        status.success(),
        "{status}:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn eight_threads_of_mixed_operations_agree_with_the_api() {
    let m = Mount::new();
    let secs: u64 = std::env::var("BWMEDIAFS_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let until = Instant::now() + Duration::from_secs(secs);
    let root = m.mnt.clone();
    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || {
                let mut x = t + 1;
                let mut ops = 0u64;
                while Instant::now() < until {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let a = root.join(format!("n{}", x % 6));
                    let b = root.join(format!("n{}", (x >> 8) % 6));
                    let _ = match x % 5 {
                        0 | 1 => std::fs::write(&a, bytes((x % 5000) as usize, x)).map(|_| ()),
                        2 => std::fs::read(&a).map(|_| ()),
                        3 => std::fs::rename(&a, &b),
                        _ => std::fs::remove_file(&a),
                    };
                    let _ = std::fs::read_dir(&root).map(|d| d.count());
                    ops += 1;
                }
                ops
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(secs + 60);
    let mut total = 0;
    for w in workers {
        while !w.is_finished() {
            assert!(Instant::now() < deadline, "a worker hung (deadlock?)");
            std::thread::sleep(Duration::from_millis(50));
        }
        total += w.join().expect("worker panicked");
    }
    assert!(total > 100, "only {total} operations ran");
    assert!(m.is_mounted(), "the mount died:\n{}", m.log_text());
    assert!(!m.log_text().contains("panicked"), "{}", m.log_text());
    // What the mount shows is what the API has, byte for byte.
    let mut seen = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(&m.mnt).unwrap().flatten() {
        let name = e.file_name().into_string().unwrap();
        seen.insert(name, std::fs::read(e.path()).unwrap());
    }
    let api: std::collections::BTreeMap<_, _> = m
        .emulator
        .store()
        .names()
        .into_iter()
        .map(|n| {
            let body = m.stored(&n).unwrap();
            (n, body)
        })
        .collect();
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        api.keys().collect::<Vec<_>>()
    );
    assert!(seen == api, "contents differ between the mount and the API");
}

/// Run `script` as user nobody; (success, stderr).
fn as_nobody(script: &str) -> (bool, String) {
    let out = sh(&format!(
        "setpriv --reuid=65534 --regid=65534 --clear-groups bash -c {}",
        q(std::path::Path::new(script))
    ));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn other_users_are_kept_out_unless_allow_other_and_then_modes_apply() {
    let private = Mount::new();
    std::fs::set_permissions(private.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(private.path("f"), b"secret").unwrap();
    let (ok, err) = as_nobody(&format!("ls {}", q(&private.mnt)));
    assert!(!ok, "another user listed a mount without allow_other");
    assert!(err.contains("Permission denied"), "{err}");
    drop(private);

    let shared = Mount::with(start_emulator(emulator_config()), &["-o", "allow_other"]);
    std::fs::set_permissions(shared.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(shared.path("public"), b"hello").unwrap();
    std::fs::write(shared.path("private"), b"secret").unwrap();
    std::fs::set_permissions(
        shared.path("private"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (ok, err) = as_nobody(&format!("cat {}", q(&shared.path("public"))));
    assert!(ok, "{err}");
    let (ok, err) = as_nobody(&format!("cat {}", q(&shared.path("private"))));
    assert!(
        !ok && err.contains("Permission denied"),
        "mode 600 was not enforced: {err}"
    );
    let (ok, _) = as_nobody(&format!("echo x > {}", q(&shared.path("new"))));
    assert!(!ok, "nobody wrote into a 755 directory owned by root");
}

#[test]
fn sigterm_with_a_file_open_for_reading_still_ends_cleanly() {
    let mut m = Mount::with(emulator_with(&[("r", b"abc")]), &[]);
    let p = m.path("r");
    let mut f = timed("open", move || std::fs::File::open(p).unwrap());
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "abc");
    m.signal(libc::SIGTERM);
    // The unmount finds the file open, and detaches the mount until it is closed.
    std::thread::sleep(Duration::from_millis(300));
    drop(f);
    let status = m.wait_exit(Duration::from_secs(20)).expect("still running");
    assert!(status.success(), "{status}");
    // A normal stop: nothing in the log calls for attention.
    let log = m.log_text();
    let alarming: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(alarming.is_empty(), "{alarming:#?}");
}
