//! Building optimizers by name: helpful errors for every mistake, nothing unknown
//! ignored, JSON and TOML configs, presets, BERT's decay mask, user-defined optimizers.

use ndarray::{array, Array1, Array2};
use optim_core::{Grads, HyperValue, Optimizer, Params};
use optim_macros::optimizer;
use optim_test_support::{bits, grads_at, two_params, values};
use optim_zoo::Registry;
use serde_json::{json, Value};

fn error(config: Value) -> String {
    match Registry::zoo().build::<f64>(&config) {
        Ok(opt) => panic!("{config} built {opt:?}"),
        Err(e) => e.to_string(),
    }
}

fn hyper(opt: &dyn Optimizer<f64>, name: &str) -> HyperValue {
    opt.hyper(name)
        .unwrap_or_else(|e| panic!("{}: {e}", opt.name()))
}

#[test]
fn an_unknown_optimizer_lists_the_valid_names_and_suggests_the_closest() {
    let valid = Registry::zoo().names().join(", ");
    assert_eq!(
        error(json!({"optimizer": "adamm"})),
        format!("config: unknown optimizer `adamm` (did you mean `adam`?); valid: {valid}")
    );
    assert_eq!(
        error(json!({"optimizer": "lokahead"})),
        format!("config: unknown optimizer `lokahead` (did you mean `lookahead`?); valid: {valid}")
    );
    // Nothing close: no suggestion, still the list.
    assert_eq!(
        error(json!({"optimizer": "shampoo"})),
        format!("config: unknown optimizer `shampoo`; valid: {valid}")
    );
    assert_eq!(
        error(json!({"lr": 0.1})),
        "config: missing `\"optimizer\": \"<name>\"`"
    );
}

#[test]
fn an_unknown_hyperparameter_suggests_the_closest_and_lists_the_valid_ones() {
    assert_eq!(
        error(json!({"optimizer": "adam", "betta1": 0.9})),
        "adam: unknown hyperparameter `betta1` (did you mean `beta1`?); \
         valid: lr, beta1, beta2, eps, weight_decay, amsgrad, maximize"
    );
    assert_eq!(
        error(json!({"optimizer": "sgd", "learning_rate": 0.1})),
        "sgd: unknown hyperparameter `learning_rate`; \
         valid: lr, momentum, dampening, nesterov, weight_decay, maximize"
    );
}

#[test]
fn out_of_range_values_name_the_range_and_wrong_kinds_are_errors() {
    assert_eq!(
        error(json!({"optimizer": "adamw", "eps": -1e-8})),
        "adamw: invalid eps value -0.00000001: must be in [0, inf)"
    );
    assert_eq!(
        error(json!({"optimizer": "adam", "amsgrad": 1})),
        "adam: hyperparameter `amsgrad` is a bool, got 1"
    );
    assert_eq!(
        error(json!({"optimizer": "sgd", "nesterov": "yes"})),
        "config: `nesterov`: expected a number or a bool, got \"yes\""
    );
    assert_eq!(
        error(json!({"optimizer": "adam", "lr": true})),
        "adam: hyperparameter `lr` is a float, got true"
    );
    let k = error(json!({"optimizer": "lookahead", "k": 2.5, "inner": {"optimizer": "sgd"}}));
    assert!(
        k.starts_with("lookahead: hyperparameter `k` is a") && k.ends_with("integer, got 2.5"),
        "{k}"
    );
    // An integral float is an integer; an integer is a float.
    let opt = Registry::zoo()
        .build::<f64>(&json!({"optimizer": "lookahead", "k": 3.0, "lr": 1, "inner": {"optimizer": "sgd", "lr": 1}}));
    assert!(opt.is_err(), "`lr` belongs to the inner optimizer");
    let opt = Registry::zoo()
        .build::<f64>(
            &json!({"optimizer": "lookahead", "k": 3.0, "inner": {"optimizer": "sgd", "lr": 1}}),
        )
        .unwrap();
    assert_eq!(hyper(opt.as_ref(), "k"), HyperValue::Int(3));
    assert_eq!(hyper(opt.as_ref(), "lr"), HyperValue::Float(1.0));
}

