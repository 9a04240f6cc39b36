//! [`Wrapped`]: a wrapper rule (Lookahead) applied around any inner optimizer.

use crate::algorithm::{Algorithm, AlgorithmKind, GradView};
use crate::error::{OptimError, Result};
use crate::group::Group;
use crate::hyper::{HyperSpec, HyperValue};
use crate::nonfinite::NonFinitePolicy;
use crate::optim::slot::{self, Slot};
use crate::optim::table::SlotTable;
use crate::optim::{check_header, export_hyper, import_hyper, unknown_hyper, with_flat};
use crate::optimizer::Optimizer;
use crate::params::{Grads, Params};
use crate::precision::StatePrecision;
use crate::scalar::Scalar;
use crate::state::{OptimizerState, STATE_FORMAT_VERSION};
use std::fmt;

/// The rule `R` (Lookahead) around an inner optimizer.
///
/// Step `n` of the whole optimizer runs the inner optimizer's step, then `R::step(n, ..)`
/// on **every** parameter, with or without a gradient, against the rule's per-parameter
/// state. For Lookahead, with slow weights `s` starting as the initial parameters:
/// after the inner update of step `n`, if `n mod k = 0`: `s ← s + α (w − s)`, `w ← s`.
///
/// Hyperparameters the rule declares (`k`, `alpha`) are the rule's; any other name is
/// forwarded to the inner optimizer, as are groups.
pub struct Wrapped<R: Algorithm, T: Scalar> {
    rule: R,
    inner: Box<dyn Optimizer<T>>,
    /// Steps of the whole optimizer.
    n: u64,
    /// Rule state per parameter name; a slot's `t` counts rule steps it has taken.
    slots: SlotTable<T>,
    /// The parameter, when it is not in standard layout.
    wbuf: Vec<T>,
}

impl<R: Algorithm, T: Scalar> Wrapped<R, T> {
    /// `rule` (checked with `R::validate`) around `inner`.
    ///
    /// Fails if `R` is not a wrapper rule or a hyperparameter is out of range.
    pub fn new(rule: R, inner: Box<dyn Optimizer<T>>) -> Result<Self> {
        if R::KIND != AlgorithmKind::Wrapper {
            return Err(OptimError::Config(format!(
                "{} is an optimizer, not a wrapper rule: use it with `Optim::new`",
                R::NAME
            )));
        }
        rule.validate()?;
        Ok(Wrapped {
            rule,
            inner,
            n: 0,
            slots: SlotTable::default(),
            wbuf: Vec::new(),
        })
    }

    /// The rule's hyperparameters.
    pub fn rule(&self) -> &R {
        &self.rule
    }

    /// The wrapped optimizer.
    pub fn inner(&self) -> &dyn Optimizer<T> {
        self.inner.as_ref()
    }

    /// Steps taken by the whole optimizer (the rule's `t`).
    pub fn steps(&self) -> u64 {
        self.n
    }

    fn is_rule_hyper(name: &str) -> bool {
        R::HYPERS.iter().any(|s| s.name == name)
    }

    /// An unknown-name error from the inner optimizer, widened to list the rule's
    /// hyperparameters too.
    fn widen(&self, err: OptimError, name: &str) -> OptimError {
        if !matches!(err, OptimError::UnknownHyper { .. }) {
            return err;
        }
        let all: Vec<HyperSpec> = R::HYPERS
            .iter()
            .chain(self.inner.hyper_specs())
            .copied()
            .collect();
        let optimizer = format!("{}({})", R::NAME, self.inner.name());
        unknown_hyper(&optimizer, &all, name)
    }
}

impl<R: Algorithm, T: Scalar> Optimizer<T> for Wrapped<R, T> {
    fn name(&self) -> &str {
        R::NAME
    }

