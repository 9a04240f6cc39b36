//! Learning-rate schedules that drive any optimizer through its `"lr"` hyperparameter.
//!
//! A schedule maps the step index `t` (0-based: the number of updates already applied,
//! so update number `t + 1` runs with the learning rate of step `t`) to a learning rate.
//! This is the convention of PyTorch's `LambdaLR` and Hugging Face's schedules: with a
//! warmup, the very first update runs with learning rate 0.
//!
//! ```
//! use optim_core::schedule::Schedule;
//! let s = Schedule::linear_warmup_decay(1e-3, 10, 100).unwrap();
//! assert_eq!(s.lr_at(5), 5e-4);           // warming up
//! assert_eq!(s.lr_at(55), 5e-4);          // halfway through the decay
//! assert_eq!(s.lr_at(100), 0.0);          // done
//! ```

use crate::error::{OptimError, Result};
use crate::hyper::{Bound, HyperValue, Range};
use crate::optimizer::Optimizer;
use crate::scalar::Scalar;

/// A learning-rate schedule. Build it with the constructors, which check the values;
/// the variants are public so a schedule can be inspected and matched on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// `lr_t = lr`.
    Constant {
        /// The learning rate.
        lr: f64,
    },
    /// Linear warmup, then linear decay to 0 (BERT; Hugging Face
    /// `get_linear_schedule_with_warmup`):
    ///
    /// `lr_t = lr · (t / warmup)` for `t < warmup`, then
    /// `lr_t = lr · max(0, (total − t) / (total − warmup))`.
    LinearWarmupDecay {
        /// Peak learning rate, reached at `t = warmup_steps`.
        lr: f64,
        /// Steps of linear warmup from 0.
        warmup_steps: u64,
        /// Step at which the learning rate reaches 0.
        total_steps: u64,
    },
    /// Optional linear warmup, then half a cosine wave down to `min_lr` (SGDR without
    /// restarts; Hugging Face `get_cosine_schedule_with_warmup` when `min_lr = 0`):
    ///
    /// `lr_t = lr · (t / warmup)` for `t < warmup`, then with
    /// `p = min(1, (t − warmup) / (total − warmup))`:
    /// `lr_t = min_lr + (lr − min_lr) · (1 + cos(π p)) / 2`.
    Cosine {
        /// Peak learning rate.
        lr: f64,
        /// Final learning rate, kept after `total_steps`.
        min_lr: f64,
        /// Steps of linear warmup from 0 (0 for none).
        warmup_steps: u64,
        /// Step at which the learning rate reaches `min_lr`.
        total_steps: u64,
    },
    /// Step decay (PyTorch `StepLR`): `lr_t = lr · gamma^⌊t / step_size⌋` (computed as
    /// `exp(ln lr + ⌊t / step_size⌋ · ln gamma)` where the power alone would overflow or
    /// underflow).
    StepDecay {
        /// Initial learning rate.
        lr: f64,
        /// Multiplier applied every `step_size` steps.
        gamma: f64,
        /// Steps between two decays (at least 1).
        step_size: u64,
    },
}

const NON_NEGATIVE: Range = Range {
    lo: Bound::Inclusive(0.0),
    hi: Bound::Unbounded,
};
const POSITIVE: Range = Range {
    lo: Bound::Exclusive(0.0),
    hi: Bound::Unbounded,
};

impl Schedule {
    /// A constant learning rate `lr` (at least 0).
    pub fn constant(lr: f64) -> Result<Self> {
        let s = Schedule::Constant { lr };
        s.check()?;
        Ok(s)
    }

    /// Linear warmup over `warmup_steps`, then linear decay to 0 at `total_steps`.
    pub fn linear_warmup_decay(lr: f64, warmup_steps: u64, total_steps: u64) -> Result<Self> {
        let s = Schedule::LinearWarmupDecay {
            lr,
            warmup_steps,
            total_steps,
        };
        s.check()?;
        Ok(s)
    }

    /// Linear warmup over `warmup_steps` (0 for none), then cosine decay to `min_lr` at
    /// `total_steps`.
    pub fn cosine(lr: f64, min_lr: f64, warmup_steps: u64, total_steps: u64) -> Result<Self> {
        let s = Schedule::Cosine {
            lr,
            min_lr,
            warmup_steps,
            total_steps,
        };
        s.check()?;
        Ok(s)
    }

    /// Multiply the learning rate by `gamma` every `step_size` steps.
    pub fn step_decay(lr: f64, gamma: f64, step_size: u64) -> Result<Self> {
        let s = Schedule::StepDecay {
            lr,
            gamma,
            step_size,
        };
        s.check()?;
        Ok(s)
    }