#[test]
fn nothing_unknown_is_ignored_in_presets_composites_or_inner_configs() {
    assert_eq!(
        error(json!({"optimizer": "nag", "nesterovv": false})),
        "sgd: unknown hyperparameter `nesterovv` (did you mean `nesterov`?); \
         valid: lr, momentum, dampening, nesterov, weight_decay, maximize"
    );
    assert!(
        error(json!({"optimizer": "bert", "weight_decays": 0.1})).starts_with(
            "adamw: unknown hyperparameter `weight_decays` (did you mean `weight_decay`?)"
        )
    );
    // Ranger's one flat config: RAdam's and Lookahead's names together.
    let e = error(json!({"optimizer": "ranger", "kk": 3}));
    assert!(
        e.starts_with("ranger: unknown hyperparameter `kk` (did you mean `k`?); valid: "),
        "{e}"
    );
    for name in [
        "lr",
        "beta1",
        "decoupled_weight_decay",
        "maximize",
        "k",
        "alpha",
    ] {
        assert!(
            e.contains(&format!(" {name},")) || e.ends_with(&format!(" {name}")),
            "{e}"
        );
    }
    assert!(
        error(json!({"optimizer": "ranger", "inner": {"optimizer": "adam"}}))
            .contains("ranger has a fixed inner optimizer (radam)")
    );
    // Lookahead: its own names, `inner`, and nothing else at the top level.
    assert_eq!(
        error(json!({"optimizer": "lookahead", "alph": 0.5, "inner": {"optimizer": "sgd"}})),
        "lookahead: unknown hyperparameter `alph` (did you mean `alpha`?); valid: k, alpha, inner"
    );
    assert!(
        error(json!({"optimizer": "lookahead", "inner": {"optimizer": "adam", "lrr": 0.1}}))
            .starts_with("adam: unknown hyperparameter `lrr` (did you mean `lr`?)")
    );
    assert!(
        error(json!({"optimizer": "lookahead", "inner": {"optimizer": "adamm"}}))
            .starts_with("config: unknown optimizer `adamm` (did you mean `adam`?)")
    );
    assert!(error(json!({"optimizer": "lookahead"})).contains("lookahead wraps another optimizer"));
    assert_eq!(
        error(json!({"optimizer": "adam", "inner": {"optimizer": "sgd"}})),
        "config: adam takes no `inner` optimizer; only wrappers such as lookahead do"
    );
    assert!(error(json!(["adam"])).starts_with("config: expected an object"));
    // (Reported as a value error, not as an unknown name, but reported.)
    assert!(error(json!({"optimizer": "adam", "schedule": "cosine"})).contains("`schedule`"));
}

#[test]
fn json_and_toml_configs_build_the_same_optimizer() {
    let reg = Registry::zoo();
    let from_toml = reg
        .from_toml::<f64>("optimizer = \"adamw\"\nlr = 3e-4\nweight_decay = 0.01")
        .unwrap();
    let from_json = reg
        .from_json::<f64>(r#"{"optimizer": "adamw", "lr": 3e-4, "weight_decay": 0.01}"#)
        .unwrap();
    for opt in [&from_toml, &from_json] {
        assert_eq!(opt.name(), "adamw");
        assert_eq!(hyper(opt.as_ref(), "lr"), HyperValue::Float(3e-4));
        assert_eq!(hyper(opt.as_ref(), "weight_decay"), HyperValue::Float(0.01));
        assert_eq!(hyper(opt.as_ref(), "amsgrad"), HyperValue::Bool(false));
    }
    let toml = "optimizer = \"lookahead\"\nk = 6\nalpha = 0.8\n\n[inner]\noptimizer = \"adam\"\nlr = 0.002\namsgrad = true\n";
    let json = r#"{"optimizer": "lookahead", "k": 6, "alpha": 0.8,
                   "inner": {"optimizer": "adam", "lr": 0.002, "amsgrad": true}}"#;
    let mut runs = Vec::new();
    for mut opt in [
        reg.from_toml::<f64>(toml).unwrap(),
        reg.from_json::<f64>(json).unwrap(),
    ] {
        assert_eq!(opt.name(), "lookahead");
        assert_eq!(hyper(opt.as_ref(), "k"), HyperValue::Int(6));
        assert_eq!(hyper(opt.as_ref(), "alpha"), HyperValue::Float(0.8));
        assert_eq!(hyper(opt.as_ref(), "lr"), HyperValue::Float(0.002));
        assert_eq!(hyper(opt.as_ref(), "amsgrad"), HyperValue::Bool(true));
        let mut params = two_params::<f64>();
        for k in 1..=8 {
            opt.step(&mut params, &grads_at(k)).unwrap();
        }
        runs.push(bits(&params));
    }
    assert_eq!(runs[0], runs[1]);
    assert!(reg
        .from_toml::<f64>("optimizer = \"adam\"\nlr = ")
        .unwrap_err()
        .to_string()
        .starts_with("config: invalid TOML: "));
    assert!(reg
        .from_json::<f64>("{\"optimizer\": \"adam\",}")
        .unwrap_err()
        .to_string()
        .starts_with("config: invalid JSON: "));
    assert!(reg
        .from_toml::<f64>("optimizer = \"adam\"\nlr = \"fast\"")
        .is_err());
}

