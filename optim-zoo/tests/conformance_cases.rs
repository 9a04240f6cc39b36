//! Every conformance case in `tests/conformance/` (copied unchanged from the references)
//! must pass. A failure means the implementation is wrong: never loosen a tolerance.

use optim_zoo::conformance::{Case, Checked, Failure};
use std::path::Path;

/// The first 26 cases (PyTorch 2.15 and the references of FORMAT.md's first part).
const SURVEY_CASES: [&str; 26] = [
    "adadelta-wd",
    "adadelta",
    "adagrad-decay",
    "adagrad",
    "adam-amsgrad",
    "adam-f32",
    "adam-l2",
    "adam-missing-grads",
    "adam",
    "adamw-bert",
    "adamw",
    "lazyadam",
    "lookahead-adam",
    "lookahead-sgd-momentum",
    "nadam-decoupled",
    "nadam",
    "radam-decoupled",
    "radam",
    "ranger",
    "rmsprop-centered-momentum",
    "rmsprop",
    "sgd-maximize",
    "sgd-momentum-dampened",
    "sgd-momentum",
    "sgd-nesterov-wd",
    "sgd-plain",
];

#[test]
fn every_conformance_case_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("conformance directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    // The survey's 26 cases are all there (the modern zoo's join them as its optimizers
    // do).
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    for survey in SURVEY_CASES {
        assert!(
            names.iter().any(|n| n == survey),
            "case {survey} is missing"
        );
    }
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable case");
        let case = Case::parse(&text).expect("well-formed case");
        if let Err(e) = case.run() {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
}

/// The optimizers a case exercises: its own, a wrapper's inner one, each route's.
fn optimizers_in(case: &serde_json::Value, out: &mut Vec<String>) {
    if let Some(name) = case["optimizer"].as_str() {
        out.push(name.to_string());
    }
    if let Some(inner) = case.get("inner") {
        optimizers_in(inner, out);
    }
    for route in case["routes"].as_array().into_iter().flatten() {
        match &route["optimizer"] {
            serde_json::Value::String(name) => out.push(name.clone()),
            config => optimizers_in(config, out),
        }
    }
}

/// Every optimizer of the registry (presets aside: they are their base optimizer with
/// other defaults) is exercised by at least one case file.
#[test]
fn every_registry_optimizer_has_a_case() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut exercised = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("conformance directory") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&path).expect("readable case");
            let case: serde_json::Value = serde_json::from_str(&text).expect("JSON case");
            optimizers_in(&case, &mut exercised);
        }
    }
    let registry = optim_zoo::Registry::zoo();
    let missing: Vec<&str> = registry
        .names()
        .into_iter()
        .filter(|&name| {
            let preset = registry.find(name).is_ok_and(|e| !e.preset.is_empty());
            !preset && !exercised.iter().any(|e| e == name)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "registry optimizers without a case: {missing:?}"
    );
}

