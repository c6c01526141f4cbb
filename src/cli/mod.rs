//! The pieces of the `bwmediafs` command line that are worth testing on their own: credentials,
//! mountpoint checks, going to the background, mount options, the demo, shell completions and
//! man pages.

pub mod completions;
pub mod credentials;
pub mod daemon;
pub mod demo;
pub mod man;
pub mod mountpoint;
pub mod options;
