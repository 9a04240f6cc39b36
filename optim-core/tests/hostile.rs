//! Issue 13, "Tried as a hostile user would": each test is one way a user broke the
//! runtime, checked against what the user is owed (worked out by hand, not by the code
//! under test).

mod common;

use common::*;
use ndarray::{arr1, arr2, Array2};
use optim_core::clip::{clip_grad_norm, grad_norm};
use optim_core::optim::Optim;
use optim_core::schedule::Schedule;
use optim_core::wrapper::Wrapped;
use optim_core::*;
use optim_macros::optimizer;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------
// Peak heap use of a closure, on this thread (the tests of this file run in parallel, each
// on its own thread).

struct Measuring;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grew(bytes: isize) {
    let live = LIVE.with(|l| {
        l.set(l.get() + bytes);
        l.get()
    });
    PEAK.with(|p| p.set(p.get().max(live)));
}

unsafe impl GlobalAlloc for Measuring {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        grew(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Measuring = Measuring;

/// What `f` returns, and the most heap it held at once beyond what was live before.
fn peak_bytes<R>(f: impl FnOnce() -> R) -> (R, isize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    (out, PEAK.with(Cell::get) - start)
}

// ---------------------------------------------------------------------------------------
// 1. Infinity is not in `lo..`.

/// The values of parameter `name`, in f64.
fn values<T: Scalar>(params: &Params<T>, name: &str) -> Vec<f64> {
    params
        .get(name)
        .unwrap()
        .iter()
        .map(|&x| x.to_f64())
        .collect()
}

/// SGD with momentum whose per-element step is clamped to ±`max_step`: one hyperparameter
/// per kind of range, and a bound that may be infinite (its default).
#[optimizer(
    /// Learning rate.
    lr = 0.5 in 0.0..,
    /// Momentum.
    momentum = 0.0 in 0.0..1.0,
    /// L2 weight decay.
    weight_decay = 0.0 in 0.0..,
    /// Added to the divisor of the step.
    eps = 1e-8 in 0.0<..,
    /// Largest step of one element; `inf` for no clamp.
    max_step = inf in 0.0<..=inf,
)]
fn clamped_sgd(w: Param, g: Grad, b: State) {
    b = momentum * b + g + weight_decay * w;
    w -= clamp(lr * b / (1.0 + eps), -max_step, max_step);
}

#[test]
fn infinity_is_refused_by_every_range_that_does_not_end_in_an_inclusive_inf() {
    let err = ClampedSgd::default()
        .lr(f64::INFINITY)
        .build::<f64>()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "clamped_sgd: invalid lr value inf: must be in [0, inf)"
    );
    let mut opt = ClampedSgd::default().build::<f64>().unwrap();
    for name in ["lr", "momentum", "weight_decay", "eps"] {
        for x in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            let err = opt.set_hyper(name, x.into()).unwrap_err();
            assert!(
                matches!(&err, OptimError::HyperRange { name: n, .. } if n == name),
                "{name} = {x}: {err}"
            );
        }
    }
    // Nothing changed: one step is w ← w − lr·g/(1 + eps) = 1 − 0.5/(1 + 1e-8), finite.
    let mut params = Params::new().with("w", arr1(&[1.0f64])).unwrap();
    opt.step(&mut params, &Grads::new().with("w", arr1(&[1.0])))
        .unwrap();
    assert_eq!(values(&params, "w"), [1.0 - 0.5 / (1.0 + 1e-8)]);

    // The same through a hand-written spec (what registries and configs check against).
    let mut sgd = Optim::<Sgd, f64>::new(Sgd::default()).unwrap();
    assert!(sgd.set_hyper("weight_decay", f64::INFINITY.into()).is_err());
    assert!(Optim::<Sgd, f64>::new(Sgd::default().lr(f64::INFINITY)).is_err());
    let below_one = Range {
        lo: Bound::Unbounded,
        hi: Bound::Exclusive(1.0),
    };
    assert!(!below_one.contains(f64::NEG_INFINITY));
    assert!(below_one.contains(-1e308));
}

