//! `--writeback` through real mounts: a close returns once the bytes are in the journal on
//! this machine's disk, uploads follow in the background, fsync stays strict, and what a
//! `kill -9` or an unmount with the server down leaves in the journal, the next mount uploads.
//! The oracle is the promise: every close that returned 0 ends on the server byte for byte.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use bwmediafs::emulator::Faults;

/// Write `data` to `p` and close it, with the close's result.
fn write_file(p: &Path, data: &[u8]) -> std::io::Result<()> {
    let (p, d) = (p.to_path_buf(), data.to_vec());
    timed("write", move || {
        let mut f = File::create(p)?;
        f.write_all(&d)?;
        close(f)
    })
}

/// Wait (up to 20 s) until the server holds `data` under `name`.
fn until_stored(m: &Mount, name: &str, data: &[u8]) {
    wait_for(
        &format!("{name} is not on the server"),
        Duration::from_secs(20),
        || m.stored(name).as_deref() == Some(data),
        || m.log_text(),
    );
}

/// Wait until the mount says its uploads are failing (`bwmediafs status --json`).
fn until_failing(m: &Mount) {
    wait_for(
        "uploads never said failing",
        Duration::from_secs(10),
        || status(m, true).1.contains("\"failing\":true"),
        || m.log_text(),
    );
}

/// The staged versions in the journal under the state directory `state`.
fn journal_versions(state: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let journals = state.join("bwmediafs/journal");
    for store in std::fs::read_dir(journals).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(store.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".put") {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn a_close_with_the_server_down_returns_0_and_the_upload_follows_when_it_is_back() {
    let emulator = emulator_with(&[]);
    let m = Mount::with(emulator, &["--writeback", "--retry-time", "300ms"]);
    server_down(&m.emulator);
    let data = bytes(300_000, 1);
    // The close does not wait for the server: the bytes are in the journal.
    write_file(&m.path("photo.jpg"), &data).expect("a staged close returns 0");
    // Reads, ls and stat see them at once.
    assert_eq!(std::fs::read(m.path("photo.jpg")).unwrap(), data);
    assert_eq!(
        std::fs::metadata(m.path("photo.jpg")).unwrap().len(),
        300_000
    );
    let names: Vec<String> = std::fs::read_dir(m.path(""))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["photo.jpg"]);
    assert_eq!(m.stored("photo.jpg"), None);
    server_up(&m.emulator);
    until_stored(&m, "photo.jpg", &data);
}

#[test]
fn closes_fall_back_to_uploading_themselves_while_uploads_fail() {
    let emulator = emulator_with(&[]);
    let m = Mount::with(emulator, &["--writeback", "--retry-time", "300ms"]);
    server_down(&m.emulator);
    write_file(&m.path("first.txt"), b"staged").expect("staged");
    // Wait for the background upload to have failed once: the mount's uploads are failing.
    wait_for(
        "no upload was tried",
        Duration::from_secs(10),
        || m.log_text().contains("put \"first.txt\": attempt"),
        || m.log_text(),
    );
    std::thread::sleep(Duration::from_millis(600));
    // A fast acknowledgement is given only while uploads succeed: this close reports the truth.
    let err = write_file(&m.path("second.txt"), b"not staged").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    server_up(&m.emulator);
    until_stored(&m, "first.txt", b"staged");
}

/// Found by the model test: once a `sync` (or a close that uploaded itself) had sent what the
/// background failed to, nothing said that uploads went through again, and every later close
/// uploaded itself for the rest of the mount.
#[test]
fn closes_stage_again_once_a_sync_has_sent_what_was_failing() {
    let emulator = emulator_with(&[]);
    let m = Mount::with(emulator, &["--writeback", "--retry-time", "300ms"]);
    server_down(&m.emulator);
    write_file(&m.path("first.txt"), b"staged").expect("staged");
    until_failing(&m);
    // The server is back; the sync sends the file before the background tries again.
    server_up(&m.emulator);
    sh_ok(&format!("sync {}", q(&m.path(""))));
    assert_eq!(m.stored("first.txt").as_deref(), Some(&b"staged"[..]));
    assert!(status(&m, true).1.contains("\"failing\":false"));
    // Uploads went through: a close is acknowledged from the journal again, server or not.
    server_down(&m.emulator);
    write_file(&m.path("second.txt"), b"staged too").expect("staged, not uploaded");
    server_up(&m.emulator);
    until_stored(&m, "second.txt", b"staged too");
}

/// Found by the model test: a close that failed (uploads failing, the server down) left its
/// bytes in the buffer of a file with an earlier staged version, so the background sent them
/// once the server was back: the failed change took effect after all, and the acknowledged
/// version was never stored (a truncate(2) of the closed file, the same). As without
/// write-back, the file goes back to the last version a close acknowledged, and the failed
/// bytes stay in the recovery folder alone.
#[test]
fn a_failed_close_or_truncate_goes_back_to_the_version_staged_before_it() {
    let emulator = emulator_with(&[]);
    let m = Mount::with(emulator, &["--writeback", "--retry-time", "300ms"]);
    server_down(&m.emulator);
    write_file(&m.path("f.txt"), b"acknowledged").expect("staged");
    until_failing(&m);
    let p = m.path("f.txt");
    let err = timed("a rewrite", move || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(p)?;
        f.write_all(b"refused: the server is down")?;
        close(f)
    })
    .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    // Once the kernel releases the handle (it does so after close returns, in the background).
    wait_for(
        "the failed bytes are still shown",
        Duration::from_secs(10),
        || std::fs::read(m.path("f.txt")).unwrap() == b"acknowledged",
        || m.log_text(),
    );
    let recovered: Vec<Vec<u8>> = walkdir(&m.dir.path().join("recovery"));
    assert!(
        recovered
            .iter()
            .any(|b| b == b"refused: the server is down"),
        "the failed bytes are not in the recovery folder"
    );
    // A truncate(2) of the closed file that fails goes back the same way (the kernel shows the
    // size its own truncate set until its attribute cache expires, as after any failed close).
    let path = std::ffi::CString::new(m.path("f.txt").into_os_string().into_encoded_bytes())
        .expect("a path without NUL");
    // SAFETY: a valid NUL-terminated path that outlives the call.
    let truncated = unsafe { libc::truncate(path.as_ptr(), 0) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!((truncated, errno), (-1, Some(libc::EIO)));
    server_up(&m.emulator);
    sh_ok(&format!("sync {}", q(&m.path(""))));
    assert_eq!(m.stored("f.txt").as_deref(), Some(&b"acknowledged"[..]));
}

/// The bytes of every file under `dir`, at any depth.
fn walkdir(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else if let Ok(b) = std::fs::read(&p) {
            out.push(b);
        }
    }
    out
}

