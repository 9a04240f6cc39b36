//! The race: every zoo optimizer trains the same MLP on handwritten digits, then walks
//! three 2-D test functions. `cargo run --release -p optim-zoo --example race -- --help`.

mod cli;
mod data;
mod lineup;
mod mlp;
mod plot;
mod report;
mod rng;
mod surfaces;
mod train;

use clap::Parser;
use cli::{Args, Recipe};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use lineup::Contender;
use report::{Failure, PathSummary, RunSummary, Summary};
use std::process::ExitCode;
use std::time::Instant;

/// Errors of the example: any error, shown to the user as its message.
pub type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(summary) if summary.failures.is_empty() => ExitCode::SUCCESS,
        Ok(summary) => {
            eprintln!(
                "{} optimizer(s) did not finish; see the leaderboard",
                summary.failures.len()
            );
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> AnyResult<Summary> {
    let started = Instant::now();
    let contenders = select(args)?;
    let split = data::load_split(&args.data, args.seed)?;
    let settings = train::Settings {
        mlp: mlp::Mlp {
            inputs: data::PIXELS,
            hidden: args.hidden as usize,
            classes: data::CLASSES,
        },
        epochs: args.epochs(),
        batch_size: args.batch_size as usize,
        seed: args.seed,
        bert_recipe: args.recipe == Recipe::Bert,
        target_loss: args.target_loss,
    };
    let init = settings.mlp.init(args.seed)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;

    let mut results = Vec::new();
    let mut failures = Vec::new();
    let bars = MultiProgress::new();
    let total_steps = settings.steps_per_epoch(split.train.len()) * settings.epochs as u64;
    for (color, contender) in &contenders {
        let bar = bars.add(
            ProgressBar::new(total_steps)
                .with_style(bar_style())
                .with_prefix(contender.name),
        );
        let raced = lineup::build::<f32>(&contender.config)
            .map_err(|e| ("build", e.to_string()))
            .and_then(|mut opt| {
                train::train(opt.as_mut(), &init, &split, &settings, &bar)
                    .map_err(|e| ("train", e.to_string()))
            });
        match raced {
            Ok(outcome) => {
                bar.finish_with_message(format!(
                    "loss {:.4}, test accuracy {:.1}%",
                    outcome.final_loss(),
                    100.0 * outcome.test_accuracy
                ));
                results.push((
                    *color,
                    report::summarize(contender.name, &contender.config, outcome),
                ));
            }
            Err((stage, error)) => {
                bar.abandon_with_message(format!("{stage} failed: {error}"));
                failures.push(Failure {
                    name: contender.name.into(),
                    stage: stage.into(),
                    error,
                });
            }
        }
    }

    let mut plots = Vec::new();
    let recipe = format!("{:?}", args.recipe).to_lowercase();
    let title = format!(
        "Digits MLP 64-{}-10, {recipe} recipe: training loss",
        args.hidden
    );
    let lines: Vec<plot::Line<(u64, f64)>> = results
        .iter()
        .map(|(color, r)| plot::Line {
            label: &r.name,
            color: *color,
            points: &r.curve,
        })
        .collect();
    plots.push(write_plot(args, "loss_curves.svg", |path| {
        plot::loss_curves(path, &title, &lines)
    })?);
    race_surfaces(args, &mut results, &mut failures, &mut plots)?;

    let summary = Summary {
        recipe,
        seed: args.seed,
        epochs: settings.epochs,
        batch_size: settings.batch_size,
        hidden: settings.mlp.hidden,
        train_images: split.train.len(),
        test_images: split.test.len(),
        target_loss: args.target_loss,
        results: results.into_iter().map(|(_, r)| r).collect(),
        failures,
        plots,
        seconds: started.elapsed().as_secs_f64(),
    };
    report::publish(&summary, &args.out, "Plots")?;
    Ok(summary)
}

/// The contenders picked by `--optimizers` (or the recipe's default), with their color
/// (lineup position) and `--lr` overrides applied. Unknown names are an error.
fn select(args: &Args) -> AnyResult<Vec<(usize, Contender)>> {
    let lineup = lineup::race_lineup();
    let known: Vec<&str> = lineup.iter().map(|c| c.name).collect();
    let unknown = |name: &str| {
        let hint = optim_core::suggest::closest(name, known.iter().copied())
            .map_or(String::new(), |k| format!(" (did you mean `{k}`?)"));
        format!(
            "unknown optimizer `{name}`{hint}; known: {}",
            known.join(", ")
        )
    };
    let names = args
        .optimizers
        .clone()
        .unwrap_or_else(|| lineup::default_names(args.recipe == Recipe::Bert));
    let mut picked = Vec::new();
    for name in &names {
        let index = known
            .iter()
            .position(|k| k == name)
            .ok_or_else(|| unknown(name))?;
        picked.push((index, lineup[index].clone()));
    }
    if args.state_precision != optim_core::StatePrecision::Full {
        for (_, contender) in &mut picked {
            contender.config["state_precision"] = args.state_precision.name().into();
        }
    }
    for (name, lr) in &args.lr {
        let (_, contender) = picked
            .iter_mut()
            .find(|(_, c)| c.name == name)
            .ok_or_else(|| {
                format!(
                    "--lr {name}=…: `{name}` is not racing; racing: {}",
                    names.join(", ")
                )
            })?;
        contender.config = lineup::with_lr(&contender.config, *lr);
    }
    Ok(picked)
}

/// Runs every optimizer that trained on each test function (in f64), records the paths
/// in `results` and draws one chart per function.
fn race_surfaces(
    args: &Args,
    results: &mut [(usize, RunSummary)],
    failures: &mut Vec<Failure>,
    plots: &mut Vec<String>,
) -> AnyResult<()> {
    let lineup = lineup::race_lineup();
    for surface in surfaces::surfaces() {
        let steps = ((surface.steps as f64 * args.surface_fraction()).ceil() as usize).max(1);
        for (_, result) in results.iter_mut() {
            let family = lineup
                .iter()
                .find(|c| c.name == result.name)
                .map_or(lineup::Family::Adaptive, |c| c.family);
            let lr = surface.lr_for(family);
            let config = lineup::with_lr(&result.config, lr);
            let walked = lineup::build::<f64>(&config)
                .map_err(|e| e.to_string())
                .and_then(|mut opt| {
                    surfaces::run_path(&surface, opt.as_mut(), steps).map_err(|e| e.to_string())
                });
            match walked {
                Ok(path) => {
                    let value = |p: &(f64, f64)| (surface.f)(p.0, p.1);
                    result.surfaces.push(PathSummary {
                        surface: surface.name.into(),
                        lr,
                        steps: path.len() - 1,
                        start_value: path.first().map_or(f64::NAN, value),
                        end_value: path.last().map_or(f64::NAN, value),
                        end: path.last().copied().unwrap_or(surface.start),
                        path,
                    });
                }
                Err(error) => failures.push(Failure {
                    name: result.name.clone(),
                    stage: format!("surface {}", surface.name),
                    error,
                }),
            }
        }
        let lines: Vec<plot::Line<(f64, f64)>> = results
            .iter()
            .filter_map(|(color, r)| {
                let run = r.surfaces.iter().find(|p| p.surface == surface.name)?;
                Some(plot::Line {
                    label: &r.name,
                    color: *color,
                    points: &run.path,
                })
            })
            .collect();
        let file = format!("surface_{}.svg", surface.name);
        plots.push(write_plot(args, &file, |path| {
            plot::surface_paths(path, &surface, &lines)
        })?);
    }
    Ok(())
}

fn write_plot(
    args: &Args,
    file: &str,
    draw: impl FnOnce(&std::path::Path) -> AnyResult<()>,
) -> AnyResult<String> {
    let path = args.out.join(file);
    draw(&path).map_err(|e| format!("cannot draw {}: {e}", path.display()))?;
    Ok(file.to_string())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos:>5}/{len} {elapsed:>4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// A fresh output folder per test, removed at the end.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("race-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// What a user or CI sees: leaderboard.json as written, and the SVG files.
    fn check_outputs(out: &Path, expected: &[&str]) {
        let text = std::fs::read_to_string(out.join("leaderboard.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json["failures"],
            serde_json::json!([]),
            "every optimizer finished"
        );
        let results = json["results"].as_array().unwrap();
        let names: Vec<&str> = results
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, expected);
        for r in results {
            let (start, end) = (r["initial_loss"].as_f64(), r["final_loss"].as_f64());
            assert!(
                matches!((start, end), (Some(s), Some(e)) if e < s),
                "{}: {start:?} -> {end:?}",
                r["name"]
            );
            assert_eq!(r["surfaces"].as_array().unwrap().len(), 3);
        }
        let plots = json["plots"].as_array().unwrap();
        assert_eq!(plots.len(), 4);
        for plot in plots {
            let svg = std::fs::read_to_string(out.join(plot.as_str().unwrap())).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
                "{plot}"
            );
            for name in expected {
                assert!(svg.contains(name), "{plot} has a legend entry for {name}");
            }
        }
    }

    #[test]
    fn a_quick_race_of_the_whole_zoo_lowers_every_loss_and_draws_every_plot() {
        let out = scratch("quick");
        let args =
            Args::try_parse_from(["race", "--quick", "--out", out.to_str().unwrap()]).unwrap();
        let summary = run(&args).unwrap();
        assert_eq!(summary.epochs, 2);
        let every: Vec<&str> = lineup::race_lineup().iter().map(|c| c.name).collect();
        check_outputs(&out, &every);
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn the_bert_recipe_trains_with_warmup_clipping_and_decay_mask() {
        let out = scratch("bert");
        let dir = out.to_str().unwrap();
        let flags = [
            "race",
            "--quick",
            "--recipe",
            "bert",
            "--optimizers",
            "bert,adamw,lookahead",
            "--out",
            dir,
        ];
        run(&Args::try_parse_from(flags).unwrap()).unwrap();
        check_outputs(&out, &["bert", "adamw", "lookahead"]);
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn unknown_names_are_refused_before_training() {
        let args = Args::try_parse_from([
            "race",
            "--optimizers",
            "adm",
            "--out",
            "/nonexistent/never-written",
        ])
        .unwrap();
        let e = run(&args).unwrap_err().to_string();
        assert!(
            e.starts_with("unknown optimizer `adm` (did you mean `adam`?)"),
            "{e}"
        );
        let args =
            Args::try_parse_from(["race", "--optimizers", "sgd", "--lr", "adam=0.1"]).unwrap();
        assert!(run(&args)
            .unwrap_err()
            .to_string()
            .contains("`adam` is not racing"));
    }
}
