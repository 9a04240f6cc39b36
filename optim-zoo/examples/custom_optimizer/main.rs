//! Your own optimizer, raced like the zoo's. Signum and QHAdam, neither of them in the zoo,
//! are written below as equations, registered by name next to the zoo, and trained on the
//! handwritten digits against the zoo's Adam, AdamW and Lion: the race's model, data, seed,
//! initial weights and batch order, and the race's learning rates for Adam and AdamW.
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

/// Signum (Bernstein et al., 2018, "signSGD: Compressed Optimisation for Non-Convex
/// Problems", Algorithm 2): signSGD with momentum. Every coordinate moves by exactly α in
/// the direction of the sign of its momentum; one state.
///
/// ```text
/// m ← β·m + (1 − β)·g
/// w ← w − α·sign(m)
/// ```
#[optimizer(
    /// Learning rate α: the distance every coordinate moves per step.
    lr = 1e-4 in 0.0..,
    /// Decay β of the momentum.
    momentum = 0.9 in 0.0..1.0,
)]
pub fn signum(w: Param, g: Grad, m: State) {
    m = momentum * m + (1.0 - momentum) * g;
    // `sign` is 0 at 0 (the paper's, torch.sign); Rust's `signum` is ±1 at ±0.0 and would
    // move the weights of always-blank pixels (gradient exactly 0) by α every step.
    w -= lr * sign(m);
}

/// QHAdam (Ma & Yarats, 2019, "Quasi-hyperbolic momentum and Adam for deep learning"):
/// Adam whose numerator and denominator each average the bias-corrected moment with the
/// current gradient (ν1, ν2), so that a slow momentum (β1 = 0.995) still reacts to the
/// latest gradient. ν = (1, 1) is Adam; the defaults are the paper's recommendation (and
/// those of the authors' `qhoptim`).
///
/// ```text
/// m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
/// w ← w − α·((1 − ν1)·g + ν1·m/(1 − β1^t)) / (√((1 − ν2)·g² + ν2·v/(1 − β2^t)) + ε)
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 1e-3 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.995 in 0.0..1.0,
    /// Decay β2 of the second moment.
    beta2 = 0.999 in 0.0..1.0,
    /// Weight ν1 of the momentum against the gradient in the numerator.
    nu1 = 0.7 in 0.0..=1.0,
    /// Weight ν2 of the second moment against g² in the denominator.
    nu2 = 1.0 in 0.0..=1.0,
    /// ε added to the denominator.
    eps = 1e-8 in 0.0..,
)]
#[name = "qhadam"]
pub fn qh_adam(w: Param, g: Grad, m: State, v: State) {
    m = beta1 * m + (1.0 - beta1) * g;
    v = beta2 * v + (1.0 - beta2) * g * g;
    let m_hat = m / (1.0 - beta1.powi(t));
    let v_hat = v / (1.0 - beta2.powi(t));
    let numerator = (1.0 - nu1) * g + nu1 * m_hat;
    w -= lr * numerator / (sqrt((1.0 - nu2) * g * g + nu2 * v_hat) + eps);
}

/// Race Signum and QHAdam, defined in this file, against the zoo's Adam, AdamW and Lion on
/// the handwritten digits (the race's MLP 64-32-10, batch 32, same seed and initial weights).
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

/// Who races: Adam and AdamW as configured in the race, the zoo's Lion at a tenth of
/// AdamW's rate and ten times its decay (its paper's advice; AdamW's are 0.01 and 0.01),
/// then the two new ones by name: Signum at Lion's rate (both move every coordinate by
/// exactly lr), QHAdam at Adam's.
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
        ("signum", json!({"optimizer": "signum", "lr": 0.001})),
        ("qhadam", json!({"optimizer": "qhadam", "lr": 0.01})),
    ]
}

fn run(args: &Args) -> AnyResult<report::Summary> {
    let started = Instant::now();

    // The zoo plus ours: from here on they are built by name like any other.
    let mut registry = Registry::zoo();
    registry.register::<Signum>()?;
    registry.register::<QhAdam>()?;

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
    let title = format!("Digits MLP 64-{HIDDEN}-10: Signum and QHAdam against Adam(W) and Lion");
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
    fn signum_moves_by_lr_and_not_at_all_without_gradient() {
        let step = |g: f64| one_step(Signum::default().lr(0.1).build().unwrap(), 1.0, g);
        assert_eq!(step(0.5), 0.9);
        assert_eq!(step(-1e-30), 1.1);
        assert_eq!(step(0.0), 1.0);
    }

    #[test]
    fn qhadam_with_nus_one_is_adam() {
        let mut qh = QhAdam::default()
            .lr(0.01)
            .beta1(0.9)
            .nu1(1.0)
            .nu2(1.0)
            .build::<f64>()
            .unwrap();
        let mut adam = optim_zoo::Adam::default().lr(0.01).build::<f64>().unwrap();
        let mut p = Params::<f64>::new().with("w", arr1(&[1.0, -2.0])).unwrap();
        let mut q = p.clone();
        for k in 1..=10 {
            let g = Grads::new().with("w", arr1(&[0.5 * k as f64, (k as f64).sin()]));
            qh.step(&mut p, &g).unwrap();
            adam.step(&mut q, &g).unwrap();
        }
        let (a, b) = (p.get("w").unwrap(), q.get("w").unwrap());
        for (x, y) in a.iter().zip(b.iter()) {
            assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        }
    }

    #[test]
    fn every_contender_races_by_name_and_lowers_the_loss() {
        let out = std::env::temp_dir().join(format!("custom-optimizer-{}", std::process::id()));
        let dir = out.to_str().unwrap();
        let args =
            Args::try_parse_from(["custom_optimizer", "--epochs", "2", "--out", dir]).unwrap();
        let summary = run(&args).unwrap();
        let names: Vec<&str> = summary.results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["adam", "adamw", "lion", "signum", "qhadam"]);
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
        assert!(svg.contains("signum") && svg.contains("qhadam"));
        let json = std::fs::read_to_string(out.join("leaderboard.json")).unwrap();
        assert!(json.contains("\"optimizer\": \"qhadam\""));
        std::fs::remove_dir_all(&out).unwrap();
    }
}
