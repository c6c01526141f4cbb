//! What a mount leaves for the next one, through real mounts that share one state directory:
//! the times `touch`, `cp -p` and `rsync -a` set, kept until the server changes the media; and
//! one state file per server and account.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::*;
use bwmediafs::emulator::Emulator;

/// The mtime of `p` in nanoseconds since the epoch.
fn mtime_ns(p: &Path) -> i128 {
    let md = std::fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// Long enough for the mount's `--metadata-ttl 1s` (and the kernel's attributes) to expire.
fn past_the_ttl() {
    std::thread::sleep(Duration::from_millis(1300));
}

#[test]
fn times_set_in_the_mount_outlast_a_remount_until_the_server_changes_the_media() {
    let emulator = emulator_with(&[("kept/old.txt", b"an old media")]);
    let state = tempfile::tempdir().unwrap();
    let env = env_keeping(&emulator, state.path());
    let args = ["--metadata-ttl", "1s"];
    let mut m = Mount::with_env(emulator, &args, &env);
    // By now the mount has first seen kept/old.txt.
    let mounted = Instant::now();

    // Local files dated in the past, copied in with rsync -a and cp -p; a touch of a media
    // that was on the server before.
    let src = m.dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"a\n").unwrap();
    std::fs::write(src.join("sub/b.bin"), bytes(30_000, 2)).unwrap();
    sh_ok(&format!(
        "touch -d '2021-03-04 05:06:07.123456789' {} && touch -d '2020-01-02 03:04:05' {}",
        q(&src.join("a.txt")),
        q(&src.join("sub/b.bin"))
    ));
    sh_ok(&format!("rsync -a {}/ {}/", q(&src), q(&m.path("in"))));
    sh_ok(&format!(
        "cp -p {} {}",
        q(&src.join("a.txt")),
        q(&m.path("copied.txt"))
    ));
    sh_ok(&format!(
        "touch -d @1562577011 {}",
        q(&m.path("kept/old.txt"))
    ));
    let want = [
        ("in/a.txt", mtime_ns(&src.join("a.txt"))),
        ("in/sub/b.bin", mtime_ns(&src.join("sub/b.bin"))),
        ("copied.txt", mtime_ns(&src.join("a.txt"))),
        ("kept/old.txt", mtime_ns(&m.path("kept/old.txt"))),
    ];
    assert_eq!(want[3].1, 1_562_577_011 * 1_000_000_000, "kept/old.txt");
    for (name, t) in want {
        assert_eq!(mtime_ns(&m.path(name)), t, "{name} in the first mount");
    }
    m.unmount();

    // A remount against the same server and state: the times are back, and rsync -a finds
    // nothing to send.
    let mut m2 = Mount::with_env(m.emulator.clone(), &args, &env);
    for (name, t) in want {
        assert_eq!(mtime_ns(&m2.path(name)), t, "{name} after a remount");
    }
    m2.reset_stats();
    let stats = sh_ok(&format!(
        "rsync -a --stats {}/ {}/",
        q(&src),
        q(&m2.path("in"))
    ));
    assert!(
        stats.contains("Number of regular files transferred: 0"),
        "rsync -a after a remount:\n{stats}"
    );
    assert_eq!(
        m2.stats().put,
        0,
        "rsync -a after a remount uploads nothing"
    );

    // The server changes a media (another size): the time set on its old bytes goes.
    let before = now_ns();
    m2.emulator
        .store()
        .put(
            "in/a.txt",
            bytes::Bytes::from_static(b"changed elsewhere\n"),
            "text/plain",
            None,
        )
        .unwrap();
    past_the_ttl();
    sh_ok(&format!("ls -l {} >/dev/null", q(&m2.path("in"))));
    let changed = mtime_ns(&m2.path("in/a.txt"));
    assert!(
        changed >= before - 2_000_000_000,
        "in/a.txt keeps the time set on its old bytes: {changed}"
    );
    assert_eq!(mtime_ns(&m2.path("in/sub/b.bin")), want[1].1);
    m2.unmount();

    // Other bytes of the same size while nothing is mounted: the server's date (whole seconds),
    // later than the latest moment of the upload the time was set on, says they are new.
    let wait = Duration::from_millis(2500).saturating_sub(mounted.elapsed());
    std::thread::sleep(wait);
    m2.emulator
        .store()
        .put(
            "kept/old.txt",
            bytes::Bytes::from_static(b"AN OLD MEDIA"),
            "text/plain",
            None,
        )
        .unwrap();
    let m3 = Mount::with_env(m2.emulator.clone(), &args, &env);
    assert_eq!(
        std::fs::read(m3.path("kept/old.txt")).unwrap(),
        b"AN OLD MEDIA"
    );
    past_the_ttl();
    let dated = mtime_ns(&m3.path("kept/old.txt"));
    assert!(
        dated >= before - 2_000_000_000,
        "kept/old.txt keeps the time set on its old bytes: {dated}"
    );
    assert_eq!(mtime_ns(&m3.path("in/sub/b.bin")), want[1].1);
}

