//! What the mount asks of the kernel at INIT: large writes and readahead; atomic `O_TRUNC` (so
//! `cp` over a file costs one upload, not two); readdirplus (an `ls -l` gets names and
//! attributes in one pass); parallel directory operations; data invalidated when a file's
//! attributes change. A kernel that offers less is taken as it is.

use fuser::{InitFlags, KernelConfig};

use super::reply::WRITE_BLKSIZE;

/// Ask the kernel for the settings above, taking the nearest it allows.
pub(super) fn negotiate(config: &mut KernelConfig) {
    if let Err(nearest) = config.set_max_write(WRITE_BLKSIZE) {
        let _ = config.set_max_write(nearest);
    }
    if let Err(nearest) = config.set_max_readahead(4 * 1024 * 1024) {
        let _ = config.set_max_readahead(nearest);
    }
    let _ = config.set_max_background(64);
    for cap in [
        InitFlags::FUSE_ATOMIC_O_TRUNC,
        InitFlags::FUSE_DO_READDIRPLUS,
        InitFlags::FUSE_READDIRPLUS_AUTO,
        InitFlags::FUSE_PARALLEL_DIROPS,
        InitFlags::FUSE_AUTO_INVAL_DATA,
    ] {
        if config.add_capabilities(cap).is_err() {
            log::debug!("the kernel does not offer {cap:?}");
        }
    }
}
