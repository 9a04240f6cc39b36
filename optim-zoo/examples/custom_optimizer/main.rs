//! Your own optimizer, raced like the zoo's. Lion and AdaBelief, neither of them in the
//! zoo, are written below as equations, registered by name next to the zoo, and trained on
//! the handwritten digits against Adam and AdamW: the race's model, data, seed, initial
//! weights and batch order, and the race's learning rates for Adam and AdamW.
//!
//! `cargo run --release -p optim-zoo --example custom_optimizer -- --help`

use clap::Parser;
use indicatif::ProgressBar;
use optim_macros::optimizer;
use optim_zoo::Registry;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

// The race's model, data, training loop, leaderboard and charts, shared rather than copied.
// `dead_code`: the parts only the race uses (its 2-D surfaces, the BERT recipe).
#[allow(dead_code)]
#[path = "../race/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "../race/lineup.rs"]
mod lineup;
#[allow(dead_code)]
#[path = "../race/mlp.rs"]
mod mlp;
#[allow(dead_code)]
#[path = "../race/plot.rs"]
mod plot;
#[allow(dead_code)]
#[path = "../race/report.rs"]
mod report;
#[allow(dead_code)]
#[path = "../race/rng.rs"]
mod rng;
#[allow(dead_code)]
#[path = "../race/surfaces.rs"]
mod surfaces;
#[allow(dead_code)]
#[path = "../race/train.rs"]
mod train;

/// Errors of the example: any error, shown to the user as its message.
pub type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"): the sign of an
/// interpolation between momentum and gradient, so every coordinate moves by exactly α
/// (plus decoupled weight decay). One state instead of Adam's two.
///
/// ```text
/// c ← β1·m + (1 − β1)·g
/// w ← w − α·(sign(c) + λ·w)
/// m ← β2·m + (1 − β2)·g
/// ```
#[optimizer(
    /// Learning rate α (the paper: 3–10 times smaller than AdamW's).
    lr = 1e-4 in 0.0..,
    /// Interpolation β1 between momentum and gradient for the update.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the momentum.
    beta2 = 0.99 in 0.0..1.0,
    /// Decoupled weight decay λ (the paper: 3–10 times larger than AdamW's).
    weight_decay = 0.0 in 0.0..,
)]
pub fn lion(w: Param, g: Grad, m: State) {
    let c = beta1 * m + (1.0 - beta1) * g;
    // `sign` is 0 at 0 (the paper's, torch.sign); Rust's `signum` is ±1 at ±0.0 and would
    // move the weights of always-blank pixels (gradient exactly 0) by α every step.
    w -= lr * (sign(c) + weight_decay * w);
    m = beta2 * m + (1.0 - beta2) * g;
}

/// AdaBelief (Zhuang et al., 2020, "AdaBelief Optimizer: Adapting Stepsizes by the Belief
/// in Observed Gradients"): Adam with the second moment of g replaced by the "belief" s,
/// the running variance of g around its prediction m; steps are large where the gradient
/// is as predicted, small where it surprises. ε as in the authors' `adabelief-pytorch`.
///
/// ```text
/// m ← β1·m + (1 − β1)·g
/// s ← β2·s + (1 − β2)·(g − m)² + ε
/// w ← w − α/(1 − β1^t) · m / (√s / √(1 − β2^t) + ε)
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 1e-3 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the belief s.
    beta2 = 0.999 in 0.0..1.0,
    /// ε, added to s and to the denominator.
    eps = 1e-16 in 0.0..,
)]
#[name = "adabelief"]
pub fn ada_belief(w: Param, g: Grad, m: State, s: State) {
    m = beta1 * m + (1.0 - beta1) * g;
    let surprise = g - m;
    s = beta2 * s + (1.0 - beta2) * surprise * surprise + eps;
    w -= lr / (1.0 - beta1.powi(t)) * m / (sqrt(s) / sqrt(1.0 - beta2.powi(t)) + eps);
}

/// Race Lion and AdaBelief, defined in this file, against the zoo's Adam and AdamW on the
/// handwritten digits (the race's MLP 64-32-10, batch 32, same seed and initial weights).
///
/// Prints a leaderboard and writes loss_curves.svg and leaderboard.json to --out.
#[derive(Debug, Parser)]
#[command(name = "custom_optimizer", about, long_about)]
struct Args {
    /// Passes over the training set per optimizer.
    #[arg(long, default_value_t = 30)]
    epochs: usize,

    /// Seed for the train/test split, the initial weights and the batch order.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Output folder (created if missing).
    #[arg(long, default_value = "out/custom_optimizer")]
    out: PathBuf,

    /// The digits data (gzip-compressed CSV, see data/README.md).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/digits.csv.gz"))]
    data: PathBuf,
}

/// The race's defaults.
const HIDDEN: usize = 32;
const BATCH_SIZE: usize = 32;
const TARGET_LOSS: f64 = 0.1;

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Who races: Adam and AdamW as configured in the race, then the two new ones by name.
/// Lion's rate and decay follow the paper's advice against AdamW's (0.01 and 0.01).
fn contenders() -> Vec<(&'static str, serde_json::Value)> {
    let zoo = lineup::race_lineup();
    let from_race = |name: &'static str| {
        let config = zoo
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.config.clone());
        (name, config.unwrap_or_else(|| json!({"optimizer": name})))
    };
    vec![
        from_race("adam"),
        from_race("adamw"),
        (
            "lion",
            json!({"optimizer": "lion", "lr": 0.001, "weight_decay": 0.1}),
        ),
        ("adabelief", json!({"optimizer": "adabelief", "lr": 0.01})),
    ]
}

