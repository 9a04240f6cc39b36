//! `Optim`: stepping, missing gradients, errors that change nothing, groups, sparse rules.
//! Expected values are worked out by hand with dyadic numbers, so they are exact.

mod common;

use common::*;
use ndarray::{arr1, arr2, Array2, ArrayD, IxDyn};
use optim_core::optim::Optim;
use optim_core::*;
use optim_test_support::bits;

fn sgd(lr: f64, momentum: f64) -> Optim<Sgd, f64> {
    Optim::new(Sgd::default().lr(lr).momentum(momentum)).unwrap()
}

fn values(params: &Params<f64>, name: &str) -> Vec<f64> {
    params.get(name).unwrap().iter().copied().collect()
}

fn ones(shape: &[usize]) -> ArrayD<f64> {
    ArrayD::from_elem(IxDyn(shape), 1.0)
}

fn hyper<T: Scalar>(opt: &dyn Optimizer<T>, name: &str) -> Result<HyperValue> {
    opt.hyper(name)
}

#[test]
fn momentum_steps_match_hand_values() {
    let mut params = Params::new().with("w", arr1(&[1.0, 2.0])).unwrap();
    let mut opt = sgd(0.5, 0.5);
    opt.step(&mut params, &Grads::new().with("w", arr1(&[1.0, -2.0])))
        .unwrap();
    // t = 1: b = g = [1, -2]; w = [1 - 0.5, 2 + 1]
    assert_eq!(values(&params, "w"), [0.5, 3.0]);
    opt.step(&mut params, &Grads::new().with("w", arr1(&[2.0, 2.0])))
        .unwrap();
    // t = 2: b = 0.5 b + g = [2.5, 1]; w = [0.5 - 1.25, 3 - 0.5]
    assert_eq!(values(&params, "w"), [-0.75, 2.5]);
    assert_eq!(opt.step_count("w"), Some(2));
    assert_eq!(opt.steps(), 2);
}

#[test]
fn maximize_ascends() {
    let mut params = Params::new().with("w", arr1(&[1.0])).unwrap();
    let mut opt = sgd(0.5, 0.0);
    opt.set_hyper("maximize", true.into()).unwrap();
    opt.step(&mut params, &Grads::new().with("w", arr1(&[1.0])))
        .unwrap();
    assert_eq!(values(&params, "w"), [1.5]);
}

#[test]
fn missing_gradient_leaves_param_and_state_alone() {
    let mut params = Params::new()
        .with("a", arr1(&[1.0, 2.0]))
        .unwrap()
        .with("b", arr1(&[3.0]))
        .unwrap();
    let mut opt = sgd(0.5, 0.5);
    opt.step(&mut params, &Grads::new().with("a", arr1(&[1.0, 1.0])))
        .unwrap();
    assert_eq!(values(&params, "a"), [0.5, 1.5]);
    assert_eq!(values(&params, "b"), [3.0]);
    assert_eq!(opt.step_count("b"), None);
    let a_state = opt.export_state().params[0].clone();
    assert_eq!(a_state.param, "a");

    opt.step(&mut params, &Grads::new().with("b", arr1(&[2.0])))
        .unwrap();
    assert_eq!(values(&params, "a"), [0.5, 1.5]);
    assert_eq!(opt.step_count("a"), Some(1));
    assert_eq!(opt.export_state().params[0], a_state);
    assert_eq!(values(&params, "b"), [2.0]);

    // a's second step: b = 0.5·1 + 1 = 1.5 (a zero-gradient step would have given 1.25).
    opt.step(&mut params, &Grads::new().with("a", arr1(&[1.0, 1.0])))
        .unwrap();
    assert_eq!(values(&params, "a"), [-0.25, 0.75]);
    assert_eq!(opt.step_count("a"), Some(2));
}

#[test]
fn empty_gradients_step_changes_nothing_but_the_counter() {
    let mut params = Params::new().with("w", arr1(&[1.0])).unwrap();
    let mut opt = sgd(0.5, 0.5);
    opt.step(&mut params, &Grads::new()).unwrap();
    assert_eq!(values(&params, "w"), [1.0]);
    assert_eq!(opt.step_count("w"), None);
    assert!(opt.export_state().params.is_empty());
    assert_eq!(opt.steps(), 1);
}

