//! Stage 1: syntax. Reads the attribute's hyperparameter list and the fn's signature into
//! declarations, without resolving names or checking types.
//!
//! ```text
//! attribute := hyper ("," hyper)* ","?
//! hyper     := doc* IDENT (":" TYPE)? "=" literal ("in" range)?
//! range     := (literal "<"?)? (".." | "..=") literal?   // bounds may be negative; `<` excludes lo
//! arg       := attr* IDENT ":" ("Param" | "Grad" | "State" | "RowState" | "ColState" | "ScalarState" | "GlobalState")
//! attr      := "#[when(" expr ")]" | "#[init(" expr ")]"
//! ```

use proc_macro2::{Ident, Span};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Lit, Token};

/// A literal with an optional leading minus, as written, or the word `inf`.
pub struct SignedLit {
    pub negative: bool,
    /// Written `inf` (`lit` is then a stand-in, never read for its value).
    pub inf: bool,
    pub lit: Lit,
    pub span: Span,
}

impl Parse for SignedLit {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let negative = input.peek(Token![-]);
        if negative {
            input.parse::<Token![-]>()?;
        }
        // `inf` (and `-inf`): an unbounded default, such as Prodigy's growth rate, or the
        // end of a range that admits it (`1.0..=inf`). Kept apart from a literal that
        // overflows to inf (`1e400`), which is an error.
        if input.peek(syn::Ident) {
            let fork = input.fork();
            if fork.parse::<proc_macro2::Ident>().is_ok_and(|i| i == "inf") {
                let ident: proc_macro2::Ident = input.parse()?;
                return Ok(SignedLit {
                    negative,
                    inf: true,
                    span: ident.span(),
                    lit: Lit::Float(syn::LitFloat::new("0.0", ident.span())),
                });
            }
        }
        let lookahead = input.lookahead1();
        if lookahead.peek(Lit) {
            let lit: Lit = input.parse()?;
            Ok(SignedLit {
                negative,
                inf: false,
                span: lit.span(),
                lit,
            })
        } else {
            Err(lookahead.error())
        }
    }
}

