//! # optim-candle
//!
//! Every optimizer of the zoo (and every `#[optimizer]` you write) as a
//! [`candle_nn::Optimizer`], with our checkpoints, parameter groups, schedules, global-norm
//! clipping and non-finite policies, stepping candle's variables in place.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{Module, Optimizer, VarBuilder, VarMap};
//! use optim_candle::{CandleOptimizer, Config};
//! use serde_json::json;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
//! // Constant initial weights, so that the example runs the same every time.
//! let init = candle_nn::Init::Const(0.0);
//! let weight = vb.pp("fc").get_with_hints((1, 2), "weight", init)?;
//! let bias = vb.pp("fc").get_with_hints(1, "bias", init)?;
//! let model = candle_nn::Linear::new(weight, Some(bias));
//! let config = Config::json(json!({"optimizer": "adamw", "lr": 0.05}));
//! // Named by the VarMap ("fc.weight", "fc.bias"): what checkpoints and groups need.
//! let mut opt = CandleOptimizer::from_varmap(&varmap, config)?;
//! let x = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu)?;
//! let y = Tensor::new(&[[1f32], [2.]], &Device::Cpu)?;
//! let first = model.forward(&x)?.sub(&y)?.sqr()?.mean_all()?.to_scalar::<f32>()?;
//! for _ in 0..50 {
//!     let loss = model.forward(&x)?.sub(&y)?.sqr()?.mean_all()?;
//!     opt.backward_step(&loss)?; // candle_nn::Optimizer's own method
//! }
//! let last = model.forward(&x)?.sub(&y)?.sqr()?.mean_all()?.to_scalar::<f32>()?;
//! assert!(last < first / 10.0);
//! # Ok(())
//! # }
//! ```
//!
//! ## Copies
//!
//! A variable on the CPU, contiguous, of the optimizer's element type (`f32` or `f64`, the
//! usual case) is stepped **in place**: for the length of the step its storage's `Vec`
//! becomes the array our optimizer steps, and goes back afterwards, the same allocation
//! (see `inplace.rs`); its gradient is lent the same way. Optimizer state lives in our
//! buffers. Anything else (a CUDA or Metal variable, `bf16`/`f16` variables, which step in
//! `f32`, a gradient that is not a whole contiguous storage) is copied in before the step
//! and, for variables, written back with [`candle_core::Var::set`] after it: one copy each
//! way, into buffers kept between steps.
//!
//! ## Element type
//!
//! One optimizer steps every float variable: in `f64` if every one is `f64`, else in
//! `f32`; `f64` mixed with other float types is refused. Variables of integer types are
//! left out, as `candle_nn`'s optimizers do.

#![warn(missing_docs)]

mod config;
mod inplace;

pub use config::Config;
pub use inplace::CandleElem;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;
use config::BuildFor;
use inplace::{lendable, placeholder, with_loans, Loan, Target};
use ndarray::{ArrayD, IxDyn};
use optim_core::{
    Grads, Group, HyperValue, NonFinitePolicy, OptimError, Optimizer, OptimizerState, Params,
};
use std::collections::HashSet;
use std::path::Path;

/// An error of the adapter: the optimizer's, or candle's while reading or writing a tensor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the optimizer (configuration, hyperparameters, checks, checkpoints).
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// From candle (a tensor could not be read, converted or written).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// Variables the adapter cannot step together.
    #[error("{0}")]
    Vars(String),
}

/// The adapter's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for candle_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Candle(e) => e,
            other => candle_core::Error::wrap(other),
        }
    }
}

/// A candle variable and the name our optimizer knows it by.
struct Slot {
    name: String,
    var: Var,
}

/// Our optimizer and the parameter and gradient sets it steps, kept between steps so a
/// steady-state step allocates nothing.
struct Core<T: optim_core::Scalar> {
    opt: Box<dyn Optimizer<T>>,
    /// Every variable, in slot order; an entry is a placeholder except during a step (or a
    /// buffer, for a variable that is copied).
    params: Params<T>,
    /// The gradients of the last step, by name; rebuilt when the set of variables with a
    /// gradient changes.
    grads: Grads<T>,
    /// Slot indices of `grads`' entries, in order.
    with_grad: Vec<usize>,
}

enum Inner {
    F32(Core<f32>),
    F64(Core<f64>),
}

/// Runs `$body` with `$core` bound to the inner [`Core`], whatever its element type.
macro_rules! with_core {
    ($inner:expr, $core:ident => $body:expr) => {
        match $inner {
            Inner::F32($core) => $body,
            Inner::F64($core) => $body,
        }
    };
}

