//! The kernel type of one pass (split, instruction sets, threads) and its dispatch.

use super::super::emit::{cond_param, state_local};
use super::super::kernel_run_inline;
use super::super::plan::{Mem, Plan};
use super::elem::collect_targets;
use super::*;
use crate::model::*;
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

/// The kernel type of pass `p` and the code that runs it.
#[allow(clippy::too_many_arguments)]
pub(super) fn pass_kernel(
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
    let run_inline = kernel_run_inline();
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
    // Flat passes: every array cut to the pass's length, so the loop indexes without
    // bounds checks (as a one-pass kernel does) and vectorizes.
    let mut reslice = vec![quote!(let Some(__ws) = __ws.get_mut(..__n) else { return; };)];
    if has_grad {
        reslice.push(quote!(let Some(__gs) = __gs.get(..__n) else { return; };));
    }
    // A pass that reduces walks each block in sub-blocks of `SUB` elements, each array
    // cut to the sub-block (so the loop vectorizes as a one-pass loop does); the values
    // reduced are kept, then added into eight lanes in order.
    let mut sub_views =
        vec![quote!(let Some(__ws) = __ws.get_mut(__sub..__sub + __len) else { return; };)];
    if has_grad {
        sub_views.push(quote!(let Some(__gs) = __gs.get(__sub..__sub + __len) else { return; };));
    }
    // Element states: each a span (full, or compact and decoded a sub-block at a time
    // into a buffer on the stack, encoded back after it when this pass writes it).
    let spans: Vec<Ident> = (0..n_states).map(|i| format_ident!("__sp{}", i)).collect();
    let sbufs: Vec<Ident> = (0..n_states).map(|i| format_ident!("__sb{}", i)).collect();
    let mut flat_prep = Vec::new();
    let mut sub_commits = Vec::new();
    let mut rows_prep = Vec::new();
    let mut rows_finish = Vec::new();
    for (i, s) in m.states.iter().enumerate() {
        let ss = &slices[i];
        if s.shape != Shape::Elem {
            flat_prep.push(quote!(let #ss = #ss.into_full();));
            rows_prep.push(quote!(let #ss = #ss.into_full();));
            continue;
        }
        let (sp, sb) = (&spans[i], &sbufs[i]);
        let writes = plan.stores_in(Mem::State(i), p);
        flat_prep.push(quote! {
            let mut #sp = #ss;
            let mut #sb = [#zero; ::optim_core::compact::Q8_BLOCK];
        });
        rows_prep
            .push(quote!(let mut #sp = ::optim_core::precision::StateCursor::new(#ss, #writes);));
        rows_finish.push(quote!(#sp.finish();));
        let used = match s.when {
            Some(k) => pass.conds.contains(&k),
            None => true,
        };
        if used {
            // A disabled state's window is empty, as its kernel expects.
            sub_views.push(quote!(let #ss = #sp.window(__sub, __len, &mut #sb);));
            if writes {
                sub_commits.push(quote!(#sp.commit(__sub, __len, &#sb);));
            }
        }
    }
    for mx in &mxs {
        sub_views.push(quote!(let Some(#mx) = #mx.get_mut(__sub..__sub + __len) else { return; };));
    }
    let bufs: Vec<Ident> = (0..nr).map(|j| format_ident!("__rb{}", j)).collect();
    let lane_adds: Vec<TokenStream> = pass
        .tensor_reds
        .iter()
        .enumerate()
        .map(|(j, &k)| lane_add(&acc_ident(j), &bufs[j], m.reductions[k].op))
        .collect();
    let run_loop = match pass.walk {
        Walk::Flat if nr == 0 => quote! {
            #(#reslice)*
            #(#flat_prep)*
            let mut __sub = 0usize;
            while __sub < __n {
                let __len = (__n - __sub).min(::optim_core::compact::Q8_BLOCK);
                {
                    #(#sub_views)*
                    for __e in 0..__len {
                        #elem
                    }
                }
                #(#sub_commits)*
                __sub += __len;
            }
        },
        Walk::Flat => quote! {
            const __RB: usize = ::optim_core::kernel::REDUCE_BLOCK;
            const __SUB: usize = 256;
            #(#reslice)*
            #(#flat_prep)*
            // Each sub-block writes the first `__len` values before the lanes read them.
            #(let mut #bufs = [0.0f64; __SUB];)*
            let mut __lo = 0usize;
            let mut __blk = 0usize;
            while __lo < __n {
                let __hi = if __n - __lo > __RB { __lo + __RB } else { __n };
                #(#acc_decl_flat)*
                let mut __sub = __lo;
                while __sub < __hi {
                    let __len = (__hi - __sub).min(__SUB);
                    {
                        #(#sub_views)*
                        for __e in 0..__len {
                            #elem
                        }
                    }
                    #(#sub_commits)*
                    #(#lane_adds)*
                    __sub += __len;
                }
                if let Some(__pp) = __parts.get_mut(__blk * #nr..__blk * #nr + #nr) {
                    #(__pp[#js] = #acc_fold;)*
                }
                __lo = __hi;
                __blk += 1;
            }
        },
        Walk::Rows => {
            // Each row in sub-blocks of `SUB` columns, every array cut to them (column
            // states to the row's matrix), so the loop indexes without bounds checks; the
            // values reduced are kept and added into lanes (the tensor's, the row's).
            let mut row_views =
                vec![quote!(let Some(__ws) = __ws.get_mut(__at..__at + __len) else { return; };)];
            if has_grad {
                row_views
                    .push(quote!(let Some(__gs) = __gs.get(__at..__at + __len) else { return; };));
            }
            for (i, s) in m.states.iter().enumerate() {
                let ss = &slices[i];
                let (lo, hi) = match s.shape {
                    Shape::Elem => {
                        // Rows in column windows: a cursor keeps the blocks they touch.
                        let used = s.when.is_none_or(|k| pass.conds.contains(&k));
                        if used {
                            let sp = &spans[i];
                            row_views.push(quote!(let #ss = #sp.window(__at, __len);));
                        }
                        continue;
                    }
                    Shape::Col => (quote!(__cb + __sub), quote!(__cb + __sub + __len)),
                    Shape::Row => continue,
                };
                match s.when {
                    None => row_views
                        .push(quote!(let Some(#ss) = #ss.get_mut(#lo..#hi) else { return; };)),
                    Some(k) if pass.conds.contains(&k) => {
                        let c = cond_param(k);
                        row_views.push(quote! {
                            let #ss: &mut [T] = if #c {
                                match #ss.get_mut(#lo..#hi) { Some(__s) => __s, None => return }
                            } else {
                                #ss
                            };
                        });
                    }
                    Some(_) => {}
                }
            }
            for mx in &mxs {
                row_views.push(
                    quote!(let Some(#mx) = #mx.get_mut(__at..__at + __len) else { return; };),
                );
            }
            let row_reds: Vec<usize> = m
                .reductions
                .iter()
                .enumerate()
                .filter(|(k, r)| r.level == Level::Row && plan.red_pass[*k] == Some(p))
                .map(|(k, _)| k)
                .collect();
            let row_lanes: Vec<Ident> = row_reds
                .iter()
                .map(|k| format_ident!("__ral{}", k))
                .collect();
            let row_bufs: Vec<Ident> = row_reds
                .iter()
                .map(|k| format_ident!("__rrb{}", k))
                .collect();
            let row_adds: Vec<TokenStream> = row_reds
                .iter()
                .zip(row_lanes.iter().zip(&row_bufs))
                .map(|(&k, (a, b))| lane_add(a, b, m.reductions[k].op))
                .collect();
            let row_folds: Vec<TokenStream> = row_lanes
                .iter()
                .map(|a| quote!(::optim_core::kernel::fold_sum(&#a)))
                .collect();
            quote! {
                const __SUB: usize = 256;
                #(#rows_prep)*
                #(#acc_decl_flat)*
                #(let mut #bufs = [0.0f64; __SUB];)*
                #(let mut #row_bufs = [0.0f64; __SUB];)*
                let (__nrows, __rr, __cc) = self.dims;
                for __row in 0..__nrows {
                    let __cb = if __rr == 0 { 0 } else { (__row / __rr) * __cc };
                    #(let mut #row_lanes = [0.0f64; 8];)*
                    let mut __sub = 0usize;
                    while __sub < __cc {
                        let __len = (__cc - __sub).min(__SUB);
                        let __at = __row * __cc + __sub;
                        {
                            #(#row_views)*
                            for __e in 0..__len {
                                let __j = __sub + __e;
                                #elem
                            }
                        }
                        #(#lane_adds)*
                        #(#row_adds)*
                        __sub += __len;
                    }
                    #(__sums[__offs[#row_reds] + __row] = #row_folds;)*
                }
                #(#rows_finish)*
                let __base = self.part_base;
                #(__sums[__base + #js] = #acc_fold;)*
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
            #(let (#half_a, #half_b) = #slices.split_at(__mid);)*
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
                ss: ::core::array::from_fn(|_| ::optim_core::precision::StateSpan::Full(&mut [][..])),
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
            ss: [::optim_core::precision::StateSpan<'a, T>; #n_states],
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

            #run_inline
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
    let st_spans: Vec<TokenStream> = m
        .states
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let st = format_ident!("__st{}", i);
            if s.shape == Shape::Elem {
                quote!(#st.span())
            } else {
                quote!(::optim_core::precision::StateSpan::Full(&mut *#st))
            }
        })
        .collect();
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
                ss: [#(#st_spans),*],
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

/// Adds the first `__len` values of `buf` into the eight lanes of `acc`, in order: the
/// value at position q goes to lane q mod 8 (a loop that vectorizes).
fn lane_add(acc: &Ident, buf: &Ident, op: RedOp) -> TokenStream {
    let add = if op == RedOp::MaxAbs {
        quote!(#acc[__l] = f64::max(#acc[__l], __v);)
    } else {
        quote!(#acc[__l] += __v;)
    };
    let local = quote!(__lane);
    let add_local = if op == RedOp::MaxAbs {
        quote!(#local[__l] = f64::max(#local[__l], __c[__l]);)
    } else {
        quote!(#local[__l] += __c[__l];)
    };
    quote! {
        let (__full, __rest) = #buf[..__len].split_at(__len / 8 * 8);
        // The lanes in a local array of eight, each 8-chunk as an array: the adds vectorize.
        let mut #local: [f64; 8] = #acc;
        for __c in __full.chunks_exact(8) {
            let Ok(__c) = <&[f64; 8]>::try_from(__c) else { continue };
            for __l in 0..8usize {
                #add_local
            }
        }
        #acc = #local;
        for (__l, &__v) in __rest.iter().enumerate() {
            #add
        }
    }
}
