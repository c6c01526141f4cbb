//! Model-based test through a real mount: random sequences of file-system operations (create,
//! write at an offset, append, truncate, read, list, rename of files and directories, unlink,
//! mkdir, rmdir) on the mounted directory, mixed with puts and deletes made directly through the
//! API, are applied both to the mount and to an in-memory model of what it should show. Every
//! outcome (success or errno, the bytes read, the names listed) must be the one the model
//! predicts; after every step the emulator's store must hold exactly the model's media; every
//! few steps the whole tree seen through the mount (every directory listed, every file read and
//! stat'ed) must be the model's view.
//!
//! The model is a map of media name -> bytes (what the API holds) plus the set of *explicit*
//! directories: made by `mkdir` in this mount, or emptied by our own `rm`, `mv` or `rmdir` (a
//! directory does not vanish because the user emptied it, so `rm -r` works). The directories
//! shown are the explicit ones, their parents, and the prefixes of media names; a directory made
//! only of media goes away when they are deleted through the API. Errno predictions follow Linux,
//! in its order (`rename(2)`: the parents, a missing source, EINVAL for a directory moved into
//! itself, ENOTEMPTY for a target that is an ancestor of the source, then EISDIR/ENOTDIR).
//!
//! The mount runs with `--metadata-ttl 0s`: the kernel's entry and attribute timeouts are zero
//! (every path walk asks the file system again), and the core trusts nothing it cached, so a
//! change made through the API is visible to the very next operation and the model can be exact.
//! Two kinds of account are run: small (one listing page: every lookup, directories included,
//! costs one list request that refreshes everything) and paged (one media a page: a known name
//! is trusted until the next complete listing, and an open checks the file with one GET). API
//! puts often keep a name's size: only the open's check (close-to-open) can see those.
//!
//! What programs do around faults is generated too: an fsync that fails, followed by another
//! fsync, a close, or a close while the server still fails (then the error, and the bytes in the
//! recovery folder); a close across an outage shorter than the retry time; a file written
//! through two descriptors of one open; a redirected shell loop whose every command closes the
//! file; an oversize copy over a file. The oracle is the promise: a call that returned success
//! means the store holds exactly those bytes (checked after every step).
//!
//! Where the mount legitimately differs from a local disk (see the design), the generator avoids
//! the case instead of weakening the model:
//! - The API has no directories: an empty directory cannot be made through it.
//! - A media that is a name prefix of another (`a` and `a/b`) is not a tree: the directory
//!   keeps the name and the file is shown beside it as `a~media` (tested on its own). API puts
//!   that would make one (under a file, or at a name that is a directory in the model, explicit
//!   ones included) are not generated. Through the mount such clashes are ordinary errors
//!   (ENOTDIR, EISDIR, EEXIST) and are generated often.
//! - Paged only: the API cannot be asked about one name without downloading it, so a media
//!   deleted elsewhere is shown until the next complete listing (an open of it gets 404), and a
//!   directory emptied elsewhere too; API deletes that would empty one are not generated, and
//!   after an API delete the tree is listed before the mount is used again (as `rm -r` and most
//!   tools list before they act).
//!
//! Operations are drawn from a small name space (4 file names, 2 directory names, at most 2
//! directories deep) so that they collide often, with bursts of API changes and short scenarios
//! that use a name through the mount right after it changed elsewhere (see [`scenario`]). The
//! RNG is a seeded xorshift and generation depends only on the seed: on failure the seed and
//! every step are printed. Replay or explore with
//! `MODEL_SEEDS=7,8 MODEL_PAGE_SIZE=1 MODEL_STEPS=400 cargo test --test model -- from_env
//! --nocapture` (`MODEL_TRACE=1` prints the steps of passing runs too; `MODEL_TARGET=core` runs
//! them against the core alone, `MODEL_TARGET=writeback` on a mount with `--writeback`).
//!
//! The same model runs against the core alone ([`Core`]), driven by path as the kernel drives
//! it (each component looked up, the last one too before a create, remove or rename, and the
//! checks the kernel makes itself), for many seeds in seconds; the mount runs fewer seeds and
//! adds what only it has: the kernel, the retries of the HTTP client, shell descriptors.
//!
//! It runs with `--writeback` too ([`writeback`]): the mount must show the model at once, the
//! store must hold it after a `sync`, after a `kill -9` of the daemon at random moments and
//! after outages of the server.

