//! The leaderboard printed at the end, and `leaderboard.json`, the machine-readable
//! summary a test reads to check that every optimizer lowered the loss.

use crate::lineup::lr_of;
use crate::train::Outcome;
use crate::AnyResult;
use serde::Serialize;
use std::path::Path;

/// Everything one run produced. Serialized as `leaderboard.json` (NaN becomes null).
#[derive(Debug, Serialize)]
pub struct Summary {
    /// `standard` or `bert`.
    pub recipe: String,
    /// The seed of split, initialization and batch order.
    pub seed: u64,
    /// Passes over the training set.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Images used for training / testing.
    pub train_images: usize,
    /// Images held out.
    pub test_images: usize,
    /// Loss counted to in `steps_to_target`.
    pub target_loss: f64,
    /// Optimizers that raced, in lineup order.
    pub results: Vec<RunSummary>,
    /// Optimizers that could not race (or could not finish a surface), with the reason.
    pub failures: Vec<Failure>,
    /// SVG files written, relative to the output folder.
    pub plots: Vec<String>,
    /// Wall-clock seconds for the whole run.
    pub seconds: f64,
}

/// One optimizer's result.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    /// Registry name.
    pub name: String,
    /// The registry config used for the MLP (learning rate included).
    pub config: serde_json::Value,
    /// Learning rate (peak learning rate under the BERT recipe).
    pub lr: Option<f64>,
    /// Full training loss before the first step.
    pub initial_loss: f64,
    /// Full training loss after the last step.
    pub final_loss: f64,
    /// `final_loss < initial_loss`.
    pub lowered_loss: bool,
    /// Held-out loss after training.
    pub test_loss: f64,
    /// Held-out accuracy after training, in [0, 1].
    pub test_accuracy: f64,
    /// First measured step at or below the target loss.
    pub steps_to_target: Option<u64>,
    /// Mean microseconds per optimizer step (schedule and clipping included).
    pub micros_per_step: f64,
    /// Training stopped on a non-finite loss.
    pub diverged: bool,
    /// `(step, training loss)`, every few steps.
    pub curve: Vec<(u64, f64)>,
    /// The optimizer's run on each 2-D test function.
    pub surfaces: Vec<PathSummary>,
}

/// One optimizer on one 2-D test function.
#[derive(Debug, Serialize)]
pub struct PathSummary {
    /// Test function name.
    pub surface: String,
    /// Learning rate used there.
    pub lr: f64,
    /// Steps taken (fewer than asked when the path escaped the plot).
    pub steps: usize,
    /// f at the start point.
    pub start_value: f64,
    /// f at the end point.
    pub end_value: f64,
    /// The last point visited.
    pub end: (f64, f64),
    /// The points visited (drawn, not written: it would dwarf the rest of the JSON).
    #[serde(skip)]
    pub path: Vec<(f64, f64)>,
}

/// An optimizer that could not race, and why.
#[derive(Debug, Serialize)]
pub struct Failure {
    /// Registry name.
    pub name: String,
    /// What failed: `build`, `train`, or `surface <name>`.
    pub stage: String,
    /// The error message.
    pub error: String,
}

/// The summary of `outcome`, the training of the optimizer `name` built from `config`.
pub fn summarize(name: &str, config: &serde_json::Value, outcome: Outcome) -> RunSummary {
    RunSummary {
        name: name.into(),
        config: config.clone(),
        lr: lr_of(config),
        initial_loss: outcome.initial_loss(),
        final_loss: outcome.final_loss(),
        lowered_loss: outcome.final_loss() < outcome.initial_loss(),
        test_loss: outcome.test_loss,
        test_accuracy: outcome.test_accuracy,
        steps_to_target: outcome.steps_to_target,
        micros_per_step: outcome.micros_per_step(),
        diverged: outcome.diverged,
        surfaces: Vec::new(),
        curve: outcome.curve,
    }
}

