//! `mount.bwmediafs`: the same program, called by `mount(8)` as a mount helper.
//!
//! `mount -t bwmediafs SOURCE DIR -o OPTS` (or an fstab line of type `bwmediafs`) runs
//! `/sbin/mount.bwmediafs SOURCE DIR [-sfnv] [-N NS] [-o OPTS] [-t TYPE]`, and the install makes
//! that name a link to `bwmediafs`. The hard part is that the helper's flags mean something
//! else than ours: `-f` is "fake" (do not mount) there and "foreground" here, `-s` is sloppy,
//! `-n` no mtab, `-t` the type. So when the program is called by that name its arguments are
//! rewritten into the ordinary `bwmediafs SOURCE DIR -o OPTS` first, and a fake mount exits at
//! once. (Type `fuse.bwmediafs` goes through `mount.fuse3`, which already calls
//! `bwmediafs SOURCE DIR -o OPTS` from `PATH`; nothing to rewrite there.)
//!
//! mount(8) also runs helpers without `HOME`, which would put the state directory (the log, the
//! recovery folder) under /tmp, lost at the next boot: [`ensure_home`] takes it from the
//! password database, as `mount.fuse3` does for its programs.

use std::ffi::OsString;
use std::path::Path;

/// The names a mount helper is called by: `mount.bwmediafs` (type `bwmediafs`) and
/// `mount.fuse.bwmediafs` (type `fuse.bwmediafs`, when such a link exists).
const HELPER_NAMES: &[&str] = &["mount.bwmediafs", "mount.fuse.bwmediafs"];

/// What to run.
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    /// These arguments, in the ordinary `bwmediafs` form.
    Run(Vec<OsString>),
    /// `mount -f`: the helper is asked not to mount; exit 0.
    Fake,
}

/// Set `HOME` from the password database when it is unset (see the module comment). Call while
/// the process has one thread.
pub fn ensure_home() {
    if std::env::var_os("HOME").is_some_and(|h| !h.is_empty()) {
        return;
    }
    if let Some(home) = passwd_home() {
        // The process has one thread still, so nothing reads the environment meanwhile.
        std::env::set_var("HOME", home);
    }
}

/// The home directory of the real user, from the password database.
fn passwd_home() -> Option<OsString> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getpwuid_r fills `pwd` and `buf` (of the length given); `result` says whether it
    // found the user; the strings it points to live in `buf`, read before `buf` goes.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr(pwd.pw_dir).to_bytes();
        (!dir.is_empty()).then(|| std::ffi::OsStr::from_bytes(dir).to_os_string())
    }
}

/// Whether the program was called by a mount helper's name (the basename of `argv[0]`).
pub fn is_helper(argv0: &OsString) -> bool {
    Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| HELPER_NAMES.contains(&n))
}

/// The arguments to run: unchanged unless the program was called as a mount helper, whose
/// arguments are rewritten into the ordinary form (see the module comment).
pub fn invocation(argv: Vec<OsString>) -> Result<Invocation, String> {
    let Some(argv0) = argv.first() else {
        return Ok(Invocation::Run(argv));
    };
    if !is_helper(argv0) {
        return Ok(Invocation::Run(argv));
    }
    let mut out = vec![OsString::from("bwmediafs")];
    let mut places = Vec::new();
    let mut fake = false;
    let mut rest = argv.into_iter().skip(1);
    while let Some(arg) = rest.next() {
        let Some(text) = arg.to_str() else {
            places.push(arg);
            continue;
        };
        match text {
            "-o" => {
                let opts = rest
                    .next()
                    .ok_or_else(|| "-o needs the mount options after it".to_string())?;
                out.push("-o".into());
                out.push(opts);
            }
            "-t" => {
                // The type is ours whatever it says (bwmediafs or fuse.bwmediafs).
                rest.next();
            }
            "-N" => {
                return Err("mount -N (another mount namespace) is not supported; run \
                     bwmediafs inside that namespace instead"
                    .to_string())
            }
            flags if flags.starts_with('-') && flags.len() > 1 => {
                for c in flags[1..].chars() {
                    match c {
                        'f' => fake = true,
                        'v' => out.push("-v".into()),
                        's' | 'n' => {} // sloppy, no mtab: nothing to do
                        other => {
                            return Err(format!(
                                "unknown mount helper flag -{other}; mount(8) calls \
                                 mount.bwmediafs SOURCE DIR [-sfnv] [-o OPTIONS]"
                            ))
                        }
                    }
                }
            }
            _ => places.push(arg),
        }
    }
    if fake {
        return Ok(Invocation::Fake);
    }
    out.push("--".into());
    out.extend(places);
    Ok(Invocation::Run(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_ordinary_name_is_left_alone() {
        let argv = args(&["/usr/bin/bwmediafs", "-f", "/mnt/media"]);
        assert_eq!(invocation(argv.clone()), Ok(Invocation::Run(argv)));
    }

    #[test]
    fn mount_helper_arguments_become_the_ordinary_form() {
        let argv = args(&[
            "/sbin/mount.bwmediafs",
            "9900000",
            "/mnt/media",
            "-s",
            "-nv",
            "-o",
            "rw,credentials=/etc/bw",
            "-t",
            "bwmediafs",
        ]);
        assert_eq!(
            invocation(argv),
            Ok(Invocation::Run(args(&[
                "bwmediafs",
                "-v",
                "-o",
                "rw,credentials=/etc/bw",
                "--",
                "9900000",
                "/mnt/media",
            ])))
        );
    }

    #[test]
    fn a_fake_mount_does_nothing_and_unknown_flags_are_named() {
        let argv = args(&["mount.bwmediafs", "src", "/mnt", "-f", "-o", "ro"]);
        assert_eq!(invocation(argv), Ok(Invocation::Fake));
        let e = invocation(args(&["mount.bwmediafs", "src", "/mnt", "-x"])).unwrap_err();
        assert!(e.contains("-x"), "{e}");
        let e = invocation(args(&["mount.bwmediafs", "src", "/mnt", "-N", "1"])).unwrap_err();
        assert!(e.contains("namespace"), "{e}");
    }
}
