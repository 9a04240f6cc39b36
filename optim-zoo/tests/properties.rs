//! Property tests over the whole zoo (and Lookahead around each): for random shapes,
//! values and hyperparameters in range,
//!
//! * a step never panics (NaN and inf in gradients included, under the default policy);
//! * a step that returns an error leaves parameters and state exactly as they were;
//! * a sparse-row gradient with repeated rows steps exactly like the dense gradient with
//!   those rows summed (like the distinct, summed rows for the lazy LazyAdam).

use ndarray::{Array2, ArrayD};
use optim_core::checkpoint::to_bytes;
use optim_core::{
    Bound, Grad, Grads, HyperKind, HyperSpec, NonFinitePolicy, OptimError, Optimizer, Params,
    Scalar,
};
use optim_test_support::{bits, steps_matrices_only, zoo_names, SplitMix64};
use optim_zoo::Registry;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Every registry entry that is an optimizer on its own, from the registry itself.
/// Lookahead needs an inner one (it is drawn around the others); `partition` needs
/// routes, and a matrices-only optimizer (Muon) a route for the rest: both have their
/// own tests (tests/partition.rs).
fn names() -> Vec<&'static str> {
    let mut names = zoo_names();
    names.retain(|&n| n != "lookahead" && !steps_matrices_only(n));
    names
}

/// Seeded values (the shared SplitMix64), so a failing case shrinks to a seed.
struct Values(SplitMix64);

impl Values {
    fn new(seed: u64) -> Self {
        Values(SplitMix64::new(seed))
    }
    /// Mostly uniform in [-10, 10); with `specials`, now and then NaN, ±inf, ±0 or an
    /// extreme magnitude.
    fn value(&mut self, specials: bool) -> f64 {
        if specials && self.0.next_u64().is_multiple_of(25) {
            let s = [
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                0.0,
                -0.0,
                1e30,
                -1e-30,
            ];
            return s[(self.0.next_u64() % s.len() as u64) as usize];
        }
        self.0.unit() * 20.0 - 10.0
    }
    fn array<T: Scalar>(&mut self, shape: &[usize], specials: bool) -> ArrayD<T> {
        let n = shape.iter().product();
        ArrayD::from_shape_vec(
            shape,
            (0..n).map(|_| T::from_f64(self.value(specials))).collect(),
        )
        .unwrap()
    }
}

/// A value of `spec` inside its declared range, from `u` in [0, 1); `edge` picks the
/// lower end when it is valid.
fn in_range(spec: &HyperSpec, u: f64, edge: bool) -> Value {
    match spec.kind {
        HyperKind::Bool => json!(u < 0.5),
        HyperKind::Int => {
            let lo = match spec.range.lo {
                Bound::Inclusive(l) => l as i64,
                Bound::Exclusive(l) => l as i64 + 1,
                Bound::Unbounded => 0,
            };
            json!(lo + (u * 10.0) as i64)
        }
        HyperKind::Float => {
            let (lo, lo_ok) = match spec.range.lo {
                Bound::Inclusive(l) => (l, true),
                Bound::Exclusive(l) => (l, false),
                Bound::Unbounded => (-1.0, true),
            };
            // An infinite end (`1.0..=inf`) is drawn from as an open one.
            let hi = match spec.range.hi {
                Bound::Inclusive(h) | Bound::Exclusive(h) if h.is_finite() => h,
                _ => lo + 1.0,
            };
            if edge && lo_ok {
                return json!(lo);
            }
            let x = lo + u * (hi - lo);
            json!(if x <= lo && !lo_ok {
                lo + (hi - lo) * 1e-3
            } else {
                x
            })
        }
    }
}

/// The config of `name` (Lookahead around it when `wrap`), every hyperparameter drawn
/// in range.
fn config(name: &str, wrap: Option<(f64, f64)>, us: &[(f64, bool)]) -> Value {
    let reg = Registry::zoo();
    let mut m = Map::new();
    m.insert("optimizer".into(), json!(name));
    let specs = reg.find(name).unwrap().hypers;
    for (spec, &(u, edge)) in specs.iter().zip(us.iter().cycle()) {
        m.insert(spec.name.into(), in_range(spec, u, edge));
    }
    match wrap {
        None => Value::Object(m),
        Some((k, alpha)) => json!({
            "optimizer": "lookahead",
            "k": 1 + (k * 6.0) as i64,
            "alpha": alpha,
            "inner": Value::Object(m),
        }),
    }
}

fn build<T: Scalar>(config: &Value) -> Box<dyn Optimizer<T>> {
    match Registry::zoo().build::<T>(config) {
        Ok(o) => o,
        Err(e) => panic!("{config}: in-range hyperparameters rejected: {e}"),
    }
}

fn shapes() -> impl Strategy<Value = Vec<Vec<usize>>> {
    prop::collection::vec(prop::collection::vec(0usize..5, 1..4), 1..4)
}

fn params<T: Scalar>(shapes: &[Vec<usize>], v: &mut Values) -> Params<T> {
    let mut p = Params::new();
    for (i, s) in shapes.iter().enumerate() {
        p.insert(format!("p{i}"), v.array::<T>(s, false)).unwrap();
    }
    p
}