    fn hyper_specs(&self) -> &'static [HyperSpec] {
        R::HYPERS
    }

    fn hyper(&self, name: &str) -> Result<HyperValue> {
        if Self::is_rule_hyper(name) {
            return self
                .rule
                .get_hyper(name)
                .ok_or_else(|| unknown_hyper(R::NAME, R::HYPERS, name));
        }
        self.inner.hyper(name).map_err(|e| self.widen(e, name))
    }

    fn set_hyper(&mut self, name: &str, value: HyperValue) -> Result<()> {
        if !Self::is_rule_hyper(name) {
            return self
                .inner
                .set_hyper(name, value)
                .map_err(|e| self.widen(e, name));
        }
        let mut rule = self.rule.clone();
        rule.set_hyper(name, value)?;
        rule.validate()?;
        self.rule = rule;
        for slot in self.slots.slots_mut() {
            slot.prune(&self.rule);
        }
        Ok(())
    }

    fn add_group(&mut self, group: Group) -> Result<()> {
        self.inner.add_group(group)
    }

    fn check(&self, params: &Params<T>, grads: &Grads<T>) -> Result<()> {
        self.inner.check(params, grads)?;
        for (index, (name, param)) in params.iter().enumerate() {
            if let Some(at) = self.slots.find(index, name) {
                self.slots.at(at).check_shape(name, param)?;
            }
        }
        Ok(())
    }

    fn step(&mut self, params: &mut Params<T>, grads: &Grads<T>) -> Result<()> {
        self.check(params, grads)?;
        // A new parameter's rule state is made before the inner step (slow weights start
        // as the initial parameters) but kept only once that step succeeded and did not
        // skip the parameter: a failed step changes nothing, and every kept slot takes a
        // rule step now, so none is exported at step 0 (which import refuses). A skipped
        // parameter kept its values, so its slot made at a later step starts the same.
        let mut fresh = Vec::new();
        for (index, (name, param)) in params.iter().enumerate() {
            if self.slots.locate(index, name).is_none() {
                fresh.push((index, Slot::new(&self.rule, param, StatePrecision::Full)));
            }
        }
        self.inner.step(params, grads)?;
        self.n += 1;
        // A parameter the inner optimizer skipped (non-finite gradient) is left alone.
        let skipped = self.inner.skipped();
        let is_skipped = |name: &str| !skipped.is_empty() && skipped.iter().any(|s| s == name);
        for (index, slot) in fresh {
            if let Some((name, _)) = params.entry(index) {
                if !is_skipped(name) {
                    let at = self.slots.insert(name, slot);
                    self.slots.remember(index, at);
                }
            }
        }
        for (index, (name, param)) in params.iter_mut().enumerate() {
            let Some(at) = self.slots.find(index, name) else {
                continue; // skipped at its first step: no rule state yet
            };
            let slot = self.slots.at_mut(at);
            if is_skipped(name) {
                continue;
            }
            slot.prepare(&self.rule, param);
            slot.t += 1;
            let rule = &self.rule;
            let n = self.n;
            let Slot {
                shape,
                scalars,
                states,
                work,
                ..
            } = slot;
            with_flat(param, &mut self.wbuf, |w| {
                rule.step(n, shape, scalars, w, GradView::None, states, work)
            });
        }
        Ok(())
    }

    fn step_count(&self, name: &str) -> Option<u64> {
        self.inner.step_count(name)
    }

    fn export_state(&self) -> OptimizerState {
        OptimizerState {
            format_version: STATE_FORMAT_VERSION,
            optimizer: R::NAME.to_string(),
            hyper: export_hyper(&self.rule),
            groups: Vec::new(),
            step: self.n,
            params: self
                .slots
                .sorted()
                .into_iter()
                .map(|(name, slot)| slot.export(name, &self.rule))
                .collect(),
            globals: Vec::new(),
            inner: Some(Box::new(self.inner.export_state())),
            routes: Vec::new(),
        }
    }

    fn import_state(&mut self, state: &OptimizerState, params: &Params<T>) -> Result<()> {
        check_header(state, R::NAME)?;
        crate::partition::reject_routes(state, R::NAME)?;
        if !state.groups.is_empty() {
            return Err(OptimError::BadState(format!(
                "{} takes no parameter groups of its own (they belong to the inner optimizer)",
                R::NAME
            )));
        }
        let Some(inner_state) = state.inner.as_deref() else {
            return Err(OptimError::BadState(format!(
                "{} state without the inner optimizer's state",
                R::NAME
            )));
        };
        let rule: R = import_hyper(&state.hyper)?;
        let slots = slot::import_all(&state.params, params, StatePrecision::Full, |_| &rule)?;
        let mut inner = self.inner.boxed_clone();
        inner.import_state(inner_state, params)?;
        self.rule = rule;
        self.slots = slots;
        self.inner = inner;
        self.n = state.step;
        Ok(())
    }

    fn boxed_clone(&self) -> Box<dyn Optimizer<T>> {
        Box::new(self.clone())
    }

    /// Forwarded to the inner optimizer, which checks the gradients; a parameter it skips
    /// is skipped by the rule too (no Lookahead sync for it at that step).
    fn set_non_finite_policy(&mut self, policy: NonFinitePolicy) -> Result<()> {
        self.inner.set_non_finite_policy(policy)
    }

    fn non_finite_policy(&self) -> NonFinitePolicy {
        self.inner.non_finite_policy()
    }

    fn skipped(&self) -> &[String] {
        self.inner.skipped()
    }

    /// Forwarded to the inner optimizer: the rule's own states are copies of the
    /// parameters (Lookahead's slow weights), which keep the parameters' precision.
    fn set_state_precision(&mut self, precision: StatePrecision) -> Result<()> {
        self.inner.set_state_precision(precision)
    }

    fn state_precision(&self) -> StatePrecision {
        self.inner.state_precision()
    }

    fn state_bytes(&self) -> usize {
        let own: usize = self.slots.slots().map(Slot::state_bytes).sum();
        own + self.inner.state_bytes()
    }

    fn elementwise(&self) -> bool {
        R::ELEMENTWISE && self.inner.elementwise()
    }

    fn global_sums(&self) -> bool {
        self.inner.global_sums()
    }

    fn set_sum_hook(&mut self, hook: Option<crate::SumHook>) -> Result<()> {
        self.inner.set_sum_hook(hook)
    }
}

impl<R: Algorithm, T: Scalar> Clone for Wrapped<R, T> {
    fn clone(&self) -> Self {
        Wrapped {
            rule: self.rule.clone(),
            inner: self.inner.boxed_clone(),
            n: self.n,
            slots: self.slots.clone(),
            wbuf: Vec::new(),
        }
    }
}

impl<R: Algorithm, T: Scalar> fmt::Debug for Wrapped<R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wrapped")
            .field("name", &R::NAME)
            .field("rule", &self.rule)
            .field("inner", &self.inner)
            .field("steps", &self.n)
            .field("params_with_state", &self.slots.len())
            .finish()
    }
}
