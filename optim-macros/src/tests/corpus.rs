//! Valid definitions: every `#[optimizer]` definition of the zoo, read from its source
//! files (so the mutation tests follow the zoo as it changes), plus one using every
//! function and integer, negative and typed hyperparameters. The starting points of the
//! mutation tests.

use quote::ToTokens;

/// `(file, source)` of zoo files.
macro_rules! zoo_sources {
    ($($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../../../optim-zoo/src/", $file)))),*]
    };
}

/// The zoo's source files.
const ZOO: &[(&str, &str)] = zoo_sources![
    "sgd.rs",
    "adagrad.rs",
    "adadelta.rs",
    "rmsprop.rs",
    "adam.rs",
    "adamw.rs",
    "adamax.rs",
    "nadam.rs",
    "radam.rs",
    "lazyadam.rs",
    "lookahead.rs",
];

/// A definition using every function, integer, negative and typed hyperparameters.
const EVERY_FEATURE: (&str, &str) = (
    "lr = 1e-2 in 0.0.., lr_decay = 0.0 in 0.0.., initial_accumulator_value = 0.0 in 0.0..,
        eps = 1e-10 in 0.0.., clip: f64 = 1 in -1..=1, k: i64 = -2 in -3..0,",
    "pub fn adagrad(w: Param, g: Grad, #[init(initial_accumulator_value)] s: State) {
            s += g * g;
            let clr = lr / (1.0 + (t - 1.0) * lr_decay);
            let x = min(max(g, -clip), clip) * abs(signum(g)) * exp(ln(1.0 + k * k)) ;
            w -= clr * (x / (sqrt(s) + eps));
        }",
);

/// `(attribute arguments, item)` of every valid definition: the zoo's (the function
/// with its `#[optimizer]` attribute taken off, and without rustdoc, which only
/// lengthens the mutation tests), then [`EVERY_FEATURE`].
pub fn valid() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (file, source) in ZOO {
        let parsed = syn::parse_file(source).unwrap_or_else(|e| panic!("{file}: {e}"));
        for item in parsed.items {
            let syn::Item::Fn(mut f) = item else { continue };
            let Some(at) = f.attrs.iter().position(|a| a.path().is_ident("optimizer")) else {
                continue;
            };
            let attr = f.attrs.remove(at);
            let args = match attr.meta {
                syn::Meta::List(list) => without_docs(list.tokens).to_string(),
                _ => panic!("{file}: `#[optimizer]` without arguments"),
            };
            f.attrs.retain(|a| !a.path().is_ident("doc"));
            out.push((args, f.into_token_stream().to_string()));
        }
    }
    assert_eq!(out.len(), ZOO.len(), "one definition per zoo file");
    out.push((EVERY_FEATURE.0.to_string(), EVERY_FEATURE.1.to_string()));
    out
}

/// `tokens` without its `#[doc = ...]` attributes (the hyperparameters' doc comments).
fn without_docs(tokens: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    use proc_macro2::TokenTree;
    let is_doc = |t: Option<&TokenTree>| {
        matches!(t, Some(TokenTree::Group(g))
            if g.stream().into_iter().next().is_some_and(|i| i.to_string() == "doc"))
    };
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Punct(p) if p.as_char() == '#' && is_doc(tokens.get(i + 1)) => i += 2,
            t => {
                out.push(t.clone());
                i += 1;
            }
        }
    }
    out.into_iter().collect()
}
