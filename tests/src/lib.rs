//! Helpers shared by the integration tests in `tests/tests/`: a config for every registry
//! entry, test problems with their gradients, and builders.

use ndarray::{ArrayD, IxDyn};
use optim_core::{Grads, Optimizer, Params, Scalar};
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

/// Converts `f64` values into a dynamic-dimension array of `T`.
pub fn array<T: Scalar>(shape: &[usize], values: &[f64]) -> ArrayD<T> {
    ArrayD::from_shape_vec(
        IxDyn(shape),
        values.iter().map(|&x| T::from_f64(x)).collect(),
    )
    .expect("shape matches values")
}

/// Values of parameter `name` as `f64`.
pub fn values<T: Scalar>(params: &Params<T>, name: &str) -> Vec<f64> {
    params
        .get(name)
        .unwrap_or_else(|| panic!("no parameter {name}"))
        .iter()
        .map(|&x| Scalar::to_f64(x))
        .collect()
}

/// Bit patterns of every parameter, for exact comparisons.
pub fn bits<T: Scalar>(params: &Params<T>) -> Vec<u64> {
    params
        .iter()
        .flat_map(|(_, a)| a.iter().map(|&x| Scalar::to_f64(x).to_bits()))
        .collect()
}

/// A smooth test problem on one parameter `x`.
#[derive(Clone, Copy, Debug)]
pub enum Problem {
    /// `½ Σ aᵢ (xᵢ − cᵢ)²` with curvatures a = (1, 4, 0.5), minimum at c = (1, −2, 0.5).
    Quadratic,
    /// `(1 − x)² + 100 (y − x²)²`, minimum at (1, 1).
    Rosenbrock,
}

const QA: [f64; 3] = [1.0, 4.0, 0.5];
const QC: [f64; 3] = [1.0, -2.0, 0.5];

impl Problem {
    /// The starting point.
    pub fn start(self) -> Vec<f64> {
        match self {
            Problem::Quadratic => vec![3.0, 0.5, -1.0],
            Problem::Rosenbrock => vec![-1.2, 1.0],
        }
    }

    pub fn loss(self, x: &[f64]) -> f64 {
        match self {
            Problem::Quadratic => (0..3).map(|i| 0.5 * QA[i] * (x[i] - QC[i]).powi(2)).sum(),
            Problem::Rosenbrock => (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2),
        }
    }

    pub fn grad(self, x: &[f64]) -> Vec<f64> {
        match self {
            Problem::Quadratic => (0..3).map(|i| QA[i] * (x[i] - QC[i])).collect(),
            Problem::Rosenbrock => vec![
                -2.0 * (1.0 - x[0]) - 400.0 * x[0] * (x[1] - x[0] * x[0]),
                200.0 * (x[1] - x[0] * x[0]),
            ],
        }
    }

    /// Runs `opt` for `steps` steps from the start; returns the losses before and after.
    pub fn run<T: Scalar>(self, opt: &mut dyn Optimizer<T>, steps: usize) -> (f64, f64) {
        self.run_shaped(opt, steps, false)
    }

    /// [`Problem::run`] with `x` as a 1×n matrix if `matrix` (for matrices-only optimizers).
    pub fn run_shaped<T: Scalar>(
        self,
        opt: &mut dyn Optimizer<T>,
        steps: usize,
        matrix: bool,
    ) -> (f64, f64) {
        let start = self.start();
        let shape = if matrix {
            vec![1, start.len()]
        } else {
            vec![start.len()]
        };
        let mut params = Params::new();
        params
            .insert("x", array::<T>(&shape, &start))
            .expect("fresh params");
        for _ in 0..steps {
            let x = values(&params, "x");
            let g = array::<T>(&shape, &self.grad(&x));
            opt.step(&mut params, &Grads::new().with("x", g))
                .expect("step");
        }
        (self.loss(&start), self.loss(&values(&params, "x")))
    }
}

/// Two parameters, a matrix and a vector, with values that are exact in `f32`.
pub fn two_params<T: Scalar>() -> Params<T> {
    let mut p = Params::new();
    p.insert(
        "weight",
        array::<T>(&[2, 3], &[0.5, -1.25, 2.0, 0.75, -0.5, 1.5]),
    )
    .expect("fresh");
    p.insert("bias", array::<T>(&[3], &[0.25, -0.75, 1.0]))
        .expect("fresh");
    p
}

/// A deterministic gradient for step `k` (1-based) for every parameter of `two_params`,
/// independent of the parameters (so that runs can be compared element by element).
pub fn grads_at<T: Scalar>(k: usize) -> Grads<T> {
    let wave = |i: usize| {
        let x = (k * 7 + i * 3) as f64;
        ((x * 0.37).sin() * 1.5 + 0.25 * (i as f64 - 2.0)) * (1.0 + (k % 3) as f64)
    };
    let w: Vec<f64> = (0..6).map(wave).collect();
    let b: Vec<f64> = (6..9).map(wave).collect();
    let mut g = Grads::new();
    g.insert("weight", array::<T>(&[2, 3], &w));
    g.insert("bias", array::<T>(&[3], &b));
    g
}

/// The dense gradient of `name` in `grads`.
pub fn dense<T: Scalar>(grads: &Grads<T>, name: &str) -> ArrayD<T> {
    match grads.get(name) {
        Some(optim_core::Grad::Dense(a)) => a.clone(),
        other => panic!("no dense gradient for {name}: {other:?}"),
    }
}
