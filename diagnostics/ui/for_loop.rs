// The body is the update of one element: no loops.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
pub fn looping(w: Param, g: Grad) {
    for _ in 0..3 {
        w -= lr * g;
    }
}

fn main() {
    let _ = Looping::default();
}
