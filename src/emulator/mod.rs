//! The Bandwidth Media API emulator (being written): see `store` for the media it holds.

pub mod store;