#[test]
fn a_range_ending_in_an_inclusive_inf_takes_infinity() {
    let spec = ClampedSgd::HYPERS
        .iter()
        .find(|s| s.name == "max_step")
        .unwrap();
    assert_eq!(spec.range.to_string(), "(0, inf]");
    assert_eq!(spec.default, HyperValue::Float(f64::INFINITY));
    let mut opt = ClampedSgd::default().build::<f64>().unwrap();
    opt.set_hyper("max_step", 0.1.into()).unwrap();
    opt.set_hyper("max_step", f64::INFINITY.into()).unwrap();
    assert_eq!(opt.hyper("max_step").unwrap(), f64::INFINITY.into());
    assert!(opt.set_hyper("max_step", f64::NAN.into()).is_err());
    // An unclamped step: 1 − 0.5·4/(1 + 1e-8).
    let mut params = Params::new().with("w", arr1(&[1.0f64])).unwrap();
    opt.step(&mut params, &Grads::new().with("w", arr1(&[4.0])))
        .unwrap();
    assert_eq!(values(&params, "w"), [1.0 - 2.0 / (1.0 + 1e-8)]);
}

// ---------------------------------------------------------------------------------------
// 2. A parameter skipped on its first step, under Lookahead.

fn lookahead(k: i64, inner: Box<dyn Optimizer<f64>>) -> Wrapped<Lookahead, f64> {
    Wrapped::new(Lookahead { k, alpha: 0.5 }, inner).unwrap()
}

fn sgd(lr: f64) -> Box<dyn Optimizer<f64>> {
    Box::new(Optim::<Sgd, f64>::new(Sgd::default().lr(lr)).unwrap())
}

/// Through the checkpoint format and back.
fn via_bytes(state: &OptimizerState) -> OptimizerState {
    checkpoint::from_bytes(&checkpoint::to_bytes(state).unwrap()).unwrap()
}

#[test]
fn lookahead_loads_its_own_state_after_a_parameter_is_skipped_on_its_first_step() {
    let mut params = Params::new()
        .with("a", arr1(&[1.0, 2.0]))
        .unwrap()
        .with("b", arr1(&[3.0]))
        .unwrap();
    let mut opt = lookahead(2, sgd(0.5));
    opt.set_non_finite_policy(NonFinitePolicy::SkipParam)
        .unwrap();
    let bad_a = Grads::new()
        .with("a", arr1(&[f64::NAN, 1.0]))
        .with("b", arr1(&[1.0]));
    opt.step(&mut params, &bad_a).unwrap();
    assert_eq!(opt.skipped(), ["a"]);
    assert_eq!(values(&params, "a"), [1.0, 2.0]);

    let saved = opt.export_state();
    let mut same = opt.clone();
    same.import_state(&saved, &params).unwrap();
    let mut fresh = lookahead(2, sgd(0.5));
    fresh.import_state(&via_bytes(&saved), &params).unwrap();
    assert_eq!(fresh.export_state(), saved);

    // Every copy goes on as the original. Step 2 is a sync (k = 2): `a`'s slow weights
    // start where `a` was, [1, 2] (the skipped step left it there); its fast weights are
    // [1, 2] − 0.5 = [0.5, 1.5], so a = [1, 2] + 0.5·([0.5, 1.5] − [1, 2]) = [0.75, 1.75].
    // `b`: 3 → 2.5 → 2, slow 3 + 0.5·(2 − 3) = 2.5.
    let good = Grads::new()
        .with("a", arr1(&[1.0, 1.0]))
        .with("b", arr1(&[1.0]));
    let mut ends = Vec::new();
    for o in [&mut opt, &mut same, &mut fresh] {
        let mut p = params.clone();
        o.step(&mut p, &good).unwrap();
        assert_eq!(values(&p, "a"), [0.75, 1.75]);
        assert_eq!(values(&p, "b"), [2.5]);
        ends.push(o.export_state());
    }
    assert!(ends.iter().all(|e| *e == ends[0]));
}

