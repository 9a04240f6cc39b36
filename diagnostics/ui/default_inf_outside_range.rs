// `lo..` is `[lo, inf)`: it does not hold inf. A range admits it when it ends in `..=inf`.
use optim_macros::optimizer;

#[optimizer(lr = 0.1 in 0.0.., max_step = inf in 0.0..)]
pub fn capped(w: Param, g: Grad) {
    w -= min(lr * g, max_step);
}

fn main() {
    let _ = Capped::default();
}
