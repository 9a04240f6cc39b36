//! Non-finite gradients under each policy: propagate (default), skip the parameter with
//! a report, or fail before anything changes.

mod common;

use common::*;
use ndarray::arr2;
use optim_core::checkpoint::to_bytes;
use optim_core::optim::Optim;
use optim_core::wrapper::Wrapped;
use optim_core::*;
use optim_test_support::{bits, wiggly};

fn params() -> Params<f32> {
    Params::new()
        .with("emb", wiggly::<f32>(1, &[4, 2]))
        .unwrap()
        .with("w", wiggly::<f32>(2, &[3]))
        .unwrap()
        .with("b", wiggly::<f32>(3, &[2]))
        .unwrap()
}

fn good_grads(s: u64) -> Grads<f32> {
    Grads::new()
        .with("w", wiggly::<f32>(10 + s, &[3]))
        .with("b", wiggly::<f32>(20 + s, &[2]))
}

/// `good_grads` with a NaN in `w` at element 1.
fn bad_grads(s: u64) -> Grads<f32> {
    let mut g = good_grads(s);
    let mut w = wiggly::<f32>(10 + s, &[3]);
    w[1] = f32::NAN;
    g.insert("w", w);
    g
}

fn sgd() -> Box<dyn Optimizer<f32>> {
    Box::new(Optim::<Sgd, f32>::new(Sgd::default().lr(0.1).momentum(0.9)).unwrap())
}

fn lookahead() -> Box<dyn Optimizer<f32>> {
    Box::new(Wrapped::new(Lookahead { k: 2, alpha: 0.5 }, sgd()).unwrap())
}

fn fingerprint(opt: &dyn Optimizer<f32>) -> Vec<u8> {
    to_bytes(&opt.export_state()).unwrap()
}

#[test]
fn propagate_is_the_default_and_lets_nan_through() {
    for make in [sgd, lookahead] {
        let mut opt = make();
        assert_eq!(opt.non_finite_policy(), NonFinitePolicy::Propagate);
        let mut p = params();
        opt.step(&mut p, &bad_grads(0)).unwrap();
        assert!(p.get("w").unwrap()[1].is_nan());
        assert!(p.get("w").unwrap()[0].is_finite());
        assert!(opt.skipped().is_empty());
    }
}