#[test]
fn fsync_still_returns_only_once_the_server_holds_the_bytes() {
    let emulator = emulator_with(&[]);
    let m = Mount::with(emulator, &["--writeback", "--retry-time", "300ms"]);
    server_down(&m.emulator);
    let p = m.path("synced.txt");
    let r = timed("fsync", move || {
        let mut f = File::create(p)?;
        f.write_all(b"must reach the server")?;
        f.sync_all()
    });
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EIO));
    server_up(&m.emulator);
    let p = m.path("synced.txt");
    timed("fsync again", move || {
        let f = std::fs::OpenOptions::new().write(true).open(p)?;
        f.sync_all()
    })
    .expect("a later fsync tries again for real");
    assert_eq!(
        m.stored("synced.txt").as_deref(),
        Some(&b"must reach the server"[..])
    );
}

#[test]
fn files_staged_when_the_daemon_is_killed_are_uploaded_by_the_next_mount() {
    let emulator = std::sync::Arc::new(emulator_with(&[]));
    let state = tempfile::tempdir().unwrap();
    let env = env_keeping(&emulator, state.path());
    let args = ["--writeback", "--retry-time", "300ms"];
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            (
                format!("dir/f{i:02}.bin"),
                bytes(20_000 + i * 1000, i as u64),
            )
        })
        .collect();
    {
        let mut first = Mount::with_env(emulator.clone(), &args, &env);
        server_down(&emulator);
        std::fs::create_dir(first.path("dir")).unwrap();
        for (name, data) in &files {
            write_file(&first.path(name), data).expect("staged");
        }
        first.signal(libc::SIGKILL);
        first.wait_exit(Duration::from_secs(10)).expect("killed");
    }
    assert_eq!(journal_versions(state.path()).len(), files.len());
    server_up(&emulator);
    let second = Mount::with_env(emulator.clone(), &args, &env);
    // Listed and readable at once, from the journal.
    for (name, data) in &files {
        assert_eq!(&std::fs::read(second.path(name)).unwrap(), data, "{name}");
    }
    for (name, data) in &files {
        until_stored(&second, name, data);
    }
    wait_for(
        "the journal keeps uploaded versions",
        Duration::from_secs(10),
        || journal_versions(state.path()).is_empty(),
        || second.log_text(),
    );
}

#[test]
fn an_unmount_uploads_what_is_pending_and_keeps_what_it_cannot() {
    let emulator = std::sync::Arc::new(emulator_with(&[]));
    let state = tempfile::tempdir().unwrap();
    let env = env_keeping(&emulator, state.path());
    let args = [
        "--writeback",
        "--retry-time",
        "300ms",
        "--drain-timeout",
        "2s",
    ];
    // With 100 ms per request, the uploads are pending when the unmount comes: it sends them.
    emulator.set_faults(Faults {
        latency_ms: 100,
        ..Faults::default()
    });
    let mut m = Mount::with_env(emulator.clone(), &args, &env);
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("a{i:02}.bin"), bytes(10_000, i as u64)))
        .collect();
    for (name, data) in &files {
        write_file(&m.path(name), data).expect("staged");
    }
    m.unmount();
    for (name, data) in &files {
        assert_eq!(m.stored(name).as_deref(), Some(&data[..]), "{name}");
    }
    assert!(journal_versions(state.path()).is_empty());
    // With the server down, the unmount keeps them in the journal, and says so.
    let mut m = Mount::with_env(emulator.clone(), &args, &env);
    server_down(&emulator);
    write_file(&m.path("later.txt"), b"kept for the next mount").expect("staged");
    m.unmount();
    assert!(
        m.log_text()
            .contains("the next mount of this account uploads them"),
        "{}",
        m.log_text()
    );
    assert_eq!(journal_versions(state.path()).len(), 1);
    server_up(&emulator);
    let next = Mount::with_env(emulator.clone(), &args, &env);
    until_stored(&next, "later.txt", b"kept for the next mount");
}

