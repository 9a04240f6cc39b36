//! ZeRO stage 1: each rank keeps and updates the optimizer state of its shard only.

use crate::comm::{all_gather_bytes, Buf, BufMut, Comm, Wire};
use crate::layout::{Fnv, Layout, ShardRule};
use ndarray::{ArrayD, IxDyn};
use optim_core::checkpoint;
use optim_core::state::{ParamState, TensorData, TensorState};
use optim_core::{
    Grad, Grads, Group, HyperSpec, HyperValue, NonFinitePolicy, OptimError, Optimizer,
    OptimizerState, Params, Result, RouteState, Scalar, SumHook, STATE_FORMAT_VERSION,
};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A state checked and loaded into a copy, ready to replace the optimizer's own: the
/// layout, the shard's parameters, the inner optimizer and the step counts.
type Prepared<T> = (Layout, Params<T>, Box<dyn Optimizer<T>>, Vec<Option<u64>>);

/// The `optimizer` name of a shard's exported state ([`Sharded::export_state`]).
pub const SHARD_STATE: &str = "zero1";

/// An optimizer whose state is sharded over the ranks of a [`Comm`] (ZeRO stage 1,
/// Rajbhandari et al., 2019), around any [`Optimizer`]: every rank holds all the
/// parameters, each keeps and updates the state of its shard only.
///
/// Every rank calls [`Optimizer::step`] with the same parameters and its own gradients
/// `g_r` (of its part of the global batch). A step, with `N` ranks:
///
/// 1. **checks agree**: each rank checks its gradients (names, shapes, sparse rows, the
///    inner optimizer's own conditions) and that its parameters are those of the first
///    step; the ranks exchange the outcome and which parameters have gradients. If any
///    rank fails, every rank returns the same [`OptimError::Distributed`] naming the
///    lowest failing rank, and nothing has changed anywhere;
/// 2. **reduce-scatter**: the gradients, laid out as `N` blocks of `B` elements (see
///    [`ShardRule`]), are summed over the ranks, and rank `q` receives its block of the
///    mean `ḡ = (Σ_r g_r) / N` (a sparse-row gradient is made dense first; a parameter
///    without a gradient — on every rank alike — is not stepped);
/// 3. optionally, the mean is clipped to a global norm ([`Sharded::clip_grad_norm`]):
///    `‖ḡ‖² = Σ_q ‖ḡ_q‖²` is all-reduced, then `ḡ ← ḡ · c/(‖ḡ‖ + 10⁻⁶)` when `‖ḡ‖ > c`;
/// 4. the non-finite policy applies to `ḡ`, decided together (a parameter skipped or an
///    error on one rank is so on all);
/// 5. **step**: rank `q` steps the inner optimizer on its shard only, with only its
///    shard's state; an optimizer summing over every parameter (Prodigy's `total_sum`)
///    has its sums all-reduced between phases ([`Optimizer::set_sum_hook`]);
/// 6. **all-gather**: every rank receives every block of updated parameters.
///
/// Steps 2 and 6 move what one all-reduce of the gradients moves (a bandwidth-optimal
/// all-reduce *is* a reduce-scatter then an all-gather): `2·(N−1)/N · N·B` elements per
/// rank. The state held per rank is that of `B` elements at most instead of `N·B`.
///
/// Which rule: [`ShardRule::Flat`] when the inner optimizer is element-wise
/// ([`Optimizer::elementwise`], derived by `#[optimizer]` from the equations: no
/// per-tensor or per-row reduction, no row or column state, no shape value, no matrix
/// function); [`ShardRule::Whole`] otherwise (LAMB, LARS, NovoGrad, Adafactor, CAME,
/// Muon, any `partition`). With `Flat` every parameter ends bit for bit where the
/// unsharded optimizer, stepping `ḡ`, takes it; with `Whole` too; sums over every
/// parameter are added in another order, so Prodigy and clipping agree to rounding.
///
/// Hyperparameters, groups and policies are set on every rank alike (each rank applies
/// its own calls); [`Optimizer::eval_params_into`], [`Optimizer::import_state`] and
/// [`Sharded::consolidated_state`] are collectives: every rank calls them together.
#[derive(Debug)]
pub struct Sharded<T: Wire> {
    inner: Box<dyn Optimizer<T>>,
    /// A copy of the inner optimizer as it was given (no state), to check the whole
    /// parameters' gradients against: the inner one knows only its shard.
    checker: Box<dyn Optimizer<T>>,
    comm: Arc<dyn Comm>,
    rule: ShardRule,
    layout: Option<Layout>,
    /// This rank's pieces of the parameters, named as the parameters: the inner
    /// optimizer's parameters.
    shard: Params<T>,
    shard_grads: Grads<T>,
    /// Which parameters had a gradient in the last step (its `shard_grads`).
    had_grad: Vec<bool>,
    /// `N·B` elements: the gradients sent, then the gathered parameters.
    wide: Vec<T>,
    /// `B` elements: this rank's block of the mean gradient, then of the parameters.
    narrow: Vec<T>,
    /// Steps taken by each parameter of the layout (`None`: none yet).
    counts: Vec<Option<u64>>,
    steps: u64,
    policy: NonFinitePolicy,
    skipped: Vec<String>,
    clip: Option<f64>,
    last_norm: Option<f64>,
    /// A collective that failed inside the sum hook (it cannot return an error).
    hook_error: Arc<Mutex<Option<OptimError>>>,
}

