// A misspelled hyperparameter in an equation: the error points at the name and
// suggests the declared one.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0.., beta1 = 0.9 in 0.0..1.0)]
pub fn momentum_sgd(w: Param, g: Grad, m: State) {
    m = beta_1 * m + g;
    w -= lr * m;
}

fn main() {
    let _ = MomentumSgd::default();
}
