//! [`Partition`]: one independent optimizer per route, each parameter routed by a selector
//! (Muon for the hidden matrices, AdamW for the rest: optax's `partition`, Keras'
//! per-variable optimizers).

use crate::error::{OptimError, Result};
use crate::group::{Group, Selector};
use crate::hyper::{HyperSpec, HyperValue};
use crate::nonfinite::NonFinitePolicy;
use crate::optim::check_header;
use crate::optimizer::Optimizer;
use crate::params::{Grads, Params};
use crate::precision::StatePrecision;
use crate::scalar::Scalar;
use crate::state::{OptimizerState, RouteState, STATE_FORMAT_VERSION};
use crate::suggest::closest;
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;
use std::fmt;

/// The registry name of [`Partition`].
pub const PARTITION: &str = "partition";

/// The prefix of a hyperparameter name that addresses one route: `routes.<i>.<name>`.
const ROUTES_PREFIX: &str = "routes.";

/// Which parameters a route takes. Every condition given must hold; a selector with no
/// condition ([`RouteSelect::all`]) takes every parameter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteSelect {
    /// The exact number of dimensions (`2` for matrices).
    pub ndim: Option<usize>,
    /// Which names ([`Selector::NameContains`]: any of the substrings;
    /// [`Selector::Names`]: exactly these names).
    pub name: Option<Selector>,
}

impl RouteSelect {
    /// Every parameter (a catch-all route).
    pub fn all() -> Self {
        RouteSelect::default()
    }

    /// Only parameters with exactly `ndim` dimensions.
    pub fn ndim(mut self, ndim: usize) -> Self {
        self.ndim = Some(ndim);
        self
    }

    /// Only parameters whose name contains one of `parts`.
    pub fn name_contains<S: Into<String>>(mut self, parts: impl IntoIterator<Item = S>) -> Self {
        self.name = Some(Selector::NameContains(
            parts.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Only the parameters named in `names`.
    pub fn names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.name = Some(Selector::Names(names.into_iter().map(Into::into).collect()));
        self
    }

    /// Whether the selector takes every parameter.
    pub fn is_catch_all(&self) -> bool {
        self.ndim.is_none() && self.name.is_none()
    }

    /// Whether the parameter `name` of shape `shape` meets every condition.
    pub fn matches(&self, name: &str, shape: &[usize]) -> bool {
        self.ndim.is_none_or(|n| n == shape.len())
            && self.name.as_ref().is_none_or(|s| s.matches(name))
    }

    /// Why the selector can never match, or matches everything by accident.
    fn problem(&self) -> Option<&'static str> {
        match &self.name {
            Some(Selector::Names(names)) if names.is_empty() => Some("it lists no names"),
            Some(Selector::NameContains(parts)) if parts.is_empty() => {
                Some("it lists no name parts")
            }
            Some(Selector::NameContains(parts)) if parts.iter().any(String::is_empty) => {
                Some("an empty name part would match every parameter; leave the selector out for a catch-all route")
            }
            _ => None,
        }
    }
}

impl fmt::Display for RouteSelect {
    /// `ndim = 2, name contains "enc" or "dec"`; `every parameter` for a catch-all.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_catch_all() {
            return f.write_str("every parameter");
        }
        let quoted = |v: &[String]| {
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(" or ")
        };
        let mut parts = Vec::new();
        if let Some(n) = self.ndim {
            parts.push(format!("ndim = {n}"));
        }
        match &self.name {
            Some(Selector::NameContains(p)) => parts.push(format!("name contains {}", quoted(p))),
            Some(Selector::Names(n)) => parts.push(format!("name is {}", quoted(n))),
            None => {}
        }
        f.write_str(&parts.join(", "))
    }
}

/// One route of a [`Partition`]: a selector and the optimizer of the parameters it takes.
#[derive(Debug)]
pub struct Route<T: Scalar> {
    select: RouteSelect,
    optimizer: Box<dyn Optimizer<T>>,
}

impl<T: Scalar> Route<T> {
    /// The parameters `select` takes go to `optimizer`.
    pub fn new(select: RouteSelect, optimizer: Box<dyn Optimizer<T>>) -> Self {
        Route { select, optimizer }
    }

