//! The macro never panics. Valid definitions (the zoo's) expand without errors; thousands
//! of mutations of them (every token deleted, duplicated, swapped with the next, replaced;
//! every prefix; random pairs of mutations) expand without panicking into well-formed Rust,
//! and the mutations that must be invalid produce `compile_error!`.

mod corpus;
mod regressions;

use super::expand_optimizer;
use optim_test_support::SplitMix64;
use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;

/// A token as written, with whether it is glued to the next one (`-` in `-=`).
#[derive(Clone, Debug)]
struct Tok {
    text: String,
    joint: bool,
}

fn tok(text: &str) -> Tok {
    Tok {
        text: text.to_string(),
        joint: false,
    }
}

/// Flattens a stream into tokens, delimiters included, so that mutations can unbalance
/// groups (such variants do not lex and are skipped: the compiler never passes them).
fn flatten(ts: TokenStream, out: &mut Vec<Tok>) {
    for tt in ts {
        match tt {
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                out.push(tok(open));
                flatten(g.stream(), out);
                out.push(tok(close));
            }
            TokenTree::Punct(p) => out.push(Tok {
                text: p.as_char().to_string(),
                joint: p.spacing() == Spacing::Joint,
            }),
            other => out.push(tok(&other.to_string())),
        }
    }
}

fn render(toks: &[Tok]) -> String {
    let mut s = String::new();
    for t in toks {
        s.push_str(&t.text);
        if !t.joint {
            s.push(' ');
        }
    }
    s
}

fn tokens(src: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    flatten(TokenStream::from_str(src).expect("valid corpus"), &mut out);
    out
}

/// What became of one variant.
enum Outcome {
    /// Did not lex: never reaches the macro.
    Unlexable,
    Accepted,
    Rejected,
}

/// Runs the macro on a variant; panics (the test's failure) are returned as errors.
fn run(attr: &[Tok], item: &[Tok], check_output: bool) -> Result<Outcome, String> {
    let (Ok(a), Ok(i)) = (
        TokenStream::from_str(&render(attr)),
        TokenStream::from_str(&render(item)),
    ) else {
        return Ok(Outcome::Unlexable);
    };
    let out = catch_unwind(AssertUnwindSafe(|| expand_optimizer(a, i))).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!(
            "panic `{msg}` on\n#[optimizer({})]\n{}",
            render(attr),
            render(item)
        )
    })?;
    let rejected = out
        .clone()
        .into_iter()
        .any(|t| matches!(&t, TokenTree::Ident(i) if i == "compile_error"));
    // Parsing a whole generated optimizer is slow in debug builds: check every error
    // output and one accepted output in `parse_every`.
    if rejected || check_output {
        if let Err(e) = syn::parse2::<syn::File>(out.clone()) {
            return Err(format!(
                "output is not Rust ({e}) for\n#[optimizer({})]\n{}\n=> {out}",
                render(attr),
                render(item)
            ));
        }
    }
    Ok(if rejected {
        Outcome::Rejected
    } else {
        Outcome::Accepted
    })
}

/// Replacements tried at every position.
const PALETTE: &[&str] = &[
    "w",
    "g",
    "m",
    "t",
    "lr",
    "beta1",
    "maximize",
    "__x",
    "r#type",
    "_",
    "State",
    "Param",
    "Grad",
    "ScalarState",
    "if",
    "else",
    "let",
    "for",
    "in",
    "fn",
    "true",
    "false",
    "sqrt",
    "max",
    "powi",
    "self",
    "0",
    "1.5",
    "-1",
    "\"s\"",
    "'c'",
    "1e400",
    "99999999999999999999",
    "0.0f32",
    "1usize",
    "___",
    "r#match",
    "+",
    "-",
    "*",
    "/",
    "%",
    "=",
    "==",
    "!",
    "<",
    ">=",
    "&&",
    "||",
    "..",
    "..=",
    ",",
    ";",
    ":",
    "#",
    "&",
    "^",
    "?",
    "@",
    ".",
    "-=",
    "*=",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
];

/// Every single-token mutation of `toks`: deletions, duplications, swaps, replacements
/// and truncations.
fn mutations(toks: &[Tok]) -> Vec<Vec<Tok>> {
    let mut out = Vec::new();
    for i in 0..toks.len() {
        let mut v = toks.to_vec();
        v.remove(i);
        out.push(v);
        let mut v = toks.to_vec();
        v.insert(i, toks[i].clone());
        out.push(v);
        if i + 1 < toks.len() {
            let mut v = toks.to_vec();
            v.swap(i, i + 1);
            out.push(v);
        }
        // A fifth of the palette at each position, a different fifth at the next: every
        // replacement is tried at every kind of position across the corpus.
        for r in PALETTE.iter().skip((i * 7) % 5).step_by(5) {
            let mut v = toks.to_vec();
            v[i] = tok(r);
            out.push(v);
        }
        out.push(toks[..i].to_vec());
    }
    out
}

