//! The tree's rules: unusable names, implicit directories and stable inodes, the file that wins, moves.

use super::*;

fn ns() -> Namespace {
    Namespace::new(Defaults {
        file_mode: 0o644,
        dir_mode: 0o755,
        uid: 1,
        gid: 1,
    })
}

#[test]
fn bad_names() {
    for n in ["", "/a", "a/", "a//b", ".", "a/../b", "a/./b", "x\0y"] {
        assert!(bad_media_name(n).is_some(), "{n:?}");
    }
    assert!(bad_media_name(&"x".repeat(256)).is_some());
    assert!(bad_media_name(&format!("d/{}", "x".repeat(255))).is_none());
    assert!(bad_media_name("a b/ü/..x/.hidden").is_none());
}

#[test]
fn implicit_dirs_and_stable_inodes() {
    let mut ns = ns();
    let now = Instant::now();
    let f = ns.remote_file("a/b/c.png", 3, None, now).unwrap();
    let a = ns.child(ROOT_INO, "a").unwrap();
    let b = ns.child(a, "b").unwrap();
    assert_eq!(ns.child(b, "c.png"), Some(f));
    assert_eq!(ns.node(b).unwrap().path, "a/b");
    assert_eq!(ns.resolve("a/b/c.png"), Some(f));
    let again = ns.remote_file("a/b/c.png", 4, None, now).unwrap();
    assert_eq!(again, f);
    assert_eq!(ns.node(f).unwrap().size, 4);
}

#[test]
fn the_directory_keeps_the_name_in_either_order() {
    for order in [["a", "a/b"], ["a/b", "a"]] {
        let mut ns = ns();
        for name in order {
            ns.remote_file(name, 1, None, Instant::now());
        }
        let a = ns.child(ROOT_INO, "a").unwrap();
        assert_eq!(ns.node(a).unwrap().kind, Kind::Dir, "{order:?}");
        let beside = ns.child(ROOT_INO, "a~media").unwrap();
        assert_eq!(ns.resolve_file("a"), Some(beside), "{order:?}");
        assert_eq!(ns.node(beside).unwrap().path, "a");
        assert_eq!((ns.totals().files, ns.totals().bytes), (2, 2));
    }
}

#[test]
fn move_updates_paths_below() {
    let mut ns = ns();
    let f = ns.remote_file("a/b/c", 1, None, Instant::now()).unwrap();
    let a = ns.child(ROOT_INO, "a").unwrap();
    ns.move_node(a, ROOT_INO, "z");
    assert_eq!(ns.node(f).unwrap().path, "z/b/c");
    assert_eq!(ns.resolve("z/b/c"), Some(f));
    assert_eq!(ns.resolve("a/b/c"), None);
}
