// A scalar state holds one number per parameter, not one per element.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
pub fn scaled(w: Param, g: Grad, #[init(1.0)] scale: ScalarState) {
    scale = scale * g;
    w -= lr * scale * g;
}

fn main() {
    let _ = Scaled::default();
}
