use super::*;

#[test]
fn paths_are_escaped_like_systemd_unit_names() {
    assert_eq!(escape_path(Path::new("/mnt/media")), "mnt-media");
    assert_eq!(escape_path(Path::new("/")), "-");
    assert_eq!(
        escape_path(Path::new("/srv//my media/")),
        "srv-my\\x20media"
    );
    assert_eq!(escape_path(Path::new("/home/a-b/.m")), "home-a\\x2db-.m");
    assert_eq!(escape_path(Path::new("/.hidden")), "\\x2ehidden");
}

#[test]
fn the_file_rotates_by_size_and_keeps_two_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/m.log");
    let mut f = RotatingFile::open(&path, 100, 2).unwrap();
    let line = |i: usize| format!("line {i:02} {}\n", "x".repeat(30)); // 40 bytes
    for i in 0..10 {
        f.write_all(line(i).as_bytes()).unwrap();
    }
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let name = |n: &str| dir.path().join(format!("logs/m.log{n}"));
    // 2 lines (80 bytes) per file: 8-9 current, 6-7 in .1, 4-5 in .2, 0-3 gone.
    assert_eq!(read(name("")), line(8) + &line(9));
    assert_eq!(read(name(".1")), line(6) + &line(7));
    assert_eq!(read(name(".2")), line(4) + &line(5));
    assert!(!name(".3").exists());
    // Reopened, it counts what the file already holds.
    let mut f = RotatingFile::open(&path, 100, 2).unwrap();
    f.write_all(line(10).as_bytes()).unwrap();
    assert_eq!(read(name("")), line(10));
    assert_eq!(read(name(".1")), line(8) + &line(9));
}

#[test]
fn the_file_is_made_at_the_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/m.log");
    let mut f = RotatingFile::open(&path, 100, 2).unwrap();
    f.flush().unwrap();
    assert!(!path.exists());
    f.write_all(b"first\n").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"first\n");
}

#[test]
fn a_line_longer_than_the_limit_still_lands_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.log");
    let mut f = RotatingFile::open(&path, 10, 2).unwrap();
    f.write_all(b"a very long first line\n").unwrap();
    f.write_all(b"second\n").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second\n");
    assert_eq!(
        std::fs::read(dir.path().join("m.log.1")).unwrap(),
        b"a very long first line\n"
    );
}

#[test]
fn fuser_noise_is_demoted_and_real_warnings_are_not() {
    let demote = |target: &str, level: log::Level, text: &str| {
        demoted(
            &log::Record::builder()
                .target(target)
                .level(level)
                .args(format_args!("{text}"))
                .build(),
        )
    };
    assert_eq!(
        demote(
            "fuser::request",
            log::Level::Warn,
            "[Not Implemented] lseek(ino: 0x2,\n fh: 3)"
        )
        .as_deref(),
        Some("lseek: not implemented, answered ENOSYS")
    );
    assert!(demote(
        "fuser::session",
        log::Level::Warn,
        "Failed to umount filesystem: Invalid argument (os error 22)"
    )
    .is_some());
    assert!(demote(
        "fuser::session",
        log::Level::Warn,
        "Failed to umount filesystem: Device or resource busy (os error 16)"
    )
    .is_none());
    assert!(demote("bwmediafs", log::Level::Warn, "[Not Implemented] x").is_none());
    // A reply to a request the kernel gave up on; other failures to reply stay errors.
    assert!(demote(
        "fuser::reply",
        log::Level::Error,
        "Failed to send FUSE reply: No such file or directory (os error 2)"
    )
    .is_some());
    assert!(demote(
        "fuser::reply",
        log::Level::Error,
        "Failed to send FUSE reply: Invalid argument (os error 22)"
    )
    .is_none());
}
