//! Exported optimizer state: a plain description any file format can carry.

use crate::hyper::HyperValue;
use crate::partition::RouteSelect;
use crate::scalar::DType;

/// Version of the exported-state layout; bumped on any incompatible change.
pub const STATE_FORMAT_VERSION: u32 = 1;

/// The largest step count restored state may hold: 2^53, the last count the equations'
/// `t` (an `f64`) represents exactly, and far from where counting one more could
/// overflow.
pub const MAX_STEP: u64 = 1 << 53;

/// The values of one tensor, in its element type.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// `f32` elements.
    F32(Vec<f32>),
    /// `f64` elements.
    F64(Vec<f64>),
    /// bfloat16 elements, as their bits (a state kept in bf16).
    Bf16(Vec<u16>),
    /// Bytes (the codes of a state kept in 8 bits).
    U8(Vec<u8>),
}

impl TensorData {
    /// Element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::Bf16(_) => DType::Bf16,
            TensorData::U8(_) => DType::U8,
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::Bf16(v) => v.len(),
            TensorData::U8(v) => v.len(),
        }
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A named tensor in exported state.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorState {
    /// State name (`"m"`, `"v"`, `"slow"`).
    pub name: String,
    /// Shape (the parameter's).
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: TensorData,
}

/// The state of one parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamState {
    /// Parameter name.
    pub param: String,
    /// Steps taken by this parameter (its `t`).
    pub step: u64,
    /// Element-wise states that exist (disabled optional states are absent).
    pub tensors: Vec<TensorState>,
    /// Scalar states by name.
    pub scalars: Vec<(String, f64)>,
}

/// One parameter group as exported: which parameters and which overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupState {
    /// Selector description.
    pub selector: crate::group::Selector,
    /// Hyperparameter overrides.
    pub overrides: Vec<(String, HyperValue)>,
}

/// The whole state of an optimizer.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    /// [`STATE_FORMAT_VERSION`] at export.
    pub format_version: u32,
    /// The optimizer's registry name.
    pub optimizer: String,
    /// Base hyperparameters.
    pub hyper: Vec<(String, HyperValue)>,
    /// Parameter groups (overrides on the base hyperparameters).
    pub groups: Vec<GroupState>,
    /// Optimizer-wide step count (wrappers count whole steps).
    pub step: u64,
    /// Per-parameter state, for every parameter that has taken a step.
    pub params: Vec<ParamState>,
    /// Optimizer-wide scalar states by name (Prodigy's `d`); empty for most optimizers.
    pub globals: Vec<(String, f64)>,
    /// The wrapped optimizer's state (wrappers only).
    pub inner: Option<Box<OptimizerState>>,
    /// A [`crate::Partition`]'s routes, in route order (empty for every other optimizer).
    pub routes: Vec<RouteState>,
}

/// One route of a [`crate::Partition`] as exported: its selector, the parameters fixed to
/// it and its optimizer's whole state.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteState {
    /// Which parameters the route takes (configuration, compared on import).
    pub select: RouteSelect,
    /// The parameters assigned to this route at their first step, sorted by name.
    pub params: Vec<String>,
    /// The route's optimizer's state.
    pub state: OptimizerState,
}
