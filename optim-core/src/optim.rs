//! [`Optim`]: runs any generated [`Algorithm`] over named parameters, with groups,
//! lazily allocated per-parameter state and checked state export/import.

mod grad;
mod par;
mod phased;
pub(crate) mod slot;
pub(crate) mod table;

pub(crate) use grad::{check_grads, with_flat};

use crate::algorithm::{Algorithm, AlgorithmKind};
use crate::error::{OptimError, Result};
use crate::group::{Group, Selector};
use crate::hyper::{find_spec, HyperSpec, HyperValue};
use crate::kernel;
use crate::nonfinite::{first_non_finite_in, NonFinitePolicy};
use crate::optimizer::{Optimizer, SumHook};
use crate::params::{Grads, Params};
use crate::precision::StatePrecision;
use crate::scalar::Scalar;
use crate::state::{GroupState, OptimizerState, MAX_STEP, STATE_FORMAT_VERSION};
use grad::{direct_view, Scratch};
use par::Job;
use slot::Slot;
use std::fmt;
use table::SlotTable;

/// A first-order optimizer: the algorithm `A` (its hyperparameters) applied to parameters
/// of element type `T`.
///
/// Each parameter has its own state, keyed by its name: a step count `t` and the states
/// `A` declares, allocated on the first step that gives the parameter a gradient. At each
/// step, every parameter with a gradient takes `t ← t + 1` and one `A::step`, under the
/// hyperparameters of the first [`Group`] that matches its name (else the base ones);
/// parameters without a gradient, and their state, are left as they are.
///
/// ```
/// use ndarray::{arr1, arr2};
/// use optim_core::{optim::Optim, Grads, Optimizer, Params};
/// use optim_zoo::Adamw;
///
/// # fn main() -> optim_core::Result<()> {
/// let mut params = Params::<f32>::new()
///     .with("fc.weight", arr2(&[[0.5, -1.0], [2.0, 0.25]]))?
///     .with("fc.bias", arr1(&[0.1, -0.1]))?;
/// let mut opt = Optim::<Adamw, f32>::new(Adamw::default().lr(1e-3).weight_decay(0.1))?;
/// opt.exclude_from_weight_decay(&["bias", "LayerNorm"])?;
/// let grads = Grads::new()
///     .with("fc.weight", arr2(&[[1.0, -1.0], [1.0, -1.0]]))
///     .with("fc.bias", arr1(&[1.0, -1.0]));
/// opt.step(&mut params, &grads)?;
/// // Adam's first step moves each weight by lr against its gradient's sign.
/// let w = params.get("fc.weight").unwrap();
/// assert!(w[[0, 0]] < 0.5 && w[[0, 1]] > -1.0);
/// # Ok(())
/// # }
/// ```
pub struct Optim<A: Algorithm, T: Scalar> {
    base: A,
    groups: Vec<Group>,
    /// `base` with each group's overrides applied, one per group.
    resolved: Vec<A>,
    /// Bumped whenever `groups` changes; invalidates each slot's cached group.
    epoch: u64,
    /// Successful `step` calls.
    steps: u64,
    slots: SlotTable<T>,
    scratch: Scratch<T>,
    /// The parameter, when it is not in standard layout.
    wbuf: Vec<T>,
    /// What a step does with non-finite gradients.
    policy: NonFinitePolicy,
    /// How element-wise states are stored.
    precision: StatePrecision,
    /// Parameters the last step skipped for non-finite gradients.
    skipped: Vec<String>,
    /// The deferred kernel calls of a step (empty between steps; kept for its buffer).
    jobs: Vec<Job<'static, A, T>>,
    /// Per parameter index, its deferred call in `jobs` (`usize::MAX`: none).
    by_param: Vec<usize>,
    /// Per gradient of the current step, in order: its parameter's position and its
    /// slot, if it has one (empty between steps; kept for its buffer).
    plan: Vec<Plan>,
    /// The optimizer-wide frame (see [`Algorithm::FRAME`]): global states first.
    frame: Vec<f64>,
    /// One parameter's shares of the sums over every parameter (a step's buffer).
    shares: Vec<f64>,
    /// The sums over every parameter, as they are added up (a step's buffer).
    totals: Vec<f64>,
    /// Adds up the sums across processes ([`Optimizer::set_sum_hook`]).
    sum_hook: Option<SumHook>,
}

