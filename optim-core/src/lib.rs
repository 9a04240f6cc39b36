//! # optim-core
//!
//! The runtime that `#[optimizer]`-generated optimizers stand on: named parameters and
//! gradients (dense and sparse rows), parameter groups, lazily allocated per-parameter
//! state with its own step count, typed errors, and state export/import.
//!
//! Everything algorithm-specific is generated (see [`Algorithm`]); [`Optim`] runs any of
//! them through the object-safe [`Optimizer`] trait; [`Wrapped`] applies a wrapper rule
//! (Lookahead) around any optimizer and [`Partition`] gives each set of parameters its
//! own optimizer.

#![warn(missing_docs)]

pub mod algorithm;
pub mod checkpoint;
pub mod clip;
pub mod compact;
pub mod error;
pub mod group;
pub mod hyper;
pub mod kernel;
pub mod matrix;
pub mod nonfinite;
pub mod optim;
pub mod optimizer;
pub mod params;
pub mod partition;
pub mod precision;
pub mod scalar;
pub mod schedule;
pub mod state;
pub mod suggest;
pub mod tree;
pub mod wrapper;

pub use algorithm::{
    matrix_dims, Algorithm, AlgorithmKind, GradView, ScalarSpec, SparseRule, StateInit, StateShape,
    StateSpec, Workspace,
};
pub use error::{OptimError, Result};
pub use group::{Group, Selector};
pub use hyper::{Bound, HyperKind, HyperSpec, HyperValue, Range};
pub use kernel::{num_threads, set_num_threads, Isa};
pub use nonfinite::NonFinitePolicy;
pub use optim::Optim;
pub use optimizer::{Optimizer, SumHook};
pub use params::{Grad, Grads, Params};
pub use partition::{Partition, Route, RouteSelect};
pub use precision::{StateBuf, StatePrecision};
pub use scalar::{DType, Scalar};
pub use state::{
    OptimizerState, ParamState, RouteState, TensorData, TensorState, STATE_FORMAT_VERSION,
};
pub use wrapper::Wrapped;

/// Re-exported for generated code.
#[doc(hidden)]
pub use num_traits;
/// Re-exported for generated code and for callers choosing a pool.
#[doc(hidden)]
pub use rayon;
