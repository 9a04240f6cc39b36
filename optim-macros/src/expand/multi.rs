//! The kernel of an optimizer whose equations need more than one pass over the elements
//! (reductions, row/column states, matrix functions): per-tensor sections and element
//! passes in the order [`plan`](super::plan) gives.
//!
//! ```text
//! section 0 · pass 0 · combine pass 0's reductions · section 1 · pass 1 · ... · section P
//! ```
//!
//! A pass is one fused loop, compiled for every combination of the hoisted conditions it
//! uses and run through `optim_core::kernel::run` (instruction-set dispatch, threads).
//! A pass that reduces over the whole tensor accumulates in `f64`, in eight lanes per
//! block of `REDUCE_BLOCK` elements; blocks are split between threads only at block
//! boundaries and added in order, so the bits never depend on the instruction set or
//! the thread count. A pass that reads or writes per-row or per-column values walks the
//! rows in order on the calling thread.

use super::emit::{call, cond_param, internal_error, local, reduced, state_local, Gen};
use super::plan::{self, id, is_element_stmt, ItemKind, Mem, Plan};
use super::{destructure, hp};
use crate::model::*;
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};
use std::collections::{BTreeSet, HashMap};

/// How a pass walks the elements.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Flat, in blocks, splittable across threads.
    Flat,
    /// Row by row (it reads or writes per-row or per-column values), whole.
    Rows,
}

struct Pass {
    walk: Walk,
    /// Reductions over the whole tensor this pass accumulates, in order.
    tensor_reds: Vec<usize>,
    /// Hoisted conditions it compiles out (indices into `Model::conds`; `maximize` last).
    conds: Vec<usize>,
}

/// Everything the element code of one pass needs to know.
struct ElemGen<'a> {
    m: &'a Model,
    plan: &'a Plan<'a>,
    p: usize,
    walk: Walk,
    /// Temporaries by the address of their expression.
    temps: &'a HashMap<usize, usize>,
    /// Accumulator of each whole-tensor reduction of this pass.
    accs: HashMap<usize, usize>,
    /// Conditions seen in the code of this pass.
    used_conds: BTreeSet<usize>,
}

fn acc_ident(j: usize) -> Ident {
    format_ident!("__acc{}", j)
}

fn matrix_ident(k: usize) -> Ident {
    format_ident!("__mx{}", k)
}

fn slice_ident(i: usize) -> Ident {
    format_ident!("__ss{}", i)
}

fn float_t() -> TokenStream {
    quote!(<T as ::optim_core::num_traits::Float>)
}