/// An inner optimizer that fails its steps while `fail` is set (as an optimizer of the
/// user's own may, after its `check` passed).
#[derive(Debug)]
struct Flaky {
    inner: Optim<Sgd, f64>,
    fail: Arc<AtomicBool>,
}

impl Optimizer<f64> for Flaky {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn hyper_specs(&self) -> &'static [HyperSpec] {
        self.inner.hyper_specs()
    }
    fn hyper(&self, name: &str) -> Result<HyperValue> {
        self.inner.hyper(name)
    }
    fn set_hyper(&mut self, name: &str, value: HyperValue) -> Result<()> {
        self.inner.set_hyper(name, value)
    }
    fn add_group(&mut self, group: Group) -> Result<()> {
        self.inner.add_group(group)
    }
    fn check(&self, params: &Params<f64>, grads: &Grads<f64>) -> Result<()> {
        self.inner.check(params, grads)
    }
    fn step(&mut self, params: &mut Params<f64>, grads: &Grads<f64>) -> Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(OptimError::Config("flaky: refused".into()));
        }
        self.inner.step(params, grads)
    }
    fn step_count(&self, name: &str) -> Option<u64> {
        self.inner.step_count(name)
    }
    fn export_state(&self) -> OptimizerState {
        self.inner.export_state()
    }
    fn import_state(&mut self, state: &OptimizerState, params: &Params<f64>) -> Result<()> {
        self.inner.import_state(state, params)
    }
    fn boxed_clone(&self) -> Box<dyn Optimizer<f64>> {
        Box::new(Flaky {
            inner: self.inner.clone(),
            fail: self.fail.clone(),
        })
    }
    fn set_non_finite_policy(&mut self, policy: NonFinitePolicy) -> Result<()> {
        self.inner.set_non_finite_policy(policy)
    }
    fn non_finite_policy(&self) -> NonFinitePolicy {
        self.inner.non_finite_policy()
    }
    fn skipped(&self) -> &[String] {
        self.inner.skipped()
    }
}

#[test]
fn a_failed_inner_step_leaves_lookahead_exactly_as_it_was() {
    let fail = Arc::new(AtomicBool::new(false));
    let inner = Flaky {
        inner: Optim::new(Sgd::default().lr(0.5)).unwrap(),
        fail: fail.clone(),
    };
    let mut opt = lookahead(2, Box::new(inner));
    opt.set_non_finite_policy(NonFinitePolicy::SkipParam)
        .unwrap();
    let mut params = Params::new()
        .with("a", arr1(&[1.0]))
        .unwrap()
        .with("b", arr1(&[3.0]))
        .unwrap();
    let bad_a = Grads::new()
        .with("a", arr1(&[f64::NAN]))
        .with("b", arr1(&[1.0]));
    opt.step(&mut params, &bad_a).unwrap();
    let before = (opt.export_state(), params.clone());

    // A new parameter too: its rule state must not outlive the failed step either.
    params.insert("c", arr1(&[5.0])).unwrap();
    let good = Grads::new()
        .with("a", arr1(&[1.0]))
        .with("b", arr1(&[1.0]))
        .with("c", arr1(&[1.0]));
    fail.store(true, Ordering::SeqCst);
    assert!(opt.step(&mut params, &good).is_err());
    assert_eq!(opt.export_state(), before.0);
    assert_eq!(opt.steps(), 1);
    assert_eq!(values(&params, "a"), values(&before.1, "a"));
    assert_eq!(values(&params, "b"), values(&before.1, "b"));
    assert_eq!(values(&params, "c"), [5.0]);
    let mut fresh = lookahead(2, sgd(0.5));
    fresh.import_state(&opt.export_state(), &params).unwrap();
}

// ---------------------------------------------------------------------------------------
// 3. A copy-of-the-parameter state switched on mid-training.

/// SGD that, while `anchored`, pulls each weight back towards where it was when
/// `anchored` was switched on.
#[optimizer(
    /// Learning rate.
    lr = 0.5 in 0.0..,
    /// Pull the weights back towards their anchor.
    anchored = false,
    /// Fraction of the distance to the anchor taken back per step.
    pull = 0.5 in 0.0..=1.0,
)]
fn anchored_sgd(
    w: Param,
    g: Grad,
    #[when(anchored)]
    #[init(w)]
    anchor: State,
) {
    w -= lr * g;
    if anchored {
        w -= pull * (w - anchor);
    }
}