/// `lo..hi`, `lo..=hi`, `lo..`, `..hi`; `lo<..` excludes `lo` (`0.0<..1.0` is (0, 1)).
pub struct RangeDecl {
    pub lo: Option<SignedLit>,
    pub hi: Option<SignedLit>,
    pub inclusive_hi: bool,
    pub exclusive_lo: bool,
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
        let exclusive_lo = lo.is_some() && input.peek(Token![<]);
        if exclusive_lo {
            input.parse::<Token![<]>()?;
        }
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
            exclusive_lo,
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

/// Reads the attribute's hyperparameter list. Each comma-separated entry is parsed on its
/// own, so one malformed entry is reported without losing the others; the name of a
/// malformed entry goes to `broken` (its uses are then not reported again).
pub fn hypers(
    attr: proc_macro2::TokenStream,
    cx: &mut crate::errors::Ctxt,
    broken: &mut Vec<Ident>,
) -> Vec<HyperDecl> {
    use proc_macro2::TokenTree;
    let mut chunks: Vec<(Vec<TokenTree>, Option<Span>)> = vec![(Vec::new(), None)];
    for tt in attr {
        match &tt {
            TokenTree::Punct(p) if p.as_char() == ',' => {
                if let Some(last) = chunks.last_mut() {
                    last.1 = Some(p.span());
                }
                chunks.push((Vec::new(), None));
            }
            _ => {
                if let Some(last) = chunks.last_mut() {
                    last.0.push(tt);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (tokens, comma) in chunks {
        if tokens.is_empty() {
            // A trailing comma leaves an empty last chunk; an empty chunk before a comma
            // is a stray comma.
            if let Some(span) = comma {
                cx.at(
                    span,
                    "unexpected `,`: expected a hyperparameter such as `lr = 1e-3 in 0.0..`",
                );
            }
            continue;
        }
        let stream: proc_macro2::TokenStream = tokens.iter().cloned().collect();
        match syn::parse::Parser::parse2(HyperDecl::parse, stream) {
            Ok(h) => out.push(h),
            Err(e) => {
                cx.push(e);
                // The first identifier after any doc attributes names the entry.
                let name = tokens.iter().find_map(|t| match t {
                    TokenTree::Ident(i) => Some(i.clone()),
                    _ => None,
                });
                broken.extend(name);
            }
        }
    }
    out
}

/// The role of a fn argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Param,
    Grad,
    State,
    RowState,
    ColState,
    ScalarState,
    GlobalState,
}

impl Role {
    pub const ALL: &'static [(&'static str, Role)] = &[
        ("Param", Role::Param),
        ("Grad", Role::Grad),
        ("State", Role::State),
        ("RowState", Role::RowState),
        ("ColState", Role::ColState),
        ("ScalarState", Role::ScalarState),
        ("GlobalState", Role::GlobalState),
    ];
}

/// One fn argument: a name with a role and its attributes.
pub struct ArgDecl {
    pub name: Ident,
    pub role: Role,
    pub when: Option<syn::Expr>,
    pub init: Option<syn::Expr>,
}

/// The fn's arguments as read.
pub struct Args {
    /// Arguments whose name and role could be read.
    pub decls: Vec<ArgDecl>,
    /// Whether every argument could be read (if not, a missing `Param` may be the one
    /// that was misspelled, and is not reported again).
    pub all_read: bool,
}

/// Reads the fn's arguments; bad ones are reported and skipped, their names added to
/// `broken`. A misspelled role with a close match (`Stat`) is reported and read as that
/// role, so the rest of the definition is still checked.
pub fn args(sig: &syn::Signature, cx: &mut crate::errors::Ctxt, broken: &mut Vec<Ident>) -> Args {
    let mut out = Args {
        decls: Vec::new(),
        all_read: true,
    };
    if let Some(v) = &sig.variadic {
        cx.spanned(v, "an optimizer definition takes no variadic arguments");
        out.all_read = false;
    }
    for input in &sig.inputs {
        let pat_ty = match input {
            syn::FnArg::Typed(p) => p,
            syn::FnArg::Receiver(r) => {
                cx.spanned(r, "an optimizer definition takes no `self`; declare `w: Param, g: Grad` and states");
                out.all_read = false;
                continue;
            }
        };
        let name = match &*pat_ty.pat {
            syn::Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.clone(),
            other => {
                cx.spanned(other, "expected a plain name, such as `m: State`");
                out.all_read = false;
                continue;
            }
        };
        let role = match role_of(&pat_ty.ty) {
            Ok(r) => r,
            Err((msg, guess)) => {
                cx.spanned(&pat_ty.ty, msg);
                match guess {
                    Some(r) => r,
                    None => {
                        broken.push(name);
                        out.all_read = false;
                        continue;
                    }
                }
            }
        };
        let mut when = None;
        let mut init = None;
        for attr in &pat_ty.attrs {
            let key = attr.path().get_ident().map(ToString::to_string);
            let (slot, example) = match key.as_deref() {
                Some("when") => (&mut when, "#[when(amsgrad)]"),
                Some("init") => (&mut init, "#[init(1.0)]"),
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
                        format!("unknown attribute `{written}` on `{name}`: a state takes `#[when(option)]` and `#[init(value)]`{hint}"),
                    );
                    continue;
                }
            };
            let key = key.unwrap_or_default();
            let syn::Meta::List(list) = &attr.meta else {
                cx.spanned(
                    &attr.meta,
                    format!("`#[{key}]` takes its argument in parentheses, as in `{example}`"),
                );
                continue;
            };
            if slot.is_some() {
                cx.spanned(
                    attr,
                    format!("a second `#[{key}]` on `{name}`; give it once"),
                );
                continue;
            }
            if list.tokens.is_empty() {
                cx.spanned(
                    &attr.meta,
                    format!("`#[{key}()]` is empty; give it a value, as in `{example}`"),
                );
                continue;
            }
            match attr.parse_args::<syn::Expr>() {
                Ok(e) => *slot = Some(e),
                Err(e) => cx.push(e),
            }
        }
        out.decls.push(ArgDecl {
            name,
            role,
            when,
            init,
        });
    }
    out
}

