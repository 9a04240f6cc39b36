// A state that is read but never assigned would stay zero forever.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0.., beta = 0.9 in 0.0..1.0)]
pub fn stale(w: Param, g: Grad, m: State) {
    w -= lr * (beta * m + g);
}

fn main() {
    let _ = Stale::default();
}
