//! Generating operations.

use crate::model::{parent, under, Model};
use crate::ops::{AfterFailure, Op};
use crate::rng::Rng;
use crate::{DIR_NAMES, FILE_NAMES};

fn random_dir(rng: &mut Rng, min_depth: usize) -> String {
    let depth = match rng.below(10) {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
    .max(min_depth);
    (0..depth)
        .map(|_| *rng.pick(&DIR_NAMES))
        .collect::<Vec<_>>()
        .join("/")
}

/// A path in the name space: usually a file name (or a directory name) under a random directory.
fn random_path(rng: &mut Rng, dir_like: bool) -> String {
    let swap = rng.chance(15);
    let leaf = if dir_like != swap {
        *rng.pick(&DIR_NAMES)
    } else {
        *rng.pick(&FILE_NAMES)
    };
    let dir = random_dir(rng, 0);
    let dir = match dir.split_once('/') {
        Some((first, _)) if dir_like => first.to_string(), // directories at most 2 deep
        _ => dir,
    };
    if dir.is_empty() {
        leaf.to_string()
    } else {
        format!("{dir}/{leaf}")
    }
}

/// An existing file `percent`% of the time (when there is one), else a random path.
fn file_path(rng: &mut Rng, model: &Model, percent: usize) -> String {
    if !model.recent.is_empty() && rng.chance(20) {
        return rng.pick(&model.recent).clone();
    }
    if !model.media.is_empty() && rng.chance(percent) {
        let names: Vec<&String> = model.media.keys().collect();
        return rng.pick(&names).to_string();
    }
    random_path(rng, false)
}

fn dir_path(rng: &mut Rng, model: &Model, percent: usize) -> String {
    if !model.recent.is_empty() && rng.chance(20) {
        return rng.pick(&model.recent).clone();
    }
    let dirs: Vec<String> = model.dirs().into_iter().collect();
    if !dirs.is_empty() && rng.chance(percent) {
        return rng.pick(&dirs).clone();
    }
    random_path(rng, true)
}

/// A name in an existing directory (usually a free one).
fn new_name(rng: &mut Rng, model: &Model, dir_like: bool) -> String {
    let mut dirs: Vec<String> = model.dirs().into_iter().collect();
    dirs.push(String::new());
    let dir = rng.pick(&dirs).clone();
    let leaf = random_path(rng, dir_like);
    let leaf = leaf.rsplit('/').next().unwrap_or(&leaf);
    if dir.is_empty() {
        leaf.to_string()
    } else {
        format!("{dir}/{leaf}")
    }
}

fn length(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0 => 0,
        1..=6 => rng.below(3000),
        7 | 8 => 3000 + rng.below(20_000),
        _ => 60_000 + rng.below(90_000),
    }
}

/// The next operation; only an API one when `api_only` (bursts of changes made elsewhere, which
/// the mount sees all at once at its next request).
pub(crate) fn generate(
    rng: &mut Rng,
    model: &Model,
    api_only: bool,
    paged: bool,
    core: bool,
) -> Op {
    loop {
        let seed = rng.next() % 1_000_000;
        let choice = if api_only {
            84 + rng.below(16)
        } else {
            rng.below(110)
        };
        let op = match choice {
            0..=9 => Op::Create {
                path: if rng.chance(50) {
                    new_name(rng, model, false)
                } else {
                    file_path(rng, model, 40)
                },
                len: length(rng),
                seed,
            },
            10..=17 => {
                let path = file_path(rng, model, 85);
                let size = model.media.get(&path).map_or(0, Vec::len);
                Op::WriteAt {
                    offset: rng.below(size + 5000) as u64,
                    path,
                    len: 1 + rng.below(4000),
                    seed,
                }
            }
            18..=22 => Op::Append {
                path: file_path(rng, model, 85),
                len: rng.below(5000),
                seed,
            },
            23..=29 => {
                let path = file_path(rng, model, 85);
                let size = model.media.get(&path).map_or(0, Vec::len);
                let len = match rng.below(4) {
                    0 => 0,
                    1 => rng.below(size + 1),
                    2 => size,
                    _ => size + rng.below(10_000),
                };
                Op::Truncate {
                    path,
                    len: len as u64,
                    by_path: rng.chance(50),
                }
            }
            30..=34 => Op::Read {
                path: file_path(rng, model, 75),
            },
            35..=37 => Op::List {
                path: if rng.chance(20) {
                    String::new()
                } else {
                    dir_path(rng, model, 80)
                },
            },
            38..=53 => {
                let dir = rng.chance(40);
                let from = if dir {
                    dir_path(rng, model, 90)
                } else {
                    file_path(rng, model, 90)
                };
                let to = match rng.below(20) {
                    0..=7 => new_name(rng, model, dir),
                    8..=12 => file_path(rng, model, 80),
                    13..=16 => dir_path(rng, model, 70),
                    _ => random_path(rng, dir),
                };
                Op::Rename { from, to }
            }
            54..=60 => Op::Unlink {
                path: file_path(rng, model, 75),
            },
            61..=68 => Op::Mkdir {
                path: if rng.chance(60) {
                    new_name(rng, model, true)
                } else {
                    dir_path(rng, model, 20)
                },
            },
            69..=75 => Op::Rmdir {
                path: dir_path(rng, model, 80),
            },
            76..=91 => {
                // Sometimes under a name that was a file (a file replaced by a directory).
                let gone: Vec<&String> = model
                    .sizes
                    .keys()
                    .filter(|n| !model.media.contains_key(*n))
                    .collect();
                let name = if !gone.is_empty() && rng.chance(25) {
                    let leaf = *rng.pick(&FILE_NAMES);
                    format!("{}/{leaf}", rng.pick(&gone))
                } else {
                    file_path(rng, model, 40)
                };
                match api_put(rng, model, name) {
                    Some(op) => op,
                    None => continue,
                }
            }
            92..=99 => {
                let name = file_path(rng, model, 90);
                if !api_delete_ok(model, &name, paged) {
                    continue;
                }
                Op::ApiDelete { name }
            }
            // What programs do around faults and the shell's descriptors.
            _ => {
                let path = if rng.chance(40) {
                    new_name(rng, model, false)
                } else {
                    file_path(rng, model, 70)
                };
                let len = length(rng);
                match choice {
                    100..=102 => Op::FailedFsync {
                        path,
                        len,
                        seed,
                        then: *rng.pick(&[
                            AfterFailure::FsyncAgain,
                            AfterFailure::Close,
                            AfterFailure::CloseWhileFailing,
                        ]),
                    },
                    // The core alone has no retries (they are the HTTP client's) and no shell.
                    103 | 106..=108 if core => continue,
                    103 => Op::Outage { path, len, seed },
                    104..=105 => Op::DupWrite { path, len, seed },
                    106..=108 => Op::ShellLoop {
                        path,
                        n: 1 + rng.below(12),
                    },
                    _ => Op::Oversize { path },
                }
            }
        };
        if too_deep(model, &op) {
            continue;
        }
        return op;
    }
}

