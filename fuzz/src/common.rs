//! What both fuzz targets and the seed maker share: parameters, gradients, optimizers.
#![allow(dead_code)]

use ndarray::{ArrayD, IxDyn};
use optim_core::{Grads, Optimizer, Params, Scalar};
use optim_zoo::Registry;
use serde_json::json;

/// The parameters every checkpoint is loaded against.
pub fn params<T: Scalar>() -> Params<T> {
    let v = |n: usize, s: f64| -> Vec<T> {
        (0..n).map(|i| T::from_f64(s * (i as f64 + 1.0))).collect()
    };
    Params::new()
        .with(
            "w",
            ArrayD::from_shape_vec(IxDyn(&[4]), v(4, 0.25)).unwrap(),
        )
        .unwrap()
        .with(
            "emb",
            ArrayD::from_shape_vec(IxDyn(&[3, 2]), v(6, -0.5)).unwrap(),
        )
        .unwrap()
        .with(
            "layer.bias",
            ArrayD::from_shape_vec(IxDyn(&[2]), v(2, 0.125)).unwrap(),
        )
        .unwrap()
}

/// Gradients for every parameter; the embedding as sparse rows with a repeat.
pub fn grads<T: Scalar>(s: u64) -> Grads<T> {
    let f = |n: usize, k: f64| -> Vec<T> {
        (0..n)
            .map(|i| T::from_f64(((i as f64 + k + s as f64) * 0.7).sin()))
            .collect()
    };
    let mut g = Grads::new()
        .with("w", ArrayD::from_shape_vec(IxDyn(&[4]), f(4, 1.0)).unwrap())
        .with(
            "layer.bias",
            ArrayD::from_shape_vec(IxDyn(&[2]), f(2, 2.0)).unwrap(),
        );
    g.insert_rows(
        "emb",
        vec![2, 0, 2],
        ndarray::Array2::from_shape_vec((3, 2), f(6, 3.0)).unwrap(),
    );
    g
}

/// The optimizers checkpoints are loaded into, by config.
pub fn configs() -> Vec<serde_json::Value> {
    vec![
        json!({"optimizer": "sgd", "momentum": 0.9}),
        json!({"optimizer": "adam", "amsgrad": true}),
        json!({"optimizer": "bert"}),
        json!({"optimizer": "nadam"}),
        json!({"optimizer": "rmsprop", "centered": true, "momentum": 0.5}),
        json!({"optimizer": "lazyadam"}),
        json!({"optimizer": "ranger"}),
        json!({"optimizer": "lookahead", "inner": {"optimizer": "adam"}}),
    ]
}

pub fn build<T: Scalar>(reg: &Registry, config: &serde_json::Value) -> Box<dyn Optimizer<T>> {
    reg.build::<T>(config).expect("fuzz configs build")
}
