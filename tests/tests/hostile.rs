//! Issue 13, "Tried as a hostile user would", through the zoo and the registry (the
//! runtime's own regressions are in `optim-core/tests/hostile.rs`).

use ndarray::arr1;
use optim_core::{Grads, HyperValue, Optimizer, Params};
use optim_zoo::{Adam, Prodigy};

#[test]
fn infinite_learning_rates_and_decays_are_refused() {
    let err = Adam::default()
        .lr(f64::INFINITY)
        .build::<f32>()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "adam: invalid lr value inf: must be in [0, inf)"
    );
    let mut opt = Adam::default().build::<f32>().unwrap();
    assert!(opt.set_hyper("weight_decay", f64::INFINITY.into()).is_err());
    let mut params = Params::new().with("w", arr1(&[1.0f32])).unwrap();
    opt.step(&mut params, &Grads::new().with("w", arr1(&[1.0f32])))
        .unwrap();
    // Adam's first step moves by lr = 1e-3 (m̂/√v̂ = 1, up to ε).
    let w = params.get("w").unwrap()[[0]];
    assert!((w - (1.0 - 1e-3)).abs() < 1e-6, "{w}");

    // TOML spells infinity `inf`; the registry refuses it too (its JSON has no inf, so it
    // reports a null).
    let registry = optim_zoo::Registry::zoo();
    for (name, key) in [("adam", "eps"), ("sgd", "weight_decay"), ("lion", "lr")] {
        let config = format!("optimizer = \"{name}\"\n{key} = inf");
        assert!(registry.from_toml::<f32>(&config).is_err(), "{config}");
    }
}

#[test]
fn an_infinite_default_that_its_range_admits_still_works() {
    // Prodigy's growth rate is unbounded by default: `growth_rate = inf in 1.0..=inf`.
    let mut opt = Prodigy::default().build::<f64>().unwrap();
    assert_eq!(
        opt.hyper("growth_rate").unwrap(),
        HyperValue::Float(f64::INFINITY)
    );
    opt.set_hyper("growth_rate", 2.0.into()).unwrap();
    opt.set_hyper("growth_rate", f64::INFINITY.into()).unwrap();
    assert!(opt.set_hyper("growth_rate", 0.5.into()).is_err());
    let mut params = Params::new().with("w", arr1(&[1.0, -1.0])).unwrap();
    let grads = Grads::new().with("w", arr1(&[0.5, -0.5]));
    opt.step(&mut params, &grads).unwrap();
    assert!(params.get("w").unwrap().iter().all(|x| x.is_finite()));
}

#[test]
fn ranger_loads_its_own_checkpoint_after_a_parameter_is_skipped_on_its_first_step() {
    use optim_core::{checkpoint, NonFinitePolicy};
    let config = serde_json::json!({"optimizer": "ranger", "lr": 0.01});
    let mut opt = optim_zoo::build::<f32>(&config).unwrap();
    opt.set_non_finite_policy(NonFinitePolicy::SkipParam)
        .unwrap();
    let mut params = Params::new()
        .with("a", arr1(&[1.0f32, 2.0]))
        .unwrap()
        .with("b", arr1(&[3.0f32]))
        .unwrap();
    let bad = Grads::new()
        .with("a", arr1(&[f32::NAN, 1.0]))
        .with("b", arr1(&[1.0f32]));
    opt.step(&mut params, &bad).unwrap();
    assert_eq!(opt.skipped(), ["a"]);

    let saved = opt.export_state();
    opt.import_state(&saved, &params).unwrap();
    let bytes = checkpoint::to_bytes(&saved).unwrap();
    let mut fresh = optim_zoo::build::<f32>(&config).unwrap();
    fresh
        .import_state(&checkpoint::from_bytes(&bytes).unwrap(), &params)
        .unwrap();
    assert_eq!(fresh.export_state(), saved);

    let good = Grads::new()
        .with("a", arr1(&[1.0f32, 1.0]))
        .with("b", arr1(&[1.0f32]));
    let mut resumed = params.clone();
    opt.step(&mut params, &good).unwrap();
    fresh.step(&mut resumed, &good).unwrap();
    assert_eq!(params, resumed);
    assert_eq!(opt.export_state(), fresh.export_state());
}
