//! The state of one parameter: its step count, element-wise states and scalar states;
//! allocation, export, and checked import.

use crate::algorithm::{Algorithm, StateInit, Workspace};
use crate::error::{OptimError, Result};
use crate::optim::table::SlotTable;
use crate::params::Params;
use crate::scalar::{DType, Scalar};
use crate::state::{ParamState, TensorData, TensorState, MAX_STEP};
use ndarray::ArrayD;

/// Per-parameter state, keyed by the parameter's name in its owner.
#[derive(Clone, Debug)]
pub(crate) struct Slot<T> {
    /// The parameter's shape when the state was made.
    pub(crate) shape: Vec<usize>,
    /// Steps taken (0 only between creation and the first step).
    pub(crate) t: u64,
    /// One entry per `A::STATES`; empty when disabled.
    pub(crate) states: Vec<Vec<T>>,
    /// One entry per `A::SCALARS`.
    pub(crate) scalars: Vec<f64>,
    /// Cached group index, valid while `epoch` equals the owner's.
    pub(crate) group: Option<usize>,
    /// The owner's group epoch `group` was computed in.
    pub(crate) epoch: u64,
    /// Within a step: the index of this slot's deferred kernel call (see `Optim::step`).
    pub(crate) job: Option<usize>,
    /// The kernel's scratch memory (not state: never exported).
    pub(crate) work: Workspace<T>,
}

impl<T: Scalar> Slot<T> {
    /// Fresh state for `param` under `a`: enabled states initialised, scalars at their
    /// initial values, step 0.
    pub(crate) fn new<A: Algorithm>(a: &A, param: &ArrayD<T>) -> Self {
        let mut slot = Self::unprepared::<A>(a, param);
        slot.prepare(a, param);
        slot
    }

    /// Like [`Slot::new`] but with no element-wise state allocated yet ([`Slot::prepare`]
    /// and [`Slot::prepare_state`] allocate them).
    pub(crate) fn unprepared<A: Algorithm>(a: &A, param: &ArrayD<T>) -> Self {
        Slot {
            shape: param.shape().to_vec(),
            t: 0,
            states: vec![Vec::new(); A::STATES.len()],
            scalars: (0..A::SCALARS.len()).map(|i| a.scalar_init(i)).collect(),
            group: None,
            epoch: 0,
            job: None,
            work: Workspace::default(),
        }
    }

    /// Number of values of state `i` (the parameter's elements, rows or columns).
    fn len_of<A: Algorithm>(&self, i: usize) -> usize {
        A::STATES
            .get(i)
            .map_or(0, |spec| spec.shape.len_for(&self.shape))
    }

    /// Makes the states match what `a` enables: allocates enabled states that are missing
    /// (a `Fill` state at its fill value, a `CopyOfParam` state as a copy of `param`) and
    /// frees disabled ones. Allocates nothing when nothing changed.
    pub(crate) fn prepare<A: Algorithm>(&mut self, a: &A, param: &ArrayD<T>) {
        for i in 0..A::STATES.len() {
            self.prepare_state(i, a, param);
        }
    }

    /// [`Slot::prepare`] for the state `i` only.
    pub(crate) fn prepare_state<A: Algorithm>(&mut self, i: usize, a: &A, param: &ArrayD<T>) {
        let len = self.len_of::<A>(i);
        let (Some(spec), Some(state)) = (A::STATES.get(i), self.states.get_mut(i)) else {
            return;
        };
        if !a.state_enabled(i, &self.shape) {
            if !state.is_empty() {
                *state = Vec::new();
            }
        } else if state.is_empty() && len > 0 {
            *state = match spec.init {
                StateInit::Fill => vec![T::from_f64(a.state_fill(i)); len],
                StateInit::CopyOfParam => param.iter().copied().collect(),
            };
        }
    }

    /// Frees the states `a` disables (after a hyperparameter change), so that a state
    /// switched off and on again restarts from its initial value.
    pub(crate) fn prune<A: Algorithm>(&mut self, a: &A) {
        for (i, state) in self.states.iter_mut().enumerate() {
            if !a.state_enabled(i, &self.shape) && !state.is_empty() {
                *state = Vec::new();
            }
        }
    }

