//! Who races, with which configuration: the one place to edit learning rates.

use optim_core::{OptimError, Optimizer, Scalar};
use serde_json::{json, Value};

/// How an optimizer's step size relates to its learning rate; decides which learning rate
/// it gets on the 2-D test surfaces, whose gradients differ by orders of magnitude.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// The step is `lr × gradient` (SGD and momentum): needs a small lr on steep surfaces.
    GradientScaled,
    /// The step is about `lr` per coordinate whatever the gradient's size (Adam & co.).
    Adaptive,
    /// RAdam and Ranger: gradient-scaled (SGD with momentum) for their first steps, until
    /// the variance estimate is trustworthy, adaptive after.
    Rectified,
    /// Adadelta: its own units, lr 1 everywhere.
    Adadelta,
}

/// One optimizer in the race.
#[derive(Clone, Debug)]
pub struct Contender {
    /// Registry name, as picked with `--optimizers`.
    pub name: &'static str,
    /// The registry config, learning rate included.
    pub config: Value,
    /// Which surface learning rate it takes.
    pub family: Family,
}

/// Every zoo optimizer with its learning rate for the digits MLP (batch 32, standardized
/// inputs). Wrappers hold their learning rate in `inner`.
///
/// The rates are common ones, the same within a family, so that the race compares methods
/// at equal effort rather than each one's tuning: SGD, momentum and NAG at 0.1 (at the same
/// rate, momentum's steps grow up to 1/(1 − μ) = 10 times larger); the Adam family at 0.01,
/// AdaMax and the rectified RAdam and Ranger at 0.02; AdaGrad at 0.05; AdaDelta at its own
/// 1.0. In a sweep from 1/4 to 8 times these rates none diverges, and each is fast at its
/// rate here. The sweep also shows plain SGD catching up at lr 0.8 on this small,
/// well-conditioned problem: the gaps are those of equal effort, not a law.
pub fn race_lineup() -> Vec<Contender> {
    use Family::*;
    let entry = |name, config, family| Contender {
        name,
        config,
        family,
    };
    vec![
        entry(
            "sgd",
            json!({"optimizer": "sgd", "lr": 0.1}),
            GradientScaled,
        ),
        entry(
            "momentum",
            json!({"optimizer": "momentum", "lr": 0.1, "momentum": 0.9}),
            GradientScaled,
        ),
        entry(
            "nag",
            json!({"optimizer": "nag", "lr": 0.1, "momentum": 0.9}),
            GradientScaled,
        ),
        entry(
            "adagrad",
            json!({"optimizer": "adagrad", "lr": 0.05}),
            Adaptive,
        ),
        entry(
            "adadelta",
            json!({"optimizer": "adadelta", "lr": 1.0}),
            Adadelta,
        ),
        entry(
            "rmsprop",
            json!({"optimizer": "rmsprop", "lr": 0.01}),
            Adaptive,
        ),
        entry("adam", json!({"optimizer": "adam", "lr": 0.01}), Adaptive),
        entry(
            "amsgrad",
            json!({"optimizer": "amsgrad", "lr": 0.01}),
            Adaptive,
        ),
        entry(
            "adamw",
            json!({"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.01}),
            Adaptive,
        ),
        entry(
            "adamax",
            json!({"optimizer": "adamax", "lr": 0.02}),
            Adaptive,
        ),
        entry("nadam", json!({"optimizer": "nadam", "lr": 0.01}), Adaptive),
        // The rectification damps RAdam's first few hundred steps: a larger peak rate.
        entry(
            "radam",
            json!({"optimizer": "radam", "lr": 0.02}),
            Rectified,
        ),
        entry(
            "lazyadam",
            json!({"optimizer": "lazyadam", "lr": 0.01}),
            Adaptive,
        ),
        entry(
            "lookahead",
            json!({"optimizer": "lookahead", "inner": {"optimizer": "adam", "lr": 0.01}}),
            Adaptive,
        ),
        entry(
            "ranger",
            json!({"optimizer": "ranger", "lr": 0.02}),
            Rectified,
        ),
        // The registry's "bert" preset is BERT's AdamW: no bias correction, eps 1e-6,
        // weight decay 0.01 except on biases and layer norms.
        entry("bert", json!({"optimizer": "bert", "lr": 0.01}), Adaptive),
        // Per-tensor trust ratios: LAMB's step is about lr·‖w‖ per layer, as Adam's is
        // lr per coordinate; LARS scales by η = 0.001, so its documented lr is 1.
        entry("lamb", json!({"optimizer": "lamb", "lr": 0.01}), Adaptive),
        entry("lars", json!({"optimizer": "lars", "lr": 1.0}), Adaptive),
        entry(
            "novograd",
            json!({"optimizer": "novograd", "lr": 0.01}),
            Adaptive,
        ),
        // Adafactor's step is relative: min(lr, 1/√t) times the weights' RMS.
        entry(
            "adafactor",
            json!({"optimizer": "adafactor", "lr": 0.01}),
            Adaptive,
        ),
        entry("came", json!({"optimizer": "came", "lr": 0.01}), Adaptive),
        // Muon steps the weight matrices (its orthogonalized step has unit singular
        // values, so it takes the larger rate of its paper); the biases go to AdamW.
        entry("muon", json!({"optimizer": "muon", "lr": 0.02}), Adaptive),
        // Prodigy estimates its own step size: lr is a multiplier, 1 by design.
        entry(
            "prodigy",
            json!({"optimizer": "prodigy", "lr": 1.0}),
            Adaptive,
        ),
        entry(
            "schedule_free_adamw",
            json!({"optimizer": "schedule_free_adamw", "lr": 0.01}),
            Adaptive,
        ),
        // Schedule-free SGD and ASGD take SGD's steps: SGD's rate.
        entry(
            "schedule_free_sgd",
            json!({"optimizer": "schedule_free_sgd", "lr": 0.1}),
            GradientScaled,
        ),
        entry(
            "asgd",
            json!({"optimizer": "asgd", "lr": 0.1}),
            GradientScaled,
        ),
        // Lion's steps are ±lr per coordinate, larger than Adam's: a tenth of Adam's rate
        // with ten times the decay, as its paper advises.
        entry(
            "lion",
            json!({"optimizer": "lion", "lr": 0.001, "weight_decay": 0.1}),
            Adaptive,
        ),
        entry(
            "adabelief",
            json!({"optimizer": "adabelief", "lr": 0.01}),
            Adaptive,
        ),
        entry("yogi", json!({"optimizer": "yogi", "lr": 0.01}), Adaptive),
        entry("adan", json!({"optimizer": "adan", "lr": 0.01}), Adaptive),
        entry(
            "ademamix",
            json!({"optimizer": "ademamix", "lr": 0.01}),
            Adaptive,
        ),
        entry(
            "madgrad",
            json!({"optimizer": "madgrad", "lr": 0.01}),
            Adaptive,
        ),
        entry(
            "adabound",
            json!({"optimizer": "adabound", "lr": 0.01}),
            Adaptive,
        ),
        // Rprop's lr is its initial step size, grown or shrunk per element by the sign of
        // successive gradients (a full-batch method: minibatch noise flips the signs).
        entry(
            "rprop",
            json!({"optimizer": "rprop", "lr": 0.001}),
            Adaptive,
        ),
    ]
}

/// Optimizers that step matrices only (Muon): raced as the matrices' route of a
/// partition, AdamW at the same learning rate for the other parameters.
const MATRICES_ONLY: [&str; 1] = ["muon"];

/// `config`, routed through a partition if its optimizer steps matrices only.
pub fn routed(config: &Value) -> Value {
    match config.get("optimizer").and_then(Value::as_str) {
        Some(name) if MATRICES_ONLY.contains(&name) => {
            let lr = lr_of(config).map_or(Value::Null, |lr| json!(lr));
            json!({"optimizer": "partition", "routes": [
                {"select": {"ndim": 2}, "optimizer": config},
                {"optimizer": {"optimizer": "adamw", "lr": lr}},
            ]})
        }
        _ => config.clone(),
    }
}

/// Names picked when `--optimizers` is not given.
pub fn default_names(bert_recipe: bool) -> Vec<String> {
    if bert_recipe {
        vec!["bert".to_string()]
    } else {
        race_lineup().iter().map(|c| c.name.to_string()).collect()
    }
}

/// The learning rate of `config` (of its innermost optimizer, for wrappers).
pub fn lr_of(config: &Value) -> Option<f64> {
    match config.get("inner") {
        Some(inner) => lr_of(inner),
        None => config.get("lr").and_then(Value::as_f64),
    }
}

/// `config` with the learning rate of its innermost optimizer set to `lr`.
pub fn with_lr(config: &Value, lr: f64) -> Value {
    let mut config = config.clone();
    let mut target = &mut config;
    while target.get("inner").is_some() {
        target = &mut target["inner"];
    }
    target["lr"] = json!(lr);
    config
}

/// Builds the optimizer a config describes, through the zoo's registry.
pub fn build<T: Scalar>(config: &Value) -> Result<Box<dyn Optimizer<T>>, OptimError> {
    optim_zoo::registry::build::<T>(&routed(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registry_name_races_once() {
        let names: Vec<&str> = race_lineup().iter().map(|c| c.name).collect();
        let expected = [
            "sgd",
            "momentum",
            "nag",
            "adagrad",
            "adadelta",
            "rmsprop",
            "adam",
            "amsgrad",
            "adamw",
            "adamax",
            "nadam",
            "radam",
            "lazyadam",
            "lookahead",
            "ranger",
            "bert",
            "lamb",
            "lars",
            "novograd",
            "adafactor",
            "came",
            "muon",
            "prodigy",
            "schedule_free_adamw",
            "schedule_free_sgd",
            "asgd",
            "lion",
            "adabelief",
            "yogi",
            "adan",
            "ademamix",
            "madgrad",
            "adabound",
            "rprop",
        ];
        assert_eq!(names, expected);
        for c in race_lineup() {
            assert_eq!(c.config["optimizer"], c.name);
            assert!(lr_of(&c.config).is_some_and(|lr| lr > 0.0), "{}", c.name);
        }
    }

    #[test]
    fn learning_rate_of_wrappers_lives_in_the_inner_config() {
        let config =
            json!({"optimizer": "lookahead", "k": 5, "inner": {"optimizer": "adam", "lr": 0.003}});
        assert_eq!(lr_of(&config), Some(0.003));
        let changed = with_lr(&config, 0.1);
        assert_eq!(changed["inner"]["lr"], 0.1);
        assert_eq!(changed["k"], 5);
        assert!(changed.get("lr").is_none());
        assert_eq!(
            with_lr(&json!({"optimizer": "sgd", "lr": 1}), 0.5)["lr"],
            0.5
        );
    }

    #[test]
    fn every_config_builds_with_its_learning_rate() {
        for c in race_lineup() {
            let opt = build::<f32>(&c.config).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(
                opt.hyper("lr").unwrap().as_f64(),
                lr_of(&c.config),
                "{}",
                c.name
            );
            let faster = build::<f64>(&with_lr(&c.config, 0.5)).unwrap();
            assert_eq!(
                faster.hyper("lr").unwrap().as_f64(),
                Some(0.5),
                "{}",
                c.name
            );
        }
        let e = build::<f32>(&json!({"optimizer": "sgd", "lr": -1.0})).unwrap_err();
        assert!(e.to_string().contains("lr"), "{e}");
    }
}