impl<T: Wire> Sharded<T> {
    /// Shards `inner` (which must not have stepped yet: load state with
    /// [`Optimizer::import_state`]) over `comm`'s ranks, with [`ShardRule::Flat`] if
    /// `inner` is element-wise, else [`ShardRule::Whole`].
    ///
    /// Errors if `inner` has state, or sums over every parameter inside a `partition`
    /// route (a route's sums would need their own collectives).
    pub fn new(inner: Box<dyn Optimizer<T>>, comm: Arc<dyn Comm>) -> Result<Self> {
        let rule = if inner.elementwise() {
            ShardRule::Flat
        } else {
            ShardRule::Whole
        };
        Sharded::with_rule(inner, comm, rule)
    }

    /// [`Sharded::new`] with the rule given: `Whole` always works; `Flat` is refused
    /// unless `inner` is element-wise.
    pub fn with_rule(
        mut inner: Box<dyn Optimizer<T>>,
        comm: Arc<dyn Comm>,
        rule: ShardRule,
    ) -> Result<Self> {
        if rule == ShardRule::Flat && !inner.elementwise() {
            return Err(OptimError::Config(format!(
                "{} is not element-wise (a reduction, a row or column state, a shape \
                 condition or a matrix function), so its parameters cannot be split: \
                 shard it with ShardRule::Whole",
                inner.name()
            )));
        }
        if has_state(&inner.export_state()) {
            return Err(OptimError::Config(format!(
                "{} has already stepped; shard a new optimizer and load the state into the \
                 sharded one (import_state or checkpoint::load_into)",
                inner.name()
            )));
        }
        inner.set_non_finite_policy(NonFinitePolicy::Propagate)?;
        let checker = inner.boxed_clone();
        let hook_error = Arc::new(Mutex::new(None));
        install_hook(inner.as_mut(), &comm, &hook_error)?;
        Ok(Sharded {
            inner,
            checker,
            comm,
            rule,
            layout: None,
            shard: Params::new(),
            shard_grads: Grads::new(),
            had_grad: Vec::new(),
            wide: Vec::new(),
            narrow: Vec::new(),
            counts: Vec::new(),
            steps: 0,
            policy: NonFinitePolicy::Propagate,
            skipped: Vec::new(),
            clip: None,
            last_norm: None,
            hook_error,
        })
    }

    /// Clips the mean gradient to global L2 norm `max_norm` at every step (as
    /// [`optim_core::clip::clip_grad_norm`] does to unsharded gradients, whose norm it
    /// would need whole); `None` turns it off. Errors if `max_norm` is negative or not
    /// finite.
    pub fn clip_grad_norm(&mut self, max_norm: Option<f64>) -> Result<()> {
        if let Some(c) = max_norm {
            if !(c.is_finite() && c >= 0.0) {
                return Err(OptimError::Config(format!(
                    "clip_grad_norm: max_norm must be finite and at least 0, got {c}"
                )));
            }
        }
        self.clip = max_norm;
        Ok(())
    }

    /// The mean gradient's global norm at the last step (before clipping), when
    /// clipping is on.
    pub fn last_grad_norm(&self) -> Option<f64> {
        self.last_norm
    }

    /// The rule this optimizer shards by.
    pub fn rule(&self) -> ShardRule {
        self.rule
    }

    /// The layout, fixed at the first step (or load).
    pub fn layout(&self) -> Option<&Layout> {
        self.layout.as_ref()
    }

    /// The communicator.
    pub fn comm(&self) -> &Arc<dyn Comm> {
        &self.comm
    }

    /// The inner optimizer, which holds this rank's shard only.
    pub fn inner(&self) -> &dyn Optimizer<T> {
        self.inner.as_ref()
    }

    /// Bytes of optimizer state this rank holds (its tensors and scalars, as exported).
    pub fn state_bytes(&self) -> usize {
        state_bytes(&self.inner.export_state())
    }

    /// The whole optimizer's state, as the unsharded optimizer would export it, on every
    /// rank (a collective: each rank's shard is gathered to all). It loads into the
    /// unsharded optimizer, or into a [`Sharded`] over any number of ranks.
    pub fn consolidated_state(&self) -> Result<OptimizerState> {
        let layout = self.layout.as_ref().ok_or_else(not_started)?;
        let mine = checkpoint::to_bytes(&self.inner.export_state());
        // Everyone takes part even if its encoding failed, then all fail alike.
        let (bytes, failed) = match mine {
            Ok(b) => (b, String::new()),
            Err(e) => (Vec::new(), e.to_string()),
        };
        agree(self.comm.as_ref(), failed)?;
        let all = all_gather_bytes(self.comm.as_ref(), &bytes)?;
        let states = all
            .iter()
            .map(|b| checkpoint::from_bytes(b))
            .collect::<Result<Vec<_>>>()?;
        let mut merged = merge(&states, layout)?;
        // Parameters stepped but holding no elements anywhere (empty) have no piece.
        merged.step = states.first().map_or(0, |s| s.step);
        Ok(merged)
    }

