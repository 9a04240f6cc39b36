//! Stage 3: code. Generates, from the typed model, the hyperparameter type (defaults,
//! builder, `Debug`), its `Algorithm` impl, and the fused step kernel:
//!
//! - per-step values (bias corrections, `lr / (1 - β1^t)`) are computed once, in `f64`,
//!   before the element loop, and converted to `T` once;
//! - per-step conditions (options, `t == 1`, RAdam's `ρ_t > 5`) become const generic
//!   parameters of the element loop: each combination is its own monomorphized loop
//!   without branches, chosen once per step;
//! - the loop makes one pass over the parameter, gradient and state slices;
//! - the loop (`__elems`, `#[inline(always)]`) is handed to the runtime as a `__Chunk`
//!   (an `optim_core::kernel::Kernel`): the runtime compiles it once per instruction set
//!   (AVX2, AVX-512, portable) and picks one at run time, and splits a large span into
//!   chunks for rayon. The generated code holds no `unsafe` and no `#[target_feature]`.

mod emit;
mod multi;
mod plan;
mod single;

use crate::model::*;
use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

/// Generates everything for a checked model.
pub fn generate(m: &Model) -> TokenStream {
    let ty_def = type_def(m);
    let algorithm = algorithm_impl(m);
    quote! {
        #ty_def
        #[doc(hidden)]
        const _: () = {
            #algorithm
        };
    }
}

