// More per-step conditions than the macro hoists out of the element loop (past five,
// they are evaluated in the loop, so the generated code does not double per option):
// every combination of the eight options still computes exactly these equations.
// (`#[when(o7)]`, `o4`, `o0`, `o1` and `t > 1.0` are hoisted; `o2`, `o3`, `o5` and
// `o6 && t > 2.0` are evaluated in the loop.)
use ndarray::Array1;
use optim_core::{Grads, Optimizer, Params};
use optim_macros::optimizer;

#[optimizer(
    lr = 0.5 in 0.0..,
    decay = 0.9 in 0.0..1.0,
    o0 = false, o1 = false, o2 = false, o3 = false,
    o4 = false, o5 = false, o6 = false, o7 = false,
)]
pub fn many_options(
    w: Param,
    g: Grad,
    m: State,
    #[when(o7)] peak: State,
    #[init(1.0)] scale: ScalarState,
) {
    if o4 {
        scale *= decay;
    }
    if o0 {
        g += 1.0;
    }
    if o1 {
        g *= 2.0;
    }
    if t > 1.0 {
        m = decay * m + g;
    } else {
        m = g;
    }
    if o2 {
        w -= lr * 0.1 * m;
    }
    if o3 {
        w -= lr * 0.2 * m;
    }
    let k = if o5 { 3.0 } else { 1.0 };
    if o6 && t > 2.0 {
        w -= lr * k * g;
    }
    if o7 {
        peak = max(peak, abs(g));
        w -= lr * 0.01 * peak;
    }
    w -= lr * scale * k * 0.05 * m;
}

/// The same equations for one element, in plain Rust.
fn reference(o: [bool; 8], w0: f64, grads: &[f64]) -> f64 {
    let (lr, decay) = (0.5, 0.9);
    let (mut w, mut m, mut peak, mut scale) = (w0, 0.0, 0.0f64, 1.0);
    for (i, &g0) in grads.iter().enumerate() {
        let t = (i + 1) as f64;
        let mut g = g0;
        if o[4] {
            scale *= decay;
        }
        if o[0] {
            g += 1.0;
        }
        if o[1] {
            g *= 2.0;
        }
        m = if t > 1.0 { decay * m + g } else { g };
        if o[2] {
            w -= lr * 0.1 * m;
        }
        if o[3] {
            w -= lr * 0.2 * m;
        }
        let k = if o[5] { 3.0 } else { 1.0 };
        if o[6] && t > 2.0 {
            w -= lr * k * g;
        }
        if o[7] {
            peak = peak.max(g.abs());
            w -= lr * 0.01 * peak;
        }
        w -= lr * scale * k * 0.05 * m;
    }
    w
}

fn main() {
    let w0 = [0.5, -1.5, 2.0];
    let grads = [
        [0.25, -1.0, 0.5],
        [1.5, 0.5, -0.25],
        [-0.75, 2.0, 0.125],
        [0.5, 0.5, -2.0],
    ];
    for bits in 0..256u32 {
        let o: [bool; 8] = std::array::from_fn(|i| bits & (1 << i) != 0);
        let config = ManyOptions::default()
            .o0(o[0])
            .o1(o[1])
            .o2(o[2])
            .o3(o[3])
            .o4(o[4])
            .o5(o[5])
            .o6(o[6])
            .o7(o[7]);
        let mut opt = config.build::<f64>().unwrap();
        let mut params = Params::new().with("w", Array1::from(w0.to_vec())).unwrap();
        for g in &grads {
            opt.step(
                &mut params,
                &Grads::new().with("w", Array1::from(g.to_vec())),
            )
            .unwrap();
        }
        for (j, x) in params.get("w").unwrap().iter().enumerate() {
            let column: Vec<f64> = grads.iter().map(|g| g[j]).collect();
            let expected = reference(o, w0[j], &column);
            assert!(
                (x - expected).abs() <= 1e-12 * expected.abs().max(1.0),
                "{o:?}: {x} vs {expected}"
            );
        }
    }
}
