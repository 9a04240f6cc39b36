//! Calls in the equations: element-wise functions, reductions over the tensor (or its rows
//! and columns) and matrix functions, each with the rules of its level.
//!
//! A reduction or a matrix function is recorded in the model where it is first written
//! (`Stmt::Reduce`/`Stmt::MatrixArg`, placed just before the statement that uses it) and
//! read back as a variable ([`Var::Reduced`], [`Var::Matrix`]).

use super::{is_poison, key_of, poison, Lower};
use crate::errors::did_you_mean;
use crate::model::*;
use proc_macro2::Ident;
use quote::ToTokens;

/// The matrix functions: name and arguments, for messages.
const NEWTON_SCHULZ: &str = "newton_schulz(x, steps, a, b, c, eps)";

/// Every callable name, for "did you mean" and the list in messages.
fn all_callables() -> Vec<&'static str> {
    let mut v: Vec<&str> = Func::ALL.iter().map(|(n, ..)| *n).collect();
    v.extend(RedOp::ALL.iter().map(|(n, ..)| *n));
    v.push("newton_schulz");
    v
}

/// What a level means to a user, for messages.
fn level_text(level: Level) -> &'static str {
    match level {
        Level::Const | Level::Global | Level::Step | Level::Tensor => "one number per tensor",
        Level::Matrix => "one value per matrix of the last two dimensions",
        Level::Row => "one value per row",
        Level::Col => "one value per column",
        Level::Elem => "a value per element",
    }
}

/// Whether `x` is an integer whatever the hyperparameters: integer literals, integral
/// float literals, `t`, integer hyperparameters and shape values, and `+ - *` of those.
fn is_integer(x: &Expr, hypers: &[Hyper]) -> bool {
    match &x.kind {
        ExprKind::Int(_) => true,
        ExprKind::Float(v) => v.fract() == 0.0,
        ExprKind::Var(Var::Step | Var::Shape(_)) => true,
        ExprKind::Var(Var::Hyper(i)) => hypers.get(*i).is_some_and(|h| h.kind == HyperKind::Int),
        ExprKind::Neg(a) => is_integer(a, hypers),
        ExprKind::Binary(BinOp::Add | BinOp::Sub | BinOp::Mul, a, b) => {
            is_integer(a, hypers) && is_integer(b, hypers)
        }
        _ => false,
    }
}