#[path = "../common/mod.rs"]
mod common;

mod core_alone;
mod generate;
mod model;
mod on_mount;
mod ops;
mod rng;
mod run;
mod tree;
mod writeback;

use core_alone::Core;
use run::{run_seed, run_steps, run_writeback_seed};

const FILE_NAMES: [&str; 4] = ["f", "g.txt", "h", "i.bin"];
const DIR_NAMES: [&str; 2] = ["d", "e"];
const STEPS: usize = 300;

/// Many seeds against the core alone, on a small and on a paged account: 100 of each here
/// (about a minute unoptimised); `MODEL_CORE_SEEDS=300 cargo test --release --test model
/// model_of_the_core` runs 300 of each in half a minute.
#[test]
fn model_of_the_core_with_many_seeds() {
    let seeds: u64 = std::env::var("MODEL_CORE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    for seed in 1000..1000 + seeds {
        for page_size in [1000, 1] {
            run_steps(&Core::new(page_size), seed, STEPS, page_size);
        }
    }
}

// Small accounts (one listing page): every lookup, directories included, asks the server.
#[test]
fn model_seed_1() {
    run_seed(1, STEPS, 1000);
}

#[test]
fn model_seed_2() {
    run_seed(2, STEPS, 1000);
}

#[test]
fn model_seed_3() {
    run_seed(3, STEPS, 1000);
}

#[test]
fn model_seed_4() {
    run_seed(4, STEPS, 1000);
}

#[test]
fn model_seed_9() {
    run_seed(9, STEPS, 1000);
}

#[test]
fn model_seed_10() {
    run_seed(10, STEPS, 1000);
}

// Listings of several pages (one media a page): known names are trusted until the next complete
// listing, and an open checks the file with one GET.
#[test]
fn model_paged_seed_5() {
    run_seed(5, STEPS, 1);
}

#[test]
fn model_paged_seed_6() {
    run_seed(6, STEPS, 1);
}

#[test]
fn model_paged_seed_7() {
    run_seed(7, STEPS, 1);
}

#[test]
fn model_paged_seed_8() {
    run_seed(8, STEPS, 1);
}

#[test]
fn model_paged_seed_11() {
    run_seed(11, STEPS, 1);
}

#[test]
fn model_paged_seed_12() {
    run_seed(12, STEPS, 1);
}

// With --writeback: kills of the daemon, outages of the server, the store checked after a sync
// (see `writeback`).
#[test]
fn model_writeback_seed_21() {
    run_writeback_seed(21, STEPS, 1000);
}

#[test]
fn model_writeback_seed_22() {
    run_writeback_seed(22, STEPS, 1000);
}

#[test]
fn model_writeback_paged_seed_23() {
    run_writeback_seed(23, STEPS, 1);
}

#[test]
fn model_writeback_paged_seed_24() {
    run_writeback_seed(24, STEPS, 1);
}

/// Seeds and a step count from the environment, to replay a failure or explore more.
#[test]
fn from_env() {
    let Ok(seeds) = std::env::var("MODEL_SEEDS") else {
        return;
    };
    let steps = std::env::var("MODEL_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(STEPS);
    let page_size = std::env::var("MODEL_PAGE_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let target = std::env::var("MODEL_TARGET").unwrap_or_default();
    let mut failed = Vec::new();
    for seed in seeds.split(',').filter_map(|s| s.trim().parse().ok()) {
        eprintln!("seed {seed}, {steps} steps, pages of {page_size}");
        let run = || match target.as_str() {
            "core" => run_steps(&Core::new(page_size), seed, steps, page_size),
            "writeback" => run_writeback_seed(seed, steps, page_size),
            _ => run_seed(seed, steps, page_size),
        };
        if std::panic::catch_unwind(run).is_err() {
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "failed seeds: {failed:?}");
}
