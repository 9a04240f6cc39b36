//! `Wrapped`: a Lookahead rule around an inner optimizer.

mod common;

use common::*;
use ndarray::arr1;
use optim_core::optim::Optim;
use optim_core::wrapper::Wrapped;
use optim_core::*;
use optim_test_support::{bits, wiggly};

fn lookahead(k: i64, alpha: f64, inner: Sgd) -> Wrapped<Lookahead, f64> {
    let inner = Box::new(Optim::<Sgd, f64>::new(inner).unwrap());
    Wrapped::new(Lookahead { k, alpha }, inner).unwrap()
}

fn values(params: &Params<f64>, name: &str) -> Vec<f64> {
    params.get(name).unwrap().iter().copied().collect()
}

#[test]
fn sync_every_k_steps_moves_params_without_gradients_too() {
    let mut p = Params::new()
        .with("a", arr1(&[1.0]))
        .unwrap()
        .with("b", arr1(&[1.0]))
        .unwrap();
    let mut opt = lookahead(2, 0.5, Sgd::default().lr(0.5));
    let both = Grads::new().with("a", arr1(&[1.0])).with("b", arr1(&[1.0]));
    let only_a = Grads::new().with("a", arr1(&[1.0]));

    opt.step(&mut p, &both).unwrap(); // fast: a = b = 0.5; no sync
    assert_eq!((values(&p, "a"), values(&p, "b")), (vec![0.5], vec![0.5]));
    opt.step(&mut p, &only_a).unwrap(); // fast a = 0; sync with slow = 1:
    assert_eq!(values(&p, "a"), [0.5]); // s = 1 + 0.5·(0 − 1)
    assert_eq!(values(&p, "b"), [0.75]); // s = 1 + 0.5·(0.5 − 1), no gradient
    opt.step(&mut p, &only_a).unwrap(); // a = 0
    opt.step(&mut p, &only_a).unwrap(); // a = −0.5; s = 0.5 + 0.5·(−0.5 − 0.5)
    assert_eq!(values(&p, "a"), [0.0]);
    assert_eq!(values(&p, "b"), [0.75]);
    assert_eq!(opt.steps(), 4);
    assert_eq!(opt.step_count("a"), Some(4));
    assert_eq!(opt.step_count("b"), Some(1));
}

#[test]
fn inner_state_is_kept_across_syncs() {
    let mut p = Params::new().with("a", arr1(&[1.0])).unwrap();
    let mut opt = lookahead(1, 0.5, Sgd::default().lr(0.5).momentum(0.5));
    let g = Grads::new().with("a", arr1(&[1.0]));
    opt.step(&mut p, &g).unwrap(); // b = 1, fast 0.5, s = 1 + 0.5·(0.5 − 1) = 0.75
    assert_eq!(values(&p, "a"), [0.75]);
    opt.step(&mut p, &g).unwrap(); // b = 1.5, fast 0, s = 0.75 + 0.5·(0 − 0.75)
    assert_eq!(values(&p, "a"), [0.375]);
}

#[test]
fn new_params_start_their_slow_weights_at_their_first_value() {
    let mut p = Params::new().with("a", arr1(&[1.0])).unwrap();
    let mut opt = lookahead(2, 0.5, Sgd::default().lr(0.5));
    let g = Grads::new().with("a", arr1(&[1.0]));
    opt.step(&mut p, &g).unwrap();
    p.insert("late", arr1(&[4.0])).unwrap();
    opt.step(&mut p, &g.clone().with("late", arr1(&[2.0])))
        .unwrap();
    // late: fast 4 − 1 = 3, slow 4 → 4 + 0.5·(3 − 4)
    assert_eq!(values(&p, "late"), [3.5]);
}

#[test]
fn hyperparameters_route_to_rule_or_inner() {
    let mut opt = lookahead(2, 0.5, Sgd::default().lr(0.5));
    assert_eq!(opt.name(), "lookahead");
    assert_eq!(opt.hyper_specs().len(), 2);
    opt.set_hyper("lr", 0.25.into()).unwrap();
    assert_eq!(opt.hyper("lr").unwrap(), HyperValue::Float(0.25));
    assert_eq!(opt.inner().hyper("lr").unwrap(), HyperValue::Float(0.25));
    opt.set_hyper("k", HyperValue::Int(3)).unwrap();
    assert_eq!(opt.rule().k, 3);
    assert_eq!(opt.hyper("k").unwrap(), HyperValue::Int(3));

    let err = opt.set_hyper("alpa", 0.1.into()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "lookahead(sgd): unknown hyperparameter `alpa` (did you mean `alpha`?); \
         valid: k, alpha, lr, momentum, weight_decay, maximize"
    );
    let err = opt.hyper("lrr").unwrap_err();
    assert!(err.to_string().contains("did you mean `lr`?"), "{err}");
    let err = opt.set_hyper("alpha", 2.0.into()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "lookahead: invalid alpha value 2: must be in [0, 1]"
    );
    let err = opt.set_hyper("lr", (-1.0).into()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sgd: invalid lr value -1: must be in [0, inf)"
    );
    assert_eq!(opt.rule().alpha, 0.5);
    assert_eq!(opt.hyper("lr").unwrap(), HyperValue::Float(0.25));
}

