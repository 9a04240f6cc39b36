//! Stage 2: meaning. Turns the parsed declarations into the typed [`Model`]: resolves every
//! name, types and classifies every expression, and reports each misuse at its token with
//! a way to fix it.

use crate::errors::{did_you_mean, Ctxt};
use crate::model::*;
use crate::parse::{Args, HyperDecl, Role, Settings};
use proc_macro2::{Ident, Span};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::Lit;

mod calls;
mod hyper;
mod sign;

use hyper::hyper;
pub use hyper::show_range;

/// Most distinct per-step conditions hoisted out of the element loop by choice. The
/// generated code compiles one element loop per combination of hoisted conditions
/// (`maximize` included): 2^6 loops take ~12 s to compile in a debug build, 2^11 take
/// minutes and gigabytes. Further per-step `if` conditions are evaluated in the loop.
const MAX_HOISTED: usize = 5;

/// Most hoisted conditions in all, counting those that must be hoisted (`#[when]`
/// options, conditions around scalar-state updates or option-only states): with
/// `maximize`, 2^7 loops, ~30 s to compile in a debug build.
const MAX_CONDS: usize = 6;

/// Names the runtime reserves.
const RESERVED: [&str; 2] = ["t", "maximize"];

/// Methods the generated type has besides one setter per hyperparameter: a
/// hyperparameter of one of these names would clash with them.
const METHODS: [&str; 3] = ["build", "wrap", "default"];