#[test]
fn the_corpus_is_valid() {
    for (attr, item) in &corpus::valid() {
        match run(&tokens(attr), &tokens(item), true) {
            Ok(Outcome::Accepted) => {}
            Ok(_) => panic!("rejected: {item}"),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Runs every variant; returns how many reached the macro and how many it rejected.
fn run_all(variants: impl Iterator<Item = (Vec<Tok>, Vec<Tok>)>) -> (usize, usize) {
    let mut failures = Vec::new();
    let (mut ran, mut rejected, mut accepted) = (0, 0, 0);
    for (va, vi) in variants {
        // Every 16th accepted output is parsed as a whole (see `run`).
        match run(&va, &vi, accepted % 16 == 0) {
            Ok(Outcome::Unlexable) => {}
            Ok(Outcome::Rejected) => {
                ran += 1;
                rejected += 1;
            }
            Ok(Outcome::Accepted) => {
                ran += 1;
                accepted += 1;
            }
            Err(e) => {
                // One is enough (and each panic prints its backtrace).
                failures.push(e);
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    (ran, rejected)
}

#[test]
fn single_mutations_never_panic() {
    let corpus = corpus::valid();
    let variants = corpus.iter().flat_map(|(attr, item)| {
        let (a, i) = (tokens(attr), tokens(item));
        let of_attr: Vec<_> = mutations(&a).into_iter().map(|m| (m, i.clone())).collect();
        let of_item: Vec<_> = mutations(&i).into_iter().map(|m| (a.clone(), m)).collect();
        of_attr.into_iter().chain(of_item)
    });
    let (ran, rejected) = run_all(variants);
    assert!(ran > 10_000, "only {ran} variants reached the macro");
    assert!(rejected > ran / 2, "only {rejected} of {ran} rejected");
}

/// One random mutation: delete, duplicate, swap or replace at a random position.
fn mutate(toks: &mut Vec<Tok>, rng: &mut SplitMix64) {
    if toks.len() < 2 {
        return;
    }
    let i = rng.below(toks.len() - 1);
    match rng.below(4) {
        0 => {
            toks.remove(i);
        }
        1 => toks.insert(i, toks[i].clone()),
        2 => toks.swap(i, i + 1),
        _ => toks[i] = tok(PALETTE[rng.below(PALETTE.len())]),
    }
}

#[test]
fn random_double_mutations_never_panic() {
    let mut rng = SplitMix64::new(0x9E37_79B9_7F4A_7C15);
    let mut variants = Vec::new();
    for (attr, item) in &corpus::valid() {
        let (a, i) = (tokens(attr), tokens(item));
        for _ in 0..600 {
            let (mut va, mut vi) = (a.clone(), i.clone());
            for _ in 0..2 {
                // Mostly the body, where most of the language is.
                if rng.below(4) == 0 {
                    mutate(&mut va, &mut rng);
                } else {
                    mutate(&mut vi, &mut rng);
                }
            }
            variants.push((va, vi));
        }
    }
    let (ran, _) = run_all(variants.into_iter());
    assert!(ran > 2_000, "only {ran} variants reached the macro");
}

/// Renaming any identifier to a fresh name breaks a definition, except the fn's own name
/// and the `doc` of doc comments; so does a string where a number was.
#[test]
fn breaking_mutations_are_rejected() {
    let mut missed = Vec::new();
    for (attr, item) in &corpus::valid() {
        let (a, i) = (tokens(attr), tokens(item));
        let fn_name = i
            .windows(2)
            .find(|w| w[0].text == "fn")
            .map(|w| w[1].text.clone())
            .unwrap();
        let breaking = |toks: &[Tok], k: usize| -> Option<Vec<Tok>> {
            let t = &toks[k].text;
            let first = t.chars().next()?;
            let mut v = toks.to_vec();
            if (first.is_alphabetic() || first == '_') && *t != fn_name && t != "doc" {
                v[k] = tok("zz_fresh");
            } else if first.is_ascii_digit() {
                v[k] = tok("\"0.5\"");
            } else {
                return None;
            }
            Some(v)
        };
        let variants = (0..a.len())
            .filter_map(|k| breaking(&a, k).map(|v| (v, i.clone())))
            .chain((0..i.len()).filter_map(|k| breaking(&i, k).map(|v| (a.clone(), v))));
        for (va, vi) in variants {
            if let Ok(Outcome::Accepted) = run(&va, &vi, false) {
                missed.push(format!("#[optimizer({})]\n{}", render(&va), render(&vi)));
            }
        }
    }
    assert!(
        missed.is_empty(),
        "{} accepted, first:\n{}",
        missed.len(),
        missed[0]
    );
}
