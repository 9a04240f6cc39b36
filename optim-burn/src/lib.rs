//! # optim-burn
//!
//! Every optimizer of the zoo (and every `#[optimizer]` you write) as a burn 0.22
//! [`burn::optim::Optimizer`]: wrap a [`ZooOptimizer`] in a `ModuleOptimizer` (`.into()`)
//! and train any burn module with it; `ModuleOptimizer`'s `save`/`load`/`into_bytes` carry
//! our state.
//!
//! ```
//! use burn::module::Module;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::optim::{GradientsParams, ModuleOptimizer};
//! use burn::tensor::{Device, Tensor};
//! use optim_burn::ZooOptimizer;
//! use serde_json::json;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Device::flex().autodiff();
//! device.seed(7); // a fixed initialization, so the example runs the same every time
//! let mut model: Linear = LinearConfig::new(2, 1).init(&device);
//! let zoo = ZooOptimizer::json(json!({"optimizer": "adamw", "weight_decay": 0.0}))?;
//! let errors = zoo.errors(); // steps cannot return errors in burn: they are kept here
//! let mut opt: ModuleOptimizer = zoo.into();
//! let x = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
//! let y = Tensor::<2>::from_floats([[1.0], [2.0]], &device);
//! let loss_of = |m: &Linear| (m.forward(x.clone()) - y.clone()).square().mean();
//! let first: f32 = loss_of(&model).into_scalar();
//! for _ in 0..50 {
//!     let grads = GradientsParams::from_grads(loss_of(&model).backward(), &model);
//!     model = opt.step(0.05, model, grads); // burn's learning rate becomes our `lr`
//! }
//! let last: f32 = loss_of(&model).into_scalar();
//! assert!(last < first / 10.0);
//! assert!(errors.take().is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! ## One parameter at a time
//!
//! burn steps each parameter on its own: `Optimizer::step` gets one tensor, its gradient
//! and that parameter's state, and nothing else. So each parameter gets its own instance of
//! the configured optimizer, built at its first step and kept in its burn state, knowing
//! the parameter as `"param"`. What follows:
//!
//! - Element-wise optimizers (SGD, Adam(W), Lion, ...) and per-tensor ones (LAMB, LARS,
//!   NovoGrad, Adafactor, Muon, ...) step exactly as they do on a whole model.
//! - **Sums over all parameters become sums over the one parameter**: Prodigy's `d` (its
//!   `total_sum`s) is estimated per tensor, as if each tensor were trained by its own
//!   Prodigy (tested). Global-norm clipping does not exist at this level: use burn's own
//!   `GradientClipping` (per parameter, as burn does everything) or the candle adapter.
//! - Selection **by name** sees only `"param"`: groups and `partition` routes by
//!   `names`/`name_contains` cannot tell parameters apart (use burn's
//!   `ModuleOptimizer::with_group` with a `ParamGroup` and one `ZooOptimizer` per group);
//!   routes by `ndim` work (Muon for the matrices, AdamW for the rest).
//! - burn passes the learning rate at every step; it becomes our `lr` (for a partition,
//!   every route's). [`ZooOptimizer::keep_config_lr`] ignores it instead, so that routes
//!   keep their own rates.
//!
//! ## Copies
//!
//! On the CPU backends (flex, ndarray), a parameter that no other tensor shares is stepped
//! in its own buffer: `into_data` hands its bytes over without copying, they become the
//! `Vec` our optimizer steps, and `from_data` wraps the same bytes again (pointer identity
//! is tested). A shared, non-contiguous or GPU tensor, or a half-precision one (which steps
//! in `f32`), is copied in and out by burn.
//!
//! ## Errors
//!
//! burn's `step` returns no `Result`. A step that fails (a config that is refused for this
//! parameter, an optimizer without `lr`, a NaN under `NonFinitePolicy::Error`) leaves the
//! parameter and its state exactly as they were and records the error in the shared
//! [`StepErrors`] ([`ZooOptimizer::errors`]); check it after each step.

#![warn(missing_docs)]

use burn::optim::{LearningRate, RecordState, StateSink, StateSource};
use burn::tensor::{DType, Device, Tensor, TensorData};
use ndarray::{ArrayD, IxDyn};
use optim_core::{
    checkpoint, Algorithm, Grad, Grads, HyperValue, NonFinitePolicy, Optim, OptimError, Optimizer,
    Params, Result, Scalar,
};
use optim_zoo::Registry;
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// The name every parameter has inside its own optimizer.
pub const PARAM: &str = "param";

/// The errors of steps that could not be applied (burn's `step` cannot return them).
/// Clones share one list.
#[derive(Clone, Debug, Default)]
pub struct StepErrors(Arc<Mutex<Vec<OptimError>>>);

