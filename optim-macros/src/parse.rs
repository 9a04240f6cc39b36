//! Stage 1: syntax. Reads the attribute's hyperparameter list and the fn's signature into
//! declarations, without resolving names or checking types.
//!
//! ```text
//! attribute := hyper ("," hyper)* ","?
//! hyper     := doc* IDENT (":" TYPE)? "=" literal ("in" range)?
//! range     := literal? (".." | "..=") literal?        // bounds may be negative
//! arg       := attr* IDENT ":" ("Param" | "Grad" | "State" | "ScalarState")
//! attr      := "#[when(" expr ")]" | "#[init(" expr ")]"
//! ```

use proc_macro2::{Ident, Span};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Lit, Token};

/// A literal with an optional leading minus, as written.
pub struct SignedLit {
    pub negative: bool,
    pub lit: Lit,
    pub span: Span,
}

impl Parse for SignedLit {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let negative = input.peek(Token![-]);
        if negative {
            input.parse::<Token![-]>()?;
        }
        let lookahead = input.lookahead1();
        if lookahead.peek(Lit) {
            let lit: Lit = input.parse()?;
            Ok(SignedLit {
                negative,
                span: lit.span(),
                lit,
            })
        } else {
            Err(lookahead.error())
        }
    }
}

/// `lo..hi`, `lo..=hi`, `lo..`, `..hi`.
pub struct RangeDecl {
    pub lo: Option<SignedLit>,
    pub hi: Option<SignedLit>,
    pub inclusive_hi: bool,
    pub span: Span,
}

impl Parse for RangeDecl {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let span = input.span();
        let lo = if input.peek(Token![..]) {
            None
        } else {
            Some(input.parse::<SignedLit>()?)
        };
        let inclusive_hi = if input.peek(Token![..=]) {
            input.parse::<Token![..=]>()?;
            true
        } else if input.peek(Token![..]) {
            input.parse::<Token![..]>()?;
            false
        } else {
            return Err(input.error("expected `..` or `..=` in a range such as `0.0..1.0`"));
        };
        let hi = if input.is_empty() || input.peek(Token![,]) {
            None
        } else {
            Some(input.parse::<SignedLit>()?)
        };
        Ok(RangeDecl {
            lo,
            hi,
            inclusive_hi,
            span,
        })
    }
}

/// One hyperparameter as written in `#[optimizer(...)]`.
pub struct HyperDecl {
    pub docs: Vec<Attribute>,
    pub name: Ident,
    pub ty: Option<syn::Type>,
    pub default: SignedLit,
    pub range: Option<RangeDecl>,
}

impl Parse for HyperDecl {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let docs = input.call(Attribute::parse_outer)?;
        let name: Ident = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected a hyperparameter such as `lr = 1e-3 in 0.0..`",
            )
        })?;
        let ty = if input.peek(Token![:]) {
            input.parse::<Token![:]>()?;
            Some(input.parse::<syn::Type>()?)
        } else {
            None
        };
        if !input.peek(Token![=]) {
            return Err(input.error(format!(
                "expected `=` and a default after `{name}`, as in `{name} = 0.9 in 0.0..1.0`"
            )));
        }
        input.parse::<Token![=]>()?;
        let default: SignedLit = input.parse()?;
        let range = if input.peek(Token![in]) {
            input.parse::<Token![in]>()?;
            Some(input.parse::<RangeDecl>()?)
        } else {
            None
        };
        if !input.is_empty() && !input.peek(Token![,]) {
            return Err(input.error(
                "expected `,` or `in lo..hi` after the default; hyperparameters are separated by commas",
            ));
        }
        Ok(HyperDecl {
            docs,
            name,
            ty,
            default,
            range,
        })
    }
}

/// The attribute's argument list.
pub struct HyperList(pub Vec<HyperDecl>);

impl Parse for HyperList {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let list = Punctuated::<HyperDecl, Token![,]>::parse_terminated(input)?;
        Ok(HyperList(list.into_iter().collect()))
    }
}

/// The role of a fn argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Param,
    Grad,
    State,
    ScalarState,
}

impl Role {
    pub const ALL: &'static [(&'static str, Role)] = &[
        ("Param", Role::Param),
        ("Grad", Role::Grad),
        ("State", Role::State),
        ("ScalarState", Role::ScalarState),
    ];
}

/// One fn argument: a name with a role and its attributes.
pub struct ArgDecl {
    pub name: Ident,
    pub role: Role,
    pub when: Option<syn::Expr>,
    pub init: Option<syn::Expr>,
}

