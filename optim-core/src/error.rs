//! Every way an optimizer call can fail. Each variant says what is wrong and what to fix.

use crate::hyper::{HyperKind, HyperValue, Range};
use crate::scalar::DType;

/// An error from constructing, configuring, stepping or restoring an optimizer.
///
/// A call that returns an error has changed nothing: parameters, state and
/// hyperparameters are exactly as they were before the call.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OptimError {
    /// A hyperparameter name the optimizer does not declare.
    #[error("{optimizer}: unknown hyperparameter `{name}`{}; valid: {}", did_you_mean(suggestion), valid.join(", "))]
    UnknownHyper {
        /// Optimizer name.
        optimizer: String,
        /// The name given.
        name: String,
        /// The closest declared name, if any is close.
        suggestion: Option<String>,
        /// Every declared name.
        valid: Vec<String>,
    },
    /// A hyperparameter value of the wrong kind (a bool for a float, ...).
    #[error("{optimizer}: hyperparameter `{name}` is {expected}, got {got}")]
    HyperKind {
        /// Optimizer name.
        optimizer: String,
        /// Hyperparameter name.
        name: String,
        /// Declared kind.
        expected: HyperKind,
        /// The value given.
        got: HyperValue,
    },
    /// A hyperparameter value outside its declared range.
    #[error("{optimizer}: invalid {name} value {value}: must be in {range}")]
    HyperRange {
        /// Optimizer name.
        optimizer: String,
        /// Hyperparameter name.
        name: String,
        /// The value given.
        value: f64,
        /// The valid range.
        range: Range,
    },
    /// A gradient for a parameter that does not exist.
    #[error("gradient for unknown parameter `{name}`{}", did_you_mean(suggestion))]
    UnknownParam {
        /// The name given.
        name: String,
        /// The closest parameter name, if any is close.
        suggestion: Option<String>,
    },
    /// A gradient (or restored state) whose shape differs from its parameter's.
    #[error("`{name}`: gradient shape {got:?} does not match parameter shape {expected:?}")]
    ShapeMismatch {
        /// Parameter name.
        name: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The shape given.
        got: Vec<usize>,
    },
    /// A sparse-row gradient that is malformed or points outside the parameter.
    #[error("`{name}`: bad sparse gradient: {reason}")]
    BadSparse {
        /// Parameter name.
        name: String,
        /// What is wrong (row out of bounds, values of the wrong length, not 2-D).
        reason: String,
    },
    /// A parameter that no route of a [`crate::Partition`] takes.
    #[error(
        "parameter `{name}` (shape {shape:?}) matches no route of the partition; add a \
         catch-all route (one without a selector) as the last route"
    )]
    UnroutedParam {
        /// Parameter name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// Two parameters with the same name.
    #[error("parameter `{0}` is already present; parameter names must be unique")]
    DuplicateParam(String),
    /// A parameter-group selector that matches nothing, or a malformed group.
    #[error("parameter group: {0}")]
    BadGroup(String),
    /// Restored state that does not fit this optimizer or these parameters.
    #[error("cannot load optimizer state: {0}")]
    BadState(String),
    /// Restored state in another element type.
    #[error(
        "cannot load optimizer state for `{name}`: saved as {saved}, parameters are {expected}"
    )]
    DTypeMismatch {
        /// Parameter name.
        name: String,
        /// The dtype the optimizer runs in.
        expected: DType,
        /// The dtype in the saved state.
        saved: DType,
    },
    /// Saved state kept in another state precision than the optimizer keeps it in.
    #[error(
        "cannot load optimizer state for `{name}`: state `{state}` is saved in {saved} \
         precision, this optimizer keeps it in {expected}; set the optimizer's state precision \
         to {saved} before loading (`set_state_precision`), then to {expected} to convert"
    )]
    StatePrecisionMismatch {
        /// Parameter name.
        name: String,
        /// The state's name.
        state: String,
        /// The precision the optimizer keeps the state in.
        expected: crate::StatePrecision,
        /// The precision in the saved state.
        saved: crate::StatePrecision,
    },
    /// Configuration that cannot be read (registry, config files).
    #[error("config: {0}")]
    Config(String),
    /// Restored state written in another state format version.
    #[error(
        "cannot load optimizer state: state format version {saved}, but this build reads \
         version {supported}"
    )]
    VersionMismatch {
        /// The version in the saved state.
        saved: u32,
        /// The version this build reads and writes ([`crate::STATE_FORMAT_VERSION`]).
        supported: u32,
    },
    /// Restored state that belongs to another optimizer.
    #[error("cannot load optimizer state: the state is for optimizer `{saved}`, not `{expected}`")]
    OptimizerMismatch {
        /// The optimizer named in the saved state.
        saved: String,
        /// The optimizer it is being loaded into.
        expected: String,
    },
    /// A checkpoint file that cannot be written, read or decoded (I/O error, truncated or
    /// corrupt file, entries missing or not described); names the file or entry at fault.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A non-finite gradient value under [`crate::NonFinitePolicy::Error`]; nothing was
    /// changed.
    #[error(
        "`{name}`: gradient element {index} is {value}; nothing was changed \
         (non-finite policy: error)"
    )]
    NonFiniteGrad {
        /// Parameter name.
        name: String,
        /// Row-major index of the first non-finite element in the parameter (for a
        /// sparse-row gradient, the element of the parameter it would update).
        index: usize,
        /// The value (NaN, inf or -inf).
        value: f64,
    },
    /// A step or load that failed on one process of a group (`optim-dist`): every
    /// process of the group returns this same error, and nothing changed on any.
    #[error("rank {rank} of {size}: {message}")]
    Distributed {
        /// The lowest rank that failed.
        rank: usize,
        /// Number of processes in the group.
        size: usize,
        /// That rank's error.
        message: String,
    },
}

fn did_you_mean(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

/// Short for `Result<T, OptimError>`.
pub type Result<T, E = OptimError> = std::result::Result<T, E>;
