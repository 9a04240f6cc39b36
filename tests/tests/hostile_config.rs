//! Configs as a hostile user writes them: keys given twice, non-finite TOML numbers, the
//! optimizer's name of the wrong type. Each is refused with an error that names the key.

use optim_core::HyperValue;
use optim_zoo::Registry;

fn json_error(text: &str) -> String {
    match Registry::zoo().from_json::<f64>(text) {
        Ok(opt) => panic!("{text} built {opt:?}"),
        Err(e) => e.to_string(),
    }
}

fn toml_error(text: &str) -> String {
    match Registry::zoo().from_toml::<f64>(text) {
        Ok(opt) => panic!("{text} built {opt:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_key_given_twice_is_refused_by_name_at_any_depth() {
    for (text, key) in [
        (r#"{"optimizer": "adam", "optimizer": "sgd"}"#, "optimizer"),
        (r#"{"optimizer": "adam", "lr": 0.1, "lr": 0.2}"#, "lr"),
        (
            r#"{"optimizer": "lookahead", "inner": {"optimizer": "sgd", "momentum": 0.9, "momentum": 0.0}}"#,
            "momentum",
        ),
        (
            r#"{"optimizer": "lookahead", "inner": {"optimizer": "sgd"}, "inner": {"optimizer": "adam"}}"#,
            "inner",
        ),
        (
            r#"{"optimizer": "partition", "routes": [{"optimizer": "adam", "hyper": {"lr": 0.1, "lr": 1.0}}]}"#,
            "lr",
        ),
        (
            r#"{"optimizer": "partition", "routes": [{"select": {"ndim": 2, "ndim": 1}, "optimizer": "sgd"}, {"optimizer": "adam"}]}"#,
            "ndim",
        ),
    ] {
        let e = json_error(text);
        assert!(
            e.starts_with(&format!(
                "config: duplicate key `{key}`: each key may be given once at line 1 column "
            )),
            "{text}: {e}"
        );
    }
    // The same config without the repeat builds, and the kept value is the one given.
    let opt = Registry::zoo()
        .from_json::<f64>(r#"{"optimizer": "adam", "lr": 0.2}"#)
        .unwrap();
    assert_eq!(opt.hyper("lr").unwrap(), HyperValue::Float(0.2));
}

#[test]
fn a_non_finite_toml_number_is_refused_as_non_finite_by_key() {
    for (text, shown, key) in [
        ("optimizer = \"adam\"\nlr = nan", "nan", "lr"),
        ("optimizer = \"adam\"\neps = inf", "inf", "eps"),
        (
            "optimizer = \"sgd\"\nweight_decay = -inf",
            "-inf",
            "weight_decay",
        ),
        (
            "optimizer = \"lookahead\"\n[inner]\noptimizer = \"sgd\"\nmomentum = +nan",
            "nan",
            "momentum",
        ),
    ] {
        assert_eq!(
            toml_error(text),
            format!(
                "config: `{key}`: {shown} is not a finite number; a hyperparameter must be finite"
            ),
            "{text}"
        );
    }
    // Through a partition's route too (its context named).
    let e = toml_error(
        "optimizer = \"partition\"\n[[routes]]\noptimizer = \"adam\"\nhyper = { lr = inf }\n",
    );
    assert_eq!(
        e,
        "config: partition route 0: `lr`: inf is not a finite number; a hyperparameter must be finite"
    );
    // A finite TOML float still works, and an integer for a float.
    let opt = Registry::zoo()
        .from_toml::<f64>("optimizer = \"adam\"\nlr = 1\neps = 1e-7")
        .unwrap();
    assert_eq!(opt.hyper("lr").unwrap(), HyperValue::Float(1.0));
    assert_eq!(opt.hyper("eps").unwrap(), HyperValue::Float(1e-7));
}

#[test]
fn an_optimizer_name_that_is_not_a_string_is_reported_as_such() {
    let valid = Registry::zoo().names().join(", ");
    for (text, got) in [
        (r#"{"optimizer": 5}"#, "5"),
        (r#"{"optimizer": null, "lr": 0.1}"#, "null"),
        (r#"{"optimizer": ["adam"]}"#, "[\"adam\"]"),
        (
            r#"{"optimizer": "lookahead", "inner": {"optimizer": true}}"#,
            "true",
        ),
    ] {
        assert_eq!(
            json_error(text),
            format!("config: `optimizer` must be a string, the name of an optimizer, got {got}; valid: {valid}"),
            "{text}"
        );
    }
    assert_eq!(
        toml_error("optimizer = 5"),
        format!(
            "config: `optimizer` must be a string, the name of an optimizer, got 5; valid: {valid}"
        )
    );
    // Missing is still reported as missing.
    assert_eq!(
        json_error(r#"{"lr": 0.1}"#),
        "config: missing `\"optimizer\": \"<name>\"`"
    );
}
