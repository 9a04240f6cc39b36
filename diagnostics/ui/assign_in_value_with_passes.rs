// With reductions the body is split into passes by statement: assign states in statements.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0.., beta = 0.9 in 0.0..1.0)]
pub fn trust(w: Param, g: Grad, m: State) {
    let u = { m = beta * m + g; m };
    w -= lr * norm(w) / norm(u) * u;
}

fn main() {}
