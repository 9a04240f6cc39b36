//! The mini-batch training loop, identical for every optimizer: same initial weights,
//! same batches in the same order; only the optimizer differs.

use crate::data::Split;
use crate::mlp::Mlp;
use crate::rng::SplitMix64;
use crate::AnyResult;
use indicatif::ProgressBar;
use optim_core::clip::clip_grad_norm;
use optim_core::schedule::Schedule;
use optim_core::{Group, Optimizer, Params};
use std::time::{Duration, Instant};

/// The full training loss is measured every this many steps (and after the last one).
pub const EVAL_EVERY: u64 = 5;
/// BERT's clipping threshold on the global gradient norm.
pub const BERT_MAX_GRAD_NORM: f64 = 1.0;
/// BERT warms up over this fraction of all steps.
pub const BERT_WARMUP_FRACTION: f64 = 0.1;
/// Name parts whose parameters BERT does not decay.
pub const BERT_NO_DECAY: [&str; 3] = ["bias", "LayerNorm", "layer_norm"];

/// Everything that is the same for every optimizer.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The model.
    pub mlp: Mlp,
    /// Passes over the training set.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Seed of the batch order.
    pub seed: u64,
    /// Warmup/decay schedule, clipping and decay mask (BERT) or none of them.
    pub bert_recipe: bool,
    /// Loss for the "steps to target" column.
    pub target_loss: f64,
}

impl Settings {
    /// Optimizer steps per epoch (the last batch may be smaller).
    pub fn steps_per_epoch(&self, train_len: usize) -> u64 {
        train_len.div_ceil(self.batch_size.max(1)) as u64
    }
}

/// What one optimizer achieved.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// `(step, full training loss)`, starting at step 0 (before any update).
    pub curve: Vec<(u64, f64)>,
    /// Loss on the held-out images after training.
    pub test_loss: f64,
    /// Accuracy on the held-out images after training.
    pub test_accuracy: f64,
    /// First measured step whose training loss is at most the target.
    pub steps_to_target: Option<u64>,
    /// Time spent inside `Optimizer::step` (and the schedule and clipping, if any).
    pub optimizer_time: Duration,
    /// Updates applied.
    pub steps: u64,
    /// Whether training stopped early on a non-finite loss.
    pub diverged: bool,
}

impl Outcome {
    /// Training loss before the first update.
    pub fn initial_loss(&self) -> f64 {
        self.curve.first().map_or(f64::NAN, |p| p.1)
    }
    /// Training loss after the last update.
    pub fn final_loss(&self) -> f64 {
        self.curve.last().map_or(f64::NAN, |p| p.1)
    }
    /// Mean time per optimizer step, in microseconds.
    pub fn micros_per_step(&self) -> f64 {
        self.optimizer_time.as_secs_f64() * 1e6 / self.steps.max(1) as f64
    }
}

/// Prepares `optimizer` for the recipe: under BERT, biases and norms get no decay, and the
/// returned schedule will drive its learning rate.
pub fn prepare(
    optimizer: &mut dyn Optimizer<f32>,
    settings: &Settings,
    total_steps: u64,
) -> AnyResult<Option<Schedule>> {
    if !settings.bert_recipe {
        return Ok(None);
    }
    if optimizer
        .hyper_specs()
        .iter()
        .any(|s| s.name == "weight_decay")
    {
        optimizer.add_group(Group::name_contains(BERT_NO_DECAY).set("weight_decay", 0.0))?;
    }
    let peak = optimizer
        .hyper("lr")?
        .as_f64()
        .ok_or("the optimizer's lr is not a number")?;
    let warmup = (total_steps as f64 * BERT_WARMUP_FRACTION).round() as u64;
    Ok(Some(Schedule::linear_warmup_decay(
        peak,
        warmup,
        total_steps,
    )?))
}

