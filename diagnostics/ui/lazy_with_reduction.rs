// `#[sparse(lazy)]` steps only the rows present; a reduction needs every element.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
#[sparse(lazy)]
pub fn lazy_normalized(w: Param, g: Grad) {
    w -= lr * g / norm(g);
}

fn main() {}
