// A row state holds one value per row: it takes a per-row reduction, not a per-element value.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
pub fn factored(w: Param, g: Grad, r: RowState) {
    r = g * g;
    w -= lr * g / sqrt(r + 1e-8);
}

fn main() {}