#[test]
fn removing_or_renaming_a_file_not_yet_uploaded_sends_only_what_is_left() {
    let emulator = std::sync::Arc::new(emulator_with(&[]));
    let state = tempfile::tempdir().unwrap();
    let env = env_keeping(&emulator, state.path());
    let args = ["--writeback", "--retry-time", "300ms"];
    let mut m = Mount::with_env(emulator.clone(), &args, &env);
    server_down(&emulator);
    write_file(&m.path("gone.txt"), b"removed before its upload").expect("staged");
    write_file(&m.path("old-name.txt"), b"renamed before its upload").expect("staged");
    std::fs::remove_file(m.path("gone.txt")).expect("rm of a staged file");
    std::fs::rename(m.path("old-name.txt"), m.path("new-name.txt")).expect("mv");
    server_up(&emulator);
    m.reset_stats();
    until_stored(&m, "new-name.txt", b"renamed before its upload");
    m.unmount();
    assert_eq!(m.stored("gone.txt"), None);
    assert_eq!(m.stored("old-name.txt"), None);
    let stats = m.stats();
    assert_eq!((stats.put, stats.delete), (1, 0), "{stats:?}");
    assert!(journal_versions(state.path()).is_empty());
}

/// `mv` of a file the server holds is journaled like a write: answered at once (with the
/// server down), shown at once, and after a kill -9 the next mount sends it: the new name is
/// stored first and the old one deleted after, so no moment has neither.
#[test]
fn a_rename_of_a_stored_file_is_answered_from_the_journal_and_outlasts_a_kill_9() {
    let emulator = std::sync::Arc::new(emulator_with(&[("a.txt", b"stored bytes")]));
    let state = tempfile::tempdir().unwrap();
    let env = env_keeping(&emulator, state.path());
    let args = ["--writeback", "--retry-time", "300ms"];
    {
        let mut first = Mount::with_env(emulator.clone(), &args, &env);
        assert_eq!(std::fs::read(first.path("a.txt")).unwrap(), b"stored bytes");
        server_down(&emulator);
        std::fs::rename(first.path("a.txt"), first.path("b.txt")).expect("mv from the journal");
        assert_eq!(std::fs::read(first.path("b.txt")).unwrap(), b"stored bytes");
        assert!(!first.path("a.txt").exists());
        assert_eq!(first.stored("a.txt").as_deref(), Some(&b"stored bytes"[..]));
        assert_eq!(first.stored("b.txt"), None);
        first.signal(libc::SIGKILL);
        first.wait_exit(Duration::from_secs(10)).expect("killed");
    }
    assert_eq!(
        journal_versions(state.path()).len(),
        2,
        "the copy and the deletion"
    );
    server_up(&emulator);
    let second = Mount::with_env(emulator.clone(), &args, &env);
    let names: Vec<String> = std::fs::read_dir(second.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["b.txt"], "shown at once from the journal");
    sh_ok(&format!("sync {}", q(&second.path(""))));
    assert_eq!(
        second.stored("b.txt").as_deref(),
        Some(&b"stored bytes"[..])
    );
    assert_eq!(second.stored("a.txt"), None);
    assert!(journal_versions(state.path()).is_empty());
}

/// A rename costs its PUT and its DELETE, sent in the background; when the server refuses the
/// new name for good, the old name is not deleted: the rename is undone on the server, and the
/// bytes are in the recovery folder.
#[test]
fn a_rename_whose_new_name_is_refused_keeps_the_old_name() {
    let big = bytes(5000, 3);
    let m = Mount::with(
        emulator_with(&[("big.bin", &big)]),
        &["--writeback", "--retry-time", "300ms"],
    );
    assert_eq!(std::fs::read(m.path("big.bin")).unwrap(), big);
    m.reset_stats();
    std::fs::rename(m.path("big.bin"), m.path("moved.bin")).expect("mv");
    sh_ok(&format!("sync {}", q(&m.path(""))));
    let stats = m.stats();
    assert_eq!((stats.get, stats.put, stats.delete), (0, 1, 1), "{stats:?}");
    assert!(
        m.stored("moved.bin").as_ref() == Some(&big),
        "moved.bin is not stored"
    );
    assert_eq!(m.stored("big.bin"), None);
    let mut config = m.emulator.store().config();
    config.max_size = 1000;
    m.emulator.store().set_config(config);
    std::fs::rename(m.path("moved.bin"), m.path("again.bin")).expect("mv");
    let (ok, _, err) = sh_outcome(&format!("sync {}", q(&m.path(""))));
    assert!(!ok, "sync returned 0 though the new name was refused");
    assert!(err.contains("File too large"), "{err}");
    assert!(m.stored("moved.bin") == Some(big), "moved.bin is not kept");
    assert_eq!(m.stored("again.bin"), None);
    // Said once the refusal is known, by the sync or the background, whichever came first.
    wait_for(
        "no line says moved.bin stays",
        Duration::from_secs(20),
        || m.log_text().contains("\"moved.bin\" stays"),
        || m.log_text(),
    );
}