/// Any registry optimizer as a [`candle_nn::Optimizer`] (see the crate docs).
pub struct CandleOptimizer {
    slots: Vec<Slot>,
    inner: Inner,
    config: Config,
    /// Successful steps taken (the schedule's index).
    steps: u64,
    /// A `set_learning_rate` that failed (candle's signature has no error), reported by the
    /// next step, which then changes nothing.
    pending: Option<OptimError>,
    /// Tensors (variables and gradients) the last step copied instead of lending.
    copied: usize,
}

impl std::fmt::Debug for CandleOptimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleOptimizer")
            .field("vars", &self.names().collect::<Vec<_>>())
            .field("config", &self.config)
            .field("steps", &self.steps)
            .finish()
    }
}

impl CandleOptimizer {
    /// An optimizer for named variables (names must be unique). The float variables are
    /// kept, in this order; variables of integer types are left out.
    pub fn from_named(vars: Vec<(String, Var)>, config: Config) -> Result<Self> {
        let slots: Vec<Slot> = vars
            .into_iter()
            .filter(|(_, var)| var.dtype().is_float())
            .map(|(name, var)| Slot { name, var })
            .collect();
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for slot in &slots {
            if !names.insert(slot.name.as_str()) {
                return Err(Error::Vars(format!(
                    "two variables are named `{}`",
                    slot.name
                )));
            }
            if !ids.insert(slot.var.id()) {
                return Err(Error::Vars(format!(
                    "variable `{}` is given twice (under another name too)",
                    slot.name
                )));
            }
        }
        let f64_count = slots.iter().filter(|s| s.var.dtype() == DType::F64).count();
        let inner = if f64_count > 0 && f64_count == slots.len() {
            Inner::F64(Core::new(&slots, &config)?)
        } else if f64_count > 0 {
            return Err(Error::Vars(
                "f64 variables mixed with other float types: one optimizer steps them all in one \
                 element type; convert them to one type or use two optimizers"
                    .into(),
            ));
        } else {
            Inner::F32(Core::new(&slots, &config)?)
        };
        Ok(CandleOptimizer {
            slots,
            inner,
            config,
            steps: 0,
            pending: None,
            copied: 0,
        })
    }

    /// An optimizer for every variable of `varmap`, named by their `VarMap` names (in name
    /// order), so that groups, partitions and checkpoints can refer to them.
    pub fn from_varmap(varmap: &VarMap, config: Config) -> Result<Self> {
        let mut vars: Vec<(String, Var)> = {
            let data = varmap
                .data()
                .lock()
                .map_err(|_| Error::Vars("the VarMap's lock is poisoned".into()))?;
            data.iter().map(|(n, v)| (n.clone(), v.clone())).collect()
        };
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Self::from_named(vars, config)
    }

    /// The names our optimizer knows the variables by, in order (`"0"`, `"1"`, ... for
    /// variables given by position).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.name.as_str())
    }

    /// One step from candle's gradients (see [`candle_nn::Optimizer::step`]). Variables
    /// without a gradient are left as they are, with their state. On error nothing has
    /// changed: no variable, no state, not the learning rate.
    pub fn try_step(&mut self, grads: &GradStore) -> Result<()> {
        if let Some(e) = self.pending.clone() {
            return Err(e.into());
        }
        let (slots, config, steps) = (&self.slots, &self.config, self.steps);
        self.copied = with_core!(&mut self.inner, core => core.step(slots, config, steps, grads))?;
        self.steps += 1;
        Ok(())
    }

    /// How many tensors (variables and gradients) the last successful step copied in (and,
    /// for variables, out) instead of stepping them in their own storage: 0 for contiguous
    /// CPU variables of the optimizer's element type.
    pub fn copied_last_step(&self) -> usize {
        self.copied
    }

    /// Sets the base learning rate (`"lr"`; for a `partition`, every route's).
    pub fn try_set_learning_rate(&mut self, lr: f64) -> Result<()> {
        self.set_hyper("lr", HyperValue::Float(lr))?;
        self.pending = None;
        Ok(())
    }

    /// Hyperparameter `name` (see [`Optimizer::hyper`]).
    pub fn hyper(&self, name: &str) -> Result<HyperValue> {
        Ok(with_core!(&self.inner, core => core.opt.hyper(name))?)
    }

    /// Sets hyperparameter `name` (see [`Optimizer::set_hyper`]).
    pub fn set_hyper(&mut self, name: &str, value: HyperValue) -> Result<()> {
        Ok(with_core!(&mut self.inner, core => core.opt.set_hyper(name, value))?)
    }

    /// Adds a parameter group (see [`Optimizer::add_group`]).
    pub fn add_group(&mut self, group: Group) -> Result<()> {
        Ok(with_core!(&mut self.inner, core => core.opt.add_group(group))?)
    }

    /// Sets the non-finite policy (see [`Optimizer::set_non_finite_policy`]).
    pub fn set_non_finite_policy(&mut self, policy: NonFinitePolicy) -> Result<()> {
        Ok(with_core!(&mut self.inner, core => core.opt.set_non_finite_policy(policy))?)
    }

    /// Variables the last step skipped for a non-finite gradient.
    pub fn skipped(&self) -> &[String] {
        with_core!(&self.inner, core => core.opt.skipped())
    }

    /// Steps taken by variable `name` (`None` before its first).
    pub fn step_count(&self, name: &str) -> Option<u64> {
        with_core!(&self.inner, core => core.opt.step_count(name))
    }

    /// Successful steps taken by this adapter (what a schedule is evaluated at).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The whole optimizer state (see [`Optimizer::export_state`]).
    pub fn export_state(&self) -> OptimizerState {
        with_core!(&self.inner, core => core.opt.export_state())
    }

    /// Replaces the whole state, after checking all of it against the variables' names and
    /// shapes; on error nothing changes.
    pub fn import_state(&mut self, state: &OptimizerState) -> Result<()> {
        let slots = &self.slots;
        with_core!(&mut self.inner, core => {
            let shapes = shaped_like(slots)?;
            core.opt.import_state(state, &shapes)?;
        });
        self.steps = state.step;
        Ok(())
    }

    /// Saves the whole optimizer state to a checkpoint file, atomically
    /// ([`optim_core::checkpoint`]).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        optim_core::checkpoint::save_checkpoint(path, &self.export_state())?;
        Ok(())
    }

    /// Loads a checkpoint saved by [`CandleOptimizer::save`] (variables are restored with
    /// the model, e.g. `VarMap::load`); everything is checked first, and on error nothing
    /// changes.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let state = optim_core::checkpoint::load_checkpoint(path)?;
        self.import_state(&state)
    }
}