/// Builds the model from the parsed pieces, recording every error in `cx`.
///
/// `broken` names were declared but malformed (already reported): their uses are
/// accepted silently so one mistake gives one error.
pub fn model(
    cx: &mut Ctxt,
    hyper_decls: Vec<HyperDecl>,
    func: &syn::ItemFn,
    args: Args,
    settings: Settings,
    broken: Vec<Ident>,
) -> Option<Model> {
    let mut broken: Vec<String> = broken.iter().map(ToString::to_string).collect();
    // Declared names and what they are, for duplicate checks.
    let mut names: Vec<(String, &'static str)> = Vec::new();
    // Records a declaration; `false` (after reporting) if the name cannot be used.
    let mut declare = |cx: &mut Ctxt, ident: &Ident, what: &'static str| -> bool {
        let s = ident.to_string();
        if RESERVED.contains(&s.as_str()) {
            let why = if s == "t" {
                "`t` is the step count (1 on the first step), provided by the runtime"
            } else {
                "`maximize` is declared for every optimizer automatically"
            };
            cx.spanned(
                ident,
                format!("`{s}` is reserved: {why}; choose another name"),
            );
            false
        } else if s.starts_with("__") {
            cx.spanned(
                ident,
                "names starting with `__` are reserved for generated code; choose another name",
            );
            false
        } else if what == "a hyperparameter" && METHODS.contains(&s.as_str()) {
            cx.spanned(
                ident,
                format!("`{s}` cannot name a hyperparameter: the generated type has a method `{s}` already; choose another name"),
            );
            false
        } else if let Some((_, first)) = names.iter().find(|(n, _)| *n == s) {
            cx.spanned(ident, format!("`{s}` is already declared as {first}; every hyperparameter, argument and state needs its own name"));
            false
        } else {
            names.push((s, what));
            true
        }
    };

    let mut hypers = Vec::new();
    for decl in hyper_decls {
        if !declare(cx, &decl.name, "a hyperparameter") {
            broken.push(decl.name.to_string());
            continue;
        }
        let name = decl.name.to_string();
        match hyper(cx, decl) {
            Ok(h) | Err(Some(h)) => hypers.push(h),
            Err(None) => broken.push(name),
        }
    }
    let mut args_read = args.all_read;

    let mut param = None;
    let mut grad = None;
    let mut state_args = Vec::new();
    let mut scalar_args = Vec::new();
    let mut global_args = Vec::new();
    for arg in args.decls {
        let what = match arg.role {
            Role::Param => "the parameter",
            Role::Grad => "the gradient",
            Role::State | Role::RowState | Role::ColState => "a state",
            Role::ScalarState => "a scalar state",
            Role::GlobalState => "a global state",
        };
        if !declare(cx, &arg.name, what) {
            broken.push(arg.name.to_string());
            args_read = false;
            continue;
        }
        match arg.role {
            Role::Param | Role::Grad => {
                let slot = if arg.role == Role::Param {
                    &mut param
                } else {
                    &mut grad
                };
                if let Some(attr) = arg.when.as_ref().or(arg.init.as_ref()) {
                    cx.spanned(attr, "only states take `#[when]` or `#[init]`; remove it");
                }
                if slot.is_some() {
                    cx.spanned(&arg.name, format!("a second `{:?}` argument; an optimizer steps one parameter with one gradient", arg.role));
                    broken.push(arg.name.to_string());
                } else {
                    *slot = Some(arg.name);
                }
            }
            Role::State | Role::RowState | Role::ColState => state_args.push(arg),
            Role::ScalarState => scalar_args.push(arg),
            Role::GlobalState => global_args.push(arg),
        }
    }
    let Some(param) = param else {
        if args_read {
            cx.spanned(
                &func.sig,
                "no parameter: declare one argument `w: Param` (and `g: Grad` for the gradient)",
            );
        }
        return None;
    };
    let maximize = grad.as_ref().map(|_| {
        hypers.push(Hyper {
            name: Ident::new("maximize", Span::call_site()),
            kind: HyperKind::Bool,
            default: Value::Bool(false),
            lo: Bound::Unbounded,
            hi: Bound::Unbounded,
            doc: "Maximize the objective (gradient ascent): the gradient is negated before the update.".into(),
        });
        hypers.len() - 1
    });

    let fn_name = syn::ext::IdentExt::unraw(&func.sig.ident).to_string();
    let mut lower = Lower {
        pending: Vec::new(),
        reductions: Vec::new(),
        matrices: Vec::new(),
        red_scopes: vec![Vec::new()],
        epoch: 0,
        value_depth: 0,
        assigns_in_values: Vec::new(),
        state_shapes: state_args
            .iter()
            .map(|a| match a.role {
                Role::RowState => Shape::Row,
                Role::ColState => Shape::Col,
                _ => Shape::Elem,
            })
            .collect(),
        broken,
        incomplete: false,
        when_reported: vec![false; state_args.len()],
        poisoned_locals: Vec::new(),
        cx,
        hypers: &hypers,
        param: param.clone(),
        grad: grad.clone(),
        states: state_args.iter().map(|a| a.name.clone()).collect(),
        state_when: vec![None; state_args.len()],
        scalars: scalar_args.iter().map(|a| a.name.clone()).collect(),
        globals: global_args.iter().map(|a| a.name.clone()).collect(),
        assigned_globals: vec![false; global_args.len()],
        hoisted_levels: Vec::new(),
        scopes: vec![Vec::new()],
        locals: 0,
        conds: Vec::new(),
        known: Vec::new(),
        inline_depth: 0,
        assigned_param: false,
        assigned_states: vec![false; state_args.len()],
        assigned_scalars: vec![false; scalar_args.len()],
    };

    let mut states = Vec::new();
    for (i, arg) in state_args.iter().enumerate() {
        let when = arg.when.as_ref().and_then(|e| lower.when_cond(e));
        lower.state_when[i] = when.map(|k| lower.conds[k].0.clone());
        let init = match &arg.init {
            None => Init::Fill(float(0.0)),
            Some(e) if is_ident(e, &param) => Init::CopyOfParam,
            Some(e) => Init::Fill(lower.const_value(e, "an initial value")),
        };
        if lower.state_shapes[i] != Shape::Elem && matches!(init, Init::CopyOfParam) {
            if let Some(e) = &arg.init {
                lower.cx.spanned(e, format!("`{}` holds one value per row or column, so it cannot start as a copy of the parameter; give a number, as in `#[init(0.0)]`", arg.name));
            }
        }
        states.push(State {
            name: arg.name.clone(),
            init,
            when,
            shape: lower.state_shapes[i],
            never_negative: false,
        });
    }
    let mut scalars = Vec::new();
    for arg in &scalar_args {
        if let Some(w) = &arg.when {
            lower.cx.spanned(
                w,
                "scalar states always exist; `#[when]` applies to element-wise states",
            );
        }
        let init = match &arg.init {
            None => float(0.0),
            Some(e) => lower.const_value(e, "an initial value"),
        };
        scalars.push(ScalarState {
            name: arg.name.clone(),
            init,
        });
    }
    let mut globals = Vec::new();
    for arg in &global_args {
        if let Some(w) = &arg.when {
            lower.cx.spanned(
                w,
                "global states always exist; `#[when]` applies to element-wise states",
            );
        }
        if grad.is_none() {
            lower.cx.spanned(&arg.name, "a wrapper rule runs per parameter after its inner optimizer; optimizer-wide states (`GlobalState`) are for optimizers");
        }
        let init = match &arg.init {
            None => float(0.0),
            Some(e) => lower.const_value(e, "an initial value"),
        };
        globals.push(ScalarState {
            name: arg.name.clone(),
            init,
        });
    }

    let body = lower.block_stmts(&func.block.stmts);
    let eval = settings.eval.as_ref().and_then(|e| lower.eval_weights(e));
    if grad.is_none() && lower.reductions.iter().any(|r| r.op == RedOp::TotalSum) {
        lower.cx.spanned(&func.sig.ident, "a wrapper rule runs per parameter after its inner optimizer, so it cannot sum over every parameter (`total_sum`)");
    }
    let passes = !lower.reductions.is_empty()
        || !lower.matrices.is_empty()
        || lower.state_shapes.iter().any(|s| *s != Shape::Elem);
    if passes {
        for span in std::mem::take(&mut lower.assigns_in_values) {
            lower.cx.at(span, "with reductions, matrix functions or row/column states, assign states in statements (`if c { m = ...; } else { ... }`), not inside an `if` or block used as a value: the macro splits the body into passes by statement");
        }
    }
    if settings.lazy_rows
        && (!lower.reductions.is_empty()
            || !lower.matrices.is_empty()
            || lower.state_shapes.iter().any(|s| *s != Shape::Elem))
    {
        lower.cx.spanned(&func.sig.ident, "`#[sparse(lazy)]` steps only the rows present, but reductions, matrix functions and row/column states need every element; remove `#[sparse(lazy)]` (a sparse gradient is then made dense)");
    }

    // Part of the body could not be read: it may hold the updates, so don't guess.
    let incomplete = lower.incomplete;
    if !lower.assigned_param && !incomplete {
        let eg = match &grad {
            Some(g) => format!("`{param} -= lr * {g};`"),
            None => format!("`{param} = ...;`"),
        };
        lower.cx.spanned(
            &param,
            format!("the parameter `{param}` is never updated; add its update rule, such as {eg}"),
        );
    }
    for (i, s) in states.iter().enumerate() {
        // A state given an initial value may be only read (MADGRAD's and Prodigy's x0).
        let read_only_ok = state_args[i].init.is_some();
        if !lower.assigned_states[i] && !incomplete && !read_only_ok {
            lower.cx.spanned(
                &s.name,
                format!("state `{0}` is never updated; assign it in the body (e.g. `{0} = beta * {0} + (1.0 - beta) * g;`) or remove it", s.name),
            );
        }
    }
    for (i, s) in globals.iter().enumerate() {
        if !lower.assigned_globals[i] && !incomplete && global_args[i].init.is_none() {
            lower.cx.spanned(
                &s.name,
                format!(
                    "global state `{0}` is never updated; assign it in the body or remove it",
                    s.name
                ),
            );
        }
    }
    for (i, s) in scalars.iter().enumerate() {
        if !lower.assigned_scalars[i] && !incomplete && scalar_args[i].init.is_none() {
            lower.cx.spanned(
                &s.name,
                format!(
                    "scalar state `{0}` is never updated; assign it in the body or remove it",
                    s.name
                ),
            );
        }
    }
    let conds: Vec<Expr> = lower.conds.into_iter().map(|(_, e)| e).collect();
    let (reductions, matrices) = (lower.reductions, lower.matrices);
    if conds.len() > MAX_CONDS {
        cx.spanned(
            &func.sig.ident,
            format!(
                "`{fn_name}` needs {} per-step conditions compiled out of its element loop (`#[when]` options, and conditions around scalar-state updates or option-only states), and each combination is its own loop: at most {MAX_CONDS} are supported; combine options, or move a scalar-state update out of its `if` (`s = if c {{ a }} else {{ s }};`)",
                conds.len()
            ),
        );
        return None;
    }

    let type_name = camel(&fn_name);
    let Ok(type_ident) = syn::parse_str::<Ident>(&type_name) else {
        cx.spanned(
            &func.sig.ident,
            format!("cannot make a type name from `{fn_name}` (`{type_name}` is not a valid type name); rename the fn: `my_adam` gives the type `MyAdam`"),
        );
        return None;
    };
    let type_ident = Ident::new(&type_ident.to_string(), func.sig.ident.span());
    let name = settings.name.map_or(fn_name, |(n, _)| n);
    let source = func
        .block
        .span()
        .source_text()
        .unwrap_or_else(|| func.block.to_token_stream().to_string());
    let mut model = Model {
        vis: func.vis.clone(),
        name,
        type_name: type_ident,
        doc: settings.docs,
        lints: settings.passthrough,
        source,
        hypers,
        maximize,
        grad,
        states,
        scalars,
        globals,
        lazy_rows: settings.lazy_rows,
        conds,
        reductions,
        matrices,
        eval,
        body,
    };
    let signs = sign::never_negative(&model);
    for (state, never_negative) in model.states.iter_mut().zip(signs) {
        state.never_negative = never_negative;
    }
    Some(model)
}