/// Every hyperparameter of `opt` is its declared default, except `set`.
fn assert_defaults_except(opt: &dyn Optimizer<f64>, set: &[(&str, HyperValue)]) {
    for spec in opt.hyper_specs() {
        let expected = set
            .iter()
            .find(|(n, _)| *n == spec.name)
            .map_or(spec.default, |(_, v)| *v);
        assert_eq!(
            hyper(opt, spec.name),
            expected,
            "{}: {}",
            opt.name(),
            spec.name
        );
    }
}

#[test]
fn presets_set_their_documented_hyperparameters_and_nothing_else() {
    use HyperValue::{Bool, Float, Int};
    let build = |c: Value| Registry::zoo().build::<f64>(&c).unwrap();
    for name in ["momentum", "sgdm"] {
        let opt = build(json!({"optimizer": name}));
        assert_eq!(opt.name(), "sgd");
        assert_defaults_except(opt.as_ref(), &[("momentum", Float(0.9))]);
    }
    let nag = build(json!({"optimizer": "nag"}));
    assert_defaults_except(
        nag.as_ref(),
        &[("momentum", Float(0.9)), ("nesterov", Bool(true))],
    );
    let amsgrad = build(json!({"optimizer": "amsgrad"}));
    assert_eq!(amsgrad.name(), "adam");
    assert_defaults_except(amsgrad.as_ref(), &[("amsgrad", Bool(true))]);
    let bert = build(json!({"optimizer": "bert"}));
    assert_eq!(bert.name(), "adamw");
    assert_defaults_except(
        bert.as_ref(),
        &[
            ("bias_correction", Bool(false)),
            ("eps", Float(1e-6)),
            ("weight_decay", Float(0.01)),
        ],
    );
    // A config overrides a preset.
    let nag = build(json!({"optimizer": "nag", "momentum": 0.5}));
    assert_defaults_except(
        nag.as_ref(),
        &[("momentum", Float(0.5)), ("nesterov", Bool(true))],
    );
    // Ranger: Lookahead k 6, alpha 0.5 around RAdam with beta1 0.95 and eps 1e-5.
    let ranger = build(json!({"optimizer": "ranger"}));
    assert_eq!(hyper(ranger.as_ref(), "k"), Int(6));
    assert_eq!(hyper(ranger.as_ref(), "alpha"), Float(0.5));
    assert_eq!(hyper(ranger.as_ref(), "beta1"), Float(0.95));
    assert_eq!(hyper(ranger.as_ref(), "eps"), Float(1e-5));
    assert_eq!(hyper(ranger.as_ref(), "beta2"), Float(0.999));
}