fn to_f64(x: TokenStream) -> TokenStream {
    quote!(<T as ::optim_core::Scalar>::to_f64(#x))
}

fn from_f64(x: TokenStream) -> TokenStream {
    quote!(<T as ::optim_core::Scalar>::from_f64(#x))
}

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
                let (a, b, op) = (self.expr(a), self.expr(b), super::op_tokens(*op));
                quote!((#a #op #b))
            }
            ExprKind::Call(f, args) => {
                let xs: Vec<TokenStream> = args.iter().map(|a| self.expr(a)).collect();
                match (f, args.get(1).map(|a| &a.kind)) {
                    (Func::Powi, Some(ExprKind::Int(i))) => {
                        let n = *i as i32;
                        call(*f, &xs, Some(quote!(#n)), &float_t())
                    }
                    (Func::Powi, _) => {
                        internal_error("a per-element `powi` without an integer literal exponent")
                    }
                    _ => call(*f, &xs, None, &float_t()),
                }
            }
            ExprKind::If(c, a, b) => {
                let c = self.cond(c);
                let (a, b) = (self.block(a), self.block(b));
                quote!(if #c #a else #b)
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
                Shape::Col => {
                    let s = slice_ident(i);
                    quote!(#s[__cb + __j])
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
    fn stmts(&mut self, stmts: &[Stmt]) -> TokenStream {
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
                        let op = super::op_tokens(*op);
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
            (Some(Shape::Row), _) => quote!(__sums[__offs[#k] + __row] += __v;),
            (Some(Shape::Col), _) => quote!(__sums[__offs[#k] + __cb + __j] += __v;),
            (_, walk) => {
                let Some(&j) = self.accs.get(&k) else {
                    return internal_error("a reduction without its accumulator");
                };
                let a = acc_ident(j);
                let slot = if walk == Walk::Flat {
                    quote!(#a[__l])
                } else {
                    quote!(#a)
                };
                if r.op == RedOp::MaxAbs {
                    quote!(#slot = f64::max(#slot, __v);)
                } else {
                    quote!(#slot += __v;)
                }
            }
        };
        quote!({ let __x: f64 = #x; let __v: f64 = #value; #add })
    }
}

/// Which loop form pass `p` needs, and which whole-tensor reductions it accumulates.
fn pass_shape(m: &Model, plan: &Plan, p: usize) -> (Walk, Vec<usize>) {
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
fn pass_work(plan: &Plan, p: usize, stmts: &[Stmt]) -> TokenStream {
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

/// The step of a multi-pass definition.
/// The generated kernel, and the items it adds to the `Algorithm` impl.
pub(super) struct Generated {
    pub kernel: TokenStream,
    pub algorithm: TokenStream,
}

pub(super) fn kernel(m: &Model) -> Generated {
    let plan = plan::plan(m);
    let ty = &m.type_name;
    let mut g = Gen::new(m);
    let n_states = m.states.len();
    let n_mx = m.matrices.len();
    let n_red = m.reductions.len();
    let has_grad = m.grad.is_some();
    let all_conds = m.conds.len() + usize::from(m.maximize.is_some());
    let max_cond = m.maximize.map(|_| m.conds.len());

    // Temporaries, in item order.
    let mut temps: HashMap<usize, usize> = HashMap::new();
    let mut temp_bool: Vec<bool> = Vec::new();
    for item in &plan.items {
        if let ItemKind::Temp(e) = item.kind {
            let addr = e as *const Expr as usize;
            if let std::collections::hash_map::Entry::Vacant(v) = temps.entry(addr) {
                v.insert(temp_bool.len());
                temp_bool.push(e.ty == Ty::Bool);
            }
        }
    }

    // The optimizer-wide frame: global states, global `let`s, sums over every parameter.
    let n_glob = m.globals.len();
    let global_lets: Vec<(usize, bool)> = plan
        .items
        .iter()
        .filter_map(|item| match item.kind {
            ItemKind::Global(Stmt::Let { local, value }) => Some((*local, value.ty == Ty::Bool)),
            _ => None,
        })
        .collect();
    for (j, (id, _)) in global_lets.iter().enumerate() {
        g.frame_of_local.insert(*id, n_glob + j);
    }
    let sum_reds: Vec<usize> = (0..n_red)
        .filter(|&k| m.reductions[k].op == RedOp::TotalSum)
        .collect();
    let global_conds: Vec<usize> = plan
        .items
        .iter()
        .filter_map(|item| match item.kind {
            ItemKind::GlobalCond(k) => Some(k),
            _ => None,
        })
        .collect();
    let cond_slot: HashMap<usize, usize> = global_conds
        .iter()
        .enumerate()
        .map(|(j, &k)| (k, n_glob + global_lets.len() + j))
        .collect();
    let first_sum = n_glob + global_lets.len() + global_conds.len();
    for (j, k) in sum_reds.iter().enumerate() {
        g.frame_of_sum.insert(*k, first_sum + j);
    }
    let frame_len = first_sum + sum_reds.len();
    // Per-construction `let`s, which optimizer-wide code may read too.
    let const_lets: Vec<TokenStream> = plan
        .items
        .iter()
        .filter_map(|item| match item.kind {
            ItemKind::Stmt(Stmt::Let { local: l, value }) if value.level == Level::Const => {
                let l = local(*l);
                let v = g.step_expr(value);
                Some(quote!(let #l = #v;))
            }
            _ => None,
        })
        .collect();
    let phases = plan.phases();

    // Per-tensor `let`s: declared up front (so a later phase can restore them).
    let mut let_decls: Vec<(Ident, bool)> = Vec::new();
    for item in &plan.items {
        if let ItemKind::Stmt(Stmt::Let { local: l, value }) = item.kind {
            let_decls.push((local(*l), value.ty == Ty::Bool));
        }
    }

    // Per-tensor code of each section, and optimizer-wide code of each phase.
    let mut sections: Vec<Vec<TokenStream>> = vec![Vec::new(); plan.passes + 1];
    let mut global_code: Vec<Vec<TokenStream>> = vec![Vec::new(); phases];
    for item in &plan.items {
        if let ItemKind::Global(s) = item.kind {
            let code = global_item(m, &mut g, s, &item.guard, &cond_slot);
            global_code[plan.phase_of(item.section)].push(code);
            continue;
        }
        if let ItemKind::GlobalCond(k) = item.kind {
            let slot = cond_slot.get(&k).copied().unwrap_or(0);
            let v = g.step_expr(&m.conds[k]);
            global_code[plan.phase_of(item.section)]
                .push(quote!(__gf[#slot] = if #v { 1.0 } else { 0.0 };));
            continue;
        }
        if let (ItemKind::Cond(k), Some(slot)) = (item.kind, cond_slot.get(&item_cond(item.kind))) {
            let c = format_ident!("__c{}", k);
            sections[item.section.min(plan.passes)].push(quote!(#c = __gf[#slot] != 0.0;));
            continue;
        }
        let code = section_item(m, &plan, &mut g, &temps, item.kind);
        let guard: Vec<TokenStream> = item
            .guard
            .iter()
            .map(|&(k, arm)| {
                let c = format_ident!("__c{}", k);
                if arm {
                    quote!(#c)
                } else {
                    quote!((!#c))
                }
            })
            .collect();
        let code = match (&item.kind, guard.is_empty()) {
            // Lets stay visible to later code; their guard only says when they matter.
            (ItemKind::Stmt(Stmt::Let { .. }) | ItemKind::Temp(_) | ItemKind::Cond(_), _)
            | (_, true) => code,
            _ => quote!(if #(#guard)&&* { #code }),
        };
        let at = item.section.min(plan.passes);
        sections[at].push(code);
    }

    // The passes.
    let mut pass_code = Vec::new();
    let mut pass_types = Vec::new();
    let mut layout = Vec::new();
    let mut passes = Vec::new();
    for p in 0..plan.passes {
        let (walk, tensor_reds) = pass_shape(m, &plan, p);
        let mut eg = ElemGen {
            m,
            plan: &plan,
            p,
            walk,
            temps: &temps,
            accs: tensor_reds
                .iter()
                .enumerate()
                .map(|(j, &k)| (k, j))
                .collect(),
            used_conds: BTreeSet::new(),
        };
        let body = eg.stmts(&m.body);
        let loads = &plan.loads[p];
        for (i, s) in m.states.iter().enumerate() {
            if let Some(k) = s.when {
                if loads.contains(&Mem::State(i)) {
                    eg.used_conds.insert(k);
                }
            }
        }
        if let Some(mc) = max_cond {
            if loads.contains(&Mem::Grad) {
                eg.used_conds.insert(mc);
            }
        }
        let conds: Vec<usize> = eg.used_conds.iter().copied().collect();
        let work = pass_work(&plan, p, &m.body);
        let pass = Pass {
            walk,
            tensor_reds,
            conds,
        };
        let (ty_code, call_code, lay) = pass_kernel(m, &plan, p, &pass, body, work, all_conds);
        pass_types.push(ty_code);
        pass_code.push(call_code);
        layout.push(lay);
        passes.push(pass);
    }

    // Workspace layout: row/column sums of each reduction, then each pass's partials.
    let mut offs_code = Vec::new();
    for (k, r) in m.reductions.iter().enumerate() {
        let len = match r.level {
            Level::Row => quote!(__nrows_all),
            Level::Col => quote!(__ncols_all),
            Level::Matrix => quote!(__lead),
            _ => continue,
        };
        offs_code.push(quote!(__offs[#k] = __need; __need += #len;));
    }
    for (p, pass) in passes.iter().enumerate() {
        let slot = n_red + p;
        let nr = pass.tensor_reds.len();
        let len = match pass.walk {
            Walk::Flat => quote!(__nblk * #nr),
            Walk::Rows => quote!(#nr),
        };
        offs_code.push(quote!(__offs[#slot] = __need; __need += #len;));
    }
    // What a later phase of the same parameter's step needs of an earlier one.
    let mut carry: Vec<(Ident, bool)> = Vec::new();
    carry.extend(
        temp_bool
            .iter()
            .enumerate()
            .map(|(i, b)| (format_ident!("__h{}", i), *b)),
    );
    carry.extend((0..n_red).map(|k| (reduced(k), false)));
    carry.extend((0..m.conds.len()).map(|k| (format_ident!("__c{}", k), true)));
    carry.extend(let_decls.iter().cloned());
    let n_carry = if phases > 1 { carry.len() } else { 0 };
    let carry_slot = n_red + plan.passes;
    offs_code.push(quote!(__offs[#carry_slot] = __need; __need += #n_carry;));
    let n_offs = n_red + plan.passes + 1;
    let save: Vec<TokenStream> = carry
        .iter()
        .enumerate()
        .map(|(i, (x, b))| {
            let v = if *b {
                quote!(if #x { 1.0 } else { 0.0 })
            } else {
                quote!(#x)
            };
            quote!(__sums_v[__offs[#carry_slot] + #i] = #v;)
        })
        .collect();
    let restore: Vec<TokenStream> = carry
        .iter()
        .enumerate()
        .map(|(i, (x, b))| {
            if *b {
                quote!(#x = __sums_v[__offs[#carry_slot] + #i] != 0.0;)
            } else {
                quote!(#x = __sums_v[__offs[#carry_slot] + #i];)
            }
        })
        .collect();
    let let_decl_code: Vec<TokenStream> = let_decls
        .iter()
        .map(|(l, b)| {
            if *b {
                quote!(let mut #l: bool = false;)
            } else {
                quote!(let mut #l: f64 = 0.0;)
            }
        })
        .collect();

    let temp_decls: Vec<TokenStream> = temp_bool
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let h = format_ident!("__h{}", i);
            if *b {
                quote!(let mut #h: bool = false;)
            } else {
                quote!(let mut #h: f64 = 0.0;)
            }
        })
        .collect();
    let temp_fields: Vec<TokenStream> = temp_bool
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let f = format_ident!("h{}", i);
            if *b {
                quote!(#f: bool)
            } else {
                quote!(#f: T)
            }
        })
        .collect();
    let temp_inits: Vec<TokenStream> = temp_bool
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let (f, h) = (format_ident!("h{}", i), format_ident!("__h{}", i));
            if *b {
                quote!(#f: #h)
            } else {
                let v = from_f64(quote!(#h));
                quote!(#f: #v)
            }
        })
        .collect();
    let rv_decls: Vec<TokenStream> = (0..n_red)
        .map(|k| {
            let r = reduced(k);
            quote!(let mut #r: f64 = 0.0;)
        })
        .collect();
    let cond_decls: Vec<TokenStream> = (0..m.conds.len())
        .map(|k| {
            let c = format_ident!("__c{}", k);
            quote!(let mut #c: bool = false;)
        })
        .collect();
    let max_decl = m.maximize.map(|i| {
        let c = format_ident!("__c{}", m.conds.len());
        let l = hp(&m.hypers[i].name);
        quote!(let #c: bool = #l;)
    });
    let st: Vec<Ident> = (0..n_states).map(|i| format_ident!("__st{}", i)).collect();
    let sc: Vec<Ident> = (0..m.scalars.len())
        .map(|i| format_ident!("__sc{}", i))
        .collect();
    let hyper_locals = destructure(m);
    let shape_locals = super::emit::shape_locals();
    let grad_local = if has_grad {
        quote! {
            let __gs: &[T] = match __grad {
                ::optim_core::GradView::Dense(__g) if __g.len() == __numel => __g,
                // Reductions need every element: the runtime makes sparse gradients dense.
                _ => return,
            };
        }
    } else {
        quote!(let __gs: &[T] = &[];)
    };
    let mx_setup = if n_mx > 0 {
        let n2 = 2 * n_mx;
        quote! {
            if __bufs.len() != #n2 {
                __bufs.resize_with(#n2, ::std::vec::Vec::new);
            }
            for __b in __bufs.iter_mut().take(#n_mx) {
                if __b.len() != __numel {
                    __b.clear();
                    __b.resize(__numel, <T as ::optim_core::num_traits::Zero>::zero());
                }
            }
        }
    } else {
        quote!()
    };
    let mut phase_code: Vec<Vec<TokenStream>> = vec![Vec::new(); phases];
    for p in 0..plan.passes {
        let s = &sections[p];
        let call = &pass_code[p];
        let fin = finalize(m, &plan, &passes[p], p);
        let k_init = quote! {
            let __k = __Temps::<T> { #(#temp_inits,)* __p: ::core::marker::PhantomData };
        };
        phase_code[plan.phase_of(p)].push(quote! {
            #(#s)*
            {
                #k_init
                #call
            }
            #fin
        });
    }
    let last = &sections[plan.passes];
    phase_code[plan.phase_of(plan.passes)].push(quote!(#(#last)*));
    for (j, &k) in sum_reds.iter().enumerate() {
        let at = plan.red_pass[k].map_or(0, |p| plan.phase_of(p));
        let rv = reduced(k);
        phase_code[at].push(quote!(if let Some(__s) = __shares.get_mut(#j) { *__s = #rv; }));
    }
    let steps: Vec<TokenStream> = phase_code
        .iter()
        .enumerate()
        .map(|(j, code)| {
            let restore = if j > 0 {
                quote!(#(#restore)*)
            } else {
                quote!()
            };
            let save = if j + 1 < phases {
                quote!(#(#save)*)
            } else {
                quote!()
            };
            quote! {
                if __phase == #j {
                    #restore
                    #(#code)*
                    #save
                }
            }
        })
        .collect();
    let _ = layout;
    let global_phases: Vec<TokenStream> = global_code
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.is_empty())
        .map(|(j, c)| quote!(if __phase == #j { #(#c)* }))
        .collect();
    let global_specs = m.globals.iter().map(|s| {
        let n = s.name.to_string();
        quote!(::optim_core::ScalarSpec { name: #n })
    });
    let global_inits: Vec<TokenStream> = m
        .globals
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let v = g.step_expr(&s.init);
            quote!(#i => #v)
        })
        .collect();
    let n_sums = sum_reds.len();
    let hyper_locals_g = destructure(m);
    let errors: Vec<TokenStream> = plan
        .errors
        .iter()
        .map(|e| quote!(::core::compile_error!(#e);))
        .collect();
    let algorithm = quote! {
        const PHASES: usize = #phases;
        const GLOBALS: &'static [::optim_core::ScalarSpec] = &[#(#global_specs),*];
        const FRAME: usize = #frame_len;
        const SUMS: usize = #n_sums;

        #[allow(unused_variables, clippy::all)]
        fn global_init(&self, index: usize) -> f64 {
            #hyper_locals_g
            match index {
                #(#global_inits,)*
                _ => 0.0,
            }
        }

        #[allow(unused_variables, unused_parens, clippy::all)]
        fn global_step(&self, __phase: usize, __gf: &mut [f64]) {
            #hyper_locals_g
            if __gf.len() < #frame_len {
                return;
            }
            #(#const_lets)*
            #(#global_phases)*
        }

        #[allow(clippy::too_many_arguments)]
        fn step_phase<T: ::optim_core::Scalar>(
            &self,
            __phase: usize,
            __gf: &[f64],
            __shares: &mut [f64],
            __t_count: u64,
            __shape: &[usize],
            __scalars: &mut [f64],
            __param: &mut [T],
            __grad: ::optim_core::GradView<'_, T>,
            __states: &mut [::std::vec::Vec<T>],
            __work: &mut ::optim_core::Workspace<T>,
        ) {
            if __gf.len() < #frame_len {
                return;
            }
            <Self as __Kernel>::__step(self, __phase, __gf, __shares, __t_count, __shape, __scalars, __param, __grad, __states, __work)
        }
    };
    let kernel = quote! {
        #(#errors)*
        #[allow(non_camel_case_types, dead_code)]
        struct __Temps<T> {
            #(#temp_fields,)*
            __p: ::core::marker::PhantomData<T>,
        }

        #(#pass_types)*

        trait __Kernel {
            #[allow(clippy::too_many_arguments)]
            fn __step<T: ::optim_core::Scalar>(&self, __phase: usize, __gf: &[f64], __shares: &mut [f64], __t_count: u64, __shape: &[usize], __scalars: &mut [f64], __param: &mut [T], __grad: ::optim_core::GradView<'_, T>, __states: &mut [::std::vec::Vec<T>], __work: &mut ::optim_core::Workspace<T>);
        }

        impl __Kernel for #ty {
            #[allow(unused_variables, unused_mut, unused_assignments, unused_parens, clippy::all)]
            fn __step<T: ::optim_core::Scalar>(&self, __phase: usize, __gf: &[f64], __shares: &mut [f64], __t_count: u64, __shape: &[usize], __scalars: &mut [f64], __param: &mut [T], __grad: ::optim_core::GradView<'_, T>, __states: &mut [::std::vec::Vec<T>], __work: &mut ::optim_core::Workspace<T>) {
                #hyper_locals
                let __t: f64 = __t_count as f64;
                #shape_locals
                let __numel: usize = __param.len();
                let __nrows_all: usize = if __cols_u == 0 { 0 } else { __numel / __cols_u };
                let __ncols_all: usize = if __rows_u == 0 { 0 } else { __numel / __rows_u };
                let __lead: usize = if __rows_u * __cols_u == 0 { 0 } else { __numel / (__rows_u * __cols_u) };
                let __nblk: usize = __numel.div_ceil(::optim_core::kernel::REDUCE_BLOCK);
                let [#(#sc),*] = __scalars else { return; };
                let [#(#st),*] = __states else { return; };
                #grad_local
                let mut __offs = [0usize; #n_offs];
                let mut __need = 0usize;
                #(#offs_code)*
                let ::optim_core::Workspace { sums: __sums_v, bufs: __bufs } = __work;
                if __sums_v.len() != __need {
                    __sums_v.clear();
                    __sums_v.resize(__need, 0.0);
                }
                #mx_setup
                #(#temp_decls)*
                #(#rv_decls)*
                #(#cond_decls)*
                #(#let_decl_code)*
                #max_decl
                #(#steps)*
            }
        }
    };
    Generated { kernel, algorithm }
}

/// The condition a `Cond` item evaluates (`usize::MAX` for other items).
fn item_cond(kind: ItemKind) -> usize {
    match kind {
        ItemKind::Cond(k) => k,
        _ => usize::MAX,
    }
}

/// One piece of optimizer-wide code, writing the frame `__gf`.
fn global_item(
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
                    let op = super::op_tokens(*op);
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
fn section_item(
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
                        let op = super::op_tokens(*op);
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
                        let op = super::op_tokens(*op);
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
            let op = super::op_tokens(*op);
            quote!((#a #op #b))
        }
        ExprKind::Call(f, args) => {
            let xs: Vec<TokenStream> = args.iter().map(|a| factor_expr(m, g, a, shape)).collect();
            let exponent = match (f, args.get(1).map(|a| &a.kind)) {
                (Func::Powi, Some(ExprKind::Int(i))) => {
                    let n = *i as i32;
                    Some(quote!(#n))
                }
                (Func::Powi, _) => {
                    let n = &xs[1];
                    Some(quote!((#n as i32)))
                }
                _ => None,
            };
            call(*f, &xs, exponent, &quote!(f64))
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
fn finalize(m: &Model, plan: &Plan, pass: &Pass, p: usize) -> TokenStream {
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

/// The kernel type of pass `p` and the code that runs it.
#[allow(clippy::too_many_arguments)]
fn pass_kernel(
    m: &Model,
    plan: &Plan,
    p: usize,
    pass: &Pass,
    body: TokenStream,
    work: TokenStream,
    all_conds: usize,
) -> (TokenStream, TokenStream, ()) {
    let _ = all_conds;
    let chunk = format_ident!("__Pass{}", p);
    let n_states = m.states.len();
    let n_mx = m.matrices.len();
    let n_red = m.reductions.len();
    let nr = pass.tensor_reds.len();
    let has_grad = m.grad.is_some();
    let loads = &plan.loads[p];
    let cond_params: Vec<Ident> = pass.conds.iter().map(|&k| cond_param(k)).collect();
    let cond_vals: Vec<Ident> = pass
        .conds
        .iter()
        .map(|&k| format_ident!("__c{}", k))
        .collect();
    let maximize = m.maximize.map(|_| m.conds.len());
    let slices: Vec<Ident> = (0..n_states).map(slice_ident).collect();
    let mxs: Vec<Ident> = (0..n_mx).map(matrix_ident).collect();

    // Which element variables this pass declares: loaded, or assigned only.
    let mut assigned: Vec<Mem> = Vec::new();
    collect_targets(m, plan, p, &m.body, &mut assigned);
    let declares = |x: Mem| loads.contains(&x) || assigned.contains(&x);
    let zero = quote!(<T as ::optim_core::num_traits::Zero>::zero());

    let mut loads_code = Vec::new();
    let mut stores_code = Vec::new();
    if declares(Mem::Param) {
        if loads.contains(&Mem::Param) {
            loads_code.push(quote!(let mut __w = __ws[__e];));
        } else {
            loads_code.push(quote!(let mut __w = #zero;));
        }
        if plan.stores_in(Mem::Param, p) {
            stores_code.push(quote!(__ws[__e] = __w;));
        }
    }
    if has_grad && declares(Mem::Grad) {
        match maximize.filter(|k| pass.conds.contains(k)) {
            Some(k) => {
                let c = cond_param(k);
                loads_code.push(quote!(let mut __g = if #c { -__gs[__e] } else { __gs[__e] };));
            }
            None => loads_code.push(quote!(let mut __g = __gs[__e];)),
        }
    }
    for (i, s) in m.states.iter().enumerate() {
        if s.shape != Shape::Elem || !declares(Mem::State(i)) {
            continue;
        }
        let (ss, l) = (&slices[i], state_local(i));
        let on = match s.when {
            Some(k) if pass.conds.contains(&k) => {
                let c = cond_param(k);
                quote!(#c)
            }
            Some(_) => quote!(false),
            None => quote!(true),
        };
        if loads.contains(&Mem::State(i)) {
            loads_code.push(quote!(let mut #l = if #on { #ss[__e] } else { #zero };));
        } else {
            loads_code.push(quote!(let mut #l = #zero;));
        }
        if plan.stores_in(Mem::State(i), p) {
            stores_code.push(quote!(if #on { #ss[__e] = #l; }));
        }
    }
    let elem = quote! {
        #(#loads_code)*
        #body
        #(#stores_code)*
    };

    // Length guards: the runtime sized everything; the guard keeps the loop panic-free.
    let guard_states: Vec<TokenStream> = m
        .states
        .iter()
        .enumerate()
        .filter(|(_, s)| s.shape == Shape::Elem)
        .map(|(i, _)| {
            let ss = &slices[i];
            quote!((!#ss.is_empty() && #ss.len() < __n))
        })
        .collect();
    let grad_guard = if has_grad {
        quote!(__gs.len() < __n)
    } else {
        quote!(false)
    };
    let mx_guard: Vec<TokenStream> = mxs.iter().map(|x| quote!(#x.len() < __n)).collect();
    let acc_decl_flat: Vec<TokenStream> = (0..nr)
        .map(|j| {
            let a = acc_ident(j);
            quote!(let mut #a = [0.0f64; 8];)
        })
        .collect();
    let acc_fold: Vec<TokenStream> = pass
        .tensor_reds
        .iter()
        .enumerate()
        .map(|(j, &k)| {
            let a = acc_ident(j);
            if m.reductions[k].op == RedOp::MaxAbs {
                quote!(::optim_core::kernel::fold_max(&#a))
            } else {
                quote!(::optim_core::kernel::fold_sum(&#a))
            }
        })
        .collect();
    let js: Vec<usize> = (0..nr).collect();
    let run_loop = match pass.walk {
        Walk::Flat if nr == 0 => quote! {
            for __e in 0..__n {
                #elem
            }
        },
        Walk::Flat => quote! {
            const __RB: usize = ::optim_core::kernel::REDUCE_BLOCK;
            let mut __lo = 0usize;
            let mut __blk = 0usize;
            while __lo < __n {
                let __hi = if __n - __lo > __RB { __lo + __RB } else { __n };
                #(#acc_decl_flat)*
                let mut __i = __lo;
                while __i + 8 <= __hi {
                    for __l in 0..8usize {
                        let __e = __i + __l;
                        #elem
                    }
                    __i += 8;
                }
                let mut __l = 0usize;
                while __i < __hi {
                    let __e = __i;
                    #elem
                    __i += 1;
                    __l += 1;
                }
                if let Some(__pp) = __parts.get_mut(__blk * #nr..__blk * #nr + #nr) {
                    #(__pp[#js] = #acc_fold;)*
                }
                __lo = __hi;
                __blk += 1;
            }
        },
        Walk::Rows => {
            let acc_decl: Vec<TokenStream> = (0..nr)
                .map(|j| {
                    let a = acc_ident(j);
                    quote!(let mut #a: f64 = 0.0;)
                })
                .collect();
            let accs: Vec<Ident> = (0..nr).map(acc_ident).collect();
            quote! {
                #(#acc_decl)*
                let (__nrows, __rr, __cc) = self.dims;
                for __row in 0..__nrows {
                    let __cb = if __rr == 0 { 0 } else { (__row / __rr) * __cc };
                    for __j in 0..__cc {
                        let __e = __row * __cc + __j;
                        #elem
                    }
                }
                let __base = self.part_base;
                #(__sums[__base + #js] = #accs;)*
            }
        }
    };

    let gs_field = quote!(gs: &'a [T],);
    let (parts_field, split_len, align, split_parts, mx_field) = match pass.walk {
        Walk::Flat => (
            quote!(parts: &'a mut [f64],),
            quote!(self.ws.len()),
            if nr > 0 {
                quote!(::optim_core::kernel::REDUCE_BLOCK)
            } else {
                quote!(64)
            },
            quote!(let (__pa, __pb) = ::optim_core::kernel::split_parts(self.parts, __mid, #nr);),
            quote!(mx: [&'a mut [T]; #n_mx],),
        ),
        Walk::Rows => (
            quote!(sums: &'a mut [f64], offs: [usize; #n_red + 1], dims: (usize, usize, usize), part_base: usize,),
            quote!(0),
            quote!(64),
            quote!(),
            quote!(mx: [&'a mut [T]; #n_mx],),
        ),
    };
    let half_a: Vec<Ident> = (0..n_states).map(|i| format_ident!("__a{}", i)).collect();
    let half_b: Vec<Ident> = (0..n_states).map(|i| format_ident!("__b{}", i)).collect();
    let mx_a: Vec<Ident> = (0..n_mx).map(|i| format_ident!("__ma{}", i)).collect();
    let mx_b: Vec<Ident> = (0..n_mx).map(|i| format_ident!("__mb{}", i)).collect();
    let split_body = match pass.walk {
        Walk::Flat => quote! {
            let [#(#slices),*] = self.ss;
            #(let (#half_a, #half_b) = ::optim_core::kernel::split_state(#slices, __mid);)*
            let [#(#mxs),*] = self.mx;
            #(let (#mx_a, #mx_b) = ::optim_core::kernel::split_state(#mxs, __mid);)*
            let (__wa, __wb) = ::optim_core::kernel::split_state(self.ws, __mid);
            let (__ga, __gb) = self.gs.split_at(__mid.min(self.gs.len()));
            #split_parts
            (
                Self { k: self.k, ws: __wa, gs: __ga, ss: [#(#half_a),*], mx: [#(#mx_a),*], parts: __pa },
                Self { k: self.k, ws: __wb, gs: __gb, ss: [#(#half_b),*], mx: [#(#mx_b),*], parts: __pb },
            )
        },
        Walk::Rows => quote!(),
    };
    let rows_extra = if pass.walk == Walk::Rows {
        quote! {
            let __sums = self.sums;
            let __offs = self.offs;
        }
    } else {
        quote!(let __parts = self.parts;)
    };
    let split_body = if pass.walk == Walk::Rows {
        quote! {
            // A row pass is never split (its split length is 0); keep it whole.
            let __b = Self {
                k: self.k,
                ws: &mut [],
                gs: &[],
                ss: ::core::array::from_fn(|_| &mut [][..]),
                mx: ::core::array::from_fn(|_| &mut [][..]),
                sums: &mut [],
                offs: self.offs,
                dims: (0, 0, 0),
                part_base: 0,
            };
            let _ = __mid;
            (self, __b)
        }
    } else {
        split_body
    };
    let bytes = quote!(::optim_core::kernel::bytes_per_elem::<T>(#has_grad, &self.ss));
    let ty_code = quote! {
        #[allow(non_camel_case_types)]
        struct #chunk<'a, T, #(const #cond_params: bool),*> {
            k: &'a __Temps<T>,
            ws: &'a mut [T],
            #gs_field
            ss: [&'a mut [T]; #n_states],
            #mx_field
            #parts_field
        }

        #[allow(unused_variables, unused_mut, unused_assignments, unused_parens, clippy::all)]
        impl<'a, T: ::optim_core::Scalar, #(const #cond_params: bool),*> ::optim_core::kernel::Kernel for #chunk<'a, T, #(#cond_params),*> {
            fn split_len(&self) -> usize {
                #split_len
            }

            fn bytes_per_elem(&self) -> usize {
                #bytes
            }

            fn align(&self) -> usize {
                #align
            }

            fn split_at(self, __mid: usize) -> (Self, Self) {
                #split_body
            }

            #[inline(always)]
            fn run(self) {
                if !(#work) {
                    return;
                }
                let __k = self.k;
                let __ws = self.ws;
                let __gs = self.gs;
                let __n = __ws.len();
                let [#(#slices),*] = self.ss;
                let [#(#mxs),*] = self.mx;
                #rows_extra
                if #grad_guard #(|| #guard_states)* #(|| #mx_guard)* {
                    return;
                }
                #run_loop
            }
        }
    };

    // The call: the pass's arrays, then dispatch on its conditions.
    let st: Vec<Ident> = (0..n_states).map(|i| format_ident!("__st{}", i)).collect();
    let zero_rows: Vec<TokenStream> = m
        .reductions
        .iter()
        .enumerate()
        .filter(|(k, r)| r.op.result_shape().is_some() && plan.red_pass[*k] == Some(p))
        .map(|(k, r)| {
            let len = if r.op.result_shape() == Some(Shape::Row) {
                quote!(__nrows_all)
            } else {
                quote!(__ncols_all)
            };
            quote!(__sums_v[__offs[#k]..__offs[#k] + #len].fill(0.0);)
        })
        .collect();
    let slot = n_red + p;
    let mx_take = if n_mx > 0 {
        let idx: Vec<usize> = (0..n_mx).collect();
        quote! {
            let (__mxv, _) = __bufs.split_at_mut(#n_mx);
            let [#(#mxs),*] = __mxv else { return; };
            let __mx: [&mut [T]; #n_mx] = [#(#mxs.as_mut_slice()),*];
            let _ = [#(#idx),*];
        }
    } else {
        quote!(let __mx: [&mut [T]; 0] = [];)
    };
    let fields_tail = match pass.walk {
        Walk::Flat => quote! {
            parts: &mut __sums_v[__offs[#slot]..__offs[#slot] + __nblk * #nr],
        },
        Walk::Rows => quote! {
            sums: __sums_v.as_mut_slice(),
            offs: {
                let mut __o = [0usize; #n_red + 1];
                __o[..#n_red].copy_from_slice(&__offs[..#n_red]);
                __o
            },
            dims: (__nrows_all, __rows_u, __cols_u),
            part_base: __offs[#slot],
        },
    };
    let leaf = |consts: &[bool]| {
        let consts = consts.iter().map(|b| quote!(#b));
        quote! {
            ::optim_core::kernel::run(#chunk::<T, #(#consts),*> {
                k: &__k,
                ws: &mut *__param,
                gs: __gs,
                ss: [#(#st.as_mut_slice()),*],
                mx: __mx,
                #fields_tail
            })
        }
    };
    let dispatch = dispatch(&cond_vals, &mut Vec::new(), &leaf);
    let call_code = quote! {
        #(#zero_rows)*
        #mx_take
        #dispatch
    };
    (ty_code, call_code, ())
}

/// Element variables assigned by the statements pass `p` runs.
fn collect_targets(m: &Model, plan: &Plan, p: usize, stmts: &[Stmt], out: &mut Vec<Mem>) {
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

/// Nested `if`s over `conds`, one leaf per combination.
fn dispatch(
    conds: &[Ident],
    fixed: &mut Vec<bool>,
    leaf: &dyn Fn(&[bool]) -> TokenStream,
) -> TokenStream {
    if fixed.len() == conds.len() {
        return leaf(fixed);
    }
    let c = &conds[fixed.len()];
    fixed.push(true);
    let a = dispatch(conds, fixed, leaf);
    fixed.pop();
    fixed.push(false);
    let b = dispatch(conds, fixed, leaf);
    fixed.pop();
    quote!(if #c { #a } else { #b })
}
