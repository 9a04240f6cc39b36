//! `partition` built by the registry from zoo optimizers: every parameter ends exactly
//! (bit for bit) where its route's optimizer alone takes it; unrouted parameters and
//! failed steps; checkpoints through the registry; non-finite policies; evaluation
//! weights; config errors.

use ndarray::{Array2, ArrayD};
use optim_core::checkpoint::{load_into, save, to_bytes};
use optim_core::{Grad, Grads, HyperValue, NonFinitePolicy, OptimError, Optimizer, Params, Scalar};
use optim_test_support::{bits_of, wiggly};
use optim_zoo::Registry;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Three matrices (an embedding with sparse-row gradients among them) and two vectors.
fn params<T: Scalar>() -> Params<T> {
    Params::new()
        .with("enc.weight", wiggly::<T>(1, &[4, 3]))
        .unwrap()
        .with("enc.bias", wiggly::<T>(2, &[3]))
        .unwrap()
        .with("emb", wiggly::<T>(3, &[6, 3]))
        .unwrap()
        .with("dec.weight", wiggly::<T>(4, &[3, 2]))
        .unwrap()
        .with("LayerNorm.weight", wiggly::<T>(5, &[2]))
        .unwrap()
}

/// Step `s`'s gradients: sparse rows (one repeated) for the embedding, dense elsewhere;
/// `dec.weight` and `enc.bias` only on even steps.
fn grads<T: Scalar>(s: u64) -> Grads<T> {
    let rows: Array2<T> = wiggly::<T>(100 + s, &[3, 3]).into_dimensionality().unwrap();
    let mut g = Grads::new()
        .with("LayerNorm.weight", wiggly::<T>(200 + s, &[2]))
        .with("enc.weight", wiggly::<T>(300 + s, &[4, 3]));
    g.insert_rows("emb", vec![(s as usize) % 6, 4, (s as usize) % 6], rows);
    if s.is_multiple_of(2) {
        g.insert("dec.weight", wiggly::<T>(400 + s, &[3, 2]));
        g.insert("enc.bias", wiggly::<T>(500 + s, &[3]));
    }
    g
}

/// The parameters of `all` whose name passes `keep`, in order.
fn subset<T: Scalar>(all: &Params<T>, keep: impl Fn(&str, &[usize]) -> bool) -> Params<T> {
    let mut out = Params::new();
    for (name, a) in all.iter().filter(|(n, a)| keep(n, a.shape())) {
        out.insert(name, a.clone()).unwrap();
    }
    out
}

/// The gradients of `all` for the parameters in `of`.
fn grads_of<T: Scalar>(all: &Grads<T>, of: &Params<T>) -> Grads<T> {
    let mut out = Grads::new();
    for (name, g) in all.iter().filter(|(n, _)| of.get(n).is_some()) {
        match g {
            Grad::Dense(a) => out.insert(name, a.clone()),
            Grad::Rows { rows, values } => out.insert_rows(name, rows.clone(), values.clone()),
        }
    }
    out
}

