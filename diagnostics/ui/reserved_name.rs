// `t` is the step count the runtime provides; a state cannot take its name.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
pub fn counting(w: Param, g: Grad, t: ScalarState) {
    t += 1.0;
    w -= lr * g / t;
}

fn main() {
    let _ = Counting::default();
}
