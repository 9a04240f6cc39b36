// A matrix function works on a parameter-shaped value, not on a number.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
pub fn orthogonal(w: Param, g: Grad) {
    let o = newton_schulz(lr, 5, 3.4445, -4.775, 2.0315, 1e-7);
    w -= o * g;
}

fn main() {}