/// A name renamed away then written again, and the renamed file written again (which stages
/// the old name's deletion again, newer than the new file of that name): after a kill -9 the
/// next mount keeps the new file, whose upload replaces the old media.
#[test]
fn a_name_renamed_away_and_written_again_keeps_its_new_bytes_after_a_kill_9() {
    let emulator = std::sync::Arc::new(emulator_with(&[("a.txt", b"stored")]));
    let state = tempfile::tempdir().unwrap();
    let env = env_keeping(&emulator, state.path());
    let args = ["--writeback", "--retry-time", "3s"];
    {
        let mut first = Mount::with_env(emulator.clone(), &args, &env);
        assert_eq!(std::fs::read(first.path("a.txt")).unwrap(), b"stored");
        server_down(&emulator);
        std::fs::rename(first.path("a.txt"), first.path("b.txt")).expect("mv");
        write_file(&first.path("a.txt"), b"a new file").expect("staged");
        write_file(&first.path("b.txt"), b"b written again").expect("staged");
        first.signal(libc::SIGKILL);
        first.wait_exit(Duration::from_secs(10)).expect("killed");
    }
    server_up(&emulator);
    let second = Mount::with_env(emulator.clone(), &args, &env);
    sh_ok(&format!("sync {}", q(&second.path(""))));
    assert_eq!(second.stored("a.txt").as_deref(), Some(&b"a new file"[..]));
    assert_eq!(
        second.stored("b.txt").as_deref(),
        Some(&b"b written again"[..])
    );
}

#[test]
fn a_second_writeback_mount_of_the_account_is_refused_with_a_clear_message() {
    let emulator = std::sync::Arc::new(emulator_with(&[]));
    let state = tempfile::tempdir().unwrap();
    let env = env_keeping(&emulator, state.path());
    let _first = Mount::with_env(emulator.clone(), &["--writeback"], &env);
    let mut second = Mount::spawn(emulator.clone(), &["--writeback"], &env);
    let status = second.wait_exit(Duration::from_secs(30)).expect("it ends");
    assert!(!status.success());
    let log = second.log_text();
    assert!(log.contains("in use by another bwmediafs mount"), "{log}");
}

#[test]
fn a_directory_rename_sends_what_is_staged_under_it_first() {
    let emulator = emulator_with(&[]);
    let m = Mount::with(emulator, &["--writeback"]);
    m.emulator.set_faults(Faults {
        latency_ms: 50,
        ..Faults::default()
    });
    std::fs::create_dir(m.path("d")).unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("f{i}.bin"), bytes(5_000, i as u64)))
        .collect();
    for (name, data) in &files {
        write_file(&m.path(&format!("d/{name}")), data).expect("staged");
    }
    std::fs::rename(m.path("d"), m.path("e")).expect("mv d e");
    m.emulator.set_faults(Faults::default());
    sh_ok(&format!("sync {}", q(&m.path(""))));
    for (name, data) in &files {
        assert_eq!(
            m.stored(&format!("e/{name}")).as_deref(),
            Some(&data[..]),
            "e/{name}"
        );
        assert_eq!(m.stored(&format!("d/{name}")), None, "d/{name}");
    }
}

#[test]
fn sync_of_a_directory_returns_once_the_server_holds_what_was_closed_under_it() {
    let emulator = emulator_with(&[]);
    let m = Mount::with(emulator, &["--writeback", "--retry-time", "300ms"]);
    std::fs::create_dir(m.path("d")).unwrap();
    server_down(&m.emulator);
    write_file(&m.path("d/a.txt"), b"under d").expect("staged");
    write_file(&m.path("top.txt"), b"at the top").expect("staged");
    // With the server down, sync fails (EIO), naming the file in the log.
    let (ok, _, err) = sh_outcome(&format!("sync {}", q(&m.path("d"))));
    assert!(!ok, "sync returned 0 with the server down");
    assert!(err.contains("Input/output error"), "{err}");
    assert!(
        m.log_text().contains("sync: \"d/a.txt\" is not uploaded"),
        "{}",
        m.log_text()
    );
    server_up(&m.emulator);
    sh_ok(&format!("sync {}", q(&m.path("d"))));
    assert_eq!(m.stored("d/a.txt").as_deref(), Some(&b"under d"[..]));
    sh_ok(&format!("sync {}", q(&m.path(""))));
    assert_eq!(m.stored("top.txt").as_deref(), Some(&b"at the top"[..]));
}

/// The content of file `i` of the kill test.
fn kill_test_file(i: usize) -> (String, Vec<u8>) {
    (
        format!("k/f{i:03}.bin"),
        bytes(2_000 + (i * 7919) % 30_000, i as u64),
    )
}