fn run(args: &Args) -> AnyResult<report::Summary> {
    let started = Instant::now();

    // The zoo plus ours: from here on they are built by name like any other.
    let mut registry = Registry::zoo();
    registry.register::<Lion>()?;
    registry.register::<AdaBelief>()?;

    let split = data::load_split(&args.data, args.seed)?;
    let settings = train::Settings {
        mlp: mlp::Mlp {
            inputs: data::PIXELS,
            hidden: HIDDEN,
            classes: data::CLASSES,
        },
        epochs: args.epochs,
        batch_size: BATCH_SIZE,
        seed: args.seed,
        bert_recipe: false,
        target_loss: TARGET_LOSS,
    };
    let init = settings.mlp.init(args.seed)?;

    let mut results = Vec::new();
    for (name, config) in contenders() {
        let mut optimizer = registry.build::<f32>(&config)?;
        let outcome = train::train(
            optimizer.as_mut(),
            &init,
            &split,
            &settings,
            &ProgressBar::hidden(),
        )
        .map_err(|e| format!("{name}: {e}"))?;
        results.push(report::summarize(name, &config, outcome));
    }

    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let lines: Vec<plot::Line<(u64, f64)>> = results
        .iter()
        .enumerate()
        .map(|(color, r)| plot::Line {
            label: &r.name,
            color,
            points: &r.curve,
        })
        .collect();
    let title = format!("Digits MLP 64-{HIDDEN}-10: Lion and AdaBelief against Adam(W)");
    let chart = args.out.join("loss_curves.svg");
    plot::loss_curves(&chart, &title, &lines)
        .map_err(|e| format!("cannot draw {}: {e}", chart.display()))?;

    let summary = report::Summary {
        recipe: "standard".into(),
        seed: args.seed,
        epochs: settings.epochs,
        batch_size: settings.batch_size,
        hidden: settings.mlp.hidden,
        train_images: split.train.len(),
        test_images: split.test.len(),
        target_loss: settings.target_loss,
        results,
        failures: Vec::new(),
        plots: vec!["loss_curves.svg".into()],
        seconds: started.elapsed().as_secs_f64(),
    };
    report::publish(&summary, &args.out, "Loss curves")?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr1;
    use optim_core::{Grads, Optimizer, Params};

    /// `w` after one step with gradient `g`.
    fn one_step(mut opt: impl Optimizer<f64>, w: f64, g: f64) -> f64 {
        let mut params = Params::<f64>::new().with("w", arr1(&[w])).unwrap();
        opt.step(&mut params, &Grads::new().with("w", arr1(&[g])))
            .unwrap();
        params.get("w").unwrap()[[0]]
    }

    #[test]
    fn lion_moves_by_lr_and_not_at_all_without_gradient() {
        assert_eq!(
            one_step(Lion::default().lr(0.1).build().unwrap(), 1.0, 0.5),
            0.9
        );
        assert_eq!(
            one_step(Lion::default().lr(0.1).build().unwrap(), 1.0, -1e-30),
            1.1
        );
        assert_eq!(
            one_step(Lion::default().lr(0.1).build().unwrap(), 1.0, 0.0),
            1.0
        );
        let decayed = one_step(
            Lion::default().lr(0.1).weight_decay(0.5).build().unwrap(),
            1.0,
            0.0,
        );
        assert!((decayed - 0.95).abs() < 1e-15, "{decayed}");
    }

    #[test]
    fn adabeliefs_first_step_is_lr_over_one_minus_beta1() {
        // m = 0.1·g, s ≈ 0.001·(0.9·g)², so m̂/√ŝ = g/(0.9·|g|).
        let w = one_step(AdaBelief::default().lr(0.1).build().unwrap(), 1.0, 0.5);
        assert!((w - (1.0 - 0.1 / 0.9)).abs() < 1e-12, "{w}");
    }

    #[test]
    fn both_race_by_name_and_lower_the_loss() {
        let out = std::env::temp_dir().join(format!("custom-optimizer-{}", std::process::id()));
        let dir = out.to_str().unwrap();
        let args =
            Args::try_parse_from(["custom_optimizer", "--epochs", "2", "--out", dir]).unwrap();
        let summary = run(&args).unwrap();
        let names: Vec<&str> = summary.results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["adam", "adamw", "lion", "adabelief"]);
        for r in &summary.results {
            assert!(
                r.final_loss < 0.5 * r.initial_loss,
                "{}: {} -> {}",
                r.name,
                r.initial_loss,
                r.final_loss
            );
            assert!(r.test_accuracy > 0.8, "{}: {}", r.name, r.test_accuracy);
        }
        let svg = std::fs::read_to_string(out.join("loss_curves.svg")).unwrap();
        assert!(svg.contains("lion") && svg.contains("adabelief"));
        let json = std::fs::read_to_string(out.join("leaderboard.json")).unwrap();
        assert!(json.contains("\"optimizer\": \"adabelief\""));
        std::fs::remove_dir_all(&out).unwrap();
    }
}
