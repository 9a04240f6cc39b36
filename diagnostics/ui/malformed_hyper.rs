// A hyperparameter is `name = default in range`.
use optim_macros::optimizer;

#[optimizer(lr 1e-3 in 0.0..)]
pub fn plain(w: Param, g: Grad) {
    w -= lr * g;
}

fn main() {
    let _ = Plain::default();
}
