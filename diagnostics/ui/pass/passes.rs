//! The second round's features in one definition — reductions, shapes, per-tensor and
//! optimizer-wide states, row and column states, evaluation weights — checked against
//! the same arithmetic written out in plain Rust.

use ndarray::{arr1, arr2};
use optim_core::{Grads, Optimizer, Params};
use optim_macros::optimizer;

#[optimizer(lr = 0.1 in 0.0..)]
#[eval(w + e)]
pub fn everything(
    w: Param,
    g: Grad,
    n: ScalarState,
    total: GlobalState,
    #[when(ndim >= 2)] r: RowState,
    #[when(ndim >= 2)] c: ColState,
    e: State,
) {
    n = norm(g);
    total = total_sum(g * g);
    if ndim >= 2 {
        r = row_sum(g);
        c = col_mean(g);
    }
    let scale = if ndim >= 2 { r + c } else { numel };
    e = g * scale;
    w -= lr * g / n * sqrt(total);
}

fn main() {
    let (gm, gv) = (
        arr2(&[[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]]),
        arr1(&[0.5, -1.5, 2.0]),
    );
    let mut params = Params::<f64>::new()
        .with("m", arr2(&[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]))
        .unwrap()
        .with("v", arr1(&[1.0, 2.0, 3.0]))
        .unwrap();
    let before = params.clone();
    let grads = Grads::new().with("m", gm.clone()).with("v", gv.clone());
    let mut opt = Everything::default().build::<f64>().unwrap();
    opt.step(&mut params, &grads).unwrap();
    let eval = opt.eval_params(&params).unwrap();

    let total: f64 = gm.iter().chain(gv.iter()).map(|x| x * x).sum();
    let close = |a: f64, b: f64| assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
    let norm_m = gm.iter().map(|x| x * x).sum::<f64>().sqrt();
    for i in 0..2 {
        let row: f64 = (0..3).map(|j| gm[[i, j]]).sum();
        for j in 0..3 {
            let col = (gm[[0, j]] + gm[[1, j]]) / 2.0;
            let g = gm[[i, j]];
            let w = before.get("m").unwrap()[[i, j]] - 0.1 * g / norm_m * total.sqrt();
            close(params.get("m").unwrap()[[i, j]], w);
            close(eval.get("m").unwrap()[[i, j]], w + g * (row + col));
        }
    }
    let norm_v = gv.iter().map(|x| x * x).sum::<f64>().sqrt();
    for k in 0..3 {
        let g = gv[k];
        let w = before.get("v").unwrap()[[k]] - 0.1 * g / norm_v * total.sqrt();
        close(params.get("v").unwrap()[[k]], w);
        close(eval.get("v").unwrap()[[k]], w + g * 3.0);
    }
    let state = opt.export_state();
    assert_eq!(state.globals, vec![("total".to_string(), total)]);
    let n_of = |p: &str| state.params.iter().find(|s| s.param == p).unwrap().scalars[0].1;
    close(n_of("m"), norm_m);
    close(n_of("v"), norm_v);
}
