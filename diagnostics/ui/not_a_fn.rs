// `#[optimizer]` goes on a fn holding the equations.
use optim_macros::optimizer;

#[optimizer(lr = 1e-3 in 0.0..)]
pub struct Adam {
    lr: f64,
}

fn main() {}
