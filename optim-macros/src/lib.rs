//! # optim-macros
//!
//! `#[optimizer]`: write an optimizer as its update equations; get a complete, fused,
//! validated optimizer type.
//!
//! ```ignore
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
//! ```
//!
//! The macro works in three stages with a typed model between them:
//! [`parse`] (syntax) → [`check`] (names, types, levels; every error collected with its
//! span) → [`expand`] (code).

use proc_macro::TokenStream;

mod check;
mod errors;
mod expand;
mod model;
mod parse;

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
    let func: syn::ItemFn = match syn::parse2(item) {
        Ok(f) => f,
        Err(e) => {
            let mut err = syn::Error::new(
                e.span(),
                "`#[optimizer]` goes on a fn: `fn name(w: Param, g: Grad, m: State) { equations }`",
            );
            err.combine(e);
            return err.to_compile_error();
        }
    };
    let hypers = match syn::parse::Parser::parse2(
        |input: syn::parse::ParseStream| input.parse::<parse::HyperList>(),
        attr,
    ) {
        Ok(list) => list.0,
        Err(e) => {
            cx.push(e);
            Vec::new()
        }
    };
    let settings = parse::settings(&func.attrs, &mut cx);
    if let Some(g) = &func.sig.generics.lt_token {
        cx.spanned(
            g,
            "an optimizer definition takes no generics: it is generic over f32/f64 already",
        );
    }
    if let Some(r) = &func.sig.output_ok() {
        cx.spanned(
            r,
            "an optimizer definition returns nothing: it assigns the parameter and states",
        );
    }
    let args = parse::args(&func.sig, &mut cx);
    let model = check::model(&mut cx, hypers, &func, args, settings);
    match (cx.finish(), model) {
        (Ok(()), Some(model)) => expand::generate(&model),
        (Err(e), _) => with_stub(e, &func),
        (Ok(()), None) => with_stub(
            syn::Error::new_spanned(&func.sig, "invalid optimizer definition"),
            &func,
        ),
    }
}

/// The errors plus an empty type of the intended name.
fn with_stub(err: syn::Error, func: &syn::ItemFn) -> proc_macro2::TokenStream {
    let errors = err.to_compile_error();
    let name = func.sig.ident.to_string();
    let camel: String = name
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect();
    let vis = &func.vis;
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