#[test]
fn every_close_that_returned_0_survives_a_kill_9_at_random_moments() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("KILL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let rounds: usize = std::env::var("KILL_TEST_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    eprintln!("KILL_TEST_SEED={seed} KILL_TEST_ROUNDS={rounds}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for round in 0..rounds {
        let emulator = std::sync::Arc::new(emulator_with(&[]));
        // Uploads lag behind the closes, so the kill finds some staged and not uploaded.
        emulator.set_faults(Faults {
            latency_ms: 15,
            ..Faults::default()
        });
        let state = tempfile::tempdir().unwrap();
        let env = env_keeping(&emulator, state.path());
        let args = ["--writeback"];
        let first = Mount::with_env(emulator.clone(), &args, &env);
        std::fs::create_dir(first.path("k")).unwrap();
        let root = first.path("");
        let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = progress.clone();
        let writer = std::thread::spawn(move || {
            let mut closed = Vec::new();
            for i in 0..150 {
                let (name, data) = kill_test_file(i);
                if write_file(&root.join(&name), &data).is_err() {
                    break;
                }
                closed.push(i);
                seen.store(closed.len(), std::sync::atomic::Ordering::SeqCst);
            }
            closed
        });
        // The kill comes after a random number of closes, at a random moment of the next.
        let kill_after = rng.random_range(1..150);
        let deadline = Instant::now() + Duration::from_secs(30);
        while progress.load(std::sync::atomic::Ordering::SeqCst) < kill_after {
            assert!(Instant::now() < deadline, "the writer is stuck");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(rng.random_range(0..3000)));
        first.signal(libc::SIGKILL);
        let closed = writer.join().expect("the writer");
        drop(first);
        eprintln!(
            "round {round}: {} closed, {} staged and not uploaded at the kill",
            closed.len(),
            journal_versions(state.path()).len()
        );
        let second = Mount::with_env(emulator.clone(), &args, &env);
        sh_ok(&format!("sync {}", q(&second.path(""))));
        for &i in &closed {
            let (name, data) = kill_test_file(i);
            assert_eq!(
                second.stored(&name).as_deref(),
                Some(&data[..]),
                "round {round} (seed {seed}): {name}, closed before the kill, is not on the \
                 server after the next mount's sync"
            );
        }
        for i in 0..150 {
            let (name, data) = kill_test_file(i);
            if let Some(held) = second.stored(&name) {
                assert_eq!(held, data, "round {round} (seed {seed}): {name} is partial");
            }
        }
    }
}

#[test]
fn rm_answers_at_once_and_the_deletions_follow_even_after_a_kill_9() {
    let names: Vec<String> = (0..20).map(|i| format!("old/m{i:02}.jpg")).collect();
    let media: Vec<(&str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), &b"on the server"[..]))
        .collect();
    let emulator = std::sync::Arc::new(emulator_with(&media));
    let state = tempfile::tempdir().unwrap();
    let env = env_keeping(&emulator, state.path());
    let args = ["--writeback", "--retry-time", "300ms"];
    {
        let mut first = Mount::with_env(emulator.clone(), &args, &env);
        server_down(&emulator);
        // rm -r with the server down: answered from the journal, the names gone at once.
        sh_ok(&format!("rm -r {}", q(&first.path("old"))));
        assert!(!first.path("old").exists());
        first.signal(libc::SIGKILL);
        first.wait_exit(Duration::from_secs(10)).expect("killed");
    }
    server_up(&emulator);
    assert!(
        names.iter().all(|n| emulator.store().get(n).is_ok()),
        "deleted before the kill"
    );
    // The next mount sends the deletions the first one staged.
    let second = Mount::with_env(emulator.clone(), &args, &env);
    assert!(!second.path("old").exists());
    sh_ok(&format!("sync {}", q(&second.path(""))));
    for n in &names {
        assert_eq!(
            second.stored(n),
            None,
            "{n} is still on the server after sync"
        );
    }
    assert!(journal_versions(state.path()).is_empty());
}

#[test]
fn a_name_removed_then_written_again_keeps_the_new_bytes() {
    let emulator = emulator_with(&[("n.txt", b"old bytes")]);
    let m = Mount::with(emulator, &["--writeback", "--retry-time", "300ms"]);
    sh_ok(&format!("cat {} > /dev/null", q(&m.path("n.txt"))));
    server_down(&m.emulator);
    std::fs::remove_file(m.path("n.txt")).expect("rm, staged");
    write_file(&m.path("n.txt"), b"new bytes").expect("staged");
    server_up(&m.emulator);
    sh_ok(&format!("sync {}", q(&m.path(""))));
    assert_eq!(m.stored("n.txt").as_deref(), Some(&b"new bytes"[..]));
    // Nothing pending lands later and removes it.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(m.stored("n.txt").as_deref(), Some(&b"new bytes"[..]));
}

#[test]
fn rm_of_a_media_never_read_costs_one_delete_and_no_get() {
    let emulator = emulator_with(&[("a.jpg", b"never read")]);
    let m = Mount::with(emulator, &["--writeback"]);
    sh_ok(&format!("ls -l {} > /dev/null", q(&m.path(""))));
    m.reset_stats();
    std::fs::remove_file(m.path("a.jpg")).expect("rm");
    sh_ok(&format!("sync {}", q(&m.path(""))));
    let stats = m.stats();
    assert_eq!((stats.get, stats.put, stats.delete), (0, 0, 1), "{stats:?}");
    assert_eq!(m.stored("a.jpg"), None);
}

