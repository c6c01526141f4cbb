//! The durability promise through a real mount: a successful `fsync` or `close` means the server
//! holds exactly those bytes; anything else is an error returned to the program, or the bytes in
//! the recovery folder. Each test does what programs really do after an error (retry the fsync,
//! close later, fork, redirect through the shell) and checks the server's store.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use bwmediafs::emulator::{Emulator, EmulatorConfig, Faults};

fn read(p: &Path) -> Vec<u8> {
    let p = p.to_path_buf();
    timed("read", move || {
        std::fs::read(p).expect("read through the mount")
    })
}

/// The files of the recovery folder: (name, bytes).
fn recovery_files(m: &Mount) -> Vec<(String, Vec<u8>)> {
    let dir = m.dir.path().join("recovery");
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name, std::fs::read(e.path()).unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn a_retried_fsync_after_a_failed_upload_stores_the_bytes() {
    let m = Mount::with(
        emulator_with(&[("old.txt", b"the old version")]),
        &["--retry-time", "1s"],
    );
    // A new file.
    let p = m.path("new.txt");
    let mut f = timed("create", move || File::create(p).unwrap());
    f.write_all(b"new bytes").unwrap();
    server_down(&m.emulator);
    let e = f.sync_all().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    server_up(&m.emulator);
    f.sync_all().expect("the second fsync uploads");
    assert_eq!(m.stored("new.txt").as_deref(), Some(&b"new bytes"[..]));
    close(f).expect("close");
    assert_eq!(m.stored("new.txt").as_deref(), Some(&b"new bytes"[..]));
    assert!(
        recovery_files(&m).is_empty(),
        "the copy kept while the upload failed is removed once it succeeds"
    );

    // An existing file: while it is dirty the mount shows the written bytes, not the old ones.
    let p = m.path("old.txt");
    let mut f = timed("open", move || {
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(p)
            .unwrap()
    });
    f.write_all(b"the NEW version").unwrap();
    server_down(&m.emulator);
    let e = f.sync_all().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert_eq!(read(&m.path("old.txt")), b"the NEW version");
    assert_eq!(
        m.stored("old.txt").as_deref(),
        Some(&b"the old version"[..])
    );
    server_up(&m.emulator);
    // No second fsync: the close itself tries again, and says it worked.
    close(f).expect("close uploads");
    assert_eq!(
        m.stored("old.txt").as_deref(),
        Some(&b"the NEW version"[..])
    );
    assert_eq!(read(&m.path("old.txt")), b"the NEW version");
}

/// A new file whose upload failed at close was never on the server, so it disappears; the
/// kernel still has its name cached, and a program that creates the file again at once (the
/// natural retry) gets a new file, not ENOENT from the vanished one.
#[test]
fn a_new_file_whose_close_failed_can_be_created_again_at_once() {
    let m = Mount::with(
        start_emulator(emulator_config()),
        &["--retry-time", "500ms", "--metadata-ttl", "60s"],
    );
    let p = m.path("again.txt");
    server_down(&m.emulator);
    let q = p.clone();
    let mut f = timed("create", move || File::create(q).unwrap());
    f.write_all(b"first try").unwrap();
    let e = close(f).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    server_up(&m.emulator);
    // The kernel's release of the first file comes after close returns: let it come.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let q = p.clone();
    let created = timed("create again", move || {
        let mut f = File::create(q)?;
        f.write_all(b"second try")?;
        close(f)
    });
    created.expect("the file is created again");
    assert_eq!(m.stored("again.txt").as_deref(), Some(&b"second try"[..]));
    assert_eq!(read(&p), b"second try");
}

/// A descriptor the writer also holds for reading (`exec 3<f`, `flock f`, a loop reading `f`)
/// never uploads at its close: only a writable one is a later close that will. So the close of
/// the writing descriptor uploads and returns the upload's result.
#[test]
fn a_read_only_descriptor_held_beside_does_not_defer_the_upload() {
    let m = Mount::with(
        emulator_with(&[("f.txt", b"old")]),
        &["--retry-time", "500ms"],
    );
    let p = m.path("f.txt");
    let reader = File::open(&p).expect("open for reading");
    let q = p.clone();
    let mut writer = timed("open for writing", move || File::create(q).unwrap());
    writer.write_all(b"new").unwrap();
    server_down(&m.emulator);
    let e = close(writer).expect_err("the close reports the failed upload");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    server_up(&m.emulator);
    let q = p.clone();
    let mut writer = timed("open for writing", move || {
        OpenOptions::new().write(true).open(q).unwrap()
    });
    writer.write_all(b"NEW").unwrap();
    close(writer).expect("close uploads");
    assert_eq!(m.stored("f.txt").as_deref(), Some(&b"NEW"[..]));
    drop(reader);
}

#[test]
fn a_close_that_still_fails_keeps_the_bytes_for_any_legal_name() {
    let m = Mount::with(
        start_emulator(emulator_config()),
        &["--retry-time", "500ms"],
    );
    // A legal path of 272 bytes: longer than a file name may be. With a quote in it.
    let dir = format!("{}/{}", "a".repeat(100), "b".repeat(100));
    let name = format!("{dir}/{}it's.jpg", "c".repeat(60));
    std::fs::create_dir_all(m.path(&dir)).unwrap();
    let data = bytes(20_000, 9);
    server_down(&m.emulator);
    let p = m.path(&name);
    let d = data.clone();
    let r = timed("write", move || {
        let mut f = File::create(p)?;
        f.write_all(&d)?;
        close(f)
    });
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EIO));
    // The bytes are in the recovery folder, with the full name beside them.
    let kept = recovery_files(&m);
    assert!(
        kept.iter().any(|(_, b)| *b == data),
        "the bytes are not in the recovery folder: {:?}",
        kept.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert!(
        kept.iter().any(|(_, b)| b == name.as_bytes()),
        "the full name is not kept beside the bytes"
    );
    // The log says how to upload them again, once, and that command works.
    let log = m.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("to upload them yourself: "))
        .collect();
    assert_eq!(lines.len(), 1, "one recovery note:\n{log}");
    assert!(!log.contains("lost"), "{log}");
    let command = lines[0]
        .split("to upload them yourself: ")
        .nth(1)
        .unwrap()
        .to_string();
    server_up(&m.emulator);
    sh_ok(&command);
    assert_bytes(m.stored(&name).as_deref(), &data, "re-uploaded media");
    // Those bytes reached the server: their copy (and the full name beside it) is removed.
    let left: Vec<String> = recovery_files(&m).into_iter().map(|(n, _)| n).collect();
    assert!(
        left.is_empty(),
        "the recovery copy stays after the logged command uploaded it: {left:?}"
    );
}

