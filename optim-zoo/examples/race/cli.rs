//! Command-line flags.

use clap::{Parser, ValueEnum};
use optim_core::StatePrecision;
use std::path::PathBuf;

/// Race the optimizer zoo: train the same small MLP on handwritten digits with each
/// optimizer (same seed, same initialization, same batches), then compare them on a
/// leaderboard, a chart of loss curves, and their paths on 2-D test functions.
///
/// Writes to --out: loss_curves.svg, surface_<name>.svg per test function, and
/// leaderboard.json (per optimizer: learning rate, initial and final loss, test
/// accuracy, steps to the target loss, time per step, loss curve, and where it ended on each test function).
#[derive(Debug, Parser)]
#[command(name = "race", about, long_about)]
pub struct Args {
    /// Optimizers to race, comma-separated registry names (default: the whole zoo; with
    /// --recipe bert: "bert"). Known: sgd, momentum, nag, adagrad, adadelta, rmsprop,
    /// adam, amsgrad, adamw, adamax, nadam, radam, lazyadam, lookahead, ranger, bert.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub optimizers: Option<Vec<String>>,

    /// Passes over the training set per optimizer [default: 30, or 2 with --quick].
    #[arg(long)]
    pub epochs: Option<usize>,

    /// Learning-rate overrides for the MLP, e.g. `--lr adam=0.01,sgd=0.2` (repeatable).
    /// For lookahead the inner optimizer's rate is set. The 2-D surfaces keep their own.
    #[arg(long = "lr", value_name = "NAME=LR", value_delimiter = ',', value_parser = parse_lr_override)]
    pub lr: Vec<(String, f64)>,

    /// Seed for the train/test split, the initial weights and the batch order.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Output folder (created if missing).
    #[arg(long, default_value = "out")]
    pub out: PathBuf,

    /// Training recipe. `standard`: constant learning rate, no clipping. `bert`: linear
    /// warmup over the first 10% of steps then linear decay to 0, gradients clipped to
    /// global norm 1.0 every step, and no weight decay on parameters whose name contains
    /// "bias", "LayerNorm" or "layer_norm".
    #[arg(long, value_enum, default_value_t = Recipe::Standard)]
    pub recipe: Recipe,

    /// A tiny run for tests and smoke checks: 2 epochs (unless --epochs is given) and
    /// one tenth of the steps on the 2-D surfaces.
    #[arg(long)]
    pub quick: bool,

    /// Mini-batch size.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,

    /// Hidden units of the MLP (64 → hidden → 10).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub hidden: u64,

    /// Training loss the leaderboard's "steps to target" column counts up to.
    #[arg(long, default_value_t = 0.1)]
    pub target_loss: f64,

    /// How every optimizer keeps its element-wise states: `f32`, `bf16` or `q8`
    /// (blockwise 8-bit). Under q8 tensors of fewer than 4096 elements keep f32 states:
    /// with the default --hidden 32 no layer is that large; --hidden 128 makes the first
    /// layer (64 × 128) q8.
    #[arg(long, default_value = "f32", value_parser = parse_precision)]
    pub state_precision: StatePrecision,

    /// The digits data (gzip-compressed CSV, see data/README.md).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/digits.csv.gz"))]
    pub data: PathBuf,
}

/// How each optimizer is driven during training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Recipe {
    /// Constant learning rate, raw gradients.
    Standard,
    /// Warmup + linear decay, global-norm clipping at 1.0, decay mask on biases.
    Bert,
}

impl Args {
    /// Epochs after applying --quick.
    pub fn epochs(&self) -> usize {
        self.epochs.unwrap_or(if self.quick { 2 } else { 30 })
    }

    /// Fraction of the default surface steps to run.
    pub fn surface_fraction(&self) -> f64 {
        if self.quick {
            0.1
        } else {
            1.0
        }
    }
}

fn parse_precision(text: &str) -> Result<StatePrecision, String> {
    StatePrecision::parse::<f32>(text)
        .ok_or_else(|| format!("`{text}` is not {}", StatePrecision::choices::<f32>()))
}

fn parse_lr_override(text: &str) -> Result<(String, f64), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=LR (e.g. adam=0.01)"))?;
    let lr: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number"))?;
    if !(lr.is_finite() && lr >= 0.0) {
        return Err(format!("learning rate {lr} must be finite and at least 0"));
    }
    Ok((name.trim().to_string(), lr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_parse() {
        let args = Args::try_parse_from([
            "race",
            "--optimizers",
            "sgd,adam",
            "--lr",
            "adam=0.01,sgd=0.2",
            "--lr",
            "nag=1e-3",
            "--quick",
            "--recipe",
            "bert",
        ])
        .unwrap();
        assert_eq!(
            args.optimizers,
            Some(vec!["sgd".to_string(), "adam".to_string()])
        );
        assert_eq!(
            args.lr,
            [
                ("adam".into(), 0.01),
                ("sgd".into(), 0.2),
                ("nag".into(), 1e-3)
            ]
        );
        assert_eq!(args.epochs(), 2);
        assert_eq!(args.recipe, Recipe::Bert);
        assert_eq!(Args::try_parse_from(["race"]).unwrap().epochs(), 30);
    }

    #[test]
    fn bad_overrides_are_explained() {
        let e = Args::try_parse_from(["race", "--lr", "adam"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`adam` is not NAME=LR"), "{e}");
        let e = Args::try_parse_from(["race", "--lr", "adam=-1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be finite and at least 0"), "{e}");
    }

    #[test]
    fn help_is_consistent() {
        Args::command().debug_assert();
    }
}