/// `lazy_adam` → `LazyAdam`: the generated type's name.
pub(crate) fn camel(snake: &str) -> String {
    snake
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// The value of an expression already reported as wrong: accepted everywhere without
/// further errors.
fn poison() -> Expr {
    Expr {
        kind: ExprKind::Error,
        ty: Ty::Float,
        level: Level::Const,
    }
}

fn is_poison(x: &Expr) -> bool {
    matches!(x.kind, ExprKind::Error)
}

fn float(x: f64) -> Expr {
    Expr {
        kind: ExprKind::Float(x),
        ty: Ty::Float,
        level: Level::Const,
    }
}

fn is_ident(e: &syn::Expr, name: &Ident) -> bool {
    matches!(e, syn::Expr::Path(p) if p.path.is_ident(name))
}

/// [`Expr::visit`], as the submodules call it.
fn visit_expr(x: &Expr, f: &mut impl FnMut(&Expr)) {
    x.visit(f)
}

/// Lowering of the body: name resolution, typing, classification.
struct Lower<'a> {
    /// Reductions and matrix functions met in the statement being lowered, placed before
    /// it (`Stmt::Reduce`, `Stmt::MatrixArg`).
    pending: Vec<Stmt>,
    reductions: Vec<Reduction>,
    matrices: Vec<MatrixFn>,
    /// Reductions already computed and still valid, per block: key (name, arguments,
    /// assignment epoch) and index. Reused instead of computed again.
    red_scopes: Vec<Vec<(String, usize)>>,
    /// Counts assignments: a reduction of the same expression after one is a new one.
    epoch: usize,
    /// Per state: its shape (element, row, column).
    state_shapes: Vec<Shape>,
    /// Depth of `if` values and blocks around this point.
    value_depth: usize,
    /// Assignments inside `if` values or blocks (rejected in definitions with passes).
    assigns_in_values: Vec<Span>,
    cx: &'a mut Ctxt,
    /// Names declared but malformed (already reported): uses are accepted silently.
    broken: Vec<String>,
    /// Whether some statement could not be read (its assignments are unknown).
    incomplete: bool,
    /// Per state: whether its use outside its option was reported already.
    when_reported: Vec<bool>,
    /// Locals whose value is an error: uses are accepted silently.
    poisoned_locals: Vec<usize>,
    hypers: &'a [Hyper],
    param: Ident,
    grad: Option<Ident>,
    states: Vec<Ident>,
    /// The condition key each optional state needs to be known true.
    state_when: Vec<Option<String>>,
    scalars: Vec<Ident>,
    globals: Vec<Ident>,
    assigned_globals: Vec<bool>,
    /// Levels of the hoisted conditions around this point.
    hoisted_levels: Vec<Level>,
    /// Locals in scope: name, id, type, level.
    scopes: Vec<Vec<(String, usize, Ty, Level)>>,
    locals: usize,
    /// Distinct hoisted conditions, keyed by their tokens.
    conds: Vec<(String, Expr)>,
    /// Condition keys known to hold at this point (enclosing `if` arms).
    known: Vec<String>,
    /// Depth of per-element (not hoisted) conditions around this point.
    inline_depth: usize,
    assigned_param: bool,
    assigned_states: Vec<bool>,
    assigned_scalars: Vec<bool>,
}

fn key_of(e: &syn::Expr) -> String {
    strip_parens(e).to_token_stream().to_string()
}

fn strip_parens(e: &syn::Expr) -> &syn::Expr {
    match e {
        syn::Expr::Paren(p) => strip_parens(&p.expr),
        other => other,
    }
}

/// The key of the condition that holds in the `else` of `e`: the opposite comparison, or
/// the operand of a `!`.
fn complement_key(e: &syn::Expr) -> Option<String> {
    use syn::BinOp as B;
    match strip_parens(e) {
        syn::Expr::Unary(u) if matches!(u.op, syn::UnOp::Not(_)) => Some(key_of(&u.expr)),
        syn::Expr::Binary(b) => {
            let op: syn::BinOp = match b.op {
                B::Lt(_) => syn::parse_quote!(>=),
                B::Le(_) => syn::parse_quote!(>),
                B::Gt(_) => syn::parse_quote!(<=),
                B::Ge(_) => syn::parse_quote!(<),
                B::Eq(_) => syn::parse_quote!(!=),
                B::Ne(_) => syn::parse_quote!(==),
                _ => return None,
            };
            let mut flipped = b.clone();
            flipped.op = op;
            Some(key_of(&syn::Expr::Binary(flipped)))
        }
        _ => None,
    }
}

/// The conjuncts of `a && b && c`, as keys.
fn conjunct_keys(e: &syn::Expr, out: &mut Vec<String>) {
    out.push(key_of(e));
    if let syn::Expr::Binary(b) = strip_parens(e) {
        if matches!(b.op, syn::BinOp::And(_)) {
            conjunct_keys(&b.left, out);
            conjunct_keys(&b.right, out);
        }
    }
}

