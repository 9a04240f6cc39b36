//! What `#[optimizer]` generates for each algorithm: the contract between the macro and
//! the runtime. Users never implement this by hand; they write the equations.

use crate::error::Result;
use crate::hyper::{HyperSpec, HyperValue};
use crate::precision::StateBuf;
use crate::scalar::Scalar;

/// How an algorithm treats a sparse-row gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseRule {
    /// Rows not present have gradient zero: the whole parameter is stepped
    /// (the gradient is scattered into a dense buffer first).
    Densify,
    /// Only the rows present are stepped; other rows keep their weights and states
    /// (LazyAdam, `torch.optim.SparseAdam`).
    Lazy,
}

/// Whether the algorithm steps from gradients or is a rule applied around another optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlgorithmKind {
    /// Reads the gradient: a first-order optimizer.
    Optimizer,
    /// Reads no gradient; runs after an inner optimizer's step on every parameter, with
    /// `t` counting the whole optimizer's steps (Lookahead).
    Wrapper,
}

/// How an element-wise state starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StateInit {
    /// Every element the given value (zero, or a hyperparameter resolved by `state_fill`).
    Fill,
    /// A copy of the parameter (Lookahead's slow weights).
    CopyOfParam,
}

/// Where a state's values sit relative to its parameter's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateShape {
    /// One value per element, shaped like the parameter (`State`).
    Elem,
    /// One value per row of the last two dimensions, leading dimensions kept
    /// (`RowState`): shape `[.., R]` for a parameter `[.., R, C]`.
    Row,
    /// One value per column of the last two dimensions, leading dimensions kept
    /// (`ColState`): shape `[.., C]` for a parameter `[.., R, C]`.
    Col,
}

impl StateShape {
    /// The state's shape for a parameter of shape `param` (see [`matrix_dims`] for
    /// parameters of fewer than two dimensions).
    pub fn shape_for(self, param: &[usize]) -> Vec<usize> {
        let (_, cols) = matrix_dims(param);
        let (lead, rows) = match param.len() {
            0 | 1 => (Vec::new(), 1),
            n => (param[..n - 2].to_vec(), param[n - 2]),
        };
        match self {
            StateShape::Elem => param.to_vec(),
            StateShape::Row => lead.into_iter().chain([rows]).collect(),
            StateShape::Col => lead.into_iter().chain([cols]).collect(),
        }
    }

    /// Number of values for a parameter of shape `param` (without allocating).
    pub fn len_for(self, param: &[usize]) -> usize {
        let numel: usize = param.iter().product();
        let (rows, cols) = matrix_dims(param);
        match self {
            StateShape::Elem => numel,
            // Leading dimensions times rows (or columns); 0 if any dimension is 0.
            StateShape::Row if cols > 0 => numel / cols,
            StateShape::Col if rows > 0 => numel / rows,
            StateShape::Row => param[..param.len().saturating_sub(1)].iter().product(),
            StateShape::Col => {
                let lead: usize = param[..param.len().saturating_sub(2)].iter().product();
                lead * cols
            }
        }
    }
}

/// `(rows, cols)` of the last two dimensions of `shape`: a vector of `n` elements is one
/// row of `n` columns, a scalar one row of one column. `rows * cols` times the product of
/// the leading dimensions is the number of elements.
pub fn matrix_dims(shape: &[usize]) -> (usize, usize) {
    match shape.len() {
        0 => (1, 1),
        1 => (1, shape[0]),
        n => (shape[n - 2], shape[n - 1]),
    }
}

/// A state of an algorithm: element-wise (a moment) or factored (rows, columns).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StateSpec {
    /// Name, as written in the equations and in exported state.
    pub name: &'static str,
    /// How it starts.
    pub init: StateInit,
    /// The option it depends on, as written in `#[when(...)]`; `None` if always present.
    pub when: Option<&'static str>,
    /// Element-wise, per row or per column.
    pub shape: StateShape,
    /// Whether the equations keep the state from ever being negative (a second moment):
    /// `#[optimizer]` derives it (the fill value and every assignment are provably
    /// non-negative). Compact storage quantizes such a state with the unsigned map.
    pub never_negative: bool,
}

