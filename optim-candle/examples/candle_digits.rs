//! Trains a candle-nn MLP (64→64→10, ReLU, cross-entropy, candle's autodiff) on the
//! handwritten digits with any registry optimizer through `CandleOptimizer`.
//!
//! ```sh
//! cargo run --release -p optim-candle --example candle_digits                  # adamw
//! cargo run --release -p optim-candle --example candle_digits -- lion 3e-4
//! cargo run --release -p optim-candle --example candle_digits -- partition     # Muon + AdamW
//! cargo run --release -p optim-candle --example candle_digits -- '{"optimizer": "ranger", "lr": 0.01}'
//! ```
//!
//! Arguments: an optimizer (a registry name, `partition`, or a JSON config), then an
//! optional learning rate, then optional epochs.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use optim_candle::{CandleOptimizer, Config};
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;

#[path = "../../optim-zoo/examples/race/data.rs"]
#[allow(dead_code)]
mod data;
#[path = "../../optim-zoo/examples/race/rng.rs"]
#[allow(dead_code)]
mod rng;

/// The error type the race's data module returns.
pub type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Mlp {
    fc1: candle_nn::Linear,
    fc2: candle_nn::Linear,
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(x)?.relu()?)
    }
}

/// The config named on the command line: a JSON config, `partition`, or a registry name.
fn config_from(arg: &str, lr: Option<f64>) -> AnyResult<Value> {
    let mut config: Value = if arg.trim_start().starts_with('{') {
        serde_json::from_str(arg)?
    } else if arg == "partition" {
        // Muon for the weight matrices, AdamW for the biases.
        json!({"optimizer": "partition", "routes": [
            {"select": {"ndim": 2}, "optimizer": {"optimizer": "muon", "lr": lr.unwrap_or(0.02)}},
            {"optimizer": {"optimizer": "adamw", "lr": 1e-3}}
        ]})
    } else {
        json!({"optimizer": arg, "lr": lr.unwrap_or(1e-3)})
    };
    if let (Some(lr), false) = (lr, arg == "partition") {
        config["lr"] = json!(lr);
    }
    Ok(config)
}

fn tensors(set: &data::Dataset, device: &Device) -> AnyResult<(Tensor, Tensor)> {
    let x = Tensor::from_slice(
        set.x.as_slice().ok_or("rows not contiguous")?,
        (set.len(), data::PIXELS),
        device,
    )?;
    let y: Vec<u32> = set.y.iter().map(|&c| c as u32).collect();
    Ok((x, Tensor::from_vec(y, set.len(), device)?))
}

fn accuracy(model: &Mlp, x: &Tensor, y: &Tensor) -> AnyResult<f64> {
    let predicted = model.forward(x)?.argmax(D::Minus1)?;
    let right = predicted
        .eq(y)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(right as f64 / y.dims()[0] as f64)
}

fn run() -> AnyResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map(String::as_str).unwrap_or("adamw");
    let lr = args.get(1).map(|s| s.parse::<f64>()).transpose()?;
    let epochs: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(20);
    let config = config_from(name, lr)?;

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/digits.csv.gz");
    let split = data::load_split(&path, 0)?;
    let device = Device::Cpu;
    let (train_x, train_y) = tensors(&split.train, &device)?;
    let (test_x, test_y) = tensors(&split.test, &device)?;

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let model = Mlp {
        fc1: candle_nn::linear(data::PIXELS, 64, vb.pp("fc1"))?,
        fc2: candle_nn::linear(64, data::CLASSES, vb.pp("fc2"))?,
    };
    let mut opt = CandleOptimizer::from_varmap(&varmap, Config::json(config.clone()))?;
    println!(
        "{config}\nparameters: {}",
        opt.names().collect::<Vec<_>>().join(", ")
    );

    let batch = 32;
    let n = split.train.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rng::SplitMix64::new(1);
    let start = std::time::Instant::now();
    for epoch in 1..=epochs {
        rng.shuffle(&mut order);
        let mut total = 0.0;
        for chunk in order.chunks(batch) {
            let idx = Tensor::from_vec(
                chunk.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                chunk.len(),
                &device,
            )?;
            let x = train_x.index_select(&idx, 0)?;
            let y = train_y.index_select(&idx, 0)?;
            let loss = candle_nn::loss::cross_entropy(&model.forward(&x)?, &y)?;
            opt.backward_step(&loss)?;
            total += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        }
        if epoch == 1 || epoch % 5 == 0 || epoch == epochs {
            println!(
                "epoch {epoch:3}  train loss {:.4}  test accuracy {:.1}%",
                total / n as f64,
                100.0 * accuracy(&model, &test_x, &test_y)?
            );
        }
    }
    println!(
        "final test accuracy {:.1}% ({} steps, {:.2} s; copies per step: {})",
        100.0 * accuracy(&model, &test_x, &test_y)?,
        opt.steps(),
        start.elapsed().as_secs_f64(),
        opt.copied_last_step()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
