//! The scenarios both test binaries run, over any [`Comm`]: `tests/threads.rs` with
//! [`optim_dist::ThreadComm`] groups of 1 to 4 threads, `tests/mpi.rs` under `mpiexec -n
//! 1..4`. Each returns `Err(what differs)` instead of panicking, so that under MPI every
//! rank reports and none is left waiting in a collective.
//!
//! The expectation is always the unsharded optimizer (one per rank, run locally) stepping
//! the mean gradient `ḡ = ((g_0 + g_1) + …) / N`, the ranks' gradients added in rank order.
#![allow(dead_code)]

use ndarray::{Array2, ArrayD};
use optim_core::{checkpoint, Grads, NonFinitePolicy, Optimizer, OptimizerState, Params};
use optim_dist::{Comm, Sharded, SHARD_STATE};
use optim_test_support::{config, wiggly, zoo_names};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

pub type Outcome = Result<(), String>;

/// Makes a rank's gradients bad in one way.
type Spoil = Box<dyn Fn(&mut Grads<f32>)>;

/// Shapes that split unevenly over 2, 3 and 4 ranks (63 elements), with a matrix for
/// Muon's route, a vector, a 3-D tensor and a scalar.
pub const SHAPES: &[(&str, &[usize])] = &[
    ("emb", &[5, 4]),
    ("fc.weight", &[4, 6]),
    ("fc.bias", &[6]),
    ("conv", &[2, 3, 2]),
    ("gain", &[]),
];

pub fn params() -> Params<f32> {
    let mut p = Params::new();
    for (i, (name, shape)) in SHAPES.iter().enumerate() {
        p.insert(*name, wiggly::<f32>(1000 + i as u64, shape) * 0.5)
            .unwrap();
    }
    p
}

/// Rank `rank`'s gradient at step `step`; `emb` has none at step 1 (it must be skipped
/// on every rank alike).
pub fn grads(step: usize, rank: usize) -> Grads<f32> {
    let mut g = Grads::new();
    for (i, (name, shape)) in SHAPES.iter().enumerate() {
        if *name == "emb" && step == 1 {
            continue;
        }
        g.insert(
            *name,
            wiggly::<f32>((step * 64 + rank * 8 + i) as u64, shape),
        );
    }
    g
}

/// `((g_0 + g_1) + …) / n`, as the sharded step computes it.
pub fn mean_grads(step: usize, n: usize) -> Grads<f32> {
    let mut out = Grads::new();
    let first = grads(step, 0);
    for (name, _) in first.iter() {
        let mut sum: Option<ArrayD<f32>> = None;
        for r in 0..n {
            let g = optim_test_support::dense(&grads(step, r), name);
            sum = Some(match sum {
                None => g,
                Some(s) => s + &g,
            });
        }
        let s = sum.unwrap();
        out.insert(name, s.mapv(|x| x / n as f32));
    }
    out
}

/// Every registry entry's config: the zoo's, and a partition of its own.
pub fn configs() -> Vec<(String, Value)> {
    let mut all: Vec<(String, Value)> = zoo_names()
        .into_iter()
        .map(|n| (n.to_string(), config(n)))
        .collect();
    all.push((
        "partition".into(),
        json!({"optimizer": "partition", "routes": [
            {"select": {"ndim": 2}, "optimizer": {"optimizer": "nag", "lr": 0.05}},
            {"optimizer": {"optimizer": "lamb", "lr": 0.01}},
        ]}),
    ));
    all
}

pub fn build(config: &Value) -> Box<dyn Optimizer<f32>> {
    optim_zoo::build::<f32>(config).unwrap_or_else(|e| panic!("{config}: {e}"))
}

/// Whether two runs of `config` must agree bit for bit: all but those summing over every
/// parameter, whose sums the ranks add in another order.
pub fn exact_for(name: &str) -> bool {
    name != "prodigy"
}

fn compare(what: &str, got: &Params<f32>, want: &Params<f32>, exact: bool) -> Outcome {
    for ((name, a), (_, b)) in got.iter().zip(want.iter()) {
        for (i, (&x, &y)) in a.iter().zip(b.iter()).enumerate() {
            let same = if exact {
                x.to_bits() == y.to_bits()
            } else {
                (x - y).abs() <= 1e-4 * (1.0 + y.abs())
            };
            if !same {
                return Err(format!("{what}: `{name}`[{i}] = {x:e}, unsharded {y:e}"));
            }
        }
    }
    Ok(())
}

