// Hyperparameters are read-only in the equations.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0.., decay = 0.99 in 0.0..1.0)]
pub fn decaying_sgd(w: Param, g: Grad) {
    lr = lr * decay;
    w -= lr * g;
}

fn main() {
    let _ = DecayingSgd::default();
}
