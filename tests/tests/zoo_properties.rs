//! Properties every zoo optimizer must have, in the spirit of PyTorch's own optimizer
//! suite: each test runs over every registry entry (`lookahead` around an Adam).

use ndarray::{array, Array2};
use optim_core::{Grads, Group, HyperValue, Optimizer, ParamState, Params, Scalar};
use optim_test_support::*;
use serde_json::json;

/// Entries whose parameter keeps still under a zero gradient after warm-up: their update is
/// a function of the current gradient only (Rprop's is sign(g)·step, 0 for g = 0; ASGD's
/// η·g once `without_decay` has turned off its decay term). The others carry a momentum
/// buffer or a first moment that keeps moving the parameter (SGDM, NAG, the Adam family,
/// Lion's sign of the momentum) or an average that keeps pulling it (MADGRAD towards z,
/// schedule-free SGD towards its base iterate); Lookahead's inner Adam moves as well.
const STILL_UNDER_ZERO_GRADIENT: &[&str] = &[
    "sgd",
    "adagrad",
    "adadelta",
    "rmsprop",
    "adafactor",
    "rprop",
    "asgd",
];

/// Entries whose learning rate does not scale their step to 0, so that a group with lr 0
/// still moves: MADGRAD's rate is lr + eps (optax's and the authors' code), and Rprop's lr
/// is only its initial step size, each step size clamped to at least `step_size_min`.
const MOVE_AT_LR_ZERO: &[&str] = &["madgrad", "rprop"];

/// Wrapper entries: their rule steps every parameter, with or without a gradient.
const WRAPPERS: &[&str] = &["lookahead", "ranger"];

/// Turns off weight decay (which moves parameters without a gradient) where there is one.
fn without_decay<T: Scalar>(opt: &mut dyn Optimizer<T>) {
    // A partition's routes may disagree on it (Muon 0.1, AdamW 0.01): set it on all.
    if opt.hyper("weight_decay").is_ok() || opt.name() == "partition" {
        opt.set_hyper("weight_decay", 0.0.into()).unwrap();
    }
    // ASGD's decay term λ = `lambd` shrinks the weights by w·(1 − λη) at every step, a
    // weight decay under another name.
    if opt.name() == "asgd" {
        opt.set_hyper("lambd", 0.0.into()).unwrap();
    }
}

fn state_of(opt: &dyn Optimizer<f64>, wrapper: bool, param: &str) -> Option<ParamState> {
    let state = opt.export_state();
    let state = if wrapper {
        *state.inner.unwrap()
    } else {
        state
    };
    state.params.into_iter().find(|p| p.param == param)
}

