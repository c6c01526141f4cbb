//! Freeing the nodes of removed media.

use super::*;

/// Media that vanish from the account (retention) are freed at the next listing, unless the
/// kernel still holds them; those go with the kernel's forget.
#[test]
fn vanished_media_are_freed_once_the_kernel_no_longer_names_them() {
    let store = new_store(100);
    for i in 0..300 {
        seed(&store, &format!("m{i:03}"), b"x");
    }
    let t = mount_ttl(store.clone(), Duration::from_millis(50));
    assert_eq!(t.ls("").unwrap().len(), 300);
    let base = t.fs.node_count();
    assert_eq!(base, 301, "the root and 300 files");
    let held = t.resolve("m007").unwrap().ino;
    t.fs.entry_handed(held); // the kernel got it in a lookup reply
    for i in 0..300 {
        store.delete(&format!("m{i:03}"));
    }
    std::thread::sleep(Duration::from_millis(60));
    assert!(t.ls("").unwrap().is_empty());
    assert_eq!(
        t.fs.node_count(),
        2,
        "the root and the node the kernel still holds"
    );
    t.fs.forget(held, 1);
    assert_eq!(t.fs.node_count(), 1);
    assert_eq!(errno_of(t.fs.getattr(held)), libc::ENOENT);
}

/// An open handle keeps a removed file's node (fstat, reads) until it is closed.
#[test]
fn an_open_handle_keeps_a_removed_node_until_it_is_closed() {
    let store = new_store(1000);
    seed(&store, "a", b"hello");
    let t = mount(store);
    let ino = t.resolve("a").unwrap().ino;
    let o = t.fs.open(ino, libc::O_RDONLY, 0).unwrap();
    t.rm("a").unwrap();
    assert_eq!(t.fs.getattr(ino).unwrap().nlink, 0);
    assert_eq!(&t.fs.read(o.fh, 0, 10).unwrap()[..], b"hello");
    t.fs.release(o.fh).unwrap();
    assert_eq!(errno_of(t.fs.getattr(ino)), libc::ENOENT);
    assert_eq!(t.fs.node_count(), 1);
}

/// readdirplus hands the kernel a reference to each entry but `.` and `..`; readdir none.
#[test]
fn readdirplus_entries_are_references_the_kernel_forgets() {
    let store = new_store(1000);
    for n in ["d/x", "y"] {
        seed(&store, n, b"1");
    }
    let t = mount_ttl(store.clone(), Duration::from_millis(50));
    let fh = t.fs.opendir(ROOT_INO).unwrap().fh;
    let mut inos = Vec::new();
    t.fs.readdir(fh, 0, true, |e| {
        inos.push((e.name.to_string(), e.ino));
        false
    })
    .unwrap();
    t.fs.releasedir(fh);
    let names: Vec<&str> = inos.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [".", "..", "d", "y"]);
    store.delete("d/x");
    store.delete("y");
    std::thread::sleep(Duration::from_millis(60));
    assert!(t.ls("").unwrap().is_empty());
    assert_eq!(
        t.fs.node_count(),
        3,
        "root, d and y are still named by the kernel"
    );
    for (_, ino) in &inos[2..] {
        t.fs.forget(*ino, 1);
    }
    assert_eq!(t.fs.node_count(), 1);
    t.fs.forget(ROOT_INO, 1); // never freed
    assert!(t.fs.getattr(ROOT_INO).is_ok());
}