#[test]
fn a_copy_of_the_parameter_switched_on_mid_training_saves_and_loads() {
    let mut params = Params::new().with("w", arr1(&[1.0f64, -2.0])).unwrap();
    let grads = Grads::new().with("w", arr1(&[1.0, 2.0]));
    let mut opt = AnchoredSgd::default().build::<f64>().unwrap();
    opt.step(&mut params, &grads).unwrap(); // w = [0.5, −3]
    opt.set_hyper("anchored", true.into()).unwrap();

    let saved = opt.export_state();
    let mut fresh = AnchoredSgd::default().build::<f64>().unwrap();
    fresh.import_state(&via_bytes(&saved), &params).unwrap();
    assert_eq!(fresh.export_state(), saved);
    let mut same = opt.clone();
    same.import_state(&saved, &params).unwrap();

    // The anchor is the weights at the first anchored step, [0.5, −3]; that step moves
    // them to [0, −4], then back half-way: [0.25, −3.5].
    let mut ends = Vec::new();
    for o in [&mut opt, &mut fresh, &mut same] {
        let mut p = params.clone();
        o.step(&mut p, &grads).unwrap();
        assert_eq!(values(&p, "w"), [0.25, -3.5]);
        ends.push(o.export_state());
    }
    assert!(ends.iter().all(|e| *e == ends[0]));
    assert!(ends[0].params[0].tensors.iter().any(|t| t.name == "anchor"));
}

// ---------------------------------------------------------------------------------------
// 4. Repeated sparse rows whose sum overflows.

fn embedding() -> Params<f32> {
    Params::new()
        .with("emb", Array2::<f32>::zeros((3, 2)))
        .unwrap()
}

/// Row 2 twice with f32::MAX in its first column: the summed gradient is inf there
/// (parameter element 2·2 + 0 = 4), though every value given is finite.
fn overflowing_rows() -> Grads<f32> {
    let mut grads = Grads::new();
    grads.insert_rows(
        "emb",
        vec![2, 0, 2],
        arr2(&[[f32::MAX, 1.0], [1.0, 1.0], [f32::MAX, 1.0]]),
    );
    grads
}

fn sparse_optimizers() -> Vec<Box<dyn Optimizer<f32>>> {
    vec![
        Box::new(Optim::<Sgd, f32>::new(Sgd::default().momentum(0.9)).unwrap()),
        Box::new(Optim::<LazySgd, f32>::new(LazySgd::default().momentum(0.9)).unwrap()),
    ]
}

#[test]
fn the_error_policy_checks_the_summed_sparse_rows() {
    for mut opt in sparse_optimizers() {
        opt.set_non_finite_policy(NonFinitePolicy::Error).unwrap();
        let mut params = embedding();
        let err = opt.step(&mut params, &overflowing_rows()).unwrap_err();
        assert_eq!(
            err,
            OptimError::NonFiniteGrad {
                name: "emb".into(),
                index: 4,
                value: f64::INFINITY
            },
            "{}",
            opt.name()
        );
        assert_eq!(params, embedding());
        assert_eq!(opt.step_count("emb"), None);
        assert!(opt.check(&params, &overflowing_rows()).is_err());
    }
}

#[test]
fn the_skip_policy_skips_a_parameter_whose_summed_rows_overflow() {
    for mut opt in sparse_optimizers() {
        opt.set_non_finite_policy(NonFinitePolicy::SkipParam)
            .unwrap();
        let mut params = embedding();
        opt.step(&mut params, &overflowing_rows()).unwrap();
        assert_eq!(opt.skipped(), ["emb"], "{}", opt.name());
        assert_eq!(params, embedding());
        assert_eq!(opt.step_count("emb"), None);
        assert!(opt.export_state().params.is_empty());
    }
}