const SGD_MOMENTUM: fn() -> Value = || json!({"optimizer": "sgd", "lr": 0.1, "momentum": 0.9});
const ADAMW: fn() -> Value = || json!({"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.1});

/// Matrices to SGD with momentum, the rest to AdamW.
fn config() -> Value {
    json!({"optimizer": "partition", "routes": [
        {"select": {"ndim": 2}, "optimizer": SGD_MOMENTUM()},
        {"optimizer": ADAMW()},
    ]})
}

fn build<T: Scalar>(config: &Value) -> Box<dyn Optimizer<T>> {
    Registry::zoo()
        .build::<T>(config)
        .unwrap_or_else(|e| panic!("{config}: {e}"))
}

/// Every parameter, stepped through the partition, equals bit for bit what its route's
/// optimizer does alone on that parameter's route, and so does that optimizer's state.
fn matches_each_route_alone<T: Scalar>(config: &Value) {
    let mut all = params::<T>();
    let mut partition = build::<T>(config);
    let matrix = |_: &str, shape: &[usize]| shape.len() == 2;
    let mut matrices = subset(&all, matrix);
    let mut rest = subset(&all, |n, s| !matrix(n, s));
    let mut sgd = build::<T>(&SGD_MOMENTUM());
    let mut adamw = build::<T>(&ADAMW());
    for s in 0..6 {
        let g = grads::<T>(s);
        partition.step(&mut all, &g).unwrap();
        let (g_matrices, g_rest) = (grads_of(&g, &matrices), grads_of(&g, &rest));
        sgd.step(&mut matrices, &g_matrices).unwrap();
        adamw.step(&mut rest, &g_rest).unwrap();
        for (name, _) in all.iter() {
            let alone = matrices
                .get(name)
                .map_or_else(|| bits_of(&rest, name), |_| bits_of(&matrices, name));
            assert_eq!(
                bits_of(&all, name),
                alone,
                "{name} after step {s} ({:?})",
                T::DTYPE
            );
        }
    }
    let state = partition.export_state();
    assert_eq!(state.routes[0].state, sgd.export_state());
    assert_eq!(state.routes[1].state, adamw.export_state());
    assert_eq!(state.routes[0].params, ["dec.weight", "emb", "enc.weight"]);
    assert_eq!(state.routes[1].params, ["LayerNorm.weight", "enc.bias"]);
    assert_eq!(partition.step_count("enc.bias"), Some(3));
    assert_eq!(partition.step_count("emb"), Some(6));
}

#[test]
fn each_parameter_ends_bit_for_bit_where_its_routes_optimizer_alone_takes_it() {
    matches_each_route_alone::<f32>(&config());
    matches_each_route_alone::<f64>(&config());
    // The conformance cases' form: the optimizer by name, its hyperparameters beside it.
    let case_form = json!({"optimizer": "partition", "routes": [
        {"select": {"ndim": 2}, "optimizer": "sgd", "hyper": {"lr": 0.1, "momentum": 0.9}},
        {"optimizer": "adamw", "hyper": {"lr": 0.01, "weight_decay": 0.1}},
    ]});
    matches_each_route_alone::<f64>(&case_form);
    // The same from TOML.
    let toml = r#"
        optimizer = "partition"
        [[routes]]
        select = { ndim = 2 }
        optimizer = { optimizer = "sgd", lr = 0.1, momentum = 0.9 }
        [[routes]]
        optimizer = { optimizer = "adamw", lr = 0.01, weight_decay = 0.1 }
    "#;
    let from_toml = Registry::zoo().from_toml::<f64>(toml).unwrap();
    assert_eq!(
        from_toml.export_state(),
        build::<f64>(&config()).export_state()
    );
}

#[test]
fn names_and_dimensions_together_select_and_the_first_match_wins() {
    // enc.weight: 2-D with "enc" → route 0 (sgd lr 0.5); the other matrices → route 1
    // (sgd lr 0.25); enc.bias has "enc" but is 1-D → route 2 (sgd lr 0).
    let mut opt = build::<f64>(&json!({"optimizer": "partition", "routes": [
        {"select": {"ndim": 2, "name_contains": ["enc"]}, "optimizer": {"optimizer": "sgd", "lr": 0.5}},
        {"select": {"ndim": 2}, "optimizer": {"optimizer": "sgd", "lr": 0.25}},
        {"optimizer": {"optimizer": "sgd", "lr": 0.0}},
    ]}));
    let mut p = params::<f64>();
    let before = p.clone();
    let mut g = Grads::new();
    for (name, a) in p.iter() {
        g.insert(name, ArrayD::from_elem(a.shape(), 1.0));
    }
    opt.step(&mut p, &g).unwrap();
    for (name, lr) in [
        ("enc.weight", 0.5),
        ("emb", 0.25),
        ("dec.weight", 0.25),
        ("enc.bias", 0.0),
        ("LayerNorm.weight", 0.0),
    ] {
        let want: Vec<f64> = before.get(name).unwrap().iter().map(|w| w - lr).collect();
        assert_eq!(
            p.get(name).unwrap().iter().copied().collect::<Vec<_>>(),
            want,
            "{name}"
        );
    }
}

#[test]
fn a_parameter_no_route_takes_fails_the_step_and_changes_nothing() {
    let mut opt = build::<f32>(&json!({"optimizer": "partition", "routes": [
        {"select": {"ndim": 2}, "optimizer": SGD_MOMENTUM()},
        {"select": {"name_contains": ["bias"]}, "optimizer": ADAMW()},
    ]}));
    let mut p = params::<f32>();
    let before = p.clone();
    let err = opt.step(&mut p, &grads(0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter `LayerNorm.weight` (shape [2]) matches no route of the partition; add a \
         catch-all route (one without a selector) as the last route"
    );
    assert_eq!(p, before);
    assert_eq!(opt.step_count("enc.weight"), None);
}

#[test]
fn a_failed_step_changes_no_route() {
    let mut opt = build::<f64>(&config());
    let mut p = params::<f64>();
    opt.step(&mut p, &grads(0)).unwrap();
    let (params_before, state_before) = (p.clone(), to_bytes(&opt.export_state()).unwrap());
    // The AdamW route's gradient has the wrong shape; the SGD route's are fine.
    let mut bad = grads::<f64>(1);
    bad.insert("LayerNorm.weight", wiggly::<f64>(9, &[3]));
    let err = opt.step(&mut p, &bad).unwrap_err();
    assert!(
        matches!(&err, OptimError::ShapeMismatch { name, .. } if name == "LayerNorm.weight"),
        "{err}"
    );
    // A sparse row out of bounds in the SGD route.
    let mut bad = grads::<f64>(1);
    bad.insert_rows(
        "emb",
        vec![6],
        wiggly::<f64>(9, &[1, 3]).into_dimensionality().unwrap(),
    );
    assert!(matches!(
        opt.step(&mut p, &bad),
        Err(OptimError::BadSparse { .. })
    ));
    assert_eq!(p, params_before);
    assert_eq!(to_bytes(&opt.export_state()).unwrap(), state_before);
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("optim-zoo-partition-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Trained 3 steps, saved, loaded into a partition built from `fresh` (the same routes,
/// default hyperparameters): the two continue bit for bit.
fn resume<T: Scalar>(trained: &Value, fresh: &Value, path: &std::path::Path) {
    let mut p = params::<T>();
    let mut opt = build::<T>(trained);
    for s in 0..3 {
        opt.step(&mut p, &grads(s)).unwrap();
    }
    save(opt.as_ref(), path).unwrap();
    let mut resumed = build::<T>(fresh);
    load_into(resumed.as_mut(), &p, path).unwrap();
    assert_eq!(resumed.export_state(), opt.export_state());
    assert_eq!(resumed.hyper("routes.0.lr"), opt.hyper("routes.0.lr"));
    let mut q = p.clone();
    for s in 3..9 {
        let g = grads(s);
        opt.step(&mut p, &g).unwrap();
        resumed.step(&mut q, &g).unwrap();
        for (name, _) in p.iter() {
            assert_eq!(
                bits_of(&p, name),
                bits_of(&q, name),
                "{trained}: {name}, step {s}"
            );
        }
    }
    assert_eq!(
        to_bytes(&opt.export_state()).unwrap(),
        to_bytes(&resumed.export_state()).unwrap()
    );
}

#[test]
fn a_checkpoint_resumes_bit_identically_through_the_registry() {
    let dir = tmp_dir("resume");
    let path = dir.join("partition.safetensors");
    let fresh = json!({"optimizer": "partition", "routes": [
        {"select": {"ndim": 2}, "optimizer": "sgd"},
        {"optimizer": "adamw"},
    ]});
    resume::<f32>(&config(), &fresh, &path);
    resume::<f64>(&config(), &fresh, &path);
    // Lookahead inside a route, and around the whole partition.
    let lookahead_route = json!({"optimizer": "partition", "routes": [
        {"select": {"ndim": 2}, "optimizer": {"optimizer": "lookahead", "k": 2, "inner": SGD_MOMENTUM()}},
        {"optimizer": "radam", "hyper": {"lr": 0.01}},
    ]});
    let fresh_route = json!({"optimizer": "partition", "routes": [
        {"select": {"ndim": 2}, "optimizer": {"optimizer": "lookahead", "inner": {"optimizer": "sgd"}}},
        {"optimizer": "radam"},
    ]});
    resume::<f64>(&lookahead_route, &fresh_route, &path);
    let around = json!({"optimizer": "lookahead", "k": 2, "inner": config()});
    let fresh_around = json!({"optimizer": "lookahead", "inner": fresh});
    resume::<f32>(&around, &fresh_around, &path);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_checkpoint_loads_only_into_a_partition_with_the_same_routes() {
    let dir = tmp_dir("mismatch");
    let path = dir.join("partition.safetensors");
    let mut p = params::<f32>();
    let mut opt = build::<f32>(&config());
    opt.step(&mut p, &grads(0)).unwrap();
    save(opt.as_ref(), &path).unwrap();
    for (other, want) in [
        (
            json!({"optimizer": "partition", "routes": [
                {"select": {"ndim": 2}, "optimizer": "sgd"}, {"optimizer": "adam"}]}),
            "route 1: the state is for optimizer `adamw`, this route's optimizer is `adam`",
        ),
        (
            json!({"optimizer": "partition", "routes": [
                {"select": {"ndim": 1}, "optimizer": "sgd"}, {"optimizer": "adamw"}]}),
            "route 0 takes ndim = 2 in the state, ndim = 1 in this partition",
        ),
        (
            json!({"optimizer": "partition", "routes": [{"optimizer": "adamw"}]}),
            "the state has 2 routes, this partition 1",
        ),
        (
            json!({"optimizer": "adamw"}),
            "the state is for optimizer `partition`, not `adamw`",
        ),
    ] {
        let mut target = build::<f32>(&other);
        let mut q = params::<f32>();
        target.step(&mut q, &grads(5)).unwrap();
        let before = to_bytes(&target.export_state()).unwrap();
        let err = load_into(target.as_mut(), &p, &path)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{other}: {err}");
        assert_eq!(to_bytes(&target.export_state()).unwrap(), before, "{other}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn non_finite_gradients_are_skipped_or_refused_in_every_route() {
    let mut opt = build::<f32>(&config());
    opt.set_non_finite_policy(NonFinitePolicy::SkipParam)
        .unwrap();
    let mut p = params::<f32>();
    opt.step(&mut p, &grads(0)).unwrap();
    let before = p.clone();
    let mut g = grads::<f32>(2);
    g.insert("enc.bias", ArrayD::from_elem(vec![3], f32::NAN)); // AdamW route
    g.insert("dec.weight", ArrayD::from_elem(vec![3, 2], f32::INFINITY)); // SGD route
    opt.step(&mut p, &g).unwrap();
    // In gradient order: LayerNorm.weight, enc.weight, emb, dec.weight, enc.bias.
    assert_eq!(opt.skipped(), ["dec.weight", "enc.bias"]);
    for name in ["dec.weight", "enc.bias"] {
        assert_eq!(bits_of(&p, name), bits_of(&before, name), "{name} skipped");
        assert_eq!(
            opt.step_count(name),
            Some(1),
            "{name}: its state did not advance"
        );
    }
    assert_ne!(bits_of(&p, "enc.weight"), bits_of(&before, "enc.weight"));
    assert_eq!(opt.step_count("enc.weight"), Some(2));

    opt.set_non_finite_policy(NonFinitePolicy::Error).unwrap();
    let (params_before, state_before) = (p.clone(), opt.export_state());
    let err = opt.step(&mut p, &g).unwrap_err();
    assert!(matches!(err, OptimError::NonFiniteGrad { .. }), "{err}");
    assert_eq!((p, opt.export_state()), (params_before, state_before));
}

#[test]
fn evaluation_weights_of_plain_routes_are_the_parameters() {
    let mut opt = build::<f64>(&config());
    let mut p = params::<f64>();
    for s in 0..3 {
        opt.step(&mut p, &grads(s)).unwrap();
    }
    assert_eq!(opt.eval_params(&p).unwrap(), p);
}

#[test]
fn evaluation_weights_come_from_each_parameters_route() {
    // Schedule-free AdamW for the vectors: its evaluation weights x differ from its
    // training weights y; SGD with momentum for the matrices: the parameters themselves.
    let sf = json!({"optimizer": "schedule_free_adamw", "lr": 0.01});
    let config = json!({"optimizer": "partition", "routes": [
        {"select": {"ndim": 2}, "optimizer": SGD_MOMENTUM()},
        {"optimizer": sf},
    ]});
    let mut all = params::<f64>();
    let mut opt = build::<f64>(&config);
    let mut rest = subset(&all, |_, shape| shape.len() != 2);
    let mut alone = build::<f64>(&sf);
    for s in 0..4 {
        let g = grads::<f64>(s);
        opt.step(&mut all, &g).unwrap();
        let g_rest = grads_of(&g, &rest);
        alone.step(&mut rest, &g_rest).unwrap();
    }
    let eval = opt.eval_params(&all).unwrap();
    let eval_alone = alone.eval_params(&rest).unwrap();
    for (name, _) in all.iter() {
        let want = match eval_alone.get(name) {
            Some(_) => bits_of(&eval_alone, name),
            None => bits_of(&all, name),
        };
        assert_eq!(bits_of(&eval, name), want, "{name}");
    }
    assert_ne!(
        bits_of(&eval, "enc.bias"),
        bits_of(&all, "enc.bias"),
        "x differs from y"
    );
    // The training weights are untouched, and a second call writes in place.
    assert_eq!(bits_of(&all, "enc.bias"), bits_of(&rest, "enc.bias"));
    let mut out = eval.clone();
    let place = out.get("enc.bias").unwrap().as_ptr();
    opt.eval_params_into(&all, &mut out).unwrap();
    assert_eq!(out, eval);
    assert_eq!(out.get("enc.bias").unwrap().as_ptr(), place);
}

#[test]
fn a_learning_rate_schedule_drives_every_route() {
    let mut opt = build::<f64>(&config());
    let schedule = optim_core::schedule::Schedule::cosine(0.02, 0.0, 0, 10).unwrap();
    schedule.apply(0, opt.as_mut()).unwrap();
    assert_eq!(opt.hyper("routes.0.lr"), Ok(HyperValue::Float(0.02)));
    assert_eq!(opt.hyper("routes.1.lr"), Ok(HyperValue::Float(0.02)));
    assert_eq!(opt.hyper("lr"), Ok(HyperValue::Float(0.02)));
    // Only AdamW has beta2.
    opt.set_hyper("beta2", HyperValue::Float(0.99)).unwrap();
    assert_eq!(opt.hyper("routes.1.beta2"), Ok(HyperValue::Float(0.99)));
    assert!(opt.hyper("routes.0.beta2").is_err());
}

fn config_error(config: Value) -> String {
    match Registry::zoo().build::<f32>(&config) {
        Ok(_) => panic!("{config} built"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_mistakes_are_errors_with_a_suggestion() {
    let cases = [
        (
            json!({"optimizer": "partition", "route": []}),
            "config: partition: unknown key `route` (did you mean `routes`?); valid: optimizer, routes",
        ),
        (
            json!({"optimizer": "partition", "lr": 0.1, "routes": [{"optimizer": "sgd"}]}),
            "a partition has no hyperparameters of its own",
        ),
        (
            json!({"optimizer": "partition"}),
            "partition: give its routes as `\"routes\": [",
        ),
        (
            json!({"optimizer": "partition", "routes": [{"selct": {"ndim": 2}, "optimizer": "sgd"}]}),
            "config: partition route 0: unknown key `selct` (did you mean `select`?); valid: select, optimizer, hyper",
        ),
        (
            json!({"optimizer": "partition", "routes": [{"select": {"ndims": 2}, "optimizer": "sgd"}, {"optimizer": "sgd"}]}),
            "config: partition route 0: unknown selector condition `ndims` (did you mean `ndim`?); valid: ndim, name_contains, names",
        ),
        (
            json!({"optimizer": "partition", "routes": [{"select": {"name_contain": ["enc"]}, "optimizer": "sgd"}]}),
            "(did you mean `name_contains`?)",
        ),
        (
            json!({"optimizer": "partition", "routes": [{"select": {"ndim": -1}, "optimizer": "sgd"}]}),
            "`select.ndim` must be a number of dimensions",
        ),
        (
            json!({"optimizer": "partition", "routes": [{"select": {"name_contains": "enc"}, "optimizer": "sgd"}]}),
            "`select.name_contains` must be a list of strings",
        ),
        (
            json!({"optimizer": "partition", "routes": [{"optimizer": "sgd", "hyper": {"lrr": 0.1}}]}),
            "partition route 0 (sgd): unknown hyperparameter `lrr` (did you mean `lr`?)",
        ),
        (
            json!({"optimizer": "partition", "routes": [{"optimizer": {"optimizer": "adamw"}}, {"optimizer": {"optimizer": "adamm"}}]}),
            "partition route 1: unknown optimizer `adamm` (did you mean `adam`?)",
        ),
        (
            json!({"optimizer": "partition", "routes": [{"optimizer": {"optimizer": "sgd"}, "hyper": {"lr": 0.1}}]}),
            "give the hyperparameters inside `optimizer`",
        ),
        (
            json!({"optimizer": "partition", "routes": [{"select": {"ndim": 2}}]}),
            "partition route 0: missing `optimizer`",
        ),
        (
            json!({"optimizer": "partition", "routes": [{"optimizer": "sgd"}, {"select": {"ndim": 2}, "optimizer": "sgd"}]}),
            "partition route 1 can never be used: route 0 before it takes every parameter",
        ),
        (
            json!({"optimizer": "partition", "routes": []}),
            "give at least one route",
        ),
        (
            json!({"optimizer": "partition", "routes": [{"optimizer": "sgd", "hyper": {"lr": -1.0}}]}),
            "partition route 0 (sgd): invalid lr value -1: must be in [0, inf)",
        ),
    ];
    for (config, want) in cases {
        let err = config_error(config.clone());
        assert!(err.contains(want), "{config}\n got: {err}\nwant: {want}");
    }
    assert!(Registry::zoo().names().contains(&"partition"));
}