/// Same state, parameters in any order (tensors bit for bit when `exact`).
fn compare_state(what: &str, got: &OptimizerState, want: &OptimizerState, exact: bool) -> Outcome {
    let sorted = |s: &OptimizerState| {
        let mut s = s.clone();
        sort_state(&mut s);
        s
    };
    let (g, w) = (sorted(got), sorted(want));
    if exact {
        if g != w {
            return Err(format!(
                "{what}: consolidated state differs from the unsharded\n got {g:?}\nwant {w:?}"
            ));
        }
    } else if g.params.len() != w.params.len() || g.optimizer != w.optimizer {
        return Err(format!("{what}: consolidated state has other parameters"));
    }
    Ok(())
}

fn sort_state(s: &mut OptimizerState) {
    s.params.sort_by(|a, b| a.param.cmp(&b.param));
    if let Some(i) = s.inner.as_deref_mut() {
        sort_state(i);
    }
    for r in &mut s.routes {
        sort_state(&mut r.state);
    }
}

/// Sharded step == unsharded step on the mean gradient, for every registry optimizer:
/// parameters after 3 steps, every step count, and the consolidated state.
pub fn equivalence(comm: &Arc<dyn Comm>, exact_sums: bool) -> Outcome {
    let n = comm.size();
    for (name, cfg) in configs() {
        let exact = exact_sums && exact_for(&name);
        let mut sharded =
            Sharded::new(build(&cfg), Arc::clone(comm)).map_err(|e| format!("{name}: {e}"))?;
        // Adam is element-wise: its parameters are split (a stale build of the macro
        // would shard it whole and test less).
        if name == "adam" && sharded.rule() != optim_dist::ShardRule::Flat {
            return Err("adam is not sharded flat".into());
        }
        let mut reference = build(&cfg);
        let (mut p, mut q) = (params(), params());
        for step in 0..3 {
            sharded
                .step(&mut p, &grads(step, comm.rank()))
                .map_err(|e| format!("{name} step {step}: {e}"))?;
            reference.step(&mut q, &mean_grads(step, n)).unwrap();
        }
        compare(&format!("{name} on {n} ranks"), &p, &q, exact)?;
        for (pname, _) in SHAPES {
            if sharded.step_count(pname) != reference.step_count(pname) {
                return Err(format!("{name}: step count of {pname} differs"));
            }
        }
        let merged = sharded
            .consolidated_state()
            .map_err(|e| format!("{name}: {e}"))?;
        compare_state(
            &format!("{name} on {n} ranks"),
            &merged,
            &reference.export_state(),
            exact,
        )?;
        // Evaluation weights (schedule-free, ASGD) come out of the shards too.
        let got = sharded
            .eval_params(&p)
            .map_err(|e| format!("{name}: {e}"))?;
        let want = reference.eval_params(&q).unwrap();
        compare(&format!("{name} eval weights"), &got, &want, exact)?;
    }
    Ok(())
}

/// Clipping by the global norm of the mean gradient == clipping it unsharded.
pub fn clipping(comm: &Arc<dyn Comm>, exact_sums: bool) -> Outcome {
    let n = comm.size();
    let cfg = json!({"optimizer": "sgd", "lr": 0.1});
    let mut sharded = Sharded::new(build(&cfg), Arc::clone(comm)).map_err(|e| e.to_string())?;
    sharded
        .clip_grad_norm(Some(0.5))
        .map_err(|e| e.to_string())?;
    let mut reference = build(&cfg);
    let (mut p, mut q) = (params(), params());
    for step in 0..3 {
        sharded
            .step(&mut p, &grads(step, comm.rank()))
            .map_err(|e| e.to_string())?;
        let mut g = mean_grads(step, n);
        let norm = optim_core::clip::clip_grad_norm(&mut g, 0.5).unwrap();
        let got = sharded.last_grad_norm().unwrap_or(f64::NAN);
        // The mean gradient itself may differ in its last bit when the sums are not
        // added in rank order.
        let tolerance = if exact_sums { 1e-12 } else { 1e-6 };
        if (got - norm).abs() > tolerance * norm {
            return Err(format!("clip: global norm {got}, unsharded {norm}"));
        }
        reference.step(&mut q, &g).unwrap();
    }
    compare("sgd clipped to 0.5", &p, &q, false)
}