    /// Every parameter that reaches this route goes to `optimizer` (put it last).
    pub fn all(optimizer: Box<dyn Optimizer<T>>) -> Self {
        Route::new(RouteSelect::all(), optimizer)
    }

    /// The selector.
    pub fn select(&self) -> &RouteSelect {
        &self.select
    }

    /// The route's optimizer.
    pub fn optimizer(&self) -> &dyn Optimizer<T> {
        self.optimizer.as_ref()
    }
}

impl<T: Scalar> Clone for Route<T> {
    fn clone(&self) -> Self {
        Route {
            select: self.select.clone(),
            optimizer: self.optimizer.boxed_clone(),
        }
    }
}

/// One route's share of a step: its parameters and gradients.
///
/// Kept between steps so that a steady-state step allocates nothing: during a step
/// `params` holds the route's parameter arrays, moved in from the caller's [`Params`]
/// (never copied) and moved back after; between steps it holds empty placeholders.
/// `grads` holds copies of the route's gradients (the caller's are borrowed), refilled
/// in place.
#[derive(Clone, Debug, Default)]
struct RouteSet<T: Scalar> {
    params: Params<T>,
    grads: Grads<T>,
}

/// Which route every parameter and gradient of one call goes to (buffers kept between
/// steps).
#[derive(Clone, Debug, Default)]
struct Plan {
    /// Per parameter position: its route.
    param_route: Vec<usize>,
    /// Positions of the parameters without a recorded route yet.
    new_params: Vec<usize>,
    /// Per gradient, in gradient order: its route.
    grad_route: Vec<usize>,
}

/// Independent optimizers over disjoint sets of parameters, chosen per parameter by
/// selector.
///
/// Each parameter goes to the **first** route whose [`RouteSelect`] matches it; a
/// parameter no route matches is an error ([`OptimError::UnroutedParam`]) at
/// [`Optimizer::check`] and [`Optimizer::step`]: end the routes with a catch-all
/// ([`Route::all`]). A parameter's route is recorded by name at the first successful step
/// that holds it and never changes after that, whatever its shape or the selectors become
/// (a parameter whose shape changed then fails in its route's optimizer instead of
/// silently starting over in another). Every route is stepped at every step, with its
/// own parameters and the gradients among them, and keeps its own state and step counts.
///
/// A step checks every route's share (each route optimizer's own
/// [`Optimizer::check`]) before any route steps, so a failed step changes nothing (this
/// relies on the trait's contract that a step whose check passes succeeds). The
/// parameter arrays are moved into per-route sets and back, never copied; the gradients,
/// borrowed, are copied into per-route buffers kept between steps (one extra pass over
/// each gradient), so a steady-state step allocates nothing. [`Optimizer::check`] and
/// [`Optimizer::eval_params_into`], which only borrow the parameters, copy each route's
/// parameters into a temporary set.
///
/// Hyperparameters, groups and policies go to the routes:
///
/// * `set_hyper("lr", v)` sets `lr` on every route whose optimizer has it (so a
///   learning-rate schedule drives every route, with one learning rate); it fails if no
///   route has it. `set_hyper("routes.1.lr", v)` sets it on route 1 only (routes count
///   from 0; a nested partition is `routes.0.routes.1.lr`).
/// * `hyper("lr")` is the routes' common value, an error if the routes that have `lr`
///   disagree (read one with `hyper("routes.1.lr")`).
/// * [`Optimizer::hyper_specs`] is empty: a partition declares no hyperparameters of its
///   own.
/// * [`Optimizer::add_group`] adds the group to every route whose optimizer accepts it
///   (a `weight_decay` override reaches every route that has weight decay); it fails only
///   if none does.
/// * [`Optimizer::set_non_finite_policy`] sets the policy on every route;
///   [`Optimizer::skipped`] lists the parameters any route skipped, in gradient order.
///
/// Exported state nests each route's state ([`OptimizerState::routes`]) with its
/// selector and the parameters assigned to it; checkpoints store route `i`'s tensors under
/// `route/<i>/` (`route/0/param/w/m`).
pub struct Partition<T: Scalar> {
    routes: Vec<Route<T>>,
    /// The route of every parameter that has been through a successful step.
    assigned: HashMap<String, usize>,
    /// Successful steps.
    steps: u64,
    /// Parameters the last step skipped (non-finite gradients), in gradient order.
    skipped: Vec<String>,
    /// Per route, its share of the current step (see [`RouteSet`]).
    sets: Vec<RouteSet<T>>,
    plan: Plan,
    /// Per route, a position into its set or its skipped list (`exchange`,
    /// `merge_skipped`).
    cursors: Vec<usize>,
    /// The routes a plain-name `set_hyper` changed, with their previous values.
    undo: Vec<(usize, HyperValue)>,
}