#[test]
fn every_registry_entry_is_covered_and_builds_in_both_dtypes() {
    let names = zoo_names();
    for expected in [
        "sgd",
        "momentum",
        "sgdm",
        "nag",
        "adagrad",
        "adadelta",
        "rmsprop",
        "adam",
        "amsgrad",
        "adamw",
        "bert",
        "adamax",
        "nadam",
        "radam",
        "lazyadam",
        "lookahead",
        "ranger",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    // Each entry builds in both precisions as the same registry optimizer, and with the
    // learning rate its config asks for (a wrapper's or a partition's is inside).
    let registry = optim_zoo::Registry::zoo().names();
    for name in names {
        let (a, b) = (build::<f32>(&config(name)), build::<f64>(&config(name)));
        assert_eq!(a.name(), b.name(), "{name}");
        assert!(
            registry.contains(&a.name()),
            "{name} builds {}, which the registry does not know",
            a.name()
        );
        let nested = WRAPPERS.contains(&name) || steps_matrices_only(name);
        if let Some(lr) = documented_lr(name).filter(|_| !nested) {
            assert_eq!(
                a.hyper("lr").ok(),
                Some(HyperValue::Float(lr)),
                "{name} f32"
            );
            assert_eq!(
                b.hyper("lr").ok(),
                Some(HyperValue::Float(lr)),
                "{name} f64"
            );
        }
    }
}

#[test]
fn descends_on_a_convex_quadratic_and_ascends_with_maximize() {
    for name in zoo_names() {
        let matrix = steps_matrices_only(name);
        let mut opt = build::<f64>(&config(name));
        let (before, after) = Problem::Quadratic.run_shaped(opt.as_mut(), 500, matrix);
        assert!(after < 0.3 * before, "{name}: loss {before} -> {after}");
        let up = config_with(name, "maximize", json!(true));
        let (before, after) = Problem::Quadratic.run_shaped(build::<f64>(&up).as_mut(), 50, matrix);
        assert!(after > before, "{name} maximize: loss {before} -> {after}");
    }
}

#[test]
fn descends_on_rosenbrock() {
    for name in zoo_names() {
        let mut c = config(name);
        // RAdam's first steps, before its variance estimate is tractable, are plain
        // momentum steps of size lr·|m|: with |∇f| ≈ 200 at the start, lr = 0.02 throws
        // it out of the valley (as it does torch.optim.RAdam). Its default works.
        if matches!(name, "radam" | "ranger") {
            c["lr"] = json!(1e-3);
        }
        let matrix = steps_matrices_only(name);
        let (before, after) =
            Problem::Rosenbrock.run_shaped(build::<f64>(&c).as_mut(), 1000, matrix);
        assert!(after < 0.25 * before, "{name}: loss {before} -> {after}");
    }
}

#[test]
fn no_gradient_leaves_parameter_and_state_unchanged() {
    for name in zoo_names() {
        let wrapper = WRAPPERS.contains(&name);
        let mut opt = build::<f64>(&config(name));
        let mut params = two_params::<f64>();
        for k in 1..=3 {
            opt.step(&mut params, &grads_at(k)).unwrap();
        }
        let bias = values(&params, "bias");
        let state = state_of(opt.as_ref(), wrapper, "bias");
        // Step 4: only `weight` has a gradient (no wrapper syncs at step 4).
        let mut only_weight = Grads::new();
        only_weight.insert("weight", dense(&grads_at::<f64>(4), "weight"));
        opt.step(&mut params, &only_weight).unwrap();
        assert_eq!(values(&params, "bias"), bias, "{name}");
        assert_eq!(state_of(opt.as_ref(), wrapper, "bias"), state, "{name}");
        assert_eq!(opt.step_count("bias"), Some(3), "{name}");
        assert_eq!(opt.step_count("weight"), Some(4), "{name}");
        // No gradient at all: nothing moves (the optimizer-wide call count aside).
        let before = bits(&params);
        let all = opt.export_state();
        opt.step(&mut params, &Grads::new()).unwrap();
        if !wrapper {
            assert_eq!(bits(&params), before, "{name}");
            assert_eq!(opt.export_state().params, all.params, "{name}");
        } else {
            // Step 5 syncs Lookahead (k = 5): the rule moves `bias` to its slow weights
            // although it has no gradient, s ← s + α (w − s), w ← s.
            let inner = *opt.export_state().inner.unwrap();
            assert_eq!(inner.params, all.inner.unwrap().params, "{name}");
        }
        assert_eq!(opt.step_count("bias"), Some(3), "{name}");
    }
}

#[test]
fn lookahead_syncs_parameters_without_a_gradient() {
    let mut opt = build::<f64>(&config("lookahead"));
    let mut params = two_params::<f64>();
    let start = values(&params, "bias");
    for k in 1..=4 {
        opt.step(&mut params, &grads_at(k)).unwrap();
    }
    let fast = values(&params, "bias");
    opt.step(&mut params, &Grads::new()).unwrap();
    let alpha = 0.5;
    for (i, x) in values(&params, "bias").iter().enumerate() {
        assert_eq!(*x, start[i] + alpha * (fast[i] - start[i]));
    }
}

#[test]
fn a_zero_gradient_does_not_move_a_fresh_parameter() {
    for name in zoo_names() {
        // optax's Yogi starts its first moment at `initial_accumulator_value` (1e-6), not
        // 0: a fresh parameter already has momentum. From 0 it keeps still.
        let c = if name == "yogi" {
            config_with(name, "initial_accumulator_value", json!(0.0))
        } else {
            config(name)
        };
        let mut opt = build::<f64>(&c);
        without_decay(opt.as_mut());
        let mut params = two_params::<f64>();
        let before = bits(&params);
        let zeros = Grads::new()
            .with("weight", Array2::<f64>::zeros((2, 3)))
            .with("bias", ndarray::Array1::<f64>::zeros(3));
        for _ in 0..6 {
            opt.step(&mut params, &zeros).unwrap();
        }
        assert_eq!(bits(&params), before, "{name}");
    }
}

#[test]
fn after_warm_up_a_zero_gradient_moves_only_optimizers_with_momentum() {
    for name in zoo_names() {
        let mut opt = build::<f64>(&config(name));
        without_decay(opt.as_mut());
        let mut params = two_params::<f64>();
        for k in 1..=3 {
            opt.step(&mut params, &grads_at(k)).unwrap();
        }
        let before = bits(&params);
        let zeros = Grads::new()
            .with("weight", Array2::<f64>::zeros((2, 3)))
            .with("bias", ndarray::Array1::<f64>::zeros(3));
        opt.step(&mut params, &zeros).unwrap();
        let still = STILL_UNDER_ZERO_GRADIENT.contains(&name);
        assert_eq!(bits(&params) == before, still, "{name}");
    }
}

#[test]
fn f32_and_f64_agree_within_f32_precision() {
    for name in zoo_names() {
        let mut o32 = build::<f32>(&config(name));
        let mut o64 = build::<f64>(&config(name));
        let (mut p32, mut p64) = (two_params::<f32>(), two_params::<f64>());
        for k in 1..=20 {
            o32.step(&mut p32, &grads_at(k)).unwrap();
            o64.step(&mut p64, &grads_at(k)).unwrap();
        }
        for param in ["weight", "bias"] {
            for (a, b) in values(&p32, param).iter().zip(values(&p64, param)) {
                let tol = 2e-6 * b.abs().max(1.0);
                assert!((a - b).abs() <= tol, "{name} {param}: f32 {a} vs f64 {b}");
            }
        }
    }
}

/// 15 steps; `bias` has no gradient every fourth step.
fn grads_with_gaps<T: Scalar>(k: usize) -> Grads<T> {
    let g = grads_at::<T>(k);
    if !k.is_multiple_of(4) {
        return g;
    }
    Grads::new().with("weight", dense(&g, "weight"))
}

fn resume_is_bit_identical<T: Scalar>(name: &str) {
    let mut whole = build::<T>(&config(name));
    let mut p_whole = two_params::<T>();
    for k in 1..=15 {
        whole.step(&mut p_whole, &grads_with_gaps(k)).unwrap();
    }
    let mut first = build::<T>(&config(name));
    let mut p = two_params::<T>();
    for k in 1..=7 {
        first.step(&mut p, &grads_with_gaps(k)).unwrap();
    }
    let saved = first.export_state();
    drop(first);
    // A fresh optimizer configured differently: the state brings its hyperparameters.
    let mut resumed = build::<T>(&config_with(name, "lr", json!(0.5)));
    resumed.import_state(&saved, &p).unwrap();
    for k in 8..=15 {
        resumed.step(&mut p, &grads_with_gaps(k)).unwrap();
    }
    assert_eq!(bits(&p), bits(&p_whole), "{name} {:?}", T::DTYPE);
    assert_eq!(resumed.export_state(), whole.export_state(), "{name}");
}

#[test]
fn resuming_from_exported_state_is_bit_identical() {
    for name in zoo_names() {
        resume_is_bit_identical::<f64>(name);
        resume_is_bit_identical::<f32>(name);
    }
}

fn lazy_run(grads: &[Grads<f64>]) -> (Vec<u64>, optim_core::OptimizerState) {
    let mut opt = build::<f64>(&config("lazyadam"));
    let mut params = Params::new()
        .with(
            "emb",
            Array2::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f64 * 0.25 - 1.0),
        )
        .unwrap();
    for g in grads {
        opt.step(&mut params, g).unwrap();
    }
    (bits_of(&params, "emb"), opt.export_state())
}

