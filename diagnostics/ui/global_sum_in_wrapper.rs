// A wrapper rule runs per parameter after its inner optimizer: it cannot sum over every parameter.
use optim_macros::optimizer;

#[optimizer(alpha = 0.5 in 0.0..=1.0)]
pub fn recentre(w: Param, #[init(w)] anchor: State) {
    let total = total_sum(w - anchor);
    w -= alpha * total;
}

fn main() {}