/// Writes `summary` as pretty JSON to `path`.
pub fn write_json(path: &Path, summary: &Summary) -> AnyResult<()> {
    let text = serde_json::to_string_pretty(summary)?;
    std::fs::write(path, text + "\n")
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// Writes `leaderboard.json` into `out`, prints the leaderboard and where the outputs are
/// (`what`: "Plots", "Loss curves").
pub fn publish(summary: &Summary, out: &Path, what: &str) -> AnyResult<()> {
    write_json(&out.join("leaderboard.json"), summary)?;
    println!("\n{}", leaderboard(summary));
    println!(
        "{what} and leaderboard.json in {} ({:.1} s)",
        out.display(),
        summary.seconds
    );
    Ok(())
}

/// The leaderboard as text: best final training loss first, diverged runs last.
pub fn leaderboard(summary: &Summary) -> String {
    let mut ranked: Vec<&RunSummary> = summary.results.iter().collect();
    ranked.sort_by(|a, b| rank_key(a.final_loss).total_cmp(&rank_key(b.final_loss)));
    let target = format!("steps to {}", summary.target_loss);
    // As wide as the longest name (`schedule_free_adamw`), so the columns line up.
    let width = ranked
        .iter()
        .map(|r| r.name.len())
        .chain(summary.failures.iter().map(|f| f.name.len()))
        .max()
        .unwrap_or(0)
        .max(10);
    let mut out = format!(
        "{:>3}  {:<width$} {:>9} {:>10} {:>10} {:>9} {:>14} {:>9}\n",
        "#", "optimizer", "lr", "start loss", "final loss", "test acc", target, "µs/step"
    );
    for (rank, r) in ranked.iter().enumerate() {
        let lr = r.lr.map_or("-".into(), |lr| format!("{lr:.2e}"));
        let steps = r.steps_to_target.map_or("never".into(), |s| s.to_string());
        let flag = if r.diverged { "  diverged" } else { "" };
        out += &format!(
            "{:>3}  {:<width$} {:>9} {:>10} {:>10} {:>8.1}% {:>14} {:>9.1}{flag}\n",
            rank + 1,
            r.name,
            lr,
            loss(r.initial_loss),
            loss(r.final_loss),
            100.0 * r.test_accuracy,
            steps,
            r.micros_per_step
        );
    }
    for f in &summary.failures {
        out += &format!(
            "  -  {:<width$} did not finish ({}): {}\n",
            f.name, f.stage, f.error
        );
    }
    out
}

/// Four decimals, or three significant digits below 0.001 (where four decimals print 0).
fn loss(value: f64) -> String {
    if value != 0.0 && value.abs() < 1e-3 {
        format!("{value:.2e}")
    } else {
        format!("{value:.4}")
    }
}

fn rank_key(loss: f64) -> f64 {
    if loss.is_nan() {
        f64::INFINITY
    } else {
        loss
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, final_loss: f64) -> RunSummary {
        RunSummary {
            name: name.into(),
            config: serde_json::json!({"optimizer": name}),
            lr: Some(0.1),
            initial_loss: 2.3,
            final_loss,
            lowered_loss: final_loss < 2.3,
            test_loss: final_loss,
            test_accuracy: 0.9,
            steps_to_target: None,
            micros_per_step: 3.0,
            diverged: final_loss.is_nan(),
            curve: vec![(0, 2.3), (5, final_loss)],
            surfaces: Vec::new(),
        }
    }

    fn summary() -> Summary {
        Summary {
            recipe: "standard".into(),
            seed: 1,
            epochs: 1,
            batch_size: 32,
            hidden: 32,
            train_images: 10,
            test_images: 5,
            target_loss: 0.1,
            results: vec![run("nan", f64::NAN), run("worse", 0.5), run("best", 0.05)],
            failures: vec![Failure {
                name: "adam".into(),
                stage: "build".into(),
                error: "missing".into(),
            }],
            plots: vec!["loss_curves.svg".into()],
            seconds: 1.0,
        }
    }

    #[test]
    fn leaderboard_ranks_by_final_loss_and_lists_failures() {
        let text = leaderboard(&summary());
        let order: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(order, ["best", "worse", "nan", "adam"]);
        assert!(text.contains("diverged") && text.contains("did not finish (build): missing"));
    }

    #[test]
    fn small_losses_keep_their_digits() {
        assert_eq!(loss(2.56604), "2.5660");
        assert_eq!(loss(0.0015), "0.0015");
        assert_eq!(loss(2.345e-5), "2.35e-5");
        assert_eq!(loss(0.0), "0.0000");
        assert_eq!(loss(f64::NAN), "NaN");
    }

    #[test]
    fn json_has_per_optimizer_losses_and_null_for_nan() {
        let value = serde_json::to_value(summary()).unwrap();
        assert_eq!(value["results"][2]["final_loss"], 0.05);
        assert_eq!(value["results"][2]["lowered_loss"], true);
        assert!(value["results"][0]["final_loss"].is_null());
    }
}