/// A partition case written here: `w` (2-D) to plain SGD, `b` to AdamW, two steps, with
/// the expected values computed from the rules of FORMAT.md (not by the library), and
/// evaluation weights (for these optimizers, the training weights).
fn partition_case() -> serde_json::Value {
    let (lr_sgd, lr, wd, b1, b2, eps): (f64, f64, f64, f64, f64, f64) =
        (0.5, 0.1, 0.1, 0.9, 0.999, 1e-8);
    let grads_w = [[0.5, -1.0, 0.25, 2.0], [1.0, 1.0, -0.5, 0.0]];
    let grads_b = [[0.3, -0.7], [0.1, 0.4]];
    let mut w = vec![1.0, 2.0, -1.0, 0.5];
    let mut b = vec![0.2, -0.4];
    let (mut m, mut v) = (vec![0.0f64; 2], vec![0.0f64; 2]);
    let mut steps = Vec::new();
    for t in 1..=2 {
        let (gw, gb) = (grads_w[t - 1], grads_b[t - 1]);
        for (x, g) in w.iter_mut().zip(gw) {
            *x -= lr_sgd * g;
        }
        for i in 0..2 {
            b[i] *= 1.0 - lr * wd;
            m[i] = b1 * m[i] + (1.0 - b1) * gb[i];
            v[i] = b2 * v[i] + (1.0 - b2) * gb[i] * gb[i];
            let (bc1, bc2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
            b[i] -= lr / bc1 * m[i] / (v[i].sqrt() / bc2.sqrt() + eps);
        }
        steps.push(serde_json::json!({"grads": {"w": gw, "b": gb}, "expect": {"w": w, "b": b}}));
    }
    serde_json::json!({
        "format": 1,
        "name": "partition-sgd-adamw",
        "optimizer": "partition",
        "hyper": {},
        "routes": [
            {"select": {"ndim": 2}, "optimizer": "sgd", "hyper": {"lr": lr_sgd}},
            {"optimizer": "adamw", "hyper": {"lr": lr, "weight_decay": wd}},
        ],
        "dtype": "f64",
        "reference": "FORMAT.md's rules, computed in the test",
        "params": [
            {"name": "w", "shape": [2, 2], "value": [1.0, 2.0, -1.0, 0.5]},
            {"name": "b", "shape": [2], "value": [0.2, -0.4]},
        ],
        "steps": steps,
        "eval": {"w": w, "b": b},
        "tolerance": {"rel": 1e-12, "abs": 1e-15},
    })
}

fn run(case: &serde_json::Value) -> Result<(), Failure> {
    Case::parse(&case.to_string())?.run()
}

#[test]
fn routes_and_evaluation_weights_are_run_and_each_failure_names_its_field() {
    let good = partition_case();
    assert_eq!(run(&good), Ok(()));

    let mut off = good.clone();
    off["eval"]["b"][1] = serde_json::json!(0.5);
    let failure = run(&off).unwrap_err();
    assert!(
        matches!(&failure, Failure::Mismatch { checked: Checked::Eval, step: 2, param, index: 1, .. } if param == "b"),
        "{failure:?}"
    );
    let msg = failure.to_string();
    assert!(
        msg.starts_with("eval.b[1]: got ") && msg.contains("want 5e-1"),
        "{msg}"
    );

    let mut off = good.clone();
    off["steps"][1]["expect"]["w"][3] = serde_json::json!(9.0);
    let msg = run(&off).unwrap_err().to_string();
    assert!(msg.starts_with("steps[1].expect.w[3]: got "), "{msg}");

    let mut off = good.clone();
    off["routes"][1]["hyper"]["lrr"] = serde_json::json!(0.1);
    let failure = run(&off).unwrap_err();
    assert!(matches!(failure, Failure::Config(_)), "{failure:?}");
    assert!(
        failure.to_string().starts_with(
            "building the optimizer: partition route 1 (adamw): unknown hyperparameter `lrr`"
        ),
        "{failure}"
    );

    let mut off = good.clone();
    off["steps"][1]["grads"]["b"] = serde_json::json!([1.0, 2.0, 3.0]);
    let msg = run(&off).unwrap_err().to_string();
    assert!(
        msg.starts_with("malformed case: `steps[1].grads.b`"),
        "{msg}"
    );

    let mut off = good.clone();
    off["steps"][0]["grads"]["b"][0] = serde_json::json!("x");
    let msg = run(&off).unwrap_err().to_string();
    assert_eq!(
        msg,
        "malformed case: `steps[0].grads.b[0]` is not a number: \"x\""
    );
}

#[test]
fn fields_the_runner_does_not_know_or_support_are_reported_not_ignored() {
    let mut case = partition_case();
    case["state_precision"] = serde_json::json!("q4");
    assert_eq!(
        run(&case).unwrap_err().to_string(),
        "malformed case: `state_precision` is \"q4\"; the format defines \"q8\""
    );

    let mut case = partition_case();
    case["evall"] = case["eval"].clone();
    assert_eq!(
        run(&case).unwrap_err().to_string(),
        "malformed case: unknown field `evall` (did you mean `eval`?); valid: format, name, \
         optimizer, hyper, inner, routes, dtype, reference, params, steps, eval, \
         state_precision, tolerance"
    );

    let mut case = partition_case();
    case["optimizer"] = serde_json::json!("adam");
    assert_eq!(
        run(&case).unwrap_err().to_string(),
        "malformed case: `routes` is for optimizer `partition`, not `adam`"
    );
}

#[test]
fn a_case_with_a_key_given_twice_or_a_missing_field_is_malformed_by_name() {
    let text = partition_case().to_string();
    let twice = text.replacen("\"name\":", "\"name\":\"again\",\"name\":", 1);
    let msg = Case::parse(&twice).unwrap_err().to_string();
    assert!(
        msg.starts_with("malformed case: duplicate key `name`: each key may be given once"),
        "{msg}"
    );
    let mut case = partition_case();
    case["params"][1].as_object_mut().unwrap().remove("shape");
    assert_eq!(
        run(&case).unwrap_err().to_string(),
        "malformed case: `params[1]`: field `shape` is missing"
    );
    let mut case = partition_case();
    case["tolerance"]["rel"] = serde_json::json!("tight");
    assert_eq!(
        run(&case).unwrap_err().to_string(),
        "malformed case: `tolerance.rel` is not a number: \"tight\""
    );
}