/// Parameters with the variables' names and shapes (zeros), for checking imported state.
fn shaped_like<T: optim_core::Scalar>(slots: &[Slot]) -> Result<Params<T>> {
    let mut params = Params::new();
    for slot in slots {
        params.insert(slot.name.clone(), ArrayD::<T>::zeros(slot.var.dims()))?;
    }
    Ok(params)
}

impl<T: CandleElem + BuildFor> Core<T> {
    fn new(slots: &[Slot], config: &Config) -> Result<Self> {
        let mut params = Params::new();
        for slot in slots {
            params.insert(slot.name.clone(), placeholder::<T>())?;
        }
        Ok(Core {
            opt: config.build::<T>()?,
            params,
            grads: Grads::new(),
            with_grad: Vec::new(),
        })
    }

    fn step(
        &mut self,
        slots: &[Slot],
        config: &Config,
        steps: u64,
        store: &GradStore,
    ) -> Result<usize> {
        // Which variables have a gradient; the gradient set is rebuilt only when that changes.
        let grads: Vec<(usize, &Tensor)> = slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| store.get(s.var.as_tensor()).map(|g| (i, g)))
            .collect();
        if grads.len() != self.with_grad.len()
            || grads.iter().zip(&self.with_grad).any(|((i, _), j)| i != j)
        {
            self.grads.clear();
            for &(i, _) in &grads {
                self.grads
                    .insert(slots[i].name.as_str(), placeholder::<T>());
            }
            self.with_grad = grads.iter().map(|(i, _)| *i).collect();
        }

        // Lend what can be lent (CPU, contiguous, whole storage, type T, storage not shared
        // with another lent tensor: locking one twice would deadlock); copy the rest in.
        let mut seen = HashSet::new();
        let mut loans = Vec::with_capacity(2 * grads.len());
        let mut copied_vars = Vec::new();
        let mut copied_grads = 0;
        for &(i, grad) in &grads {
            let var = slots[i].var.as_tensor();
            match lendable::<T>(var) {
                Some(key) if seen.insert(key) => loans.push(Loan {
                    tensor: var,
                    target: Target::Param(i),
                }),
                _ => {
                    copy_in(var, param_mut(&mut self.params, i)?)?;
                    copied_vars.push(i);
                }
            }
            let name = slots[i].name.as_str();
            if grad.dims() != var.dims() {
                return Err(OptimError::ShapeMismatch {
                    name: name.to_string(),
                    expected: var.dims().to_vec(),
                    got: grad.dims().to_vec(),
                }
                .into());
            }
            match lendable::<T>(grad) {
                Some(key) if seen.insert(key) => loans.push(Loan {
                    tensor: grad,
                    target: Target::Grad(name),
                }),
                _ => match self.grads.get_mut(name) {
                    Some(optim_core::Grad::Dense(buffer)) => {
                        copy_in(grad, buffer)?;
                        copied_grads += 1;
                    }
                    _ => return Err(Error::Vars(format!("no gradient buffer for `{name}`"))),
                },
            }
        }