#[test]
fn error_fails_before_anything_changes() {
    for make in [sgd, lookahead] {
        let mut opt = make();
        opt.set_non_finite_policy(NonFinitePolicy::Error).unwrap();
        assert_eq!(opt.non_finite_policy(), NonFinitePolicy::Error);
        let mut p = params();
        opt.step(&mut p, &good_grads(0)).unwrap();
        let (p0, s0) = (bits(&p), fingerprint(opt.as_ref()));

        // `b` is fine and comes after `w`; neither is stepped.
        let err = opt.step(&mut p, &bad_grads(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`w`: gradient element 1 is NaN; nothing was changed (non-finite policy: error)"
        );
        assert!(
            matches!(err, OptimError::NonFiniteGrad { ref name, index: 1, value } if name == "w" && value.is_nan())
        );
        assert_eq!(bits(&p), p0);
        assert_eq!(fingerprint(opt.as_ref()), s0);

        // A sparse-row gradient names the parameter element the bad value would update.
        let mut g = good_grads(1);
        g.insert_rows(
            "emb",
            vec![2, 3],
            arr2(&[[1.0, 2.0], [f32::NEG_INFINITY, 0.0]]),
        );
        let err = opt.step(&mut p, &g).unwrap_err();
        assert_eq!(
            err,
            OptimError::NonFiniteGrad {
                name: "emb".into(),
                index: 6,
                value: f64::NEG_INFINITY
            }
        );
        assert_eq!(
            err.to_string(),
            "`emb`: gradient element 6 is -inf; nothing was changed (non-finite policy: error)"
        );
        assert_eq!(bits(&p), p0);
        assert_eq!(fingerprint(opt.as_ref()), s0);

        // `check` reports the same, and a finite step still works afterwards.
        assert_eq!(opt.check(&p, &g).unwrap_err(), err);
        opt.step(&mut p, &good_grads(1)).unwrap();
    }
}

#[test]
fn skip_leaves_the_bad_parameter_alone_and_reports_it() {
    for make in [sgd, lookahead] {
        let mut opt = make();
        opt.set_non_finite_policy(NonFinitePolicy::SkipParam)
            .unwrap();
        // The same run where `w` simply has no gradient at step 1.
        let mut twin = make();
        let (mut p, mut q) = (params(), params());
        for s in 0..4 {
            let (g, h) = if s == 1 {
                (
                    bad_grads(s),
                    Grads::new().with("b", wiggly::<f32>(20 + s, &[2])),
                )
            } else {
                (good_grads(s), good_grads(s))
            };
            let w_before = bits(&p);
            opt.step(&mut p, &g).unwrap();
            twin.step(&mut q, &h).unwrap();
            if s == 1 {
                assert_eq!(opt.skipped(), ["w".to_string()]);
                assert_eq!(bits(&p)[1], w_before[1], "w untouched");
                assert_eq!(
                    opt.step_count("w"),
                    Some(1),
                    "w's step count did not advance"
                );
                assert_eq!(opt.step_count("b"), Some(2));
            } else {
                assert!(
                    opt.skipped().is_empty(),
                    "the report is of the last step only"
                );
            }
        }
        // For a plain optimizer, skipping is exactly giving `w` no gradient. (Not for
        // Lookahead: a parameter without a gradient still takes the rule's step, here
        // the sync at step 2, and a skipped one does not; see the next test.)
        if opt.name() == "sgd" {
            assert_eq!(bits(&p), bits(&q));
            assert_eq!(fingerprint(opt.as_ref()), fingerprint(twin.as_ref()));
        }
    }
}

#[test]
fn lookahead_does_not_sync_a_skipped_parameter() {
    let mut opt = lookahead(); // k = 2: the second step syncs
    opt.set_non_finite_policy(NonFinitePolicy::SkipParam)
        .unwrap();
    let mut p = params();
    opt.step(&mut p, &good_grads(0)).unwrap();
    let before = p.get("w").unwrap().clone();
    opt.step(&mut p, &bad_grads(1)).unwrap();
    assert_eq!(opt.skipped(), ["w".to_string()]);
    assert_eq!(
        p.get("w").unwrap(),
        &before,
        "neither the inner step nor the sync moved w"
    );
    let slow_w = opt
        .export_state()
        .params
        .into_iter()
        .find(|s| s.param == "w")
        .unwrap();
    assert_eq!(slow_w.step, 1, "the rule did not step w");
    assert_eq!(
        slow_w.tensors[0].data,
        TensorData::F32(wiggly::<f32>(2, &[3]).iter().copied().collect())
    );
}

#[test]
fn policies_are_runtime_settings_not_state() {
    let mut opt = sgd();
    opt.set_non_finite_policy(NonFinitePolicy::Error).unwrap();
    let mut p = params();
    opt.step(&mut p, &good_grads(0)).unwrap();
    let mut fresh = sgd();
    fresh.import_state(&opt.export_state(), &p).unwrap();
    assert_eq!(fresh.non_finite_policy(), NonFinitePolicy::Propagate);
    // A clone keeps it.
    assert_eq!(
        opt.boxed_clone().non_finite_policy(),
        NonFinitePolicy::Error
    );
    assert_eq!(NonFinitePolicy::SkipParam.to_string(), "skip_param");
}

/// A parameter skipped at its very first step gets no state at all: it is exactly a
/// parameter without a gradient, and the exported state can be imported again.
#[test]
fn skipping_a_first_step_creates_no_state() {
    let mut opt = sgd();
    opt.set_non_finite_policy(NonFinitePolicy::SkipParam)
        .unwrap();
    let mut twin = sgd();
    let (mut p, mut q) = (params(), params());
    opt.step(&mut p, &bad_grads(0)).unwrap();
    twin.step(&mut q, &Grads::new().with("b", wiggly::<f32>(20, &[2])))
        .unwrap();
    assert_eq!(opt.skipped(), ["w".to_string()]);
    assert_eq!(opt.step_count("w"), None);
    assert_eq!(opt.step_count("b"), Some(1));
    assert_eq!(bits(&p), bits(&q));
    assert_eq!(fingerprint(opt.as_ref()), fingerprint(twin.as_ref()));
    let mut resumed = sgd();
    resumed.import_state(&opt.export_state(), &p).unwrap();
    for s in 1..3 {
        opt.step(&mut p, &good_grads(s)).unwrap();
        twin.step(&mut q, &good_grads(s)).unwrap();
    }
    assert_eq!(opt.step_count("w"), Some(2));
    assert_eq!(bits(&p), bits(&q));
}
