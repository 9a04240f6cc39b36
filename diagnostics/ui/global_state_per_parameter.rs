// A global state is one number for the whole optimizer: not a per-parameter value.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
pub fn counted(w: Param, g: Grad, last_size: GlobalState) {
    last_size = numel;
    w -= lr * g;
}

fn main() {}
