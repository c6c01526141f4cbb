//! The command line and what ships beside it: error messages before a mount, the demo, mount(8)
//! and systemd, the emulator as a tool of its own, the man pages, shell completions, and the
//! pages of the repository. One test binary, so the test build links one executable for all of
//! them.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod completions;
mod docs;
mod emulator;
mod man;
mod system;