/// Reads the fn's arguments; bad ones are reported and skipped.
pub fn args(sig: &syn::Signature, cx: &mut crate::errors::Ctxt) -> Vec<ArgDecl> {
    let mut out = Vec::new();
    for input in &sig.inputs {
        let pat_ty = match input {
            syn::FnArg::Typed(p) => p,
            syn::FnArg::Receiver(r) => {
                cx.spanned(r, "an optimizer definition takes no `self`; declare `w: Param, g: Grad` and states");
                continue;
            }
        };
        let name = match &*pat_ty.pat {
            syn::Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.clone(),
            other => {
                cx.spanned(other, "expected a plain name, such as `m: State`");
                continue;
            }
        };
        let role = match role_of(&pat_ty.ty) {
            Ok(r) => r,
            Err(msg) => {
                cx.spanned(&pat_ty.ty, msg);
                continue;
            }
        };
        let mut when = None;
        let mut init = None;
        for attr in &pat_ty.attrs {
            let key = attr.path().get_ident().map(ToString::to_string);
            let slot = match key.as_deref() {
                Some("when") => &mut when,
                Some("init") => &mut init,
                _ => {
                    let written = attr
                        .path()
                        .segments
                        .last()
                        .map(|s| s.ident.to_string())
                        .unwrap_or_default();
                    let hint = crate::errors::did_you_mean(&written, ["when", "init"]);
                    cx.spanned(
                        attr.path(),
                        format!("unknown attribute `{written}` on `{name}`{hint}; a state takes `#[when(option)]` and `#[init(value)]`"),
                    );
                    continue;
                }
            };
            match attr.parse_args::<syn::Expr>() {
                Ok(e) => *slot = Some(e),
                Err(e) => cx.push(e),
            }
        }
        out.push(ArgDecl {
            name,
            role,
            when,
            init,
        });
    }
    out
}

fn role_of(ty: &syn::Type) -> Result<Role, String> {
    let expected = "expected one of `Param`, `Grad`, `State`, `ScalarState`";
    let syn::Type::Path(p) = ty else {
        return Err(expected.to_string());
    };
    let Some(ident) = p.path.get_ident() else {
        return Err(expected.to_string());
    };
    let written = ident.to_string();
    Role::ALL
        .iter()
        .find(|(n, _)| *n == written)
        .map(|&(_, r)| r)
        .ok_or_else(|| {
            let hint = crate::errors::did_you_mean(&written, Role::ALL.iter().map(|(n, _)| *n));
            format!("unknown role `{written}`{hint}; {expected}")
        })
}

/// Fn-level settings written as attributes after `#[optimizer(...)]`.
pub struct Settings {
    pub docs: Vec<Attribute>,
    pub passthrough: Vec<Attribute>,
    pub lazy_rows: bool,
    pub name: Option<(String, Span)>,
}

/// Reads `#[doc]`, `#[sparse(lazy)]`, `#[name = "..."]` and lint attributes.
pub fn settings(attrs: &[Attribute], cx: &mut crate::errors::Ctxt) -> Settings {
    let mut s = Settings {
        docs: Vec::new(),
        passthrough: Vec::new(),
        lazy_rows: false,
        name: None,
    };
    const KNOWN: [&str; 3] = ["doc", "sparse", "name"];
    for attr in attrs {
        let key = attr
            .path()
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "doc" => s.docs.push(attr.clone()),
            "allow" | "warn" | "deny" | "expect" => s.passthrough.push(attr.clone()),
            "sparse" => match attr.parse_args::<Ident>() {
                Ok(i) if i == "lazy" => s.lazy_rows = true,
                Ok(i) if i == "dense" => s.lazy_rows = false,
                Ok(i) => cx.spanned(&i, "expected `#[sparse(lazy)]` (only rows present are stepped) or `#[sparse(dense)]` (the default)"),
                Err(e) => cx.push(e),
            },
            "name" => match &attr.meta {
                syn::Meta::NameValue(nv) => match &nv.value {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: Lit::Str(lit), ..
                    }) => s.name = Some((lit.value(), lit.span())),
                    other => cx.spanned(other, "expected a string, as in `#[name = \"lazyadam\"]`"),
                },
                other => cx.spanned(other, "expected `#[name = \"...\"]`"),
            },
            _ => {
                let hint = crate::errors::did_you_mean(&key, KNOWN);
                cx.spanned(
                    attr.path(),
                    format!("unknown attribute `{key}` on an optimizer{hint}; expected `#[sparse(lazy)]`, `#[name = \"...\"]` or doc comments"),
                );
            }
        }
    }
    s
}