#[test]
fn a_close_that_uploads_the_saved_bytes_later_removes_their_copy_and_no_other() {
    let m = Mount::with(
        emulator_with(&[("same.txt", b"old"), ("other.txt", b"old")]),
        &["--retry-time", "500ms"],
    );
    let write = |name: &str, data: &[u8]| {
        let (p, d) = (m.path(name), data.to_vec());
        timed("write", move || {
            let mut f = File::create(p)?;
            f.write_all(&d)?;
            close(f)
        })
    };
    server_down(&m.emulator);
    assert!(write("same.txt", b"the bytes").is_err());
    assert!(write("other.txt", b"first bytes").is_err());
    assert_eq!(recovery_files(&m).len(), 2);
    server_up(&m.emulator);
    // The same bytes written again and closed: their copy goes.
    write("same.txt", b"the bytes").expect("close uploads");
    // Other bytes under the other name: the saved ones never reached the server, and stay.
    write("other.txt", b"second bytes").expect("close uploads");
    assert_eq!(
        recovery_files(&m),
        vec![("other.txt".to_string(), b"first bytes".to_vec())]
    );
}

/// A process that holds `path` open for writing (`exec 3>>path`) until dropped, so the mount
/// keeps that file's write buffer between the closes of other processes.
struct WriterElsewhere(std::process::Child);

impl WriterElsewhere {
    fn hold(path: &Path) -> WriterElsewhere {
        use std::io::BufRead;
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exec 3>>\"$1\" && echo ready && exec sleep 60", "sh"])
            .arg(path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start sh");
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let holder = WriterElsewhere(child);
        assert_eq!(line.trim(), "ready", "the holder could not open {path:?}");
        holder
    }
}