/// `getfattr -n NAME --only-values FILE`.
fn xattr(p: &Path, name: &str) -> std::io::Result<String> {
    let out = std::process::Command::new("getfattr")
        .args(["-n", name, "--only-values"])
        .arg(p)
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `bwmediafs status MOUNTPOINT [--json]`: its exit status and output.
fn status(m: &Mount, json: bool) -> (i32, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_bwmediafs"));
    cmd.arg("status").arg(m.path(""));
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("bwmediafs status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_url_attribute_of_a_staged_file_waits_for_its_upload() {
    let emulator = emulator_with(&[]);
    let m = Mount::with(emulator, &["--writeback", "--retry-time", "300ms"]);
    server_down(&m.emulator);
    write_file(&m.path("mms.jpg"), b"for a message").expect("staged");
    // The background try has failed; its next one waits out a backoff.
    std::thread::sleep(Duration::from_millis(400));
    server_up(&m.emulator);
    let url = xattr(&m.path("mms.jpg"), "user.bandwidth.url").expect("the url");
    assert!(url.ends_with("/media/mms.jpg"), "{url}");
    // When the URL is handed out, the server holds the bytes.
    assert_eq!(m.stored("mms.jpg").as_deref(), Some(&b"for a message"[..]));
}

#[test]
fn status_and_the_state_attribute_say_what_is_pending_and_what_was_refused() {
    let emulator = emulator_with(&[]);
    let m = Mount::with(emulator, &["--writeback", "--retry-time", "300ms"]);
    let (code, out) = status(&m, false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("everything is on the server"), "{out}");
    server_down(&m.emulator);
    write_file(&m.path("later.txt"), b"pending").expect("staged");
    assert_eq!(
        xattr(&m.path("later.txt"), "user.bandwidth.state").unwrap(),
        "pending"
    );
    let (code, out) = status(&m, false);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 change pending"), "{out}");
    let (code, json) = status(&m, true);
    assert_eq!(code, 1);
    let value: serde_json::Value = serde_json::from_str(json.trim()).expect("status --json");
    assert_eq!(value["pending"], 1);
    assert_eq!(value["pending_bytes"], 7);
    server_up(&m.emulator);
    sh_ok(&format!("sync {}", q(&m.path(""))));
    assert_eq!(
        xattr(&m.path("later.txt"), "user.bandwidth.state").unwrap(),
        "stored"
    );
    assert_eq!(status(&m, false).0, 0);
    // A file the server refuses for good: failed, named by status, kept in the recovery folder.
    let mut config = m.emulator.store().config();
    config.max_size = 1000;
    m.emulator.store().set_config(config);
    write_file(&m.path("big.bin"), &bytes(5000, 3)).expect("staged");
    wait_for(
        "no failure",
        Duration::from_secs(10),
        || status(&m, false).0 == 2,
        || m.log_text(),
    );
    let (_, out) = status(&m, false);
    assert!(out.contains("big.bin"), "{out}");
    assert_eq!(
        xattr(&m.path("big.bin"), "user.bandwidth.state").unwrap(),
        "failed"
    );
}

#[test]
fn status_of_a_directory_that_is_not_a_mount_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bwmediafs"))
        .arg("status")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not the root of a bwmediafs mount"),
        "{err}"
    );
}

/// The `counters` object of `bwmediafs status --json` (the status must say nothing is pending).
fn counters(m: &Mount) -> serde_json::Value {
    let (code, json) = status(m, true);
    assert_eq!(code, 0, "{json}");
    let value: serde_json::Value = serde_json::from_str(json.trim()).expect("status --json");
    value["counters"].clone()
}

/// How much the counter at `pointer` (`/requests/get`, `/cache_hits`) grew from `from` to `to`.
fn grew(from: &serde_json::Value, to: &serde_json::Value, pointer: &str) -> u64 {
    let at = |v: &serde_json::Value| {
        v.pointer(pointer)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or_else(|| panic!("no counter {pointer} in {v}"))
    };
    at(to) - at(from)
}