impl Lower<'_> {
    fn err(&mut self, tokens: impl ToTokens, msg: impl std::fmt::Display) -> Expr {
        self.cx.spanned(tokens, msg);
        poison()
    }

    /// Reports syntax the language does not have; what it contained is unknown.
    fn unsupported(&mut self, e: &syn::Expr) -> Expr {
        self.incomplete = true;
        self.err(e, unsupported(e))
    }

    /// A `#[when(...)]` condition: a per-construction boolean.
    fn when_cond(&mut self, e: &syn::Expr) -> Option<usize> {
        let x = self.expr(e);
        if is_poison(&x) {
            return None;
        }
        if x.ty != Ty::Bool || !only_options_and_shape(&x) {
            self.cx.spanned(e, "`#[when(...)]` takes a condition on hyperparameters and the tensor's shape only, such as `#[when(amsgrad)]`, `#[when(momentum > 0.0)]` or `#[when(ndim >= 2)]`");
            return None;
        }
        Some(self.hoist_cond(key_of(e), x))
    }

    fn hoist_cond(&mut self, key: String, x: Expr) -> usize {
        if let Some(i) = self.conds.iter().position(|(k, _)| *k == key) {
            return i;
        }
        self.conds.push((key, x));
        self.conds.len() - 1
    }

    /// The `#[eval(...)]` expression: per element, from the parameter and states.
    fn eval_weights(&mut self, e: &syn::Expr) -> Option<Expr> {
        let first = self.pending.len();
        let x = self.expr(e);
        if self.pending.len() > first {
            self.pending.truncate(first);
            self.cx.spanned(e, "the evaluation weights are computed per element from the parameter and its states; reductions and matrix functions cannot appear in `#[eval(...)]`");
            return None;
        }
        if is_poison(&x) {
            return None;
        }
        self.expect_ty(&x, Ty::Float, e, "the evaluation weights");
        Some(x)
    }

    /// A per-construction float (initial values).
    fn const_value(&mut self, e: &syn::Expr, what: &str) -> Expr {
        let x = self.expr(e);
        if is_poison(&x) {
            return x;
        }
        if x.ty != Ty::Float || x.level != Level::Const {
            let p = &self.param;
            return self.err(e, format!("{what} must be a number computed from hyperparameters and literals, or `{p}` (a copy of the parameter)"));
        }
        x
    }

    fn lookup_local(&self, name: &str) -> Option<usize> {
        self.scopes
            .iter()
            .rev()
            .find_map(|scope| scope.iter().rev().find(|(n, ..)| n == name))
            .map(|&(_, id, ..)| id)
    }

    /// What to say about a name that is not declared.
    fn not_found(&self, name: &str) -> String {
        if self.grad.is_none() && (name == "g" || name == "grad") {
            return format!("cannot find `{name}`: this rule declares no gradient; add `g: Grad` to its arguments to read one");
        }
        let names = self.all_names();
        let hint = did_you_mean(name, names.iter().map(String::as_str));
        if hint.is_empty() {
            format!("cannot find `{name}` in this optimizer; declare it as a hyperparameter (`#[optimizer({name} = 0.5)]`), a state (`{name}: State`) or a `let` binding")
        } else {
            format!("cannot find `{name}` in this optimizer{hint}")
        }
    }

    fn lookup(&self, name: &str) -> Option<Var> {
        if let Some(id) = self.lookup_local(name) {
            return Some(Var::Local(id));
        }
        if name == "t" {
            return Some(Var::Step);
        }
        if self.param == name {
            return Some(Var::Param);
        }
        if self.grad.as_ref().is_some_and(|g| g == name) {
            return Some(Var::Grad);
        }
        if let Some(i) = self.hypers.iter().position(|h| h.name == name) {
            return Some(Var::Hyper(i));
        }
        if let Some(i) = self.states.iter().position(|s| s == name) {
            return Some(Var::State(i));
        }
        if let Some(i) = self.scalars.iter().position(|s| s == name) {
            return Some(Var::Scalar(i));
        }
        if let Some(i) = self.globals.iter().position(|s| s == name) {
            return Some(Var::Global(i));
        }
        if let Some(&(_, v)) = ShapeVar::ALL.iter().find(|(n, _)| *n == name) {
            return Some(Var::Shape(v));
        }
        None
    }

    fn all_names(&self) -> Vec<String> {
        let mut v: Vec<String> = vec!["t".into(), self.param.to_string()];
        v.extend(self.grad.iter().map(ToString::to_string));
        v.extend(self.hypers.iter().map(|h| h.name.to_string()));
        v.extend(self.states.iter().map(ToString::to_string));
        v.extend(self.scalars.iter().map(ToString::to_string));
        v.extend(self.globals.iter().map(ToString::to_string));
        for s in &self.scopes {
            v.extend(s.iter().map(|(n, ..)| n.clone()));
        }
        v
    }

    fn var_info(&self, v: Var) -> (Ty, Level) {
        match v {
            Var::Hyper(i) => (
                if self.hypers[i].kind == HyperKind::Bool {
                    Ty::Bool
                } else {
                    Ty::Float
                },
                Level::Const,
            ),
            Var::Step | Var::Scalar(_) => (Ty::Float, Level::Step),
            Var::Global(_) => (Ty::Float, Level::Global),
            Var::Shape(_) => (Ty::Float, Level::Tensor),
            Var::Param | Var::Grad | Var::Matrix(_) => (Ty::Float, Level::Elem),
            Var::State(i) => (Ty::Float, self.state_shapes[i].level()),
            Var::Reduced(k) => (Ty::Float, self.reductions[k].level),
            Var::Local(id) => self
                .scopes
                .iter()
                .flatten()
                .find(|(_, i, ..)| *i == id)
                .map(|&(_, _, t, l)| (t, l))
                .unwrap_or((Ty::Float, Level::Const)),
        }
    }

    /// Reports use of an optional state outside its option.
    fn check_when(&mut self, i: usize, tokens: &impl ToTokens) {
        if let Some(key) = &self.state_when[i] {
            // Once per state: every later use has the same fix.
            if !self.known.contains(key) && !self.when_reported[i] {
                self.when_reported[i] = true;
                let name = &self.states[i];
                let msg = format!(
                    "state `{name}` exists only when `{key}`; use it inside `if {key} {{ ... }}`"
                );
                self.cx.spanned(tokens, msg);
            }
        }
    }

    fn name(&mut self, path: &syn::ExprPath) -> Expr {
        let Some(ident) = path.path.get_ident().filter(|_| path.qself.is_none()) else {
            return self.err(
                path,
                "expected a plain name; paths are not part of the equation language",
            );
        };
        let name = ident.to_string();
        if self.broken.contains(&name) && self.lookup_local(&name).is_none() {
            return poison();
        }
        let Some(var) = self.lookup(&name) else {
            return self.err(ident, self.not_found(&name));
        };
        if let Var::Local(id) = var {
            if self.poisoned_locals.contains(&id) {
                return poison();
            }
        }
        if let Var::State(i) = var {
            self.check_when(i, ident);
        }
        let (ty, level) = self.var_info(var);
        Expr {
            kind: ExprKind::Var(var),
            ty,
            level,
        }
    }

    fn expect_ty(&mut self, x: &Expr, ty: Ty, tokens: &impl ToTokens, what: &str) {
        if x.ty == ty || is_poison(x) {
            return;
        }
        let text = tokens.to_token_stream().to_string();
        let msg = match ty {
            Ty::Float => format!("{what} must be a number, but `{text}` is a condition (bool); choose a number with `if {text} {{ 1.0 }} else {{ 0.0 }}`"),
            Ty::Bool => format!("{what} must be a condition (bool), but `{text}` is a number; compare it, as in `{text} > 0.0`"),
        };
        self.cx.spanned(tokens, msg);
    }

    fn expr(&mut self, e: &syn::Expr) -> Expr {
        use syn::Expr as E;
        match e {
            E::Lit(l) => match &l.lit {
                Lit::Float(f) => match hyper::finite_float(self.cx, f) {
                    Some(x) => float(x),
                    None => poison(),
                },
                Lit::Int(i) => match i.base10_parse::<i64>() {
                    Ok(x) => Expr {
                        kind: ExprKind::Int(x),
                        ty: Ty::Float,
                        level: Level::Const,
                    },
                    Err(err) => self.err(i, err),
                },
                Lit::Bool(b) => Expr {
                    kind: ExprKind::Bool(b.value),
                    ty: Ty::Bool,
                    level: Level::Const,
                },
                other => self.err(
                    other,
                    "only numbers and `true`/`false` are literals in equations",
                ),
            },
            E::Path(p) => self.name(p),
            E::Paren(p) => self.expr(&p.expr),
            E::Group(g) => self.expr(&g.expr),
            E::Unary(u) => {
                let x = self.expr(&u.expr);
                match u.op {
                    syn::UnOp::Neg(_) => {
                        self.expect_ty(&x, Ty::Float, &u.expr, "the operand of `-`");
                        Expr {
                            ty: Ty::Float,
                            level: x.level,
                            kind: ExprKind::Neg(Box::new(x)),
                        }
                    }
                    syn::UnOp::Not(_) => {
                        self.expect_ty(&x, Ty::Bool, &u.expr, "the operand of `!`");
                        Expr {
                            ty: Ty::Bool,
                            level: x.level,
                            kind: ExprKind::Not(Box::new(x)),
                        }
                    }
                    _ => self.err(u, "unsupported operator; equations use `-` and `!`"),
                }
            }
            E::Binary(b) => self.binary(b),
            E::Call(c) => {
                let syn::Expr::Path(p) = &*c.func else {
                    return self.err(&c.func, "expected a function name such as `sqrt`");
                };
                let Some(ident) = p.path.get_ident() else {
                    return self.err(&c.func, "expected a function name such as `sqrt`");
                };
                let args: Vec<&syn::Expr> = c.args.iter().collect();
                self.call(ident, args, c)
            }
            E::MethodCall(m) => {
                if m.turbofish.is_some() {
                    return self.err(m, "turbofish is not part of the equation language");
                }
                let mut args: Vec<&syn::Expr> = vec![&m.receiver];
                args.extend(m.args.iter());
                self.call(&m.method, args, m)
            }
            E::If(i) => self.if_expr(i),
            E::Block(b) if b.label.is_none() => {
                self.value_depth += 1;
                let block = self.block(&b.block.stmts);
                self.value_depth -= 1;
                match &block.tail {
                    Some(t) => Expr {
                        ty: t.ty,
                        level: block_level(&block),
                        kind: ExprKind::Block(Box::new(block)),
                    },
                    None => self.err(b, "this block needs a value as its last expression"),
                }
            }
            other => self.unsupported(other),
        }
    }

    fn binary(&mut self, b: &syn::ExprBinary) -> Expr {
        use syn::BinOp as B;
        let op = match b.op {
            B::Add(_) => BinOp::Add,
            B::Sub(_) => BinOp::Sub,
            B::Mul(_) => BinOp::Mul,
            B::Div(_) => BinOp::Div,
            B::Rem(_) => BinOp::Rem,
            B::Lt(_) => BinOp::Lt,
            B::Le(_) => BinOp::Le,
            B::Gt(_) => BinOp::Gt,
            B::Ge(_) => BinOp::Ge,
            B::Eq(_) => BinOp::Eq,
            B::Ne(_) => BinOp::Ne,
            B::And(_) => BinOp::And,
            B::Or(_) => BinOp::Or,
            B::AddAssign(_) | B::SubAssign(_) | B::MulAssign(_) | B::DivAssign(_) => {
                return self.err(
                    b,
                    "an assignment is a statement; end it with `;` and do not use it as a value",
                );
            }
            _ => {
                return self.err(
                    b.op,
                    "unsupported operator; equations use + - * / % comparisons && ||",
                )
            }
        };
        let l = self.expr(&b.left);
        let r = self.expr(&b.right);
        if is_poison(&l) || is_poison(&r) {
            return poison();
        }
        let (operand, result) = match op {
            BinOp::And | BinOp::Or => (Ty::Bool, Ty::Bool),
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                (Ty::Float, Ty::Float)
            }
            BinOp::Eq | BinOp::Ne if l.ty == Ty::Bool => (Ty::Bool, Ty::Bool),
            _ => (Ty::Float, Ty::Bool),
        };
        self.expect_ty(&l, operand, &b.left, "this operand");
        self.expect_ty(&r, operand, &b.right, "this operand");
        Expr {
            ty: result,
            level: l.level.join(r.level),
            kind: ExprKind::Binary(op, Box::new(l), Box::new(r)),
        }
    }

    /// The condition of an `if`, hoisted if it does not depend on elements.
    ///
    /// Past [`MAX_HOISTED`] distinct conditions, a new per-step condition is evaluated in
    /// the element loop instead (a branch on a value computed once per step), unless its
    /// branches must be compiled out or run once per step (see `needs_hoisting`).
    fn cond(&mut self, i: &syn::ExprIf) -> Cond {
        let e = &*i.cond;
        let x = self.expr(e);
        self.expect_ty(&x, Ty::Bool, e, "an `if` condition");
        if !x.level.is_scalar() {
            return Cond::Inline(x);
        }
        let key = key_of(e);
        let hoisted_already = self.conds.iter().any(|(k, _)| *k == key);
        if !hoisted_already && self.conds.len() >= MAX_HOISTED && !self.needs_hoisting(i) {
            return Cond::Inline(x);
        }
        Cond::Hoisted(self.hoist_cond(key, x))
    }

    /// Whether the branches of `i` update a scalar state (done once per step, guarded by
    /// hoisted conditions only) or touch an option-only state (whose accesses are compiled
    /// out when its option is off): then its condition must be hoisted.
    fn needs_hoisting(&self, i: &syn::ExprIf) -> bool {
        use syn::visit::Visit;
        struct Scan<'a> {
            lower: &'a Lower<'a>,
            found: bool,
        }
        impl<'ast> Visit<'ast> for Scan<'_> {
            fn visit_expr_assign(&mut self, a: &'ast syn::ExprAssign) {
                self.found |= self.lower.is_scalar(&a.left);
                syn::visit::visit_expr_assign(self, a);
            }
            fn visit_expr_binary(&mut self, b: &'ast syn::ExprBinary) {
                use syn::BinOp as B;
                let compound = matches!(
                    b.op,
                    B::AddAssign(_) | B::SubAssign(_) | B::MulAssign(_) | B::DivAssign(_)
                );
                self.found |= compound && self.lower.is_scalar(&b.left);
                syn::visit::visit_expr_binary(self, b);
            }
            fn visit_ident(&mut self, i: &'ast Ident) {
                let optional = |(s, when): (&Ident, &Option<String>)| when.is_some() && s == i;
                self.found |= self
                    .lower
                    .states
                    .iter()
                    .zip(&self.lower.state_when)
                    .any(optional);
            }
        }
        let mut scan = Scan {
            lower: self,
            found: false,
        };
        scan.visit_block(&i.then_branch);
        if let Some((_, e)) = &i.else_branch {
            scan.visit_expr(e);
        }
        scan.found
    }

    /// Whether `e` names a scalar or global state (assigned once per step, outside the
    /// element loop: its condition must be hoisted).
    fn is_scalar(&self, e: &syn::Expr) -> bool {
        matches!(strip_parens(e), syn::Expr::Path(p)
            if self.scalars.iter().chain(&self.globals).any(|s| p.path.is_ident(s)))
    }

    /// Lowers a branch with the condition's keys known true (then) or not (else).
    fn arm(
        &mut self,
        cond_expr: &syn::Expr,
        cond: &Cond,
        then: bool,
        stmts: &[syn::Stmt],
    ) -> Block {
        let before = self.known.len();
        if then {
            conjunct_keys(cond_expr, &mut self.known);
        } else if let Some(key) = complement_key(cond_expr) {
            // The `else` of `ndim >= 2` knows `ndim < 2` (and of `!amsgrad`, `amsgrad`).
            self.known.push(key);
        }
        let inline = matches!(cond, Cond::Inline(_));
        let hoisted_level = match cond {
            Cond::Hoisted(k) => Some(self.conds[*k].1.level),
            Cond::Inline(_) => None,
        };
        self.hoisted_levels.extend(hoisted_level);
        self.inline_depth += usize::from(inline);
        let block = self.block(stmts);
        self.inline_depth -= usize::from(inline);
        if hoisted_level.is_some() {
            self.hoisted_levels.pop();
        }
        self.known.truncate(before);
        block
    }

    fn else_stmts(&mut self, i: &syn::ExprIf) -> Option<Vec<syn::Stmt>> {
        let (_, e) = i.else_branch.as_ref()?;
        Some(match &**e {
            syn::Expr::Block(b) => b.block.stmts.clone(),
            other => vec![syn::Stmt::Expr(other.clone(), None)],
        })
    }

    fn if_expr(&mut self, i: &syn::ExprIf) -> Expr {
        self.value_depth += 1;
        let x = self.if_value(i);
        self.value_depth -= 1;
        x
    }

    fn if_value(&mut self, i: &syn::ExprIf) -> Expr {
        let cond = self.cond(i);
        let then = self.arm(&i.cond, &cond, true, &i.then_branch.stmts);
        let Some(else_stmts) = self.else_stmts(i) else {
            return self.err(i, "an `if` used as a value needs an `else` branch");
        };
        let otherwise = self.arm(&i.cond, &cond, false, &else_stmts);
        let (Some(a), Some(b)) = (&then.tail, &otherwise.tail) else {
            return self.err(
                i,
                "both branches of an `if` used as a value must end with a value",
            );
        };
        if is_poison(a) || is_poison(b) {
            return poison();
        }
        if a.ty != b.ty {
            return self.err(
                i,
                "the two branches of this `if` have different types: one is a number, the other a condition (bool)",
            );
        }
        let ty = a.ty;
        let cond_level = match &cond {
            Cond::Hoisted(k) => self.conds[*k].1.level,
            Cond::Inline(x) => x.level,
        };
        let level = cond_level
            .join(block_level(&then))
            .join(block_level(&otherwise));
        Expr {
            kind: ExprKind::If(Box::new(cond), Box::new(then), Box::new(otherwise)),
            ty,
            level,
        }
    }

    fn block(&mut self, stmts: &[syn::Stmt]) -> Block {
        self.scopes.push(Vec::new());
        self.red_scopes.push(Vec::new());
        let (first_local, first_pending) = (self.locals, self.pending.len());
        let (body, tail) = match stmts.split_last() {
            Some((syn::Stmt::Expr(e, None), rest)) if !is_statement_expr(e) => (rest, Some(e)),
            _ => (stmts, None),
        };
        let stmts = self.stmts(body);
        let tail_value = tail.map(|e| self.expr(e));
        // Reductions in a block's value are computed before the statement holding the
        // block, where the block's own `let`s do not exist yet.
        let uses_own = self
            .pending
            .get(first_pending..)
            .unwrap_or_default()
            .iter()
            .any(|p| {
                let arg = match p {
                    Stmt::Reduce(k) => self.reductions.get(*k).map(|r| &r.arg),
                    Stmt::MatrixArg(k) => self.matrices.get(*k).map(|m| &m.arg),
                    _ => None,
                };
                arg.is_some_and(|a| reads_local_from(a, first_local))
            });
        if let (true, Some(e)) = (uses_own, tail) {
            self.pending.truncate(first_pending);
            self.cx.spanned(e, "a reduction or matrix function in the value of an `if` or block cannot use a `let` of that branch; bind the `let` before the `if`");
        }
        let tail = tail_value;
        self.red_scopes.pop();
        self.scopes.pop();
        Block { stmts, tail }
    }

    fn block_stmts(&mut self, stmts: &[syn::Stmt]) -> Vec<Stmt> {
        let block = self.block(stmts);
        // A trailing value at top level has nowhere to go (unless it was reported).
        if block.tail.as_ref().is_some_and(|t| !is_poison(t)) {
            if let Some(syn::Stmt::Expr(e, None)) = stmts.last() {
                self.cx.spanned(
                    e,
                    "a value on its own does nothing; assign it, e.g. `w -= ...;`",
                );
            }
        }
        block.stmts
    }

    fn stmts(&mut self, stmts: &[syn::Stmt]) -> Vec<Stmt> {
        let mut out = Vec::new();
        for s in stmts {
            let first_pending = self.pending.len();
            let lowered = match s {
                syn::Stmt::Local(l) => self.let_stmt(l),
                syn::Stmt::Expr(e, _) => self.expr_stmt(e),
                _ => None,
            };
            // Reductions and matrix operands are taken just before the statement that
            // uses them.
            out.extend(self.pending.drain(first_pending..));
            out.extend(lowered);
            match s {
                syn::Stmt::Local(_) | syn::Stmt::Expr(..) => {}
                syn::Stmt::Item(item) => {
                    self.incomplete = true;
                    self.cx.spanned(item, "items (fn, struct, use, ...) cannot appear in the equations; define helpers outside the optimizer")
                }
                syn::Stmt::Macro(m) => {
                    self.incomplete = true;
                    self.cx.spanned(m, "macros cannot appear in the equations; write the update with operators and the built-in functions")
                }
            }
        }
        out
    }

    fn let_stmt(&mut self, l: &syn::Local) -> Option<Stmt> {
        // The bound name and the type written for it, if any.
        let (pat, ty) = match &l.pat {
            syn::Pat::Type(pt) => (&*pt.pat, Some(&*pt.ty)),
            other => (other, None),
        };
        let ident = match pat {
            syn::Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                if let Some(m) = &p.mutability {
                    self.cx.spanned(m, "`let` bindings are values, not variables: remove `mut` and bind a new name for a new value, or declare a state");
                }
                Some(&p.ident)
            }
            other => {
                self.cx.spanned(
                    other,
                    "expected `let name = value;`: patterns are not part of the equation language",
                );
                // Names bound by the pattern are not reported again where they are used.
                collect_idents(other.to_token_stream(), &mut self.broken);
                None
            }
        };
        let written_ty = ty.and_then(|ty| match ty.to_token_stream().to_string().as_str() {
            "f64" | "f32" => Some(Ty::Float),
            "bool" => Some(Ty::Bool),
            other => {
                self.cx.spanned(ty, format!("unsupported type `{other}`: values are numbers (`f64`) or conditions (`bool`)"));
                None
            }
        });
        if let Some((_, diverge)) = l.init.as_ref().and_then(|i| i.diverge.as_ref()) {
            self.cx.spanned(
                diverge,
                "`let ... else` is not part of the equation language; remove the `else` branch",
            );
        }
        let value = match &l.init {
            Some(init) => self.expr(&init.expr),
            None => {
                self.cx
                    .spanned(l, "a `let` needs a value: `let name = value;`");
                poison()
            }
        };
        if let Some(ty) = written_ty {
            let what = format!(
                "the value of this `let` (declared `{}`)",
                if ty == Ty::Float { "f64" } else { "bool" }
            );
            self.expect_ty(&value, ty, &l.init.as_ref()?.expr, &what);
        }
        let ident = ident?;
        let name = ident.to_string();
        let shadows_builtin = matches!(self.lookup(&name), Some(Var::Shape(_)));
        if name.starts_with("__") || (self.lookup(&name).is_some() && !shadows_builtin) {
            let what = match self.lookup(&name) {
                Some(Var::Local(_)) => "a `let` binding",
                Some(Var::Hyper(_)) => "a hyperparameter",
                Some(Var::Step) => "the step count",
                Some(Var::Param) => "the parameter",
                Some(Var::Grad) => "the gradient",
                Some(Var::State(_) | Var::Scalar(_) | Var::Global(_)) => "a state",
                Some(Var::Shape(_) | Var::Reduced(_) | Var::Matrix(_)) | None => {
                    "reserved for generated code"
                }
            };
            self.cx.spanned(
                ident,
                format!(
                    "`{name}` is already {}{what}; choose a new name for this `let`",
                    if what.starts_with("reserved") {
                        ""
                    } else {
                        "declared as "
                    }
                ),
            );
            return None;
        }
        let id = self.locals;
        self.locals += 1;
        if is_poison(&value) {
            self.poisoned_locals.push(id);
        }
        if let Some(scope) = self.scopes.last_mut() {
            scope.push((name, id, value.ty, value.level));
        }
        Some(Stmt::Let { local: id, value })
    }

    fn expr_stmt(&mut self, e: &syn::Expr) -> Option<Stmt> {
        use syn::BinOp as B;
        match e {
            syn::Expr::Assign(a) => self.assign(&a.left, None, &a.right),
            syn::Expr::Binary(b) => {
                let op = match b.op {
                    B::AddAssign(_) => BinOp::Add,
                    B::SubAssign(_) => BinOp::Sub,
                    B::MulAssign(_) => BinOp::Mul,
                    B::DivAssign(_) => BinOp::Div,
                    _ => {
                        self.cx.spanned(
                            e,
                            "a value on its own does nothing; assign it, e.g. `w -= ...;`",
                        );
                        return None;
                    }
                };
                self.assign(&b.left, Some(op), &b.right)
            }
            syn::Expr::If(i) => {
                let cond = self.cond(i);
                let then = self.arm(&i.cond, &cond, true, &i.then_branch.stmts);
                let otherwise = self
                    .else_stmts(i)
                    .map(|s| self.arm(&i.cond, &cond, false, &s));
                for b in std::iter::once(&then).chain(otherwise.as_ref()) {
                    if b.tail.as_ref().is_some_and(|t| !is_poison(t)) {
                        self.cx.spanned(
                            i,
                            "a statement `if` has no value; end each branch's assignments with `;`",
                        );
                        break;
                    }
                }
                Some(Stmt::If {
                    cond,
                    then,
                    otherwise,
                })
            }
            other => {
                self.unsupported(other);
                None
            }
        }
    }

    fn assign(&mut self, left: &syn::Expr, op: Option<BinOp>, right: &syn::Expr) -> Option<Stmt> {
        let target = self.target(left);
        let value = self.expr(right);
        let (target, ident) = target?;
        let name = ident.to_string();
        self.expect_ty(&value, Ty::Float, right, "the assigned value");
        self.epoch += 1;
        if self.value_depth > 0 {
            self.assigns_in_values.push(ident.span());
        }
        if let Target::State(i) = target {
            let shape = self.state_shapes[i];
            let fits = value.level.join(shape.level()) == shape.level();
            if shape != Shape::Elem && !fits && !is_poison(&value) {
                let (one, reduce) = if shape == Shape::Row {
                    ("row", "row_mean(...)` or `row_sum(...)")
                } else {
                    ("column", "col_mean(...)` or `col_sum(...)")
                };
                self.cx.spanned(right, format!("`{name}` holds one value per {one}, but this value differs per element{}; reduce it with `{reduce}`", if value.level == Level::Elem { "" } else { " (it mixes rows and columns)" }));
            }
            if shape != Shape::Elem && self.inline_depth > 0 {
                self.cx.spanned(&ident, format!("`{name}` holds one value per row or column, so it cannot be assigned under a per-element condition"));
            }
        }
        if let Target::Global(_) = target {
            if value.level > Level::Global && !is_poison(&value) {
                self.cx.spanned(right, format!("global state `{name}` is one number for the whole optimizer, but this value differs per parameter (it reads `t`, a per-parameter state, a shape or a per-tensor reduction); sum it over every parameter with `total_sum(...)` or keep it per parameter in a `ScalarState`"));
            }
            if self.inline_depth > 0 || self.hoisted_levels.iter().any(|l| *l > Level::Global) {
                self.cx.spanned(&ident, format!("global state `{name}` is assigned once per step for the whole optimizer, so it cannot be under a condition that differs per parameter or per element"));
            }
        }
        if let Target::Scalar(_) = target {
            if !value.level.is_scalar() && !is_poison(&value) {
                self.cx.spanned(right, format!("scalar state `{name}` holds one number per parameter, but this value differs per element (it reads the parameter, the gradient or an element-wise state); declare `{name}: State` for a per-element value, or reduce it (`sum`, `mean`, `norm`, ...)"));
            }
            if self.inline_depth > 0 {
                self.cx.spanned(
                    ident,
                    format!(
                        "scalar state `{name}` cannot be assigned under a per-element condition; declare `{name}: State` for a per-element value"
                    ),
                );
            }
        }
        Some(Stmt::Assign { target, op, value })
    }

    /// What the left side of an assignment writes; `None` after reporting why it cannot
    /// be written (or silently for a broken name).
    fn target(&mut self, left: &syn::Expr) -> Option<(Target, Ident)> {
        let syn::Expr::Path(p) = strip_parens(left) else {
            let what = match strip_parens(left) {
                syn::Expr::Index(_) => {
                    "; the body sees one element at a time, so assign the name itself (`w -= ...`)"
                }
                _ => "",
            };
            self.cx.spanned(
                left,
                format!("only the parameter, the gradient and states can be assigned{what}"),
            );
            return None;
        };
        let Some(ident) = p.path.get_ident().filter(|_| p.qself.is_none()) else {
            self.cx.spanned(
                left,
                "expected a plain name: the parameter, the gradient or a state",
            );
            return None;
        };
        let name = ident.to_string();
        if self.broken.contains(&name) && self.lookup_local(&name).is_none() {
            return None;
        }
        let target = match self.lookup(&name) {
            Some(Var::Param) => {
                self.assigned_param = true;
                Target::Param
            }
            Some(Var::Grad) => Target::Grad,
            Some(Var::State(i)) => {
                self.check_when(i, ident);
                self.assigned_states[i] = true;
                Target::State(i)
            }
            Some(Var::Scalar(i)) => {
                self.assigned_scalars[i] = true;
                Target::Scalar(i)
            }
            Some(Var::Global(i)) => {
                self.assigned_globals[i] = true;
                Target::Global(i)
            }
            Some(Var::Shape(_) | Var::Reduced(_) | Var::Matrix(_)) => {
                self.cx.spanned(
                    ident,
                    format!("cannot assign to `{name}`: it is the tensor's shape, provided by the runtime; bind a derived value with `let`"),
                );
                return None;
            }
            Some(Var::Hyper(_)) => {
                self.cx.spanned(ident, format!("cannot assign to hyperparameter `{name}`: hyperparameters are read-only in the equations; declare a state (`{name}_state: State`) for a value that changes"));
                return None;
            }
            Some(Var::Step) => {
                self.cx.spanned(
                    ident,
                    "cannot assign to the step count `t`: the runtime advances it once per step; bind a derived value with `let`, as in `let t1 = t + 1.0;`",
                );
                return None;
            }
            Some(Var::Local(id)) => {
                if !self.poisoned_locals.contains(&id) {
                    self.cx.spanned(ident, format!("cannot assign to `{name}`: `let` bindings are values; bind a new name with `let` instead, or declare a state"));
                }
                return None;
            }
            None => {
                self.cx.spanned(ident, self.not_found(&name));
                return None;
            }
        };
        Some((target, ident.clone()))
    }
}

