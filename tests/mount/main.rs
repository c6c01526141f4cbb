//! The file system through real mounts: the built `bwmediafs` binary against the emulator
//! (`tests/common/mod.rs`), and the core mounted in this process (`fuse_inprocess`). One test
//! binary, so the test build links one executable for all of them.
//!
//! The pjdfstest suite (`tests/posix.rs`) runs in a binary of its own: beside the tests here its
//! `open::etxtbsy` check failed.

#[path = "../common/mod.rs"]
mod common;

mod budget;
mod durability;
mod fidelity;
mod fuse_inprocess;
mod mount;
mod reliability;
mod state;
mod writeback;
