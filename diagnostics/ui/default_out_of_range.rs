// The default must lie in the declared range.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0.., beta1 = 1.5 in 0.0..1.0)]
pub fn ema(w: Param, g: Grad, m: State) {
    m = beta1 * m + (1.0 - beta1) * g;
    w -= lr * m;
}

fn main() {
    let _ = Ema::default();
}