        let opt = &mut self.opt;
        let mut run = |params: &mut Params<T>, grads: &mut Grads<T>| {
            run_step(opt.as_mut(), config, steps, params, grads)
        };
        let outcome = with_loans(&loans, &mut self.params, &mut self.grads, &mut run);
        let stepped = match outcome {
            Ok(result) => result,
            Err(e) => Err(OptimError::Config(format!("candle in-place step: {e}"))),
        };
        // Copied-in buffers are kept for the next step; lent slots are placeholders again.
        stepped?;
        for &i in &copied_vars {
            copy_out(param(&self.params, i)?, &slots[i].var)?;
        }
        Ok(copied_vars.len() + copied_grads)
    }
}

/// One step of `opt` with the schedule and clipping of `config`; on error, the
/// optimizer (learning rate included) is as it was.
fn run_step<T: optim_core::Scalar>(
    opt: &mut dyn Optimizer<T>,
    config: &Config,
    steps: u64,
    params: &mut Params<T>,
    grads: &mut Grads<T>,
) -> optim_core::Result<()> {
    opt.check(params, grads)?;
    let previous_lr = match config.schedule {
        Some(schedule) => {
            let before = opt.hyper("lr")?;
            schedule.apply(steps, opt)?;
            Some(before)
        }
        None => None,
    };
    if let Some(max_norm) = config.max_grad_norm {
        optim_core::clip::clip_grad_norm(grads, max_norm)?;
    }
    let result = opt.step(params, grads);
    if let (Err(_), Some(lr)) = (&result, previous_lr) {
        opt.set_hyper("lr", lr)?;
    }
    result
}

/// Copies `tensor` (any device, any float type) into `buffer`, reusing it when it already
/// has the shape.
/// Parameter `i` of the buffers built from the variables, one per variable: a miss is a
/// broken invariant, reported rather than a panic.
fn param<T: optim_core::Scalar>(params: &Params<T>, i: usize) -> Result<&ArrayD<T>> {
    params
        .entry(i)
        .map(|(_, a)| a)
        .ok_or_else(|| Error::Vars(format!("internal: no buffer for variable {i}")))
}

/// [`param`], mutably.
fn param_mut<T: optim_core::Scalar>(params: &mut Params<T>, i: usize) -> Result<&mut ArrayD<T>> {
    params
        .entry_mut(i)
        .map(|(_, a)| a)
        .ok_or_else(|| Error::Vars(format!("internal: no buffer for variable {i}")))
}

fn copy_in<T: CandleElem>(tensor: &Tensor, buffer: &mut ArrayD<T>) -> Result<()> {
    let values = tensor
        .flatten_all()?
        .to_dtype(<T as candle_core::WithDType>::DTYPE)?
        .to_vec1::<T>()?;
    if buffer.shape() == tensor.dims() {
        if let Some(slice) = buffer.as_slice_mut() {
            slice.copy_from_slice(&values);
            return Ok(());
        }
    }
    *buffer = ArrayD::from_shape_vec(IxDyn(tensor.dims()), values)
        .map_err(|e| Error::Vars(format!("copying a tensor in: {e}")))?;
    Ok(())
}

/// Writes `values` back into `var` (on its device, in its type).
fn copy_out<T: CandleElem>(values: &ArrayD<T>, var: &Var) -> Result<()> {
    let slice = values
        .as_slice()
        .ok_or_else(|| Error::Vars("a stepped parameter is not contiguous".into()))?;
    let tensor = Tensor::from_slice(slice, var.dims(), var.device())?.to_dtype(var.dtype())?;
    var.set(&tensor)?;
    Ok(())
}

impl candle_nn::Optimizer for CandleOptimizer {
    type Config = Config;

    /// Variables named by position (`"0"`, `"1"`, ...); use
    /// [`CandleOptimizer::from_varmap`] to name them as the model does.
    fn new(vars: Vec<Var>, config: Config) -> candle_core::Result<Self> {
        let named = vars
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect();
        Ok(Self::from_named(named, config)?)
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        Ok(self.try_step(grads)?)
    }

    /// The base `"lr"`; NaN for an optimizer without one (or a partition whose routes
    /// differ).
    fn learning_rate(&self) -> f64 {
        match self.hyper("lr") {
            Ok(HyperValue::Float(lr)) => lr,
            _ => f64::NAN,
        }
    }

    /// Sets the base `"lr"`. candle's signature cannot return an error: an invalid rate
    /// (negative, or an optimizer without `lr`) makes the next step fail, changing nothing,
    /// until a valid rate is set. [`CandleOptimizer::try_set_learning_rate`] returns it.
    fn set_learning_rate(&mut self, lr: f64) {
        if let Err(e) = self.try_set_learning_rate(lr) {
            self.pending = Some(match e {
                Error::Optim(e) => e,
                other => OptimError::Config(other.to_string()),
            });
        }
    }
}
