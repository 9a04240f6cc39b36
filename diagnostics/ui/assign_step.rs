// `t` is the runtime's step count.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
pub fn sgd_step(w: Param, g: Grad) {
    t += 1.0;
    w -= lr / t * g;
}

fn main() {
    let _ = SgdStep::default();
}