impl StateSpec {
    /// Whether `precision` applies to this state: element-wise states that start from a
    /// fill value (copies of the parameter and factored states stay full).
    pub fn compactable(&self) -> bool {
        self.shape == StateShape::Elem && self.init == StateInit::Fill
    }

    /// The 8-bit map for this state: unsigned for a state that is never negative.
    pub fn qmap(&self) -> crate::compact::QMap {
        if self.never_negative {
            crate::compact::QMap::Unsigned
        } else {
            crate::compact::QMap::Signed
        }
    }
}

/// Scratch memory of one parameter's kernel: reduction partial sums, matrix buffers.
/// Sized by the generated code on a parameter's first step and reused after, so a
/// steady-state step allocates nothing. Never exported: it holds nothing between steps.
#[derive(Debug)]
pub struct Workspace<T> {
    /// `f64` scratch (partial sums of reductions, per-row and per-column sums).
    pub sums: Vec<f64>,
    /// Scratch arrays in the parameter's precision (matrix-function operands).
    pub bufs: Vec<Vec<T>>,
}

impl<T> Default for Workspace<T> {
    fn default() -> Self {
        Workspace {
            sums: Vec::new(),
            bufs: Vec::new(),
        }
    }
}

impl<T> Clone for Workspace<T> {
    /// An empty workspace: scratch carries nothing from one step to the next.
    fn clone(&self) -> Self {
        Workspace::default()
    }
}

/// A per-parameter scalar state (NAdam's running product of μ).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScalarSpec {
    /// Name, as written in the equations and in exported state.
    pub name: &'static str,
}

/// The gradient as the generated kernel sees it.
#[derive(Clone, Copy, Debug)]
pub enum GradView<'a, T> {
    /// One value per parameter element, in the parameter's memory order.
    Dense(&'a [T]),
    /// Distinct rows (in any order); `values` holds `width` values per row.
    Rows {
        /// Elements per row.
        width: usize,
        /// Row indices, distinct, all in bounds.
        rows: &'a [usize],
        /// `rows.len() * width` values.
        values: &'a [T],
    },
    /// No gradient (wrapper rules).
    None,
}