impl<A: Algorithm, T: Scalar> Optim<A, T> {
    /// An optimizer with base hyperparameters `hyper` (checked with `A::validate`) and no
    /// state yet.
    ///
    /// Fails if `A` is a wrapper rule (use [`crate::wrapper::Wrapped`]) or if a
    /// hyperparameter is out of range.
    pub fn new(hyper: A) -> Result<Self> {
        if A::KIND != AlgorithmKind::Optimizer {
            return Err(OptimError::Config(format!(
                "{} is a wrapper rule, not an optimizer: wrap another optimizer with it \
                 (`Wrapped::new`)",
                A::NAME
            )));
        }
        hyper.validate()?;
        let frame = initial_frame(&hyper);
        Ok(Optim {
            frame,
            shares: Vec::new(),
            totals: Vec::new(),
            sum_hook: None,
            base: hyper,
            groups: Vec::new(),
            resolved: Vec::new(),
            epoch: 1,
            steps: 0,
            slots: SlotTable::default(),
            scratch: Scratch::default(),
            wbuf: Vec::new(),
            policy: NonFinitePolicy::Propagate,
            precision: StatePrecision::Full,
            skipped: Vec::new(),
            jobs: Vec::new(),
            by_param: Vec::new(),
            plan: Vec::new(),
        })
    }

    /// This optimizer keeping its element-wise states in `precision` (see
    /// [`Optimizer::set_state_precision`]).
    pub fn with_state_precision(mut self, precision: StatePrecision) -> Self {
        self.set_precision(precision);
        self
    }

    fn set_precision(&mut self, precision: StatePrecision) {
        self.precision = precision;
        for slot in self.slots.slots_mut() {
            slot.set_precision::<A>(precision);
        }
    }

    /// The base hyperparameters (change them with [`Optimizer::set_hyper`], which keeps
    /// the groups in sync).
    pub fn config(&self) -> &A {
        &self.base
    }

    /// The parameter groups, in the order they were added.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Number of successful [`Optimizer::step`] calls (including steps where no
    /// parameter had a gradient).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Turns weight decay off for every parameter whose name contains one of
    /// `name_parts` (BERT: `["bias", "LayerNorm", "layer_norm"]`): adds the group
    /// `Group::name_contains(name_parts).set("weight_decay", 0.0)`.
    ///
    /// Fails if `A` has no `weight_decay` hyperparameter or `name_parts` is empty.
    pub fn exclude_from_weight_decay(&mut self, name_parts: &[&str]) -> Result<()> {
        find_spec(A::NAME, A::HYPERS, "weight_decay")?;
        self.add_group(Group::name_contains(name_parts.iter().copied()).set("weight_decay", 0.0))
    }

    /// The hyperparameters the parameter `name` runs under (uncached: for export and
    /// evaluation; the step caches the group in the slot, see [`hyper_for`]).
    fn hyper_by_name(&self, name: &str) -> &A {
        hyper_of(&self.base, &self.resolved, group_of(&self.groups, name))
    }

    /// `base` with `group`'s overrides, checked by the algorithm's own validation.
    fn resolve(base: &A, group: &Group) -> Result<A> {
        check_selector(&group.selector)?;
        let mut a = base.clone();
        for (name, value) in &group.overrides {
            a.set_hyper(name, *value)?;
        }
        a.validate()?;
        Ok(a)
    }

    /// Updates every slot's group and frees the states its hyperparameters disable.
    fn refresh(&mut self) {
        for (name, slot) in self.slots.iter_mut() {
            let a = hyper_for(
                &self.base,
                &self.groups,
                &self.resolved,
                self.epoch,
                name,
                slot,
            );
            slot.prune(a);
        }
    }

    /// Checks every gradient (see [`check_grads`]) and each parameter's shape against
    /// its state, and with the `Error` policy that gradients are finite. Calls `found`
    /// with each gradient's [`Plan`], in order, once it passed, so that `step` finds
    /// parameters and slots without searching again.
    fn check_and_plan(
        &self,
        params: &Params<T>,
        grads: &Grads<T>,
        mut found: impl FnMut(Plan),
    ) -> Result<()> {
        check_grads(params, grads, |position, name, param| {
            self.base.check_shape(param.shape()).map_err(|why| {
                OptimError::Config(format!("{}: parameter `{name}`: {why}", A::NAME))
            })?;
            let slot = self.slots.find(position, name);
            if let Some(at) = slot {
                self.slots.at(at).check_shape(name, param)?;
            }
            found(Plan {
                position,
                slot,
                skip: false,
            });
            Ok(())
        })?;
        if self.policy == NonFinitePolicy::Error {
            check_finite(grads)?;
        }
        Ok(())
    }