/// A sparse-row gradient (rows differ per rank) averages as its dense equivalent.
pub fn sparse_rows(comm: &Arc<dyn Comm>, exact_sums: bool) -> Outcome {
    let n = comm.size();
    for name in ["adam", "lazyadam"] {
        let cfg = config(name);
        let mut sharded = Sharded::new(build(&cfg), Arc::clone(comm)).map_err(|e| e.to_string())?;
        let mut reference = build(&cfg);
        let (mut p, mut q) = (params(), params());
        let rows_of = |r: usize| vec![r % 5, (r + 2) % 5, r % 5];
        let mut local = grads(0, comm.rank());
        let values = |r: usize| {
            Array2::from_shape_vec(
                (3, 4),
                wiggly::<f32>(77 + r as u64, &[12])
                    .into_raw_vec_and_offset()
                    .0,
            )
            .unwrap()
        };
        local.insert_rows("emb", rows_of(comm.rank()), values(comm.rank()));
        let mut mean = mean_grads(0, n);
        let mut dense: Option<ArrayD<f32>> = None;
        for r in 0..n {
            // Repeated rows add up, as the optimizer sums them.
            let mut d = ArrayD::<f32>::zeros(vec![5, 4]);
            for (k, &row) in rows_of(r).iter().enumerate() {
                for j in 0..4 {
                    d[[row, j]] += values(r)[[k, j]];
                }
            }
            dense = Some(match dense {
                None => d,
                Some(s) => s + &d,
            });
        }
        mean.insert("emb", dense.unwrap().mapv(|x| x / n as f32));
        sharded
            .step(&mut p, &local)
            .map_err(|e| format!("{name}: {e}"))?;
        reference.step(&mut q, &mean).unwrap();
        compare(&format!("{name} with sparse rows"), &p, &q, exact_sums)?;
    }
    Ok(())
}

/// A bad gradient on the last rank: every rank fails with the same error and nothing
/// changes on any (parameters, state, step counts); the next good step works.
pub fn error_on_one_rank(comm: &Arc<dyn Comm>) -> Outcome {
    let n = comm.size();
    let last = n - 1;
    for cfg in [config("adam"), config("lamb"), config("prodigy")] {
        let mut sharded = Sharded::new(build(&cfg), Arc::clone(comm)).map_err(|e| e.to_string())?;
        let mut p = params();
        sharded
            .step(&mut p, &grads(0, comm.rank()))
            .map_err(|e| e.to_string())?;
        let before = (p.clone(), sharded.export_state());
        let bad_cases: Vec<(&str, Spoil)> = vec![
            (
                "shape",
                Box::new(|g| g.insert("fc.bias", ArrayD::<f32>::zeros(vec![5]))),
            ),
            (
                "name",
                Box::new(|g| g.insert("fc.wieght", ArrayD::<f32>::zeros(vec![4, 6]))),
            ),
            (
                "missing",
                Box::new(|g| {
                    let mut h = Grads::new();
                    for (name, _) in g.iter().filter(|(n, _)| *n != "conv") {
                        h.insert(name, optim_test_support::dense(g, name));
                    }
                    *g = h;
                }),
            ),
        ];
        // On one rank a missing gradient only skips the parameter.
        let bad_cases = &bad_cases[..if n == 1 { 2 } else { 3 }];
        for (what, spoil) in bad_cases {
            let mut g = grads(1, comm.rank());
            if comm.rank() == last {
                spoil(&mut g);
            }
            let err = match sharded.step(&mut p, &g) {
                Ok(()) => return Err(format!("{cfg}: a bad {what} on rank {last} was accepted")),
                Err(e) => e.to_string(),
            };
            same_everywhere(comm, &err)?;
            if !err.contains(&format!("rank {last} of {n}")) {
                return Err(format!(
                    "{what}: the error does not name rank {last}: {err}"
                ));
            }
            if p.iter().zip(before.0.iter()).any(|((_, a), (_, b))| a != b)
                || sharded.export_state() != before.1
            {
                return Err(format!("{cfg}: a failed step ({what}) changed something"));
            }
        }
        // A NaN on one rank under the error policy: the mean is NaN there; all fail.
        sharded
            .set_non_finite_policy(NonFinitePolicy::Error)
            .map_err(|e| e.to_string())?;
        let mut g = grads(1, comm.rank());
        if comm.rank() == last {
            let mut w = optim_test_support::dense(&g, "fc.weight");
            w[[3, 5]] = f32::NAN;
            g.insert("fc.weight", w);
        }
        let err = match sharded.step(&mut p, &g) {
            Ok(()) => return Err("a NaN gradient was accepted under the error policy".into()),
            Err(e) => e.to_string(),
        };
        same_everywhere(comm, &err)?;
        if !err.contains("`fc.weight`: gradient element 23 is NaN") {
            return Err(format!("NaN: unexpected error {err}"));
        }
        if p.iter().zip(before.0.iter()).any(|((_, a), (_, b))| a != b)
            || sharded.export_state() != before.1
        {
            return Err("a step failed on a NaN changed something".into());
        }
        // Skipping: fc.weight is skipped on every rank, the others step.
        sharded
            .set_non_finite_policy(NonFinitePolicy::SkipParam)
            .map_err(|e| e.to_string())?;
        sharded.step(&mut p, &g).map_err(|e| e.to_string())?;
        if sharded.skipped() != ["fc.weight"] || p.get("fc.weight") != before.0.get("fc.weight") {
            return Err(format!("skip: skipped {:?}", sharded.skipped()));
        }
        if sharded.step_count("fc.weight") != Some(1) || sharded.step_count("fc.bias") != Some(2) {
            return Err("skip: step counts".into());
        }
    }
    Ok(())
}