/// Every identifier in `tokens`, as strings.
fn collect_idents(tokens: proc_macro2::TokenStream, out: &mut Vec<String>) {
    for tt in tokens {
        match tt {
            proc_macro2::TokenTree::Ident(i) => out.push(i.to_string()),
            proc_macro2::TokenTree::Group(g) => collect_idents(g.stream(), out),
            _ => {}
        }
    }
}

fn block_level(b: &Block) -> Level {
    let mut l = b.tail.as_ref().map_or(Level::Const, |t| t.level);
    for s in &b.stmts {
        l = l.join(match s {
            Stmt::Let { value, .. } => value.level,
            Stmt::Reduce(_) | Stmt::MatrixArg(_) => Level::Const,
            Stmt::Assign { .. } | Stmt::If { .. } => Level::Elem,
        });
    }
    l
}

/// Whether `x` reads a `let` numbered `first` or later.
fn reads_local_from(x: &Expr, first: usize) -> bool {
    let mut found = false;
    x.visit(&mut |e| found |= matches!(e.kind, ExprKind::Var(Var::Local(id)) if id >= first));
    found
}

/// Whether `x` reads only hyperparameters, literals and shape values (a `#[when]`
/// condition: fixed for a tensor once its optimizer is built).
fn only_options_and_shape(x: &Expr) -> bool {
    let mut ok = true;
    x.visit(&mut |e| {
        if let ExprKind::Var(v) = e.kind {
            ok &= matches!(v, Var::Hyper(_) | Var::Shape(_));
        }
    });
    ok
}

