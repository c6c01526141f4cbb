//! `bwmediafs --completions SHELL`: prints a completion script that the shell accepts, without a
//! mountpoint; every other use still needs one.

use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_bwmediafs");

fn bwmediafs(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run bwmediafs")
}

#[test]
fn completions_print_a_script_for_each_shell_without_a_mountpoint() {
    for shell in ["bash", "zsh", "fish"] {
        let out = bwmediafs(&["--completions", shell]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{shell}: {:?} {stderr}", out.status);
        assert!(stderr.is_empty(), "{shell}: {stderr}");
        let script = String::from_utf8(out.stdout).expect("a UTF-8 script");
        assert!(script.contains("bwmediafs"), "{shell}: {script}");
        // fish spells long flags `-l cache-size`, the others `--cache-size`.
        let flag = if shell == "fish" {
            "-l cache-size"
        } else {
            "--cache-size"
        };
        assert!(script.contains(flag), "{shell}: no {flag} in {script}");
        assert!(script.contains("metadata-ttl"), "{shell}: {script}");
    }
}

#[test]
fn bash_loads_the_script_and_completes_a_flag_from_it() {
    // Load the script as a user's shell does, then ask it to complete `bwmediafs --cache`.
    let script = format!(
        r#"source <('{BIN}' --completions bash) || exit 1
complete -p bwmediafs || exit 1
COMP_WORDS=(bwmediafs --cache); COMP_CWORD=1; COMP_LINE='bwmediafs --cache'; COMP_POINT=17
_bwmediafs bwmediafs --cache bwmediafs
printf 'reply:%s\n' "${{COMPREPLY[@]}}""#
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("-F _bwmediafs bwmediafs"),
        "complete -p: {stdout}{stderr}"
    );
    assert!(
        stdout.lines().any(|l| l == "reply:--cache-size"),
        "bash did not complete --cache to --cache-size: {stdout}{stderr}"
    );
}

#[test]
fn a_missing_mountpoint_is_still_a_clear_error() {
    let out = bwmediafs(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("MOUNTPOINT>"), "{stderr}");
    assert!(out.stdout.is_empty());
    // --completions goes alone: with a mountpoint it is refused, not silently preferred.
    let out = bwmediafs(&["--completions", "bash", "/tmp"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--completions"), "{stderr}");
    assert!(out.stdout.is_empty());
    let out = bwmediafs(&["--completions", "tcsh"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("possible values"), "{stderr}");
}