    /// Marks the gradients the `SkipParam` policy skips (each scanned once), then gives
    /// each other parameter in `plan` that has no slot yet a fresh one, recorded in
    /// `plan`.
    ///
    /// The states are allocated one kind at a time over all new parameters (every `m`,
    /// then every `v`), so that the allocator places consecutive parameters' states of
    /// one kind next to each other: stepping many small tensors then reads one stream
    /// per state kind instead of jumping between kinds at every tensor (RESULTS.md
    /// section 4 measures it).
    fn complete_plan(&mut self, params: &Params<T>, grads: &Grads<T>, plan: &mut [Plan]) {
        if self.policy == NonFinitePolicy::SkipParam {
            for ((_, grad), entry) in grads.iter().zip(plan.iter_mut()) {
                entry.skip = first_non_finite_in(grad).is_some();
            }
        }
        if plan.iter().all(|entry| entry.slot.is_some() || entry.skip) {
            return;
        }
        let first_new = self.slots.len();
        let mut new = Vec::new();
        for entry in plan.iter_mut().filter(|e| e.slot.is_none() && !e.skip) {
            // Positions come from `check_and_plan`; one past the end gets no slot and is
            // then not stepped.
            let Some((name, param)) = params.entry(entry.position) else {
                continue;
            };
            let group = group_of(&self.groups, name);
            let a = hyper_of(&self.base, &self.resolved, group);
            let mut slot = Slot::unprepared(a, param, self.precision);
            (slot.group, slot.epoch) = (group, self.epoch);
            entry.slot = Some(self.slots.insert(name, slot));
            new.push((param, a));
        }
        for state in 0..A::STATES.len() {
            for (k, &(param, a)) in new.iter().enumerate() {
                self.slots
                    .at_mut(first_new + k)
                    .prepare_state(state, a, param);
            }
        }
    }
}

/// What a step does with one gradient, decided before anything changes.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// The parameter's position in `Params`.
    position: usize,
    /// The parameter's slot (`None` before [`Optim::complete_plan`] for a new parameter,
    /// and for a skipped one).
    slot: Option<usize>,
    /// Skipped for a non-finite gradient (`SkipParam` policy).
    skip: bool,
}

/// The group of the parameter `name`: the first whose selector matches it (`None`: no
/// group, the base hyperparameters). The one place this is decided.
fn group_of(groups: &[Group], name: &str) -> Option<usize> {
    groups.iter().position(|g| g.selector.matches(name))
}

/// The hyperparameters of `group`: its resolved overrides, or the base ones for `None`.
fn hyper_of<'a, A>(base: &'a A, resolved: &'a [A], group: Option<usize>) -> &'a A {
    group.and_then(|g| resolved.get(g)).unwrap_or(base)
}

/// The hyperparameters the parameter `name` runs under, caching its group in `slot`
/// (the step's path: a group search only after the groups changed).
fn hyper_for<'a, A, T>(
    base: &'a A,
    groups: &[Group],
    resolved: &'a [A],
    epoch: u64,
    name: &str,
    slot: &mut Slot<T>,
) -> &'a A {
    if slot.epoch != epoch {
        slot.group = group_of(groups, name);
        slot.epoch = epoch;
    }
    hyper_of(base, resolved, slot.group)
}

/// Rejects selectors that can never (or always, by accident) match.
fn check_selector(selector: &Selector) -> Result<()> {
    match selector {
        Selector::Names(names) if names.is_empty() => Err(OptimError::BadGroup(
            "the group lists no parameter names".into(),
        )),
        Selector::NameContains(parts) if parts.is_empty() => Err(OptimError::BadGroup(
            "the group lists no name parts to match".into(),
        )),
        Selector::NameContains(parts) if parts.iter().any(String::is_empty) => Err(
            OptimError::BadGroup("an empty name part would match every parameter".into()),
        ),
        _ => Ok(()),
    }
}

/// The error for a hyperparameter `A` does not declare.
pub(crate) fn unknown_hyper(optimizer: &str, specs: &[HyperSpec], name: &str) -> OptimError {
    match find_spec(optimizer, specs, name) {
        Err(e) => e,
        Ok(_) => OptimError::Config(format!(
            "{optimizer}: hyperparameter `{name}` is declared but has no value"
        )),
    }
}

