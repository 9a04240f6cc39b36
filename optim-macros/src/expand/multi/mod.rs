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

mod elem;
mod pass;
mod section;

use super::emit::{local, reduced, Gen};
use super::plan::{self, ItemKind, Mem, Plan};
use super::{destructure, hp};
use crate::model::*;
use elem::{pass_shape, pass_work};
use pass::pass_kernel;
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};
use section::{finalize, global_item, item_cond, section_item};
use std::collections::{BTreeSet, HashMap};

/// How a pass walks the elements.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Walk {
    /// Flat, in blocks, splittable across threads.
    Flat,
    /// Row by row (it reads or writes per-row or per-column values), whole.
    Rows,
}

pub(super) struct Pass {
    pub(super) walk: Walk,
    /// Reductions over the whole tensor this pass accumulates, in order.
    pub(super) tensor_reds: Vec<usize>,
    /// Hoisted conditions it compiles out (indices into `Model::conds`; `maximize` last).
    pub(super) conds: Vec<usize>,
}

/// Everything the element code of one pass needs to know.
pub(super) struct ElemGen<'a> {
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

pub(super) fn acc_ident(j: usize) -> Ident {
    format_ident!("__acc{}", j)
}

pub(super) fn matrix_ident(k: usize) -> Ident {
    format_ident!("__mx{}", k)
}

pub(super) fn slice_ident(i: usize) -> Ident {
    format_ident!("__ss{}", i)
}

pub(super) fn to_f64(x: TokenStream) -> TokenStream {
    quote!(<T as ::optim_core::Scalar>::to_f64(#x))
}

pub(super) fn from_f64(x: TokenStream) -> TokenStream {
    quote!(<T as ::optim_core::Scalar>::from_f64(#x))
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
    let factored_full: Vec<TokenStream> = m
        .states
        .iter()
        .zip(&st)
        .filter(|(s, _)| s.shape != Shape::Elem)
        .map(|(_, st)| quote!(let #st: &mut [T] = #st.full_mut();))
        .collect();
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
            __states: &mut [::optim_core::StateBuf<T>],
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
            fn __step<T: ::optim_core::Scalar>(&self, __phase: usize, __gf: &[f64], __shares: &mut [f64], __t_count: u64, __shape: &[usize], __scalars: &mut [f64], __param: &mut [T], __grad: ::optim_core::GradView<'_, T>, __states: &mut [::optim_core::StateBuf<T>], __work: &mut ::optim_core::Workspace<T>);
        }

        impl __Kernel for #ty {
            #[allow(unused_variables, unused_mut, unused_assignments, unused_parens, clippy::all)]
            fn __step<T: ::optim_core::Scalar>(&self, __phase: usize, __gf: &[f64], __shares: &mut [f64], __t_count: u64, __shape: &[usize], __scalars: &mut [f64], __param: &mut [T], __grad: ::optim_core::GradView<'_, T>, __states: &mut [::optim_core::StateBuf<T>], __work: &mut ::optim_core::Workspace<T>) {
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
                // Factored states are always full; per-tensor code indexes them.
                #(#factored_full)*
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