    /// The schedule's name, as used in error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Schedule::Constant { .. } => "constant",
            Schedule::LinearWarmupDecay { .. } => "linear_warmup_decay",
            Schedule::Cosine { .. } => "cosine",
            Schedule::StepDecay { .. } => "step_decay",
        }
    }

    /// Checks every value: learning rates at least 0 and finite, `min_lr ≤ lr`,
    /// `warmup_steps ≤ total_steps`, `gamma > 0`, `step_size ≥ 1`.
    pub fn check(&self) -> Result<()> {
        let range = |name: &str, value: f64, range: Range| {
            if range.contains(value) {
                Ok(())
            } else {
                Err(OptimError::HyperRange {
                    optimizer: self.name().to_string(),
                    name: name.to_string(),
                    value,
                    range,
                })
            }
        };
        let warmup_fits = |warmup: u64, total: u64| {
            if warmup <= total {
                Ok(())
            } else {
                Err(OptimError::Config(format!(
                    "{}: warmup_steps ({warmup}) must not exceed total_steps ({total})",
                    self.name()
                )))
            }
        };
        match *self {
            Schedule::Constant { lr } => range("lr", lr, NON_NEGATIVE),
            Schedule::LinearWarmupDecay {
                lr,
                warmup_steps,
                total_steps,
            } => {
                range("lr", lr, NON_NEGATIVE)?;
                warmup_fits(warmup_steps, total_steps)
            }
            Schedule::Cosine {
                lr,
                min_lr,
                warmup_steps,
                total_steps,
            } => {
                range("lr", lr, NON_NEGATIVE)?;
                let up_to_lr = Range {
                    lo: Bound::Inclusive(0.0),
                    hi: Bound::Inclusive(lr),
                };
                range("min_lr", min_lr, up_to_lr)?;
                warmup_fits(warmup_steps, total_steps)
            }
            Schedule::StepDecay {
                lr,
                gamma,
                step_size,
            } => {
                range("lr", lr, NON_NEGATIVE)?;
                range("gamma", gamma, POSITIVE)?;
                range(
                    "step_size",
                    step_size as f64,
                    Range {
                        lo: Bound::Inclusive(1.0),
                        ..NON_NEGATIVE
                    },
                )
            }
        }
    }

    /// The peak (or initial) learning rate the schedule scales.
    pub fn base_lr(&self) -> f64 {
        match *self {
            Schedule::Constant { lr }
            | Schedule::LinearWarmupDecay { lr, .. }
            | Schedule::Cosine { lr, .. }
            | Schedule::StepDecay { lr, .. } => lr,
        }
    }

    /// The learning rate for step `step` (0-based). Never panics, even on an unchecked
    /// schedule: zero-length spans count as one step, as Hugging Face does.
    pub fn lr_at(&self, step: u64) -> f64 {
        let t = step as f64;
        match *self {
            Schedule::Constant { lr } => lr,
            Schedule::LinearWarmupDecay {
                lr,
                warmup_steps,
                total_steps,
            } => {
                if step < warmup_steps {
                    lr * warmup_fraction(t, warmup_steps)
                } else {
                    let left = total_steps.saturating_sub(step) as f64;
                    let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                    lr * (left / span).max(0.0)
                }
            }
            Schedule::Cosine {
                lr,
                min_lr,
                warmup_steps,
                total_steps,
            } => {
                if step < warmup_steps {
                    lr * warmup_fraction(t, warmup_steps)
                } else {
                    let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                    let progress = ((step - warmup_steps) as f64 / span).min(1.0);
                    // Each factor is at most the one before (0 ≤ min_lr ≤ lr), so nothing
                    // overflows on the way to a finite value.
                    min_lr + (lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
            Schedule::StepDecay {
                lr,
                gamma,
                step_size,
            } => {
                let decays = step / step_size.max(1);
                // Saturate: a u64 exponent this large has overflowed or underflowed anyway.
                let power = gamma.powi(i32::try_from(decays).unwrap_or(i32::MAX));
                if power.is_normal() || lr == 0.0 || gamma <= 0.0 {
                    lr * power
                } else {
                    // γⁿ alone overflowed or underflowed, lr·γⁿ need not have (1e-300 ·
                    // 10⁴⁰⁰ = 1e100): multiply in logs, exp(ln lr + n ln γ).
                    (lr.ln() + decays as f64 * gamma.ln()).exp()
                }
            }
        }
    }

    /// The multiplier of [`Schedule::base_lr`] at `step` (`lr_at(step) / base_lr`; 0 when
    /// the base learning rate is 0).
    pub fn factor(&self, step: u64) -> f64 {
        let base = self.base_lr();
        if base == 0.0 {
            0.0
        } else {
            self.lr_at(step) / base
        }
    }

    /// Sets `optimizer`'s base `"lr"` to [`Schedule::lr_at`]`(step)` and returns that value.
    /// Call it before each update with the number of updates already applied. Groups that
    /// override `"lr"` keep their own value. A learning rate beyond `f64::MAX` (a growing
    /// step decay) is refused by `"lr"`'s range, and the optimizer is left as it was.
    pub fn apply<T: Scalar>(&self, step: u64, optimizer: &mut dyn Optimizer<T>) -> Result<f64> {
        self.check()?;
        let lr = self.lr_at(step);
        optimizer.set_hyper("lr", HyperValue::Float(lr))?;
        Ok(lr)
    }
}

/// `t / warmup`, the share of the warmup done at step `t < warmup`: below 1, so the
/// learning rate it scales stays finite (`lr · t` first overflows at `lr = f64::MAX`). The
/// order of Hugging Face's `LambdaLR` factor too.
fn warmup_fraction(t: f64, warmup: u64) -> f64 {
    t / warmup as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn constant_never_changes() {
        let s = Schedule::constant(0.1).unwrap();
        assert_eq!(s.lr_at(0), 0.1);
        assert_eq!(s.lr_at(u64::MAX), 0.1);
        assert_eq!(s.factor(7), 1.0);
    }

    #[test]
    fn linear_warmup_decay_matches_hugging_face() {
        // lr 1e-3, warmup 4, total 12: ramps 0, .25, .5, .75 then 8/8, 7/8, ... 1/8, 0.
        let s = Schedule::linear_warmup_decay(1e-3, 4, 12).unwrap();
        let expected = [
            0.0, 0.25, 0.5, 0.75, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0, 0.0,
        ];
        for (t, f) in expected.iter().enumerate() {
            assert!(
                close(s.lr_at(t as u64), 1e-3 * f),
                "step {t}: {}",
                s.lr_at(t as u64)
            );
            assert!(close(s.factor(t as u64), *f));
        }
        assert_eq!(s.lr_at(1_000_000), 0.0);
    }

    #[test]
    fn linear_without_warmup_starts_at_peak() {
        let s = Schedule::linear_warmup_decay(2.0, 0, 4).unwrap();
        let got: Vec<f64> = (0..5).map(|t| s.lr_at(t)).collect();
        assert_eq!(got, [2.0, 1.5, 1.0, 0.5, 0.0]);
    }

    #[test]
    fn linear_with_warmup_equal_to_total_does_not_divide_by_zero() {
        let s = Schedule::linear_warmup_decay(1.0, 3, 3).unwrap();
        assert!(close(s.lr_at(2), 2.0 / 3.0));
        assert_eq!(s.lr_at(3), 0.0);
    }

    #[test]
    fn cosine_hand_values() {
        // warmup 2, total 6, lr 1, min 0.1: warmup 0, .5; then p = 0, 1/4, 1/2, 3/4, 1.
        let s = Schedule::cosine(1.0, 0.1, 2, 6).unwrap();
        let half_cos = |p: f64| 0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
        assert_eq!(s.lr_at(0), 0.0);
        assert_eq!(s.lr_at(1), 0.5);
        assert!(close(s.lr_at(2), 1.0));
        assert!(close(s.lr_at(3), half_cos(0.25)));
        assert!(close(s.lr_at(4), 0.55)); // halfway: mean of lr and min_lr
        assert!(close(s.lr_at(5), half_cos(0.75)));
        assert!(close(s.lr_at(6), 0.1));
        assert!(close(s.lr_at(60), 0.1));
    }

    #[test]
    fn cosine_without_warmup_starts_at_peak() {
        let s = Schedule::cosine(0.2, 0.0, 0, 10).unwrap();
        assert!(close(s.lr_at(0), 0.2));
        assert!(close(s.lr_at(5), 0.1));
        assert!(s.lr_at(10).abs() < 1e-15);
    }

    #[test]
    fn step_decay_hand_values() {
        let s = Schedule::step_decay(1.0, 0.5, 3).unwrap();
        let got: Vec<f64> = (0..8).map(|t| s.lr_at(t)).collect();
        assert_eq!(got, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]);
        assert_eq!(s.lr_at(u64::MAX), 0.0);
    }

    #[test]
    fn invalid_values_are_named() {
        let e = Schedule::constant(-1.0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "constant: invalid lr value -1: must be in [0, inf)"
        );
        let e = Schedule::linear_warmup_decay(1.0, 11, 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config: linear_warmup_decay: warmup_steps (11) must not exceed total_steps (10)"
        );
        let e = Schedule::cosine(0.1, 0.2, 0, 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cosine: invalid min_lr value 0.2: must be in [0, 0.1]"
        );
        assert!(Schedule::step_decay(1.0, 0.0, 1).is_err());
        assert!(Schedule::step_decay(1.0, 0.5, 0).is_err());
        assert!(Schedule::constant(f64::NAN).is_err());
        assert!(Schedule::constant(f64::INFINITY).is_err());
    }

    #[test]
    fn unchecked_schedules_do_not_panic() {
        let s = Schedule::StepDecay {
            lr: 1.0,
            gamma: 0.5,
            step_size: 0,
        };
        assert_eq!(s.lr_at(2), 0.25);
        let s = Schedule::LinearWarmupDecay {
            lr: 1.0,
            warmup_steps: 5,
            total_steps: 2,
        };
        assert_eq!(s.lr_at(7), 0.0);
    }

    /// Just enough of an optimizer to see what `apply` sets.
    #[derive(Clone, Debug)]
    struct LrOnly {
        lr: f64,
    }

    const LR_SPEC: [crate::hyper::HyperSpec; 1] = [crate::hyper::HyperSpec {
        name: "lr",
        kind: crate::hyper::HyperKind::Float,
        default: HyperValue::Float(0.1),
        range: NON_NEGATIVE,
        doc: "learning rate",
    }];

    impl Optimizer<f32> for LrOnly {
        fn name(&self) -> &str {
            "lr_only"
        }
        fn hyper_specs(&self) -> &'static [crate::hyper::HyperSpec] {
            &LR_SPEC
        }
        fn hyper(&self, name: &str) -> Result<HyperValue> {
            crate::hyper::find_spec("lr_only", &LR_SPEC, name)?;
            Ok(HyperValue::Float(self.lr))
        }
        fn set_hyper(&mut self, name: &str, value: HyperValue) -> Result<()> {
            let spec = crate::hyper::find_spec("lr_only", &LR_SPEC, name)?;
            self.lr = spec.check("lr_only", value)?.as_f64().unwrap_or(self.lr);
            Ok(())
        }
        fn add_group(&mut self, _: crate::group::Group) -> Result<()> {
            Ok(())
        }
        fn check(&self, _: &crate::Params<f32>, _: &crate::Grads<f32>) -> Result<()> {
            Ok(())
        }
        fn step(&mut self, _: &mut crate::Params<f32>, _: &crate::Grads<f32>) -> Result<()> {
            Ok(())
        }
        fn step_count(&self, _: &str) -> Option<u64> {
            None
        }
        fn export_state(&self) -> crate::OptimizerState {
            crate::OptimizerState {
                format_version: crate::STATE_FORMAT_VERSION,
                optimizer: "lr_only".into(),
                hyper: vec![("lr".into(), HyperValue::Float(self.lr))],
                groups: Vec::new(),
                step: 0,
                params: Vec::new(),
                globals: Vec::new(),
                inner: None,
                routes: Vec::new(),
            }
        }
        fn import_state(
            &mut self,
            _: &crate::OptimizerState,
            _: &crate::Params<f32>,
        ) -> Result<()> {
            Ok(())
        }
        fn boxed_clone(&self) -> Box<dyn Optimizer<f32>> {
            Box::new(self.clone())
        }
    }

    #[test]
    fn apply_sets_the_lr_hyperparameter() {
        let s = Schedule::linear_warmup_decay(1e-3, 4, 12).unwrap();
        let mut opt = LrOnly { lr: 5.0 };
        let dyn_opt: &mut dyn Optimizer<f32> = &mut opt;
        assert_eq!(s.apply(2, dyn_opt).unwrap(), 5e-4);
        assert_eq!(dyn_opt.hyper("lr").unwrap(), HyperValue::Float(5e-4));
        assert_eq!(s.apply(0, dyn_opt).unwrap(), 0.0);
        assert_eq!(opt.lr, 0.0);
    }

    #[test]
    fn apply_reports_an_invalid_schedule_and_changes_nothing() {
        let s = Schedule::Constant { lr: -1.0 };
        let mut opt = LrOnly { lr: 5.0 };
        assert!(s.apply(0, &mut opt).is_err());
        assert_eq!(opt.lr, 5.0);
    }
}
