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
        quote!(::optim_core::StateSpec { name: #n, init: #init, when: #when, shape: ::optim_core::StateShape::Elem })
    });
    let scalar_specs = m.scalars.iter().map(|s| {
        let n = s.name.to_string();
        quote!(::optim_core::ScalarSpec { name: #n })
    });
    let mut g = Gen::new(m);
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
    let kernel = kernel(m);
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

            #[allow(unused_variables, clippy::all)]
            fn state_enabled(&self, index: usize, __shape: &[usize]) -> bool {
                #hyper_locals
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
                __states: &mut [::std::vec::Vec<T>],
                __work: &mut ::optim_core::Workspace<T>,
            ) {
                <Self as __Kernel>::__step(self, __t_count, __shape, __scalars, __param, __grad, __states, __work)
            }
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

/// Code generation state: the per-step prelude being built, the hoisted temporaries, and
/// the hoisted conditions enclosing the current point.
struct Gen<'a> {
    m: &'a Model,
    prelude: Vec<TokenStream>,
    /// Hoisted per-step values used in the element loop: (field, is_bool).
    temps: Vec<(Ident, bool)>,
    /// Enclosing hoisted conditions with their arm (for scalar-state assignments).
    ctx: Vec<(usize, bool)>,
}

fn local(id: usize) -> Ident {
    format_ident!("__l{}", id)
}

fn cond_param(k: usize) -> Ident {
    format_ident!("__C{}", k)
}

fn state_local(i: usize) -> Ident {
    format_ident!("__s{}", i)
}

impl<'a> Gen<'a> {
    fn new(m: &'a Model) -> Self {
        Gen {
            m,
            prelude: Vec::new(),
            temps: Vec::new(),
            ctx: Vec::new(),
        }
    }

    /// An expression computed once per step, in `f64`.
    fn step_expr(&mut self, e: &Expr) -> TokenStream {
        match &e.kind {
            ExprKind::Float(x) => f64_lit(*x),
            ExprKind::Int(i) => f64_lit(*i as f64),
            ExprKind::Bool(b) => quote!(#b),
            ExprKind::Var(v) => match *v {
                Var::Hyper(i) => {
                    let h = &self.m.hypers[i];
                    let l = hp(&h.name);
                    if h.kind == HyperKind::Int {
                        quote!((#l as f64))
                    } else {
                        quote!(#l)
                    }
                }
                Var::Step => quote!(__t),
                Var::Scalar(i) => {
                    let s = format_ident!("__sc{}", i);
                    quote!((*#s))
                }
                Var::Local(id) => {
                    let l = local(id);
                    quote!(#l)
                }
                // Unreachable for per-step expressions (the checker classifies them Elem).
                Var::Param | Var::Grad | Var::State(_) => quote!(f64::NAN),
            },
            ExprKind::Neg(x) => {
                let x = self.step_expr(x);
                quote!((-#x))
            }
            ExprKind::Not(x) => {
                let x = self.step_expr(x);
                quote!((!#x))
            }
            ExprKind::Binary(op, a, b) => {
                let (a, b, op) = (self.step_expr(a), self.step_expr(b), op_tokens(*op));
                quote!((#a #op #b))
            }
            ExprKind::Call(f, args) => {
                let a = self.step_expr(&args[0]);
                match f {
                    Func::Powi => {
                        let n = match args[1].kind {
                            ExprKind::Int(i) => {
                                let i = i as i32;
                                quote!(#i)
                            }
                            _ => {
                                let n = self.step_expr(&args[1]);
                                quote!((#n as i32))
                            }
                        };
                        quote!(f64::powi(#a, #n))
                    }
                    Func::Max | Func::Min | Func::Powf => {
                        let b = self.step_expr(&args[1]);
                        let name = format_ident!("{}", f.name());
                        quote!(f64::#name(#a, #b))
                    }
                    Func::Sign => quote!(::optim_core::kernel::sign(#a)),
                    _ => {
                        let name = format_ident!("{}", f.name());
                        quote!(f64::#name(#a))
                    }
                }
            }
            ExprKind::If(c, a, b) => {
                let c = match &**c {
                    Cond::Hoisted(k) => self.step_expr(&self.m.conds[*k].clone()),
                    Cond::Inline(x) => self.step_expr(x),
                };
                let (a, b) = (self.step_block(a), self.step_block(b));
                quote!(if #c #a else #b)
            }
            ExprKind::Block(b) => self.step_block(b),
        }
    }

    /// A block computed per step (its statements are `let`s and scalar assignments).
    fn step_block(&mut self, b: &Block) -> TokenStream {
        let stmts: Vec<TokenStream> = b.stmts.iter().map(|s| self.step_stmt(s)).collect();
        let tail = b.tail.as_ref().map(|t| self.step_expr(t));
        quote!({ #(#stmts)* #tail })
    }

    fn step_stmt(&mut self, s: &Stmt) -> TokenStream {
        match s {
            Stmt::Let { local: id, value } => {
                let l = local(*id);
                let v = self.step_expr(value);
                quote!(let #l = #v;)
            }
            Stmt::Assign {
                target: Target::Scalar(i),
                op,
                value,
            } => self.scalar_assign(*i, *op, value),
            Stmt::If {
                cond,
                then,
                otherwise,
            } => {
                let c = match cond {
                    Cond::Hoisted(k) => self.step_expr(&self.m.conds[*k].clone()),
                    Cond::Inline(x) => self.step_expr(x),
                };
                let a = self.step_block(then);
                let b = otherwise.as_ref().map(|o| {
                    let o = self.step_block(o);
                    quote!(else #o)
                });
                quote!(if #c #a #b)
            }
            // Element targets never occur in a per-step block.
            Stmt::Assign { .. } => quote!(),
        }
    }

    fn scalar_assign(&mut self, i: usize, op: Option<BinOp>, value: &Expr) -> TokenStream {
        let s = format_ident!("__sc{}", i);
        let v = self.step_expr(value);
        let v = match op {
            None => v,
            Some(op) => {
                let op = op_tokens(op);
                quote!(((*#s) #op #v))
            }
        };
        quote!(*#s = #v;)
    }

    /// Hoists a per-step value used inside the element loop; returns how the loop reads it.
    fn hoist(&mut self, e: &Expr) -> TokenStream {
        let v = self.step_expr(e);
        let field = format_ident!("h{}", self.temps.len());
        let tmp = format_ident!("__h{}", self.temps.len());
        let is_bool = e.ty == Ty::Bool;
        self.prelude.push(quote!(let #tmp = #v;));
        self.temps.push((field.clone(), is_bool));
        quote!(__k.#field)
    }

    /// An expression evaluated per element, in `T`.
    fn elem_expr(&mut self, e: &Expr) -> TokenStream {
        if e.level <= Level::Step {
            return self.hoist(e);
        }
        let float = quote!(<T as ::optim_core::num_traits::Float>);
        match &e.kind {
            ExprKind::Var(v) => match *v {
                Var::Param => quote!(__w),
                Var::Grad => quote!(__g),
                Var::State(i) => {
                    let s = state_local(i);
                    quote!(#s)
                }
                Var::Local(id) => {
                    let l = local(id);
                    quote!(#l)
                }
                _ => self.hoist(e),
            },
            ExprKind::Neg(x) => {
                let x = self.elem_expr(x);
                quote!((-#x))
            }
            ExprKind::Not(x) => {
                let x = self.elem_expr(x);
                quote!((!#x))
            }
            ExprKind::Binary(op, a, b) => {
                let (a, b, op) = (self.elem_expr(a), self.elem_expr(b), op_tokens(*op));
                quote!((#a #op #b))
            }
            ExprKind::Call(f, args) => {
                let a = self.elem_expr(&args[0]);
                match f {
                    Func::Powi => {
                        let n = match args[1].kind {
                            ExprKind::Int(i) => i as i32,
                            _ => 1, // rejected by the checker
                        };
                        quote!(#float::powi(#a, #n))
                    }
                    Func::Max | Func::Min | Func::Powf => {
                        let b = self.elem_expr(&args[1]);
                        let name = format_ident!("{}", f.name());
                        quote!(#float::#name(#a, #b))
                    }
                    Func::Sign => quote!(::optim_core::kernel::sign(#a)),
                    _ => {
                        let name = format_ident!("{}", f.name());
                        quote!(#float::#name(#a))
                    }
                }
            }
            ExprKind::If(c, a, b) => {
                let (c, hoisted) = self.elem_cond(c);
                if let Some(k) = hoisted {
                    self.ctx.push((k, true));
                }
                let a = self.elem_block(a);
                if let Some(k) = hoisted {
                    self.ctx.pop();
                    self.ctx.push((k, false));
                }
                let b = self.elem_block(b);
                if hoisted.is_some() {
                    self.ctx.pop();
                }
                quote!(if #c #a else #b)
            }
            ExprKind::Block(b) => self.elem_block(b),
            ExprKind::Float(_) | ExprKind::Int(_) | ExprKind::Bool(_) => self.hoist(e),
        }
    }

    fn elem_cond(&mut self, c: &Cond) -> (TokenStream, Option<usize>) {
        match c {
            Cond::Hoisted(k) => {
                let p = cond_param(*k);
                (quote!(#p), Some(*k))
            }
            Cond::Inline(x) => (self.elem_expr(x), None),
        }
    }

    fn elem_block(&mut self, b: &Block) -> TokenStream {
        let stmts = self.elem_stmts(&b.stmts);
        let tail = b.tail.as_ref().map(|t| self.elem_expr(t));
        quote!({ #stmts #tail })
    }

    /// Statements of the element loop; per-step parts go to the prelude.
    fn elem_stmts(&mut self, stmts: &[Stmt]) -> TokenStream {
        let mut out = TokenStream::new();
        for s in stmts {
            match s {
                Stmt::Let { local: id, value } if value.level <= Level::Step => {
                    let l = local(*id);
                    let v = self.step_expr(value);
                    self.prelude.push(quote!(let #l = #v;));
                }
                Stmt::Let { local: id, value } => {
                    let l = local(*id);
                    let v = self.elem_expr(value);
                    out.extend(quote!(let #l = #v;));
                }
                Stmt::Assign {
                    target: Target::Scalar(i),
                    op,
                    value,
                } => {
                    let assign = self.scalar_assign(*i, *op, value);
                    let guard = self.ctx_guard();
                    self.prelude.push(quote!(if #guard { #assign }));
                }
                Stmt::Assign { target, op, value } => {
                    let lhs = match target {
                        Target::Param => quote!(__w),
                        Target::Grad => quote!(__g),
                        Target::State(i) => {
                            let s = state_local(*i);
                            quote!(#s)
                        }
                        Target::Scalar(_) => continue,
                    };
                    let v = self.elem_expr(value);
                    out.extend(match op {
                        None => quote!(#lhs = #v;),
                        Some(op) => {
                            let op = op_tokens(*op);
                            quote!(#lhs = #lhs #op #v;)
                        }
                    });
                }
                Stmt::If {
                    cond,
                    then,
                    otherwise,
                } => {
                    let (c, hoisted) = self.elem_cond(cond);
                    if let Some(k) = hoisted {
                        self.ctx.push((k, true));
                    }
                    let a = self.elem_stmts(&then.stmts);
                    if let Some(k) = hoisted {
                        self.ctx.pop();
                        self.ctx.push((k, false));
                    }
                    let b = otherwise.as_ref().map(|o| self.elem_stmts(&o.stmts));
                    if hoisted.is_some() {
                        self.ctx.pop();
                    }
                    let b = b.map(|b| quote!(else { #b }));
                    out.extend(quote!(if #c { #a } #b));
                }
            }
        }
        out
    }

    /// The conjunction of enclosing hoisted conditions, evaluated in the prelude.
    fn ctx_guard(&mut self) -> TokenStream {
        let parts: Vec<TokenStream> = self
            .ctx
            .clone()
            .into_iter()
            .map(|(k, arm)| {
                let c = self.step_expr(&self.m.conds[k].clone());
                if arm {
                    quote!(#c)
                } else {
                    quote!((!#c))
                }
            })
            .collect();
        if parts.is_empty() {
            quote!(true)
        } else {
            quote!(#(#parts)&&*)
        }
    }
}

/// The step: prelude, dispatch on hoisted conditions, and the element loop.
fn kernel(m: &Model) -> TokenStream {
    let ty = &m.type_name;
    let mut g = Gen::new(m);
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
    let temp_fields: Vec<TokenStream> = g
        .temps
        .iter()
        .map(|(f, b)| if *b { quote!(#f: bool) } else { quote!(#f: T) })
        .collect();
    let temp_inits: Vec<TokenStream> = g
        .temps
        .iter()
        .enumerate()
        .map(|(i, (f, b))| {
            let tmp = format_ident!("__h{}", i);
            if *b {
                quote!(#f: #tmp)
            } else {
                quote!(#f: <T as ::optim_core::Scalar>::from_f64(#tmp))
            }
        })
        .collect();

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
    let chunk = quote! {
        /// A span of the parameter with the same span of its gradient and states (the
        /// whole arrays for sparse rows); disabled states are empty slices.
        struct __Chunk<'a, T, #(const #cond_params: bool),*> {
            k: &'a __Temps<T>,
            ws: &'a mut [T],
            grad: ::optim_core::GradView<'a, T>,
            ss: [&'a mut [T]; #n_arr],
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
                #(let (#half_a, #half_b) = ::optim_core::kernel::split_state(#slices, __mid);)*
                let (__wa, __wb) = ::optim_core::kernel::split_state(self.ws, __mid);
                let (__ga, __gb) = ::optim_core::kernel::split_grad(self.grad, __mid);
                (
                    Self { k: self.k, ws: __wa, grad: __ga, ss: [#(#half_a),*] },
                    Self { k: self.k, ws: __wb, grad: __gb, ss: [#(#half_b),*] },
                )
            }

            #[inline(always)]
            #[allow(clippy::all)]
            fn run(self) {
                let [#(#slices),*] = self.ss;
                #run_body
            }
        }
    };

    let dispatch = dispatch(&cond_vals, &mut Vec::new());
    let hyper_locals = destructure(m);
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
            fn __step<T: ::optim_core::Scalar>(&self, __t_count: u64, __shape: &[usize], __scalars: &mut [f64], __param: &mut [T], __grad: ::optim_core::GradView<'_, T>, __states: &mut [::std::vec::Vec<T>], __work: &mut ::optim_core::Workspace<T>);
        }

        impl __Kernel for #ty {
            #[allow(unused_variables, unused_mut, unused_assignments, unused_parens, clippy::all)]
            fn __step<T: ::optim_core::Scalar>(&self, __t_count: u64, __shape: &[usize], __scalars: &mut [f64], __param: &mut [T], __grad: ::optim_core::GradView<'_, T>, __states: &mut [::std::vec::Vec<T>], __work: &mut ::optim_core::Workspace<T>) {
                #hyper_locals
                let __t: f64 = __t_count as f64;
                let [#(#sc),*] = __scalars else { return; };
                let [#(#st),*] = __states else { return; };
                #(#prelude)*
                #(let #cond_vals: bool = #conds;)*
                let __k = __Temps::<T> {
                    #(#temp_inits,)*
                    __p: ::core::marker::PhantomData,
                };
                let __ws = __param;
                let __ss: [&mut [T]; #n_arr] = [#(#st.as_mut_slice()),*];
                #dispatch
            }
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
            Stmt::Let { value, .. } if value.level <= Level::Step => None,
            Stmt::Assign {
                target: Target::Scalar(_),
                ..
            } => None,
            Stmt::Let { .. } | Stmt::Assign { .. } => Some(quote!(true)),
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