impl StepErrors {
    /// Takes every error recorded so far, oldest first, leaving none.
    pub fn take(&self) -> Vec<OptimError> {
        match self.0.lock() {
            Ok(mut list) => std::mem::take(&mut *list),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    fn push(&self, error: OptimError) {
        match self.0.lock() {
            Ok(mut list) => list.push(error),
            Err(poisoned) => poisoned.into_inner().push(error),
        }
    }
}

/// A configured optimizer, ready to be cloned for each parameter.
struct Templates {
    f32: Mutex<Box<dyn Optimizer<f32>>>,
    f64: Mutex<Box<dyn Optimizer<f64>>>,
}

/// Any registry optimizer as a burn [`burn::optim::Optimizer`] (see the crate docs).
#[derive(Clone)]
pub struct ZooOptimizer {
    templates: Arc<Templates>,
    errors: StepErrors,
    use_burn_lr: bool,
}

impl std::fmt::Debug for ZooOptimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = lock(&self.templates.f32).name().to_string();
        f.debug_struct("ZooOptimizer")
            .field("optimizer", &name)
            .field("use_burn_lr", &self.use_burn_lr)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ZooOptimizer {
    /// From a registry config (`{"optimizer": "adamw", "weight_decay": 0.01}`), built by
    /// [`Registry::zoo`]; checked now, for both element types.
    pub fn json(config: Value) -> Result<Self> {
        Self::json_in(&Registry::zoo(), config)
    }

    /// From a registry config built by `registry` (the zoo plus your own optimizers).
    pub fn json_in(registry: &Registry, config: Value) -> Result<Self> {
        Self::from_optimizers(registry.build(&config)?, registry.build(&config)?)
    }

    /// From a typed hyperparameter struct (`optim_zoo::Lion::default().lr(1e-4)`).
    pub fn algorithm<A: Algorithm>(hyper: A) -> Result<Self> {
        Self::from_optimizers(
            Box::new(Optim::<A, f32>::new(hyper.clone())?),
            Box::new(Optim::<A, f64>::new(hyper)?),
        )
    }

    /// From two built optimizers, one per element type, with no state yet (each parameter
    /// starts from a copy of the one of its type).
    pub fn from_optimizers(
        f32: Box<dyn Optimizer<f32>>,
        f64: Box<dyn Optimizer<f64>>,
    ) -> Result<Self> {
        if !f32.export_state().params.is_empty() || !f64.export_state().params.is_empty() {
            return Err(OptimError::Config(
                "optim-burn: the template optimizers must not have stepped yet".into(),
            ));
        }
        Ok(ZooOptimizer {
            templates: Arc::new(Templates {
                f32: Mutex::new(f32),
                f64: Mutex::new(f64),
            }),
            errors: StepErrors::default(),
            use_burn_lr: true,
        })
    }

    /// Ignores the learning rate burn passes to each step and keeps the config's (for a
    /// partition whose routes have rates of their own).
    pub fn keep_config_lr(mut self) -> Self {
        self.use_burn_lr = false;
        self
    }

    /// Sets the non-finite policy of every parameter's optimizer.
    pub fn non_finite(self, policy: NonFinitePolicy) -> Result<Self> {
        lock(&self.templates.f32).set_non_finite_policy(policy)?;
        lock(&self.templates.f64).set_non_finite_policy(policy)?;
        Ok(self)
    }

    /// The shared list of errors of steps that could not be applied.
    pub fn errors(&self) -> StepErrors {
        self.errors.clone()
    }
}

/// One parameter's optimizer with the (placeholder) parameter and gradient sets it steps.
struct Core<T: Scalar> {
    opt: Box<dyn Optimizer<T>>,
    params: Params<T>,
    grads: Grads<T>,
}

impl<T: Scalar> Clone for Core<T> {
    fn clone(&self) -> Self {
        Core {
            opt: self.opt.boxed_clone(),
            params: self.params.clone(),
            grads: self.grads.clone(),
        }
    }
}

impl<T: Scalar> Core<T> {
    fn new(opt: Box<dyn Optimizer<T>>) -> Result<Self> {
        let params = Params::new().with(PARAM, placeholder::<T>())?;
        let grads = Grads::new().with(PARAM, placeholder::<T>());
        Ok(Core { opt, params, grads })
    }
}

/// Stands in for the parameter and its gradient between steps (allocates nothing).
fn placeholder<T: Scalar>() -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(&[0]), Vec::new()).expect("an empty array of shape [0]")
}

