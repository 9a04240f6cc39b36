// Every feature of the language in one definition: hyperparameters of each kind (float,
// typed float, integer, bool; negative and inclusive bounds), `#[init(hyper)]`,
// `#[init(w)]`, `#[when(option)]`, a scalar state, `#[sparse(lazy)]`, `#[name]`, and
// every element-wise function. `main` checks the generated type against the same
// equations written in plain Rust.
use ndarray::{array, Array2};
use optim_core::{Algorithm, Grads, Optimizer, Params, SparseRule, StateInit};
use optim_macros::optimizer;

/// Kitchen sink.
#[optimizer(
    /// Learning rate.
    lr = 0.1 in 0.0..,
    /// Decay of every running mean.
    beta: f64 = 0.5 in 0.0..1.0,
    /// Warm-up steps.
    warmup: i64 = 2 in 1..,
    /// Keep a running mean of g and divide by the standard deviation.
    centered = false,
    /// Clip of the normalised step.
    clip = 10.0 in 0.0..=100.0,
    /// A negative hyperparameter.
    shift = -1.0 in -2.0..=0.0,
)]
#[sparse(lazy)]
#[name = "everything"]
pub fn every_feature(
    w: Param,
    g: Grad,
    m: State,
    #[init(beta)] acc: State,
    #[when(centered)] a: State,
    #[init(w)] anchor: State,
    #[init(1.0)] prod: ScalarState,
) {
    prod *= beta;
    m = beta * m + (1.0 - beta) * g;
    acc += g * g;
    let den = if centered {
        a = beta * a + (1.0 - beta) * g;
        sqrt(abs(acc - a * a)) + 1e-8
    } else {
        sqrt(acc) + 1e-8
    };
    let ramp = min(t / warmup, 1.0);
    let u = max(min(m / den, clip), -clip);
    anchor = 0.5 * (anchor + w);
    w -= lr * ramp * signum(u) * powf(abs(u), 1.5) / (1.0 - prod);
    w += shift * 1e-3 * exp(-powi(g, 2)) * ln(1.0 + abs(anchor));
}

/// The same equations, one element at a time, in plain Rust.
#[derive(Clone, Copy)]
struct Reference {
    w: f64,
    m: f64,
    acc: f64,
    a: f64,
    anchor: f64,
}

fn reference_step(x: &mut Reference, prod: &mut f64, t: f64, g: f64, centered: bool) {
    let (lr, beta, warmup, clip, shift) = (0.1, 0.5, 2.0, 10.0, -1.0);
    *prod *= beta;
    x.m = beta * x.m + (1.0 - beta) * g;
    x.acc += g * g;
    let den = if centered {
        x.a = beta * x.a + (1.0 - beta) * g;
        (x.acc - x.a * x.a).abs().sqrt() + 1e-8
    } else {
        x.acc.sqrt() + 1e-8
    };
    let ramp = f64::min(t / warmup, 1.0);
    let u = (x.m / den).min(clip).max(-clip);
    x.anchor = 0.5 * (x.anchor + x.w);
    x.w -= lr * ramp * u.signum() * u.abs().powf(1.5) / (1.0 - *prod);
    x.w += shift * 1e-3 * (-(g * g)).exp() * (1.0 + x.anchor.abs()).ln();
}

fn run(centered: bool) {
    let w0: Array2<f64> = array![[0.5, -1.0], [2.0, 0.25]];
    let grads: [Array2<f64>; 3] = [
        array![[0.3, -0.2], [1.5, 0.0]],
        array![[-0.1, 0.4], [0.5, -2.0]],
        array![[0.2, 0.2], [-0.7, 1.0]],
    ];
    let mut opt = EveryFeature::default()
        .centered(centered)
        .build::<f64>()
        .unwrap();
    let mut params = Params::new().with("w", w0.clone()).unwrap();
    let mut refs: Vec<Reference> = w0
        .iter()
        .map(|&w| Reference {
            w,
            m: 0.0,
            acc: 0.5,
            a: 0.0,
            anchor: w,
        })
        .collect();
    let mut prod = 1.0;
    for (t, g) in grads.iter().enumerate() {
        opt.step(&mut params, &Grads::new().with("w", g.clone()))
            .unwrap();
        let mut p = prod;
        for (r, &gi) in refs.iter_mut().zip(g.iter()) {
            p = prod;
            reference_step(r, &mut p, (t + 1) as f64, gi, centered);
        }
        prod = p;
        let got = params.get("w").unwrap();
        for (x, r) in got.iter().zip(&refs) {
            assert!(
                (x - r.w).abs() <= 1e-12 * r.w.abs().max(1.0),
                "{x} vs {}",
                r.w
            );
        }
    }
    let state = opt.export_state();
    let names: Vec<&str> = state.params[0]
        .tensors
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    let expected: &[&str] = if centered {
        &["m", "acc", "a", "anchor"]
    } else {
        &["m", "acc", "anchor"]
    };
    assert_eq!(names, expected);
    assert_eq!(state.params[0].scalars, vec![("prod".to_string(), 0.125)]);
}

fn main() {
    assert_eq!(EveryFeature::NAME, "everything");
    assert_eq!(EveryFeature::SPARSE, SparseRule::Lazy);
    let hypers: Vec<&str> = EveryFeature::HYPERS.iter().map(|h| h.name).collect();
    assert_eq!(
        hypers,
        ["lr", "beta", "warmup", "centered", "clip", "shift", "maximize"]
    );
    assert_eq!(EveryFeature::STATES[2].when, Some("centered"));
    assert_eq!(EveryFeature::STATES[3].init, StateInit::CopyOfParam);
    assert_eq!(EveryFeature::default().state_fill(1), 0.5);
    assert!(EveryFeature::default().shift(-3.0).validate().is_err());
    assert!(EveryFeature::default().clip(100.0).validate().is_ok());
    run(false);
    run(true);

    // Lazy rows: a row without a gradient keeps its weights.
    let mut opt = EveryFeature::default().build::<f64>().unwrap();
    let mut params = Params::new()
        .with("w", array![[1.0, 2.0], [3.0, 4.0]])
        .unwrap();
    let mut grads = Grads::new();
    grads.insert_rows("w", vec![1], array![[0.5, -0.5]]);
    opt.step(&mut params, &grads).unwrap();
    let w = params.get("w").unwrap();
    assert_eq!(w.as_slice().unwrap()[..2], [1.0, 2.0]);
    assert_ne!(w.as_slice().unwrap()[2..], [3.0, 4.0]);
}