    /// The error for a parameter whose shape changed since its state was made.
    pub(crate) fn check_shape(&self, name: &str, param: &ArrayD<T>) -> Result<()> {
        if param.shape() == self.shape.as_slice() {
            return Ok(());
        }
        Err(OptimError::BadState(format!(
            "`{name}` has shape {:?} but its optimizer state has shape {:?}; \
             a parameter keeps its shape once it has state",
            param.shape(),
            self.shape
        )))
    }

    /// The exported form: every state `a` enables (an enabled `Fill` state not allocated
    /// yet is exported at its fill value, as the next step would allocate it; an enabled
    /// copy of the parameter not made yet is left out, and [`Slot::import`] takes it so).
    pub(crate) fn export<A: Algorithm>(&self, name: &str, a: &A) -> ParamState {
        let tensors = A::STATES
            .iter()
            .enumerate()
            .filter(|&(i, _)| a.state_enabled(i, &self.shape))
            .filter_map(|(i, spec)| {
                let len = self.len_of::<A>(i);
                let state = &self.states[i];
                let data = if state.len() == len {
                    to_data(state)
                } else if spec.init == StateInit::Fill {
                    to_data(&vec![T::from_f64(a.state_fill(i)); len])
                } else {
                    return None; // a copy of the parameter, made at its next step
                };
                Some(TensorState {
                    name: spec.name.to_string(),
                    shape: spec.shape.shape_for(&self.shape),
                    data,
                })
            })
            .collect();
        let scalars = A::SCALARS
            .iter()
            .zip(&self.scalars)
            .map(|(spec, &x)| (spec.name.to_string(), x))
            .collect();
        ParamState {
            param: name.to_string(),
            step: self.t,
            tensors,
            scalars,
        }
    }

    /// Checks `saved` against `param` and the states `a` enables, and builds the slot.
    fn import<A: Algorithm>(saved: &ParamState, param: &ArrayD<T>, a: &A) -> Result<Self> {
        let p = &saved.param;
        let bad = |msg: String| OptimError::BadState(format!("`{p}`: {msg}"));
        if saved.step == 0 {
            return Err(bad(
                "step 0, but saved state belongs to a parameter that has \
                 taken at least one step"
                    .into(),
            ));
        }
        if saved.step > MAX_STEP {
            return Err(bad(format!(
                "step {} is beyond 2^53, the largest step count `t` holds exactly",
                saved.step
            )));
        }
        let mut states: Vec<Option<Vec<T>>> = vec![None; A::STATES.len()];
        for tensor in &saved.tensors {
            let n = &tensor.name;
            let Some(i) = A::STATES.iter().position(|s| s.name == *n) else {
                let valid: Vec<_> = A::STATES.iter().map(|s| s.name).collect();
                return Err(bad(format!(
                    "unknown state tensor `{n}`; {} has: {}",
                    A::NAME,
                    valid.join(", ")
                )));
            };
            if !a.state_enabled(i, param.shape()) {
                return Err(bad(format!(
                    "state tensor `{n}` is saved but disabled under the saved hyperparameters"
                )));
            }
            let want = A::STATES[i].shape.shape_for(param.shape());
            if states[i].is_some() {
                return Err(bad(format!("state tensor `{n}` appears twice")));
            }
            if tensor.shape != want {
                let need = if want == param.shape() {
                    String::new()
                } else {
                    format!(" (so this state has shape {want:?})")
                };
                return Err(bad(format!(
                    "state tensor `{n}` has shape {:?}, the parameter has shape {:?}{need}",
                    tensor.shape,
                    param.shape()
                )));
            }
            if tensor.data.dtype() != T::DTYPE {
                return Err(OptimError::DTypeMismatch {
                    name: p.clone(),
                    expected: T::DTYPE,
                    saved: tensor.data.dtype(),
                });
            }
            let values: usize = want.iter().product();
            if tensor.data.len() != values {
                return Err(bad(format!(
                    "state tensor `{n}` has {} values, its shape {:?} needs {values}",
                    tensor.data.len(),
                    tensor.shape,
                )));
            }
            states[i] = Some(from_data(&tensor.data));
        }
        let mut out = Vec::with_capacity(states.len());
        for (i, state) in states.into_iter().enumerate() {
            let spec = &A::STATES[i];
            match state {
                Some(s) => out.push(s),
                // A copy of the parameter whose `#[when]` was switched on since the last
                // step is not made yet, so export leaves it out (it has no parameter to
                // copy); left unmade here too, the next step copies it, as it would have.
                None if spec.init == StateInit::CopyOfParam && spec.when.is_some() => {
                    out.push(Vec::new())
                }
                None if a.state_enabled(i, param.shape()) => {
                    return Err(bad(format!(
                        "state tensor `{}` is missing",
                        A::STATES[i].name
                    )))
                }
                None => out.push(Vec::new()),
            }
        }
        Ok(Slot {
            shape: param.shape().to_vec(),
            t: saved.step,
            states: out,
            scalars: import_scalars::<A>(p, &saved.scalars)?,
            group: None,
            epoch: 0,
            job: None,
            work: Workspace::default(),
        })
    }
}