impl<T: Scalar> Partition<T> {
    /// A partition over `routes`, tried in order.
    ///
    /// Fails if there are no routes, if a selector can never match (an empty list of
    /// names or name parts) or matches everything by accident (an empty name part), or
    /// if a route comes after a catch-all route (it could never be used).
    pub fn new(routes: Vec<Route<T>>) -> Result<Self> {
        if routes.is_empty() {
            return Err(OptimError::Config(
                "partition: give at least one route (and end with a catch-all route)".into(),
            ));
        }
        for (i, route) in routes.iter().enumerate() {
            if let Some(problem) = route.select.problem() {
                return Err(OptimError::Config(format!(
                    "partition route {i}: bad selector: {problem}"
                )));
            }
            if let Some(all) = routes[..i].iter().position(|r| r.select.is_catch_all()) {
                return Err(OptimError::Config(format!(
                    "partition route {i} can never be used: route {all} before it takes every \
                     parameter (put the catch-all route last)"
                )));
            }
        }
        let count = routes.len();
        Ok(Partition {
            routes,
            assigned: HashMap::new(),
            steps: 0,
            skipped: Vec::new(),
            sets: (0..count).map(|_| RouteSet::default()).collect(),
            plan: Plan::default(),
            cursors: Vec::new(),
            undo: Vec::new(),
        })
    }

    /// The routes, in order.
    pub fn routes(&self) -> &[Route<T>] {
        &self.routes
    }

    /// The route the parameter `name` is fixed to (`None` before its first step).
    pub fn route_of(&self, name: &str) -> Option<usize> {
        self.assigned.get(name).copied()
    }

    /// Number of successful [`Optimizer::step`] calls.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The route a parameter goes to: its recorded route, else the first that matches.
    fn route_for(&self, name: &str, shape: &[usize]) -> Option<usize> {
        self.assigned.get(name).copied().or_else(|| {
            self.routes
                .iter()
                .position(|r| r.select.matches(name, shape))
        })
    }

    /// Fills `plan` for `params` and `grads`: every parameter's route (an error for a
    /// parameter no route takes) and every gradient's (an error for a gradient of an
    /// unknown parameter).
    fn make_plan(&self, params: &Params<T>, grads: &Grads<T>, plan: &mut Plan) -> Result<()> {
        plan.param_route.clear();
        plan.new_params.clear();
        for (position, (name, array)) in params.iter().enumerate() {
            let route =
                self.route_for(name, array.shape())
                    .ok_or_else(|| OptimError::UnroutedParam {
                        name: name.to_string(),
                        shape: array.shape().to_vec(),
                    })?;
            plan.param_route.push(route);
            if !self.assigned.contains_key(name) {
                plan.new_params.push(position);
            }
        }
        plan.grad_route.clear();
        for (name, _) in grads.iter() {
            let position = params
                .index_of(name)
                .ok_or_else(|| OptimError::UnknownParam {
                    name: name.to_string(),
                    suggestion: closest(name, params.names()).map(str::to_string),
                })?;
            plan.grad_route.push(plan.param_route[position]);
        }
        Ok(())
    }

    /// Route `route`'s gradients (copies, in gradient order) into `target`.
    fn fill_grads(grads: &Grads<T>, plan: &Plan, route: usize, target: &mut Grads<T>) {
        target.refill(
            grads
                .iter()
                .zip(&plan.grad_route)
                .filter(|(_, &r)| r == route)
                .map(|(entry, _)| entry),
        );
    }

    /// Route `route`'s parameter copies, in parameter order (for the calls that only
    /// borrow the parameters).
    fn copy_params(params: &Params<T>, plan: &Plan, route: usize) -> Result<Params<T>> {
        let mut set = Params::new();
        for ((name, array), _) in params
            .iter()
            .zip(&plan.param_route)
            .filter(|(_, &r)| r == route)
        {
            set.insert(name, array.clone())?;
        }
        Ok(set)
    }