#[test]
fn groups_go_to_the_inner_optimizer() {
    let mut p = Params::new()
        .with("a", arr1(&[1.0]))
        .unwrap()
        .with("b", arr1(&[1.0]))
        .unwrap();
    let mut opt = lookahead(5, 0.5, Sgd::default().lr(0.5));
    opt.add_group(Group::names(["b"]).set("lr", 0.25)).unwrap();
    assert!(opt.add_group(Group::names(["b"]).set("k", 2.0)).is_err());
    let g = Grads::new().with("a", arr1(&[1.0])).with("b", arr1(&[1.0]));
    opt.step(&mut p, &g).unwrap();
    assert_eq!((values(&p, "a"), values(&p, "b")), (vec![0.5], vec![0.75]));
}

#[test]
fn bad_gradients_change_nothing_not_even_rule_state() {
    let mut p = Params::new().with("a", arr1(&[1.0])).unwrap();
    let mut opt = lookahead(1, 0.5, Sgd::default().lr(0.5));
    let s0 = opt.export_state();
    let bad = Grads::new().with("a", arr1(&[1.0])).with("A", arr1(&[1.0]));
    let err = opt.step(&mut p, &bad).unwrap_err();
    assert!(matches!(err, OptimError::UnknownParam { .. }), "{err}");
    assert_eq!(values(&p, "a"), [1.0]);
    assert_eq!(opt.export_state(), s0);
    assert!(s0.params.is_empty());
    assert_eq!(opt.steps(), 0);
}

fn trained() -> (Params<f64>, Wrapped<Lookahead, f64>) {
    let mut p = Params::new()
        .with("w", wiggly::<f64>(1, &[2, 2]))
        .unwrap()
        .with("v", wiggly::<f64>(2, &[3]))
        .unwrap();
    let mut opt = lookahead(3, 0.375, Sgd::default().lr(0.1).momentum(0.9));
    for s in 0..4 {
        let mut g = Grads::new().with("w", wiggly::<f64>(10 + s, &[2, 2]));
        if s % 2 == 1 {
            g.insert("v", wiggly::<f64>(20 + s, &[3]));
        }
        opt.step(&mut p, &g).unwrap();
    }
    (p, opt)
}

#[test]
fn resume_is_bit_exact() {
    let (mut p, mut opt) = trained();
    let saved = opt.export_state();
    assert_eq!(saved.optimizer, "lookahead");
    assert_eq!(saved.step, 4);
    assert_eq!(saved.inner.as_ref().unwrap().optimizer, "sgd");
    let mut resumed = lookahead(5, 0.5, Sgd::default());
    resumed.import_state(&saved, &p).unwrap();
    assert_eq!(resumed.export_state(), saved);
    let mut q = p.clone();
    for s in 4..9 {
        let g = Grads::new().with("w", wiggly::<f64>(30 + s, &[2, 2]));
        opt.step(&mut p, &g).unwrap();
        resumed.step(&mut q, &g).unwrap();
    }
    assert_eq!(bits(&p), bits(&q));
    assert_eq!(opt.export_state(), resumed.export_state());
}

#[test]
fn import_checks_rule_and_inner_before_changing_anything() {
    let (p, mut opt) = trained();
    let good = opt.export_state();
    let edit = |f: &dyn Fn(&mut OptimizerState)| {
        let mut s = good.clone();
        f(&mut s);
        s
    };
    let cases: Vec<(OptimizerState, &str)> = vec![
        (
            edit(&|s| s.optimizer = "ranger".into()),
            "the state is for optimizer `ranger`, not `lookahead`",
        ),
        (
            edit(&|s| s.inner = None),
            "lookahead state without the inner optimizer's state",
        ),
        (
            edit(&|s| s.params[0].tensors.clear()),
            "state tensor `slow` is missing",
        ),
        (
            edit(&|s| s.hyper[0].1 = HyperValue::Int(0)),
            "lookahead: invalid k value 0",
        ),
        (
            edit(&|s| s.inner.as_mut().unwrap().optimizer = "adam".into()),
            "the state is for optimizer `adam`, not `sgd`",
        ),
        (
            edit(&|s| s.inner.as_mut().unwrap().params[0].tensors.clear()),
            "state tensor `b` is missing",
        ),
    ];
    for (state, want) in &cases {
        let err = opt.import_state(state, &p).unwrap_err();
        assert!(err.to_string().contains(want), "`{err}` lacks `{want}`");
        assert_eq!(opt.export_state(), good, "{want}");
    }
}

#[test]
fn construction_checks_kind_and_ranges() {
    let inner =
        || -> Box<dyn Optimizer<f64>> { Box::new(Optim::<Sgd, f64>::new(Sgd::default()).unwrap()) };
    let err = Wrapped::<Sgd, f64>::new(Sgd::default(), inner()).unwrap_err();
    assert!(matches!(err, OptimError::Config(_)), "{err}");
    let err = Wrapped::<Lookahead, f64>::new(Lookahead { k: 0, alpha: 0.5 }, inner()).unwrap_err();
    assert!(matches!(err, OptimError::HyperRange { .. }), "{err}");
    let opt = Wrapped::<Lookahead, f64>::new(Lookahead::default(), inner()).unwrap();
    let printed = format!("{:?}", opt.boxed_clone());
    assert!(
        printed.contains("lookahead") && printed.contains("sgd"),
        "{printed}"
    );
}
