//! The model with `--writeback`: the same operations, on a mount whose closes, truncations and
//! unlinks are answered from the journal while the store follows in the background.
//!
//! The oracle is the mode's promise, not the store after every step: what the mount shows is the
//! model at once; the store holds exactly the model after a `sync` of the mount (which waits for
//! every change made before it), checked at random moments; and after a `kill -9` of the daemon
//! at a random moment between two steps, a new mount of the same journal shows the model at once
//! and the store holds it after a `sync`. Kills land while uploads and deletions run in the
//! background, so they interrupt those at random points (the kill inside a close is the kill
//! test's, in `tests/mount/writeback.rs`).
//!
//! Faults: outages of the server (every request answered 503) for a few steps. A call made
//! during one may fail (EIO: a lookup that had to list, a close that had to upload itself
//! because background uploads are failing) or succeed (answered from the journal); either way
//! it must do all it says or nothing: a success changes the model, a failure leaves it, and once
//! the server is back a `sync` must bring the store to exactly the model. Only operations
//! with no middle outcome run in an outage (no renames, whose copy may stay when the delete
//! fails, and no shell loops, each of whose commands closes the file).
//!
//! Changes made through the API come after a `sync`: a change elsewhere races with the
//! uploads still pending here, and the last to reach the server wins, as with any cache that
//! writes back (the README says another machine sees a file once it is uploaded).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bwmediafs::emulator::store::Store;
use bwmediafs::emulator::Emulator;
use parking_lot::Mutex;

use crate::common::*;
use crate::on_mount::{run_on_mount, Target};
use crate::ops::{Op, Outcome};
use crate::tree::{walk, Tree};

/// A write-back mount that can be killed and mounted again on the same journal.
pub(crate) struct WritebackMount {
    mount: Mutex<Mount>,
    /// The logs of the mounts killed before it, oldest first.
    killed_logs: Mutex<Vec<String>>,
    emulator: Arc<Emulator>,
    /// The state directory (the journal, the recovery folder), shared by the mounts in turn.
    state: tempfile::TempDir,
    env: Vec<(String, String)>,
}

const ARGS: [&str; 5] = ["--writeback", "--metadata-ttl", "0s", "--retry-time", "1s"];

impl WritebackMount {
    pub(crate) fn new(emulator: Emulator) -> WritebackMount {
        let emulator = Arc::new(emulator);
        let state = tempfile::tempdir().expect("state dir");
        let env = env_keeping(&emulator, state.path());
        let mount = Mount::with_env(emulator.clone(), &ARGS, &env);
        WritebackMount {
            mount: Mutex::new(mount),
            killed_logs: Mutex::new(Vec::new()),
            emulator,
            state,
            env,
        }
    }
}

/// Whether `op` has no middle outcome, so that it may run in an outage: it does all it says or
/// nothing.
pub(crate) fn whole_or_nothing(op: &Op) -> bool {
    matches!(
        op,
        Op::Create { .. }
            | Op::WriteAt { .. }
            | Op::Append { .. }
            | Op::Truncate { .. }
            | Op::Read { .. }
            | Op::Unlink { .. }
    )
}

/// The outcome of `op` run in an outage, against `want`, the model's: the same, or EIO (then
/// nothing changed: false). A read may also fail; any other difference is a failure of the test.
pub(crate) fn in_outage(got: &Outcome, want: &Outcome) -> Result<bool, String> {
    match (got, want) {
        (g, w) if g == w => Ok(true),
        (Err(libc::EIO), _) => Ok(false),
        _ => Err(String::new()),
    }
}

impl Target for WritebackMount {
    fn run(&self, op: &Op) -> Outcome {
        run_on_mount(&self.mount.lock(), op, true)
    }
    fn tree(&self) -> Result<Tree, String> {
        let root = self.mount.lock().mnt.clone();
        timed("walk the tree", move || walk(root)).map_err(|e| format!("walking: {e}"))
    }
    fn store(&self) -> &Store {
        self.emulator.store()
    }
    /// The logs of every mount in turn, in one file.
    fn log(&self) -> Option<PathBuf> {
        let mount = self.mount.lock();
        let mut text = self
            .killed_logs
            .lock()
            .join("--- kill -9, mounted again ---\n");
        if !text.is_empty() {
            text.push_str("--- kill -9, mounted again ---\n");
        }
        text.push_str(&mount.log_text());
        let all = self.state.path().join("all-mounts.log");
        std::fs::write(&all, text).ok()?;
        Some(all)
    }
    fn is_core(&self) -> bool {
        false
    }
    fn writes_back(&self) -> bool {
        true
    }
    fn settle(&self) {
        let root = self.mount.lock().mnt.clone();
        let synced = timed("sync the mount", move || {
            std::fs::File::open(&root).and_then(|d| d.sync_all())
        });
        if let Err(e) = synced {
            panic!("sync of the mount failed: {e}");
        }
    }
    fn outage(&self, down: bool) {
        match down {
            true => server_down(&self.emulator),
            false => server_up(&self.emulator),
        }
    }
    fn restart(&self) {
        let mut mount = self.mount.lock();
        mount.signal(libc::SIGKILL);
        if mount.wait_exit(Duration::from_secs(10)).is_none() {
            panic!("bwmediafs did not end after kill -9");
        }
        self.killed_logs.lock().push(mount.log_text());
        let next = Mount::with_env(self.emulator.clone(), &ARGS, &self.env);
        drop(std::mem::replace(&mut *mount, next));
    }
}
