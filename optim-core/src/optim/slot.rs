//! The state of one parameter: its step count, element-wise states and scalar states;
//! allocation, export, and checked import.

use crate::algorithm::{Algorithm, StateInit, Workspace};
use crate::compact::Q8_BLOCK;
use crate::error::{OptimError, Result};
use crate::optim::table::SlotTable;
use crate::params::Params;
use crate::precision::{StateBuf, StatePrecision};
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
    pub(crate) states: Vec<StateBuf<T>>,
    /// How compactable states are stored (see [`StatePrecision`]).
    pub(crate) precision: StatePrecision,
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
    pub(crate) fn new<A: Algorithm>(a: &A, param: &ArrayD<T>, precision: StatePrecision) -> Self {
        let mut slot = Self::unprepared::<A>(a, param, precision);
        slot.prepare(a, param);
        slot
    }

    /// Like [`Slot::new`] but with no element-wise state allocated yet ([`Slot::prepare`]
    /// and [`Slot::prepare_state`] allocate them).
    pub(crate) fn unprepared<A: Algorithm>(
        a: &A,
        param: &ArrayD<T>,
        precision: StatePrecision,
    ) -> Self {
        Slot {
            shape: param.shape().to_vec(),
            t: 0,
            states: vec![StateBuf::default(); A::STATES.len()],
            precision,
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
                *state = StateBuf::default();
            }
        } else if state.is_empty() && len > 0 {
            *state = match spec.init {
                StateInit::Fill => {
                    let fill = T::from_f64(a.state_fill(i));
                    StateBuf::filled(precision_of(spec, self.precision), spec.qmap(), len, fill)
                }
                StateInit::CopyOfParam => StateBuf::Full(param.iter().copied().collect()),
            };
        }
    }

    /// Frees the states `a` disables (after a hyperparameter change), so that a state
    /// switched off and on again restarts from its initial value.
    pub(crate) fn prune<A: Algorithm>(&mut self, a: &A) {
        for (i, state) in self.states.iter_mut().enumerate() {
            if !a.state_enabled(i, &self.shape) && !state.is_empty() {
                *state = StateBuf::default();
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
    /// A bf16 state is one `BF16` tensor; a q8 state `m` is two, `m.codes` (`U8`, the
    /// state's shape) and `m.scales` (`F32`, one per block of 256).
    pub(crate) fn export<A: Algorithm>(&self, name: &str, a: &A) -> ParamState {
        let mut tensors = Vec::with_capacity(A::STATES.len());
        for (i, spec) in A::STATES.iter().enumerate() {
            if !a.state_enabled(i, &self.shape) {
                continue;
            }
            let len = self.len_of::<A>(i);
            let state = &self.states[i];
            let fresh;
            let state = if state.len() == len {
                state
            } else if spec.init == StateInit::Fill {
                let fill = T::from_f64(a.state_fill(i));
                fresh =
                    StateBuf::filled(precision_of(spec, self.precision), spec.qmap(), len, fill);
                &fresh
            } else {
                continue; // a copy of the parameter, made at its next step
            };
            let shape = spec.shape.shape_for(&self.shape);
            let name = spec.name.to_string();
            match state {
                StateBuf::Full(v) => tensors.push(TensorState {
                    name,
                    shape,
                    data: to_data(v),
                }),
                StateBuf::Bf16(bits) => tensors.push(TensorState {
                    name,
                    shape,
                    data: TensorData::Bf16(bits.clone()),
                }),
                StateBuf::Q8 { codes, scales, .. } => {
                    tensors.push(TensorState {
                        name: format!("{name}{CODES}"),
                        shape,
                        data: TensorData::U8(codes.clone()),
                    });
                    tensors.push(TensorState {
                        name: format!("{name}{SCALES}"),
                        shape: vec![scales.len()],
                        data: TensorData::F32(scales.clone()),
                    });
                }
            }
        }
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

    /// Checks `saved` against `param`, the states `a` enables and the precision
    /// `precision` keeps them in, and builds the slot.
    fn import<A: Algorithm>(
        saved: &ParamState,
        param: &ArrayD<T>,
        a: &A,
        precision: StatePrecision,
    ) -> Result<Self> {
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
        // The saved tensors of each state: its values, or its codes and scales.
        let mut parts: Vec<[Option<&TensorState>; 3]> = vec![[None; 3]; A::STATES.len()];
        for tensor in &saved.tensors {
            let n = tensor.name.as_str();
            let (base, part) = if let Some(b) = n.strip_suffix(CODES) {
                (b, 1)
            } else if let Some(b) = n.strip_suffix(SCALES) {
                (b, 2)
            } else {
                (n, 0)
            };
            let Some(i) = A::STATES.iter().position(|s| s.name == base) else {
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
            if parts[i][part].replace(tensor).is_some() {
                return Err(bad(format!("state tensor `{n}` appears twice")));
            }
        }
        let mut out = Vec::with_capacity(parts.len());
        for (i, part) in parts.into_iter().enumerate() {
            let spec = &A::STATES[i];
            let want = spec.shape.shape_for(param.shape());
            let len: usize = want.iter().product();
            let expected = precision_of(spec, precision).storage_for(len);
            let buf = match part {
                [None, None, None] => {
                    match () {
                        // A copy of the parameter whose `#[when]` was switched on since the
                        // last step is not made yet, so export leaves it out (it has no
                        // parameter to copy); left unmade here too, the next step copies
                        // it, as it would have.
                        _ if spec.init == StateInit::CopyOfParam && spec.when.is_some() => {}
                        _ if a.state_enabled(i, param.shape()) => {
                            return Err(bad(format!("state tensor `{}` is missing", spec.name)))
                        }
                        _ => {}
                    }
                    StateBuf::default()
                }
                [Some(t), None, None] => {
                    check_shape(&bad, t, &want, param.shape())?;
                    match &t.data {
                        TensorData::Bf16(bits) => StateBuf::Bf16(bits.clone()),
                        data if data.dtype() == T::DTYPE => StateBuf::Full(from_data(data)),
                        data if expected == StatePrecision::Full => {
                            return Err(OptimError::DTypeMismatch {
                                name: p.clone(),
                                expected: T::DTYPE,
                                saved: data.dtype(),
                            })
                        }
                        data => {
                            return Err(bad(format!(
                                "state tensor `{}` is saved as {}, not as this optimizer's {} \
                                 state",
                                spec.name,
                                data.dtype(),
                                expected
                            )))
                        }
                    }
                }
                [None, Some(c), Some(sc)] => {
                    check_shape(&bad, c, &want, param.shape())?;
                    let blocks = len.div_ceil(Q8_BLOCK);
                    let (TensorData::U8(codes), TensorData::F32(scales)) = (&c.data, &sc.data)
                    else {
                        return Err(bad(format!(
                            "q8 state `{}` needs U8 codes and F32 scales, found {} and {}",
                            spec.name,
                            c.data.dtype(),
                            sc.data.dtype()
                        )));
                    };
                    if codes.len() != len || sc.shape != [blocks] || scales.len() != blocks {
                        return Err(bad(format!(
                            "q8 state `{}` has {} codes and scales of shape {:?}; its shape \
                             {want:?} needs {len} codes and {blocks} scales",
                            spec.name,
                            codes.len(),
                            sc.shape
                        )));
                    }
                    if let Some(x) = scales.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
                        return Err(bad(format!(
                            "q8 state `{}` has scale {x}; scales are finite and positive",
                            spec.name
                        )));
                    }
                    StateBuf::Q8 {
                        codes: codes.clone(),
                        scales: scales.clone(),
                        map: spec.qmap(),
                    }
                }
                [_, c, _] => {
                    let missing = if c.is_none() { CODES } else { SCALES };
                    return Err(bad(format!(
                        "state `{}` is saved in pieces that do not fit together (`{}{missing}` \
                         is missing or a full copy is saved beside its codes)",
                        spec.name, spec.name
                    )));
                }
            };
            if !buf.is_empty() && buf.precision() != expected {
                return Err(OptimError::StatePrecisionMismatch {
                    name: p.clone(),
                    state: spec.name.to_string(),
                    expected,
                    saved: buf.precision(),
                });
            }
            out.push(buf);
        }
        Ok(Slot {
            shape: param.shape().to_vec(),
            t: saved.step,
            states: out,
            precision,
            scalars: import_scalars::<A>(p, &saved.scalars)?,
            group: None,
            epoch: 0,
            job: None,
            work: Workspace::default(),
        })
    }

    /// Bytes its states occupy, as stored.
    pub(crate) fn state_bytes(&self) -> usize {
        self.states.iter().map(StateBuf::bytes).sum()
    }

    /// Stores every compactable state as `precision` says, converting existing values
    /// (decode, encode); later states are allocated so.
    pub(crate) fn set_precision<A: Algorithm>(&mut self, precision: StatePrecision) {
        self.precision = precision;
        for (spec, state) in A::STATES.iter().zip(&mut self.states) {
            if spec.compactable() && !state.is_empty() {
                *state = state.converted(precision, spec.qmap());
            }
        }
    }
}

/// Suffixes of a q8 state's two exported tensors.
const CODES: &str = ".codes";
const SCALES: &str = ".scales";

/// How `spec` is stored under `precision`: compact only if it is compactable.
fn precision_of(spec: &crate::algorithm::StateSpec, precision: StatePrecision) -> StatePrecision {
    if spec.compactable() {
        precision
    } else {
        StatePrecision::Full
    }
}

/// The error for a saved tensor whose shape is not `want`.
fn check_shape(
    bad: &impl Fn(String) -> OptimError,
    tensor: &TensorState,
    want: &[usize],
    param: &[usize],
) -> Result<()> {
    if tensor.shape == want && tensor.data.len() == want.iter().product::<usize>() {
        return Ok(());
    }
    if tensor.shape != want {
        let need = if want == param {
            String::new()
        } else {
            format!(" (so this state has shape {want:?})")
        };
        return Err(bad(format!(
            "state tensor `{}` has shape {:?}, the parameter has shape {param:?}{need}",
            tensor.name, tensor.shape
        )));
    }
    Err(bad(format!(
        "state tensor `{}` has {} values, its shape {:?} needs {}",
        tensor.name,
        tensor.data.len(),
        tensor.shape,
        want.iter().product::<usize>()
    )))
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
    precision: StatePrecision,
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
        slots.insert(name, Slot::import(state, param, hyper_of(name), precision)?);
    }
    Ok(slots)
}

/// Copies values into exported form, bit for bit.
fn to_data<T: Scalar>(v: &[T]) -> TensorData {
    match T::DTYPE {
        // Exact: the value is an f32 widened to f64.
        DType::F32 => TensorData::F32(v.iter().map(|&x| Scalar::to_f64(x) as f32).collect()),
        _ => TensorData::F64(v.iter().map(|&x| Scalar::to_f64(x)).collect()),
    }
}

/// Copies exported values (already checked to be in `T`'s dtype), bit for bit.
fn from_data<T: Scalar>(d: &TensorData) -> Vec<T> {
    match d {
        TensorData::F32(v) => v.iter().map(|&x| T::from_f64(f64::from(x))).collect(),
        TensorData::F64(v) => v.iter().map(|&x| T::from_f64(x)).collect(),
        TensorData::Bf16(_) | TensorData::U8(_) => Vec::new(),
    }
}
