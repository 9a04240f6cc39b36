// A reduction of a reduction: the inner one is already one number per tensor.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
pub fn normalized(w: Param, g: Grad) {
    let n = norm(norm(g));
    w -= lr * g / n;
}

fn main() {}
