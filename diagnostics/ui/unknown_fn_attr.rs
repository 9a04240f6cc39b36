// A misspelled optimizer-level attribute is an error, with the right spelling suggested.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
#[sparce(lazy)]
pub fn rows(w: Param, g: Grad) {
    w -= lr * g;
}

fn main() {
    let _ = Rows::default();
}
