// A literal too large for an f64 is not infinity: the DSL spells that `inf`.
use optim_macros::optimizer;

#[optimizer(lr = 1e400 in 0.0..)]
pub fn plain(w: Param, g: Grad) {
    w -= lr * g;
}

fn main() {
    let _ = Plain::default();
}
