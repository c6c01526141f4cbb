//! bwmediafs: a FUSE filesystem over Bandwidth's Media API, and a faithful emulator of that API.
//!
//! Layers (data flows down, errors flow up):
//! - [`fuse`]: the thin adapter from kernel requests to the core;
//! - [`fs`]: the filesystem core (names, caches, write buffers, errno mapping), usable without FUSE;
//! - [`api`]: the Media API client behind the [`api::MediaApi`] trait;
//! - [`emulator`]: the local API server, whose store also serves `MediaApi` in-process.

#![warn(missing_docs)]

pub mod api;
pub mod cli;
pub mod durable;
pub mod emulator;
pub mod fs;
pub mod fuse;
pub mod mountinfo;
