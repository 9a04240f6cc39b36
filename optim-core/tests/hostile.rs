//! Issue 13, "Tried as a hostile user would": each test is one way a user broke the
//! runtime, checked against what the user is owed (worked out by hand, not by the code
//! under test).

mod common;

use common::*;
use ndarray::arr1;
use optim_core::optim::Optim;
use optim_core::*;
use optim_macros::optimizer;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

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