/// Gradients for a random subset of the parameters; 2-D ones sometimes as sparse rows.
fn grads<T: Scalar>(p: &Params<T>, v: &mut Values, specials: bool) -> Grads<T> {
    let mut g = Grads::new();
    for (name, a) in p.iter() {
        if v.0.below(4) == 0 {
            continue;
        }
        match a.shape() {
            &[rows, width] if rows > 0 && v.0.below(2) == 0 => {
                let n = 1 + v.0.below(6);
                let idx: Vec<usize> = (0..n).map(|_| v.0.below(rows)).collect();
                let values: Array2<T> = v
                    .array::<T>(&[n, width], specials)
                    .into_dimensionality()
                    .unwrap();
                g.insert_rows(name, idx, values);
            }
            shape => g.insert(name, v.array::<T>(shape, specials)),
        }
    }
    g
}

fn state(opt: &dyn Optimizer<impl Scalar>) -> Vec<u8> {
    to_bytes(&opt.export_state()).unwrap()
}

/// Shared inputs of the properties: optimizer name, Lookahead (k, alpha) around it or not, draws for its hyperparameters
/// (value in [0, 1), take the lower end), parameter shapes, and the seed of all values.
type Setup = (
    &'static str,
    Option<(f64, f64)>,
    Vec<(f64, bool)>,
    Vec<Vec<usize>>,
    u64,
);

/// Draws a [`Setup`].
fn setup() -> impl Strategy<Value = Setup> {
    (
        prop::sample::select(names()),
        prop::option::of((0.0..1.0f64, 0.0..=1.0f64)),
        prop::collection::vec((0.0..1.0f64, prop::bool::weighted(0.1)), 16),
        shapes(),
        any::<u64>(),
    )
}

/// The ways a gradient can be wrong; each leaves everything unchanged.
#[derive(Clone, Copy, Debug)]
enum Bad {
    UnknownName,
    WrongShape,
    RowOutOfBounds,
    RowsOnNon2D,
    RowValuesWrongWidth,
    NonFiniteUnderError,
}

fn run_never_panics<T: Scalar>(
    name: &str,
    wrap: Option<(f64, f64)>,
    us: &[(f64, bool)],
    shapes: &[Vec<usize>],
    seed: u64,
) {
    let cfg = config(name, wrap, us);
    let mut opt = build::<T>(&cfg);
    let mut v = Values::new(seed);
    let mut p = params::<T>(shapes, &mut v);
    for _ in 0..4 {
        let g = grads(&p, &mut v, true);
        if let Err(e) = opt.step(&mut p, &g) {
            panic!("{cfg}: a well-formed step failed: {e}");
        }
    }
}

fn run_failed_step_changes_nothing<T: Scalar>(
    name: &str,
    wrap: Option<(f64, f64)>,
    us: &[(f64, bool)],
    shapes: &[Vec<usize>],
    seed: u64,
    bad: Bad,
) {
    let cfg = config(name, wrap, us);
    let mut opt = build::<T>(&cfg);
    let mut v = Values::new(seed);
    let mut p = params::<T>(shapes, &mut v);
    for _ in 0..2 {
        let g = grads(&p, &mut v, false);
        opt.step(&mut p, &g).unwrap();
    }
    // Good gradients for every parameter, then the bad one last: nothing may be applied.
    let mut g = Grads::new();
    for (n, a) in p.iter() {
        g.insert(n, v.array::<T>(a.shape(), false));
    }
    let first = p.names().next().unwrap().to_string();
    let shape = p.get(&first).unwrap().shape().to_vec();
    let want: fn(&OptimError) -> bool = match bad {
        Bad::UnknownName => {
            g.insert("no_such_param", v.array::<T>(&[2], false));
            |e| matches!(e, OptimError::UnknownParam { .. })
        }
        Bad::WrongShape => {
            let mut s = shape.clone();
            s.push(2);
            g.insert(first.as_str(), v.array::<T>(&s, false));
            |e| matches!(e, OptimError::ShapeMismatch { .. })
        }
        Bad::RowOutOfBounds | Bad::RowsOnNon2D | Bad::RowValuesWrongWidth => {
            let (rows, width) = match shape[..] {
                [r, w] => (r, w),
                _ => (1, 1),
            };
            let (idx, w) = match bad {
                Bad::RowOutOfBounds => (vec![0, rows], width),
                Bad::RowValuesWrongWidth => (vec![0, 0], width + 1),
                _ => (vec![0, 0], width),
            };
            if matches!(bad, Bad::RowsOnNon2D) && shape.len() == 2 {
                // Make the target 1-D or 3-D instead: a fresh parameter.
                p.insert("flat", v.array::<T>(&[3], false)).unwrap();
                let values: Array2<T> = v.array::<T>(&[2, 3], false).into_dimensionality().unwrap();
                g.insert_rows("flat", vec![0, 1], values);
            } else {
                let values: Array2<T> = v
                    .array::<T>(&[idx.len(), w], false)
                    .into_dimensionality()
                    .unwrap();
                g.insert_rows(first.as_str(), idx, values);
            }
            |e| matches!(e, OptimError::BadSparse { .. })
        }
        Bad::NonFiniteUnderError => {
            opt.set_non_finite_policy(NonFinitePolicy::Error).unwrap();
            let mut a = v.array::<T>(&[3], false);
            a[1] = T::nan();
            p.insert("nan", ArrayD::<T>::zeros(vec![3])).unwrap();
            g.insert("nan", a);
            |e| matches!(e, OptimError::NonFiniteGrad { index: 1, .. })
        }
    };
    let (p0, s0) = (bits(&p), state(opt.as_ref()));
    let err = opt
        .step(&mut p, &g)
        .expect_err("a bad gradient must fail the step");
    assert!(want(&err), "{cfg} {bad:?}: unexpected error {err}");
    assert_eq!(bits(&p), p0, "{cfg} {bad:?}: parameters changed");
    assert_eq!(state(opt.as_ref()), s0, "{cfg} {bad:?}: state changed");
}

