//! Per-tensor code between passes (sections) and the optimizer-wide code between phases.

use super::super::emit::{f64_call, internal_error, local, reduced, Gen};
use super::super::plan::{ItemKind, Plan};
use super::*;
use crate::model::*;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use std::collections::HashMap;

/// The condition a `Cond` item evaluates (`usize::MAX` for other items).
pub(super) fn item_cond(kind: ItemKind) -> usize {
    match kind {
        ItemKind::Cond(k) => k,
        _ => usize::MAX,
    }
}

/// One piece of optimizer-wide code, writing the frame `__gf`.
pub(super) fn global_item(
    m: &Model,
    g: &mut Gen,
    s: &Stmt,
    guard: &[(usize, bool)],
    cond_slot: &HashMap<usize, usize>,
) -> TokenStream {
    let code = match s {
        Stmt::Let { local: l, value } => match g.frame_of_local.get(l).copied() {
            Some(slot) => {
                let v = g.step_expr(value);
                let v = if value.ty == Ty::Bool {
                    quote!(if #v { 1.0 } else { 0.0 })
                } else {
                    v
                };
                return quote!(__gf[#slot] = #v;);
            }
            None => return internal_error("an optimizer-wide `let` without its frame slot"),
        },
        Stmt::Assign {
            target: Target::Global(i),
            op,
            value,
        } => {
            let v = g.step_expr(value);
            match op {
                None => quote!(__gf[#i] = #v;),
                Some(op) => {
                    let op = super::super::op_tokens(*op);
                    quote!(__gf[#i] = __gf[#i] #op #v;)
                }
            }
        }
        _ => return internal_error("per-parameter code among optimizer-wide code"),
    };
    if guard.is_empty() {
        return code;
    }
    let conds: Vec<TokenStream> = guard
        .iter()
        .map(|&(k, arm)| {
            let c = match cond_slot.get(&k) {
                Some(slot) => quote!((__gf[#slot] != 0.0)),
                None => g.step_expr(&m.conds[k]),
            };
            if arm {
                quote!(#c)
            } else {
                quote!((!#c))
            }
        })
        .collect();
    quote!(if #(#conds)&&* { #code })
}

/// The per-tensor code of one item.
pub(super) fn section_item(
    m: &Model,
    plan: &Plan,
    g: &mut Gen,
    temps: &HashMap<usize, usize>,
    kind: ItemKind,
) -> TokenStream {
    let _ = plan;
    match kind {
        ItemKind::Stmt(s) => match s {
            Stmt::Let { local: l, value } => {
                let l = local(*l);
                let v = g.step_expr(value);
                quote!(#l = #v;)
            }
            Stmt::Assign {
                target: Target::Scalar(i),
                op,
                value,
            } => {
                let s = format_ident!("__sc{}", i);
                let v = g.step_expr(value);
                match op {
                    None => quote!(*#s = #v;),
                    Some(op) => {
                        let op = super::super::op_tokens(*op);
                        quote!(*#s = (*#s) #op #v;)
                    }
                }
            }
            Stmt::Assign {
                target: Target::State(i),
                op,
                value,
            } => {
                let shape = m.states[*i].shape;
                let (len, index) = match shape {
                    Shape::Row => (quote!(__nrows_all), quote!(__r)),
                    Shape::Col => (quote!(__ncols_all), quote!(__r)),
                    Shape::Elem => return internal_error("an element state assigned per tensor"),
                };
                let _ = index;
                let st = format_ident!("__st{}", i);
                let v = factor_expr(m, g, value, shape);
                let cur = to_f64(quote!(#st[__r]));
                let v = match op {
                    None => v,
                    Some(op) => {
                        let op = super::super::op_tokens(*op);
                        quote!((#cur #op #v))
                    }
                };
                let v = from_f64(v);
                quote! {
                    for __r in 0..#len.min(#st.len()) {
                        #st[__r] = #v;
                    }
                }
            }
            _ => internal_error("an element statement among per-tensor code"),
        },
        ItemKind::Temp(e) => match temps.get(&(e as *const Expr as usize)) {
            Some(&i) => {
                let h = format_ident!("__h{}", i);
                let v = g.step_expr(e);
                quote!(#h = #v;)
            }
            None => internal_error("a temporary without its slot"),
        },
        ItemKind::Cond(k) => {
            let c = format_ident!("__c{}", k);
            let v = g.step_expr(&m.conds[k]);
            quote!(#c = #v;)
        }
        ItemKind::SectionReduce(k) => {
            // Of per-row (per-column) values: one result per matrix, over its rows
            // (columns), in order.
            let r = &m.reductions[k];
            let level = r
                .arg
                .level
                .join(r.arg2.as_ref().map_or(Level::Const, |a| a.level));
            let (shape, per) = if level == Level::Col {
                (Shape::Col, quote!(__cols_u))
            } else {
                (Shape::Row, quote!(__rows_u))
            };
            let x = factor_expr(m, g, &r.arg, shape);
            let y = r.arg2.as_ref().map(|a| factor_expr(m, g, a, shape));
            let (init, add, fin) = reduce_parts(r.op, y, quote!((#per as f64)));
            quote! {
                for __b in 0..__lead {
                    let mut __a: f64 = #init;
                    for __r in __b * #per..(__b + 1) * #per {
                        let __x: f64 = #x;
                        #add
                    }
                    __sums_v[__offs[#k] + __b] = #fin;
                }
            }
        }
        ItemKind::Global(_) | ItemKind::GlobalCond(_) => {
            internal_error("optimizer-wide code among per-parameter code")
        }
        ItemKind::Matrix(k) => {
            let mx = &m.matrices[k];
            let c: Vec<TokenStream> = mx.coefs.iter().map(|c| g.step_expr(c)).collect();
            let (steps, a, b, cc, eps) = match c.as_slice() {
                [s, a, b, c, e] => (s, a, b, c, e),
                _ => return internal_error("newton_schulz without its five coefficients"),
            };
            let n_mx = m.matrices.len();
            quote! {
                {
                    let (__xs, __scr) = __bufs.split_at_mut(#n_mx);
                    if let (Some(__x), Some(__s)) = (__xs.get_mut(#k), __scr.get_mut(#k)) {
                        ::optim_core::matrix::newton_schulz(
                            __x, __rows_u, __cols_u, (#steps).max(0.0) as usize, #a, #b, #cc, #eps, __s,
                        );
                    }
                }
            }
        }
    }
}

/// Initial value, per-element update of `__a` from `__x` (and `__y`), and final value of
/// a reduction, with `n` the number of values reduced.
fn reduce_parts(
    op: RedOp,
    y: Option<TokenStream>,
    n: TokenStream,
) -> (TokenStream, TokenStream, TokenStream) {
    match op {
        RedOp::MaxAbs => (
            quote!(0.0),
            quote!(__a = f64::max(__a, f64::abs(__x));),
            quote!(__a),
        ),
        RedOp::Norm => (
            quote!(0.0),
            quote!(__a += __x * __x;),
            quote!(f64::sqrt(__a)),
        ),
        RedOp::Rms => (
            quote!(0.0),
            quote!(__a += __x * __x;),
            quote!(f64::sqrt(__a / #n)),
        ),
        RedOp::Mean | RedOp::RowMean | RedOp::ColMean => {
            (quote!(0.0), quote!(__a += __x;), quote!(__a / #n))
        }
        RedOp::Dot => {
            let y = y.unwrap_or_else(|| internal_error("`dot` without its second argument"));
            (quote!(0.0), quote!(__a += __x * (#y);), quote!(__a))
        }
        RedOp::Sum | RedOp::RowSum | RedOp::ColSum | RedOp::TotalSum => {
            (quote!(0.0), quote!(__a += __x;), quote!(__a))
        }
    }
}

/// A per-row (or per-column) value at row (column) `__r`, in `f64`.
fn factor_expr(m: &Model, g: &mut Gen, e: &Expr, shape: Shape) -> TokenStream {
    if e.level.is_scalar() {
        return g.step_expr(e);
    }
    match &e.kind {
        ExprKind::Var(Var::State(i)) if m.states[*i].shape == shape => {
            // A state its option disables is empty: read as 0 where the code that reads
            // it runs anyway (a reduction taken before the `if` that uses it).
            let st = format_ident!("__st{}", i);
            let v = to_f64(quote!(__v));
            quote!(match #st.get(__r) { Some(&__v) => #v, None => 0.0 })
        }
        ExprKind::Var(Var::Reduced(k)) if m.reductions[*k].level == shape.level() => {
            quote!(__sums_v[__offs[#k] + __r])
        }
        ExprKind::Var(Var::Reduced(k)) if m.reductions[*k].level == Level::Matrix => {
            let per = if shape == Shape::Row {
                quote!(__rows_u)
            } else {
                quote!(__cols_u)
            };
            quote!(__sums_v[__offs[#k] + __r / #per.max(1)])
        }
        ExprKind::Var(Var::Local(id)) => match find_let(&m.body, *id) {
            Some(v) => factor_expr(m, g, v, shape),
            None => internal_error("a per-row `let` not found"),
        },
        ExprKind::Neg(x) => {
            let x = factor_expr(m, g, x, shape);
            quote!((-#x))
        }
        ExprKind::Binary(op, a, b) => {
            let (a, b) = (factor_expr(m, g, a, shape), factor_expr(m, g, b, shape));
            let op = super::super::op_tokens(*op);
            quote!((#a #op #b))
        }
        ExprKind::Call(f, args) => {
            let xs: Vec<TokenStream> = args.iter().map(|a| factor_expr(m, g, a, shape)).collect();
            f64_call(*f, args, &xs)
        }
        ExprKind::If(c, a, b) => {
            let c = match &**c {
                Cond::Hoisted(k) => {
                    let c = format_ident!("__c{}", k);
                    quote!(#c)
                }
                Cond::Inline(x) => factor_expr(m, g, x, shape),
            };
            match (&a.tail, &b.tail) {
                (Some(ta), Some(tb)) if a.stmts.is_empty() && b.stmts.is_empty() => {
                    let (a, b) = (ta, tb);
                    let (a, b) = (factor_expr(m, g, a, shape), factor_expr(m, g, b, shape));
                    quote!(if #c { #a } else { #b })
                }
                _ => internal_error("a per-row `if` with statements"),
            }
        }
        _ => internal_error("a value that is not per row (or column) in a per-row assignment"),
    }
}

/// The value of `let` number `id` anywhere in `stmts`.
fn find_let(stmts: &[Stmt], target: usize) -> Option<&Expr> {
    for s in stmts {
        match s {
            Stmt::Let { local, value } if *local == target => return Some(value),
            Stmt::If {
                then, otherwise, ..
            } => {
                if let Some(v) = find_let(&then.stmts, target) {
                    return Some(v);
                }
                if let Some(v) = otherwise.as_ref().and_then(|o| find_let(&o.stmts, target)) {
                    return Some(v);
                }
            }
            _ => {}
        }
    }
    None
}

/// After pass `p`: its whole-tensor reductions combined (blocks in order), row and column
/// sums turned into means.
pub(super) fn finalize(m: &Model, plan: &Plan, pass: &Pass, p: usize) -> TokenStream {
    let n_red = m.reductions.len();
    let slot = n_red + p;
    let nr = pass.tensor_reds.len();
    let mut out = Vec::new();
    for (j, &k) in pass.tensor_reds.iter().enumerate() {
        let rv = reduced(k);
        let op = m.reductions[k].op;
        let (_, _, fin) = reduce_parts(op, Some(quote!(0.0)), quote!((__numel as f64)));
        let combine = if op == RedOp::MaxAbs {
            quote!(__a = f64::max(__a, __part);)
        } else {
            quote!(__a += __part;)
        };
        let parts = match pass.walk {
            Walk::Flat => quote!(__nblk),
            Walk::Rows => quote!(1usize),
        };
        out.push(quote! {
            {
                let mut __a: f64 = 0.0;
                for __b in 0..#parts {
                    let __part = __sums_v[__offs[#slot] + __b * #nr + #j];
                    #combine
                }
                #rv = #fin;
            }
        });
    }
    for (k, r) in m.reductions.iter().enumerate() {
        if plan.red_pass.get(k).copied().flatten() != Some(p) {
            continue;
        }
        let (len, n) = match r.op {
            RedOp::RowMean => (quote!(__nrows_all), quote!(__cols_u)),
            RedOp::ColMean => (quote!(__ncols_all), quote!(__rows_u)),
            _ => continue,
        };
        out.push(quote! {
            for __v in &mut __sums_v[__offs[#k]..__offs[#k] + #len] {
                *__v /= #n as f64;
            }
        });
    }
    quote!(#(#out)*)
}