/// Every rank has the same `text` (or an error saying which differs).
pub fn same_everywhere(comm: &Arc<dyn Comm>, text: &str) -> Outcome {
    let all =
        optim_dist::all_gather_bytes(comm.as_ref(), text.as_bytes()).map_err(|e| e.to_string())?;
    match all.iter().position(|t| t != text.as_bytes()) {
        Some(r) => Err(format!(
            "rank {} says `{text}`, rank {r} `{}`",
            comm.rank(),
            String::from_utf8_lossy(&all[r])
        )),
        None => Ok(()),
    }
}

/// A directory every rank of the group agrees on (rank 0's name, broadcast).
pub fn shared_dir(comm: &Arc<dyn Comm>, tag: &str) -> Result<PathBuf, String> {
    let mine = std::env::temp_dir()
        .join(format!(
            "optim-dist-{tag}-{}-{}",
            std::process::id(),
            comm.size()
        ))
        .to_string_lossy()
        .into_owned();
    let all =
        optim_dist::all_gather_bytes(comm.as_ref(), mine.as_bytes()).map_err(|e| e.to_string())?;
    let dir = PathBuf::from(String::from_utf8_lossy(&all[0]).into_owned());
    if comm.rank() == 0 {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    }
    comm.barrier().map_err(|e| e.to_string())?;
    Ok(dir)
}

