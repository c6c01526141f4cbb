//! The pieces of the `bwmediafs` command line that are worth testing on their own: credentials,
//! reaching the store at mount time, mountpoint checks, going to the background, mount options, the mount(8) helper convention,
//! logs, systemd's readiness protocol, the demo, shell completions and man pages.

pub mod completions;
pub mod connect;
pub mod credentials;
pub mod daemon;
pub mod demo;
pub mod helper;
pub mod logging;
pub mod man;
pub mod mountpoint;
pub mod notify;
pub mod options;
pub mod status;