    /// Writes the consolidated state (see [`Sharded::consolidated_state`]) to `path` from
    /// rank 0, atomically; every rank returns rank 0's outcome. A collective.
    pub fn save_consolidated(&self, path: impl AsRef<Path>) -> Result<()> {
        let state = self.consolidated_state()?;
        let outcome = if self.comm.rank() == 0 {
            checkpoint::save_checkpoint(path, &state)
                .err()
                .map_or(String::new(), |e| e.to_string())
        } else {
            String::new()
        };
        agree(self.comm.as_ref(), outcome)
    }

    /// Checks this rank's part of a step without changing anything.
    fn check_local(&self, params: &Params<T>, grads: &Grads<T>) -> Result<()> {
        if let Some(layout) = &self.layout {
            if !layout.matches(params) {
                return Err(OptimError::Config(format!(
                    "the parameters are not those of the first step ({} parameters named \
                     and shaped as then); a sharded optimizer's layout is fixed",
                    layout.names().len()
                )));
            }
        }
        self.checker.check(params, grads)
    }

    /// The step after every check passed everywhere.
    fn step_checked(&mut self, params: &mut Params<T>, grads: &Grads<T>) -> Result<()> {
        let n = self.comm.size();
        let rank = self.comm.rank();
        let layout = self
            .layout
            .get_or_insert_with(|| Layout::new(params, n, self.rule));
        if self.counts.len() != layout.names().len() {
            self.counts = vec![None; layout.names().len()];
        }
        if self.shard.len() != layout.segments(rank).len() {
            self.shard = shard_params(params, layout, rank)?;
        }
        let b = layout.block();
        self.wide.clear();
        self.wide.resize(n * b, T::from_f64(0.0));
        let has: Vec<bool> = layout
            .names()
            .iter()
            .map(|name| grads.get(name).is_some())
            .collect();
        for q in 0..n {
            for seg in layout.segments(q) {
                let name = &layout.names()[seg.param];
                if let Some(grad) = grads.get(name) {
                    let out = &mut self.wide[q * b + seg.at..q * b + seg.at + seg.len];
                    read_grad(grad, entry(params, seg.param)?.1, seg.start, out);
                }
            }
        }
        self.narrow.clear();
        self.narrow.resize(b, T::from_f64(0.0));
        self.comm
            .reduce_scatter_sum(T::buf(&self.wide), T::buf_mut(&mut self.narrow))?;
        let ranks = T::from_f64(n as f64);
        self.narrow.iter_mut().for_each(|g| *g = *g / ranks);

        self.last_norm = None;
        if let Some(max_norm) = self.clip {
            let mut sq = [self
                .narrow
                .iter()
                .map(|&g| {
                    let g = Scalar::to_f64(g);
                    g * g
                })
                .sum::<f64>()];
            self.comm.all_reduce_sum(BufMut::F64(&mut sq))?;
            let total = sq[0].sqrt();
            self.last_norm = Some(total);
            if total.is_finite() && total > max_norm {
                let scale = T::from_f64(max_norm / (total + 1e-6));
                self.narrow.iter_mut().for_each(|g| *g = *g * scale);
            }
        }

        // The non-finite policy, decided on the mean gradient and agreed by all ranks:
        // per parameter, this rank's first bad element (index, value), or −1.
        let mut skip = vec![false; layout.names().len()];
        self.skipped.clear();
        if self.policy != NonFinitePolicy::Propagate {
            let p = layout.names().len();
            let mut mine = vec![-1.0f64; 2 * p];
            for seg in layout.segments(rank) {
                let piece = &self.narrow[seg.at..seg.at + seg.len];
                if let Some(i) = piece.iter().position(|g| !Scalar::to_f64(*g).is_finite()) {
                    mine[2 * seg.param] = (seg.start + i) as f64;
                    mine[2 * seg.param + 1] = Scalar::to_f64(piece[i]);
                }
            }
            let mut all = vec![0.0f64; 2 * p * n];
            self.comm
                .all_gather(Buf::F64(&mine), BufMut::F64(&mut all))?;
            for (param, flag) in skip.iter_mut().enumerate() {
                // The lowest bad element over the ranks (each rank's pieces are disjoint).
                let bad = all
                    .chunks_exact(2 * p)
                    .map(|r| (r[2 * param], r[2 * param + 1]))
                    .filter(|&(i, _)| i >= 0.0)
                    .min_by(|a, b| a.0.total_cmp(&b.0));
                if let (Some((index, value)), true) = (bad, has[param]) {
                    if self.policy == NonFinitePolicy::Error {
                        return Err(OptimError::NonFiniteGrad {
                            name: layout.names()[param].clone(),
                            index: index as usize,
                            value,
                        });
                    }
                    *flag = true;
                    self.skipped.push(layout.names()[param].clone());
                }
            }
        }

        // This rank's shard: the current parameter values and the mean gradient.
        let stepped: Vec<bool> = has.iter().zip(&skip).map(|(&h, &s)| h && !s).collect();
        let mut rebuild = self.had_grad != stepped;
        for (k, seg) in layout.segments(rank).iter().enumerate() {
            let (_, full) = entry(params, seg.param)?;
            let (_, piece) = entry_mut(&mut self.shard, k)?;
            copy_range(full, seg.start, piece);
            if stepped[seg.param] && !rebuild {
                let name = &layout.names()[seg.param];
                match self.shard_grads.get_mut(name) {
                    Some(Grad::Dense(g)) if g.len() == seg.len => {
                        fill(g, &self.narrow[seg.at..seg.at + seg.len]);
                    }
                    _ => rebuild = true,
                }
            }
        }
        if rebuild {
            self.shard_grads.clear();
            for (k, seg) in layout.segments(rank).iter().enumerate() {
                if stepped[seg.param] {
                    let (name, piece) = entry(&self.shard, k)?;
                    let values = self.narrow[seg.at..seg.at + seg.len].to_vec();
                    let g = ArrayD::from_shape_vec(IxDyn(piece.shape()), values)
                        .map_err(|e| OptimError::Config(format!("shard of `{name}`: {e}")))?;
                    self.shard_grads.insert(name.to_string(), g);
                }
            }
            self.had_grad = stepped.clone();
        }
        self.inner.step(&mut self.shard, &self.shard_grads)?;
        if let Some(e) = self.hook_error.lock().ok().and_then(|mut e| e.take()) {
            return Err(e);
        }

        // Every rank's updated block to every rank.
        for (k, seg) in layout.segments(rank).iter().enumerate() {
            let (_, piece) = entry(&self.shard, k)?;
            copy_out(piece, &mut self.narrow[seg.at..seg.at + seg.len]);
        }
        self.comm
            .all_gather(T::buf(&self.narrow), T::buf_mut(&mut self.wide))?;
        for q in 0..n {
            for seg in layout.segments(q) {
                if stepped[seg.param] {
                    let (_, full) = entry_mut(params, seg.param)?;
                    write_range(full, seg.start, &self.wide[q * b + seg.at..][..seg.len]);
                }
            }
        }
        for (count, &s) in self.counts.iter_mut().zip(&stepped) {
            if s {
                *count = Some(count.map_or(1, |c| c + 1));
            }
        }
        self.steps += 1;
        Ok(())
    }

