// `powi` takes an integer exponent at every level; `lr.powi(1.5)` used to compute `lr.powi(1)`.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
pub fn odd_rate(w: Param, g: Grad) {
    w -= lr.powi(1.5) * g;
}

fn main() {}
