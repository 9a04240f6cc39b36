// Arguments are `Param`, `Grad`, `State` or `ScalarState`.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
pub fn momentum(w: Param, g: Grad, b: Stat) {
    b = 0.9 * b + g;
    w -= lr * b;
}

fn main() {
    let _ = Momentum::default();
}