    /// Loads `state` (a shard's, or a consolidated one) into a copy of the inner
    /// optimizer, without changing `self`.
    fn prepare_import(&self, state: &OptimizerState, params: &Params<T>) -> Result<Prepared<T>> {
        let n = self.comm.size();
        let rank = self.comm.rank();
        if let Some(layout) = &self.layout {
            if !layout.matches(params) {
                return Err(OptimError::BadState(
                    "the parameters are not those this sharded optimizer was laid out for".into(),
                ));
            }
        }
        let layout = Layout::new(params, n, self.rule);
        let shard = shard_params(params, &layout, rank)?;
        let mut inner = self.inner.boxed_clone();
        if state.optimizer == SHARD_STATE {
            let want = [
                ("rank", rank as i64),
                ("world", n as i64),
                ("layout", layout.fingerprint() as i64),
            ];
            for (key, value) in want {
                let saved = state.hyper.iter().find(|(k, _)| k == key).map(|(_, v)| v);
                if saved != Some(&HyperValue::Int(value)) {
                    return Err(OptimError::BadState(format!(
                        "this shard was saved with {key} {}, but this rank has {key} {value} \
                         (load a consolidated checkpoint to change the number of ranks)",
                        saved.map_or("(none)".to_string(), |v| v.to_string())
                    )));
                }
            }
            let inner_state = state.inner.as_deref().ok_or_else(|| {
                OptimError::BadState("a shard state without its optimizer".into())
            })?;
            inner.import_state(inner_state, &shard)?;
        } else {
            inner.import_state(&split(state, &layout, rank)?, &shard)?;
        }
        let counts = read_counts(&state.params, &layout)?;
        install_hook(inner.as_mut(), &self.comm, &self.hook_error)?;
        Ok((layout, shard, inner, counts))
    }
}

/// Every rank learns whether any rank failed (`failed` non-empty); if one did, every
/// rank returns the same error naming the lowest failing rank.
fn agree(comm: &dyn Comm, failed: String) -> Result<()> {
    let n = comm.size();
    let mut flags = vec![0u8; n];
    comm.all_gather(
        Buf::U8(&[u8::from(!failed.is_empty())]),
        BufMut::U8(&mut flags),
    )?;
    let Some(rank) = flags.iter().position(|&f| f != 0) else {
        return Ok(());
    };
    let messages = all_gather_bytes(comm, failed.as_bytes())?;
    Err(OptimError::Distributed {
        rank,
        size: n,
        message: String::from_utf8_lossy(&messages[rank]).into_owned(),
    })
}

fn not_started() -> OptimError {
    OptimError::Config(
        "the sharded optimizer has no layout yet: it is fixed by the first step or load".into(),
    )
}