impl<A: Algorithm, T: Scalar> Optimizer<T> for Optim<A, T> {
    fn name(&self) -> &str {
        A::NAME
    }

    fn hyper_specs(&self) -> &'static [HyperSpec] {
        A::HYPERS
    }

    fn hyper(&self, name: &str) -> Result<HyperValue> {
        self.base
            .get_hyper(name)
            .ok_or_else(|| unknown_hyper(A::NAME, A::HYPERS, name))
    }

    fn set_hyper(&mut self, name: &str, value: HyperValue) -> Result<()> {
        let mut base = self.base.clone();
        base.set_hyper(name, value)?;
        base.validate()?;
        let resolved = self
            .groups
            .iter()
            .map(|g| Self::resolve(&base, g))
            .collect::<Result<Vec<_>>>()?;
        self.base = base;
        self.resolved = resolved;
        self.refresh();
        Ok(())
    }

    fn add_group(&mut self, group: Group) -> Result<()> {
        let resolved = Self::resolve(&self.base, &group)?;
        self.groups.push(group);
        self.resolved.push(resolved);
        self.epoch += 1;
        self.refresh();
        Ok(())
    }

    fn check(&self, params: &Params<T>, grads: &Grads<T>) -> Result<()> {
        self.check_and_plan(params, grads, |_| ())
    }

    fn step(&mut self, params: &mut Params<T>, grads: &Grads<T>) -> Result<()> {
        let mut plan = std::mem::take(&mut self.plan);
        plan.clear();
        let checked = self.check_and_plan(params, grads, |found| plan.push(found));
        if let Err(e) = checked {
            self.plan = plan;
            return Err(e);
        }
        self.complete_plan(params, grads, &mut plan);
        if A::PHASES > 1 {
            self.step_phased(params, grads, &plan);
            self.plan = plan;
            self.steps += 1;
            return Ok(());
        }
        // With more than one thread, the kernel calls that need no scratch buffer are
        // deferred, then run together: in parallel when their total work is large
        // enough (many small tensors), else in order on this thread. With one thread,
        // each parameter is stepped as it is found.
        let defer = kernel::num_threads() > 1;
        let mut jobs = par::recycle(std::mem::take(&mut self.jobs));
        let mut by_param = std::mem::take(&mut self.by_param);
        if defer {
            by_param.clear();
            by_param.resize(params.len(), usize::MAX);
        }
        let Optim {
            base,
            groups,
            resolved,
            epoch,
            slots,
            scratch,
            wbuf,
            skipped,
            ..
        } = self;
        skipped.clear();
        for ((gname, grad), entry) in grads.iter().zip(&plan) {
            if entry.skip {
                skipped.push(gname.to_string());
                continue;
            }
            let index = entry.position;
            // `complete_plan` gave every stepped parameter a slot.
            let (Some((name, param)), Some(at)) = (params.entry_mut(index), entry.slot) else {
                continue;
            };
            slots.remember(index, at);
            let slot = slots.at_mut(at);
            let a = hyper_for(base, groups, resolved, *epoch, name, slot);
            slot.prepare(a, param);
            slot.t += 1;
            if defer && param.is_standard_layout() {
                if let Some(view) = direct_view(grad, A::SPARSE) {
                    slot.job = Some(jobs.len());
                    by_param[index] = jobs.len();
                    jobs.push(Job {
                        a,
                        slot: None,
                        w: None,
                        grad: view,
                        len: param.len(),
                    });
                    continue;
                }
            }
            let view = scratch.view(grad, param.len(), A::SPARSE);
            let Slot {
                t,
                shape,
                scalars,
                states,
                work,
                ..
            } = slot;
            with_flat(param, wbuf, |w| {
                a.step(*t, shape, scalars, w, view, states, work)
            });
        }
        if !jobs.is_empty() {
            // Every slot and parameter can now be borrowed at once.
            for slot in slots.slots_mut() {
                if let Some(j) = slot.job.take() {
                    jobs[j].slot = Some(slot);
                }
            }
            for ((_, param), &j) in params.iter_mut().zip(&by_param) {
                if let Some(job) = jobs.get_mut(j) {
                    job.w = param.as_slice_mut();
                }
            }
            par::run_jobs(&mut jobs);
        }
        self.jobs = par::recycle(jobs);
        self.by_param = by_param;
        self.plan = plan;
        self.steps += 1;
        Ok(())
    }

    fn step_count(&self, name: &str) -> Option<u64> {
        self.slots.get(name).map(|s| s.t)
    }

    fn set_state_precision(&mut self, precision: StatePrecision) -> Result<()> {
        self.set_precision(precision);
        Ok(())
    }

    fn state_precision(&self) -> StatePrecision {
        self.precision
    }

    fn state_bytes(&self) -> usize {
        self.slots.slots().map(Slot::state_bytes).sum()
    }

    fn export_state(&self) -> OptimizerState {
        let params = self
            .slots
            .sorted()
            .into_iter()
            .map(|(name, slot)| slot.export(name, self.hyper_by_name(name)))
            .collect();
        OptimizerState {
            format_version: STATE_FORMAT_VERSION,
            optimizer: A::NAME.to_string(),
            hyper: export_hyper(&self.base),
            groups: self
                .groups
                .iter()
                .map(|g| GroupState {
                    selector: g.selector.clone(),
                    overrides: g.overrides.clone(),
                })
                .collect(),
            step: self.steps,
            params,
            globals: A::GLOBALS
                .iter()
                .zip(&self.frame)
                .map(|(spec, &x)| (spec.name.to_string(), x))
                .collect(),
            inner: None,
            routes: Vec::new(),
        }
    }

    fn import_state(&mut self, state: &OptimizerState, params: &Params<T>) -> Result<()> {
        check_header(state, A::NAME)?;
        crate::partition::reject_routes(state, A::NAME)?;
        if state.inner.is_some() {
            return Err(OptimError::BadState(format!(
                "the state holds a wrapped optimizer's state, but {} wraps nothing",
                A::NAME
            )));
        }
        let base: A = import_hyper(&state.hyper)?;
        let groups: Vec<Group> = state
            .groups
            .iter()
            .map(|g| Group {
                selector: g.selector.clone(),
                overrides: g.overrides.clone(),
            })
            .collect();
        let resolved = groups
            .iter()
            .map(|g| Self::resolve(&base, g))
            .collect::<Result<Vec<_>>>()?;
        let slots = slot::import_all(&state.params, params, self.precision, |name| {
            hyper_of(&base, &resolved, group_of(&groups, name))
        })?;
        let frame = import_globals::<A>(&base, &state.globals)?;
        self.base = base;
        self.groups = groups;
        self.resolved = resolved;
        self.slots = slots;
        self.frame = frame;
        self.steps = state.step;
        self.epoch += 1;
        Ok(())
    }

    fn boxed_clone(&self) -> Box<dyn Optimizer<T>> {
        Box::new(self.clone())
    }

    fn eval_params_into(&self, params: &Params<T>, out: &mut Params<T>) -> Result<()> {
        if A::EVAL {
            // Check first: on error `out` is left as it was.
            for (name, param) in params.iter() {
                if let Some(slot) = self.slots.get(name) {
                    slot.check_shape(name, param)?;
                }
            }
        }
        out.copy_from(params);
        if !A::EVAL {
            return Ok(());
        }
        for (name, target) in out.iter_mut() {
            let (Some(slot), Some(w)) = (self.slots.get(name), params.get(name)) else {
                continue; // no state yet: its evaluation weights are its weights
            };
            let a = self.hyper_by_name(name);
            if let (Some(w), Some(target)) = (w.as_slice(), target.as_slice_mut()) {
                a.eval(slot.t, &slot.shape, &slot.scalars, w, &slot.states, target);
            }
        }
        Ok(())
    }

    fn set_non_finite_policy(&mut self, policy: NonFinitePolicy) -> Result<()> {
        self.policy = policy;
        Ok(())
    }

    fn non_finite_policy(&self) -> NonFinitePolicy {
        self.policy
    }

    fn elementwise(&self) -> bool {
        A::ELEMENTWISE
    }

    fn global_sums(&self) -> bool {
        A::SUMS > 0
    }

    fn set_sum_hook(&mut self, hook: Option<SumHook>) -> Result<()> {
        if hook.is_some() && A::SUMS == 0 {
            return Err(OptimError::Config(format!(
                "{} does not sum over every parameter, so it takes no sum hook",
                A::NAME
            )));
        }
        self.sum_hook = hook;
        Ok(())
    }

    fn skipped(&self) -> &[String] {
        &self.skipped
    }
}

