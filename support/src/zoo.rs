//! The registry's names, and a config for each entry with the learning rate the test
//! problems need.

use optim_core::{Optimizer, Scalar};
use optim_zoo::Registry;
use serde_json::{json, Value};

/// The learning rate each registry entry is exercised with on the test problems, where
/// its default is too small to show progress in a few hundred steps (`None`: the default).
///
/// SGD (1e-3), RMSprop (1e-2) and AdaDelta (1.0) work at their defaults. The Adam family
/// moves about `lr` per step, so 0.02 crosses the problems in a few hundred steps;
/// AdaGrad's steps shrink as its accumulator grows, so it starts larger.
pub fn documented_lr(name: &str) -> Option<f64> {
    match name {
        "sgd" | "momentum" | "sgdm" | "nag" | "rmsprop" | "adadelta" => None,
        "adagrad" => Some(0.1),
        // LARS's step is lr·η·‖w‖ (η = 0.001): its default lr, 1, is the documented scale.
        "lars" => None,
        "lookahead" => None, // the inner Adam's lr is set in `config`
        // ASGD and schedule-free SGD step by lr·g as SGD does, and like SGD they need
        // lr·(largest curvature) < 2: on Rosenbrock's valley (curvature ≈ 1000) their
        // defaults (1e-2, 1.0) and 0.02 diverge. They run at SGD's default, 1e-3.
        "asgd" | "schedule_free_sgd" => Some(1e-3),
        _ => Some(0.02),
    }
}

/// Whether registry entry `name` steps matrices only (Muon): its configs route every other
/// parameter to AdamW, and the one-parameter problems give it a 1×n matrix.
pub fn steps_matrices_only(name: &str) -> bool {
    name == "muon"
}

/// A config for registry entry `name` with its documented lr (`lookahead` wraps an adam;
/// a matrices-only optimizer is the matrices' route of a partition, AdamW the others').
pub fn config(name: &str) -> Value {
    if steps_matrices_only(name) {
        let lr = documented_lr(name).map_or(json!(null), |lr| json!(lr));
        return json!({"optimizer": "partition", "routes": [
            {"select": {"ndim": 2}, "optimizer": {"optimizer": name, "lr": lr}},
            {"optimizer": {"optimizer": "adamw", "lr": lr}},
        ]});
    }
    let mut c = json!({ "optimizer": name });
    if name == "lookahead" {
        c["inner"] = json!({ "optimizer": "adam", "lr": 0.02 });
    }
    if let Some(lr) = documented_lr(name) {
        c["lr"] = json!(lr);
    }
    c
}

/// `config(name)` with `key` set, on the inner optimizer for lookahead.
pub fn config_with(name: &str, key: &str, value: Value) -> Value {
    let mut c = config(name);
    if name == "lookahead" {
        c["inner"][key] = value;
    } else if steps_matrices_only(name) {
        for route in 0..2 {
            c["routes"][route]["optimizer"][key] = value.clone();
        }
    } else {
        c[key] = value;
    }
    c
}

/// Every registry entry of the zoo but `partition`, which only composes the others (its
/// own tests, `optim-zoo/tests/partition.rs`, check that each parameter ends bit for bit
/// where its route's optimizer alone takes it).
pub fn zoo_names() -> Vec<&'static str> {
    let mut names = Registry::zoo().names();
    names.retain(|&n| n != "partition");
    names
}

/// Builds `config` with the zoo registry, panicking with the config on error.
pub fn build<T: Scalar>(config: &Value) -> Box<dyn Optimizer<T>> {
    Registry::zoo()
        .build::<T>(config)
        .unwrap_or_else(|e| panic!("{config}: {e}"))
}