#[test]
fn two_servers_with_one_account_id_keep_their_times_apart() {
    // No dates from the server: the times are the ones this machine first saw.
    let config = || {
        let mut c = emulator_config();
        c.store.last_modified = false;
        c
    };
    let seed = |e: &Emulator| {
        e.store()
            .put("x.txt", bytes::Bytes::from_static(b"x"), "text/plain", None)
            .unwrap();
    };
    let state = tempfile::tempdir().unwrap();
    let a = start_emulator(config());
    seed(&a);
    let env_a = env_keeping(&a, state.path());
    let mut ma = Mount::with_env(a, &[], &env_a);
    let seen_by_a = mtime_ns(&ma.path("x.txt"));
    sh_ok(&format!("touch -d @1562577011 {}", q(&ma.path("set.txt"))));
    ma.unmount();
    std::thread::sleep(Duration::from_millis(1100));

    // Another server (another port), the same account id, the same names: nothing of A's.
    let b = start_emulator(config());
    seed(&b);
    b.store()
        .put("set.txt", bytes::Bytes::new(), "text/plain", None)
        .unwrap();
    assert_eq!(b.account(), ma.emulator.account());
    let env_b = env_keeping(&b, state.path());
    let mut mb = Mount::with_env(b, &[], &env_b);
    assert!(
        mtime_ns(&mb.path("x.txt")) > seen_by_a,
        "B shows the time A first saw its own x.txt"
    );
    assert_ne!(
        mtime_ns(&mb.path("set.txt")),
        1_562_577_011 * 1_000_000_000,
        "B shows the time set on A's set.txt"
    );
    mb.unmount();

    // A, mounted again, still has its own.
    let ma2 = Mount::with_env(ma.emulator.clone(), &[], &env_a);
    assert_eq!(mtime_ns(&ma2.path("x.txt")), seen_by_a);
    assert_eq!(
        mtime_ns(&ma2.path("set.txt")),
        1_562_577_011 * 1_000_000_000
    );
}

/// Mounts of two stores keep their recovery copies apart: copies are named after the media, so
/// in one shared folder a failed upload on one mount overwrote the other's copy of the same
/// name, and a successful upload on one removed the other's copy of the same bytes, which the
/// other server never stored. By default each store has a folder of its own.
#[test]
fn two_stores_keep_their_recovery_copies_apart() {
    let state = tempfile::tempdir().unwrap();
    let a = start_emulator(emulator_config());
    let b = start_emulator(emulator_config());
    let env_a = env_keeping(&a, state.path());
    let env_b = env_keeping(&b, state.path());
    let ma = Mount::with_env(a, &["--retry-time", "500ms"], &env_a);
    let mb = Mount::with_env(b, &["--retry-time", "500ms"], &env_b);
    let fail = |m: &Mount| {
        m.emulator.set_faults(bwmediafs::emulator::Faults {
            error_rate: 1.0,
            error_statuses: vec![503],
            ..Default::default()
        })
    };
    // The fsync's result: a failed upload saves the bytes in the recovery folder.
    let write = |m: &Mount, body: &'static [u8]| {
        let p = m.path("x.txt");
        timed("write", move || {
            use std::io::Write;
            let mut f = std::fs::File::create(p)?;
            f.write_all(body)?;
            f.sync_all()
        })
    };
    fail(&ma);
    assert!(write(&ma, b"only A's").is_err());
    // B fails too, with other bytes of the same name; then B stores A's bytes.
    fail(&mb);
    assert!(write(&mb, b"only B's").is_err());
    mb.emulator
        .set_faults(bwmediafs::emulator::Faults::default());
    write(&mb, b"only A's").expect("B stores the bytes");
    let mut copies: Vec<Vec<u8>> = walk_files(&state.path().join("bwmediafs/recovery"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "x.txt"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    copies.sort();
    // A's bytes never reached A, B's never reached B: each keeps its copy.
    assert_eq!(copies, vec![b"only A's".to_vec(), b"only B's".to_vec()]);
}

/// Every file under `dir`.
fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