/// The error for the first gradient that is not all finite.
fn check_finite<T: Scalar>(grads: &Grads<T>) -> Result<()> {
    for (name, grad) in grads.iter() {
        if let Some((index, value)) = first_non_finite_in(grad) {
            return Err(OptimError::NonFiniteGrad {
                name: name.to_string(),
                index,
                value: value.to_f64(),
            });
        }
    }
    Ok(())
}

/// Checks the format version and the optimizer name of exported state.
pub(crate) fn check_header(state: &OptimizerState, name: &str) -> Result<()> {
    if state.format_version != STATE_FORMAT_VERSION {
        return Err(OptimError::VersionMismatch {
            saved: state.format_version,
            supported: STATE_FORMAT_VERSION,
        });
    }
    if state.optimizer != name {
        return Err(OptimError::OptimizerMismatch {
            saved: state.optimizer.clone(),
            expected: name.to_string(),
        });
    }
    if state.step > MAX_STEP {
        return Err(OptimError::BadState(format!(
            "{name}: step count {} is beyond 2^53, the largest step count `t` holds exactly",
            state.step
        )));
    }
    Ok(())
}

/// The optimizer-wide frame of a new optimizer: global states at their initial values.
fn initial_frame<A: Algorithm>(a: &A) -> Vec<f64> {
    (0..A::FRAME)
        .map(|i| {
            if i < A::GLOBALS.len() {
                a.global_init(i)
            } else {
                0.0
            }
        })
        .collect()
}

