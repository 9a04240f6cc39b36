//! # optim-macros
//!
//! `#[optimizer]`: write an optimizer as its update equations; get a complete, fused,
//! validated optimizer type.
//!
//! ```
//! use optim_macros::optimizer;
//!
//! /// Adam (Kingma & Ba, 2015).
//! #[optimizer(
//!     /// Learning rate α.
//!     lr = 1e-3 in 0.0..,
//!     beta1 = 0.9 in 0.0..1.0,
//!     beta2 = 0.999 in 0.0..1.0,
//!     eps = 1e-8 in 0.0..,
//! )]
//! pub fn adam(w: Param, g: Grad, m: State, v: State) {
//!     m = beta1 * m + (1.0 - beta1) * g;
//!     v = beta2 * v + (1.0 - beta2) * g * g;
//!     w -= lr / (1.0 - beta1.powi(t)) * m / (sqrt(v) / sqrt(1.0 - beta2.powi(t)) + eps);
//! }
//!
//! // The function becomes a type: its hyperparameters are builder methods, `build` checks
//! // them and gives an optimizer over named parameters.
//! # fn main() -> optim_core::Result<()> {
//! use optim_core::{Grads, Optimizer, Params};
//! let mut params = Params::<f64>::new().with("w", ndarray::arr1(&[1.0, -2.0]))?;
//! let mut opt = Adam::default().lr(0.1).build::<f64>()?;
//! opt.step(&mut params, &Grads::new().with("w", ndarray::arr1(&[0.5, -0.5])))?;
//! // The first bias-corrected step is lr·g/(|g| + eps): 0.1 against each gradient's sign.
//! let w = params.get("w").unwrap();
//! assert!((w[0] - 0.9).abs() < 1e-6 && (w[1] + 1.9).abs() < 1e-6);
//! # Ok(())
//! # }
//! ```
//!
//! # The language
//!
//! ```text
//! #[optimizer( hyper, ... )]          hyper := /// doc  NAME (: f64|i64|bool)? = DEFAULT (in RANGE)?
//! #[sparse(lazy)] #[name = ".."]      RANGE := lo..hi | lo..=hi | lo.. | ..hi   (DEFAULT may be `inf`)
//! #[eval(expr)]                       the weights to evaluate with, per element
//! fn NAME(w: Param, g: Grad, STATE...) { statements }
//! STATE := #[when(cond)]? #[init(value)]? NAME: (State | RowState | ColState | ScalarState | GlobalState)
//! ```
//!
//! - Values are classified by what they depend on: per construction (hyperparameters,
//!   literals), per step for the whole optimizer (`GlobalState`, `total_sum`), per step and
//!   parameter (`t`, `ScalarState`), per tensor (`numel ndim rows cols`, `sum mean norm rms
//!   max_abs dot`), per matrix (a reduction of per-row or per-column values), per row or
//!   column (`RowState`, `ColState`, `row_sum row_mean col_sum col_mean`), per element (`w`,
//!   `g`, `State`, `newton_schulz(x, steps, a, b, c, eps)`).
//! - Element functions: `sqrt abs max min powi powf exp ln cbrt tanh square clamp signum sign
//!   round_f32`; a range `lo<..hi` excludes its lower bound, and holds finite values only
//!   unless it ends in `..=inf` (`0.0..` is `[0, inf)`).
//! - Statements: `let`, assignments (`= += -= *= /=`) to `w`, `g` and states, `if`/`else`.
//! - A body without reductions is one fused pass; with them the macro derives the passes
//!   (each state written back once; per-element values of earlier passes recomputed), and
//!   with `total_sum` the step runs in phases over every parameter. See the README for the
//!   rules and for what cannot be written and why.
//!
//! The macro works in three stages with a typed model between them:
//! `parse` (syntax) → `check` (names, types, levels; every error collected with its
//! span) → `expand` (code: `expand/plan.rs` derives the passes, `expand/multi` generates
//! them).

use proc_macro::TokenStream;

mod check;
mod errors;
mod expand;
mod model;
mod parse;
#[cfg(test)]
mod tests;

/// Defines an optimizer from its hyperparameters, states and update equations.
/// See the crate documentation and the project README for the language.
#[proc_macro_attribute]
pub fn optimizer(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_optimizer(attr.into(), item.into()).into()
}