fn install_hook<T: Wire>(
    inner: &mut dyn Optimizer<T>,
    comm: &Arc<dyn Comm>,
    errors: &Arc<Mutex<Option<OptimError>>>,
) -> Result<()> {
    if !inner.global_sums() {
        return Ok(());
    }
    let (comm, errors) = (Arc::clone(comm), Arc::clone(errors));
    let hook: SumHook = Arc::new(move |sums: &mut [f64]| {
        if let Err(e) = comm.all_reduce_sum(BufMut::F64(sums)) {
            if let Ok(mut slot) = errors.lock() {
                slot.get_or_insert(e);
            }
        }
    });
    inner.set_sum_hook(Some(hook)).map_err(|_| {
        OptimError::Config(format!(
            "{} sums over every parameter inside a partition route, which cannot be \
             sharded (each route's sums would need their own collectives)",
            inner.name()
        ))
    })
}

fn has_state(state: &OptimizerState) -> bool {
    state.step > 0
        || !state.params.is_empty()
        || state.inner.as_deref().is_some_and(has_state)
        || state.routes.iter().any(|r| has_state(&r.state))
}

fn state_bytes(state: &OptimizerState) -> usize {
    let own: usize = state
        .params
        .iter()
        .map(|p| {
            p.tensors
                .iter()
                .map(|t| {
                    t.data.len()
                        * match t.data {
                            TensorData::F32(_) => 4,
                            TensorData::F64(_) => 8,
                            TensorData::Bf16(_) => 2,
                            TensorData::U8(_) => 1,
                        }
                })
                .sum::<usize>()
                + 8 * p.scalars.len()
        })
        .sum();
    own + 8 * state.globals.len()
        + state.inner.as_deref().map_or(0, state_bytes)
        + state
            .routes
            .iter()
            .map(|r| state_bytes(&r.state))
            .sum::<usize>()
}

/// This rank's pieces: flat ranges as 1-D parameters, whole parameters as they are.
fn shard_params<T: Wire>(params: &Params<T>, layout: &Layout, rank: usize) -> Result<Params<T>> {
    let mut shard = Params::new();
    for seg in layout.segments(rank) {
        let (name, full) = entry(params, seg.param)?;
        let shape: Vec<usize> = match layout.rule() {
            ShardRule::Flat => vec![seg.len],
            ShardRule::Whole => full.shape().to_vec(),
        };
        let mut piece = ArrayD::from_elem(IxDyn(&shape), T::from_f64(0.0));
        copy_range(full, seg.start, &mut piece);
        shard.insert(name.to_string(), piece)?;
    }
    Ok(shard)
}

/// `out` ← elements `[start, start + out.len())` of the gradient (dense, or sparse rows
/// summed into place).
fn read_grad<T: Wire>(grad: &Grad<T>, param: &ArrayD<T>, start: usize, out: &mut [T]) {
    match grad {
        Grad::Dense(g) => match g.as_slice() {
            Some(s) => out.copy_from_slice(&s[start..start + out.len()]),
            None => out
                .iter_mut()
                .zip(g.iter().skip(start))
                .for_each(|(o, &x)| *o = x),
        },
        Grad::Rows { rows, values } => {
            let width = param.shape().last().copied().unwrap_or(1).max(1);
            let end = start + out.len();
            for (&row, vals) in rows.iter().zip(values.rows()) {
                for (j, &v) in vals.iter().enumerate() {
                    let at = row * width + j;
                    if (start..end).contains(&at) {
                        out[at - start] = out[at - start] + v;
                    }
                }
            }
        }
    }
}

/// `piece` ← elements `[start, start + piece.len())` of `full`.
fn copy_range<T: Wire>(full: &ArrayD<T>, start: usize, piece: &mut ArrayD<T>) {
    let len = piece.len();
    match (full.as_slice(), piece.as_slice_mut()) {
        (Some(f), Some(p)) => p.copy_from_slice(&f[start..start + len]),
        _ => piece
            .iter_mut()
            .zip(full.iter().skip(start))
            .for_each(|(p, &x)| *p = x),
    }
}

/// Elements `[start, start + src.len())` of `full` ← `src`.
fn write_range<T: Wire>(full: &mut ArrayD<T>, start: usize, src: &[T]) {
    match full.as_slice_mut() {
        Some(f) => f[start..start + src.len()].copy_from_slice(src),
        None => full
            .iter_mut()
            .skip(start)
            .zip(src)
            .for_each(|(w, &x)| *w = x),
    }
}

fn copy_out<T: Wire>(piece: &ArrayD<T>, out: &mut [T]) {
    match piece.as_slice() {
        Some(p) => out.copy_from_slice(p),
        None => out.iter_mut().zip(piece.iter()).for_each(|(o, &x)| *o = x),
    }
}

fn fill<T: Wire>(dst: &mut ArrayD<T>, src: &[T]) {
    match dst.as_slice_mut() {
        Some(d) => d.copy_from_slice(src),
        None => dst.iter_mut().zip(src).for_each(|(d, &x)| *d = x),
    }
}

fn read_counts(saved: &[ParamState], layout: &Layout) -> Result<Vec<Option<u64>>> {
    let mut counts = vec![None; layout.names().len()];
    for p in saved {
        let Some(i) = layout.names().iter().position(|n| *n == p.param) else {
            return Err(OptimError::BadState(format!(
                "state for parameter `{}`, which is not among the parameters",
                p.param
            )));
        };
        counts[i] = Some(p.step);
    }
    Ok(counts)
}

