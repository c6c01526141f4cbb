//! Header changes through the xattrs: on the server at once, with exact request counts.

use super::*;

fn ct_of(t: &T, name: &str) -> String {
    Store::get(&t.store, name).unwrap().content_type
}

fn getx(t: &T, ino: Ino, name: &str) -> Result<Vec<u8>, FsError> {
    t.fs.getxattr(ino, &os(name))
}

#[test]
fn a_set_of_an_uncached_file_is_one_get_and_one_put() {
    let store = new_store(1000);
    seed(&store, "a.jpg", b"jpeg");
    let t = mount(store);
    let ino = t.resolve("a.jpg").unwrap().ino;
    t.reset();
    t.fs.setxattr(ino, &os(XATTR_CONTENT_TYPE), b"image/png", 0)
        .unwrap();
    assert_eq!(t.stats(), snap(0, 1, 1, 0));
    assert_eq!(ct_of(&t, "a.jpg"), "image/png");
    assert_eq!(t.stored("a.jpg").unwrap(), b"jpeg");
    // Shown at once, and the body the GET brought is kept for reads.
    assert_eq!(getx(&t, ino, XATTR_CONTENT_TYPE).unwrap(), b"image/png");
    assert_eq!(t.cat("a.jpg").unwrap(), b"jpeg");
    // A set of what the server holds costs nothing.
    t.fs.setxattr(ino, &os(XATTR_CONTENT_TYPE), b"image/png", 0)
        .unwrap();
    assert_eq!(t.stats(), snap(0, 1, 1, 0));
}

/// A media stored with a type that is not a media type (by a server laxer than a careful one,
/// or another client) is rewritten with the type its bytes imply, not that one: a server that
/// checks would refuse the upload, and the file could not be saved.
#[test]
fn a_rewrite_does_not_send_back_a_stored_type_that_is_not_a_media_type() {
    let store = new_store(1000);
    Store::put(&store, "odd", Bytes::from_static(b"old"), "@0E4_K^j", None).unwrap();
    Store::put(
        &store,
        "kept",
        Bytes::from_static(b"old"),
        "image/png",
        None,
    )
    .unwrap();
    let t = mount(store);
    // Read first, so the mount knows the types the server holds.
    t.cat("odd").unwrap();
    t.cat("kept").unwrap();
    t.write_file("odd", b"plain text").expect("rewritten");
    assert_eq!(ct_of(&t, "odd"), "text/plain");
    // A valid stored type still goes with a rewrite.
    t.write_file("kept", b"plain text").expect("rewritten");
    assert_eq!(ct_of(&t, "kept"), "image/png");
}

#[test]
fn a_removal_returns_to_the_implied_type_and_no_cache_control() {
    let store = new_store(1000);
    Store::put(
        &store,
        "a.jpg",
        Bytes::from_static(b"jpeg"),
        "image/png",
        Some("no-cache"),
    )
    .unwrap();
    let t = mount(store);
    let ino = t.resolve("a.jpg").unwrap().ino;
    t.reset();
    t.fs.removexattr(ino, &os(XATTR_CONTENT_TYPE)).unwrap();
    assert_eq!(t.stats(), snap(0, 1, 1, 0));
    assert_eq!(ct_of(&t, "a.jpg"), "image/jpeg");
    let held = Store::get(&t.store, "a.jpg").unwrap();
    assert_eq!(held.cache_control.as_deref(), Some("no-cache"));
    t.fs.removexattr(ino, &os(XATTR_CACHE_CONTROL)).unwrap();
    assert_eq!(t.stats(), snap(0, 1, 2, 0));
    assert_eq!(Store::get(&t.store, "a.jpg").unwrap().cache_control, None);
    assert_eq!(errno_of(getx(&t, ino, XATTR_CACHE_CONTROL)), libc::ENODATA);
    assert_eq!(
        errno_of(t.fs.removexattr(ino, &os(XATTR_CACHE_CONTROL))),
        libc::ENODATA
    );
    // The type is always there: removing it again is one more PUT only if it differs.
    t.fs.removexattr(ino, &os(XATTR_CONTENT_TYPE)).unwrap();
    assert_eq!(t.stats(), snap(0, 1, 2, 0));
    assert_eq!(getx(&t, ino, XATTR_CONTENT_TYPE).unwrap(), b"image/jpeg");
}

#[test]
fn a_dirty_buffer_carries_the_change_in_its_upload() {
    let t = mount(new_store(1000));
    let (a, o) = t.create(ROOT_INO, "new", libc::O_WRONLY);
    t.fs.write(o.fh, 0, b"hello").unwrap();
    t.reset();
    t.fs.setxattr(a.ino, &os(XATTR_CONTENT_TYPE), b"text/csv", 0)
        .unwrap();
    t.fs.setxattr(a.ino, &os(XATTR_CACHE_CONTROL), b"max-age=9", 0)
        .unwrap();
    assert_eq!(
        t.stats(),
        snap(0, 0, 0, 0),
        "nothing is sent before the close"
    );
    assert_eq!(getx(&t, a.ino, XATTR_CONTENT_TYPE).unwrap(), b"text/csv");
    t.fs.flush(o.fh).unwrap();
    t.fs.release(o.fh).unwrap();
    assert_eq!(t.stats(), snap(0, 0, 1, 0));
    let m = Store::get(&t.store, "new").unwrap();
    assert_eq!(m.content_type, "text/csv");
    assert_eq!(m.cache_control.as_deref(), Some("max-age=9"));
}

#[test]
fn a_failed_put_is_the_error_and_changes_nothing() {
    let store = new_store(1000);
    seed(&store, "a.jpg", b"jpeg");
    let t = mount(store);
    let ino = t.resolve("a.jpg").unwrap().ino;
    assert_eq!(t.cat("a.jpg").unwrap(), b"jpeg");
    *t.faults.put.lock() = Some(ApiError::UnsupportedType("x/y".into()));
    assert_eq!(
        errno_of(t.fs.setxattr(ino, &os(XATTR_CONTENT_TYPE), b"x/y", 0)),
        libc::EINVAL
    );
    assert_eq!(getx(&t, ino, XATTR_CONTENT_TYPE).unwrap(), b"image/jpeg");
    assert_eq!(ct_of(&t, "a.jpg"), "image/jpeg");
    *t.faults.put.lock() = None;
    // Nothing was left behind to upload.
    t.reset();
    t.fs.flush_all().unwrap();
    assert_eq!(t.stats(), snap(0, 0, 0, 0));
}

#[test]
fn derived_attributes_accept_any_set_and_removal() {
    let store = new_store(1000);
    seed(&store, "a.jpg", b"jpeg");
    let t = mount(store);
    let ino = t.resolve("a.jpg").unwrap().ino;
    let url = getx(&t, ino, XATTR_URL).unwrap();
    t.reset();
    t.fs.setxattr(ino, &os(XATTR_URL), b"https://elsewhere/x", 0)
        .unwrap();
    t.fs.removexattr(ino, &os(XATTR_URL)).unwrap();
    assert_eq!(getx(&t, ino, XATTR_URL).unwrap(), url);
    assert_eq!(t.stats(), snap(0, 0, 0, 0));
    assert_eq!(
        errno_of(t.fs.removexattr(ino, &os("user.other"))),
        libc::ENODATA
    );
}
