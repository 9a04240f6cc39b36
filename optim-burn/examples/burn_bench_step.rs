//! One optimizer step over a model's parameters on burn's flex CPU backend: our AdamW
//! through `ZooOptimizer` against burn's own `AdamW`, alternating in the same run.
//!
//! ```sh
//! cargo run --release -p optim-burn --example burn_bench_step            # 4.2M parameters
//! cargo run --release -p optim-burn --example burn_bench_step -- 1024 30  # hidden width, rounds
//! ```
//!
//! The parameters are those of a 1024→H→1024→10 MLP (default H = 2048: 4.2M f32 values
//! in six tensors). burn steps one parameter at a time through `Optimizer::step`, which
//! is what is timed here, summed over the six; each step gets a fresh gradient tensor
//! (made before the clock starts, as backward makes them), so neither optimizer finds
//! its inputs shared. Prints the median time of a step of each and the ratio.

use burn::optim::{AdamWConfig, Optimizer};
use burn::tensor::{Device, Tensor, TensorData};
use optim_burn::ZooOptimizer;
use serde_json::json;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn values(seed: u64, n: usize) -> Vec<f32> {
    optim_test_support::wiggles::<f32>(seed, n)
}

/// Steps every parameter once with `opt`, timing only the steps.
fn step_all<O: Optimizer>(
    opt: &O,
    lr: f64,
    params: &mut Vec<Tensor<2>>,
    states: &mut [Option<O::State<2>>],
    grads: &[Vec<f32>],
    device: &Device,
) -> f64 {
    let mut elapsed = 0.0;
    let taken = std::mem::take(params);
    for (i, p) in taken.into_iter().enumerate() {
        let dims = p.dims();
        let g = Tensor::<2>::from_data(TensorData::new(grads[i].clone(), dims), device);
        let t = Instant::now();
        let (p, s) = opt.step(lr, p, g, states[i].take());
        elapsed += t.elapsed().as_secs_f64();
        states[i] = s;
        params.push(p);
    }
    elapsed
}

/// The same AdamW step on our own `Params`/`Grads` of the same shapes, without the
/// adapter: what the adapter's own cost is measured against.
struct Bare {
    opt: Box<dyn optim_core::Optimizer<f32>>,
    params: optim_core::Params<f32>,
    grads: optim_core::Grads<f32>,
}

impl Bare {
    fn new(
        shapes: &[Vec<usize>],
        config: &serde_json::Value,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let mut params = optim_core::Params::new();
        let mut grads = optim_core::Grads::new();
        for (i, shape) in shapes.iter().enumerate() {
            let n = shape.iter().product();
            let w = optim_test_support::wiggles::<f32>(i as u64, n);
            let g = optim_test_support::wiggles::<f32>(100 + i as u64, n);
            params.insert(
                format!("p{i}"),
                ndarray::ArrayD::from_shape_vec(shape.clone(), w)?,
            )?;
            grads.insert(
                format!("p{i}"),
                ndarray::ArrayD::from_shape_vec(shape.clone(), g)?,
            );
        }
        Ok(Bare {
            opt: optim_zoo::build::<f32>(config)?,
            params,
            grads,
        })
    }

    fn step(&mut self) -> Result<f64, Box<dyn std::error::Error>> {
        let t = Instant::now();
        self.opt.step(&mut self.params, &self.grads)?;
        Ok(t.elapsed().as_secs_f64())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let hidden: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(2048);
    let rounds: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(20);
    let device = Device::flex();
    // Biases as [1, n] so that every parameter has rank 2.
    let shapes = [
        [1024, hidden],
        [1, hidden],
        [hidden, 1024],
        [1, 1024],
        [1024, 10],
        [1, 10],
    ];
    let numel: usize = shapes.iter().map(|s| s[0] * s[1]).sum();
    let make = || -> Vec<Tensor<2>> {
        shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Tensor::<2>::from_data(TensorData::new(values(i as u64, s[0] * s[1]), *s), &device)
            })
            .collect()
    };
    let grads: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| values(100 + i as u64, s[0] * s[1]))
        .collect();

    let (lr, wd, eps) = (1e-4, 1e-4, 1e-5);
    let ours = ZooOptimizer::json(json!({"optimizer": "adamw", "weight_decay": wd, "eps": eps}))?;
    let theirs = AdamWConfig::new()
        .with_weight_decay(wd as f32)
        .with_epsilon(eps as f32)
        .build();
    let (mut p_ours, mut p_theirs) = (make(), make());
    let mut s_ours: Vec<_> = shapes.iter().map(|_| None).collect();
    let mut s_theirs: Vec<_> = shapes.iter().map(|_| None).collect();
    let dims: Vec<Vec<usize>> = shapes.iter().map(|s| s.to_vec()).collect();
    let config = json!({"optimizer": "adamw", "lr": lr, "weight_decay": wd, "eps": eps});
    let mut bare = Bare::new(&dims, &config)?;
    for _ in 0..2 {
        step_all(&ours, lr, &mut p_ours, &mut s_ours, &grads, &device);
        step_all(&theirs, lr, &mut p_theirs, &mut s_theirs, &grads, &device);
        bare.step()?;
    }
    let (mut t_ours, mut t_theirs, mut t_bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        t_ours.push(step_all(
            &ours,
            lr,
            &mut p_ours,
            &mut s_ours,
            &grads,
            &device,
        ));
        t_theirs.push(step_all(
            &theirs,
            lr,
            &mut p_theirs,
            &mut s_theirs,
            &grads,
            &device,
        ));
        t_bare.push(bare.step()?);
    }
    let bare = median(t_bare);
    if let Some(e) = ours.errors().take().first() {
        return Err(e.to_string().into());
    }
    let (a, b) = (median(t_ours), median(t_theirs));
    println!(
        "burn AdamW step (flex), {numel} f32 parameters in 6 tensors, {rounds} rounds, median:"
    );
    println!("  optim-burn adamw    {:9.3} ms", a * 1e3);
    println!("  burn AdamW          {:9.3} ms", b * 1e3);
    println!(
        "  optim-core alone    {:9.3} ms  (the same step on our own Params/Grads)",
        bare * 1e3
    );
    println!("  ratio (burn / ours): {:.2}x", b / a);
    Ok(())
}
