//! The file system through real mounts: the built `bwmediafs` binary against the emulator
//! (`tests/common/mod.rs`), and the core mounted in this process (`fuse_inprocess`). One test
//! binary, so the test build links one executable for all of them.

#[path = "../common/mod.rs"]
mod common;

mod budget;
mod durability;
mod fidelity;
mod fuse_inprocess;
mod mount;
mod posix;
mod reliability;
mod state;
