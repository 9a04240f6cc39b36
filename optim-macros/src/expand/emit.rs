//! Expressions and statements as code: per-step values in `f64` (computed once, outside
//! element loops) and per-element values in `T`, with per-step values used per element
//! hoisted into the kernel's temporaries.

use super::{f64_lit, hp, op_tokens};
use crate::model::*;
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

/// Code generation state: the per-step prelude being built, the hoisted temporaries, and
/// the hoisted conditions enclosing the current point.
pub(super) struct Gen<'a> {
    pub(super) m: &'a Model,
    pub(super) prelude: Vec<TokenStream>,
    /// Hoisted per-step values used in the element loop: (field, is_bool).
    pub(super) temps: Vec<(Ident, bool)>,
    /// Enclosing hoisted conditions with their arm (for scalar-state assignments).
    ctx: Vec<(usize, bool)>,
    /// Where optimizer-wide `let`s and `total_sum`s sit in the frame `__gf`.
    pub(super) frame_of_local: std::collections::HashMap<usize, usize>,
    pub(super) frame_of_sum: std::collections::HashMap<usize, usize>,
}

/// Code that fails to compile with `what`: where an invariant of the checked model does not
/// hold, the expansion says so instead of generating wrong code.
pub(super) fn internal_error(what: &str) -> TokenStream {
    let msg = format!("optim-macros internal error: {what}; please report this definition");
    quote!(::core::compile_error!(#msg))
}

/// A call of built-in function `f` on arguments already emitted, in the float type `float`
/// (`f64` per step, `<T as Float>` per element); `exponent` is `powi`'s, as an `i32`.
pub(super) fn call(
    f: Func,
    xs: &[TokenStream],
    exponent: Option<TokenStream>,
    float: &TokenStream,
) -> TokenStream {
    let arg = |i: usize| {
        xs.get(i)
            .cloned()
            .unwrap_or_else(|| internal_error("a call with too few arguments"))
    };
    let a = arg(0);
    match f {
        Func::Powi => match exponent {
            Some(n) => quote!(#float::powi(#a, #n)),
            None => internal_error("`powi` without an exponent"),
        },
        Func::Max | Func::Min | Func::Powf => {
            let b = arg(1);
            let name = format_ident!("{}", f.name());
            quote!(#float::#name(#a, #b))
        }
        Func::Sign => quote!(::optim_core::kernel::sign(#a)),
        Func::Square => quote!((#a * #a)),
        Func::RoundF32 => quote!(::optim_core::kernel::round_f32(#a)),
        // A libm call per element would not vectorize: the runtime's Newton cube root.
        Func::Cbrt => quote!(::optim_core::kernel::cbrt(#a)),
        Func::Clamp => {
            let (lo, hi) = (arg(1), arg(2));
            quote!(#float::min(#float::max(#a, #lo), #hi))
        }
        Func::Sqrt | Func::Abs | Func::Exp | Func::Ln | Func::Signum | Func::Tanh => {
            let name = format_ident!("{}", f.name());
            quote!(#float::#name(#a))
        }
    }
}

/// A call computed per step (or per row), in `f64`: a non-literal `powi` exponent is
/// converted to `i32` (the checker made sure it is an integer).
pub(super) fn f64_call(f: Func, args: &[Expr], xs: &[TokenStream]) -> TokenStream {
    let exponent = match (f, args.get(1).map(|a| &a.kind), xs.get(1)) {
        (Func::Powi, Some(ExprKind::Int(i)), _) => {
            let n = *i as i32;
            Some(quote!(#n))
        }
        (Func::Powi, _, Some(n)) => Some(quote!((#n as i32))),
        _ => None,
    };
    call(f, xs, exponent, &quote!(f64))
}

/// A call computed per element, in `T`: `powi` takes only an integer literal here.
pub(super) fn elem_call(f: Func, args: &[Expr], xs: &[TokenStream]) -> TokenStream {
    let float = quote!(<T as ::optim_core::num_traits::Float>);
    match (f, args.get(1).map(|a| &a.kind)) {
        (Func::Powi, Some(ExprKind::Int(i))) => {
            let n = *i as i32;
            call(f, xs, Some(quote!(#n)), &float)
        }
        (Func::Powi, _) => {
            internal_error("a per-element `powi` without an integer literal exponent")
        }
        _ => call(f, xs, None, &float),
    }
}

/// The fields of the kernel's temporaries (`T`, or `bool` for conditions) and their
/// initializers from the `f64` locals `__h0`, `__h1`, ...
pub(super) fn temp_struct(temps: &[(Ident, bool)]) -> (Vec<TokenStream>, Vec<TokenStream>) {
    let fields = temps
        .iter()
        .map(|(f, b)| if *b { quote!(#f: bool) } else { quote!(#f: T) })
        .collect();
    let inits = temps
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
    (fields, inits)
}

/// The `f64` local holding a shape value (see `shape_locals`).
pub(super) fn shape_local(v: ShapeVar) -> TokenStream {
    let name = match v {
        ShapeVar::Numel => format_ident!("__numel_f"),
        ShapeVar::Ndim => format_ident!("__ndim_f"),
        ShapeVar::Rows => format_ident!("__rows_f"),
        ShapeVar::Cols => format_ident!("__cols_f"),
    };
    quote!(#name)
}

/// The shape values of `__shape` as `f64` locals.
pub(super) fn shape_locals() -> TokenStream {
    quote! {
        let __numel_f: f64 = __shape.iter().product::<usize>() as f64;
        let __ndim_f: f64 = __shape.len() as f64;
        let (__rows_u, __cols_u) = ::optim_core::matrix_dims(__shape);
        let (__rows_f, __cols_f): (f64, f64) = (__rows_u as f64, __cols_u as f64);
    }
}

/// The `f64` local holding the value of reduction `k`.
pub(super) fn reduced(k: usize) -> Ident {
    format_ident!("__rv{}", k)
}

pub(super) fn local(id: usize) -> Ident {
    format_ident!("__l{}", id)
}

pub(super) fn cond_param(k: usize) -> Ident {
    format_ident!("__C{}", k)
}

pub(super) fn state_local(i: usize) -> Ident {
    format_ident!("__s{}", i)
}

impl<'a> Gen<'a> {
    pub(super) fn new(m: &'a Model) -> Self {
        Gen {
            m,
            prelude: Vec::new(),
            temps: Vec::new(),
            ctx: Vec::new(),
            frame_of_local: Default::default(),
            frame_of_sum: Default::default(),
        }
    }

    /// An expression computed once per step, in `f64`.
    pub(super) fn step_expr(&mut self, e: &Expr) -> TokenStream {
        match &e.kind {
            ExprKind::Error => internal_error("an expression reported as wrong was generated"),
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
                Var::Local(id) => match self.frame_of_local.get(&id) {
                    Some(slot) => quote!(__gf[#slot]),
                    None => {
                        let l = local(id);
                        quote!(#l)
                    }
                },
                Var::Shape(v) => shape_local(v),
                Var::Global(i) => quote!(__gf[#i]),
                Var::Reduced(k) => match self.frame_of_sum.get(&k) {
                    Some(slot) => quote!(__gf[#slot]),
                    None => {
                        let r = reduced(k);
                        quote!(#r)
                    }
                },
                // The checker classifies these per element (or per row or column).
                Var::Param | Var::Grad | Var::State(_) | Var::Matrix(_) => {
                    internal_error("a per-element value in a per-step expression")
                }
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
                let xs: Vec<TokenStream> = args.iter().map(|a| self.step_expr(a)).collect();
                f64_call(*f, args, &xs)
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
            Stmt::Reduce(_) | Stmt::MatrixArg(_) => {
                internal_error("a reduction inside a per-step block")
            }
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
    pub(super) fn elem_expr(&mut self, e: &Expr) -> TokenStream {
        if e.level.is_scalar() {
            return self.hoist(e);
        }
        match &e.kind {
            ExprKind::Error => internal_error("an expression reported as wrong was generated"),
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
                let xs: Vec<TokenStream> = args.iter().map(|a| self.elem_expr(a)).collect();
                elem_call(*f, args, &xs)
            }
            ExprKind::If(c, a_block, b_block) => {
                let selectable = selectable(c, a_block, b_block);
                let (c, hoisted) = self.elem_cond(c);
                if let Some(k) = hoisted {
                    self.ctx.push((k, true));
                }
                let a = self.elem_block(a_block);
                if let Some(k) = hoisted {
                    self.ctx.pop();
                    self.ctx.push((k, false));
                }
                let b = self.elem_block(b_block);
                if hoisted.is_some() {
                    self.ctx.pop();
                }
                choice(c, a, b, selectable)
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
    pub(super) fn elem_stmts(&mut self, stmts: &[Stmt]) -> TokenStream {
        let mut out = TokenStream::new();
        for s in stmts {
            match s {
                Stmt::Let { local: id, value } if value.level.is_scalar() => {
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
                        Target::Scalar(_) | Target::Global(_) => continue,
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
                Stmt::Reduce(_) | Stmt::MatrixArg(_) => {
                    out.extend(internal_error("a reduction in a one-pass kernel"));
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

/// Whether a per-element `if c { a } else { b }` can compute both arms and then choose:
/// the condition depends on the element (a hoisted one keeps its per-step dispatch) and
/// both arms only bind values (no assignment, no conditional statement).
pub(super) fn selectable(c: &Cond, a: &Block, b: &Block) -> bool {
    let binds_only = |b: &Block| b.stmts.iter().all(|s| matches!(s, Stmt::Let { .. }));
    matches!(c, Cond::Inline(_)) && binds_only(a) && binds_only(b)
}

/// A per-element `if c { a } else { b }`. When [`selectable`], both arms are computed and
/// one is chosen with `optim_core::kernel::select`: a branch on data (Rprop's sign tests)
/// mispredicts half the time and keeps the loop scalar, while a select vectorizes to a
/// blend.
pub(super) fn choice(
    c: TokenStream,
    a: TokenStream,
    b: TokenStream,
    selectable: bool,
) -> TokenStream {
    if selectable {
        quote!({
            let __then = #a;
            let __else = #b;
            ::optim_core::kernel::select(#c, __then, __else)
        })
    } else {
        quote!(if #c #a else #b)
    }
}
