//! One optimizer step on a candle model's variables: our AdamW through `CandleOptimizer`
//! against `candle_nn::AdamW`, alternating in the same run, on the same gradients.
//!
//! ```sh
//! cargo run --release -p optim-candle --example candle_bench_step            # 4.2M parameters
//! cargo run --release -p optim-candle --example candle_bench_step -- 1024 30  # hidden width, rounds
//! ```
//!
//! The model is a 1024→H→1024→10 MLP (default H = 2048: 4.2M f32 parameters in six
//! tensors); its gradients come from one backward pass and are reused by every step.
//! Prints the median time of a step of each and the ratio (candle's time / ours).

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use optim_candle::{CandleOptimizer, Config};
use serde_json::json;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
    let device = Device::Cpu;

    // Two identical models, one per optimizer.
    let make = || -> candle_core::Result<(VarMap, Vec<candle_nn::Linear>)> {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &device);
        let layers = vec![
            candle_nn::linear(1024, hidden, vb.pp("fc1"))?,
            candle_nn::linear(hidden, 1024, vb.pp("fc2"))?,
            candle_nn::linear(1024, 10, vb.pp("fc3"))?,
        ];
        Ok((map, layers))
    };
    let grads_of = |layers: &[candle_nn::Linear]| -> candle_core::Result<_> {
        let x = Tensor::randn(0f32, 1., (32, 1024), &device)?;
        let mut h = x;
        for layer in layers {
            h = layer.forward(&h)?.tanh()?;
        }
        h.sqr()?.mean_all()?.backward()
    };
    let (ours_map, ours_layers) = make()?;
    let (theirs_map, theirs_layers) = make()?;
    let ours_grads = grads_of(&ours_layers)?;
    let theirs_grads = grads_of(&theirs_layers)?;
    let numel: usize = ours_map.all_vars().iter().map(|v| v.elem_count()).sum();

    let params = candle_nn::ParamsAdamW {
        lr: 1e-4,
        ..Default::default()
    };
    let mut ours = CandleOptimizer::from_varmap(
        &ours_map,
        Config::json(
            json!({"optimizer": "adamw", "lr": params.lr, "weight_decay": params.weight_decay, "eps": params.eps}),
        ),
    )?;
    let mut theirs = candle_nn::AdamW::new(theirs_map.all_vars(), params)?;
    let shapes: Vec<Vec<usize>> = ours_map
        .all_vars()
        .iter()
        .map(|v| v.dims().to_vec())
        .collect();
    let mut bare = Bare::new(&shapes, &json!({"optimizer": "adamw", "lr": 1e-4}))?;
    // Warm up: first steps allocate the state.
    for _ in 0..2 {
        ours.step(&ours_grads)?;
        theirs.step(&theirs_grads)?;
        bare.step()?;
    }
    let (mut t_ours, mut t_theirs, mut t_bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        ours.step(&ours_grads)?;
        t_ours.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        theirs.step(&theirs_grads)?;
        t_theirs.push(t.elapsed().as_secs_f64());
        t_bare.push(bare.step()?);
    }
    let bare = median(t_bare);
    let (a, b) = (median(t_ours), median(t_theirs));
    println!("candle AdamW step, {numel} f32 parameters in 6 tensors, {rounds} rounds, median:");
    println!(
        "  optim-candle adamw  {:9.3} ms  (copies per step: {})",
        a * 1e3,
        ours.copied_last_step()
    );
    println!("  candle_nn::AdamW    {:9.3} ms", b * 1e3);
    println!(
        "  optim-core alone    {:9.3} ms  (the same step on our own Params/Grads)",
        bare * 1e3
    );
    println!("  ratio (candle / ours): {:.2}x", b / a);
    Ok(())
}
