//! `bwmediafs --completions SHELL`: the shell completion script, written by `clap_complete` from
//! the same command definition that parses the command line, so it never lags behind a flag.

use std::ffi::OsString;
use std::io::Write;

use clap::{CommandFactory, FromArgMatches};
use clap_complete::Shell;

use super::options::Args;

/// The completion script of `bwmediafs` for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Args::command(), "bwmediafs", &mut out);
    out
}

/// Parse `argv` as `Args::parse_from` does, except that `--completions SHELL` prints the script
/// and exits, as `--help` does. (`--completions` is exclusive, so clap lets the mountpoint be
/// missing then; everything else still needs it.)
pub fn parse_args_from<I, T>(argv: I) -> Args
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = Args::command().get_matches_from(argv);
    if let Some(&shell) = matches.get_one::<Shell>("completions") {
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`| head`) is no error worth reporting.
        let _ = stdout
            .write_all(&script(shell))
            .and_then(|()| stdout.flush());
        std::process::exit(0);
    }
    Args::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Args::command()).exit())
}