#[test]
fn sparse_rows_whose_sums_stay_finite_are_stepped() {
    // MAX − MAX + MAX = MAX in the order given, and 1 + 1 = 2: finite, so stepped
    // (lr 1e-3: the row moves by −1e-3 times its summed gradient).
    for mut opt in sparse_optimizers() {
        opt.set_non_finite_policy(NonFinitePolicy::Error).unwrap();
        let mut params = embedding();
        let mut grads = Grads::new();
        grads.insert_rows(
            "emb",
            vec![1, 1, 1],
            arr2(&[[f32::MAX, 1.0], [-f32::MAX, 0.0], [f32::MAX, 1.0]]),
        );
        opt.step(&mut params, &grads).unwrap();
        let emb = values(&params, "emb");
        assert_eq!(emb[2], -(1e-3f32 * f32::MAX) as f64, "{}", opt.name());
        assert_eq!(emb[3], -(1e-3f32 * 2.0) as f64);
    }
}

// ---------------------------------------------------------------------------------------
// 5. Clipping finite gradients whose squares overflow or underflow.

/// `a` and `b` agree to within `ulps` units in the last place of `b`.
fn close(a: f64, b: f64, ulps: f64) -> bool {
    (a - b).abs() <= ulps * f64::EPSILON * b.abs()
}

#[test]
fn clip_grad_norm_clips_f64_gradients_whose_squares_overflow() {
    let mut grads = Grads::new()
        .with("a", arr1(&[1e200f64, 1e200]))
        .with("b", arr1(&[-1e200f64]));
    let total = clip_grad_norm(&mut grads, 1.0).unwrap();
    let want = 1e200 * 3f64.sqrt();
    assert!(close(total, want, 4.0), "{total} vs {want}");
    // Every element is now 1e200/(√3·1e200) = 1/√3, up to the 1e-6 of the divisor.
    for (name, grad) in grads.iter() {
        let Grad::Dense(g) = grad else { panic!() };
        for &x in g {
            assert!((x.abs() - 1.0 / 3f64.sqrt()).abs() < 1e-12, "{name}: {x}");
        }
    }
    assert!((grad_norm(&grads) - 1.0).abs() < 1e-12);

    // Repeated sparse rows: row 0 is 1e200 + 1e200 = 2e200.
    let mut grads = Grads::<f64>::new();
    grads.insert_rows("emb", vec![0, 0], arr2(&[[1e200], [1e200]]));
    assert!(close(grad_norm(&grads), 2e200, 4.0));
}

#[test]
fn grad_norm_of_tiny_gradients_is_not_zero() {
    // 3e-200 and 4e-200: squares underflow, the norm is 5e-200.
    let mut grads = Grads::new().with("a", arr1(&[3e-200f64, 4e-200]));
    assert!(close(grad_norm(&grads), 5e-200, 4.0));
    let total = clip_grad_norm(&mut grads, 0.0).unwrap();
    assert!(close(total, 5e-200, 4.0));
    assert_eq!(
        grads.get("a"),
        Some(&Grad::Dense(arr1(&[0.0, 0.0]).into_dyn()))
    );
}

#[test]
fn grad_norm_still_reports_non_finite_gradients() {
    let grads = Grads::new().with("a", arr1(&[1e200f64, f64::INFINITY]));
    assert_eq!(grad_norm(&grads), f64::INFINITY);
    let grads = Grads::new().with("a", arr1(&[1e200f64, f64::NAN, 1e200]));
    assert!(grad_norm(&grads).is_nan());
}

// ---------------------------------------------------------------------------------------
// 6. Schedules whose intermediate values overflow.

#[test]
fn warmups_do_not_overflow_where_the_learning_rate_is_finite() {
    let linear = Schedule::linear_warmup_decay(f64::MAX, 10, 100).unwrap();
    let cosine = Schedule::cosine(f64::MAX, 0.0, 10, 100).unwrap();
    for s in [linear, cosine] {
        assert_eq!(s.lr_at(5), f64::MAX / 2.0, "{}", s.name());
        assert_eq!(s.lr_at(10), f64::MAX, "{}", s.name());
        assert!((0..=200).all(|t| s.lr_at(t).is_finite()), "{}", s.name());
        let mut opt = Optim::<Sgd, f64>::new(Sgd::default()).unwrap();
        assert_eq!(s.apply(5, &mut opt).unwrap(), f64::MAX / 2.0);
        assert_eq!(opt.hyper("lr").unwrap(), (f64::MAX / 2.0).into());
    }
}