/// The whole expansion, on `proc_macro2` tokens so it can be tested directly. Never
/// panics: malformed input becomes compile errors (plus a stub type, so the user sees the
/// real error rather than a cascade of "type not found").
fn expand_optimizer(
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let mut cx = errors::Ctxt::default();
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            // Not a fn at all: say what the attribute goes on. Otherwise a syntax error
            // inside the fn, which syn reports at its token.
            let e = if e.to_string() == "expected `fn`" {
                syn::Error::new(
                    e.span(),
                    "`#[optimizer]` goes on a fn: `fn name(w: Param, g: Grad, m: State) { equations }`",
                )
            } else {
                e
            };
            return match fn_name_of(item) {
                Some((vis, name)) => with_stub(e, &vis, &name),
                None => e.to_compile_error(),
            };
        }
    };
    // Names whose declaration is malformed: reported once, then accepted wherever used.
    let mut broken = Vec::new();
    let hypers = parse::hypers(attr, &mut cx, &mut broken);
    let settings = parse::settings(&func.attrs, &mut cx);
    if let Some(g) = &func.sig.generics.lt_token {
        cx.spanned(
            g,
            "an optimizer definition takes no generics: it is generic over f32/f64 already",
        );
    }
    let sig = &func.sig;
    let plain = |word: &str| format!("an optimizer definition is a plain `fn`; remove `{word}`");
    if let Some(t) = &sig.constness {
        cx.spanned(t, plain("const"));
    }
    if let Some(t) = &sig.asyncness {
        cx.spanned(t, plain("async"));
    }
    if let Some(t) = &sig.unsafety {
        cx.spanned(t, plain("unsafe"));
    }
    if let Some(t) = &sig.abi {
        cx.spanned(t, plain("extern"));
    }
    if sig.generics.lt_token.is_none() {
        if let Some(w) = &sig.generics.where_clause {
            cx.spanned(w, "an optimizer definition takes no `where` clause");
        }
    }
    if let Some(r) = &func.sig.output_ok() {
        cx.spanned(
            r,
            "an optimizer definition returns nothing: it assigns the parameter and states",
        );
    }
    let args = parse::args(&func.sig, &mut cx, &mut broken);
    let model = check::model(&mut cx, hypers, &func, args, settings, broken);
    match (cx.finish(), model) {
        (Ok(()), Some(model)) => expand::generate(&model),
        (Err(e), _) => with_stub(e, &func.vis, &func.sig.ident),
        (Ok(()), None) => with_stub(
            syn::Error::new_spanned(&func.sig, "invalid optimizer definition"),
            &func.vis,
            &func.sig.ident,
        ),
    }
}

/// The visibility and name of a fn that does not parse, found among its top-level tokens
/// (`pub(crate) fn name ...`), so the stub type can still be emitted.
fn fn_name_of(
    item: proc_macro2::TokenStream,
) -> Option<(proc_macro2::TokenStream, proc_macro2::Ident)> {
    use proc_macro2::TokenTree;
    let tokens: Vec<TokenTree> = item.into_iter().collect();
    let at = tokens
        .iter()
        .position(|t| matches!(t, TokenTree::Ident(i) if i == "fn"))?;
    let TokenTree::Ident(name) = tokens.get(at + 1)? else {
        return None;
    };
    let is_pub = |t: Option<&TokenTree>| matches!(t, Some(TokenTree::Ident(i)) if i == "pub");
    let before = |k: usize| at.checked_sub(k).and_then(|i| tokens.get(i));
    let vis: proc_macro2::TokenStream = match (before(2), before(1)) {
        (p, Some(TokenTree::Group(g)))
            if is_pub(p) && g.delimiter() == proc_macro2::Delimiter::Parenthesis =>
        {
            tokens[at - 2..at].iter().cloned().collect()
        }
        (_, p) if is_pub(p) => tokens[at - 1..at].iter().cloned().collect(),
        _ => proc_macro2::TokenStream::new(),
    };
    Some((vis, name.clone()))
}

/// The errors plus an empty type of the intended name.
fn with_stub(
    err: syn::Error,
    vis: &impl quote::ToTokens,
    ident: &proc_macro2::Ident,
) -> proc_macro2::TokenStream {
    let errors = err.to_compile_error();
    let name = syn::ext::IdentExt::unraw(ident).to_string();
    let camel = check::camel(&name);
    match syn::parse_str::<syn::Ident>(&camel) {
        Ok(ident) => quote::quote! {
            #errors
            #[derive(Clone, Copy, Debug, Default, PartialEq)]
            #vis struct #ident;
        },
        Err(_) => errors,
    }
}

trait OutputOk {
    fn output_ok(&self) -> Option<&syn::Type>;
}

impl OutputOk for syn::Signature {
    fn output_ok(&self) -> Option<&syn::Type> {
        match &self.output {
            syn::ReturnType::Default => None,
            syn::ReturnType::Type(_, t) => Some(t),
        }
    }
}
