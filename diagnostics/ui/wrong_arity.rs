// `max` takes two arguments.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
pub fn clipped(w: Param, g: Grad) {
    w -= lr * max(g);
}

fn main() {
    let _ = Clipped::default();
}