#[test]
fn lazyadam_rows_match_the_dense_gradient_and_repeats_add_up() {
    let dense: Array2<f64> = array![
        [0.5, -1.0, 0.25],
        [1.5, 0.0, -0.75],
        [-0.5, 2.0, 1.0],
        [0.125, -0.25, 0.5]
    ];
    let all_rows = |order: Vec<usize>| {
        let values = Array2::from_shape_fn((4, 3), |(r, j)| dense[[order[r], j]]);
        let mut g = Grads::new();
        g.insert_rows("emb", order, values);
        g
    };
    let as_dense = vec![Grads::new().with("emb", dense.clone()); 3];
    let expected = lazy_run(&as_dense);
    assert_eq!(lazy_run(&vec![all_rows(vec![0, 1, 2, 3]); 3]), expected);
    assert_eq!(lazy_run(&vec![all_rows(vec![2, 0, 3, 1]); 3]), expected);

    // Row 2 given twice equals their sum given once; rows 1 and 3 stay untouched.
    let mut repeated = Grads::new();
    let r = array![[0.5, -1.0, 0.25], [1.0, 0.5, -2.0], [0.25, 0.25, 0.75]];
    repeated.insert_rows("emb", vec![2, 0, 2], r.clone());
    let mut summed = Grads::new();
    let sum = array![[1.0, 0.5, -2.0], [0.75, -0.75, 1.0]];
    summed.insert_rows("emb", vec![0, 2], sum);
    let (bits_rep, state_rep) = lazy_run(&vec![repeated; 2]);
    let (bits_sum, state_sum) = lazy_run(&vec![summed; 2]);
    assert_eq!((&bits_rep, &state_rep), (&bits_sum, &state_sum));
    let untouched = lazy_run(&[]).0;
    for row in [1, 3] {
        assert_eq!(
            bits_rep[row * 3..row * 3 + 3],
            untouched[row * 3..row * 3 + 3]
        );
    }
}