    /// Gives every route set the names of its parameters this step, in parameter order,
    /// each holding an empty placeholder; a set whose names are already those is left as
    /// it is (the steady state: nothing allocated).
    fn prepare_sets(&mut self, params: &Params<T>) -> Result<()> {
        for (route, set) in self.sets.iter_mut().enumerate() {
            let mine = || {
                params
                    .names()
                    .zip(&self.plan.param_route)
                    .filter(move |(_, &r)| r == route)
                    .map(|(name, _)| name)
            };
            if set.params.names().eq(mine()) {
                continue;
            }
            let mut fresh = Params::new();
            for name in mine() {
                fresh.insert(name, placeholder::<T>())?;
            }
            set.params = fresh;
        }
        Ok(())
    }

    /// Swaps every parameter array of `params` with its place in its route's set: the
    /// arrays move into the sets, and a second call moves them back.
    fn exchange(&mut self, params: &mut Params<T>) {
        self.cursors.clear();
        self.cursors.resize(self.sets.len(), 0);
        for (position, &route) in self.plan.param_route.iter().enumerate() {
            let at = self.cursors[route];
            self.cursors[route] += 1;
            // `prepare_sets` gave each route's set its parameters, in this order.
            if let (Some((_, outer)), Some((_, inner))) = (
                params.entry_mut(position),
                self.sets[route].params.entry_mut(at),
            ) {
                std::mem::swap(outer, inner);
            }
        }
    }

    /// Checks every route's share, then steps every route. Route 0's own step checks its
    /// share before changing anything, so only the others are checked beforehand.
    fn step_routes(&mut self) -> Result<()> {
        for (route, set) in self.routes.iter().zip(&self.sets).skip(1) {
            route.optimizer.check(&set.params, &set.grads)?;
        }
        for (route, set) in self.routes.iter_mut().zip(&mut self.sets) {
            route.optimizer.step(&mut set.params, &set.grads)?;
        }
        Ok(())
    }

    /// The union of the routes' skipped parameters, in gradient order (each route lists
    /// its own in the order of its gradients, a subsequence of `grads`).
    fn merge_skipped(&mut self, grads: &Grads<T>) {
        self.skipped.clear();
        if self.routes.iter().all(|r| r.optimizer.skipped().is_empty()) {
            return;
        }
        self.cursors.clear();
        self.cursors.resize(self.routes.len(), 0);
        for ((name, _), &route) in grads.iter().zip(&self.plan.grad_route) {
            let skipped = self.routes[route].optimizer.skipped();
            let at = self.cursors[route];
            if skipped.get(at).is_some_and(|s| s == name) {
                self.skipped.push(name.to_string());
                self.cursors[route] += 1;
            }
        }
        // Anything a route reported out of gradient order is still reported.
        for (route, &at) in self.routes.iter().zip(&self.cursors) {
            let skipped = route.optimizer.skipped();
            self.skipped.extend(skipped.iter().skip(at).cloned());
        }
    }

