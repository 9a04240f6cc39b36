// A hyperparameter declared `bool` needs a bool default.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0.., nesterov: bool = 1.0)]
pub fn nag(w: Param, g: Grad) {
    w -= lr * g;
}

fn main() {
    let _ = Nag::default();
}