/// Scalar states by name, exactly the declared ones, in declaration order.
fn import_scalars<A: Algorithm>(p: &str, saved: &[(String, f64)]) -> Result<Vec<f64>> {
    let bad = |msg: String| OptimError::BadState(format!("`{p}`: {msg}"));
    let mut out: Vec<Option<f64>> = vec![None; A::SCALARS.len()];
    for (name, x) in saved {
        let Some(i) = A::SCALARS.iter().position(|s| s.name == *name) else {
            return Err(bad(format!("unknown scalar state `{name}`")));
        };
        if out[i].replace(*x).is_some() {
            return Err(bad(format!("scalar state `{name}` appears twice")));
        }
    }
    out.into_iter()
        .zip(A::SCALARS)
        .map(|(x, spec)| x.ok_or_else(|| bad(format!("scalar state `{}` is missing", spec.name))))
        .collect()
}

/// Checks every saved parameter state and builds the new state map; nothing is changed
/// on error. `hyper_of(name)` gives the hyperparameters a parameter runs under.
pub(crate) fn import_all<'a, A: Algorithm, T: Scalar>(
    saved: &[ParamState],
    params: &Params<T>,
    hyper_of: impl Fn(&str) -> &'a A,
) -> Result<SlotTable<T>> {
    let mut slots = SlotTable::default();
    for state in saved {
        let name = state.param.as_str();
        let Some(param) = params.get(name) else {
            let hint = match crate::suggest::closest(name, params.names()) {
                Some(s) => format!(" (did you mean `{s}`?)"),
                None => String::new(),
            };
            return Err(OptimError::BadState(format!(
                "state for parameter `{name}`, which is not among the parameters{hint}"
            )));
        };
        if slots.contains(name) {
            return Err(OptimError::BadState(format!(
                "parameter `{name}` appears twice"
            )));
        }
        slots.insert(name, Slot::import(state, param, hyper_of(name))?);
    }
    Ok(slots)
}

/// Copies values into exported form, bit for bit.
fn to_data<T: Scalar>(v: &[T]) -> TensorData {
    match T::DTYPE {
        // Exact: the value is an f32 widened to f64.
        DType::F32 => TensorData::F32(v.iter().map(|&x| Scalar::to_f64(x) as f32).collect()),
        DType::F64 => TensorData::F64(v.iter().map(|&x| Scalar::to_f64(x)).collect()),
    }
}

/// Copies exported values (already checked to be in `T`'s dtype), bit for bit.
fn from_data<T: Scalar>(d: &TensorData) -> Vec<T> {
    match d {
        TensorData::F32(v) => v.iter().map(|&x| T::from_f64(f64::from(x))).collect(),
        TensorData::F64(v) => v.iter().map(|&x| T::from_f64(x)).collect(),
    }
}
