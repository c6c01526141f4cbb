//! The test: running the steps of a seed against a target.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::common::*;
use crate::generate::{generate, scenario};
use crate::model::{parent, Kind, Model};
use crate::on_mount::{run_api, Target};
use crate::ops::{show, Op};
use crate::rng::Rng;
use crate::tree::{check_store, check_tree, differ};

/// Prints the seed and the steps when the test fails (dropped while panicking).
struct Trace {
    pub(crate) seed: u64,
    pub(crate) page_size: usize,
    pub(crate) steps: Vec<String>,
    pub(crate) log: Option<PathBuf>,
}

impl Drop for Trace {
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
            .log
            .as_ref()
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
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
            if self.log.is_none() {
                " MODEL_TARGET=core"
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

/// Run `steps` random steps from `seed` against `target`, whose store lists `page_size` media a
/// page.
pub(crate) fn run_steps(target: &dyn Target, seed: u64, steps: usize, page_size: usize) {
    let paged = page_size < 10;
    let mut trace = Trace {
        seed,
        page_size,
        steps: Vec::new(),
        log: target.log(),
    };
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
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
        if plan.is_empty() && rng.chance(15) {
            let (what, ops) = scenario(&mut rng, &model, paged);
            if !ops.is_empty() {
                trace.steps.push(format!("      (scenario: {what})"));
                plan.extend(ops);
            }
        }
        let op = match plan.pop_front() {
            Some(op) => op,
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
        trace.steps.push(format!("{step:4}  {op}"));
        let dir_op = matches!(&op, Op::Rename { from, .. } if model.kind(from) == Kind::Dir);
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
        if got != want {
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
        if let Err(e) = check_store(target, &model) {
            panic!("step {step}: after {op}: {e}");
        }
        if let Op::ApiDelete { name } = &op {
            deleted_in.insert(parent(name).to_string());
        }
        if (plan.is_empty() && rng.chance(35)) || step + 1 == steps {
            check(&mut trace, &model, &format!("step {step}: after {op}"), "");
            deleted_in.clear();
        }
    }
    eprintln!("seed {seed}: successes and {{errno: count}} of each operation: {tally:?}");
}