/// One algorithm, as generated by `#[optimizer]` from its equations. The implementing
/// type holds the hyperparameters (it is the config: `Default`, builder methods, `Debug`).
pub trait Algorithm: Clone + std::fmt::Debug + Default + Send + Sync + 'static {
    /// Registry name (`"adam"`).
    const NAME: &'static str;
    /// The rustdoc written on the definition.
    const DOC: &'static str;
    /// Every hyperparameter, in declaration order (`maximize` included for optimizers).
    const HYPERS: &'static [HyperSpec];
    /// Element-wise states, in declaration order.
    const STATES: &'static [StateSpec];
    /// Per-parameter scalar states, in declaration order.
    const SCALARS: &'static [ScalarSpec];
    /// Sparse-gradient semantics.
    const SPARSE: SparseRule;
    /// Optimizer or wrapper rule.
    const KIND: AlgorithmKind;
    /// Whether each element's update reads only that element of `w`, the gradient and
    /// the element-wise states, besides per-step values and sums over every parameter:
    /// no per-tensor or per-row reduction, no row or column state, no shape value or
    /// shape condition, no matrix function. Then stepping any split of a parameter into
    /// pieces gives the same bits as stepping it whole (what `optim-dist` shards by).
    /// `#[optimizer]` derives it from the equations; `false` is always safe.
    const ELEMENTWISE: bool = false;

    /// The current value of hyperparameter `name` (`None` if not declared).
    fn get_hyper(&self, name: &str) -> Option<HyperValue>;
    /// Sets hyperparameter `name`, checking kind and range; on error nothing changes.
    fn set_hyper(&mut self, name: &str, value: HyperValue) -> Result<()>;
    /// Checks every hyperparameter against its range (after direct field writes).
    fn validate(&self) -> Result<()>;
    /// Whether state `index` exists under the current options for a parameter of shape
    /// `shape` (`#[when(ndim >= 2)]` depends on it).
    fn state_enabled(&self, index: usize, shape: &[usize]) -> bool;
    /// The fill value of element-wise state `index` when its init is [`StateInit::Fill`].
    fn state_fill(&self, index: usize) -> f64;
    /// The initial value of scalar state `index`.
    fn scalar_init(&self, index: usize) -> f64;
    /// Whether the algorithm can step a parameter of shape `shape`; the message says why
    /// not (Muon's matrix functions need 2-D parameters). Checked before any step.
    fn check_shape(&self, shape: &[usize]) -> std::result::Result<(), String> {
        let _ = shape;
        Ok(())
    }
    /// One step of one parameter of shape `shape` at its step count `t` (1 on its first
    /// step).
    ///
    /// `states[i]` has the length its [`StateShape`] gives if state `i` is enabled, else
    /// is empty; element-wise states may be stored compact ([`StateBuf`]), factored
    /// states and copies of the parameter are always [`StateBuf::Full`]. `scalars` holds the scalar states. Per-step values are computed once
    /// here, then one fused pass runs over `w`, the gradient and the states (more passes
    /// when the equations use reductions, each using what the one before computed).
    #[allow(clippy::too_many_arguments)]
    fn step<T: Scalar>(
        &self,
        t: u64,
        shape: &[usize],
        scalars: &mut [f64],
        w: &mut [T],
        grad: GradView<'_, T>,
        states: &mut [StateBuf<T>],
        work: &mut Workspace<T>,
    );
    /// Phases of a step: 1, unless the equations sum over every parameter
    /// (`total_sum`): then each phase runs over every parameter before the next starts,
    /// with the optimizer-wide code ([`Algorithm::global_step`]) in between.
    const PHASES: usize = 1;
    /// Optimizer-wide scalar states (`GlobalState`), in declaration order.
    const GLOBALS: &'static [ScalarSpec] = &[];
    /// Length of the optimizer-wide frame: the global states first, then the values the
    /// optimizer-wide code computes, then the [`Algorithm::SUMS`] sums over every
    /// parameter.
    const FRAME: usize = 0;
    /// Number of sums over every parameter (the frame's last entries).
    const SUMS: usize = 0;
    /// The initial value of global state `index`.
    fn global_init(&self, index: usize) -> f64 {
        let _ = index;
        0.0
    }
    /// The optimizer-wide code that runs once before phase `phase` of a step (the sums
    /// of the phase before are in the frame's last entries).
    fn global_step(&self, phase: usize, frame: &mut [f64]) {
        let _ = (phase, frame);
    }
    /// Phase `phase` of one parameter's step, reading the optimizer-wide `frame` and
    /// writing this parameter's share of each sum over every parameter into `sums`
    /// ([`Algorithm::SUMS`] entries). With one phase it is [`Algorithm::step`].
    #[allow(clippy::too_many_arguments)]
    fn step_phase<T: Scalar>(
        &self,
        phase: usize,
        frame: &[f64],
        sums: &mut [f64],
        t: u64,
        shape: &[usize],
        scalars: &mut [f64],
        w: &mut [T],
        grad: GradView<'_, T>,
        states: &mut [StateBuf<T>],
        work: &mut Workspace<T>,
    ) {
        let _ = (frame, sums);
        if phase == 0 {
            self.step(t, shape, scalars, w, grad, states, work);
        }
    }
    /// Whether the algorithm declares evaluation weights (`#[eval(...)]`) that differ
    /// from the training weights.
    const EVAL: bool = false;
    /// The evaluation weights of one parameter into `out` (same length as `w`): the
    /// declared `#[eval(...)]` expression, or `w` itself.
    fn eval<T: Scalar>(
        &self,
        t: u64,
        shape: &[usize],
        scalars: &[f64],
        w: &[T],
        states: &[StateBuf<T>],
        out: &mut [T],
    ) {
        let _ = (t, shape, scalars, states);
        out.copy_from_slice(w);
    }
}