#[test]
fn step_decay_is_finite_where_the_learning_rate_is() {
    // 1e-300 · 10^400 = 1e100, though 10^400 overflows; 1e300 · 0.1^400 = 1e-100, though
    // 0.1^400 underflows.
    let up = Schedule::step_decay(1e-300, 10.0, 1).unwrap();
    let got = up.lr_at(400);
    assert!((got / 1e100 - 1.0).abs() < 1e-12, "{got}");
    let down = Schedule::step_decay(1e300, 0.1, 1).unwrap();
    let got = down.lr_at(400);
    assert!((got / 1e-100 - 1.0).abs() < 1e-12, "{got}");
}

#[test]
fn a_schedule_whose_learning_rate_overflows_is_refused() {
    // 1e300 · 10^10 = 1e310 is beyond f64: `apply` fails and leaves lr as it was.
    let s = Schedule::step_decay(1e300, 10.0, 1).unwrap();
    let mut opt = Optim::<Sgd, f64>::new(Sgd::default().lr(0.1)).unwrap();
    assert!(s.apply(10, &mut opt).is_err());
    assert_eq!(opt.hyper("lr").unwrap(), 0.1.into());
}

// ---------------------------------------------------------------------------------------
// 8. Positions out of range.

#[test]
fn params_entries_out_of_range_are_none() {
    let mut params = Params::new().with("w", arr1(&[1.0f32, 2.0])).unwrap();
    assert_eq!(params.entry(0).map(|(n, a)| (n, a.len())), Some(("w", 2)));
    assert!(params.entry(1).is_none());
    assert!(params.entry(usize::MAX).is_none());
    assert!(params.entry_mut(1).is_none());
    if let Some((_, a)) = params.entry_mut(0) {
        a[[1]] = 5.0;
    }
    assert_eq!(values(&params, "w"), [1.0, 5.0]);
}

// ---------------------------------------------------------------------------------------
// 9. "Did you mean" on very long names.

#[test]
fn suggestions_for_very_long_names_take_little_memory() {
    let long = "a".repeat(30_000);
    let typo = format!("{}b", &long[1..]); // one substitution away
    let mut params = Params::new()
        .with(long.clone(), arr1(&[0.0f32]))
        .unwrap()
        .with("w", arr1(&[0.0f32]))
        .unwrap();
    let mut opt = Optim::<Sgd, f32>::new(Sgd::default()).unwrap();
    let before = params.clone();
    for (given, want) in [(typo, Some(long.clone())), ("z".repeat(30_000), None)] {
        let grads = Grads::new().with(given.clone(), arr1(&[1.0f32]));
        let (err, peak) = peak_bytes(|| opt.step(&mut params, &grads).unwrap_err());
        assert_eq!(
            err,
            OptimError::UnknownParam {
                name: given,
                suggestion: want
            }
        );
        // The names themselves are 30 kB (120 kB as chars); quadratic work would be GBs.
        assert!(peak < 4 << 20, "peak {peak} bytes");
    }
    assert_eq!(params, before);
    let (hint, peak) = peak_bytes(|| suggest::closest(&long, ["lr", "beta1"]));
    assert_eq!(hint, None);
    assert!(peak < 1 << 20, "peak {peak} bytes");
}

#[test]
fn the_runtime_suggests_what_the_macro_suggests() {
    // The macro never offers a name every character of which would be replaced (its
    // test: `did_you_mean("b", ["t", "w", "g"])` is empty); the runtime did.
    assert_eq!(suggest::closest("b", ["t", "w", "g"]), None);
    assert_eq!(suggest::closest("l", ["lr"]), Some("lr"));
    assert_eq!(suggest::closest("wehn", ["when", "init"]), Some("when"));
}