/// The pieces of each rank's state (`states[r]`, one level of nesting) joined into the
/// state of the whole parameters.
fn merge(states: &[OptimizerState], layout: &Layout) -> Result<OptimizerState> {
    let first = states
        .first()
        .ok_or_else(|| OptimError::BadState("no shard states".into()))?;
    let mut params = Vec::new();
    for (p, name) in layout.names().iter().enumerate() {
        let shape = &layout.shapes()[p];
        let mut pieces: Vec<(usize, &ParamState)> = Vec::new();
        for (r, state) in states.iter().enumerate() {
            if let Some(ps) = state.params.iter().find(|ps| ps.param == *name) {
                let seg = layout
                    .segments(r)
                    .iter()
                    .find(|s| s.param == p)
                    .ok_or_else(|| {
                        OptimError::BadState(format!(
                            "rank {r} has state for `{name}`, which it does not hold"
                        ))
                    })?;
                pieces.push((seg.start, ps));
            }
        }
        let Some(&(_, head)) = pieces.first() else {
            continue;
        };
        if layout.rule() == ShardRule::Whole {
            params.push(head.clone());
            continue;
        }
        pieces.sort_by_key(|&(start, _)| start);
        let mut tensors = Vec::new();
        for t in &head.tensors {
            let mut data = match t.data {
                TensorData::F32(_) => TensorData::F32(Vec::new()),
                TensorData::F64(_) => TensorData::F64(Vec::new()),
                TensorData::Bf16(_) => TensorData::Bf16(Vec::new()),
                TensorData::U8(_) => TensorData::U8(Vec::new()),
            };
            for (_, ps) in &pieces {
                let piece = ps
                    .tensors
                    .iter()
                    .find(|x| x.name == t.name)
                    .ok_or_else(|| {
                        OptimError::BadState(format!(
                            "`{name}`: a piece without state `{}`",
                            t.name
                        ))
                    })?;
                match (&mut data, &piece.data) {
                    (TensorData::F32(d), TensorData::F32(s)) => d.extend_from_slice(s),
                    (TensorData::F64(d), TensorData::F64(s)) => d.extend_from_slice(s),
                    (TensorData::Bf16(d), TensorData::Bf16(s)) => d.extend_from_slice(s),
                    (TensorData::U8(d), TensorData::U8(s)) => d.extend_from_slice(s),
                    _ => {
                        return Err(OptimError::BadState(format!(
                            "`{name}`: pieces of two dtypes"
                        )))
                    }
                }
            }
            if data.len() != shape.iter().product::<usize>() {
                return Err(OptimError::BadState(format!(
                    "`{name}`: the pieces of `{}` hold {} elements, the parameter {}",
                    t.name,
                    data.len(),
                    shape.iter().product::<usize>()
                )));
            }
            tensors.push(TensorState {
                name: t.name.clone(),
                shape: shape.clone(),
                data,
            });
        }
        params.push(ParamState {
            param: name.clone(),
            step: head.step,
            tensors,
            scalars: head.scalars.clone(),
        });
    }
    let inner = match &first.inner {
        Some(_) => {
            let inners: Vec<OptimizerState> = states
                .iter()
                .map(|s| s.inner.as_deref().cloned())
                .collect::<Option<_>>()
                .ok_or_else(|| OptimError::BadState("shards nest differently".into()))?;
            Some(Box::new(merge(&inners, layout)?))
        }
        None => None,
    };
    let mut routes = Vec::new();
    for (i, route) in first.routes.iter().enumerate() {
        let of_route: Vec<OptimizerState> = states
            .iter()
            .map(|s| s.routes.get(i).map(|r| r.state.clone()))
            .collect::<Option<_>>()
            .ok_or_else(|| OptimError::BadState("shards have different routes".into()))?;
        let mut names: Vec<String> = states
            .iter()
            .flat_map(|s| s.routes[i].params.iter().cloned())
            .collect();
        names.sort();
        names.dedup();
        routes.push(RouteState {
            select: route.select.clone(),
            params: names,
            state: merge(&of_route, layout)?,
        });
    }
    Ok(OptimizerState {
        format_version: first.format_version,
        optimizer: first.optimizer.clone(),
        hyper: first.hyper.clone(),
        groups: first.groups.clone(),
        step: first.step,
        params,
        globals: first.globals.clone(),
        inner,
        routes,
    })
}

