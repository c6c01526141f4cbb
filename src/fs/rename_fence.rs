//! The fence between a directory rename and the changes of the server under it: each waits
//! for the other.
//!
//! A directory rename moves every media under it on the server (a copy and a delete each),
//! while the kernel locks only the two parents: a program may go on working inside the
//! directory, and another rename may be under way below it. So:
//! - a change of the server under a directory being renamed (an upload, a delete, a rename, a
//!   header change) waits until the rename ends, then acts under the new name, as if it came
//!   after it;
//! - a directory rename first waits for the changes already under way below it (and for other
//!   directory renames inside or around it), so that it moves what they left.
//!
//! Each side holds its mark only while it runs; neither waits holding any other lock, and a
//! directory rename, once marked, waits for nothing, so no wait is circular. A rename of a
//! directory can be kept waiting while changes below it keep coming; each of them is bounded
//! (`--retry-time` plus `--timeout`).

use parking_lot::{Condvar, Mutex};

use super::namespace::{Ino, Namespace};

/// What is under way: the directories being renamed, and the nodes under which the server is
/// being changed (one entry per change).
#[derive(Default)]
pub(super) struct RenameFence {
    state: Mutex<Marks>,
    changed: Condvar,
}

#[derive(Default)]
struct Marks {
    moving: Vec<Ino>,
    changing: Vec<Ino>,
}

/// A change of the server under some nodes, under way until dropped.
pub(super) struct Changing<'a> {
    fence: &'a RenameFence,
    under: Vec<Ino>,
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        let mut st = self.fence.state.lock();
        for ino in &self.under {
            if let Some(i) = st.changing.iter().position(|c| c == ino) {
                st.changing.swap_remove(i);
            }
        }
        self.fence.changed.notify_all();
    }
}

/// A directory rename under way, until dropped.
pub(super) struct Moving<'a> {
    fence: &'a RenameFence,
    dir: Ino,
}

impl Drop for Moving<'_> {
    fn drop(&mut self) {
        let mut st = self.fence.state.lock();
        if let Some(i) = st.moving.iter().position(|&d| d == self.dir) {
            st.moving.swap_remove(i);
        }
        self.fence.changed.notify_all();
    }
}

impl RenameFence {
    /// The directories being renamed now.
    pub(super) fn dirs(&self) -> Vec<Ino> {
        self.state.lock().moving.clone()
    }

    /// Wait until no directory holding any of `under` is being renamed, then mark a change of
    /// the server under them as under way until the guard is dropped.
    pub(super) fn change_under(&self, ns: &Mutex<Namespace>, under: &[Ino]) -> Changing<'_> {
        let mut st = self.state.lock();
        while st
            .moving
            .iter()
            .any(|&d| under.iter().any(|&i| ns.lock().is_within(i, d)))
        {
            self.changed.wait(&mut st);
        }
        st.changing.extend_from_slice(under);
        Changing {
            fence: self,
            under: under.to_vec(),
        }
    }

    /// Wait until nothing changes the server under `dir` and no directory rename is under way
    /// inside it or around it, then mark `dir` as being renamed until the guard is dropped.
    pub(super) fn begin_move(&self, ns: &Mutex<Namespace>, dir: Ino) -> Moving<'_> {
        let mut st = self.state.lock();
        loop {
            let busy = {
                let ns = ns.lock();
                st.changing.iter().any(|&c| ns.is_within(c, dir))
                    || st
                        .moving
                        .iter()
                        .any(|&d| ns.is_within(d, dir) || ns.is_within(dir, d))
            };
            if !busy {
                break;
            }
            self.changed.wait(&mut st);
        }
        st.moving.push(dir);
        Moving { fence: self, dir }
    }
}
