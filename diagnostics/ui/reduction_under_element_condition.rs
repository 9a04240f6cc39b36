// A reduction is over the whole tensor: it cannot sit under a per-element condition.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
pub fn masked(w: Param, g: Grad) {
    if g > 0.0 {
        w -= lr * g / norm(g);
    }
}

fn main() {}