#[test]
fn a_group_with_lr_zero_does_not_move() {
    for name in zoo_names() {
        let mut opt = build::<f64>(&config(name));
        // A parameter takes the first group that matches it: BERT's decay mask already
        // holds every name containing "bias", so the frozen group is `weight`.
        opt.add_group(Group::names(["weight"]).set("lr", 0.0))
            .unwrap();
        let mut params = two_params::<f64>();
        let (weight, bias) = (values(&params, "weight"), values(&params, "bias"));
        for k in 1..=12 {
            opt.step(&mut params, &grads_at(k)).unwrap();
        }
        let frozen = !MOVE_AT_LR_ZERO.contains(&name);
        assert_eq!(values(&params, "weight") == weight, frozen, "{name}");
        assert_ne!(values(&params, "bias"), bias, "{name}");
    }
}

#[test]
fn invalid_hyperparameters_give_exact_messages() {
    let cases = [
        (
            json!({"optimizer": "adam", "beta1": 1.5}),
            "adam: invalid beta1 value 1.5: must be in [0, 1)",
        ),
        (
            json!({"optimizer": "sgd", "lr": -0.1}),
            "sgd: invalid lr value -0.1: must be in [0, inf)",
        ),
        (
            json!({"optimizer": "sgd", "dampening": 2}),
            "sgd: invalid dampening value 2: must be in [0, 1]",
        ),
        (
            json!({"optimizer": "rmsprop", "momentum": -1}),
            "rmsprop: invalid momentum value -1: must be in [0, inf)",
        ),
        (
            json!({"optimizer": "adamw", "beta2": 1.0}),
            "adamw: invalid beta2 value 1: must be in [0, 1)",
        ),
        (
            json!({"optimizer": "adadelta", "rho": 1.01}),
            "adadelta: invalid rho value 1.01: must be in [0, 1]",
        ),
        (
            json!({"optimizer": "lookahead", "k": 0, "inner": {"optimizer": "sgd"}}),
            "lookahead: invalid k value 0: must be in [1, inf)",
        ),
        (
            json!({"optimizer": "lookahead", "alpha": 1.5, "inner": {"optimizer": "sgd"}}),
            "lookahead: invalid alpha value 1.5: must be in [0, 1]",
        ),
        (
            json!({"optimizer": "ranger", "beta1": -0.5}),
            "radam: invalid beta1 value -0.5: must be in [0, 1)",
        ),
    ];
    for (config, msg) in cases {
        let err = optim_zoo::Registry::zoo()
            .build::<f64>(&config)
            .unwrap_err();
        assert_eq!(err.to_string(), msg, "{config}");
    }
    let mut adam = build::<f64>(&config("adam"));
    let err = adam.set_hyper("eps", (-1.0).into()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "adam: invalid eps value -1: must be in [0, inf)"
    );
    let err = adam.set_hyper("lr", f64::NAN.into()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "adam: invalid lr value NaN: must be in [0, inf)"
    );
    assert_eq!(
        adam.hyper("lr").unwrap(),
        0.02.into(),
        "a failed set changes nothing"
    );
}