/// An API put of `name` (often of the size it has: an overwrite only an open's check can
/// see), if the mount can show it as the model does.
fn api_put(rng: &mut Rng, model: &Model, name: String) -> Option<Op> {
    if !model.api_put_ok(&name) {
        return None;
    }
    let len = match model.media.get(&name) {
        Some(body) if rng.chance(40) => body.len(),
        _ => length(rng),
    };
    let seed = rng.next() % 1_000_000;
    Some(Op::ApiPut { name, len, seed })
}

/// Paged: a directory emptied elsewhere stays until the next complete listing (a large
/// account cannot ask about one directory), so API deletes that would empty one are avoided.
fn api_delete_ok(model: &Model, name: &str, paged: bool) -> bool {
    if !paged {
        return true;
    }
    let mut after = model.clone();
    after.media.remove(name);
    after.dirs() == model.dirs()
}

/// Whether `op` would take the tree deeper than 2 directories (renames and names under old
/// files grow it).
fn too_deep(model: &Model, op: &Op) -> bool {
    let mut after = model.clone();
    let _ = after.apply(op);
    let depth = |p: &String| p.split('/').count();
    after.media.keys().any(|m| depth(m) > 3) || after.explicit.iter().any(|e| depth(e) > 2)
}

/// A short plan of steps run back to back (no tree check in between), aimed at what a random
/// sequence rarely hits: a name changed elsewhere and used through the mount at once, before
/// anything else lists the tree (a directory emptied elsewhere, media added under a directory,
/// a file replaced by a directory and the reverse, a change behind a listing a lookup paused),
/// and `rm -r` of a directory.
pub(crate) fn scenario(rng: &mut Rng, model: &Model, paged: bool) -> (&'static str, Vec<Op>) {
    let mut sim = model.clone();
    let mut plan = Vec::new();
    let mut push = |sim: &mut Model, op: Op| {
        if !too_deep(sim, &op) {
            let _ = sim.apply(&op);
            plan.push(op);
        }
    };
    let dirs: Vec<String> = model.dirs().into_iter().collect();
    if dirs.is_empty() || model.media.is_empty() {
        return ("", plan);
    }
    let files: Vec<String> = model.media.keys().cloned().collect();
    let explicit: Vec<String> = model.explicit.iter().cloned().collect();
    let with_media: Vec<String> = dirs
        .iter()
        .filter(|d| files.iter().any(|f| under(f, d)))
        .cloned()
        .collect();
    // A directory, preferably one of `preferred`.
    let pick_dir = |rng: &mut Rng, preferred: &[String]| {
        if !preferred.is_empty() && rng.chance(80) {
            rng.pick(preferred).clone()
        } else {
            rng.pick(&dirs).clone()
        }
    };
    // Another directory that a rename between it and `d` may move.
    let unrelated = |rng: &mut Rng, d: &str| {
        let others: Vec<&String> = dirs
            .iter()
            .filter(|o| *o != d && !under(o, d) && !under(d, o))
            .collect();
        if others.is_empty() {
            random_path(rng, true)
        } else {
            rng.pick(&others).to_string()
        }
    };
    let leaf = *rng.pick(&FILE_NAMES);
    let seed = rng.next() % 1_000_000;
    let what = match rng.below(if paged { 5 } else { 6 }) {
        0 => {
            // A directory emptied elsewhere, then used. (Paged: only explicit ones stay.)
            let full: Vec<String> = if paged {
                with_media
                    .iter()
                    .filter(|d| explicit.contains(d))
                    .cloned()
                    .collect()
            } else {
                with_media.clone()
            };
            let d = if full.is_empty() || rng.chance(30) {
                // Set one up: a new directory holding a media.
                let d = new_name(rng, &sim, true);
                push(&mut sim, Op::Mkdir { path: d.clone() });
                if let Some(op) = api_put(rng, &sim, format!("{d}/{leaf}")) {
                    push(&mut sim, op);
                }
                d
            } else {
                pick_dir(rng, &full)
            };
            push(&mut sim, Op::List { path: d.clone() });
            let names: Vec<String> = sim.media.keys().filter(|m| under(m, &d)).cloned().collect();
            for name in names {
                if api_delete_ok(&sim, &name, paged) {
                    push(&mut sim, Op::ApiDelete { name });
                }
            }
            let other = unrelated(rng, &d);
            let op = match rng.below(7) {
                0 | 1 => Op::Rmdir { path: d },
                2 => Op::Mkdir { path: d },
                3 => Op::Create {
                    path: d,
                    len: 10,
                    seed,
                },
                4 => Op::Rename { from: other, to: d },
                5 => Op::Create {
                    path: format!("{d}/{leaf}"),
                    len: 10,
                    seed,
                },
                _ => Op::Rename { from: d, to: other },
            };
            push(&mut sim, op);
            "a directory emptied elsewhere, then used"
        }
        1 => {
            // Media added elsewhere under a directory, then the directory used.
            let d = pick_dir(rng, &explicit);
            push(&mut sim, Op::List { path: d.clone() });
            if let Some(op) = api_put(rng, &sim, format!("{d}/{leaf}")) {
                push(&mut sim, op);
            }
            let other = unrelated(rng, &d);
            let op = match rng.below(5) {
                0 => Op::Rmdir { path: d },
                1 | 2 => Op::Rename { from: other, to: d },
                3 => Op::Rename { from: d, to: other },
                _ => Op::List { path: d },
            };
            push(&mut sim, op);
            "media added elsewhere under a directory, then the directory used"
        }
        2 => {
            // A file replaced by a directory elsewhere.
            let f = rng.pick(&files).clone();
            if !api_delete_ok(&sim, &f, paged) {
                return ("", plan);
            }
            push(&mut sim, Op::ApiDelete { name: f.clone() });
            if let Some(op) = api_put(rng, &sim, format!("{f}/{leaf}")) {
                push(&mut sim, op);
            }
            let path = parent(&f).to_string();
            push(&mut sim, Op::List { path });
            let path = format!("{f}/{leaf}");
            push(&mut sim, Op::Read { path });
            "a file replaced by a directory elsewhere"
        }
        3 => {
            // A lookup of a directory not seen yet lists only until it shows up (on a large
            // account); a media put meanwhile before that point must show all the same.
            let d = random_path(rng, true);
            let Some(op) = api_put(rng, &sim, format!("{d}/{leaf}")) else {
                return ("", plan);
            };
            push(&mut sim, op);
            let path = format!("{d}/{leaf}");
            push(&mut sim, Op::Read { path });
            let name = random_path(rng, false);
            if let Some(op) = api_put(rng, &sim, name.clone()) {
                push(&mut sim, op);
            }
            let path = parent(&name).to_string();
            push(&mut sim, Op::List { path });
            "a listing paused by a lookup, then a change elsewhere"
        }
        5 => {
            // A directory replaced by a file elsewhere (not paged: it empties a directory).
            let d = pick_dir(rng, &with_media);
            for name in files.iter().filter(|m| under(m, &d)) {
                push(&mut sim, Op::ApiDelete { name: name.clone() });
            }
            if let Some(op) = api_put(rng, &sim, d.clone()) {
                push(&mut sim, op);
            }
            let path = parent(&d).to_string();
            push(&mut sim, Op::List { path });
            push(&mut sim, Op::Read { path: d });
            "a directory replaced by a file elsewhere"
        }
        _ => {
            // rm -r: list, remove the files, then the directories deepest first; list the parent.
            let d = pick_dir(rng, &with_media);
            push(&mut sim, Op::List { path: d.clone() });
            for path in files.iter().filter(|m| under(m, &d)) {
                let path = path.clone();
                push(&mut sim, Op::Unlink { path });
            }
            let mut below: Vec<&String> = dirs.iter().filter(|x| under(x, &d)).collect();
            below.sort_by_key(|x| std::cmp::Reverse(x.len()));
            for path in below {
                let path = path.clone();
                push(&mut sim, Op::Rmdir { path });
            }
            push(&mut sim, Op::Rmdir { path: d.clone() });
            let path = parent(&d).to_string();
            push(&mut sim, Op::List { path });
            "rm -r"
        }
    };
    (what, plan)
}