enum Either {
    F32(Core<f32>),
    F64(Core<f64>),
    /// Loaded from a record, imported into a copy of the configured optimizer at the
    /// parameter's next step (a state alone cannot rebuild the optimizer: your config and
    /// registry can).
    Loaded {
        state: optim_core::OptimizerState,
        is_f64: bool,
    },
}

impl Clone for Either {
    fn clone(&self) -> Self {
        match self {
            Either::F32(c) => Either::F32(c.clone()),
            Either::F64(c) => Either::F64(c.clone()),
            Either::Loaded { state, is_f64 } => Either::Loaded {
                state: state.clone(),
                is_f64: *is_f64,
            },
        }
    }
}

impl Either {
    fn export(&self) -> (optim_core::OptimizerState, bool) {
        match self {
            Either::F32(c) => (c.opt.export_state(), false),
            Either::F64(c) => (c.opt.export_state(), true),
            Either::Loaded { state, is_f64 } => (state.clone(), *is_f64),
        }
    }
}

/// One parameter's state in burn: its own optimizer instance (see the crate docs).
pub struct ZooState<const D: usize> {
    inner: Mutex<Either>,
    shape: [usize; D],
}

impl<const D: usize> Clone for ZooState<D> {
    fn clone(&self) -> Self {
        ZooState {
            inner: Mutex::new(lock(&self.inner).clone()),
            shape: self.shape,
        }
    }
}

impl<const D: usize> ZooState<D> {
    /// The parameter's optimizer state (as [`Optimizer::export_state`] gives it).
    pub fn export_state(&self) -> optim_core::OptimizerState {
        lock(&self.inner).export().0
    }
}

/// The record leaves of a state: the parameter's optimizer state as one checkpoint blob
/// (safetensors bytes, checked in full on load), its element type and its shape.
const BLOB: &str = "optim_checkpoint";
const SHAPE: &str = "optim_shape";
const IS_F64: &str = "optim_f64";

impl<const D: usize> RecordState for ZooState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        let (state, is_f64) = lock(&self.inner).export();
        // An exported state always encodes (its tensors fill their shapes); a state that
        // did not would be left out of the record, and the parameter restarts on load.
        if let Ok(bytes) = checkpoint::to_bytes(&state) {
            let len = bytes.len();
            out.push_tensor(prefix, BLOB, TensorData::new(bytes, [len]));
            let shape: Vec<i64> = self.shape.iter().map(|&d| d as i64).collect();
            out.push_tensor(prefix, SHAPE, TensorData::new(shape, [D]));
            out.push_scalar(prefix, IS_F64, is_f64.into());
        }
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, _device: &Device) -> Option<Self> {
        let blob = src.take_tensor(prefix, BLOB)?;
        let shape = src.take_tensor(prefix, SHAPE)?;
        let is_f64 = bool::try_from(src.take_scalar(prefix, IS_F64)?).ok()?;
        let shape: Vec<usize> = shape
            .as_slice::<i64>()
            .ok()?
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<_>>()?;
        let shape: [usize; D] = shape.try_into().ok()?;
        let state = checkpoint::from_bytes(blob.as_slice::<u8>().ok()?).ok()?;
        Some(ZooState {
            inner: Mutex::new(Either::Loaded { state, is_f64 }),
            shape,
        })
    }
}

impl ZooOptimizer {
    /// A new parameter's optimizer: a copy of the configured one, of the parameter's type.
    fn fresh(&self, is_f64: bool) -> Result<Either> {
        Ok(if is_f64 {
            Either::F64(Core::new(lock(&self.templates.f64).boxed_clone())?)
        } else {
            Either::F32(Core::new(lock(&self.templates.f32).boxed_clone())?)
        })
    }

    /// A loaded parameter's optimizer: a copy of the configured one with `state` imported
    /// (checked in full against the optimizer and the parameter's shape).
    fn imported(
        &self,
        state: &optim_core::OptimizerState,
        is_f64: bool,
        shape: &[usize],
    ) -> Result<Either> {
        let mut ready = self.fresh(is_f64)?;
        match &mut ready {
            Either::F32(core) => import(core, state, shape)?,
            Either::F64(core) => import(core, state, shape)?,
            Either::Loaded { .. } => unreachable!("fresh is never Loaded"),
        }
        Ok(ready)
    }
}

fn import<T: Scalar>(
    core: &mut Core<T>,
    state: &optim_core::OptimizerState,
    shape: &[usize],
) -> Result<()> {
    let params = Params::new().with(PARAM, ArrayD::<T>::zeros(IxDyn(shape)))?;
    core.opt.import_state(state, &params)
}