/// Trains from `init` with `optimizer`, advancing `bar` by one per step.
pub fn train(
    optimizer: &mut dyn Optimizer<f32>,
    init: &Params<f32>,
    data: &Split,
    settings: &Settings,
    bar: &ProgressBar,
) -> AnyResult<Outcome> {
    let total_steps = settings.steps_per_epoch(data.train.len()) * settings.epochs as u64;
    let schedule = prepare(optimizer, settings, total_steps)?;
    let mut params = init.clone();
    let train_loss = |p: &Params<f32>| -> AnyResult<f64> {
        Ok(settings
            .mlp
            .evaluate(p, data.train.x.view(), &data.train.y)?
            .loss)
    };
    let mut curve = vec![(0, train_loss(&params)?)];
    let mut optimizer_time = Duration::ZERO;
    let mut step = 0u64;
    let mut diverged = false;
    'epochs: for epoch in 0..settings.epochs {
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        SplitMix64::stream(settings.seed, 100 + epoch as u64).shuffle(&mut order);
        for batch in order.chunks(settings.batch_size.max(1)) {
            let batch = data.train.select(batch);
            let (_, mut grads) = settings
                .mlp
                .loss_and_grads(&params, batch.x.view(), &batch.y)?;
            let started = Instant::now();
            if let Some(schedule) = &schedule {
                clip_grad_norm(&mut grads, BERT_MAX_GRAD_NORM)?;
                schedule.apply(step, optimizer)?;
            }
            optimizer.step(&mut params, &grads)?;
            optimizer_time += started.elapsed();
            step += 1;
            bar.inc(1);
            if step.is_multiple_of(EVAL_EVERY) || step == total_steps {
                let loss = train_loss(&params)?;
                curve.push((step, loss));
                bar.set_message(format!("loss {loss:.4}"));
                if !loss.is_finite() {
                    diverged = true;
                    break 'epochs;
                }
            }
        }
    }
    let test = settings
        .mlp
        .evaluate(&params, data.test.x.view(), &data.test.y)?;
    let steps_to_target = curve
        .iter()
        .find(|(_, loss)| *loss <= settings.target_loss)
        .map(|(s, _)| *s);
    Ok(Outcome {
        curve,
        test_loss: test.loss,
        test_accuracy: test.accuracy,
        steps_to_target,
        optimizer_time,
        steps: step,
        diverged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use optim_core::Selector;

    fn settings(bert_recipe: bool) -> Settings {
        Settings {
            mlp: Mlp {
                inputs: 4,
                hidden: 3,
                classes: 2,
            },
            epochs: 1,
            batch_size: 8,
            seed: 0,
            bert_recipe,
            target_loss: 0.1,
        }
    }

    #[test]
    fn the_bert_recipe_warms_up_over_a_tenth_and_masks_bias_decay() {
        let mut opt =
            crate::lineup::build::<f32>(&serde_json::json!({"optimizer": "adamw", "lr": 0.002}))
                .unwrap();
        let schedule = prepare(opt.as_mut(), &settings(true), 200).unwrap();
        assert_eq!(
            schedule,
            Some(Schedule::linear_warmup_decay(0.002, 20, 200).unwrap())
        );
        let groups = opt.export_state().groups;
        let masked = groups.iter().any(|g| {
            g.selector == Selector::NameContains(BERT_NO_DECAY.map(String::from).to_vec())
                && g.overrides == [("weight_decay".to_string(), 0.0.into())]
        });
        assert!(masked, "{groups:?}");
    }

    #[test]
    fn the_standard_recipe_leaves_the_optimizer_alone() {
        let mut opt =
            crate::lineup::build::<f32>(&serde_json::json!({"optimizer": "adamw"})).unwrap();
        assert_eq!(prepare(opt.as_mut(), &settings(false), 200).unwrap(), None);
        assert!(opt.export_state().groups.is_empty());
    }

    #[test]
    fn steps_per_epoch_counts_the_last_partial_batch() {
        assert_eq!(settings(false).steps_per_epoch(16), 2);
        assert_eq!(settings(false).steps_per_epoch(17), 3);
    }
}
