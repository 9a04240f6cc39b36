// A state starts from hyperparameters and literals, or a copy of the parameter, not from
// the gradient (there is none before the first step).
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
pub fn warm(w: Param, g: Grad, #[init(g)] m: State) {
    m = 0.9 * m + g;
    w -= lr * m;
}

fn main() {
    let _ = Warm::default();
}
