//! Trains a burn MLP (64→64→10, ReLU, cross-entropy, burn's autodiff on the flex CPU
//! backend) on the handwritten digits with any registry optimizer through `ZooOptimizer`
//! in a `ModuleOptimizer`.
//!
//! ```sh
//! cargo run --release -p optim-burn --example burn_digits                  # adamw, lr 1e-3
//! cargo run --release -p optim-burn --example burn_digits -- lion 3e-4
//! cargo run --release -p optim-burn --example burn_digits -- partition     # Muon + AdamW
//! cargo run --release -p optim-burn --example burn_digits -- '{"optimizer": "ranger"}' 0.01
//! ```
//!
//! Arguments: an optimizer (a registry name, `partition`, or a JSON config), then an
//! optional learning rate (burn passes it to every step), then optional epochs.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{activation::relu, Device, Int, Tensor, TensorData};
use optim_burn::ZooOptimizer;
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

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.fc1.forward(x)))
    }
}

fn tensors(set: &data::Dataset, device: &Device) -> AnyResult<(Tensor<2>, Tensor<1, Int>)> {
    let pixels = set.x.as_slice().ok_or("rows not contiguous")?.to_vec();
    let x = Tensor::<2>::from_data(TensorData::new(pixels, [set.len(), data::PIXELS]), device);
    let y: Vec<i64> = set.y.iter().map(|&c| c as i64).collect();
    Ok((
        x,
        Tensor::<1, Int>::from_data(TensorData::new(y, [set.len()]), device),
    ))
}

fn accuracy(model: &Mlp, x: Tensor<2>, y: Tensor<1, Int>) -> f64 {
    let n = y.dims()[0];
    let predicted = model.forward(x).argmax(1).flatten::<1>(0, 1);
    let right: i64 = predicted.equal(y).int().sum().into_scalar();
    right as f64 / n as f64
}

fn run() -> AnyResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map(String::as_str).unwrap_or("adamw");
    let lr: f64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1e-3);
    let epochs: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(20);
    let (config, keep_config_lr): (Value, bool) = if name.trim_start().starts_with('{') {
        (serde_json::from_str(name)?, false)
    } else if name == "partition" {
        // Muon for the weight matrices, AdamW for the biases, each at its own rate.
        let config = json!({"optimizer": "partition", "routes": [
            {"select": {"ndim": 2}, "optimizer": {"optimizer": "muon", "lr": 0.02}},
            {"optimizer": {"optimizer": "adamw", "lr": 1e-3}}
        ]});
        (config, true)
    } else {
        (json!({"optimizer": name}), false)
    };
    let mut zoo = ZooOptimizer::json(config.clone())?;
    if keep_config_lr {
        zoo = zoo.keep_config_lr();
    }
    let errors = zoo.errors();
    let mut opt: ModuleOptimizer = zoo.into();
    println!(
        "{config} (lr {})",
        if keep_config_lr {
            "per route".to_string()
        } else {
            lr.to_string()
        }
    );

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/digits.csv.gz");
    let split = data::load_split(&path, 0)?;
    let device = Device::flex().autodiff();
    let (train_x, train_y) = tensors(&split.train, &device)?;
    let (test_x, test_y) = tensors(&split.test, &device)?;
    let mut model = Mlp {
        fc1: LinearConfig::new(data::PIXELS, 64).init(&device),
        fc2: LinearConfig::new(64, data::CLASSES).init(&device),
    };
    let loss_fn = CrossEntropyLossConfig::new().init(&device);

    let n = split.train.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rng::SplitMix64::new(1);
    let mut steps = 0;
    let start = std::time::Instant::now();
    for epoch in 1..=epochs {
        rng.shuffle(&mut order);
        let mut total = 0.0;
        for chunk in order.chunks(32) {
            let idx: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [chunk.len()]), &device);
            let x = train_x.clone().select(0, idx.clone());
            let y = train_y.clone().select(0, idx);
            let loss = loss_fn.forward(model.forward(x), y);
            total += loss.clone().into_scalar::<f32>() as f64 * chunk.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(lr, model, grads);
            steps += 1;
            if let Some(e) = errors.take().first() {
                return Err(format!("step {steps}: {e}").into());
            }
        }
        if epoch == 1 || epoch % 5 == 0 || epoch == epochs {
            println!(
                "epoch {epoch:3}  train loss {:.4}  test accuracy {:.1}%",
                total / n as f64,
                100.0 * accuracy(&model, test_x.clone(), test_y.clone())
            );
        }
    }
    println!(
        "final test accuracy {:.1}% ({steps} steps, {:.2} s)",
        100.0 * accuracy(&model, test_x, test_y),
        start.elapsed().as_secs_f64()
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