impl Lower<'_> {
    pub(super) fn call(
        &mut self,
        ident: &Ident,
        args: Vec<&syn::Expr>,
        whole: &impl ToTokens,
    ) -> Expr {
        let name = ident.to_string();
        if let Some((op, arity)) = RedOp::lookup(&name) {
            return self.reduction(op, arity, &name, &args, whole);
        }
        if name == "newton_schulz" {
            return self.matrix_fn(&args, whole);
        }
        let Some((func, arity)) = Func::lookup(&name) else {
            let all = all_callables();
            let hint = did_you_mean(&name, all.iter().copied());
            let extra = if matches!(name.as_str(), "total_sum" | "global_sum" | "sum_all") {
                "; sums over every parameter of the optimizer are not part of the language yet"
            } else {
                ""
            };
            return self.err(
                ident,
                format!(
                    "unknown function `{name}`: the equations can call {}{hint}{extra}",
                    all.join(", ")
                ),
            );
        };
        let xs = match self.args_of(&name, arity, &args, whole) {
            Some(xs) => xs,
            None => return poison(),
        };
        let level = xs.iter().map(|x| x.level).fold(Level::Const, Level::join);
        if func == Func::Powi {
            if level == Level::Elem && !matches!(xs[1].kind, ExprKind::Int(_)) {
                return self.err(args[1], "in a per-element `powi` the exponent must be an integer literal; use `powf` for other exponents");
            }
            if !is_integer(&xs[1], self.hypers) {
                let text = args[1].to_token_stream().to_string();
                return self.err(args[1], format!("the exponent of `powi` must be an integer (an integer literal, `t`, an integer hyperparameter, or `+ - *` of those), but `{text}` may not be; use `powf` for other exponents"));
            }
            if let ExprKind::Int(n) = xs[1].kind {
                if i32::try_from(n).is_err() {
                    return self.err(
                        args[1],
                        "a `powi` exponent must fit in an `i32`; use `powf` for larger exponents",
                    );
                }
            }
        }
        Expr {
            kind: ExprKind::Call(func, xs),
            ty: Ty::Float,
            level,
        }
    }

    /// The arguments of a call lowered and checked to be numbers; `None` if the count is
    /// wrong or an argument is already reported.
    fn args_of(
        &mut self,
        name: &str,
        arity: usize,
        args: &[&syn::Expr],
        whole: &impl ToTokens,
    ) -> Option<Vec<Expr>> {
        if args.len() != arity {
            let usage = match arity {
                1 => format!("`{name}(x)` or `x.{name}()`"),
                2 => format!("`{name}(x, y)` or `x.{name}(y)`"),
                _ => format!("`{name}(x, lo, hi)` or `x.{name}(lo, hi)`"),
            };
            self.err(
                whole,
                format!(
                    "`{name}` takes {arity} argument{}, got {}: write {usage}",
                    if arity == 1 { "" } else { "s" },
                    args.len()
                ),
            );
            return None;
        }
        let xs: Vec<Expr> = args.iter().map(|a| self.expr(a)).collect();
        if xs.iter().any(is_poison) {
            return None;
        }
        for (x, a) in xs.iter().zip(args) {
            self.expect_ty(x, Ty::Float, a, &format!("the argument of `{name}`"));
        }
        Some(xs)
    }

    /// `sum(x)`, `norm(x)`, `row_mean(x)`, ...: one number per tensor (row, column),
    /// computed from `x` as it is where the reduction is written.
    fn reduction(
        &mut self,
        op: RedOp,
        arity: usize,
        name: &str,
        args: &[&syn::Expr],
        whole: &impl ToTokens,
    ) -> Expr {
        let Some(xs) = self.args_of(name, arity, args, whole) else {
            return poison();
        };
        let level = xs.iter().map(|x| x.level).fold(Level::Const, Level::join);
        let text = args
            .iter()
            .map(|a| a.to_token_stream().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let reduces_reduction = xs.iter().any(reads_reduction);
        let ok = match op.result_shape() {
            _ if op == RedOp::TotalSum => level == Level::Elem,
            None => matches!(level, Level::Elem | Level::Row | Level::Col),
            Some(_) => level == Level::Elem,
        };
        if !ok {
            let why = if level == Level::Matrix {
                "; it is one value per matrix already (a reduction of per-row or per-column values)"
                    .to_string()
            } else if level.is_scalar() && reduces_reduction {
                "; a reduction of a reduction is not meaningful: the inner one is already one number per tensor, use it directly".to_string()
            } else if level.is_scalar() {
                "; it is the same for every element, so use it directly (times `numel` for a sum)"
                    .to_string()
            } else {
                format!(
                    "; `{name}` reduces per-element values into one per {}",
                    if op.result_shape() == Some(Shape::Row) {
                        "row"
                    } else {
                        "column"
                    }
                )
            };
            return self.err(
                whole,
                format!(
                    "`{name}` reduces a value that differs per element, but `{text}` is {}{why}",
                    level_text(level)
                ),
            );
        }
        if self.inline_depth > 0 {
            return self.err(whole, format!("`{name}` reduces over the whole tensor, so it cannot be under a per-element condition; compute it before the `if` and bind it with `let`"));
        }
        if op == RedOp::TotalSum && self.hoisted_levels.iter().any(|l| *l > Level::Global) {
            return self.err(whole, "`total_sum` adds up every parameter's values, so it cannot be under a condition that differs per parameter; compute it before the `if`");
        }
        let key = format!(
            "{name}({})@{}",
            args.iter().map(|a| key_of(a)).collect::<Vec<_>>().join(","),
            self.epoch
        );
        let found = self
            .red_scopes
            .iter()
            .rev()
            .find_map(|scope| scope.iter().find(|(k, _)| *k == key).map(|&(_, i)| i));
        let k = match found {
            Some(k) => k,
            None => {
                let mut xs = xs.into_iter();
                let arg = xs.next().unwrap_or_else(poison);
                let result = match op.result_shape() {
                    _ if op == RedOp::TotalSum => Level::Global,
                    Some(shape) => shape.level(),
                    None if level == Level::Elem => Level::Tensor,
                    None => Level::Matrix,
                };
                self.reductions.push(Reduction {
                    op,
                    level: result,
                    arg,
                    arg2: xs.next(),
                });
                let k = self.reductions.len() - 1;
                self.pending.push(Stmt::Reduce(k));
                if let Some(scope) = self.red_scopes.last_mut() {
                    scope.push((key, k));
                }
                k
            }
        };
        Expr {
            kind: ExprKind::Var(Var::Reduced(k)),
            ty: Ty::Float,
            level: self.reductions[k].level,
        }
    }

    /// `newton_schulz(x, steps, a, b, c, eps)`: Muon's orthogonalization of the matrix `x`
    /// (a per-element value of a 2-D parameter), read back per element.
    fn matrix_fn(&mut self, args: &[&syn::Expr], whole: &impl ToTokens) -> Expr {
        if args.len() != 6 {
            return self.err(
                whole,
                format!(
                    "`newton_schulz` takes 6 arguments, got {}: write `{NEWTON_SCHULZ}`",
                    args.len()
                ),
            );
        }
        let Some(xs) = self.args_of("newton_schulz", 6, args, whole) else {
            return poison();
        };
        if xs[0].level != Level::Elem {
            let text = args[0].to_token_stream().to_string();
            return self.err(args[0], format!("`newton_schulz` works on a matrix: a per-element value of the parameter (such as a momentum `State`), but `{text}` is {}", level_text(xs[0].level)));
        }
        for (x, a) in xs.iter().zip(args).skip(1) {
            if !x.level.is_scalar() {
                let text = a.to_token_stream().to_string();
                return self.err(a, format!("the coefficients of `{NEWTON_SCHULZ}` are numbers (hyperparameters, `t`, literals), but `{text}` is {}", level_text(x.level)));
            }
        }
        if !is_integer(&xs[1], self.hypers) {
            return self.err(args[1], "the number of Newton–Schulz steps must be an integer: an integer hyperparameter or literal");
        }
        if self.inline_depth > 0 {
            return self.err(whole, "`newton_schulz` works on the whole matrix, so it cannot be under a per-element condition; compute it before the `if` and bind it with `let`");
        }
        let mut xs = xs.into_iter();
        let arg = xs.next().unwrap_or_else(poison);
        self.matrices.push(MatrixFn {
            arg,
            coefs: xs.collect(),
        });
        let k = self.matrices.len() - 1;
        self.pending.push(Stmt::MatrixArg(k));
        Expr {
            kind: ExprKind::Var(Var::Matrix(k)),
            ty: Ty::Float,
            level: Level::Elem,
        }
    }
}

/// Whether `x` reads the result of a reduction.
fn reads_reduction(x: &Expr) -> bool {
    let mut found = false;
    super::visit_expr(x, &mut |e| {
        found |= matches!(e.kind, ExprKind::Var(Var::Reduced(_)));
    });
    found
}
