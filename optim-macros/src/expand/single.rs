//! The kernel of an optimizer whose equations need one pass over the elements (every
//! element-wise optimizer): prelude, dispatch on hoisted conditions, one fused loop, and
//! the sparse-row path.

use super::emit::{cond_param, state_local, Gen};
use super::{destructure, hp, kernel_run_inline};
use crate::model::*;
use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

/// The step: prelude, dispatch on hoisted conditions, and the element loop.
pub(super) fn kernel(m: &Model) -> TokenStream {
    let ty = &m.type_name;
    let mut g = Gen::new(m);
    let run_inline = kernel_run_inline();
    let body = g.elem_stmts(&m.body);
    let has_work = element_work(&m.body);
    // `maximize` is one more hoisted condition: the gradient is negated as it is loaded.
    let mut conds: Vec<TokenStream> = m.conds.iter().map(|c| g.step_expr(c)).collect();
    let max_cond = m.maximize.map(|i| {
        let l = hp(&m.hypers[i].name);
        conds.push(quote!(#l));
        conds.len() - 1
    });
    let n_conds = conds.len();
    let cond_params: Vec<Ident> = (0..n_conds).map(cond_param).collect();
    let cond_vals: Vec<Ident> = (0..n_conds).map(|k| format_ident!("__c{}", k)).collect();
    let prelude = &g.prelude;
    let (temp_fields, temp_inits) = super::emit::temp_struct(&g.temps);

    let n_states = m.states.len();
    let st: Vec<Ident> = (0..n_states).map(|i| format_ident!("__st{}", i)).collect();
    let slices: Vec<Ident> = (0..n_states).map(|i| format_ident!("__ss{}", i)).collect();
    let sc: Vec<Ident> = (0..m.scalars.len())
        .map(|i| format_ident!("__sc{}", i))
        .collect();
    let locals: Vec<Ident> = (0..n_states).map(state_local).collect();

    // Loads, stores and length checks; optional states only under their condition.
    let mut reslice = Vec::new();
    let mut loads = Vec::new();
    let mut stores = Vec::new();
    for (i, s) in m.states.iter().enumerate() {
        let (ss, l) = (&slices[i], &locals[i]);
        match s.when {
            None => {
                reslice.push(quote!(let #ss = &mut #ss[..__n];));
                loads.push(quote!(let mut #l = #ss[__i];));
                stores.push(quote!(#ss[__i] = #l;));
            }
            Some(k) => {
                let c = cond_param(k);
                reslice.push(quote!(let #ss: &mut [T] = if #c { &mut #ss[..__n] } else { #ss };));
                loads.push(quote!(let mut #l = if #c { #ss[__i] } else { <T as ::optim_core::num_traits::Zero>::zero() };));
                stores.push(quote!(if #c { #ss[__i] = #l; }));
            }
        }
    }
    let has_grad = m.grad.is_some();
    let (grad_param, grad_reslice, grad_load) = if has_grad {
        let load = match max_cond {
            Some(k) => {
                let c = cond_param(k);
                quote!(let mut __g = if #c { -__gs[__i] } else { __gs[__i] };)
            }
            None => quote!(let mut __g = __gs[__i];),
        };
        (quote!(__gs: &[T],), quote!(let __gs = &__gs[..__n];), load)
    } else {
        (quote!(), quote!(), quote!())
    };

    // The lengths are checked by the runtime; the guard keeps the kernel panic-free.
    let length_guard = if has_grad {
        quote!(if __gs.len() < __n #(|| (!#slices.is_empty() && #slices.len() < __n))* { return; })
    } else {
        quote!(if false #(|| (!#slices.is_empty() && #slices.len() < __n))* { return; })
    };

    let elems_fn = quote! {
        #[inline(always)]
        #[allow(unused_variables, unused_mut, unused_assignments, unused_parens, clippy::all)]
        fn __elems<T: ::optim_core::Scalar, #(const #cond_params: bool),*>(
            __k: &__Temps<T>,
            __ws: &mut [T],
            #grad_param
            #(#slices: &mut [T]),*
        ) {
            let __n = __ws.len();
            // Const for each combination of hoisted conditions: a combination that writes
            // nothing per element (Lookahead between syncs) skips the pass over memory.
            if !(#has_work) {
                return;
            }
            #length_guard
            #grad_reslice
            #(#reslice)*
            for __i in 0..__n {
                let mut __w = __ws[__i];
                #grad_load
                #(#loads)*
                #body
                __ws[__i] = __w;
                #(#stores)*
            }
        }
    };

    // The work of one call, handed to the runtime (`::optim_core::kernel::run`), which
    // splits it across threads when it is large and runs each piece with the best
    // instruction set the CPU has: `run` is `#[inline(always)]`, so the runtime's
    // `#[target_feature]` wrappers compile the element loop once per instruction set.
    let n_arr = Literal::usize_unsuffixed(n_states);
    let half_a: Vec<Ident> = (0..n_states).map(|i| format_ident!("__a{}", i)).collect();
    let half_b: Vec<Ident> = (0..n_states).map(|i| format_ident!("__b{}", i)).collect();
    let sub_slices: Vec<TokenStream> = slices
        .iter()
        .map(|s| quote!(::optim_core::kernel::span_or_empty(#s, __a, __b)))
        .collect();
    let run_body = if has_grad {
        quote! {
            match self.grad {
                ::optim_core::GradView::Dense(__gs) => {
                    __elems::<T, #(#cond_params),*>(self.k, self.ws, __gs, #(#slices),*)
                }
                ::optim_core::GradView::Rows { width, rows, values } => {
                    let __ws = self.ws;
                    for (__j, &__r) in rows.iter().enumerate() {
                        // Rows are scattered: start loading a later row's elements now.
                        let __ahead = __j + ::optim_core::kernel::PREFETCH_ROWS;
                        ::optim_core::kernel::prefetch_row(__ws, rows, __ahead, width);
                        #(::optim_core::kernel::prefetch_row(#slices, rows, __ahead, width);)*
                        let (__a, __b) = (__r * width, __r * width + width);
                        let (Some(__wr), Some(__gr)) = (__ws.get_mut(__a..__b), values.get(__j * width..__j * width + width)) else {
                            return;
                        };
                        __elems::<T, #(#cond_params),*>(self.k, __wr, __gr, #(#sub_slices),*)
                    }
                }
                ::optim_core::GradView::None => {}
            }
        }
    } else {
        quote!(__elems::<T, #(#cond_params),*>(self.k, self.ws, #(#slices),*))
    };
    let compact_body = compact_body(has_grad, &slices, &cond_params);
    let chunk = quote! {
        /// A span of the parameter with the same span of its gradient and states (the
        /// whole arrays for sparse rows); disabled states are empty.
        struct __Chunk<'a, T, #(const #cond_params: bool),*> {
            k: &'a __Temps<T>,
            ws: &'a mut [T],
            grad: ::optim_core::GradView<'a, T>,
            ss: [::optim_core::precision::StateSpan<'a, T>; #n_arr],
        }

        #[allow(unused_variables, clippy::all)]
        impl<'a, T: ::optim_core::Scalar, #(const #cond_params: bool),*> ::optim_core::kernel::Kernel for __Chunk<'a, T, #(#cond_params),*> {
            fn split_len(&self) -> usize {
                ::optim_core::kernel::splittable_len(&self.grad, self.ws.len())
            }

            fn bytes_per_elem(&self) -> usize {
                ::optim_core::kernel::bytes_per_elem::<T>(#has_grad, &self.ss)
            }

            fn split_at(self, __mid: usize) -> (Self, Self) {
                let [#(#slices),*] = self.ss;
                #(let (#half_a, #half_b) = #slices.split_at(__mid);)*
                let (__wa, __wb) = ::optim_core::kernel::split_state(self.ws, __mid);
                let (__ga, __gb) = ::optim_core::kernel::split_grad(self.grad, __mid);
                (
                    Self { k: self.k, ws: __wa, grad: __ga, ss: [#(#half_a),*] },
                    Self { k: self.k, ws: __wb, grad: __gb, ss: [#(#half_b),*] },
                )
            }

            #run_inline
            #[allow(clippy::all)]
            fn run(self) {
                let [#(#slices),*] = self.ss;
                if true #(&& #slices.is_full())* {
                    // States in the parameter's precision: stepped where they are.
                    #(let #slices = #slices.into_full();)*
                    #run_body
                } else {
                    #(let mut #slices = #slices;)*
                    #compact_body
                }
            }
        }
    };

    let dispatch = dispatch(&cond_vals, &mut Vec::new());
    let hyper_locals = destructure(m);
    let shape_locals = super::emit::shape_locals();
    quote! {
        #[allow(non_camel_case_types, dead_code)]
        struct __Temps<T> {
            #(#temp_fields,)*
            __p: ::core::marker::PhantomData<T>,
        }

        #elems_fn
        #chunk

        trait __Kernel {
            #[allow(clippy::too_many_arguments)]
            fn __step<T: ::optim_core::Scalar>(&self, __t_count: u64, __shape: &[usize], __scalars: &mut [f64], __param: &mut [T], __grad: ::optim_core::GradView<'_, T>, __states: &mut [::optim_core::StateBuf<T>], __work: &mut ::optim_core::Workspace<T>);
        }

        impl __Kernel for #ty {
            #[allow(unused_variables, unused_mut, unused_assignments, unused_parens, clippy::all)]
            fn __step<T: ::optim_core::Scalar>(&self, __t_count: u64, __shape: &[usize], __scalars: &mut [f64], __param: &mut [T], __grad: ::optim_core::GradView<'_, T>, __states: &mut [::optim_core::StateBuf<T>], __work: &mut ::optim_core::Workspace<T>) {
                #hyper_locals
                let __t: f64 = __t_count as f64;
                #shape_locals
                let [#(#sc),*] = __scalars else { return; };
                let [#(#st),*] = __states else { return; };
                #(#prelude)*
                #(let #cond_vals: bool = #conds;)*
                let __k = __Temps::<T> {
                    #(#temp_inits,)*
                    __p: ::core::marker::PhantomData,
                };
                let __ws = __param;
                let __ss: [::optim_core::precision::StateSpan<'_, T>; #n_arr] = [#(#st.span()),*];
                #dispatch
            }
        }
    }
}

/// The element loop over compact states: the span in windows of one 8-bit block, each
/// state's window decoded into a buffer on the stack, stepped by the same loop, and
/// encoded back; a sparse row steps the blocks it overlaps (re-encoding each whole).
fn compact_body(has_grad: bool, slices: &[Ident], cond_params: &[Ident]) -> TokenStream {
    let bufs: Vec<Ident> = (0..slices.len())
        .map(|i| format_ident!("__buf{}", i))
        .collect();
    let views: Vec<Ident> = (0..slices.len())
        .map(|i| format_ident!("__view{}", i))
        .collect();
    let block = quote!(::optim_core::compact::Q8_BLOCK);
    let zero = quote!(<T as ::optim_core::num_traits::Zero>::zero());
    let decls = quote! {
        let __ws = self.ws;
        let __n = __ws.len();
        #(let mut #bufs = [#zero; #block];)*
    };
    let windows = quote!(#(let #views = #slices.window(__lo, __len, &mut #bufs);)*);
    let commits = quote!(#(#slices.commit(__lo, __len, &#bufs);)*);
    if !has_grad {
        return quote! {
            #decls
            let mut __lo = 0usize;
            while __lo < __n {
                let __len = (__n - __lo).min(#block);
                let Some(__wb) = __ws.get_mut(__lo..__lo + __len) else { return; };
                {
                    #windows
                    __elems::<T, #(#cond_params),*>(self.k, __wb, #(#views),*);
                }
                #commits
                __lo += __len;
            }
        };
    }
    quote! {
        #decls
        match self.grad {
            ::optim_core::GradView::Dense(__gs) => {
                let mut __lo = 0usize;
                while __lo < __n {
                    let __len = (__n - __lo).min(#block);
                    // Decoding and encoding keep the core busy: fetch blocks ahead.
                    let __ahead = __lo + ::optim_core::kernel::PREFETCH_BLOCKS * #block;
                    ::optim_core::kernel::prefetch_span(__ws, __ahead, #block);
                    ::optim_core::kernel::prefetch_span(__gs, __ahead, #block);
                    #(#slices.prefetch(__ahead, #block);)*
                    let (Some(__wb), Some(__gb)) = (__ws.get_mut(__lo..__lo + __len), __gs.get(__lo..__lo + __len)) else {
                        return;
                    };
                    {
                        #windows
                        __elems::<T, #(#cond_params),*>(self.k, __wb, __gb, #(#views),*);
                    }
                    #commits
                    __lo += __len;
                }
            }
            ::optim_core::GradView::Rows { width, rows, values } => {
                for (__j, &__r) in rows.iter().enumerate() {
                    let (__a, __b) = (__r * width, __r * width + width);
                    let Some(__gr) = values.get(__j * width..__j * width + width) else {
                        return;
                    };
                    let mut __lo = __a / #block * #block;
                    while __lo < __b && __lo < __n {
                        let __len = (__n - __lo).min(#block);
                        let (__s0, __s1) = (__a.max(__lo), __b.min(__lo + __len));
                        let (Some(__wb), Some(__gb)) = (__ws.get_mut(__s0..__s1), __gr.get(__s0 - __a..__s1 - __a)) else {
                            return;
                        };
                        {
                            #windows
                            #(let #views = ::optim_core::kernel::span_or_empty(#views, __s0 - __lo, __s1 - __lo);)*
                            __elems::<T, #(#cond_params),*>(self.k, __wb, __gb, #(#views),*);
                        }
                        #commits
                        __lo += #block;
                    }
                }
            }
            ::optim_core::GradView::None => {}
        }
    }
}

/// Whether the element statements write anything, as an expression of the const
/// hoisted conditions (`__C0`, ...); folded at compile time per combination.
fn element_work(stmts: &[Stmt]) -> TokenStream {
    let parts: Vec<TokenStream> = stmts
        .iter()
        .filter_map(|s| match s {
            // Per-step lets and scalar assignments run in the prelude, not per element.
            Stmt::Let { value, .. } if value.level.is_scalar() => None,
            Stmt::Assign {
                target: Target::Scalar(_),
                ..
            } => None,
            Stmt::Let { .. } | Stmt::Assign { .. } => Some(quote!(true)),
            Stmt::Reduce(_) | Stmt::MatrixArg(_) => None,
            Stmt::If {
                cond,
                then,
                otherwise,
            } => {
                let a = element_work(&then.stmts);
                let b = otherwise
                    .as_ref()
                    .map_or(quote!(false), |o| element_work(&o.stmts));
                Some(match cond {
                    Cond::Hoisted(k) => {
                        let c = cond_param(*k);
                        quote!(((#c && #a) || (!#c && #b)))
                    }
                    Cond::Inline(_) => quote!((#a || #b)),
                })
            }
        })
        .collect();
    if parts.is_empty() {
        quote!(false)
    } else {
        quote!(#(#parts)||*)
    }
}

/// `if __c0 { if __c1 { run(__Chunk::<T, true, true> {..}) } else { .. } } else { .. }`:
/// one monomorphized loop per combination of hoisted conditions, chosen once per step.
fn dispatch(conds: &[Ident], fixed: &mut Vec<bool>) -> TokenStream {
    if fixed.len() == conds.len() {
        let consts = fixed.iter().map(|b| quote!(#b));
        return quote! {
            ::optim_core::kernel::run(__Chunk::<T, #(#consts),*> { k: &__k, ws: __ws, grad: __grad, ss: __ss })
        };
    }
    let c = &conds[fixed.len()];
    fixed.push(true);
    let a = dispatch(conds, fixed);
    fixed.pop();
    fixed.push(false);
    let b = dispatch(conds, fixed);
    fixed.pop();
    quote!(if #c { #a } else { #b })
}
