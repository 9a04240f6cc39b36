// `#[when]` needs its condition in parentheses.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0.., amsgrad = false)]
pub fn ams(w: Param, g: Grad, v: State, #[when = amsgrad] v_max: State) {
    v = 0.999 * v + 0.001 * g * g;
    if amsgrad {
        v_max = max(v_max, v);
    }
    w -= lr * g / (sqrt(v) + 1e-8);
}

fn main() {
    let _ = Ams::default();
}