#[test]
fn bad_gradients_change_nothing() {
    let mut params = Params::new()
        .with("weight", arr2(&[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
        .unwrap()
        .with("bias", arr1(&[0.5, -0.5]))
        .unwrap();
    let good_w = || arr2(&[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]);
    let good_b = || arr1(&[1.0, 1.0]);
    let mut opt = sgd(0.5, 0.5);
    let all = Grads::new().with("weight", good_w()).with("bias", good_b());
    opt.step(&mut params, &all).unwrap();
    let (p0, s0) = (bits(&params), opt.export_state());

    let mut sparse_oob = Grads::new().with("bias", good_b());
    sparse_oob.insert_rows("weight", vec![0, 3], Array2::ones((2, 2)));
    let mut sparse_1d = Grads::new().with("weight", good_w());
    sparse_1d.insert_rows("bias", vec![0], Array2::ones((1, 2)));
    let mut sparse_width = Grads::new();
    sparse_width.insert_rows("weight", vec![0, 1], Array2::ones((2, 3)));
    let cases: Vec<(Grads<f64>, &str)> = vec![
        (
            Grads::new()
                .with("weight", good_w())
                .with("wieght", good_w()),
            "gradient for unknown parameter `wieght` (did you mean `weight`?)",
        ),
        (
            Grads::new()
                .with("bias", good_b())
                .with("weight", Array2::ones((2, 3))),
            "`weight`: gradient shape [2, 3] does not match parameter shape [3, 2]",
        ),
        (
            Grads::new().with("bias", ones(&[2, 1])),
            "`bias`: gradient shape [2, 1] does not match parameter shape [2]",
        ),
        (
            sparse_oob,
            "`weight`: bad sparse gradient: row 3 is out of bounds: the parameter has 3 rows",
        ),
        (
            sparse_1d,
            "`bias`: bad sparse gradient: sparse-row gradients need a 2-D parameter, \
             but it has shape [2]",
        ),
        (
            sparse_width,
            "`weight`: bad sparse gradient: values have shape [2, 3], expected [2, 2] \
             (one row of width 2 per row index)",
        ),
    ];
    for (grads, message) in cases {
        assert_eq!(opt.check(&params, &grads).unwrap_err().to_string(), message);
        let err = opt.step(&mut params, &grads).unwrap_err();
        assert_eq!(err.to_string(), message);
        assert_eq!(bits(&params), p0, "{message}");
        assert_eq!(opt.export_state(), s0, "{message}");
    }
    let err = opt
        .check(&params, &Grads::new().with("wieght", good_w()))
        .unwrap_err();
    assert_eq!(
        err,
        OptimError::UnknownParam {
            name: "wieght".into(),
            suggestion: Some("weight".into())
        }
    );
}

#[test]
fn non_finite_gradients_are_not_an_error() {
    let mut params = Params::new().with("w", arr1(&[1.0, 1.0])).unwrap();
    let mut opt = sgd(0.5, 0.0);
    let grads = Grads::new().with("w", arr1(&[f64::NAN, 0.0]));
    opt.check(&params, &grads).unwrap();
    opt.step(&mut params, &grads).unwrap();
    assert!(values(&params, "w")[0].is_nan());
    assert_eq!(values(&params, "w")[1], 1.0);
}

#[test]
fn first_matching_group_wins_and_follows_base_changes() {
    let mut params = Params::new();
    for name in ["a", "b", "c"] {
        params.insert(name, arr1(&[1.0])).unwrap();
    }
    let grads = Grads::new()
        .with("a", arr1(&[1.0]))
        .with("b", arr1(&[1.0]))
        .with("c", arr1(&[1.0]));
    let mut opt = sgd(0.5, 0.0);
    opt.add_group(Group::names(["b"]).set("lr", 0.25)).unwrap();
    opt.add_group(Group::name_contains(["b", "c"]).set("lr", 0.125))
        .unwrap();
    opt.step(&mut params, &grads).unwrap();
    assert_eq!(values(&params, "a"), [0.5]);
    assert_eq!(values(&params, "b"), [0.75]);
    assert_eq!(values(&params, "c"), [0.875]);

    // A new base lr reaches the base only; a new momentum reaches every group.
    opt.set_hyper("lr", 1.0.into()).unwrap();
    opt.set_hyper("momentum", 0.5.into()).unwrap();
    opt.step(&mut params, &grads).unwrap();
    // t = 2 with a fresh (zero) b: b = 0.5·0 + 1 = 1.
    assert_eq!(values(&params, "a"), [-0.5]);
    assert_eq!(values(&params, "b"), [0.5]);
    assert_eq!(values(&params, "c"), [0.75]);
    assert_eq!(opt.groups().len(), 2);
}

#[test]
fn group_added_after_state_exists_takes_effect() {
    let mut params = Params::new().with("a", arr1(&[1.0])).unwrap();
    let grads = Grads::new().with("a", arr1(&[1.0]));
    let mut opt = sgd(0.5, 0.0);
    opt.step(&mut params, &grads).unwrap();
    opt.add_group(Group::names(["a"]).set("lr", 0.25)).unwrap();
    opt.step(&mut params, &grads).unwrap();
    assert_eq!(values(&params, "a"), [0.25]);
}

#[test]
fn exclude_from_weight_decay_masks_by_name() {
    let mut params = Params::new();
    let mut grads = Grads::new();
    for name in ["layer.weight", "layer.bias", "LayerNorm.weight"] {
        params.insert(name, arr1(&[2.0])).unwrap();
        grads.insert(name, arr1(&[0.0]));
    }
    let mut opt = Optim::<Sgd, f64>::new(Sgd::default().lr(0.5).weight_decay(0.5)).unwrap();
    opt.exclude_from_weight_decay(&["bias", "LayerNorm"])
        .unwrap();
    opt.step(&mut params, &grads).unwrap();
    // g = 0 + 0.5·2 = 1 → 2 − 0.5 for the decayed weight; the others have g = 0.
    assert_eq!(values(&params, "layer.weight"), [1.5]);
    assert_eq!(values(&params, "layer.bias"), [2.0]);
    assert_eq!(values(&params, "LayerNorm.weight"), [2.0]);

    let mut acc = Optim::<Acc, f64>::new(Acc::default()).unwrap();
    let err = acc.exclude_from_weight_decay(&["bias"]).unwrap_err();
    assert!(matches!(err, OptimError::UnknownHyper { ref name, .. } if name == "weight_decay"));
    assert!(acc.groups().is_empty());
}

#[test]
fn bad_groups_are_rejected_and_not_added() {
    let mut opt = sgd(0.5, 0.0);
    let cases = [
        (
            Group::names(["a"]).set("momentun", 0.5),
            "sgd: unknown hyperparameter `momentun` (did you mean `momentum`?); \
             valid: lr, momentum, weight_decay, maximize",
        ),
        (
            Group::names(["a"]).set("lr", -1.0),
            "sgd: invalid lr value -1: must be in [0, inf)",
        ),
        (
            Group::names(["a"]).set("maximize", 1.0),
            "sgd: hyperparameter `maximize` is a bool, got 1.0",
        ),
        (
            Group::names(Vec::<String>::new()).set("lr", 0.1),
            "parameter group: the group lists no parameter names",
        ),
        (
            Group::name_contains([""]).set("lr", 0.1),
            "parameter group: an empty name part would match every parameter",
        ),
    ];
    for (group, message) in cases {
        assert_eq!(opt.add_group(group).unwrap_err().to_string(), message);
        assert!(opt.groups().is_empty());
    }
    assert!(opt.export_state().groups.is_empty());
}

#[test]
fn set_hyper_checks_and_changes_nothing_on_error() {
    let mut opt = sgd(0.5, 0.0);
    let err = opt.set_hyper("lr", (-1.0).into()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sgd: invalid lr value -1: must be in [0, inf)"
    );
    assert_eq!(hyper(&opt, "lr").unwrap(), HyperValue::Float(0.5));
    let err = opt.set_hyper("lrr", 0.1.into()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sgd: unknown hyperparameter `lrr` (did you mean `lr`?); \
         valid: lr, momentum, weight_decay, maximize"
    );
    let err = hyper(&opt, "nesterov").unwrap_err();
    assert!(matches!(
        err,
        OptimError::UnknownHyper {
            suggestion: None,
            ..
        }
    ));
    assert!(opt.set_hyper("momentum", HyperValue::Int(1)).is_err());
    opt.set_hyper("lr", HyperValue::Int(2)).unwrap();
    assert_eq!(hyper(&opt, "lr").unwrap(), HyperValue::Float(2.0));
    assert_eq!(opt.config().lr, 2.0);
}

#[test]
fn optional_state_is_allocated_when_enabled_and_dropped_when_disabled() {
    let mut params = Params::new().with("a", arr1(&[1.0])).unwrap();
    let grads = Grads::new().with("a", arr1(&[1.0]));
    let tensors = |opt: &Optim<Sgd, f64>| opt.export_state().params[0].tensors.clone();
    let mut opt = sgd(0.5, 0.0);
    opt.step(&mut params, &grads).unwrap();
    assert!(tensors(&opt).is_empty());

    opt.set_hyper("momentum", 0.5.into()).unwrap();
    let fresh = vec![TensorState {
        name: "b".into(),
        shape: vec![1],
        data: TensorData::F64(vec![0.0]),
    }];
    assert_eq!(tensors(&opt), fresh);
    opt.step(&mut params, &grads).unwrap(); // t = 2: b = 0.5·0 + 1
    assert_eq!(values(&params, "a"), [0.0]);
    opt.step(&mut params, &grads).unwrap(); // t = 3: b = 1.5
    assert_eq!(values(&params, "a"), [-0.75]);

    opt.set_hyper("momentum", 0.0.into()).unwrap();
    assert!(tensors(&opt).is_empty());
    opt.set_hyper("momentum", 0.5.into()).unwrap();
    assert_eq!(
        tensors(&opt),
        fresh,
        "re-enabled state restarts from its init"
    );
}

#[test]
fn densify_and_lazy_sum_repeated_rows_and_differ_on_absent_rows() {
    fn run<A: Algorithm>(hyper: A) -> (Vec<f64>, Option<u64>) {
        let mut params = Params::new().with("e", Array2::ones((3, 2))).unwrap();
        let mut opt = Optim::<A, f64>::new(hyper).unwrap();
        let mut g = Grads::new();
        g.insert_rows(
            "e",
            vec![2, 0, 2],
            arr2(&[[1.0, 1.0], [2.0, 2.0], [0.5, 0.5]]),
        );
        opt.step(&mut params, &g).unwrap();
        // Summed rows: [2, 0, 1.5]; b = g at t = 1; w = 1 − 0.5·b.
        assert_eq!(values(&params, "e"), [0.0, 0.0, 1.0, 1.0, 0.25, 0.25]);
        let mut g = Grads::new();
        g.insert_rows("e", vec![0], arr2(&[[1.0, 1.0]]));
        opt.step(&mut params, &g).unwrap();
        (values(&params, "e"), opt.step_count("e"))
    }
    // Densify: rows 1 and 2 have gradient 0, b = 0.5·b + 0 still moves row 2.
    let (dense, t) = run(Sgd::default().lr(0.5).momentum(0.5));
    assert_eq!(dense, [-1.0, -1.0, 1.0, 1.0, -0.125, -0.125]);
    assert_eq!(t, Some(2));
    // Lazy: only row 0 steps; rows 1 and 2 keep weights and moments.
    let (lazy, t) = run(LazySgd::default().lr(0.5).momentum(0.5));
    assert_eq!(lazy, [-1.0, -1.0, 1.0, 1.0, 0.25, 0.25]);
    assert_eq!(t, Some(2));
}

#[test]
fn lazy_with_a_dense_gradient_steps_every_row() {
    let mut params = Params::new().with("e", Array2::ones((2, 2))).unwrap();
    let mut opt = Optim::<LazySgd, f64>::new(LazySgd::default().lr(0.5)).unwrap();
    opt.step(
        &mut params,
        &Grads::new().with("e", arr2(&[[1.0, 2.0], [0.0, -2.0]])),
    )
    .unwrap();
    assert_eq!(values(&params, "e"), [0.5, 0.0, 1.0, 2.0]);
}

#[test]
fn zero_size_and_non_standard_layout_params() {
    let mut params = Params::new()
        .with("z", Array2::<f64>::zeros((0, 3)))
        .unwrap()
        .with("m", Array2::<f64>::zeros((2, 2)))
        .unwrap();
    // Replace `m` by an array in column-major layout: logically [[1, 2], [3, 4]].
    *params.get_mut("m").unwrap() = arr2(&[[1.0, 3.0], [2.0, 4.0]]).reversed_axes().into_dyn();
    let mut opt = sgd(0.5, 0.5);
    let grads = Grads::new()
        .with("z", Array2::<f64>::zeros((0, 3)))
        .with("m", arr2(&[[2.0, 0.0], [0.0, 4.0]]));
    opt.step(&mut params, &grads).unwrap();
    assert_eq!(
        params.get("m").unwrap(),
        &arr2(&[[0.0, 2.0], [3.0, 2.0]]).into_dyn()
    );
    assert_eq!(opt.step_count("z"), Some(1));
    let state = opt.export_state();
    let m = state.params.iter().find(|p| p.param == "m").unwrap();
    assert_eq!(m.tensors[0].data, TensorData::F64(vec![2.0, 0.0, 0.0, 4.0]));
    let z = state.params.iter().find(|p| p.param == "z").unwrap();
    assert_eq!(z.tensors[0].shape, [0, 3]);
    let mut fresh = sgd(0.1, 0.0);
    fresh.import_state(&state, &params).unwrap();
    assert_eq!(fresh.export_state(), state);
}

#[test]
fn a_parameter_that_changed_shape_is_an_error() {
    let mut params = Params::new().with("w", arr1(&[1.0, 1.0])).unwrap();
    let mut opt = sgd(0.5, 0.5);
    opt.step(&mut params, &Grads::new().with("w", arr1(&[1.0, 1.0])))
        .unwrap();
    let s0 = opt.export_state();
    *params.get_mut("w").unwrap() = ones(&[3]);
    let err = opt
        .step(&mut params, &Grads::new().with("w", ones(&[3])))
        .unwrap_err();
    assert!(matches!(err, OptimError::BadState(_)), "{err}");
    assert!(err.to_string().contains("[3]") && err.to_string().contains("[2]"));
    assert_eq!(values(&params, "w"), [1.0; 3]);
    assert_eq!(opt.export_state(), s0);
}

#[test]
fn construction_checks_kind_and_ranges() {
    let err = Optim::<Lookahead, f64>::new(Lookahead::default()).unwrap_err();
    assert!(matches!(err, OptimError::Config(_)), "{err}");
    let err = Optim::<Sgd, f64>::new(Sgd::default().lr(-1.0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sgd: invalid lr value -1: must be in [0, inf)"
    );
}

#[test]
fn clones_are_independent_and_print() {
    let mut params = Params::new().with("w", arr1(&[1.0])).unwrap();
    let grads = Grads::new().with("w", arr1(&[1.0]));
    let mut opt = sgd(0.5, 0.5);
    opt.step(&mut params, &grads).unwrap();
    let copy = opt.clone();
    let boxed: Box<dyn Optimizer<f64>> = opt.boxed_clone();
    opt.step(&mut params, &grads).unwrap();
    assert_eq!(copy.step_count("w"), Some(1));
    assert_eq!(boxed.step_count("w"), Some(1));
    assert_eq!(opt.step_count("w"), Some(2));
    assert_eq!(boxed.name(), "sgd");
    assert_eq!(boxed.hyper_specs().len(), 4);
    let printed = format!("{opt:?}");
    assert!(
        printed.contains("sgd") && printed.contains("lr: 0.5"),
        "{printed}"
    );
}