    /// The route index of a `routes.<i>.<name>` hyperparameter name and the rest.
    fn split_route_name<'n>(&self, name: &'n str) -> Result<Option<(usize, &'n str)>> {
        let Some(rest) = name.strip_prefix(ROUTES_PREFIX) else {
            return Ok(None);
        };
        let parsed = rest
            .split_once('.')
            .and_then(|(i, inner)| Some((i.parse::<usize>().ok()?, inner)));
        match parsed {
            Some((i, inner)) if i < self.routes.len() && !inner.is_empty() => Ok(Some((i, inner))),
            _ => Err(OptimError::Config(format!(
                "partition: `{name}` names no route's hyperparameter: write \
                 `routes.<i>.<name>` with a route index from 0 to {}",
                self.routes.len() - 1
            ))),
        }
    }

    /// The routes whose optimizer has the hyperparameter `name`, or the error for a name
    /// none of them has (with the closest of all their names).
    fn declaring(&self, name: &str) -> Result<Vec<usize>> {
        let mut found = Vec::new();
        let mut valid: Vec<String> = Vec::new();
        for (i, route) in self.routes.iter().enumerate() {
            match route.optimizer.hyper(name) {
                Err(OptimError::UnknownHyper { valid: names, .. }) => {
                    for n in names {
                        if !valid.contains(&n) {
                            valid.push(n);
                        }
                    }
                }
                // Declared, even where it has no single value (a nested partition whose
                // routes disagree).
                _ => found.push(i),
            }
        }
        if found.is_empty() {
            return Err(OptimError::UnknownHyper {
                optimizer: PARTITION.to_string(),
                name: name.to_string(),
                suggestion: closest(name, valid.iter().map(String::as_str)).map(str::to_string),
                valid,
            });
        }
        Ok(found)
    }

    /// Sets the plain-named hyperparameter `name` on every route that has it: each
    /// value is checked against every such route's declared kind and range first, and if
    /// a route still refuses it (a constraint between hyperparameters), the routes already
    /// changed get their previous value back.
    fn set_on_every_route(&mut self, name: &str, value: HyperValue) -> Result<()> {
        let mut any = false;
        for route in &self.routes {
            if !has_hyper(route.optimizer.as_ref(), name) {
                continue;
            }
            any = true;
            let optimizer = route.optimizer.as_ref();
            if let Some(spec) = optimizer.hyper_specs().iter().find(|s| s.name == name) {
                spec.check(optimizer.name(), value)?;
            }
        }
        if !any {
            return Err(self.declaring(name).err().unwrap_or_else(|| {
                OptimError::Config(format!("partition: no route has hyperparameter `{name}`"))
            }));
        }
        let mut undo = std::mem::take(&mut self.undo);
        undo.clear();
        let mut outcome = Ok(());
        for (i, route) in self.routes.iter_mut().enumerate() {
            if !has_hyper(route.optimizer.as_ref(), name) {
                continue;
            }
            // `None` for a nested partition whose routes disagree: not restorable as one
            // value (its own routes' checks came first, though).
            let previous = route.optimizer.hyper(name).ok();
            if let Err(e) = route.optimizer.set_hyper(name, value) {
                outcome = Err(in_route(i, e));
                break;
            }
            if let Some(previous) = previous {
                undo.push((i, previous));
            }
        }
        if outcome.is_err() {
            for &(i, previous) in undo.iter().rev() {
                // The value it held a moment ago: accepted then, accepted now.
                let _ = self.routes[i].optimizer.set_hyper(name, previous);
            }
        }
        self.undo = undo;
        outcome
    }
}

/// Whether `optimizer` declares the hyperparameter `name` (it may have no single value:
/// a nested partition whose routes disagree).
fn has_hyper<T: Scalar>(optimizer: &dyn Optimizer<T>, name: &str) -> bool {
    !matches!(optimizer.hyper(name), Err(OptimError::UnknownHyper { .. }))
}

/// The error for routes in the state of an optimizer that is not a partition.
pub(crate) fn reject_routes(state: &OptimizerState, optimizer: &str) -> Result<()> {
    if state.routes.is_empty() {
        return Ok(());
    }
    Err(OptimError::BadState(format!(
        "the state holds the routes of a partition, but {optimizer} has no routes"
    )))
}

/// An empty array that stands in for a parameter moved out of a route set.
fn placeholder<T: Scalar>() -> ArrayD<T> {
    ArrayD::zeros(IxDyn(&[0]))
}

/// `err` with the route it came from added to its message: `partition route 1 (adam): ...`
/// where the error names an optimizer, else prefixed. Used for errors of one route's
/// configuration, state or hyperparameters.
pub fn in_route(route: usize, err: OptimError) -> OptimError {
    let context = |optimizer: String| format!("partition route {route} ({optimizer})");
    match err {
        OptimError::UnknownHyper {
            optimizer,
            name,
            suggestion,
            valid,
        } => OptimError::UnknownHyper {
            optimizer: context(optimizer),
            name,
            suggestion,
            valid,
        },
        OptimError::HyperKind {
            optimizer,
            name,
            expected,
            got,
        } => OptimError::HyperKind {
            optimizer: context(optimizer),
            name,
            expected,
            got,
        },
        OptimError::HyperRange {
            optimizer,
            name,
            value,
            range,
        } => OptimError::HyperRange {
            optimizer: context(optimizer),
            name,
            value,
            range,
        },
        OptimError::Config(msg) => OptimError::Config(format!("partition route {route}: {msg}")),
        OptimError::BadState(msg) => OptimError::BadState(format!("route {route}: {msg}")),
        OptimError::BadGroup(msg) => OptimError::BadGroup(format!("route {route}: {msg}")),
        other => other,
    }
}

