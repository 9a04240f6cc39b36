// A state may not reuse a hyperparameter's name.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0.., momentum = 0.9 in 0.0..1.0)]
pub fn heavy_ball(w: Param, g: Grad, momentum: State) {
    momentum = 0.9 * momentum + g;
    w -= lr * momentum;
}

fn main() {
    let _ = HeavyBall::default();
}
