// An optimizer must move its parameter.
use optim_macros::optimizer;

#[optimizer(beta = 0.9 in 0.0..1.0)]
pub fn frozen(w: Param, g: Grad, m: State) {
    m = beta * m + (1.0 - beta) * g;
}

fn main() {
    let _ = Frozen::default();
}
