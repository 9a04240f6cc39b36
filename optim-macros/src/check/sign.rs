//! Which element-wise states the equations keep non-negative (second moments): an 8-bit
//! state uses the unsigned map, twice as fine, only when this proves it can never be
//! negative.
//!
//! The proof is an induction over steps: a state is non-negative if its fill value is,
//! and every assignment to it stores a value that is non-negative whenever the states
//! assumed so are. Starting from every candidate and dropping those an assignment
//! breaks, until none does, gives the largest such set. The rules are sound, not
//! complete: what they cannot prove (Yogi's `v − (1−β2)·sign(v − g²)·g²`) is signed.

use crate::model::*;
use std::collections::HashMap;

/// Per state of `m`: whether it is provably never negative.
pub(super) fn never_negative(m: &Model) -> Vec<bool> {
    let mut facts = Facts {
        m,
        locals: HashMap::new(),
        nonneg: Vec::new(),
    };
    let mut assigns = Vec::new();
    walk_stmts(&m.body, &mut facts.locals, &mut assigns);
    for r in &m.reductions {
        walk_expr(&r.arg, &mut facts.locals, &mut assigns);
    }
    facts.nonneg = m
        .states
        .iter()
        .map(|s| s.shape == Shape::Elem && matches!(&s.init, Init::Fill(e) if facts.holds(e, 0)))
        .collect();
    loop {
        let next: Vec<bool> = (0..m.states.len())
            .map(|i| {
                facts.nonneg[i]
                    && assigns
                        .iter()
                        .filter(|(s, _, _)| *s == i)
                        .all(|&(_, op, value)| match op {
                            None | Some(BinOp::Add | BinOp::Mul | BinOp::Div) => {
                                facts.holds(value, 0)
                            }
                            Some(_) => false,
                        })
            })
            .collect();
        if next == facts.nonneg {
            return next;
        }
        facts.nonneg = next;
    }
}

/// Every `let` (locals are never reassigned) and every assignment to a state.
fn walk_stmts<'a>(
    stmts: &'a [Stmt],
    locals: &mut HashMap<usize, &'a Expr>,
    assigns: &mut Vec<(usize, Option<BinOp>, &'a Expr)>,
) {
    for s in stmts {
        match s {
            Stmt::Let { local, value } => {
                locals.insert(*local, value);
                walk_expr(value, locals, assigns);
            }
            Stmt::Assign { target, op, value } => {
                if let Target::State(i) = target {
                    assigns.push((*i, *op, value));
                }
                walk_expr(value, locals, assigns);
            }
            Stmt::If {
                then, otherwise, ..
            } => {
                walk_block(then, locals, assigns);
                if let Some(o) = otherwise {
                    walk_block(o, locals, assigns);
                }
            }
            Stmt::Reduce(_) | Stmt::MatrixArg(_) => {}
        }
    }
}

fn walk_block<'a>(
    b: &'a Block,
    locals: &mut HashMap<usize, &'a Expr>,
    assigns: &mut Vec<(usize, Option<BinOp>, &'a Expr)>,
) {
    walk_stmts(&b.stmts, locals, assigns);
    if let Some(t) = &b.tail {
        walk_expr(t, locals, assigns);
    }
}

fn walk_expr<'a>(
    e: &'a Expr,
    locals: &mut HashMap<usize, &'a Expr>,
    assigns: &mut Vec<(usize, Option<BinOp>, &'a Expr)>,
) {
    match &e.kind {
        ExprKind::If(_, a, b) => {
            walk_block(a, locals, assigns);
            walk_block(b, locals, assigns);
        }
        ExprKind::Block(b) => walk_block(b, locals, assigns),
        ExprKind::Neg(x) | ExprKind::Not(x) => walk_expr(x, locals, assigns),
        ExprKind::Binary(_, a, b) => {
            walk_expr(a, locals, assigns);
            walk_expr(b, locals, assigns);
        }
        ExprKind::Call(_, xs) => xs.iter().for_each(|x| walk_expr(x, locals, assigns)),
        _ => {}
    }
}

struct Facts<'a> {
    m: &'a Model,
    locals: HashMap<usize, &'a Expr>,
    /// The states assumed non-negative in this round.
    nonneg: Vec<bool>,
}

/// Nesting beyond which nothing is claimed (locals refer only to earlier locals, so
/// this only bounds the work).
const MAX_DEPTH: usize = 64;

