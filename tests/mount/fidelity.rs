//! Everyday fidelity through a real mount: who owns new files, directory times and links, the
//! extended attributes that `rsync -aX` and `cp --preserve=xattr` copy, header changes that
//! reach the server at once, content types told from the bytes, and what `df` shows.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::common::*;

/// The user the tests act as when they are not root.
const NOBODY: u32 = 65534;

/// Run `script` as user and group 65534 (no supplementary groups); its outcome.
fn as_nobody(script: &str) -> (bool, String, String) {
    sh_outcome(&format!(
        "setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups sh -c {}",
        shell_quote(script)
    ))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn what_another_user_creates_belongs_to_that_user() {
    let m = Mount::with(start_emulator(emulator_config()), &["-o", "allow_other"]);
    // Other users must be able to reach the mountpoint inside the test's temp dir.
    std::fs::set_permissions(m.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let shared = m.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();

    let dir = shared.join("mine");
    let file = dir.join("f.txt");
    let (ok, _, err) = as_nobody(&format!(
        "mkdir {d} && echo one > {f} && echo two >> {f} && touch {f} && chmod 600 {f} \
         && chmod 700 {d} && mkdir {d}/sub && cat {f}",
        d = q(&dir),
        f = q(&file),
    ));
    assert!(ok, "nobody could not work in its own directory: {err}");
    for (p, mode) in [(&dir, 0o700), (&file, 0o600), (&dir.join("sub"), 0o755)] {
        let md = std::fs::metadata(p).unwrap();
        assert_eq!((md.uid(), md.gid()), (NOBODY, NOBODY), "{}", p.display());
        assert_eq!(md.mode() & 0o7777, mode, "{}", p.display());
    }
    let out = sh_ok(&format!("stat -c '%u %g' {}", q(&file)));
    assert_eq!(out.trim(), "65534 65534");
    assert_bytes(
        m.stored("shared/mine/f.txt").as_deref(),
        b"one\ntwo\n",
        "f.txt",
    );
    // The mounting user's own new files stay its own.
    std::fs::write(m.path("root.txt"), b"r").unwrap();
    let md = std::fs::metadata(m.path("root.txt")).unwrap();
    let me = unsafe { libc::getuid() };
    assert_eq!(md.uid(), me);
    // Nobody may not write into what it does not own.
    let (ok, _, _) = as_nobody(&format!("echo x > {}", q(&m.path("nope.txt"))));
    assert!(!ok, "nobody wrote into the root it does not own");
}

/// The times a file shows do not move on their own: the close that uploads a new file keeps the
/// times of its creation and writes (before, they became the upload's time once the kernel asked
/// again, so a `stat` before and after a failed `truncate` differed); a `truncate` another user
/// may not make fails with EACCES and changes nothing; a rename keeps mode, owner, size, inode
/// and times. (pjdfstest's `truncate::unchanged_ctime_failed`, `utimensat::utime_omit` and the
/// rename part of `rename::preserve_metadata`, whose `link(2)` step the API cannot support.)
#[test]
fn times_stay_put_through_a_close_a_failed_truncate_and_a_rename() {
    let m = Mount::with(
        start_emulator(emulator_config()),
        &["-o", "allow_other", "--metadata-ttl", "1s"],
    );
    std::fs::set_permissions(m.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = m.path("f");
    // A new empty file, as `open(O_CREAT|O_EXCL)` and `close` make it: uploaded at the close.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&f)
        .expect("create");
    assert_eq!(m.stored("f").as_deref(), Some(&b""[..]));
    let created = times(&f);
    // Past the TTL, the kernel asks again.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(times(&f), created, "the upload at close moved the times");
    let (ok, _, err) = as_nobody(&format!("truncate -s 123 {}", q(&f)));
    assert!(!ok && err.contains("Permission denied"), "{err}");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(times(&f), created, "a failed truncate changed the times");

    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&f, Some(NOBODY), Some(NOBODY)).unwrap();
    let before = std::fs::metadata(&f).unwrap();
    let g = m.path("g");
    std::fs::rename(&f, &g).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let after = std::fs::metadata(&g).unwrap();
    let keep = |md: &std::fs::Metadata| {
        (
            md.ino(),
            md.mode(),
            md.uid(),
            md.gid(),
            md.size(),
            md.nlink(),
            md.mtime(),
            md.mtime_nsec(),
        )
    };
    assert_eq!(
        keep(&after),
        keep(&before),
        "the rename changed the metadata"
    );
}

/// `stat -c FORMAT` of each path, one line each.
fn stat(format: &str, paths: &[&std::path::Path]) -> Vec<String> {
    let args: Vec<String> = paths.iter().map(|p| q(p)).collect();
    sh_ok(&format!("stat -c '{format}' {}", args.join(" ")))
        .lines()
        .map(str::to_string)
        .collect()
}

/// (mtime, ctime) of `p` in nanoseconds.
fn times(p: &std::path::Path) -> (i128, i128) {
    let md = std::fs::metadata(p).unwrap();
    let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
    (
        ns(md.mtime(), md.mtime_nsec()),
        ns(md.ctime(), md.ctime_nsec()),
    )
}

fn nlink(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).unwrap().nlink()
}

/// Sleep long enough for the next change to get a later time.
fn tick() {
    std::thread::sleep(std::time::Duration::from_millis(20));
}

#[test]
fn directory_times_and_link_counts_follow_changes() {
    // A short TTL, so that the kernel asks for the attributes again after the rename.
    let m = Mount::with(
        emulator_with(&[("old/x.txt", b"x")]),
        &["--metadata-ttl", "1s"],
    );
    let (a, b) = (m.path("a"), m.path("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    // Root holds old/, a/, b/.
    assert_eq!(nlink(&m.mnt), 5);
    assert_eq!(nlink(&a), 2);

    // A new file or directory changes its parent's times.
    let before = times(&a);
    tick();
    // (A plain create: the attributes `stat` shows next are the create's own reply.)
    sh_ok(&format!(": > {}", q(&a.join("f"))));
    let after = times(&a);
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "{before:?} {after:?}"
    );
    tick();
    std::fs::create_dir(a.join("sub")).unwrap();
    assert!(times(&a).0 > after.0);
    assert_eq!(nlink(&a), 3);

    // A rename changes both parents' times and none of the file's own stat fields.
    const FIELDS: &str = "%i %s %a %u %g %o %b %h %Y";
    let f_before = stat(FIELDS, &[&a.join("f")]);
    let (ta, tb) = (times(&a), times(&b));
    tick();
    sh_ok(&format!("mv {} {}", q(&a.join("f")), q(&b.join("f"))));
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(stat(FIELDS, &[&b.join("f")]), f_before);
    assert!(times(&a).0 > ta.0 && times(&a).1 > ta.1);
    assert!(times(&b).0 > tb.0 && times(&b).1 > tb.1);

    // Link counts follow directory renames, mkdir and rmdir.
    sh_ok(&format!("mv {} {}", q(&a.join("sub")), q(&b.join("sub"))));
    assert_eq!((nlink(&a), nlink(&b)), (2, 3));
    std::fs::create_dir(b.join("sub/deeper")).unwrap();
    assert_eq!(nlink(&b.join("sub")), 3);
    std::fs::remove_dir(b.join("sub/deeper")).unwrap();
    std::fs::remove_dir(b.join("sub")).unwrap();
    assert_eq!(nlink(&b), 2);
    sh_ok(&format!("mv {} {}", q(&a), q(&m.path("old/a"))));
    assert_eq!((nlink(&m.mnt), nlink(&m.path("old"))), (4, 3));

    // Removing a file changes its parent's times.
    let tb = times(&b);
    tick();
    std::fs::remove_file(b.join("f")).unwrap();
    assert!(times(&b).0 > tb.0 && times(&b).1 > tb.1);
    assert!(m.stored("b/f").is_none());
}

/// The content type the server holds for `name`.
fn stored_type(m: &Mount, name: &str) -> Option<String> {
    m.emulator.store().get(name).ok().map(|s| s.content_type)
}

/// The head of a JPEG (JFIF) file, padded.
fn jpeg() -> Vec<u8> {
    let mut v = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00".to_vec();
    v.extend(bytes(2000, 3));
    v
}

/// An AMR narrow-band file: its magic line, then frames.
fn amr() -> Vec<u8> {
    let mut v = b"#!AMR\n".to_vec();
    v.extend(bytes(320, 4));
    v
}

#[test]
fn content_types_come_from_the_name_then_the_bytes() {
    let m = Mount::new();
    let src = m.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let files: [(&str, Vec<u8>); 5] = [
        ("photo", jpeg()),
        ("voice", amr()),
        ("voice.amr", amr()),
        (
            "card",
            b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ann\r\nEND:VCARD\r\n".to_vec(),
        ),
        ("blob", bytes(500, 9)),
    ];
    for (name, body) in &files {
        std::fs::write(src.join(name), body).unwrap();
        sh_ok(&format!("cp {} {}", q(&src.join(name)), q(&m.path(name))));
    }
    let want = [
        ("photo", "image/jpeg"),
        ("voice", "audio/amr"),
        ("voice.amr", "audio/amr"),
        ("card", "text/vcard"),
        ("blob", "application/octet-stream"),
    ];
    for (name, ct) in want {
        assert_eq!(stored_type(&m, name).as_deref(), Some(ct), "{name}");
        let shown = sh_ok(&format!(
            "getfattr -n user.bandwidth.content_type --only-values {}",
            q(&m.path(name))
        ));
        assert_eq!(shown, ct, "getfattr of {name}");
    }
    // The name still comes first: a JPEG named .png is uploaded as the name says.
    sh_ok(&format!(
        "cp {} {}",
        q(&src.join("photo")),
        q(&m.path("named.png"))
    ));
    assert_eq!(stored_type(&m, "named.png").as_deref(), Some("image/png"));
}

#[test]
fn rsync_and_cp_copy_the_attributes_out_and_back_in() {
    let m = Mount::with(
        emulator_with(&[
            ("in/0/photo.jpg", &jpeg()),
            ("in/0/voice.amr", &amr()),
            ("in/1/note.txt", b"see you\n"),
        ]),
        &[],
    );
    let out = m.dir.path().join("out");
    let (ok, _, err) = sh_outcome(&format!("rsync -aX {}/ {}/", q(&m.path("in")), q(&out)));
    assert!(ok, "rsync -aX out of the mount: {err}");
    let url = sh_ok(&format!(
        "getfattr -n user.bandwidth.url --only-values {}",
        q(&out.join("0/photo.jpg"))
    ));
    assert!(url.ends_with("/media/in/0/photo.jpg"), "{url}");

    // Back in under a new folder: the URL copied along is the old one, and ignored.
    let (ok, _, err) = sh_outcome(&format!("rsync -aX {}/ {}/", q(&out), q(&m.path("back"))));
    assert!(ok, "rsync -aX into the mount: {err}");
    for (name, body, ct) in [
        ("0/photo.jpg", jpeg(), "image/jpeg"),
        ("0/voice.amr", amr(), "audio/amr"),
        ("1/note.txt", b"see you\n".to_vec(), "text/plain"),
    ] {
        let stored = format!("back/{name}");
        assert_bytes(m.stored(&stored).as_deref(), &body, &stored);
        assert_eq!(stored_type(&m, &stored).as_deref(), Some(ct), "{stored}");
        let url = sh_ok(&format!(
            "getfattr -n user.bandwidth.url --only-values {}",
            q(&m.path(&stored))
        ));
        assert!(url.ends_with(&format!("/media/{stored}")), "{url}");
    }

    // cp --preserve=xattr and cp -a of a file copied out, back in.
    std::fs::create_dir(m.path("cp")).unwrap();
    sh_ok(&format!(
        "cp --preserve=xattr {} {}",
        q(&out.join("0/photo.jpg")),
        q(&m.path("cp/photo"))
    ));
    assert_eq!(stored_type(&m, "cp/photo").as_deref(), Some("image/jpeg"));
    let local = m.dir.path().join("voice.amr");
    sh_ok(&format!(
        "cp -a {} {}",
        q(&m.path("in/0/voice.amr")),
        q(&local)
    ));
    sh_ok(&format!(
        "cp -a {} {}",
        q(&local),
        q(&m.path("cp/voice.amr"))
    ));
    assert_bytes(m.stored("cp/voice.amr").as_deref(), &amr(), "cp/voice.amr");
    // Explicitly: a set and a removal of the URL succeed and change nothing.
    let p = q(&m.path("cp/photo"));
    sh_ok(&format!(
        "setfattr -n user.bandwidth.url -v https://x.invalid/y {p}"
    ));
    sh_ok(&format!("setfattr -x user.bandwidth.url {p}"));
    let url = sh_ok(&format!("getfattr -n user.bandwidth.url --only-values {p}"));
    assert!(url.ends_with("/media/cp/photo"), "{url}");
}

/// A new emulator that holds what `m`'s holds (bytes and headers): the server as a new mount
/// finds it.
fn same_server(m: &Mount) -> bwmediafs::emulator::Emulator {
    let emulator = start_emulator(emulator_config());
    let from = m.emulator.store();
    for name in from.names() {
        let media = from.get(&name).unwrap();
        emulator
            .store()
            .put(
                &name,
                media.body,
                &media.content_type,
                media.cache_control.as_deref(),
            )
            .unwrap();
    }
    emulator
}

#[test]
fn a_header_set_reaches_the_server_at_once_and_stays_after_a_remount() {
    let m = Mount::with(emulator_with(&[("pic.jpg", &jpeg())]), &[]);
    let p = q(&m.path("pic.jpg"));
    let get = |attr: &str| {
        sh_outcome(&format!(
            "getfattr -n user.bandwidth.{attr} --only-values {p}"
        ))
        .1
    };

    // Not cached: one GET for the bytes, one PUT with them and the new type.
    m.reset_stats();
    sh_ok(&format!(
        "setfattr -n user.bandwidth.content_type -v image/png {p}"
    ));
    let s = m.stats();
    assert_eq!((s.list, s.get, s.put, s.delete), (0, 1, 1, 0), "{s:?}");
    assert_eq!(stored_type(&m, "pic.jpg").as_deref(), Some("image/png"));
    assert_bytes(m.stored("pic.jpg").as_deref(), &jpeg(), "pic.jpg");
    assert_eq!(get("content_type"), "image/png");

    // Cached now: one PUT.
    m.reset_stats();
    sh_ok(&format!(
        "setfattr -n user.bandwidth.cache_control -v max-age=60 {p}"
    ));
    let s = m.stats();
    assert_eq!((s.list, s.get, s.put, s.delete), (0, 0, 1, 0), "{s:?}");
    let held = m.emulator.store().get("pic.jpg").unwrap();
    assert_eq!(
        (held.content_type.as_str(), held.cache_control.as_deref()),
        ("image/png", Some("max-age=60"))
    );

    // A new mount of the same server shows them.
    let m2 = Mount::with(same_server(&m), &[]);
    let p2 = q(&m2.path("pic.jpg"));
    let out = sh_ok(&format!("getfattr -d {p2}"));
    assert!(
        out.contains("user.bandwidth.content_type=\"image/png\""),
        "{out}"
    );
    assert!(
        out.contains("user.bandwidth.cache_control=\"max-age=60\""),
        "{out}"
    );

    // Removing the type returns to the one the name implies: one PUT.
    m.reset_stats();
    sh_ok(&format!("setfattr -x user.bandwidth.content_type {p}"));
    let s = m.stats();
    assert_eq!((s.list, s.get, s.put, s.delete), (0, 0, 1, 0), "{s:?}");
    assert_eq!(stored_type(&m, "pic.jpg").as_deref(), Some("image/jpeg"));
    assert_eq!(get("content_type"), "image/jpeg");
    // And the cache control goes: one PUT.
    sh_ok(&format!("setfattr -x user.bandwidth.cache_control {p}"));
    assert_eq!(m.stats().put, 2);
    assert_eq!(
        m.emulator.store().get("pic.jpg").unwrap().cache_control,
        None
    );

    // A set the server refuses is the setfattr's error, and nothing changes: here it takes at
    // most 1000 bytes now, so the PUT of the 2 kB media is refused (413: "File too large").
    let mut config = m.emulator.store().config();
    config.max_size = 1000;
    m.emulator.store().set_config(config);
    let (ok, _, err) = sh_outcome(&format!(
        "setfattr -n user.bandwidth.content_type -v image/gif {p}"
    ));
    assert!(!ok && err.contains("File too large"), "{err}");
    assert_eq!(stored_type(&m, "pic.jpg").as_deref(), Some("image/jpeg"));
    assert_eq!(get("content_type"), "image/jpeg");
}

/// `df OPTION MOUNT`'s numbers: (total, used, free) of its one line.
fn df(m: &Mount, option: &str) -> (i128, i128, i128) {
    let out = sh_ok(&format!("df {option} {}", q(&m.mnt)));
    let line = out.lines().nth(1).unwrap_or_else(|| panic!("{out}"));
    let n: Vec<i128> = line
        .split_whitespace()
        .skip(1)
        .take(3)
        .map(|f| f.parse().unwrap_or_else(|_| panic!("{out}")))
        .collect();
    (n[0], n[1], n[2])
}

#[test]
fn df_shows_sensible_numbers_that_follow_copies() {
    let m = Mount::with(
        emulator_with(&[("a.bin", &bytes(5000, 1)), ("d/b.bin", &bytes(10, 2))]),
        &[],
    );
    let check = |(total, used, free): (i128, i128, i128), what: &str| {
        assert!(
            used >= 0 && free >= 0 && used <= total,
            "{what}: {total} {used} {free}"
        );
        assert_eq!(total, used + free, "{what}");
    };
    let (inodes, bytes0) = (df(&m, "-i"), df(&m, "-B1"));
    check(inodes, "df -i");
    check(bytes0, "df -B1");
    // Two files, the root and d.
    assert_eq!(inodes.1, 4);
    assert_eq!(bytes0.1, 8192);
    assert_eq!(bytes0.0, 1 << 40, "1 TiB in all");
    assert_eq!(inodes.0, 1 << 32, "2^32 inodes in all");
    // df -h rounds up: the size is a plain 1.0T, and so is what is free.
    let h = sh_ok(&format!("df -h {}", q(&m.mnt)));
    let sizes: Vec<&str> = h
        .lines()
        .nth(1)
        .map(|l| l.split_whitespace().skip(1).take(3).collect())
        .unwrap_or_default();
    assert_eq!(sizes, ["1.0T", "8.0K", "1.0T"], "{h}");

    let src = m.dir.path().join("big");
    std::fs::write(&src, bytes(100_000, 3)).unwrap();
    sh_ok(&format!("cp {} {}", q(&src), q(&m.path("d/big"))));
    let (inodes2, bytes2) = (df(&m, "-i"), df(&m, "-B1"));
    check(inodes2, "df -i after cp");
    check(bytes2, "df -B1 after cp");
    assert_eq!(inodes2.1, inodes.1 + 1);
    assert_eq!(bytes2.1, (100_000u64 + 5010).div_ceil(4096) as i128 * 4096);
}

/// The value of extended attribute `name` of `p`, through `getfattr`.
fn xattr(p: &std::path::Path, name: &str) -> String {
    sh_ok(&format!("getfattr -n {name} --only-values {}", q(p)))
}

/// `t` in nanoseconds since the epoch.
fn ns_of(t: std::time::SystemTime) -> i128 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i128
}

/// What `user.bandwidth.expires` should say of a media whose mtime is `mtime_ns`: 48 hours
/// later, in RFC 3339, rounded up to the second.
fn expiry_of(mtime_ns: i128) -> String {
    let secs = (mtime_ns + 999_999_999).div_euclid(1_000_000_000) as u64 + 48 * 3600;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[track_caller]
fn assert_near(got_ns: i128, want_ns: i128, slack_ns: i128, what: &str) {
    assert!(
        (got_ns - want_ns).abs() <= slack_ns,
        "{what}: {got_ns} is {:.3} s from {want_ns}",
        (got_ns - want_ns) as f64 / 1e9
    );
}

const SECOND: i128 = 1_000_000_000;

#[test]
fn after_a_remount_times_are_the_upload_times_from_last_modified() {
    let emulator = start_emulator(emulator_config());
    // An inbound media that arrived an hour ago.
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    emulator
        .store()
        .put_at(
            "in/0/photo.jpg",
            bytes::Bytes::from(jpeg()),
            "image/jpeg",
            None,
            hour_ago,
        )
        .unwrap();
    // A short TTL: the kernel asks for the attributes again after the read that dates them.
    let mut m = Mount::with(emulator, &["--metadata-ttl", "1s"]);
    let src = m.dir.path().join("mine.txt");
    std::fs::write(&src, b"sent from here\n").unwrap();
    sh_ok(&format!("cp {} {}", q(&src), q(&m.path("mine.txt"))));
    let uploaded = m.emulator.store().get("mine.txt").unwrap().uploaded;
    m.unmount();
    std::thread::sleep(std::time::Duration::from_secs(2));

    // A new mount, with nothing remembered (a state directory of its own): the dates come with
    // the downloads.
    let m2 = Mount::with(m.emulator.clone(), &["--metadata-ttl", "1s"]);
    let (photo, mine) = (m2.path("in/0/photo.jpg"), m2.path("mine.txt"));
    sh_ok(&format!("cat {} {} >/dev/null", q(&photo), q(&mine)));
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let whole_hour_ago = ns_of(hour_ago).div_euclid(SECOND) * SECOND;
    assert_eq!(times(&photo), (whole_hour_ago, whole_hour_ago));
    assert_near(times(&mine).0, ns_of(uploaded), SECOND, "mine.txt");
    // `ls -t`: the newest first.
    let listed = sh_ok(&format!("ls -t {}", q(&m2.path("in/0"))));
    assert_eq!(listed.trim(), "photo.jpg");
    let order = sh_ok(&format!(
        "cd {} && ls -t mine.txt in/0/photo.jpg",
        q(&m2.mnt)
    ));
    assert_eq!(
        order.split_whitespace().collect::<Vec<_>>(),
        ["mine.txt", "in/0/photo.jpg"]
    );
    let found = sh_ok(&format!("cd {} && find . -type f -mmin -30", q(&m2.mnt)));
    assert_eq!(found.trim(), "./mine.txt");
    // The expiry: 48 hours after the latest moment of the upload (a server's date is rounded
    // down to the second).
    assert_eq!(
        xattr(&photo, "user.bandwidth.expires"),
        expiry_of(whole_hour_ago + SECOND)
    );
    assert_eq!(
        xattr(&mine, "user.bandwidth.expires"),
        expiry_of(times(&mine).0 + SECOND)
    );
}

#[test]
fn without_last_modified_a_remount_keeps_the_times_this_machine_saw() {
    let mut config = emulator_config();
    config.store.last_modified = false;
    let emulator = start_emulator(config);
    emulator
        .store()
        .put(
            "in/0/photo.jpg",
            bytes::Bytes::from(jpeg()),
            "image/jpeg",
            None,
        )
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut env = oauth_env(&emulator);
    env.push(("XDG_STATE_HOME".into(), state.path().display().to_string()));
    let mut m = Mount::with_env(emulator, &[], &env);
    let src = m.dir.path().join("mine.txt");
    std::fs::write(&src, b"sent from here\n").unwrap();
    sh_ok(&format!("cp {} {}", q(&src), q(&m.path("mine.txt"))));
    let uploaded = m.emulator.store().get("mine.txt").unwrap().uploaded;
    sh_ok(&format!("ls -lR {} >/dev/null", q(&m.mnt)));
    let photo_first = times(&m.path("in/0/photo.jpg"));
    let mine_first = times(&m.path("mine.txt"));
    // Our own upload is dated by its PUT.
    assert_near(mine_first.0, ns_of(uploaded), SECOND, "mine.txt");
    let expires_first = xattr(&m.path("in/0/photo.jpg"), "user.bandwidth.expires");
    assert_eq!(expires_first, expiry_of(photo_first.0));
    m.unmount();
    let kept: Vec<_> = std::fs::read_dir(state.path().join("bwmediafs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("times-") && n.ends_with(".json"))
        .collect();
    assert_eq!(kept.len(), 1, "one times file: {kept:?}");
    std::thread::sleep(std::time::Duration::from_secs(2));

    let m2 = Mount::with_env(m.emulator.clone(), &[], &env);
    let (photo, mine) = (m2.path("in/0/photo.jpg"), m2.path("mine.txt"));
    assert_eq!(times(&photo), photo_first);
    assert_eq!(times(&mine).0, mine_first.0);
    // The directories of an inbound message are as old as its media, so `ls -lt` of the
    // root sorts the messages, not the time of the mount.
    assert_eq!(times(&m2.path("in/0")).0, photo_first.0);
    assert_eq!(times(&m2.path("in")).0, photo_first.0);
    // A read (no date from the server) changes nothing.
    sh_ok(&format!("cat {} {} >/dev/null", q(&photo), q(&mine)));
    assert_eq!(times(&photo), photo_first);
    assert_eq!(xattr(&photo, "user.bandwidth.expires"), expires_first);
    assert_eq!(
        xattr(&mine, "user.bandwidth.expires"),
        expiry_of(mine_first.0)
    );
}

#[test]
fn rsync_copies_the_users_own_attributes_in_and_out() {
    let m = Mount::new();
    let src = m.dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"a\n").unwrap();
    std::fs::write(src.join("sub/b.jpg"), jpeg()).unwrap();
    sh_ok(&format!(
        "setfattr -n user.foo -v bar {a} && setfattr -n user.foo -v 'with space' {b} \
         && setfattr -n user.dir -v d {sub}",
        a = q(&src.join("a.txt")),
        b = q(&src.join("sub/b.jpg")),
        sub = q(&src.join("sub")),
    ));
    let (ok, _, err) = sh_outcome(&format!("rsync -aX {}/ {}/", q(&src), q(&m.path("in"))));
    assert!(ok, "rsync -aX into the mount: {err}");
    assert_eq!(xattr(&m.path("in/a.txt"), "user.foo"), "bar");
    assert_eq!(xattr(&m.path("in/sub/b.jpg"), "user.foo"), "with space");
    assert_eq!(xattr(&m.path("in/sub"), "user.dir"), "d");
    assert_bytes(m.stored("in/sub/b.jpg").as_deref(), &jpeg(), "in/sub/b.jpg");
    let all = sh_ok(&format!("getfattr -d {}", q(&m.path("in/a.txt"))));
    assert!(all.contains("user.foo=\"bar\""), "{all}");
    assert!(all.contains("user.bandwidth.expires="), "{all}");

    // And back out.
    let out = m.dir.path().join("out");
    let (ok, _, err) = sh_outcome(&format!("rsync -aX {}/ {}/", q(&m.path("in")), q(&out)));
    assert!(ok, "rsync -aX out of the mount: {err}");
    assert_eq!(xattr(&out.join("a.txt"), "user.foo"), "bar");
    assert_eq!(xattr(&out.join("sub/b.jpg"), "user.foo"), "with space");
    assert_eq!(xattr(&out.join("sub"), "user.dir"), "d");

    // Create and replace are honoured, and a removal works.
    let p = m.path("in/a.txt");
    let py = |call: &str| sh_outcome(&format!("python3 -c 'import os, sys; os.{call}' {}", q(&p)));
    let (ok, _, err) = py("setxattr(sys.argv[1], \"user.foo\", b\"x\", os.XATTR_CREATE)");
    assert!(!ok && err.contains("FileExistsError"), "{err}");
    let (ok, _, err) = py("setxattr(sys.argv[1], \"user.new\", b\"x\", os.XATTR_REPLACE)");
    assert!(!ok && err.contains("No data available"), "{err}");
    sh_ok(&format!("setfattr -x user.foo {}", q(&p)));
    let (ok, _, _) = sh_outcome(&format!("getfattr -n user.foo {}", q(&p)));
    assert!(!ok, "user.foo is still there");
}
