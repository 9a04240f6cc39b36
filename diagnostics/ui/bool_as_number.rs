// A bool hyperparameter is a condition, not a number.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0.., nesterov = false)]
pub fn nag(w: Param, g: Grad) {
    w -= lr * nesterov * g;
}

fn main() {
    let _ = Nag::default();
}