/// Resuming: from each rank's shard, and from a consolidated checkpoint, both into a
/// sharded optimizer and into the unsharded one; each continues exactly as the run that
/// did not stop. Returns the consolidated file, for loading at other world sizes.
pub fn resume(
    comm: &Arc<dyn Comm>,
    tag: &str,
    exact_sums: bool,
) -> Result<Vec<(String, PathBuf)>, String> {
    let n = comm.size();
    let rank = comm.rank();
    let dir = shared_dir(comm, tag)?;
    let mut files = Vec::new();
    for name in [
        "adam",
        "lookahead",
        "adafactor",
        "muon",
        "prodigy",
        "schedule_free_adamw",
    ] {
        let cfg = config(name);
        let exact = exact_sums && exact_for(name);
        let mut first = Sharded::new(build(&cfg), Arc::clone(comm)).map_err(|e| e.to_string())?;
        let mut p = params();
        for step in 0..2 {
            first
                .step(&mut p, &grads(step, rank))
                .map_err(|e| e.to_string())?;
        }
        let shard_file = dir.join(format!("{name}.rank{rank}.safetensors"));
        let whole_file = dir.join(format!("{name}.safetensors"));
        checkpoint::save(&first, &shard_file).map_err(|e| e.to_string())?;
        first
            .save_consolidated(&whole_file)
            .map_err(|e| e.to_string())?;
        let saved = p.clone();
        for step in 2..4 {
            first
                .step(&mut p, &grads(step, rank))
                .map_err(|e| e.to_string())?;
        }

        // From the shards.
        let mut again = Sharded::new(build(&cfg), Arc::clone(comm)).map_err(|e| e.to_string())?;
        let mut p2 = saved.clone();
        checkpoint::load_into(&mut again, &p2, &shard_file)
            .map_err(|e| format!("{name}: shard: {e}"))?;
        if again.export_state().optimizer != SHARD_STATE {
            return Err("shard state name".into());
        }
        for step in 2..4 {
            again
                .step(&mut p2, &grads(step, rank))
                .map_err(|e| e.to_string())?;
        }
        compare(&format!("{name} resumed from shards"), &p2, &p, true)?;

        // From the consolidated file, sharded over the same ranks.
        let mut whole = Sharded::new(build(&cfg), Arc::clone(comm)).map_err(|e| e.to_string())?;
        let mut p3 = saved.clone();
        checkpoint::load_into(&mut whole, &p3, &whole_file)
            .map_err(|e| format!("{name}: consolidated: {e}"))?;
        for step in 2..4 {
            whole
                .step(&mut p3, &grads(step, rank))
                .map_err(|e| e.to_string())?;
        }
        compare(
            &format!("{name} resumed from the consolidated file"),
            &p3,
            &p,
            true,
        )?;

        // From the consolidated file, unsharded.
        let mut plain = build(&cfg);
        let mut p4 = saved.clone();
        checkpoint::load_into(plain.as_mut(), &p4, &whole_file)
            .map_err(|e| format!("{name}: unsharded: {e}"))?;
        for step in 2..4 {
            plain.step(&mut p4, &mean_grads(step, n)).unwrap();
        }
        compare(
            &format!("{name} consolidated, resumed unsharded"),
            &p4,
            &p,
            exact,
        )?;

        // A shard loads only into its own rank: rank r's file into rank (r+1) % n fails
        // on every rank, and changes nothing.
        if n > 1 {
            let other = dir.join(format!("{name}.rank{}.safetensors", (rank + 1) % n));
            let before = whole.export_state();
            let err = checkpoint::load_into(&mut whole, &p3, &other)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            same_everywhere(comm, &err)?;
            if err.is_empty() || whole.export_state() != before {
                return Err(format!("{name}: another rank's shard loaded ({err})"));
            }
        }
        files.push((name.to_string(), whole_file));
    }
    Ok(files)
}

/// The consolidated files of a run on `saved_on` ranks, loaded into a sharded optimizer
/// over this group (another size): it continues as the unsharded run would.
pub fn load_elsewhere(
    comm: &Arc<dyn Comm>,
    files: &[(String, PathBuf)],
    saved_on: usize,
    exact_sums: bool,
) -> Outcome {
    for (name, file) in files {
        let cfg = config(name);
        let exact = exact_for(name);
        // The expectation: the saved run's first two steps (on `saved_on` ranks), then two
        // more unsharded on this group's mean gradient.
        let mut reference = build(&cfg);
        let mut q = params();
        for step in 0..2 {
            reference.step(&mut q, &mean_grads(step, saved_on)).unwrap();
        }
        let saved = q.clone();
        for step in 2..4 {
            reference
                .step(&mut q, &mean_grads(step, comm.size()))
                .unwrap();
        }
        let mut sharded = Sharded::new(build(&cfg), Arc::clone(comm)).map_err(|e| e.to_string())?;
        let mut p = saved.clone();
        checkpoint::load_into(&mut sharded, &p, file).map_err(|e| format!("{name}: {e}"))?;
        for step in 2..4 {
            sharded
                .step(&mut p, &grads(step, comm.rank()))
                .map_err(|e| e.to_string())?;
        }
        compare(
            &format!(
                "{name} saved on {saved_on} ranks, resumed on {}",
                comm.size()
            ),
            &p,
            &q,
            exact && exact_sums,
        )?;
    }
    Ok(())
}