#[test]
fn optimizers_print_and_their_clones_evolve_identically_and_independently() {
    for name in zoo_names() {
        let mut opt = build::<f64>(&config(name));
        let mut params = two_params::<f64>();
        for k in 1..=3 {
            opt.step(&mut params, &grads_at(k)).unwrap();
        }
        let shown = format!("{opt:?}");
        assert!(shown.contains(opt.name()), "{name}: {shown}");
        let mut clone = opt.boxed_clone();
        let mut p_clone = params.clone();
        for k in 4..=9 {
            opt.step(&mut params, &grads_at(k)).unwrap();
            clone.step(&mut p_clone, &grads_at(k)).unwrap();
        }
        assert_eq!(bits(&params), bits(&p_clone), "{name}");
        assert_eq!(opt.export_state(), clone.export_state(), "{name}");
        let before = opt.export_state();
        clone.step(&mut p_clone, &grads_at(10)).unwrap();
        assert_eq!(
            opt.export_state(),
            before,
            "{name}: stepping the clone moved the original"
        );
    }
}

/// Parameters named `names` (in that order), each of 3 elements with values fixed by its
/// name, so that the same parameter has the same values whatever its position.
fn named_params(names: &[&str], from: &Params<f64>) -> Params<f64> {
    let mut p = Params::new();
    for &name in names {
        let value = match from.get(name) {
            Some(v) => v.clone(),
            None => {
                let seed = name.bytes().map(f64::from).sum::<f64>();
                ndarray::Array1::from_iter((0..3).map(|i| (seed + i as f64).sin())).into_dyn()
            }
        };
        p.insert(name, value).unwrap();
    }
    p
}

/// Gradients for `names` (in that order) at step `k`, fixed by name and step.
fn named_grads(names: &[&str], k: usize) -> Grads<f64> {
    let mut g = Grads::new();
    for &name in names {
        let seed = name.bytes().map(f64::from).sum::<f64>();
        g.insert(
            name,
            ndarray::Array1::from_iter(
                (0..3).map(|i| ((seed * 0.1 + (k * 3 + i) as f64) * 0.7).cos()),
            ),
        );
    }
    g
}

/// The optimizer finds each parameter's state by name, not by position: stepping
/// parameters that are reordered, added and dropped between steps (the optimizer
/// remembers positions to find states fast) gives each parameter exactly the values it
/// gets when every step lists the parameters in one fixed order.
#[test]
fn state_follows_the_name_whatever_the_order_of_parameters() {
    // (parameter order, gradient order) per step.
    let steps: [(&[&str], &[&str]); 5] = [
        (&["a", "b", "c"], &["a", "b", "c"]),
        (&["a", "b", "c"], &["a", "b", "c"]),
        (&["c", "a", "b", "d"], &["b", "d", "a"]),
        (&["d", "b", "c", "a"], &["c", "a", "d", "b"]),
        (&["b", "a", "d", "c"], &["a", "b", "c", "d"]),
    ];
    let fixed = ["a", "b", "c", "d"];
    for name in zoo_names() {
        let mut shuffled = build::<f64>(&config(name));
        let mut ordered = build::<f64>(&config(name));
        let mut p_shuffled = named_params(&["a", "b", "c"], &Params::new());
        let mut p_ordered = p_shuffled.clone();
        for (k, (param_order, grad_order)) in steps.iter().enumerate() {
            p_shuffled = named_params(param_order, &p_shuffled);
            shuffled
                .step(&mut p_shuffled, &named_grads(grad_order, k))
                .unwrap();
            // The same parameters and gradients, listed in the fixed order.
            let in_fixed = |names: &[&str]| -> Vec<&str> {
                fixed
                    .iter()
                    .copied()
                    .filter(|n| names.contains(n))
                    .collect()
            };
            p_ordered = named_params(&in_fixed(param_order), &p_ordered);
            ordered
                .step(&mut p_ordered, &named_grads(&in_fixed(grad_order), k))
                .unwrap();
        }
        for n in fixed {
            assert_eq!(p_shuffled.get(n), p_ordered.get(n), "{name}: parameter {n}");
            assert_eq!(shuffled.step_count(n), ordered.step_count(n), "{name}: {n}");
        }
        assert_eq!(shuffled.export_state(), ordered.export_state(), "{name}");
    }
}