/// The part of a whole optimizer's `state` that rank `rank` holds under `layout`.
fn split(state: &OptimizerState, layout: &Layout, rank: usize) -> Result<OptimizerState> {
    let mut params = Vec::new();
    for ps in &state.params {
        let Some(p) = layout.names().iter().position(|n| *n == ps.param) else {
            return Err(OptimError::BadState(format!(
                "state for parameter `{}`, which is not among the parameters",
                ps.param
            )));
        };
        let Some(seg) = layout.segments(rank).iter().find(|s| s.param == p) else {
            continue;
        };
        if layout.rule() == ShardRule::Whole {
            params.push(ps.clone());
            continue;
        }
        let numel: usize = layout.shapes()[p].iter().product();
        let mut tensors = Vec::new();
        for t in &ps.tensors {
            if t.data.len() != numel {
                return Err(OptimError::BadState(format!(
                    "`{}`: state `{}` holds {} elements, the parameter {numel}",
                    ps.param,
                    t.name,
                    t.data.len()
                )));
            }
            let range = seg.start..seg.start + seg.len;
            let data = match &t.data {
                TensorData::F32(v) => TensorData::F32(v[range].to_vec()),
                TensorData::F64(v) => TensorData::F64(v[range].to_vec()),
                TensorData::Bf16(v) => TensorData::Bf16(v[range].to_vec()),
                TensorData::U8(v) => TensorData::U8(v[range].to_vec()),
            };
            tensors.push(TensorState {
                name: t.name.clone(),
                shape: vec![seg.len],
                data,
            });
        }
        params.push(ParamState {
            param: ps.param.clone(),
            step: ps.step,
            tensors,
            scalars: ps.scalars.clone(),
        });
    }
    let inner = match &state.inner {
        Some(s) => Some(Box::new(split(s, layout, rank)?)),
        None => None,
    };
    let mine: Vec<&str> = layout
        .segments(rank)
        .iter()
        .map(|s| layout.names()[s.param].as_str())
        .collect();
    let routes = state
        .routes
        .iter()
        .map(|r| {
            Ok(RouteState {
                select: r.select.clone(),
                params: r
                    .params
                    .iter()
                    .filter(|p| mine.contains(&p.as_str()))
                    .cloned()
                    .collect(),
                state: split(&r.state, layout, rank)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(OptimizerState {
        params,
        inner,
        routes,
        ..state.clone()
    })
}

impl<T: Wire> Optimizer<T> for Sharded<T> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn hyper_specs(&self) -> &'static [HyperSpec] {
        self.inner.hyper_specs()
    }

    fn hyper(&self, name: &str) -> Result<HyperValue> {
        self.inner.hyper(name)
    }

    fn set_hyper(&mut self, name: &str, value: HyperValue) -> Result<()> {
        self.checker.set_hyper(name, value)?;
        self.inner.set_hyper(name, value)
    }

    fn add_group(&mut self, group: Group) -> Result<()> {
        self.checker.add_group(group.clone())?;
        self.inner.add_group(group)
    }

    /// This rank's checks only (not a collective): see [`Sharded`] for what a step checks
    /// across ranks.
    fn check(&self, params: &Params<T>, grads: &Grads<T>) -> Result<()> {
        self.check_local(params, grads)
    }

    fn step(&mut self, params: &mut Params<T>, grads: &Grads<T>) -> Result<()> {
        let n = self.comm.size();
        let local = self.check_local(params, grads);
        // What must be equal on every rank: the parameters and which have gradients.
        let layout_fp = match &self.layout {
            Some(l) => l.fingerprint(),
            None => Layout::new(params, n, self.rule).fingerprint(),
        };
        let mut h = Fnv::new();
        params.names().for_each(|name| {
            h.word(u64::from(grads.get(name).is_some()));
        });
        let mut mine = [0u8; 17];
        mine[0] = u8::from(local.is_err());
        mine[1..9].copy_from_slice(&layout_fp.to_le_bytes());
        mine[9..].copy_from_slice(&h.finish().to_le_bytes());
        let mut all = vec![0u8; 17 * n];
        self.comm.all_gather(Buf::U8(&mine), BufMut::U8(&mut all))?;
        let rows: Vec<&[u8]> = all.chunks_exact(17).collect();
        if rows.iter().any(|r| r[0] != 0) {
            agree(
                self.comm.as_ref(),
                local.err().map_or(String::new(), |e| e.to_string()),
            )?;
        }
        if let Some(r) = rows.iter().position(|r| r[1..9] != rows[0][1..9]) {
            return Err(OptimError::Distributed {
                rank: r,
                size: n,
                message: "its parameters differ from rank 0's (names, shapes or order)".into(),
            });
        }
        if let Some(r) = rows.iter().position(|r| r[9..] != rows[0][9..]) {
            return Err(OptimError::Distributed {
                rank: r,
                size: n,
                message: "it has gradients for other parameters than rank 0; every rank \
                          must give a gradient for the same parameters"
                    .into(),
            });
        }
        self.step_checked(params, grads)
    }

    fn step_count(&self, name: &str) -> Option<u64> {
        let layout = self.layout.as_ref()?;
        let i = layout.names().iter().position(|n| n == name)?;
        self.counts.get(i).copied().flatten()
    }

    /// This rank's shard: the inner optimizer's state (under `inner`), with the rank, the
    /// number of ranks and the layout's fingerprint as `hyper` and every parameter's step
    /// count under `params`. [`checkpoint::save`] writes it as it is; it loads back only
    /// into the same rank of the same layout. For a state that loads anywhere, see
    /// [`Sharded::consolidated_state`].
    fn export_state(&self) -> OptimizerState {
        let rank = self.comm.rank();
        let (fp, names) = match &self.layout {
            Some(l) => (l.fingerprint(), l.names().to_vec()),
            None => (0, Vec::new()),
        };
        OptimizerState {
            format_version: STATE_FORMAT_VERSION,
            optimizer: SHARD_STATE.to_string(),
            hyper: vec![
                ("rank".into(), HyperValue::Int(rank as i64)),
                ("world".into(), HyperValue::Int(self.comm.size() as i64)),
                ("layout".into(), HyperValue::Int(fp as i64)),
            ],
            groups: Vec::new(),
            step: self.steps,
            params: names
                .into_iter()
                .zip(&self.counts)
                .filter_map(|(param, c)| {
                    c.map(|step| ParamState {
                        param,
                        step,
                        tensors: Vec::new(),
                        scalars: Vec::new(),
                    })
                })
                .collect(),
            globals: Vec::new(),
            inner: Some(Box::new(self.inner.export_state())),
            routes: Vec::new(),
        }
    }

    /// A collective. Loads a shard's state ([`Sharded::export_state`]; same rank, number
    /// of ranks and parameters) or a whole optimizer's (from [`Sharded::consolidated_state`]
    /// or an unsharded optimizer: any number of ranks). Every rank checks its part; if
    /// any fails, all return the same error and nothing changes on any.
    fn import_state(&mut self, state: &OptimizerState, params: &Params<T>) -> Result<()> {
        let prepared = self.prepare_import(state, params);
        let failed = prepared
            .as_ref()
            .err()
            .map_or(String::new(), |e| e.to_string());
        agree(self.comm.as_ref(), failed)?;
        let (layout, shard, inner, counts) = prepared?;
        self.layout = Some(layout);
        self.shard = shard;
        self.inner = inner;
        self.shard_grads = Grads::new();
        self.had_grad.clear();
        self.counts = counts;
        self.steps = if state.optimizer == SHARD_STATE {
            state.step
        } else {
            self.inner.export_state().step
        };
        Ok(())
    }

    fn boxed_clone(&self) -> Box<dyn Optimizer<T>> {
        let mut inner = self.inner.boxed_clone();
        let hook_error = Arc::new(Mutex::new(None));
        // The inner optimizer had a hook already, so it accepts one.
        let _ = install_hook(inner.as_mut(), &self.comm, &hook_error);
        Box::new(Sharded {
            inner,
            checker: self.checker.boxed_clone(),
            comm: Arc::clone(&self.comm),
            rule: self.rule,
            layout: self.layout.clone(),
            shard: self.shard.clone(),
            shard_grads: Grads::new(),
            had_grad: Vec::new(),
            wide: Vec::new(),
            narrow: Vec::new(),
            counts: self.counts.clone(),
            steps: self.steps,
            policy: self.policy,
            skipped: self.skipped.clone(),
            clip: self.clip,
            last_norm: self.last_norm,
            hook_error,
        })
    }

    /// A collective: each rank computes its shard's evaluation weights, then all are
    /// gathered.
    fn eval_params_into(&self, params: &Params<T>, out: &mut Params<T>) -> Result<()> {
        let Some(layout) = &self.layout else {
            out.copy_from(params);
            return Ok(());
        };
        let rank = self.comm.rank();
        let n = self.comm.size();
        let b = layout.block();
        let shard = shard_params(params, layout, rank)?;
        let mut evals = Params::new();
        self.inner.eval_params_into(&shard, &mut evals)?;
        let mut narrow = vec![T::from_f64(0.0); b];
        for (k, seg) in layout.segments(rank).iter().enumerate() {
            copy_out(entry(&evals, k)?.1, &mut narrow[seg.at..seg.at + seg.len]);
        }
        let mut wide = vec![T::from_f64(0.0); n * b];
        self.comm
            .all_gather(T::buf(&narrow), T::buf_mut(&mut wide))?;
        out.copy_from(params);
        for q in 0..n {
            for seg in layout.segments(q) {
                let (_, full) = entry_mut(out, seg.param)?;
                write_range(full, seg.start, &wide[q * b + seg.at..][..seg.len]);
            }
        }
        Ok(())
    }

    /// Applied to the mean gradient and agreed by all ranks (see [`Sharded`]).
    fn set_non_finite_policy(&mut self, policy: NonFinitePolicy) -> Result<()> {
        self.policy = policy;
        Ok(())
    }

    fn non_finite_policy(&self) -> NonFinitePolicy {
        self.policy
    }

    fn skipped(&self) -> &[String] {
        &self.skipped
    }
}

/// Entry `index` of `params`, which the layout was built from (checked before each step):
/// a miss is a broken invariant, reported as an error rather than a panic.
fn entry<T: Scalar>(params: &Params<T>, index: usize) -> Result<(&str, &ArrayD<T>)> {
    params
        .entry(index)
        .ok_or_else(|| out_of_layout(index, params.len()))
}

/// [`entry`], mutably.
fn entry_mut<T: Scalar>(params: &mut Params<T>, index: usize) -> Result<(&str, &mut ArrayD<T>)> {
    let len = params.len();
    params
        .entry_mut(index)
        .ok_or_else(|| out_of_layout(index, len))
}

fn out_of_layout(index: usize, len: usize) -> OptimError {
    OptimError::Config(format!(
        "internal: the shard layout names parameter {index}, but there are {len}"
    ))
}