/// Whether a trailing expression without `;` is really a statement: an assignment, or an
/// `if` whose branches end in statements (`if c { w -= x; }`).
fn is_statement_expr(e: &syn::Expr) -> bool {
    match e {
        syn::Expr::Assign(_) => true,
        syn::Expr::If(i) => !matches!(
            i.then_branch.stmts.last(),
            Some(syn::Stmt::Expr(e, None)) if !is_statement_expr(e)
        ),
        syn::Expr::Binary(b) => matches!(
            b.op,
            syn::BinOp::AddAssign(_)
                | syn::BinOp::SubAssign(_)
                | syn::BinOp::MulAssign(_)
                | syn::BinOp::DivAssign(_)
        ),
        _ => false,
    }
}

/// What to say about syntax the equation language does not have.
fn unsupported(e: &syn::Expr) -> String {
    let what = match e {
        syn::Expr::ForLoop(_) | syn::Expr::While(_) | syn::Expr::Loop(_) => {
            return "loops are not part of the equation language: the body already runs once per element; write the update for one element".into()
        }
        syn::Expr::Closure(_) => "closures",
        syn::Expr::Index(_) => "indexing (the body sees one element at a time)",
        syn::Expr::Field(_) => "field access",
        syn::Expr::Return(_) | syn::Expr::Break(_) | syn::Expr::Continue(_) => "control flow (`return`, `break`)",
        syn::Expr::Macro(_) => "macros",
        syn::Expr::Reference(_) => "references",
        syn::Expr::Cast(_) => "casts (`t` and integer hyperparameters are numbers already)",
        syn::Expr::Match(_) => "`match` (use `if`/`else`)",
        syn::Expr::Unsafe(_) => "`unsafe` blocks",
        syn::Expr::Tuple(_) | syn::Expr::Array(_) => "tuples and arrays",
        _ => "this syntax",
    };
    format!("unsupported in optimizer equations: {what}")
}
