use super::*;
use crate::durable::DAMAGED_DIR;

/// Headers nothing set on the file.
fn h(content_type: &str, cache_control: Option<&str>) -> Headers {
    Headers {
        content_type: content_type.to_string(),
        cache_control: cache_control.map(str::to_string),
        ..Headers::default()
    }
}

fn open(dir: &Path) -> Opened {
    Journal::open(dir, 1 << 30).expect("open the journal")
}

fn names(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.change.name.as_str()).collect()
}

/// The files of a journal directory, but its lock.
fn files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != LOCK_FILE)
        .collect();
    out.sort();
    out
}

#[test]
fn staged_versions_come_back_in_order_with_their_bytes_and_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let (a, b) = {
        let j = open(&dir).journal;
        let a = j.stage("a/x.png", &h("image/png", None), b"first").unwrap();
        let b = j
            .stage("b.txt", &h("text/plain", Some("no-cache")), b"second bytes")
            .unwrap();
        assert!(b > a);
        assert_eq!(j.held(), 5 + 12);
        (a, b)
    };
    let again = open(&dir);
    assert_eq!(names(&again.entries), ["a/x.png", "b.txt"]);
    assert_eq!(again.entries[0].seq, a);
    assert_eq!(
        again.entries[1].change.cache_control.as_deref(),
        Some("no-cache")
    );
    assert_eq!(again.entries[1].change.content_type, "text/plain");
    assert_eq!(&again.journal.body(b).unwrap()[..], b"second bytes");
    assert_eq!(again.journal.held(), 17);
    // Numbers go on after the ones found.
    let c = again
        .journal
        .stage("c", &h("text/plain", None), b"")
        .unwrap();
    assert!(c > b);
    assert!(again.damaged.is_empty());
    // A deletion comes back with the version it waits for (a rename's old name).
    let d = again.journal.stage_delete("old.txt", Some(c)).unwrap();
    drop(again);
    let last = open(&dir);
    let deletion = last.entries.iter().find(|e| e.seq == d).unwrap();
    assert_eq!(deletion.change.op, Op::Delete);
    assert_eq!(deletion.change.after, Some(c));
    assert_eq!(
        last.entries
            .iter()
            .find(|e| e.seq == c)
            .unwrap()
            .change
            .after,
        None
    );
}

#[test]
fn a_forgotten_version_is_gone_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path()).journal;
    let a = j.stage("a", &h("text/plain", None), b"aaa").unwrap();
    let b = j.stage("b", &h("text/plain", None), b"bbbb").unwrap();
    j.forget(&[a]).unwrap();
    assert_eq!(j.held(), 4);
    j.forget(&[a]).unwrap(); // twice is nothing
    assert_eq!(j.held(), 4);
    drop(j);
    let again = open(tmp.path());
    assert_eq!(names(&again.entries), ["b"]);
    assert_eq!(again.entries[0].seq, b);
}

/// A crash at each step of staging leaves what that step left; the next open keeps a version
/// exactly when its close could have returned (the rename was done).
#[test]
fn a_crash_at_every_step_of_staging_keeps_exactly_the_acknowledged_versions() {
    let body = vec![7u8; 10_000];
    let version = Change {
        op: Op::Put,
        name: "torn.bin".into(),
        content_type: "application/octet-stream".into(),
        cache_control: None,
        len: body.len() as u64,
        crc: crc32fast::hash(&body),
        content_type_set: false,
        cache_control_set: false,
        after: None,
    };
    let header = format!("{MAGIC}\n{}\n", serde_json::to_string(&version).unwrap());
    let mut whole = header.clone().into_bytes();
    whole.extend_from_slice(&body);
    // Every prefix of the file as a `.tmp` (a crash while writing or before the rename)...
    for cut in [
        0,
        5,
        header.len() - 1,
        header.len(),
        header.len() + 4000,
        whole.len(),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        {
            let j = open(tmp.path()).journal;
            j.stage("kept", &h("text/plain", None), b"acknowledged")
                .unwrap();
        }
        std::fs::write(tmp.path().join("00000000000000ff.tmp"), &whole[..cut]).unwrap();
        let again = open(tmp.path());
        assert_eq!(names(&again.entries), ["kept"], "cut at {cut}");
        assert!(again.damaged.is_empty());
        assert_eq!(files(tmp.path()), ["0000000000000001.put"], "cut at {cut}");
        // ...and its number is not given again.
        let next = again
            .journal
            .stage("n", &h("text/plain", None), b"")
            .unwrap();
        assert!(next > 0xff);
    }
    // After the rename: the whole version.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("0000000000000003.put"), &whole).unwrap();
    let again = open(tmp.path());
    assert_eq!(
        again.entries,
        [Entry {
            seq: 3,
            change: version
        }]
    );
    assert_eq!(&again.journal.body(3).unwrap()[..], &body[..]);
}

