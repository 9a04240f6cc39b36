//! The element code of one pass: the statements it runs, its loads and stores.

use super::super::emit::{
    choice, cond_param, elem_call, internal_error, local, selectable, state_local,
};
use super::super::plan::{id, is_element_stmt, Mem, Plan};
use super::*;
use crate::model::*;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

impl ElemGen<'_> {
    /// A per-element value, in `T`.
    fn expr(&mut self, e: &Expr) -> TokenStream {
        if e.level.is_scalar() {
            return match self.temps.get(&(e as *const Expr as usize)) {
                Some(&i) => {
                    let f = format_ident!("h{}", i);
                    quote!(__k.#f)
                }
                None => internal_error("a per-tensor value without its temporary"),
            };
        }
        match &e.kind {
            ExprKind::Error => internal_error("an expression reported as wrong was generated"),
            ExprKind::Var(v) => self.var(*v),
            ExprKind::Neg(x) => {
                let x = self.expr(x);
                quote!((-#x))
            }
            ExprKind::Not(x) => {
                let x = self.expr(x);
                quote!((!#x))
            }
            ExprKind::Binary(op, a, b) => {
                let (a, b, op) = (self.expr(a), self.expr(b), super::super::op_tokens(*op));
                quote!((#a #op #b))
            }
            ExprKind::Call(f, args) => {
                let xs: Vec<TokenStream> = args.iter().map(|a| self.expr(a)).collect();
                elem_call(*f, args, &xs)
            }
            ExprKind::If(c, a_block, b_block) => {
                let selectable = selectable(c, a_block, b_block);
                let c = self.cond(c);
                let (a, b) = (self.block(a_block), self.block(b_block));
                choice(c, a, b, selectable)
            }
            ExprKind::Block(b) => self.block(b),
            ExprKind::Float(_) | ExprKind::Int(_) | ExprKind::Bool(_) => {
                internal_error("a literal classified per element")
            }
        }
    }

    fn var(&mut self, v: Var) -> TokenStream {
        match v {
            Var::Param => quote!(__w),
            Var::Grad => quote!(__g),
            Var::Local(id) => {
                let l = local(id);
                quote!(#l)
            }
            Var::State(i) => match self.m.states[i].shape {
                Shape::Elem => {
                    let s = state_local(i);
                    quote!(#s)
                }
                Shape::Row => {
                    let s = slice_ident(i);
                    quote!(#s[__row])
                }
                // Cut to the columns of the row's sub-block by the row walk.
                Shape::Col => {
                    let s = slice_ident(i);
                    quote!(#s[__e])
                }
            },
            Var::Reduced(k) => match self.m.reductions[k].level {
                Level::Row => from_f64(quote!(__sums[__offs[#k] + __row])),
                Level::Col => from_f64(quote!(__sums[__offs[#k] + __cb + __j])),
                Level::Matrix => from_f64(quote!(__sums[__offs[#k] + __row / __rr.max(1)])),
                _ => internal_error("a per-tensor reduction read per element"),
            },
            Var::Matrix(k) => {
                let mx = matrix_ident(k);
                quote!(#mx[__e])
            }
            Var::Hyper(_) | Var::Step | Var::Scalar(_) | Var::Shape(_) | Var::Global(_) => {
                internal_error("a per-tensor variable read per element")
            }
        }
    }

    fn cond(&mut self, c: &Cond) -> TokenStream {
        match c {
            Cond::Hoisted(k) => {
                self.used_conds.insert(*k);
                let p = cond_param(*k);
                quote!(#p)
            }
            Cond::Inline(x) => self.expr(x),
        }
    }

    /// A block inside a value: all its element statements (per-tensor ones are items).
    fn block(&mut self, b: &Block) -> TokenStream {
        let mut out = TokenStream::new();
        for s in &b.stmts {
            if is_element_stmt(self.m, s) {
                out.extend(self.stmt(s, false));
            }
        }
        let tail = b.tail.as_ref().map(|t| self.expr(t));
        quote!({ #out #tail })
    }

    /// The statements of this pass among `stmts`.
    pub(super) fn stmts(&mut self, stmts: &[Stmt]) -> TokenStream {
        let mut out = TokenStream::new();
        for s in stmts {
            if self.plan.needed[self.p].contains(&id(s)) {
                out.extend(self.stmt(s, true));
            }
        }
        out
    }

    fn stmt(&mut self, s: &Stmt, sliced: bool) -> TokenStream {
        match s {
            Stmt::Let { local: l, value } => {
                let l = local(*l);
                let v = self.expr(value);
                quote!(let #l = #v;)
            }
            Stmt::Assign { target, op, value } => {
                let lhs = match target {
                    Target::Param => quote!(__w),
                    Target::Grad => quote!(__g),
                    Target::State(i) if self.m.states[*i].shape == Shape::Elem => {
                        let s = state_local(*i);
                        quote!(#s)
                    }
                    _ => return internal_error("a per-tensor assignment in an element pass"),
                };
                let v = self.expr(value);
                match op {
                    None => quote!(#lhs = #v;),
                    Some(op) => {
                        let op = super::super::op_tokens(*op);
                        quote!(#lhs = #lhs #op #v;)
                    }
                }
            }
            Stmt::If {
                cond,
                then,
                otherwise,
            } => {
                let c = self.cond(cond);
                let (a, b) = if sliced {
                    (
                        self.stmts(&then.stmts),
                        otherwise.as_ref().map(|o| self.stmts(&o.stmts)),
                    )
                } else {
                    let a = then.stmts.iter().map(|s| self.stmt(s, false)).collect();
                    let b = otherwise
                        .as_ref()
                        .map(|o| o.stmts.iter().map(|s| self.stmt(s, false)).collect());
                    (a, b)
                };
                let b = b.map(|b: TokenStream| quote!(else { #b }));
                quote!(if #c { #a } #b)
            }
            Stmt::Reduce(k) => self.accumulate(*k),
            Stmt::MatrixArg(k) => {
                let mx = matrix_ident(*k);
                let v = self.expr(&self.m.matrices[*k].arg);
                quote!(#mx[__e] = #v;)
            }
        }
    }

    /// Adds this element's share to reduction `k`.
    fn accumulate(&mut self, k: usize) -> TokenStream {
        let r = &self.m.reductions[k];
        let x = self.expr(&r.arg);
        let x = to_f64(x);
        let value = match r.op {
            RedOp::Norm | RedOp::Rms => quote!(__x * __x),
            RedOp::MaxAbs => quote!(f64::abs(__x)),
            RedOp::Dot => {
                let y = match &r.arg2 {
                    Some(a2) => {
                        let y = self.expr(a2);
                        to_f64(y)
                    }
                    None => return internal_error("`dot` without its second argument"),
                };
                quote!(__x * #y)
            }
            _ => quote!(__x),
        };
        let add = match (r.op.result_shape(), self.walk) {
            (Some(Shape::Row), _) => {
                // Kept per element; added into the row's lanes after the loop.
                let buf = format_ident!("__rrb{}", k);
                quote!(#buf[__e] = __v;)
            }
            (Some(Shape::Col), _) => quote!(__sums[__offs[#k] + __cb + __j] += __v;),
            (_, walk) => {
                let Some(&j) = self.accs.get(&k) else {
                    return internal_error("a reduction without its accumulator");
                };
                // Kept per element; added into the lanes after the loop.
                let _ = walk;
                let buf = format_ident!("__rb{}", j);
                quote!(#buf[__e] = __v;)
            }
        };
        quote!({ let __x: f64 = #x; let __v: f64 = #value; #add })
    }
}

/// Which loop form pass `p` needs, and which whole-tensor reductions it accumulates.
pub(super) fn pass_shape(m: &Model, plan: &Plan, p: usize) -> (Walk, Vec<usize>) {
    let mut rows = false;
    let mut reds = Vec::new();
    let mut visit = |e: &Expr| {
        if let ExprKind::Var(v) = e.kind {
            rows |= match v {
                Var::State(i) => m.states[i].shape != Shape::Elem,
                Var::Reduced(k) => !m.reductions[k].level.is_scalar(),
                _ => false,
            };
        }
    };
    fn walk_stmts(
        m: &Model,
        plan: &Plan,
        p: usize,
        stmts: &[Stmt],
        f: &mut impl FnMut(&Expr),
        reds: &mut Vec<usize>,
        rows_out: &mut bool,
    ) {
        for s in stmts {
            if !plan.needed[p].contains(&id(s)) {
                continue;
            }
            match s {
                Stmt::Reduce(k) => {
                    let r = &m.reductions[*k];
                    r.arg.visit(f);
                    if let Some(a) = &r.arg2 {
                        a.visit(f);
                    }
                    if r.op.result_shape().is_some() {
                        *rows_out = true;
                    } else {
                        reds.push(*k);
                    }
                }
                Stmt::MatrixArg(k) => m.matrices[*k].arg.visit(f),
                Stmt::If {
                    cond,
                    then,
                    otherwise,
                } => {
                    if let Cond::Inline(x) = cond {
                        x.visit(f);
                    }
                    walk_stmts(m, plan, p, &then.stmts, f, reds, rows_out);
                    if let Some(o) = otherwise {
                        walk_stmts(m, plan, p, &o.stmts, f, reds, rows_out);
                    }
                }
                other => other.visit(f),
            }
        }
    }
    let mut row_reds = false;
    walk_stmts(m, plan, p, &m.body, &mut visit, &mut reds, &mut row_reds);
    let walk = if rows || row_reds {
        Walk::Rows
    } else {
        Walk::Flat
    };
    (walk, reds)
}

/// Whether the element statements of pass `p` write anything, per combination of its
/// const conditions (folded at compile time, so an empty combination skips the pass).
pub(super) fn pass_work(plan: &Plan, p: usize, stmts: &[Stmt]) -> TokenStream {
    let parts: Vec<TokenStream> = stmts
        .iter()
        .filter(|s| plan.needed[p].contains(&id(s)))
        .map(|s| match s {
            Stmt::If {
                cond: Cond::Hoisted(k),
                then,
                otherwise,
            } => {
                let c = cond_param(*k);
                let a = pass_work(plan, p, &then.stmts);
                let b = otherwise
                    .as_ref()
                    .map_or(quote!(false), |o| pass_work(plan, p, &o.stmts));
                quote!(((#c && #a) || (!#c && #b)))
            }
            _ => quote!(true),
        })
        .collect();
    if parts.is_empty() {
        quote!(false)
    } else {
        quote!(#(#parts)||*)
    }
}

/// Element variables assigned by the statements pass `p` runs.
pub(super) fn collect_targets(
    m: &Model,
    plan: &Plan,
    p: usize,
    stmts: &[Stmt],
    out: &mut Vec<Mem>,
) {
    for s in stmts {
        if !plan.needed[p].contains(&id(s)) {
            continue;
        }
        match s {
            Stmt::Assign { target, .. } => {
                let mem = match target {
                    Target::Param => Mem::Param,
                    Target::Grad => Mem::Grad,
                    Target::State(i) if m.states[*i].shape == Shape::Elem => Mem::State(*i),
                    _ => continue,
                };
                if !out.contains(&mem) {
                    out.push(mem);
                }
            }
            Stmt::If {
                then, otherwise, ..
            } => {
                collect_targets(m, plan, p, &then.stmts, out);
                if let Some(o) = otherwise {
                    collect_targets(m, plan, p, &o.stmts, out);
                }
            }
            _ => {}
        }
    }
}
