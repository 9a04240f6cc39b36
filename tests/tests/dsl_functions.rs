//! The equations' `sign` is the mathematical sign (`torch.sign`), not Rust's `signum`.

use ndarray::arr1;
use optim_core::{Grads, Optimizer, Params};
use optim_macros::optimizer;

/// signSGD: w ← w − α·sign(g).
#[optimizer(
    /// Learning rate α.
    lr = 0.5 in 0.0..,
)]
fn sign_sgd(w: Param, g: Grad) {
    w -= lr * sign(g);
}

/// The same with Rust's `signum`, which is ±1 at ±0.
#[optimizer(
    /// Learning rate α.
    lr = 0.5 in 0.0..,
)]
fn signum_sgd(w: Param, g: Grad) {
    w -= lr * signum(g);
}

fn step<O: Optimizer<f64>>(mut opt: O, g: [f64; 4]) -> Vec<f64> {
    let mut params = Params::<f64>::new().with("w", arr1(&[1.0; 4])).unwrap();
    opt.step(&mut params, &Grads::new().with("w", arr1(&g)))
        .unwrap();
    params.get("w").unwrap().iter().copied().collect()
}

#[test]
fn sign_is_zero_at_zero_and_signum_is_not() {
    let g = [3.0, -2.0, 0.0, -0.0];
    assert_eq!(
        step(SignSgd::default().build::<f64>().unwrap(), g),
        [0.5, 1.5, 1.0, 1.0]
    );
    assert_eq!(
        step(SignumSgd::default().build::<f64>().unwrap(), g),
        [0.5, 1.5, 0.5, 1.5]
    );
}