/// Write a file, read a media twice, list and delete through a mount started with `args`;
/// after each step the counters of `bwmediafs status` say what it cost, and at the end they
/// equal what the server received.
fn counters_follow_a_known_sequence(args: &[&str]) {
    let seeded = bytes(200_000, 7);
    let emulator = emulator_with(&[("seeded.bin", &seeded)]);
    // Without read-ahead and within the TTL, which opens find their bytes cached depends on
    // the steps alone.
    let mut all = vec!["--read-ahead", "0", "--metadata-ttl", "1h"];
    all.extend_from_slice(args);
    let m = Mount::with(emulator, &all);
    let start = counters(&m);
    assert_eq!(start["requests"]["list"], 1, "{start}");
    assert_eq!(start["requests"]["token"], 1, "{start}");

    let written = bytes(300_000, 8);
    write_file(&m.path("new.bin"), &written).expect("written");
    sh_ok(&format!("sync {}", q(&m.path("new.bin"))));
    let after_write = counters(&m);
    assert_eq!(grew(&start, &after_write, "/requests/put"), 1);
    assert_eq!(grew(&start, &after_write, "/bytes_up"), 300_000);

    // The first read of a media this mount never had downloads it; the second finds it cached.
    assert_eq!(std::fs::read(m.path("seeded.bin")).unwrap(), seeded);
    let first = counters(&m);
    assert_eq!(grew(&after_write, &first, "/requests/get"), 1);
    assert_eq!(grew(&after_write, &first, "/bytes_down"), 200_000);
    assert_eq!(grew(&after_write, &first, "/cache_hits"), 0);
    assert_eq!(std::fs::read(m.path("seeded.bin")).unwrap(), seeded);
    let second = counters(&m);
    assert_eq!(grew(&first, &second, "/requests/get"), 0);
    assert_eq!(grew(&first, &second, "/bytes_down"), 0);
    assert_eq!(grew(&first, &second, "/cache_hits"), 1);

    // The written file, read twice: from memory (the data cache, or the write buffer while
    // the kernel has not released the writer's handle), never by a GET.
    for _ in 0..2 {
        assert_eq!(std::fs::read(m.path("new.bin")).unwrap(), written);
    }
    let again = counters(&m);
    assert_eq!(grew(&second, &again, "/requests/get"), 0);

    let mut names: Vec<String> = std::fs::read_dir(m.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["new.bin", "seeded.bin"]);
    std::fs::remove_file(m.path("new.bin")).unwrap();
    sh_ok(&format!("sync {}", q(&m.path(""))));

    let end = counters(&m);
    let s = m.stats();
    assert_eq!(
        end["requests"],
        serde_json::json!({
            "list": s.list, "get": s.get, "put": s.put, "delete": s.delete, "token": s.token,
        }),
        "the counters of the mount against the server's:\n{}",
        m.log_text()
    );
    assert_eq!((s.put, s.delete), (1, 1), "{s:?}");
    assert_eq!(end["bytes_up"], 300_000);
    // Every GET that brought a body brought the seeded media (any other was a 404).
    assert_eq!(end["bytes_down"], 200_000);
    assert_eq!(end["retries"], 0);
    // The human output says the same.
    let (code, text) = status(&m, false);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "requests: {} list, {} get, 1 put, 1 delete, {} token",
            s.list, s.get, s.token
        )),
        "{text}"
    );
    assert!(
        text.contains("293.0 KiB up, 195.3 KiB down; 0 retries"),
        "{text}"
    );
}

#[test]
fn status_counts_requests_bytes_and_cache_hits_as_the_server_saw_them() {
    counters_follow_a_known_sequence(&[]);
}

#[test]
fn status_counts_requests_bytes_and_cache_hits_with_writeback_too() {
    counters_follow_a_known_sequence(&["--writeback"]);
}

#[test]
fn sigterm_unmounts_at_once_then_uploads_what_is_pending_telling_systemd() {
    use std::os::unix::net::UnixDatagram;
    let emulator = std::sync::Arc::new(emulator_with(&[]));
    let systemd = tempfile::tempdir().unwrap();
    let socket = systemd.path().join("notify");
    let listener = UnixDatagram::bind(&socket).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut env = oauth_env(&emulator);
    env.push(("NOTIFY_SOCKET".into(), socket.display().to_string()));
    let mut m = Mount::with_env(emulator.clone(), &["--writeback"], &env);
    let receive = || {
        let mut buf = [0u8; 4096];
        let n = listener.recv(&mut buf).expect("a message for systemd");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(receive().contains("READY=1"));
    emulator.set_faults(Faults {
        latency_ms: 400,
        ..Faults::default()
    });
    let files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("t{i:02}.bin"), bytes(3_000, i as u64)))
        .collect();
    for (name, data) in &files {
        write_file(&m.path(name), data).expect("staged");
    }
    m.signal(libc::SIGTERM);
    assert_eq!(receive(), "STOPPING=1");
    let progress = receive();
    assert!(
        progress.starts_with("STATUS=uploading ") && progress.contains("staged changes"),
        "{progress:?}"
    );
    // The mount is gone while the uploads go on.
    wait_for(
        "still mounted after SIGTERM",
        Duration::from_secs(5),
        || !m.is_mounted(),
        || m.log_text(),
    );
    let status = m.wait_exit(Duration::from_secs(30)).expect("it ends");
    assert!(status.success(), "{status}:\n{}", m.log_text());
    for (name, data) in &files {
        assert_eq!(m.stored(name).as_deref(), Some(&data[..]), "{name}");
    }
}

#[test]
fn with_20_percent_faults_every_close_that_returned_0_ends_on_the_server() {
    let emulator = emulator_with(&[]);
    let m = Mount::with(emulator, &["--writeback", "--retry-time", "5s"]);
    m.emulator.set_faults(Faults {
        error_rate: 0.2,
        error_statuses: vec![500, 503],
        ..Faults::default()
    });
    std::fs::create_dir(m.path("c")).unwrap();
    let mut closed = Vec::new();
    for i in 0..60 {
        let (name, data) = (format!("c/f{i:02}.bin"), bytes(4_000 + i * 100, i as u64));
        // A close returns 0 (staged, or uploaded by itself) or reports its upload's failure.
        if write_file(&m.path(&name), &data).is_ok() {
            closed.push((name, data));
        }
    }
    assert!(
        closed.len() >= 55,
        "only {} of 60 closes returned 0",
        closed.len()
    );
    // sync returns 0 once the server holds them; under faults it may report a failure, and a
    // later sync tries again.
    let synced = (0..5).any(|_| sh_outcome(&format!("sync {}", q(&m.path("")))).0);
    assert!(synced, "sync never returned 0:\n{}", m.log_text());
    for (name, data) in &closed {
        assert_eq!(m.stored(name).as_deref(), Some(&data[..]), "{name}");
    }
}