impl Facts<'_> {
    /// Whether `e` is never negative, given the states assumed so.
    fn holds(&self, e: &Expr, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        let d = depth + 1;
        match &e.kind {
            ExprKind::Float(x) => *x >= 0.0,
            ExprKind::Int(i) => *i >= 0,
            ExprKind::Var(v) => match *v {
                Var::Hyper(_) => self.lower(e) >= 0.0,
                Var::Step | Var::Shape(_) => true,
                Var::State(i) => self.nonneg.get(i).copied().unwrap_or(false),
                Var::Local(l) => self.locals.get(&l).is_some_and(|x| self.holds(x, d)),
                Var::Reduced(k) => self.m.reductions.get(k).is_some_and(|r| match r.op {
                    RedOp::Norm | RedOp::Rms | RedOp::MaxAbs => true,
                    RedOp::Dot => false,
                    _ => self.holds(&r.arg, d),
                }),
                Var::Param | Var::Grad | Var::Scalar(_) | Var::Global(_) | Var::Matrix(_) => false,
            },
            ExprKind::Binary(BinOp::Add, a, b) => self.holds(a, d) && self.holds(b, d),
            ExprKind::Binary(BinOp::Sub, a, b) => self.upper(b) <= self.lower(a),
            ExprKind::Binary(BinOp::Mul | BinOp::Div, _, _) => self.product_holds(e, d),
            ExprKind::Call(f, xs) => match (f, xs.as_slice()) {
                (Func::Sqrt | Func::Abs | Func::Square | Func::Exp, _) => true,
                (Func::Max, [a, b]) => self.holds(a, d) || self.holds(b, d),
                (Func::Min, [a, b]) => self.holds(a, d) && self.holds(b, d),
                (Func::Powi, [x, n]) => {
                    self.holds(x, d) || matches!(n.kind, ExprKind::Int(k) if k % 2 == 0)
                }
                (Func::Powf | Func::Cbrt | Func::RoundF32 | Func::Tanh, [x, ..]) => {
                    self.holds(x, d)
                }
                (Func::Clamp, [_, lo, hi]) => self.holds(lo, d) && self.holds(hi, d),
                _ => false,
            },
            ExprKind::If(_, a, b) => self.block_holds(a, d) && self.block_holds(b, d),
            ExprKind::Block(b) => self.block_holds(b, d),
            _ => false,
        }
    }

    fn block_holds(&self, b: &Block, depth: usize) -> bool {
        b.tail.as_ref().is_some_and(|t| self.holds(t, depth))
    }

    /// A product or quotient: non-negative if every factor not known to be is matched
    /// by the same factor (`(1 − β2)·g·g`, `(g − m)·(g − m)`).
    fn product_holds(&self, e: &Expr, depth: usize) -> bool {
        let mut factors = Vec::new();
        flatten(e, &mut factors);
        let mut unknown: HashMap<String, usize> = HashMap::new();
        for f in factors {
            if !self.holds(f, depth) {
                *unknown.entry(format!("{:?}", f.kind)).or_default() += 1;
            }
        }
        unknown.values().all(|n| n % 2 == 0)
    }

    /// A lower bound of a literal or hyperparameter (its range), else −∞.
    fn lower(&self, e: &Expr) -> f64 {
        match &e.kind {
            ExprKind::Float(x) => *x,
            ExprKind::Int(i) => *i as f64,
            ExprKind::Var(Var::Hyper(i)) => match self.m.hypers.get(*i).map(|h| h.lo) {
                Some(Bound::Inclusive(x) | Bound::Exclusive(x)) => x,
                _ => f64::NEG_INFINITY,
            },
            _ => f64::NEG_INFINITY,
        }
    }

    /// An upper bound of a literal or hyperparameter (its range), else +∞.
    fn upper(&self, e: &Expr) -> f64 {
        match &e.kind {
            ExprKind::Float(x) => *x,
            ExprKind::Int(i) => *i as f64,
            ExprKind::Var(Var::Hyper(i)) => match self.m.hypers.get(*i).map(|h| h.hi) {
                Some(Bound::Inclusive(x) | Bound::Exclusive(x)) => x,
                _ => f64::INFINITY,
            },
            _ => f64::INFINITY,
        }
    }
}

/// The factors of a chain of `*` and `/`.
fn flatten<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match &e.kind {
        ExprKind::Binary(BinOp::Mul | BinOp::Div, a, b) => {
            flatten(a, out);
            flatten(b, out);
        }
        _ => out.push(e),
    }
}
