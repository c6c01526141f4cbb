//! Everyday fidelity through a real mount: who owns new files, directory times and links, the
//! extended attributes that `rsync -aX` and `cp --preserve=xattr` copy, header changes that
//! reach the server at once, content types told from the bytes, and what `df` shows.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;

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