#[test]
fn bert_excludes_layer_norm_and_bias_from_weight_decay() {
    let mut opt = Registry::zoo()
        .build::<f64>(&json!({"optimizer": "bert", "lr": 0.1}))
        .unwrap();
    let start: Array2<f64> = array![[1.0, -2.0], [0.5, 4.0]];
    let names = [
        "encoder.LayerNorm.weight",
        "encoder.layer_norm.gamma",
        "dense.bias",
        "dense.weight",
    ];
    let mut params = Params::new();
    let mut zeros = Grads::new();
    for name in names {
        params.insert(name, start.clone()).unwrap();
        zeros.insert(name, Array2::<f64>::zeros((2, 2)));
    }
    opt.step(&mut params, &zeros).unwrap();
    for name in &names[..3] {
        assert_eq!(
            values(&params, name),
            values(&params, "encoder.LayerNorm.weight")
        );
        assert_eq!(
            params.get(name).unwrap(),
            &start.clone().into_dyn(),
            "{name} decayed"
        );
    }
    // Decoupled decay with a zero gradient (so m = 0): w ← w·(1 − lr·λ).
    let decayed: Vec<f64> = start.iter().map(|w| w * (1.0 - 0.1 * 0.01)).collect();
    for (x, y) in values(&params, "dense.weight").iter().zip(&decayed) {
        assert!((x - y).abs() <= 1e-15, "{x} vs {y}");
    }
}

/// SignSGD (Bernstein et al., 2018), defined by a user of the library.
#[optimizer(
    /// Step size.
    lr = 0.1 in 0.0..,
)]
pub fn sign_sgd(w: Param, g: Grad) {
    w -= lr * signum(g);
}

#[test]
fn users_register_their_own_optimizer_and_build_it_by_name() {
    let mut reg = Registry::zoo();
    reg.register::<SignSgd>().unwrap();
    assert!(reg.names().contains(&"sign_sgd"));
    assert_eq!(
        reg.register::<SignSgd>().unwrap_err().to_string(),
        "config: an optimizer named `sign_sgd` is already registered"
    );
    let mut opt = reg
        .from_toml::<f64>("optimizer = \"sign_sgd\"\nlr = 0.25")
        .unwrap();
    let mut params = Params::new().with("w", array![1.0, 2.0, 3.0]).unwrap();
    // (The language's `signum` is Rust's: signum(0.0) = 1, unlike torch.sign.)
    let grads = Grads::new().with("w", array![-5.0, 0.5, -1e-30]);
    opt.step(&mut params, &grads).unwrap();
    assert_eq!(values(&params, "w"), [1.25, 1.75, 3.25]);
    assert_eq!(
        reg.build::<f64>(&json!({"optimizer": "sign_sgd", "lr": -1}))
            .unwrap_err()
            .to_string(),
        "sign_sgd: invalid lr value -1: must be in [0, inf)"
    );
    // It composes like a zoo optimizer: Lookahead around it.
    let mut wrapped = reg
        .build::<f32>(&json!({"optimizer": "lookahead", "k": 2, "alpha": 0.5,
                              "inner": {"optimizer": "sign_sgd"}}))
        .unwrap();
    let mut params = Params::new().with("w", Array1::<f32>::zeros(2)).unwrap();
    let grads = Grads::new().with("w", array![1.0f32, -1.0]);
    for _ in 0..2 {
        wrapped.step(&mut params, &grads).unwrap();
    }
    // Two inner steps to ∓0.2, then the sync halfway back: ∓0.1.
    assert_eq!(values(&params, "w"), [-0.1f32 as f64, 0.1f32 as f64]);
    // The zoo registry itself is unchanged, and an empty one knows nothing.
    assert!(!Registry::zoo().names().contains(&"sign_sgd"));
    let mut mine = Registry::new();
    mine.register::<SignSgd>().unwrap();
    assert_eq!(mine.names(), ["sign_sgd"]);
    assert!(mine.build::<f64>(&json!({"optimizer": "adam"})).is_err());
}

#[test]
fn an_unknown_key_is_unknown_whatever_its_value() {
    let e = error(json!({"optimizer": "adam", "schedule": "cosine"}));
    assert!(
        e.starts_with("adam: unknown hyperparameter `schedule`; valid: lr, beta1"),
        "{e}"
    );
    // A swap of two letters is one edit: it still gets a suggestion.
    let e = error(json!({"optimizer": "lookahead", "alpah": 0.5, "inner": {"optimizer": "sgd"}}));
    assert!(e.contains("(did you mean `alpha`?)"), "{e}");
}