/// The role a type names, or a message and the role it is probably a typo of.
fn role_of(ty: &syn::Type) -> Result<Role, (String, Option<Role>)> {
    let expected =
        "expected one of `Param`, `Grad`, `State`, `RowState`, `ColState`, `ScalarState`, `GlobalState`";
    let syn::Type::Path(p) = ty else {
        return Err((format!("{expected}, the role of this argument"), None));
    };
    let Some(ident) = p.path.get_ident() else {
        return Err((
            format!("{expected} (written without a path), the role of this argument"),
            None,
        ));
    };
    let written = ident.to_string();
    if let Some(&(_, r)) = Role::ALL.iter().find(|(n, _)| *n == written) {
        return Ok(r);
    }
    let hint = crate::errors::did_you_mean(&written, Role::ALL.iter().map(|(n, _)| *n));
    let guess = Role::ALL
        .iter()
        .find(|(n, _)| hint.contains(&format!("`{n}`")))
        .map(|&(_, r)| r);
    Err((format!("unknown role `{written}`: {expected}{hint}"), guess))
}

/// Fn-level settings written as attributes after `#[optimizer(...)]`.
pub struct Settings {
    pub docs: Vec<Attribute>,
    pub passthrough: Vec<Attribute>,
    pub lazy_rows: bool,
    pub name: Option<(String, Span)>,
    /// `#[eval(expr)]`: the evaluation weights.
    pub eval: Option<syn::Expr>,
}

/// Reads `#[doc]`, `#[sparse(lazy)]`, `#[name = "..."]`, `#[eval(...)]` and lint
/// attributes.
pub fn settings(attrs: &[Attribute], cx: &mut crate::errors::Ctxt) -> Settings {
    let mut s = Settings {
        docs: Vec::new(),
        passthrough: Vec::new(),
        lazy_rows: false,
        name: None,
        eval: None,
    };
    const KNOWN: [&str; 4] = ["doc", "sparse", "name", "eval"];
    for attr in attrs {
        let key = attr.path().to_token_stream().to_string().replace(' ', "");
        match key.as_str() {
            "doc" => s.docs.push(attr.clone()),
            "allow" | "warn" | "deny" | "expect" => s.passthrough.push(attr.clone()),
            "sparse" => match attr.parse_args::<Ident>() {
                Ok(i) if i == "lazy" => s.lazy_rows = true,
                Ok(i) if i == "dense" => s.lazy_rows = false,
                _ => cx.spanned(&attr.meta, "expected `#[sparse(lazy)]` (only rows present are stepped) or `#[sparse(dense)]` (the default)"),
            },
            "eval" => match attr.parse_args::<syn::Expr>() {
                Ok(_) if s.eval.is_some() => cx.spanned(attr, "a second `#[eval(...)]`; give the evaluation weights once"),
                Ok(e) => s.eval = Some(e),
                Err(_) => cx.spanned(&attr.meta, "expected `#[eval(expr)]`: the weights to evaluate with, per element, as in `#[eval((w - (1.0 - beta1) * z) / beta1)]`"),
            },
            "name" => match &attr.meta {
                syn::Meta::NameValue(nv) => match &nv.value {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: Lit::Str(lit), ..
                    }) if lit.value().trim().is_empty() || lit.value().trim() != lit.value() => {
                        cx.spanned(lit, "the registry name must be non-empty, without surrounding spaces, as in `#[name = \"lazyadam\"]`")
                    }
                    syn::Expr::Lit(syn::ExprLit {
                        lit: Lit::Str(_), ..
                    }) if s.name.is_some() => cx.spanned(attr, "a second `#[name = \"...\"]`; give the registry name once"),
                    syn::Expr::Lit(syn::ExprLit {
                        lit: Lit::Str(lit), ..
                    }) => s.name = Some((lit.value(), lit.span())),
                    other => cx.spanned(other, "expected a string, as in `#[name = \"lazyadam\"]`"),
                },
                other => cx.spanned(other, "expected `#[name = \"...\"]`, the name in the registry, as in `#[name = \"lazyadam\"]`"),
            },
            _ => {
                let hint = crate::errors::did_you_mean(&key, KNOWN);
                cx.spanned(
                    attr.path(),
                    format!("unknown attribute `{key}` on an optimizer: expected `#[sparse(lazy)]`, `#[name = \"...\"]`, `#[eval(...)]`, doc comments or lint attributes{hint}"),
                );
            }
        }
    }
    s
}