#[test]
fn damage_a_crash_cannot_cause_is_kept_aside_and_reported_never_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, short) = {
        let j = open(tmp.path()).journal;
        let good = j.stage("good", &h("text/plain", None), b"fine").unwrap();
        let short = j
            .stage("short", &h("text/plain", None), b"0123456789")
            .unwrap();
        (good, short)
    };
    std::fs::write(
        tmp.path().join("0000000000000009.put"),
        b"not a journal file",
    )
    .unwrap();
    // A version whose file lost its end.
    let short_path = tmp.path().join(format!("{short:016x}.put"));
    let bytes = std::fs::read(&short_path).unwrap();
    std::fs::write(&short_path, &bytes[..bytes.len() - 3]).unwrap();
    let again = open(tmp.path());
    assert_eq!(names(&again.entries), ["good"]);
    assert_eq!(again.entries[0].seq, good);
    assert_eq!(again.damaged.len(), 2);
    let mut aside = files(&tmp.path().join(DAMAGED_DIR));
    aside.sort();
    assert_eq!(
        aside,
        [
            format!("{short:016x}.put"),
            "0000000000000009.put".to_string()
        ]
    );
    assert_eq!(again.journal.held(), 4);
}

#[test]
fn bytes_that_do_not_match_their_checksum_are_an_error_and_kept_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path()).journal;
    let seq = j
        .stage("flip", &h("text/plain", None), b"the bytes")
        .unwrap();
    let path = tmp.path().join(format!("{seq:016x}.put"));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = j.body(seq).unwrap_err().to_string();
    assert!(err.contains("damaged"), "{err}");
    assert!(tmp
        .path()
        .join(DAMAGED_DIR)
        .join(format!("{seq:016x}.put"))
        .exists());
    assert_eq!(j.held(), 0);
}

#[test]
fn one_mount_at_a_time_holds_a_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let first = open(tmp.path());
    match Journal::open(tmp.path(), 1 << 20) {
        Err(JournalError::Locked(dir)) => assert_eq!(dir, tmp.path()),
        other => panic!("a second open got {other:?}"),
    }
    drop(first);
    open(tmp.path());
}

#[test]
fn a_full_journal_refuses_a_version_and_takes_it_once_there_is_room() {
    let tmp = tempfile::tempdir().unwrap();
    let j = Journal::open(tmp.path(), 10).unwrap().journal;
    let a = j.stage("a", &h("text/plain", None), b"12345678").unwrap();
    match j.stage("b", &h("text/plain", None), b"123") {
        Err(StageError::Full { held: 8, limit: 10 }) => {}
        other => panic!("{other:?}"),
    }
    j.forget(&[a]).unwrap();
    j.stage("b", &h("text/plain", None), b"123").unwrap();
    // One version larger than the whole limit still goes into an empty journal.
    let tmp = tempfile::tempdir().unwrap();
    let j = Journal::open(tmp.path(), 10).unwrap().journal;
    j.stage("big", &h("text/plain", None), &[0; 100]).unwrap();
}

#[test]
fn a_journal_in_memory_is_refused_with_the_option_to_choose_another() {
    let shm = Path::new("/dev/shm");
    if not_durable(shm).ok().flatten().is_none() {
        return; // no tmpfs here to try
    }
    let tmp = tempfile::tempdir_in(shm).unwrap();
    let err = Journal::open(tmp.path(), 1 << 20).unwrap_err();
    assert!(matches!(err, JournalError::NotDurable { .. }), "{err:?}");
    assert!(err.to_string().contains("--journal-dir"), "{err}");
}