impl burn::optim::Optimizer for ZooOptimizer {
    type State<const D: usize> = ZooState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<ZooState<D>>,
    ) -> (Tensor<D>, Option<ZooState<D>>) {
        let shape: [usize; D] = tensor.dims();
        let state = match state {
            Some(s) if s.shape == shape => s,
            Some(s) => {
                self.errors.push(OptimError::ShapeMismatch {
                    name: PARAM.into(),
                    expected: s.shape.to_vec(),
                    got: shape.to_vec(),
                });
                return (tensor, Some(s));
            }
            None => match self.fresh(tensor.dtype() == DType::F64) {
                Ok(inner) => ZooState {
                    inner: Mutex::new(inner),
                    shape,
                },
                Err(e) => {
                    self.errors.push(e);
                    return (tensor, None);
                }
            },
        };
        let mut inner = match state.inner.into_inner() {
            Ok(i) => i,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Either::Loaded { state, is_f64 } = &inner {
            match self.imported(state, *is_f64, &shape) {
                Ok(ready) => inner = ready,
                Err(e) => {
                    // Nothing changes: the parameter, and its loaded state for another try.
                    self.errors.push(e);
                    let state = ZooState {
                        inner: Mutex::new(inner),
                        shape,
                    };
                    return (tensor, Some(state));
                }
            }
        }
        let lr = self.use_burn_lr.then_some(lr);
        let (tensor, result) = match &mut inner {
            Either::F32(core) => step_core(core, lr, tensor, grad),
            Either::F64(core) => step_core(core, lr, tensor, grad),
            Either::Loaded { .. } => unreachable!("imported above"),
        };
        if let Err(e) = result {
            self.errors.push(e);
        }
        (
            tensor,
            Some(ZooState {
                inner: Mutex::new(inner),
                shape,
            }),
        )
    }

    fn to_device<const D: usize>(state: ZooState<D>, _device: &Device) -> ZooState<D> {
        // The state lives in our host buffers whatever the parameter's device.
        state
    }
}

/// An element type a burn tensor can hand over as a `Vec` (f32, f64).
trait BurnElem: Scalar + burn::tensor::Element {}
impl BurnElem for f32 {}
impl BurnElem for f64 {}

/// Steps one parameter: its bytes become our array (no copy when burn hands them over),
/// the optimizer steps it, and the same bytes go back into a tensor. On error the values
/// go back unchanged (the optimizer checks before it changes anything).
fn step_core<T: BurnElem, const D: usize>(
    core: &mut Core<T>,
    lr: Option<LearningRate>,
    tensor: Tensor<D>,
    grad: Tensor<D>,
) -> (Tensor<D>, Result<()>) {
    let device = tensor.device();
    let dtype = tensor.dtype();
    let shape: [usize; D] = tensor.dims();
    let values = take_vec::<T, D>(tensor);
    let grad_values = take_vec::<T, D>(grad);
    let dims = IxDyn(&shape);
    let (Ok(w), Ok(g)) = (
        ArrayD::from_shape_vec(dims.clone(), values),
        ArrayD::from_shape_vec(dims, grad_values),
    ) else {
        unreachable!("burn's data has as many elements as its shape");
    };
    // The core holds exactly its one parameter, under PARAM, from construction on.
    if let Some(slot) = core.params.get_mut(PARAM) {
        *slot = w;
    }
    if let Some(Grad::Dense(slot)) = core.grads.get_mut(PARAM) {
        *slot = g;
    }
    let result = match lr {
        Some(lr) => core.opt.set_hyper("lr", HyperValue::Float(lr)),
        None => Ok(()),
    }
    .and_then(|()| core.opt.step(&mut core.params, &core.grads));
    let w = core
        .params
        .get_mut(PARAM)
        .map_or_else(placeholder::<T>, |slot| {
            std::mem::replace(slot, placeholder::<T>())
        });
    if let Some(Grad::Dense(slot)) = core.grads.get_mut(PARAM) {
        *slot = placeholder::<T>();
    }
    let (values, _) = w.into_raw_vec_and_offset();
    let data = TensorData::new(values, shape);
    let mut tensor = Tensor::<D>::from_data(data, &device);
    if tensor.dtype() != dtype {
        tensor = tensor.cast(dtype);
    }
    (tensor, result)
}

/// The tensor's values as a `Vec<T>`: burn's own buffer when it can hand it over (a
/// contiguous CPU tensor of type `T` that nothing else shares), else a converted copy.
fn take_vec<T: BurnElem, const D: usize>(tensor: Tensor<D>) -> Vec<T> {
    let data = if tensor.dtype() == T::dtype() {
        tensor.into_data()
    } else {
        tensor.cast(T::dtype()).into_data()
    };
    match data.try_into_vec::<T>() {
        Ok(v) => v,
        Err(e) => unreachable!("the data was cast to {:?}: {e:?}", T::dtype()),
    }
}
