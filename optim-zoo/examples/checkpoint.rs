//! Save a checkpoint mid-training, resume from it in a fresh optimizer, and check the
//! resumed run is bit-identical to the uninterrupted one.
//!
//! ```sh
//! cargo run -p optim-zoo --example checkpoint -- /tmp/ranger.safetensors
//! python3 optim-zoo/examples/read_checkpoint.py /tmp/ranger.safetensors
//! ```
//!
//! A second argument gives another optimizer config, such as a partition:
//!
//! ```sh
//! cargo run -p optim-zoo --example checkpoint -- /tmp/partition.safetensors \
//!   '{"optimizer": "partition", "routes": [{"select": {"ndim": 2}, "optimizer": "nag"}, {"optimizer": "adamw"}]}'
//! ```

use ndarray::{Array1, Array2};
use optim_core::checkpoint;
use optim_core::{Grads, OptimError, Params};
use optim_zoo::Registry;
use serde_json::json;

/// A least-squares problem: loss = ½‖X·w + b − y‖², its gradients at the current params.
fn grads(params: &Params<f32>, step: usize) -> Grads<f32> {
    let w = params.get("fc.weight").unwrap();
    let b = params.get("fc.bias").unwrap();
    let mut gw = Array2::<f32>::zeros((4, 3));
    let mut gb = Array1::<f32>::zeros(3);
    for i in 0..8 {
        let x: Vec<f32> = (0..4)
            .map(|j| ((i * 7 + j * 3 + step) % 11) as f32 / 11.0 - 0.5)
            .collect();
        for k in 0..3 {
            let pred: f32 = (0..4).map(|j| x[j] * w[[j, k]]).sum::<f32>() + b[[k]];
            let target = x[k] * 2.0 - x[3];
            let r = pred - target;
            for j in 0..4 {
                gw[[j, k]] += r * x[j];
            }
            gb[k] += r;
        }
    }
    Grads::new().with("fc.weight", gw).with("fc.bias", gb)
}

fn main() -> Result<(), OptimError> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        std::env::temp_dir()
            .join("ranger.safetensors")
            .display()
            .to_string()
    });
    let config = match std::env::args().nth(2) {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| OptimError::Config(format!("the config argument: {e}")))?,
        None => json!({"optimizer": "ranger", "lr": 0.01}),
    };
    // A fresh process would rebuild the optimizer from its config (any hyperparameters:
    // the checkpoint restores them).
    let fresh = match config["optimizer"].as_str() {
        Some("ranger") => json!({"optimizer": "ranger"}),
        _ => config.clone(),
    };
    let registry = Registry::zoo();

    let mut params = Params::<f32>::new()
        .with("fc.weight", Array2::<f32>::from_elem((4, 3), 0.1))?
        .with("fc.bias", Array1::<f32>::zeros(3))?;
    let mut opt = registry.build::<f32>(&config)?;
    for step in 0..10 {
        let g = grads(&params, step);
        opt.step(&mut params, &g)?;
    }
    checkpoint::save(opt.as_ref(), &path)?;
    println!("saved {} after 10 steps to {path}", opt.name());

    // ... and load the parameters it saved with its model.
    let mut resumed = registry.build::<f32>(&fresh)?;
    checkpoint::load_into(resumed.as_mut(), &params, &path)?;
    let mut resumed_params = params.clone();
    for step in 10..30 {
        let g = grads(&params, step);
        opt.step(&mut params, &g)?;
        let g = grads(&resumed_params, step);
        resumed.step(&mut resumed_params, &g)?;
    }
    let same = params
        .iter()
        .zip(resumed_params.iter())
        .all(|((_, a), (_, b))| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
    println!("resumed run bit-identical to the uninterrupted one after 20 more steps: {same}");
    assert!(same);
    Ok(())
}