/// The frame with the saved global states: exactly the declared ones, each once.
fn import_globals<A: Algorithm>(base: &A, saved: &[(String, f64)]) -> Result<Vec<f64>> {
    let mut frame = initial_frame(base);
    let mut seen = vec![false; A::GLOBALS.len()];
    for (name, x) in saved {
        let Some(i) = A::GLOBALS.iter().position(|s| s.name == *name) else {
            return Err(OptimError::BadState(format!(
                "{}: unknown global state `{name}`",
                A::NAME
            )));
        };
        if std::mem::replace(&mut seen[i], true) {
            return Err(OptimError::BadState(format!(
                "{}: global state `{name}` appears twice",
                A::NAME
            )));
        }
        frame[i] = *x;
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(OptimError::BadState(format!(
            "{}: global state `{}` is missing",
            A::NAME,
            A::GLOBALS[i].name
        )));
    }
    Ok(frame)
}

/// Every declared hyperparameter of `a`, in declaration order.
pub(crate) fn export_hyper<A: Algorithm>(a: &A) -> Vec<(String, HyperValue)> {
    A::HYPERS
        .iter()
        .filter_map(|s| a.get_hyper(s.name).map(|v| (s.name.to_string(), v)))
        .collect()
}

/// Defaults with the saved values applied, each checked; names not saved keep their
/// default.
pub(crate) fn import_hyper<A: Algorithm>(saved: &[(String, HyperValue)]) -> Result<A> {
    let mut a = A::default();
    for (name, value) in saved {
        a.set_hyper(name, *value)?;
    }
    a.validate()?;
    Ok(a)
}

impl<A: Algorithm, T: Scalar> Clone for Optim<A, T> {
    fn clone(&self) -> Self {
        Optim {
            base: self.base.clone(),
            groups: self.groups.clone(),
            resolved: self.resolved.clone(),
            epoch: self.epoch,
            steps: self.steps,
            slots: self.slots.clone(),
            scratch: Scratch::default(),
            wbuf: Vec::new(),
            policy: self.policy,
            precision: self.precision,
            skipped: self.skipped.clone(),
            jobs: Vec::new(),
            by_param: Vec::new(),
            plan: Vec::new(),
            frame: self.frame.clone(),
            shares: Vec::new(),
            totals: Vec::new(),
            // A hook belongs to one process's group of collectives, not to copies.
            sum_hook: None,
        }
    }
}

impl<A: Algorithm, T: Scalar> fmt::Debug for Optim<A, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Optim")
            .field("name", &A::NAME)
            .field("dtype", &T::DTYPE)
            .field("hyper", &self.base)
            .field("groups", &self.groups)
            .field("steps", &self.steps)
            .field("params_with_state", &self.slots.len())
            .field("non_finite_policy", &self.policy)
            .finish()
    }
}
