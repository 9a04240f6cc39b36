//! Error accumulation: every stage records what is wrong and goes on, so the user sees
//! all their mistakes at once, each at its own token.

use proc_macro2::Span;
use quote::ToTokens;
use std::fmt::Display;

/// Collected compile errors.
#[derive(Default)]
pub struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    /// Records an error covering `tokens`.
    pub fn spanned(&mut self, tokens: impl ToTokens, msg: impl Display) {
        self.errors.push(syn::Error::new_spanned(tokens, msg));
    }

    /// Records an error at `span`.
    pub fn at(&mut self, span: Span, msg: impl Display) {
        self.errors.push(syn::Error::new(span, msg));
    }

    /// Records a `syn` parse error.
    pub fn push(&mut self, err: syn::Error) {
        self.errors.push(err);
    }

    /// All errors joined into one, or `Ok` if none.
    pub fn finish(self) -> Result<(), syn::Error> {
        let mut iter = self.errors.into_iter();
        match iter.next() {
            None => Ok(()),
            Some(mut first) => {
                for e in iter {
                    first.combine(e);
                }
                Err(first)
            }
        }
    }
}

/// `"; did you mean `x`?"` when a candidate is a plausible typo of `name`, else `""`: the
/// rule of [`optim_suggest::closest`], the runtime's too.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    optim_suggest::closest(name, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}
