//! The object-safe optimizer interface every optimizer (generated or wrapped) implements.

use crate::error::{OptimError, Result};
use crate::group::Group;
use crate::hyper::{HyperSpec, HyperValue};
use crate::nonfinite::NonFinitePolicy;
use crate::params::{Grads, Params};
use crate::precision::StatePrecision;
use crate::scalar::Scalar;
use crate::state::OptimizerState;

/// Called with a step's sums over every parameter (see [`Optimizer::set_sum_hook`]),
/// after they are added up and before the optimizer-wide code reads them.
pub type SumHook = std::sync::Arc<dyn Fn(&mut [f64]) + Send + Sync>;

/// A stateful optimizer over named parameters of element type `T`.
pub trait Optimizer<T: Scalar>: Send + std::fmt::Debug {
    /// Registry name (`"adam"`, `"lookahead"`).
    fn name(&self) -> &str;
    /// Declared hyperparameters.
    fn hyper_specs(&self) -> &'static [HyperSpec];
    /// Current base value of hyperparameter `name`.
    fn hyper(&self, name: &str) -> Result<HyperValue>;
    /// Sets the base value of hyperparameter `name` (kind and range checked; groups that
    /// override `name` keep their own value).
    fn set_hyper(&mut self, name: &str, value: HyperValue) -> Result<()>;
    /// Adds a parameter group; every override is checked first.
    fn add_group(&mut self, group: Group) -> Result<()>;
    /// Checks `grads` against `params` (names, shapes, sparse rows) without changing anything.
    fn check(&self, params: &Params<T>, grads: &Grads<T>) -> Result<()>;
    /// One step: checks everything, then updates every parameter that has a gradient.
    /// On error nothing has changed.
    fn step(&mut self, params: &mut Params<T>, grads: &Grads<T>) -> Result<()>;
    /// Steps taken by parameter `name` (`None` before its first step).
    fn step_count(&self, name: &str) -> Option<u64>;
    /// Exports the whole state.
    fn export_state(&self) -> OptimizerState;
    /// Replaces the whole state with `state`, after checking all of it against this
    /// optimizer and `params`; on error nothing changes.
    fn import_state(&mut self, state: &OptimizerState, params: &Params<T>) -> Result<()>;
    /// A boxed deep copy.
    fn boxed_clone(&self) -> Box<dyn Optimizer<T>>;

    /// Writes the weights to evaluate the model with into `out`, without touching any
    /// training state: for most optimizers the parameters themselves; for those that
    /// declare evaluation weights (schedule-free's `x = (y − (1−β1)·z)/β1`, ASGD's average)
    /// those, for every parameter that has state (the others are copied as they are).
    ///
    /// `out` ends up with exactly `params`' names and shapes; when it already has them
    /// (the usual case from the second call on), its arrays are overwritten in place and
    /// nothing is allocated.
    fn eval_params_into(&self, params: &Params<T>, out: &mut Params<T>) -> Result<()> {
        out.copy_from(params);
        Ok(())
    }

    /// The evaluation weights as new parameters (see [`Optimizer::eval_params_into`]).
    fn eval_params(&self, params: &Params<T>) -> Result<Params<T>> {
        let mut out = Params::new();
        self.eval_params_into(params, &mut out)?;
        Ok(out)
    }

    /// Sets what a step does with NaN or ±inf in a gradient (see [`NonFinitePolicy`];
    /// the default, `Propagate`, costs nothing). The policy is a runtime setting, not
    /// state: checkpoints do not carry it.
    ///
    /// The provided implementation accepts only `Propagate`; [`crate::Optim`] and
    /// [`crate::Wrapped`] support every policy.
    fn set_non_finite_policy(&mut self, policy: NonFinitePolicy) -> Result<()> {
        match policy {
            NonFinitePolicy::Propagate => Ok(()),
            other => Err(OptimError::Config(format!(
                "{} does not support the non-finite policy `{other}`",
                self.name()
            ))),
        }
    }
    /// The current non-finite policy.
    fn non_finite_policy(&self) -> NonFinitePolicy {
        NonFinitePolicy::Propagate
    }
    /// Parameters the last successful step left untouched because their gradient was not
    /// all finite (under [`NonFinitePolicy::SkipParam`]), in gradient order.
    fn skipped(&self) -> &[String] {
        &[]
    }

    /// Whether the update is element-wise ([`crate::Algorithm::ELEMENTWISE`]; a wrapper
    /// only if its rule and its inner optimizer are): then it may be stepped on any
    /// pieces of the parameters. `false`, the default, is always safe.
    fn elementwise(&self) -> bool {
        false
    }
    /// Whether a step sums over every parameter it steps (`total_sum`, Prodigy).
    fn global_sums(&self) -> bool {
        false
    }
    /// Installs `hook` on the sums over every parameter: each phase's sums `S` (over the
    /// parameters this optimizer steps) are replaced by `hook(S)` before they are used,
    /// so that processes each stepping a part of the parameters can add theirs up
    /// (`optim-dist`). Not state: clones and checkpoints do not carry it. The default
    /// accepts only `None`.
    fn set_sum_hook(&mut self, hook: Option<SumHook>) -> Result<()> {
        match hook {
            None => Ok(()),
            Some(_) => Err(OptimError::Config(format!(
                "{} does not sum over every parameter, so it takes no sum hook",
                self.name()
            ))),
        }
    }
    /// Sets the precision element-wise states are kept in ([`StatePrecision`]: full,
    /// bf16 or blockwise 8-bit). States that exist are converted now (decoded, then
    /// encoded: converting to a compact precision loses what it cannot hold); states made
    /// later are made so. Checkpoints record each state's precision, and a checkpoint is
    /// loaded only into an optimizer keeping the same precision.
    ///
    /// The provided implementation accepts only `Full`; [`crate::Optim`],
    /// [`crate::Wrapped`] (its inner optimizer's states) and [`crate::Partition`] (every
    /// route's) support every precision.
    fn set_state_precision(&mut self, precision: StatePrecision) -> Result<()> {
        match precision {
            StatePrecision::Full => Ok(()),
            p => Err(OptimError::Config(format!(
                "{} keeps its states in full precision only, not {p}",
                self.name()
            ))),
        }
    }
    /// The precision element-wise states are kept in (see
    /// [`Optimizer::set_state_precision`]).
    fn state_precision(&self) -> StatePrecision {
        StatePrecision::Full
    }
    /// Bytes of per-parameter state held now: every element-wise and factored state
    /// (codes and scales for 8-bit states); scalar states are not counted. 0 for an
    /// optimizer that does not report it.
    fn state_bytes(&self) -> usize {
        0
    }
}

impl<T: Scalar> Clone for Box<dyn Optimizer<T>> {
    fn clone(&self) -> Self {
        self.boxed_clone()
    }
}