impl Drop for WriterElsewhere {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_upload_of_other_bytes_keeps_the_copy_while_the_file_stays_open_elsewhere() {
    let m = Mount::with(
        emulator_with(&[("other.txt", b"old")]),
        &["--retry-time", "500ms"],
    );
    // Another process keeps the file open, so both closes below share one write buffer.
    let _holder = WriterElsewhere::hold(&m.path("other.txt"));
    let write = |data: &[u8]| {
        let (p, d) = (m.path("other.txt"), data.to_vec());
        timed("write", move || {
            let mut f = File::create(p)?;
            f.write_all(&d)?;
            close(f)
        })
    };
    server_down(&m.emulator);
    assert!(write(b"first bytes").is_err());
    server_up(&m.emulator);
    write(b"second bytes").expect("close uploads");
    assert_bytes(m.stored("other.txt").as_deref(), b"second bytes", "media");
    // The first bytes never reached the server: their copy is the only place they exist.
    assert_eq!(
        recovery_files(&m),
        vec![("other.txt".to_string(), b"first bytes".to_vec())]
    );
}

#[test]
fn a_413_under_bandwidths_limit_asks_for_a_smaller_file_not_the_same_copy() {
    let m = Mount::with(start_emulator(emulator_config()), &[]);
    // This server's limit is far below Bandwidth's 3.75 MB, and it does not say what it is.
    let mut config = m.emulator.store().config();
    config.max_size = 1000;
    m.emulator.store().set_config(config);
    let p = m.path("big.jpg");
    let data = bytes(5000, 4);
    let d = data.clone();
    let r = timed("write", move || {
        let mut f = File::create(p)?;
        f.write_all(&d)?;
        close(f)
    });
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EFBIG));
    // The bytes are kept, and the log says what to do: not a copy the server refuses again.
    assert!(recovery_files(&m).iter().any(|(_, b)| *b == data));
    let log = m.log_text();
    let note: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"big.jpg\"") && l.contains("ERROR"))
        .collect();
    assert_eq!(note.len(), 1, "one note for the refused upload:\n{log}");
    assert!(!note[0].contains("cp --"), "{}", note[0]);
    assert!(note[0].contains("smaller"), "{}", note[0]);
    assert!(note[0].contains("limit"), "{}", note[0]);
}

#[test]
fn an_outage_shorter_than_the_retry_time_is_invisible() {
    let config = emulator_config();
    let mut m = Mount::with(start_emulator(config.clone()), &["--retry-time", "60s"]);
    let addr = m.emulator.addr();
    m.emulator.shutdown();
    m.emulator.wait();
    let p = m.path("during-outage.bin");
    let data = bytes(100_000, 3);
    let d = data.clone();
    let writer = std::thread::spawn(move || {
        let mut f = File::create(p)?;
        f.write_all(&d)?;
        close(f)
    });
    // The server is down for 5 s (more than the 6 attempts that used to be the limit).
    std::thread::sleep(Duration::from_secs(5));
    m.emulator = Emulator::start(EmulatorConfig {
        listen: addr,
        ..config
    })
    .expect("restart the emulator")
    .into();
    let t = Instant::now();
    while !writer.is_finished() {
        assert!(t.elapsed() < OP_TIMEOUT, "the copy hangs");
        std::thread::sleep(Duration::from_millis(50));
    }
    writer
        .join()
        .unwrap()
        .expect("the copy succeeds after the outage");
    assert_bytes(m.stored("during-outage.bin").as_deref(), &data, "stored");
}

#[test]
fn a_stalled_server_holds_a_call_no_longer_than_the_retry_time_plus_the_timeout() {
    // A token that must be renewed within a second: the stalled call needs a token request too.
    let emulator = start_emulator(EmulatorConfig {
        token_ttl: Duration::from_secs(2),
        ..emulator_config()
    });
    emulator
        .store()
        .put(
            "f.bin",
            bytes::Bytes::from(bytes(1000, 1)),
            "image/png",
            None,
        )
        .unwrap();
    let m = Mount::with(emulator, &["--retry-time", "4s", "--timeout", "3s"]);
    std::thread::sleep(Duration::from_millis(1500));
    m.emulator.set_faults(Faults {
        latency_ms: 60_000,
        ..Faults::default()
    });
    let p = m.path("f.bin");
    let t = Instant::now();
    let r = timed("cat while stalled", move || std::fs::read(p));
    let took = t.elapsed();
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EIO));
    assert!(took < Duration::from_secs(8), "took {took:?}");
    // The same for a write.
    let p = m.path("w.bin");
    let t = Instant::now();
    let r = timed("write while stalled", move || {
        let mut f = File::create(p)?;
        f.write_all(b"x")?;
        close(f)
    });
    let took = t.elapsed();
    assert!(r.is_err());
    assert!(took < Duration::from_secs(8), "took {took:?}");
    m.emulator.set_faults(Faults::default());
}

