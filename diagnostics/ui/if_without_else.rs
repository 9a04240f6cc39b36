// An `if` used as a value needs both branches.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0.., nesterov = false)]
pub fn maybe(w: Param, g: Grad) {
    let step = if nesterov {
        2.0 * g
    };
    w -= lr * step;
}

fn main() {
    let _ = Maybe::default();
}
