// Only the built-in element-wise functions can be called.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0.., eps = 1e-8 in 0.0..)]
pub fn rms(w: Param, g: Grad, v: State) {
    v = 0.99 * v + 0.01 * g * g;
    w -= lr * g / (sqr(v) + eps);
}

fn main() {
    let _ = Rms::default();
}
