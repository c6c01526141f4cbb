//! The test: running the steps of a seed against a target.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;
use crate::generate::{generate, scenario};
use crate::model::{parent, Kind, Model};
use crate::on_mount::{run_api, Target};
use crate::ops::{show, Op};
use crate::rng::Rng;
use crate::tree::{check_store, check_tree, differ};
use crate::writeback::{in_outage, whole_or_nothing, WritebackMount};

/// Prints the seed and the steps when the test fails (dropped while panicking).
struct Trace<'a> {
    seed: u64,
    page_size: usize,
    steps: Vec<String>,
    target: &'a dyn Target,
}

impl Drop for Trace<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            if std::env::var_os("MODEL_TRACE").is_some() {
                eprintln!("=== seed {}, pages of {} ===", self.seed, self.page_size);
                for s in &self.steps {
                    eprintln!("{s}");
                }
            }
            return;
        }
        eprintln!(
            "\n=== model test failed: seed {}, pages of {} ===",
            self.seed, self.page_size
        );
        for s in &self.steps {
            eprintln!("{s}");
        }
        let log = self
            .target
            .log()
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default();
        let lines = std::env::var("MODEL_LOG_LINES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(60);
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        eprintln!("--- last lines of the bwmediafs log ---");
        for l in tail.iter().rev() {
            eprintln!("{l}");
        }
        eprintln!(
            "=== replay: MODEL_SEEDS={} MODEL_PAGE_SIZE={} MODEL_STEPS={}{} cargo test --test \
             model -- from_env --nocapture ===",
            self.seed,
            self.page_size,
            self.steps.iter().filter(|s| !s.contains("(check")).count(),
            if self.target.is_core() {
                " MODEL_TARGET=core"
            } else if self.target.writes_back() {
                " MODEL_TARGET=writeback"
            } else {
                ""
            },
        );
    }
}

/// Run `steps` random steps from `seed` against an emulator that lists `page_size` media a page
/// (small: a large account, where the core trusts known names until the next complete listing
/// and checks a file with a GET when it is opened).
pub(crate) fn run_seed(seed: u64, steps: usize, page_size: usize) {
    let mut config = emulator_config();
    config.store.page_size = page_size;
    let m = Mount::with(
        start_emulator(config),
        &["--metadata-ttl", "0s", "--retry-time", "1s"],
    );
    run_steps(&m, seed, steps, page_size);
}

/// [`run_seed`] on a mount with `--writeback` (see [`crate::writeback`]).
pub(crate) fn run_writeback_seed(seed: u64, steps: usize, page_size: usize) {
    let mut config = emulator_config();
    config.store.page_size = page_size;
    let m = WritebackMount::new(start_emulator(config));
    run_steps(&m, seed, steps, page_size);
}