#[test]
fn a_10_s_outage_during_cp_r_loses_nothing_and_sync_returns_once_healed() {
    let emulator = std::sync::Arc::new(emulator_with(&[]));
    let m = Mount::with(emulator.clone(), &["--writeback"]);
    let src = m.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("f{i:02}.jpg"), bytes(20_000 + i * 500, i as u64)))
        .collect();
    for (name, data) in &files {
        std::fs::write(src.join(name), data).unwrap();
    }
    server_down(&emulator);
    let healer = {
        let emulator = emulator.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(10));
            server_up(&emulator);
            Instant::now()
        })
    };
    // The copy does not wait for the server (each upload retries for --retry-time, 30 s).
    sh_ok(&format!("cp -r {} {}", q(&src), q(&m.path("in"))));
    // sync waits for the server to come back, then for the uploads.
    sh_ok(&format!("sync {}", q(&m.path(""))));
    let synced = Instant::now();
    let healed = healer.join().unwrap();
    assert!(
        synced >= healed,
        "sync returned before the server came back"
    );
    for (name, data) in &files {
        assert_eq!(
            m.stored(&format!("in/{name}")).as_deref(),
            Some(&data[..]),
            "{name}"
        );
    }
}

#[test]
fn headers_set_on_a_staged_file_outlast_a_kill_9() {
    let emulator = std::sync::Arc::new(emulator_with(&[]));
    let state = tempfile::tempdir().unwrap();
    let env = env_keeping(&emulator, state.path());
    let args = ["--writeback", "--retry-time", "300ms"];
    {
        let mut first = Mount::with_env(emulator.clone(), &args, &env);
        server_down(&emulator);
        write_file(&first.path("clip.bin"), b"not a guessable type").expect("staged");
        // A type its bytes imply, set by nobody.
        let png = [&b"\x89PNG\r\n\x1a\n"[..], &[0u8; 64]].concat();
        write_file(&first.path("photo"), &png).expect("staged");
        sh_ok(&format!(
            "setfattr -n user.bandwidth.content_type -v video/mp4 {f} && \
             setfattr -n user.bandwidth.cache_control -v no-store {f}",
            f = q(&first.path("clip.bin"))
        ));
        first.signal(libc::SIGKILL);
        first.wait_exit(Duration::from_secs(10)).expect("killed");
    }
    server_up(&emulator);
    let second = Mount::with_env(emulator.clone(), &args, &env);
    sh_ok(&format!("sync {}", q(&second.path(""))));
    let held = emulator
        .store()
        .get("clip.bin")
        .expect("uploaded by the next mount");
    assert_eq!(&held.body[..], b"not a guessable type");
    assert_eq!(held.content_type, "video/mp4");
    assert_eq!(held.cache_control.as_deref(), Some("no-store"));
    assert_eq!(
        emulator.store().get("photo").unwrap().content_type,
        "image/png"
    );
    // Renamed to a known extension: the type set on the file stays; the one its bytes implied
    // follows the name, as without the crash.
    std::fs::rename(second.path("clip.bin"), second.path("clip.txt")).unwrap();
    std::fs::rename(second.path("photo"), second.path("photo.txt")).unwrap();
    sh_ok(&format!("sync {}", q(&second.path(""))));
    let store = emulator.store();
    assert_eq!(store.get("clip.txt").unwrap().content_type, "video/mp4");
    assert_eq!(store.get("photo.txt").unwrap().content_type, "text/plain");
}

#[test]
fn a_truncate_of_a_staged_closed_file_outlasts_a_kill_9() {
    let emulator = std::sync::Arc::new(emulator_with(&[]));
    let state = tempfile::tempdir().unwrap();
    let env = env_keeping(&emulator, state.path());
    // Each background try retries for 5 s, so uploads are not "failing" during the test.
    let args = ["--writeback", "--retry-time", "5s"];
    {
        let mut first = Mount::with_env(emulator.clone(), &args, &env);
        server_down(&emulator);
        write_file(&first.path("cut.txt"), b"0123456789").expect("staged");
        // truncate(2) by path: no descriptor, so no close stages it.
        let path =
            std::ffi::CString::new(first.path("cut.txt").into_os_string().into_encoded_bytes())
                .unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(
            unsafe { libc::truncate(path.as_ptr(), 4) },
            0,
            "truncate(2)"
        );
        assert_eq!(std::fs::read(first.path("cut.txt")).unwrap(), b"0123");
        first.signal(libc::SIGKILL);
        first.wait_exit(Duration::from_secs(10)).expect("killed");
    }
    server_up(&emulator);
    let second = Mount::with_env(emulator.clone(), &args, &env);
    assert_eq!(std::fs::read(second.path("cut.txt")).unwrap(), b"0123");
    sh_ok(&format!("sync {}", q(&second.path(""))));
    assert_eq!(second.stored("cut.txt").as_deref(), Some(&b"0123"[..]));
}
