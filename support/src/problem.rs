//! Smooth test problems with their gradients, and small fixtures.

use ndarray::{ArrayD, IxDyn};
use optim_core::{Grads, Optimizer, Params, Scalar};

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