fn run_sparse_equals_dense<T: Scalar>(
    name: &str,
    wrap: Option<(f64, f64)>,
    us: &[(f64, bool)],
    rows: usize,
    width: usize,
    seed: u64,
) {
    let cfg = config(name, wrap, us);
    let lazy = name == "lazyadam";
    let mut sparse = build::<T>(&cfg);
    let mut summed = build::<T>(&cfg);
    let mut v = Values::new(seed);
    let mut p = Params::new()
        .with("emb", v.array::<T>(&[rows, width], false))
        .unwrap();
    let mut q = p.clone();
    for _ in 0..3 {
        let n = 1 + v.0.below(8);
        let idx: Vec<usize> = (0..n).map(|_| v.0.below(rows)).collect();
        let values: Array2<T> = v
            .array::<T>(&[n, width], false)
            .into_dimensionality()
            .unwrap();
        // The same rows summed in the order they appear: into a zero dense gradient
        // (densifying optimizers), or as distinct increasing rows (lazy ones).
        let mut dense = Array2::<T>::zeros((rows, width));
        for (k, &r) in idx.iter().enumerate() {
            for c in 0..width {
                dense[[r, c]] = dense[[r, c]] + values[[k, c]];
            }
        }
        let mut expected = Grads::new();
        if lazy {
            let mut distinct: Vec<usize> = idx.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let mut sums = Array2::<T>::zeros((distinct.len(), width));
            for (i, &r) in distinct.iter().enumerate() {
                let mut first = true;
                for (k, _) in idx.iter().enumerate().filter(|(_, &x)| x == r) {
                    for c in 0..width {
                        sums[[i, c]] = if first {
                            values[[k, c]]
                        } else {
                            sums[[i, c]] + values[[k, c]]
                        };
                    }
                    first = false;
                }
            }
            expected.insert_rows("emb", distinct, sums);
        } else {
            expected.insert("emb", dense.into_dyn());
        }
        let mut g = Grads::new();
        g.insert_rows("emb", idx, values);
        sparse.step(&mut p, &g).unwrap();
        summed.step(&mut q, &expected).unwrap();
        assert_eq!(
            bits(&p),
            bits(&q),
            "{cfg}: {:?}",
            g.get("emb").map(|g| match g {
                Grad::Rows { rows, .. } => rows.clone(),
                Grad::Dense(_) => vec![],
            })
        );
    }
    assert_eq!(state(sparse.as_ref()), state(summed.as_ref()), "{cfg}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_step_never_panics((name, wrap, us, shapes, seed) in setup(), f64_ in any::<bool>()) {
        if f64_ {
            run_never_panics::<f64>(name, wrap, &us, &shapes, seed);
        } else {
            run_never_panics::<f32>(name, wrap, &us, &shapes, seed);
        }
    }

    #[test]
    fn a_failed_step_changes_nothing(
        (name, wrap, us, shapes, seed) in setup(),
        bad in prop::sample::select(vec![
            Bad::UnknownName, Bad::WrongShape, Bad::RowOutOfBounds, Bad::RowsOnNon2D,
            Bad::RowValuesWrongWidth, Bad::NonFiniteUnderError,
        ]),
        f64_ in any::<bool>(),
    ) {
        if f64_ {
            run_failed_step_changes_nothing::<f64>(name, wrap, &us, &shapes, seed, bad);
        } else {
            run_failed_step_changes_nothing::<f32>(name, wrap, &us, &shapes, seed, bad);
        }
    }

    #[test]
    fn repeated_sparse_rows_equal_summed_rows(
        (name, wrap, us, _, seed) in setup(),
        rows in 1usize..6,
        width in 1usize..4,
        f64_ in any::<bool>(),
    ) {
        if f64_ {
            run_sparse_equals_dense::<f64>(name, wrap, &us, rows, width, seed);
        } else {
            run_sparse_equals_dense::<f32>(name, wrap, &us, rows, width, seed);
        }
    }
}