/// Run `steps` random steps from `seed` against `target`, whose store lists `page_size` media a
/// page.
pub(crate) fn run_steps(target: &dyn Target, seed: u64, steps: usize, page_size: usize) {
    let paged = page_size < 10;
    let mut trace = Trace {
        seed,
        page_size,
        steps: Vec::new(),
        target,
    };
    let mut rng = Rng::new(seed);
    let writeback = target.writes_back();
    let mut model = Model {
        writeback,
        ..Model::default()
    };
    // With write-back: the steps the server is still down for (see `crate::writeback`).
    let mut outage = 0;
    let settle = |trace: &mut Trace, model: &Model, after: &str| {
        trace.steps.push("      (sync the mount)".into());
        target.settle();
        if let Err(e) = check_store(target, model) {
            panic!("{after}, once synced: {e}");
        }
    };
    let mut api_only = false;
    // Paged: directories where a media was deleted through the API since the tree was listed.
    // A large account shows such a deletion at its next listing (or at an open, which gets
    // 404), so the tree is listed before the mount is used again.
    let mut deleted_in = BTreeSet::new();
    // How many of each operation succeeded, and which errors the others had.
    let mut tally: BTreeMap<String, (usize, BTreeMap<i32, usize>)> = BTreeMap::new();
    let check = |trace: &mut Trace, model: &Model, after: &str, why: &str| {
        trace
            .steps
            .push(format!("      (check the whole tree{why})"));
        if let Err(e) = check_tree(target, model) {
            panic!("{after}, the tree differs:\n{e}");
        }
    };
    let mut plan = std::collections::VecDeque::new();
    for step in 0..steps {
        if writeback && outage == 0 && plan.is_empty() && deleted_in.is_empty() && rng.chance(3) {
            outage = 2 + rng.below(5);
            trace
                .steps
                .push(format!("      (the server is down for {outage} steps)"));
            target.outage(true);
        }
        if outage == 0 && plan.is_empty() && rng.chance(15) {
            let (what, ops) = scenario(&mut rng, &model, paged);
            if !ops.is_empty() {
                trace.steps.push(format!("      (scenario: {what})"));
                plan.extend(ops);
            }
        }
        let op = match plan.pop_front() {
            Some(op) => op,
            None if outage > 0 => loop {
                let op = generate(&mut rng, &model, false, paged, false);
                if whole_or_nothing(&op) {
                    break op;
                }
            },
            None => generate(&mut rng, &model, api_only, paged, target.is_core()),
        };
        api_only = matches!(op, Op::ApiPut { .. } | Op::ApiDelete { .. }) && rng.chance(35);
        let api_op = matches!(op, Op::ApiPut { .. } | Op::ApiDelete { .. });
        if paged && !api_op && !deleted_in.is_empty() {
            check(
                &mut trace,
                &model,
                &format!("before step {step}"),
                ", which a deletion elsewhere waits for on a large account",
            );
            deleted_in.clear();
        }
        if writeback && (api_op || matches!(op, Op::FailedFsync { .. })) {
            // A change elsewhere comes after what is pending here (see `crate::writeback`), and
            // a fault made on purpose finds no background upload to fail.
            settle(&mut trace, &model, &format!("before step {step}"));
        }
        trace.steps.push(format!("{step:4}  {op}"));
        let dir_op = matches!(&op, Op::Rename { from, .. } if model.kind(from) == Kind::Dir);
        let before = (outage > 0).then(|| model.clone());
        let want = model.apply(&op);
        let kind = format!("{op}").split(' ').next().unwrap_or("").to_string()
            + if dir_op { "-dir" } else { "" };
        let e = tally.entry(kind).or_default();
        match &want {
            Ok(_) => e.0 += 1,
            Err(errno) => *e.1.entry(*errno).or_default() += 1,
        }
        let got = match &op {
            Op::ApiPut { .. } | Op::ApiDelete { .. } => run_api(target.store(), &op),
            _ => target.run(&op),
        };
        if let Some(before) = before {
            match in_outage(&got, &want) {
                Ok(true) => {}
                Ok(false) => model = before,
                Err(_) => panic!(
                    "step {step}: {op}, with the server down: the mount answered {}, the model {} \
                     (or EIO)",
                    show(&got),
                    show(&want)
                ),
            }
        } else if got != want {
            let detail = match (&op, &got, &want) {
                (Op::List { .. }, Ok(Some(g)), Ok(Some(w))) => format!(
                    "({:?} instead of {:?})",
                    String::from_utf8_lossy(g),
                    String::from_utf8_lossy(w)
                ),
                (_, Ok(Some(g)), Ok(Some(w))) => differ(g, w),
                _ => String::new(),
            };
            panic!(
                "step {step}: {op}: the mount answered {}, the model {} {detail}",
                show(&got),
                show(&want)
            );
        }
        let after = format!("step {step}: after {op}");
        if !writeback {
            if let Err(e) = check_store(target, &model) {
                panic!("{after}: {e}");
            }
        } else if outage > 0 {
            outage -= 1;
            if outage == 0 {
                trace.steps.push("      (the server is back)".into());
                target.outage(false);
                settle(&mut trace, &model, &after);
                check(&mut trace, &model, &after, " after the outage");
            }
            continue;
        } else if rng.chance(4) {
            trace
                .steps
                .push("      (kill -9 the daemon, mount again)".into());
            target.restart();
            // Empty directories live in the mount's memory only (the API has none).
            model.explicit.clear();
            check(&mut trace, &model, &after, " at once from the journal");
            if rng.chance(50) {
                settle(&mut trace, &model, &after);
            }
        } else if rng.chance(10) {
            settle(&mut trace, &model, &after);
        }
        if let Op::ApiDelete { name } = &op {
            deleted_in.insert(parent(name).to_string());
        }
        if (plan.is_empty() && rng.chance(35)) || step + 1 == steps {
            check(&mut trace, &model, &after, "");
            deleted_in.clear();
        }
    }
    if writeback {
        if outage > 0 {
            target.outage(false);
        }
        settle(&mut trace, &model, "at the end");
        check(&mut trace, &model, "at the end", "");
    }
    eprintln!("seed {seed}: successes and {{errno: count}} of each operation: {tally:?}");
}