/// The attribute on every generated `Kernel::run`: inlined into each instruction set's
/// wrapper when optimizing; an unoptimized build compiles the loop once (a third of the
/// code, and vectorizing is the optimizer's work anyway).
fn kernel_run_inline() -> TokenStream {
    quote!(#[cfg_attr(not(debug_assertions), inline(always))])
}

fn hp(name: &Ident) -> Ident {
    format_ident!("__hp_{}", name)
}

fn f64_lit(x: f64) -> TokenStream {
    if x.is_finite() {
        let l = Literal::f64_suffixed(x);
        quote!(#l)
    } else if x.is_nan() {
        quote!(f64::NAN)
    } else if x > 0.0 {
        quote!(f64::INFINITY)
    } else {
        quote!(f64::NEG_INFINITY)
    }
}

fn value_tokens(v: Value) -> TokenStream {
    match v {
        Value::Float(x) => {
            let l = f64_lit(x);
            quote!(::optim_core::HyperValue::Float(#l))
        }
        Value::Bool(b) => quote!(::optim_core::HyperValue::Bool(#b)),
        Value::Int(i) => quote!(::optim_core::HyperValue::Int(#i)),
    }
}

fn rust_ty(kind: HyperKind) -> TokenStream {
    match kind {
        HyperKind::Float => quote!(f64),
        HyperKind::Bool => quote!(bool),
        HyperKind::Int => quote!(i64),
    }
}

fn raw_default(v: Value) -> TokenStream {
    match v {
        Value::Float(x) => f64_lit(x),
        Value::Bool(b) => quote!(#b),
        Value::Int(i) => quote!(#i),
    }
}

fn bound_tokens(b: Bound) -> TokenStream {
    match b {
        Bound::Unbounded => quote!(::optim_core::Bound::Unbounded),
        Bound::Inclusive(x) => {
            let l = f64_lit(x);
            quote!(::optim_core::Bound::Inclusive(#l))
        }
        Bound::Exclusive(x) => {
            let l = f64_lit(x);
            quote!(::optim_core::Bound::Exclusive(#l))
        }
    }
}

fn show_default(v: Value) -> String {
    match v {
        Value::Float(x) => format!("{x:?}"),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
    }
}

/// The public type: fields, `Default`, builder methods, `build`.
fn type_def(m: &Model) -> TokenStream {
    let name = &m.type_name;
    let vis = &m.vis;
    let docs = &m.doc;
    let lints = &m.lints;
    let mut table = String::from("\n\n# Hyperparameters\n\n| name | default | valid | meaning |\n| --- | --- | --- | --- |\n");
    for h in &m.hypers {
        let range = match h.kind {
            HyperKind::Bool => "`true`/`false`".to_string(),
            _ => crate::check::show_range(h.lo, h.hi),
        };
        table.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            h.name,
            show_default(h.default),
            range,
            h.doc
        ));
    }
    if !m.states.is_empty() || !m.scalars.is_empty() {
        table.push_str("\n# State per parameter\n\n");
        for s in &m.states {
            let when = s
                .when
                .map(|_| " (only when its option is on)")
                .unwrap_or("");
            table.push_str(&format!("- `{}`: element-wise{when}\n", s.name));
        }
        for s in &m.scalars {
            table.push_str(&format!("- `{}`: one number\n", s.name));
        }
    }
    table.push_str(&format!(
        "\n# Update rule, as written\n\n```text\n{}\n```\n",
        m.source
    ));
    let fields = m.hypers.iter().map(|h| {
        let n = &h.name;
        let t = rust_ty(h.kind);
        let doc = &h.doc;
        quote!(#[doc = #doc] pub #n: #t)
    });
    let defaults = m.hypers.iter().map(|h| {
        let n = &h.name;
        let d = raw_default(h.default);
        quote!(#n: #d)
    });
    let setters = m.hypers.iter().map(|h| {
        let n = &h.name;
        let t = rust_ty(h.kind);
        let doc = format!("Sets `{n}`: {} Checked when the optimizer is built.", h.doc);
        quote! {
            #[doc = #doc]
            #[must_use]
            pub fn #n(mut self, value: #t) -> Self {
                self.#n = value;
                self
            }
        }
    });
    let build = if m.grad.is_some() {
        quote! {
            /// Checks every hyperparameter against its range and builds the optimizer for
            /// element type `T` (`f32` or `f64`).
            pub fn build<T: ::optim_core::Scalar>(self) -> ::optim_core::Result<::optim_core::optim::Optim<Self, T>> {
                ::optim_core::optim::Optim::new(self)
            }
        }
    } else {
        quote! {
            /// Checks every hyperparameter against its range and wraps `inner`.
            pub fn wrap<T: ::optim_core::Scalar>(self, inner: ::std::boxed::Box<dyn ::optim_core::Optimizer<T>>) -> ::optim_core::Result<::optim_core::wrapper::Wrapped<Self, T>> {
                ::optim_core::wrapper::Wrapped::new(self, inner)
            }
        }
    };
    quote! {
        #(#docs)*
        #(#lints)*
        #[doc = #table]
        #[derive(Clone, Copy, Debug, PartialEq)]
        #vis struct #name {
            #(#fields,)*
        }

        impl ::core::default::Default for #name {
            fn default() -> Self {
                Self { #(#defaults,)* }
            }
        }

        impl #name {
            #(#setters)*
            #build
        }
    }
}

/// Destructures `self` into `__hp_*` locals.
fn destructure(m: &Model) -> TokenStream {
    let pats = m.hypers.iter().map(|h| {
        let n = &h.name;
        let l = hp(n);
        quote!(#n: #l)
    });
    quote!(let Self { #(#pats,)* } = *self;)
}

fn algorithm_impl(m: &Model) -> TokenStream {
    let ty = &m.type_name;
    let name = &m.name;
    let doc: String = m
        .doc
        .iter()
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|s| s.strip_prefix(' ').map(str::to_string).unwrap_or(s))
        .collect::<Vec<_>>()
        .join("\n");
    let specs = m.hypers.iter().map(|h| {
        let n = h.name.to_string();
        let kind = match h.kind {
            HyperKind::Float => quote!(Float),
            HyperKind::Bool => quote!(Bool),
            HyperKind::Int => quote!(Int),
        };
        let default = value_tokens(h.default);
        let (lo, hi) = (bound_tokens(h.lo), bound_tokens(h.hi));
        let d = &h.doc;
        quote! {
            ::optim_core::HyperSpec {
                name: #n,
                kind: ::optim_core::HyperKind::#kind,
                default: #default,
                range: ::optim_core::Range { lo: #lo, hi: #hi },
                doc: #d,
            }
        }
    });
    let get_arms = m.hypers.iter().map(|h| {
        let n = &h.name;
        let s = n.to_string();
        let v = match h.kind {
            HyperKind::Float => quote!(::optim_core::HyperValue::Float(self.#n)),
            HyperKind::Bool => quote!(::optim_core::HyperValue::Bool(self.#n)),
            HyperKind::Int => quote!(::optim_core::HyperValue::Int(self.#n)),
        };
        quote!(#s => ::core::option::Option::Some(#v))
    });
    let set_arms = m.hypers.iter().map(|h| {
        let n = &h.name;
        let s = n.to_string();
        let pat = match h.kind {
            HyperKind::Float => quote!(::optim_core::HyperValue::Float(x)),
            HyperKind::Bool => quote!(::optim_core::HyperValue::Bool(x)),
            HyperKind::Int => quote!(::optim_core::HyperValue::Int(x)),
        };
        quote!((#s, #pat) => self.#n = x)
    });
    let validate = m.hypers.iter().enumerate().map(|(i, h)| {
        let n = &h.name;
        let v = match h.kind {
            HyperKind::Float => quote!(::optim_core::HyperValue::Float(self.#n)),
            HyperKind::Bool => quote!(::optim_core::HyperValue::Bool(self.#n)),
            HyperKind::Int => quote!(::optim_core::HyperValue::Int(self.#n)),
        };
        quote!(<Self as ::optim_core::Algorithm>::HYPERS[#i].check(#name, #v)?;)
    });
    let state_specs = m.states.iter().map(|s| {
        let n = s.name.to_string();
        let init = match s.init {
            Init::Fill(_) => quote!(::optim_core::StateInit::Fill),
            Init::CopyOfParam => quote!(::optim_core::StateInit::CopyOfParam),
        };
        let when = match s.when {
            Some(k) => {
                let key = cond_text(m, k);
                quote!(::core::option::Option::Some(#key))
            }
            None => quote!(::core::option::Option::None),
        };
        let shape = match s.shape {
            Shape::Elem => quote!(Elem),
            Shape::Row => quote!(Row),
            Shape::Col => quote!(Col),
        };
        let never_negative = s.never_negative;
        quote!(::optim_core::StateSpec { name: #n, init: #init, when: #when, shape: ::optim_core::StateShape::#shape, never_negative: #never_negative })
    });
    let scalar_specs = m.scalars.iter().map(|s| {
        let n = s.name.to_string();
        quote!(::optim_core::ScalarSpec { name: #n })
    });
    let mut g = emit::Gen::new(m);
    let enabled_arms = m
        .states
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let v = match s.when {
                Some(k) => g.step_expr(&m.conds[k]),
                None => quote!(true),
            };
            quote!(#i => #v)
        })
        .collect::<Vec<_>>();
    let fill_arms = m
        .states
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let v = match &s.init {
                Init::Fill(e) => g.step_expr(e),
                Init::CopyOfParam => quote!(0.0f64),
            };
            quote!(#i => #v)
        })
        .collect::<Vec<_>>();
    let scalar_arms = m
        .scalars
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let v = g.step_expr(&s.init);
            quote!(#i => #v)
        })
        .collect::<Vec<_>>();
    let sparse = if m.lazy_rows {
        quote!(Lazy)
    } else {
        quote!(Densify)
    };
    let kind = if m.grad.is_some() {
        quote!(Optimizer)
    } else {
        quote!(Wrapper)
    };
    let hyper_locals = destructure(m);
    let multi = needs_passes(m);
    let (kernel, extra, step_call) = if multi {
        let generated = multi::kernel(m);
        let step_call =
            if m.globals.is_empty() && !m.reductions.iter().any(|r| r.op == RedOp::TotalSum) {
                quote!(<Self as __Kernel>::__step(
                    self,
                    0,
                    &[],
                    &mut [],
                    __t_count,
                    __shape,
                    __scalars,
                    __param,
                    __grad,
                    __states,
                    __work
                ))
            } else {
                // Stepped phase by phase over every parameter (`step_phase`), never whole.
                quote!(let _ = (__t_count, __shape, __scalars, __param, __grad, __states, __work);)
            };
        (generated.kernel, generated.algorithm, step_call)
    } else {
        (
            single::kernel(m),
            quote!(),
            quote!(<Self as __Kernel>::__step(
                self, __t_count, __shape, __scalars, __param, __grad, __states, __work
            )),
        )
    };
    let shape_locals = emit::shape_locals();
    let check_shape = if m.matrices.is_empty() {
        quote!()
    } else {
        quote! {
            fn check_shape(&self, shape: &[usize]) -> ::core::result::Result<(), ::std::string::String> {
                if shape.len() == 2 {
                    ::core::result::Result::Ok(())
                } else {
                    ::core::result::Result::Err(::std::format!(
                        "{} works on matrices (it calls a matrix function), but this parameter has shape {:?}; route it to another optimizer with `partition` (for example AdamW for every parameter that is not 2-D)",
                        #name, shape
                    ))
                }
            }
        }
    };
    let eval = eval_fn(m);
    let elementwise = m.elementwise();
    quote! {
        #kernel

        impl ::optim_core::Algorithm for #ty {
            const NAME: &'static str = #name;
            const DOC: &'static str = #doc;
            const HYPERS: &'static [::optim_core::HyperSpec] = &[#(#specs),*];
            const STATES: &'static [::optim_core::StateSpec] = &[#(#state_specs),*];
            const SCALARS: &'static [::optim_core::ScalarSpec] = &[#(#scalar_specs),*];
            const SPARSE: ::optim_core::SparseRule = ::optim_core::SparseRule::#sparse;
            const KIND: ::optim_core::AlgorithmKind = ::optim_core::AlgorithmKind::#kind;
            const ELEMENTWISE: bool = #elementwise;

            fn get_hyper(&self, name: &str) -> ::core::option::Option<::optim_core::HyperValue> {
                match name {
                    #(#get_arms,)*
                    _ => ::core::option::Option::None,
                }
            }

            fn set_hyper(&mut self, name: &str, value: ::optim_core::HyperValue) -> ::optim_core::Result<()> {
                let spec = ::optim_core::hyper::find_spec(#name, <Self as ::optim_core::Algorithm>::HYPERS, name)?;
                let value = spec.check(#name, value)?;
                match (name, value) {
                    #(#set_arms,)*
                    _ => {}
                }
                ::core::result::Result::Ok(())
            }

            fn validate(&self) -> ::optim_core::Result<()> {
                #(#validate)*
                ::core::result::Result::Ok(())
            }

            #check_shape
            #eval

            #[allow(unused_variables, clippy::all)]
            fn state_enabled(&self, index: usize, __shape: &[usize]) -> bool {
                #hyper_locals
                #shape_locals
                match index {
                    #(#enabled_arms,)*
                    _ => false,
                }
            }

            #[allow(unused_variables, clippy::all)]
            fn state_fill(&self, index: usize) -> f64 {
                #hyper_locals
                match index {
                    #(#fill_arms,)*
                    _ => 0.0,
                }
            }

            #[allow(unused_variables, clippy::all)]
            fn scalar_init(&self, index: usize) -> f64 {
                #hyper_locals
                match index {
                    #(#scalar_arms,)*
                    _ => 0.0,
                }
            }

            #[allow(unused_variables, unused_mut, unused_assignments, unused_parens, clippy::all)]
            fn step<T: ::optim_core::Scalar>(
                &self,
                __t_count: u64,
                __shape: &[usize],
                __scalars: &mut [f64],
                __param: &mut [T],
                __grad: ::optim_core::GradView<'_, T>,
                __states: &mut [::optim_core::StateBuf<T>],
                __work: &mut ::optim_core::Workspace<T>,
            ) {
                #step_call
            }

            #extra
        }
    }
}

/// The condition as written, for messages and `StateSpec::when`.
fn cond_text(m: &Model, k: usize) -> String {
    describe(&m.conds[k], m)
}

fn describe(e: &Expr, m: &Model) -> String {
    match &e.kind {
        ExprKind::Var(Var::Hyper(i)) => m.hypers[*i].name.to_string(),
        ExprKind::Not(x) => format!("!{}", describe(x, m)),
        ExprKind::Binary(op, a, b) => {
            format!("{} {} {}", describe(a, m), op_str(*op), describe(b, m))
        }
        ExprKind::Float(x) => format!("{x:?}"),
        ExprKind::Int(i) => i.to_string(),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Var(Var::Step) => "t".into(),
        _ => "(condition)".into(),
    }
}

fn op_str(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Rem => "%",
        BinOp::Lt => "<",
        BinOp::Le => "<=",
        BinOp::Gt => ">",
        BinOp::Ge => ">=",
        BinOp::Eq => "==",
        BinOp::Ne => "!=",
        BinOp::And => "&&",
        BinOp::Or => "||",
    }
}

fn op_tokens(op: BinOp) -> TokenStream {
    match op {
        BinOp::Add => quote!(+),
        BinOp::Sub => quote!(-),
        BinOp::Mul => quote!(*),
        BinOp::Div => quote!(/),
        BinOp::Rem => quote!(%),
        BinOp::Lt => quote!(<),
        BinOp::Le => quote!(<=),
        BinOp::Gt => quote!(>),
        BinOp::Ge => quote!(>=),
        BinOp::Eq => quote!(==),
        BinOp::Ne => quote!(!=),
        BinOp::And => quote!(&&),
        BinOp::Or => quote!(||),
    }
}

/// Whether the equations need more than one pass (or per-row, per-column or matrix work).
fn needs_passes(m: &Model) -> bool {
    !m.globals.is_empty()
        || !m.reductions.is_empty()
        || !m.matrices.is_empty()
        || m.states.iter().any(|s| s.shape != Shape::Elem)
}

/// `Algorithm::eval` from `#[eval(...)]`: one loop over the parameter and its states.
fn eval_fn(m: &Model) -> TokenStream {
    let Some(e) = &m.eval else {
        return quote!();
    };
    let mut g = emit::Gen::new(m);
    let value = g.elem_expr(e);
    let prelude = &g.prelude;
    let (fields, inits) = emit::temp_struct(&g.temps);
    let n_states = m.states.len();
    let st: Vec<Ident> = (0..n_states).map(|i| format_ident!("__st{}", i)).collect();
    let loads: Vec<TokenStream> = m
        .states
        .iter()
        .enumerate()
        .filter(|(_, s)| s.shape == Shape::Elem)
        .map(|(i, _)| {
            let (v, l) = (format_ident!("__sv{}", i), emit::state_local(i));
            quote!(let #l = match #v.get(__e) { Some(&__v) => __v, None => <T as ::optim_core::num_traits::Zero>::zero() };)
        })
        .collect();
    // Each element state read a block at a time (decoded into a buffer if compact).
    let views: Vec<TokenStream> = m
        .states
        .iter()
        .enumerate()
        .filter(|(_, s)| s.shape == Shape::Elem)
        .map(|(i, _)| {
            let (s, v, b) = (&st[i], format_ident!("__sv{}", i), format_ident!("__sb{}", i));
            quote! {
                let mut #b = [<T as ::optim_core::num_traits::Zero>::zero(); ::optim_core::compact::Q8_BLOCK];
                let #v: &[T] = #s.block(__lo, __oc.len(), &mut #b);
            }
        })
        .collect();
    let sc: Vec<Ident> = (0..m.scalars.len())
        .map(|i| format_ident!("__sc{}", i))
        .collect();
    let hyper_locals = destructure(m);
    let shape_locals = emit::shape_locals();
    quote! {
        const EVAL: bool = true;

        #[allow(unused_variables, unused_mut, unused_parens, clippy::all)]
        fn eval<T: ::optim_core::Scalar>(
            &self,
            __t_count: u64,
            __shape: &[usize],
            __scalars: &[f64],
            __param: &[T],
            __states: &[::optim_core::StateBuf<T>],
            __out: &mut [T],
        ) {
            #hyper_locals
            let __t: f64 = __t_count as f64;
            #shape_locals
            let [#(#sc),*] = __scalars else { return; };
            let [#(#st),*] = __states else { return; };
            #(#prelude)*
            #[allow(non_camel_case_types, dead_code)]
            struct __EvalTemps<T> { #(#fields,)* __p: ::core::marker::PhantomData<T> }
            let __k = __EvalTemps::<T> { #(#inits,)* __p: ::core::marker::PhantomData };
            let __block = ::optim_core::compact::Q8_BLOCK;
            for (__b, (__oc, __wc)) in __out.chunks_mut(__block).zip(__param.chunks(__block)).enumerate() {
                let __lo = __b * __block;
                #(#views)*
                for (__e, (__o, &__w)) in __oc.iter_mut().zip(__wc).enumerate() {
                    #(#loads)*
                    *__o = #value;
                }
            }
        }
    }
}
