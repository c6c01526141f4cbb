//! A media named like a directory: the directory keeps the name, the file is shown beside it
//! (`a~media`), moves and is removed by its own name, and a derived name fits in 255 bytes.

use super::*;

#[test]
fn a_file_that_is_also_a_prefix_is_shown_beside_the_directory() {
    let store = new_store(1);
    seed(&store, "a", b"file");
    seed(&store, "a/b", b"under");
    let t = mount(store);
    // The first pass may hand out the file as `a` before the page that shows `a/b` comes
    // (one page per media here); the next one is right.
    t.ls("").unwrap();
    assert_eq!(t.ls("").unwrap(), vec!["a", "a~media"]);
    assert_eq!(t.resolve("a").unwrap().kind, Kind::Dir);
    assert_eq!(t.cat("a/b").unwrap(), b"under");
    assert_eq!(t.cat("a~media").unwrap(), b"file");
    // Written through its shown name, the media is stored under its own.
    t.write_file("a~media", b"new").unwrap();
    assert_eq!(t.stored("a").unwrap(), b"new");
    assert_eq!(t.stored("a~media"), None);
    // The directory goes: the file takes its own name back.
    t.rm("a/b").unwrap();
    t.fs.rmdir(ROOT_INO, &os("a")).unwrap();
    assert_eq!(t.ls("").unwrap(), vec!["a"]);
    assert_eq!(t.resolve("a").unwrap().kind, Kind::File);
    assert_eq!(t.cat("a").unwrap(), b"new");
}

#[test]
fn a_file_shown_beside_moves_and_is_removed_by_its_own_name() {
    let store = new_store(1000);
    seed(&store, "d/f", b"file");
    seed(&store, "d/f/x", b"x");
    seed(&store, "d/f~media", b"a real name");
    let t = mount_ttl(store, Duration::ZERO);
    // A media really named like a derived name keeps it; the file goes to the next one.
    assert_eq!(t.ls("d").unwrap(), vec!["f", "f~media", "f~media2"]);
    assert_eq!(t.cat("d/f~media").unwrap(), b"a real name");
    assert_eq!(t.cat("d/f~media2").unwrap(), b"file");
    // A directory rename carries it, under its own name.
    t.mv("d", "e").unwrap();
    assert_eq!(t.ls("e").unwrap(), vec!["f", "f~media", "f~media2"]);
    assert_eq!(t.store.names(), vec!["e/f", "e/f/x", "e/f~media"]);
    // A file renamed from its derived name gets the one it is given.
    t.mv("e/f~media2", "g").unwrap();
    assert_eq!(t.cat("g").unwrap(), b"file");
    assert_eq!(t.ls("e").unwrap(), vec!["f", "f~media"]);
    // A file moved onto a file shown beside replaces that media.
    t.mv("e/f~media", "e/f").unwrap_err();
    seed(&t.store, "e/f", b"again");
    assert_eq!(t.ls("e").unwrap(), vec!["f", "f~media", "f~media2"]);
    t.mv("g", "e/f~media2").unwrap();
    assert_eq!(t.stored("e/f").unwrap(), b"file");
    assert_eq!(t.stored("g"), None);
    t.rm("e/f~media2").unwrap();
    assert_eq!(t.stored("e/f"), None);
    assert_eq!(t.ls("e").unwrap(), vec!["f", "f~media"]);
}

#[test]
fn a_media_uploaded_elsewhere_under_a_made_directory_is_shown_beside_it() {
    let store = new_store(1000);
    let t = mount_ttl(store.clone(), Duration::ZERO);
    t.fs.mkdir(ROOT_INO, &os("m"), 0o755, 0o022, ME).unwrap();
    seed(&store, "m", b"elsewhere");
    assert_eq!(t.ls("").unwrap(), vec!["m", "m~media"]);
    assert_eq!(t.cat("m~media").unwrap(), b"elsewhere");
    t.fs.rmdir(ROOT_INO, &os("m")).unwrap();
    assert_eq!(t.ls("").unwrap(), vec!["m"]);
    assert_eq!(t.cat("m").unwrap(), b"elsewhere");
}

#[test]
fn a_derived_name_fits_in_255_bytes() {
    let long = "n".repeat(255);
    let store = new_store(1000);
    seed(&store, &long, b"file");
    seed(&store, &format!("{long}/x"), b"x");
    let t = mount(store);
    let names = t.ls("").unwrap();
    assert_eq!(names.len(), 2, "{names:?}");
    let beside = names.iter().find(|n| **n != long).unwrap();
    assert!(
        beside.len() <= 255 && beside.ends_with("~media"),
        "{beside}"
    );
    assert_eq!(t.cat(beside).unwrap(), b"file");
}