impl<T: Scalar> Optimizer<T> for Partition<T> {
    fn name(&self) -> &str {
        PARTITION
    }

    /// None: a partition has no hyperparameters of its own (see [`Partition`] for how
    /// names reach the routes).
    fn hyper_specs(&self) -> &'static [HyperSpec] {
        &[]
    }

    fn hyper(&self, name: &str) -> Result<HyperValue> {
        if let Some((i, inner)) = self.split_route_name(name)? {
            return self.routes[i]
                .optimizer
                .hyper(inner)
                .map_err(|e| in_route(i, e));
        }
        let values = self
            .declaring(name)?
            .into_iter()
            .map(|i| {
                let value = self.routes[i].optimizer.hyper(name);
                value.map(|v| (i, v)).map_err(|e| in_route(i, e))
            })
            .collect::<Result<Vec<_>>>()?;
        match values.as_slice() {
            [(_, first), rest @ ..] if rest.iter().all(|(_, v)| v == first) => Ok(*first),
            _ => Err(OptimError::Config(format!(
                "partition: the routes disagree on `{name}` ({}); read one route's with \
                 `routes.<i>.{name}`",
                values
                    .iter()
                    .map(|(i, v)| format!("route {i}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn set_hyper(&mut self, name: &str, value: HyperValue) -> Result<()> {
        match self.split_route_name(name)? {
            Some((i, inner)) => self.routes[i]
                .optimizer
                .set_hyper(inner, value)
                .map_err(|e| in_route(i, e)),
            None => self.set_on_every_route(name, value),
        }
    }

    /// Adds `group` to every route whose optimizer accepts it; fails, changing nothing,
    /// if none does (the error lists each route's reason).
    fn add_group(&mut self, group: Group) -> Result<()> {
        let mut reasons = Vec::new();
        for (i, route) in self.routes.iter_mut().enumerate() {
            if let Err(e) = route.optimizer.add_group(group.clone()) {
                reasons.push(format!("route {i} ({}): {e}", route.optimizer.name()));
            }
        }
        if reasons.len() == self.routes.len() {
            return Err(OptimError::BadGroup(format!(
                "no route of the partition accepts it: {}",
                reasons.join("; ")
            )));
        }
        Ok(())
    }

    fn check(&self, params: &Params<T>, grads: &Grads<T>) -> Result<()> {
        let mut plan = Plan::default();
        self.make_plan(params, grads, &mut plan)?;
        let mut route_grads = Grads::new();
        for (i, route) in self.routes.iter().enumerate() {
            let route_params = Self::copy_params(params, &plan, i)?;
            Self::fill_grads(grads, &plan, i, &mut route_grads);
            route.optimizer.check(&route_params, &route_grads)?;
        }
        Ok(())
    }

    fn step(&mut self, params: &mut Params<T>, grads: &Grads<T>) -> Result<()> {
        let mut plan = std::mem::take(&mut self.plan);
        let planned = self.make_plan(params, grads, &mut plan);
        self.plan = plan;
        planned?;
        self.prepare_sets(params)?;
        for (route, set) in self.sets.iter_mut().enumerate() {
            Self::fill_grads(grads, &self.plan, route, &mut set.grads);
        }
        self.exchange(params);
        let stepped = self.step_routes();
        self.exchange(params);
        stepped?;
        for &position in &self.plan.new_params {
            if let Some((name, _)) = params.entry(position) {
                self.assigned
                    .insert(name.to_string(), self.plan.param_route[position]);
            }
        }
        self.merge_skipped(grads);
        self.steps += 1;
        Ok(())
    }

    fn step_count(&self, name: &str) -> Option<u64> {
        let route = self.route_of(name)?;
        self.routes[route].optimizer.step_count(name)
    }

    fn export_state(&self) -> OptimizerState {
        let mut assigned: Vec<Vec<String>> = vec![Vec::new(); self.routes.len()];
        for (name, &route) in &self.assigned {
            assigned[route].push(name.clone());
        }
        let routes = self
            .routes
            .iter()
            .zip(assigned)
            .map(|(route, mut params)| {
                params.sort_unstable();
                RouteState {
                    select: route.select.clone(),
                    params,
                    state: route.optimizer.export_state(),
                }
            })
            .collect();
        OptimizerState {
            format_version: STATE_FORMAT_VERSION,
            optimizer: PARTITION.to_string(),
            hyper: Vec::new(),
            groups: Vec::new(),
            step: self.steps,
            params: Vec::new(),
            globals: Vec::new(),
            inner: None,
            routes,
        }
    }

    /// Checks everything first: the header, the number of routes, each route's selector
    /// and optimizer against this partition's, that every assigned parameter is among
    /// `params` and assigned once, that each route holds state only for its own
    /// parameters, and then each route's own import (into a copy). Nothing changes
    /// unless all of it fits.
    fn import_state(&mut self, state: &OptimizerState, params: &Params<T>) -> Result<()> {
        check_header(state, PARTITION)?;
        let own = [
            ("hyperparameters", state.hyper.is_empty()),
            ("parameter groups", state.groups.is_empty()),
            ("per-parameter state", state.params.is_empty()),
            ("a wrapped optimizer", state.inner.is_none()),
        ];
        if let Some((what, _)) = own.iter().find(|(_, absent)| !absent) {
            return Err(OptimError::BadState(format!(
                "the state gives the partition {what} of its own; a partition keeps all of \
                 that in its routes"
            )));
        }
        if state.routes.len() != self.routes.len() {
            return Err(OptimError::BadState(format!(
                "the state has {} routes, this partition {}",
                state.routes.len(),
                self.routes.len()
            )));
        }
        let mut assigned: HashMap<String, usize> = HashMap::new();
        for (i, (saved, route)) in state.routes.iter().zip(&self.routes).enumerate() {
            if saved.select != route.select {
                return Err(OptimError::BadState(format!(
                    "route {i} takes {} in the state, {} in this partition",
                    saved.select, route.select
                )));
            }
            if saved.state.optimizer != route.optimizer.name() {
                return Err(OptimError::BadState(format!(
                    "route {i}: the state is for optimizer `{}`, this route's optimizer is `{}`",
                    saved.state.optimizer,
                    route.optimizer.name()
                )));
            }
            for name in &saved.params {
                if params.get(name).is_none() {
                    let hint = closest(name, params.names())
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return Err(OptimError::BadState(format!(
                        "route {i}: parameter `{name}` is not among the parameters{hint}"
                    )));
                }
                if let Some(other) = assigned.insert(name.clone(), i) {
                    return Err(OptimError::BadState(format!(
                        "parameter `{name}` is assigned to both route {other} and route {i}"
                    )));
                }
            }
            if let Some(p) = saved
                .state
                .params
                .iter()
                .find(|p| !saved.params.contains(&p.param))
            {
                return Err(OptimError::BadState(format!(
                    "route {i} holds state for parameter `{}`, which the state does not \
                     assign to it",
                    p.param
                )));
            }
        }
        let mut imported = Vec::with_capacity(self.routes.len());
        for (i, (saved, route)) in state.routes.iter().zip(&self.routes).enumerate() {
            let mut route_params = Params::new();
            for name in &saved.params {
                if let Some(array) = params.get(name) {
                    route_params.insert(name, array.clone())?;
                }
            }
            let mut optimizer = route.optimizer.boxed_clone();
            optimizer
                .import_state(&saved.state, &route_params)
                .map_err(|e| in_route(i, e))?;
            imported.push(optimizer);
        }
        for (route, optimizer) in self.routes.iter_mut().zip(imported) {
            route.optimizer = optimizer;
        }
        self.assigned = assigned;
        self.steps = state.step;
        self.skipped.clear();
        Ok(())
    }

    fn boxed_clone(&self) -> Box<dyn Optimizer<T>> {
        Box::new(self.clone())
    }

    /// Each route's evaluation weights for its own parameters (schedule-free's `x` for a
    /// schedule-free route, the parameters themselves for most). `out` is written in
    /// place when it already has `params`' layout; each route's parameters are copied
    /// into a temporary set for its optimizer.
    fn eval_params_into(&self, params: &Params<T>, out: &mut Params<T>) -> Result<()> {
        let mut plan = Plan::default();
        self.make_plan(params, &Grads::new(), &mut plan)?;
        if !out.same_layout(params) {
            out.copy_from(params);
        }
        for (i, route) in self.routes.iter().enumerate() {
            let route_params = Self::copy_params(params, &plan, i)?;
            // The route writes into `out`'s own arrays, moved in and back.
            let mut route_out = Params::new();
            let positions = || (0..params.len()).filter(|&p| plan.param_route[p] == i);
            // `out` has `params`' layout (made so above): every position is in it.
            for position in positions() {
                let Some((name, array)) = out.entry_mut(position) else {
                    continue;
                };
                let array = std::mem::replace(array, placeholder::<T>());
                route_out.insert(name, array)?;
            }
            let written = route
                .optimizer
                .eval_params_into(&route_params, &mut route_out);
            let layout_kept = route_out.same_layout(&route_params);
            for (k, position) in positions().enumerate() {
                if let (Some((_, mine)), Some((_, theirs))) =
                    (out.entry_mut(position), route_out.entry_mut(k))
                {
                    std::mem::swap(mine, theirs);
                }
            }
            written?;
            if !layout_kept {
                return Err(OptimError::Config(format!(
                    "partition route {i} ({}): its evaluation weights do not have its \
                     parameters' names and shapes",
                    route.optimizer.name()
                )));
            }
        }
        Ok(())
    }

    /// Sets `policy` on every route; if a route refuses it, the routes already changed
    /// get their previous policy back.
    fn set_non_finite_policy(&mut self, policy: NonFinitePolicy) -> Result<()> {
        let previous: Vec<NonFinitePolicy> = self
            .routes
            .iter()
            .map(|r| r.optimizer.non_finite_policy())
            .collect();
        for i in 0..self.routes.len() {
            if let Err(e) = self.routes[i].optimizer.set_non_finite_policy(policy) {
                for (route, &p) in self.routes[..i].iter_mut().zip(&previous) {
                    let _ = route.optimizer.set_non_finite_policy(p);
                }
                return Err(in_route(i, e));
            }
        }
        Ok(())
    }

    /// Sets `precision` on every route; if a route refuses it, every route is restored
    /// as it was (from a copy: a conversion back would lose what the compact one dropped).
    fn set_state_precision(&mut self, precision: StatePrecision) -> Result<()> {
        let before: Vec<Box<dyn Optimizer<T>>> = self
            .routes
            .iter()
            .map(|r| r.optimizer.boxed_clone())
            .collect();
        for i in 0..self.routes.len() {
            if let Err(e) = self.routes[i].optimizer.set_state_precision(precision) {
                for (route, old) in self.routes.iter_mut().zip(before) {
                    route.optimizer = old;
                }
                return Err(in_route(i, e));
            }
        }
        Ok(())
    }

    /// The first route's precision (every route's, once set through the partition).
    fn state_precision(&self) -> StatePrecision {
        self.routes
            .first()
            .map_or(StatePrecision::Full, |r| r.optimizer.state_precision())
    }

    fn state_bytes(&self) -> usize {
        self.routes.iter().map(|r| r.optimizer.state_bytes()).sum()
    }

    /// The first route's policy (every route's, once set through the partition).
    fn non_finite_policy(&self) -> NonFinitePolicy {
        self.routes.first().map_or(NonFinitePolicy::Propagate, |r| {
            r.optimizer.non_finite_policy()
        })
    }

    fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// A route's sums cover only its parameters: a partition takes no sum hook (the
    /// default refuses one), but says when a route sums.
    fn global_sums(&self) -> bool {
        self.routes.iter().any(|r| r.optimizer.global_sums())
    }
}

impl<T: Scalar> Clone for Partition<T> {
    fn clone(&self) -> Self {
        Partition {
            routes: self.routes.clone(),
            assigned: self.assigned.clone(),
            steps: self.steps,
            skipped: self.skipped.clone(),
            sets: (0..self.routes.len())
                .map(|_| RouteSet::default())
                .collect(),
            plan: Plan::default(),
            cursors: Vec::new(),
            undo: Vec::new(),
        }
    }
}

impl<T: Scalar> fmt::Debug for Partition<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partition")
            .field("name", &PARTITION)
            .field("routes", &self.routes)
            .field("steps", &self.steps)
            .field("params_assigned", &self.assigned.len())
            .finish()
    }
}