#[test]
fn a_close_uploads_only_what_changed_and_never_an_empty_file_on_the_way() {
    let m = Mount::with(
        emulator_with(&[("keep.bin", b"the old media")]),
        &["--metadata-ttl", "1h"],
    );
    let mnt = q(&m.mnt);
    // `echo x > f`: the shell's first close (before the write) uploads nothing.
    m.reset_stats();
    sh_ok(&format!("echo x > {mnt}/echo.txt"));
    assert_eq!(m.stats().put, 1, "echo x > f");
    assert_eq!(m.stored("echo.txt").as_deref(), Some(&b"x\n"[..]));
    // A redirected loop of 50 commands, each of which closes the file when it exits.
    m.reset_stats();
    sh_ok(&format!(
        "for i in $(seq 50); do /bin/echo $i; done > {mnt}/loop.txt"
    ));
    let want: String = (1..=50).map(|i| format!("{i}\n")).collect();
    assert_eq!(m.stats().put, 1, "a redirected loop");
    assert_eq!(m.stored("loop.txt").as_deref(), Some(want.as_bytes()));
    // A writer that forks: its children's exits upload nothing half-written.
    m.reset_stats();
    sh_ok(&format!(
        "exec >{mnt}/forked.txt; echo a; /bin/true; (echo b); echo c"
    ));
    assert_eq!(m.stats().put, 1, "a writer that forks");
    assert_eq!(m.stored("forked.txt").as_deref(), Some(&b"a\nb\nc\n"[..]));
    // A close that changed nothing costs nothing; one with nothing open besides uploads at
    // once, even an empty file.
    m.reset_stats();
    sh_ok(&format!(": >> {mnt}/forked.txt"));
    assert_eq!(m.stats().put, 0, "an append of nothing");
    let p = m.path("touched");
    let f = timed("create", move || File::create(p).unwrap());
    close(f).unwrap();
    assert_eq!(
        m.stored("touched").as_deref(),
        Some(&b""[..]),
        "a created file"
    );
    // An oversize copy onto an existing media keeps the old media.
    m.reset_stats();
    let out = sh(&format!("head -c 4000000 /dev/zero > {mnt}/keep.bin"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("File too large"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(m.stats().put, 0, "nothing of an oversize copy is uploaded");
    assert_eq!(m.stored("keep.bin").as_deref(), Some(&b"the old media"[..]));
}

#[test]
fn an_open_after_the_ttl_sees_a_same_size_overwrite_made_elsewhere() {
    let m = Mount::with(
        emulator_with(&[("same.txt", b"hello world")]),
        &["--metadata-ttl", "1s"],
    );
    let p = m.path("same.txt");
    assert_eq!(read(&p), b"hello world");
    m.emulator
        .store()
        .put(
            "same.txt",
            bytes::Bytes::from_static(b"HELLO WORLD"),
            "text/plain",
            None,
        )
        .unwrap();
    // Within the TTL the cached bytes are served.
    assert_eq!(read(&p), b"hello world");
    std::thread::sleep(Duration::from_millis(1200));
    // After it, an open checks them: the new bytes, not the kernel's cached pages.
    assert_eq!(read(&p), b"HELLO WORLD");
    assert_eq!(read(&p), b"HELLO WORLD");
    // A writer that opens after the change edits the new bytes, not the old.
    std::thread::sleep(Duration::from_millis(1200));
    m.emulator
        .store()
        .put(
            "same.txt",
            bytes::Bytes::from_static(b"jello world"),
            "text/plain",
            None,
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    sh_ok(&format!(
        "printf J | dd of={} conv=notrunc status=none",
        q(&p)
    ));
    assert_eq!(m.stored("same.txt").as_deref(), Some(&b"Jello world"[..]));
}

#[test]
fn on_a_multi_page_account_an_open_after_the_ttl_sees_a_new_size() {
    let emulator = start_emulator(EmulatorConfig {
        store: bwmediafs::emulator::store::StoreConfig {
            page_size: 2,
            ..Default::default()
        },
        ..emulator_config()
    });
    for name in ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"] {
        emulator
            .store()
            .put(
                name,
                bytes::Bytes::from_static(b"short"),
                "text/plain",
                None,
            )
            .unwrap();
    }
    let m = Mount::with(emulator, &["--metadata-ttl", "1s"]);
    let p = m.path("c.txt");
    assert_eq!(read(&p), b"short");
    let longer = bytes(70_000, 5);
    m.emulator
        .store()
        .put(
            "c.txt",
            bytes::Bytes::from(longer.clone()),
            "text/plain",
            None,
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_bytes(Some(&read(&p)), &longer, "read after the TTL");
    let size = std::fs::metadata(&p).unwrap().len();
    assert_eq!(size, longer.len() as u64);
}
