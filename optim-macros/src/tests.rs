//! The macro never panics. Valid definitions (the zoo's) expand without errors; thousands
//! of mutations of them (every token deleted, duplicated, swapped with the next, replaced;
//! every prefix; random pairs of mutations) expand without panicking into well-formed Rust,
//! and the mutations that must be invalid produce `compile_error!`.

use super::expand_optimizer;
use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;

/// `(attribute arguments, item)` of valid definitions, copied from the zoo.
const VALID: &[(&str, &str)] = &[
    (
        "/// Learning rate α.
        lr = 1e-3 in 0.0.., momentum = 0.0 in 0.0.., dampening = 0.0 in 0.0..=1.0,
        nesterov = false, weight_decay = 0.0 in 0.0..,",
        "pub fn sgd(w: Param, g: Grad, #[when(momentum > 0.0)] b: State) {
            g += weight_decay * w;
            if momentum > 0.0 {
                b = if t == 1 { g } else { momentum * b + (1.0 - dampening) * g };
                g = if nesterov { g + momentum * b } else { b };
            }
            w -= lr * g;
        }",
    ),
    (
        "lr = 1e-3 in 0.0.., beta1 = 0.9 in 0.0..1.0, beta2 = 0.999 in 0.0..1.0,
        eps = 1e-8 in 0.0.., weight_decay = 0.0 in 0.0.., amsgrad = false,",
        "pub fn adam(w: Param, g: Grad, m: State, v: State, #[when(amsgrad)] v_max: State) {
            g += weight_decay * w;
            m = beta1 * m + (1.0 - beta1) * g;
            v = beta2 * v + (1.0 - beta2) * g * g;
            let v_hat = if amsgrad { v_max = max(v_max, v); v_max } else { v };
            let step_size = lr / (1.0 - beta1.powi(t));
            let denom = sqrt(v_hat) / sqrt(1.0 - beta2.powi(t)) + eps;
            w -= step_size * (m / denom);
        }",
    ),
    (
        "lr = 2e-3 in 0.0.., beta1 = 0.9 in 0.0..1.0, beta2 = 0.999 in 0.0..1.0,
        eps = 1e-8 in 0.0.., weight_decay = 0.0 in 0.0.., momentum_decay = 4e-3 in 0.0..,
        decoupled_weight_decay = false,",
        "pub fn nadam(w: Param, g: Grad, m: State, v: State, #[init(1.0)] mu_product: ScalarState) {
            if decoupled_weight_decay { w *= 1.0 - lr * weight_decay; } else { g += weight_decay * w; }
            let mu = beta1 * (1.0 - 0.5 * 0.96.powf(t * momentum_decay));
            let mu_next = beta1 * (1.0 - 0.5 * 0.96.powf((t + 1.0) * momentum_decay));
            mu_product *= mu;
            m = beta1 * m + (1.0 - beta1) * g;
            v = beta2 * v + (1.0 - beta2) * g * g;
            let den = sqrt(v / (1.0 - beta2.powi(t))) + eps;
            w -= lr * (1.0 - mu) / (1.0 - mu_product) * (g / den);
            w -= lr * mu_next / (1.0 - mu_product * mu_next) * (m / den);
        }",
    ),
    (
        "lr = 1e-2 in 0.0.., alpha = 0.99 in 0.0.., eps = 1e-8 in 0.0..,
        weight_decay = 0.0 in 0.0.., momentum = 0.0 in 0.0.., centered = false,",
        "pub fn rmsprop(w: Param, g: Grad, v: State, #[when(centered)] a: State,
            #[when(momentum > 0.0)] b: State) {
            g += weight_decay * w;
            v = alpha * v + (1.0 - alpha) * g * g;
            let den = if centered { a = alpha * a + (1.0 - alpha) * g; sqrt(v - a * a) + eps }
                else { sqrt(v) + eps };
            if momentum > 0.0 { b = momentum * b + g / den; w -= lr * b; }
            else { w -= lr * (g / den); }
        }",
    ),
    (
        "k = 5 in 1.., alpha = 0.5 in 0.0..=1.0,",
        "pub fn lookahead(w: Param, #[init(w)] slow: State) {
            if t % k == 0 { slow += alpha * (w - slow); w = slow; }
        }",
    ),
    (
        "lr = 1e-3 in 0.0.., beta1 = 0.9 in 0.0..1.0, beta2 = 0.999 in 0.0..1.0,
        eps = 1e-8 in 0.0..,",
        "/// LazyAdam.
        #[sparse(lazy)]
        #[name = \"lazyadam\"]
        pub fn lazy_adam(w: Param, g: Grad, m: State, v: State) {
            m = beta1 * m + (1.0 - beta1) * g;
            v = beta2 * v + (1.0 - beta2) * g * g;
            w -= lr * sqrt(1.0 - beta2.powi(t)) / (1.0 - beta1.powi(t)) * (m / (sqrt(v) + eps));
        }",
    ),
    (
        "lr = 1e-2 in 0.0.., lr_decay = 0.0 in 0.0.., initial_accumulator_value = 0.0 in 0.0..,
        eps = 1e-10 in 0.0.., clip: f64 = 1 in -1..=1, k: i64 = -2 in -3..0,",
        "pub fn adagrad(w: Param, g: Grad, #[init(initial_accumulator_value)] s: State) {
            s += g * g;
            let clr = lr / (1.0 + (t - 1.0) * lr_decay);
            let x = min(max(g, -clip), clip) * abs(signum(g)) * exp(ln(1.0 + k * k)) ;
            w -= clr * (x / (sqrt(s) + eps));
        }",
    ),
];

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
    for (attr, item) in VALID {
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
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures, first:\n{}",
        failures.len(),
        failures[0]
    );
    (ran, rejected)
}

#[test]
fn single_mutations_never_panic() {
    let variants = VALID.iter().flat_map(|(attr, item)| {
        let (a, i) = (tokens(attr), tokens(item));
        let of_attr: Vec<_> = mutations(&a).into_iter().map(|m| (m, i.clone())).collect();
        let of_item: Vec<_> = mutations(&i).into_iter().map(|m| (a.clone(), m)).collect();
        of_attr.into_iter().chain(of_item)
    });
    let (ran, rejected) = run_all(variants);
    assert!(ran > 10_000, "only {ran} variants reached the macro");
    assert!(rejected > ran / 2, "only {rejected} of {ran} rejected");
}

/// xorshift64: a fixed, reproducible sequence.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One random mutation: delete, duplicate, swap or replace at a random position.
fn mutate(toks: &mut Vec<Tok>, rng: &mut Rng) {
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
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut variants = Vec::new();
    for (attr, item) in VALID {
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
    for (attr, item) in VALID {
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

fn expand(attr: &str, item: &str) -> TokenStream {
    expand_optimizer(
        TokenStream::from_str(attr).unwrap(),
        TokenStream::from_str(item).unwrap(),
    )
}

/// The messages of the `compile_error!`s in an expansion.
fn errors_of(attr: &str, item: &str) -> Vec<String> {
    let out: Vec<TokenTree> = expand(attr, item).into_iter().collect();
    out.windows(3)
        .filter(|w| matches!(&w[0], TokenTree::Ident(i) if i == "compile_error"))
        .filter_map(|w| match &w[2] {
            TokenTree::Group(g) => syn::parse2::<syn::LitStr>(g.stream()).ok(),
            _ => None,
        })
        .map(|l| l.value())
        .collect()
}

const SGD: &str = "fn sgd(w: Param, g: Grad) { w -= lr * g; }";

#[test]
fn fn_names_that_make_no_type_name_are_errors_not_panics() {
    // These panicked (`Ident::new` on "R#type" and ""), or generated `struct Self`.
    let out = expand("lr = 1.0", "fn r#type(w: Param, g: Grad) { w -= lr * g; }").to_string();
    assert!(
        out.contains("struct Type") && out.contains("\"type\""),
        "{out}"
    );
    for name in ["___", "self_"] {
        let errors = errors_of("lr = 1.0", &SGD.replace("sgd", name));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with(&format!("cannot make a type name from `{name}`")));
    }
}

#[test]
fn an_integer_default_too_large_is_reported_not_dropped() {
    // Used to be dropped silently: the optimizer lost a hyperparameter.
    let errors = errors_of("lr = 1.0, k = 99999999999999999999", SGD);
    assert_eq!(
        errors,
        ["this integer does not fit in an `i64`; write it as a float, such as `1e20`"]
    );
}

#[test]
fn a_malformed_entry_is_one_error_and_the_others_are_still_read() {
    let item = "fn sgd(w: Param, g: Grad) { w -= lr * beta * g; }";
    let errors = errors_of("lr 1e-3, beta = 0.9 in 0.0..1.0", item);
    assert_eq!(
        errors,
        ["expected `=` and a default after `lr`, as in `lr = 0.9 in 0.0..1.0`"]
    );
    // `beta` was read: misusing it is still reported.
    let errors = errors_of(
        "lr 1e-3, beta = 0.9 in 0.0..1.0",
        &item.replace("{", "{ beta = 1.0;"),
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[1].starts_with("cannot assign to hyperparameter `beta`"));
    assert_eq!(
        errors_of("lr = 1.0,, beta = 0.5", item),
        ["unexpected `,`: expected a hyperparameter such as `lr = 1e-3 in 0.0..`"]
    );
}

#[test]
fn a_misspelled_role_is_read_as_the_role_it_resembles() {
    let item = "fn m(w: Param, g: Grad, b: Stat) { b = 0.9 * b + g; w -= lr * b * bogus; }";
    let errors = errors_of("lr = 1.0", item);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("unknown role `Stat`"),
        "{}",
        errors[0]
    );
    assert!(errors[0].ends_with("did you mean `State`?"));
    assert!(errors[1].starts_with("cannot find `bogus` in this optimizer; declare it"));
}

#[test]
fn suggestions_count_a_swap_as_one_edit_and_never_replace_a_whole_name() {
    use crate::errors::did_you_mean;
    assert_eq!(
        did_you_mean("wehn", ["when", "init"]),
        "; did you mean `when`?"
    );
    assert_eq!(did_you_mean("b", ["t", "w", "g"]), "");
    assert_eq!(did_you_mean("l", ["lr"]), "; did you mean `lr`?");
    assert_eq!(
        did_you_mean("beta_1", ["beta1", "beta2"]),
        "; did you mean `beta1`?"
    );
    assert_eq!(did_you_mean("momentum", ["nesterov"]), "");
}

#[test]
fn a_syntax_error_in_the_body_still_gets_a_stub_type() {
    let out = expand(
        "lr = 1.0",
        "pub(crate) fn my_sgd(w: Param, g: Grad) { w -= ; }",
    )
    .to_string();
    assert!(out.contains("compile_error"), "{out}");
    assert!(out.contains("pub (crate) struct MySgd"), "{out}");
}

#[test]
fn declarations_that_cannot_work_are_errors() {
    let cases = [
        (
            "lr = 1.0, beta = 0.5 in 1.0..0.0",
            "the range [1, 0) of `beta` is empty",
        ),
        (
            "lr = 1.0, build = 0.5",
            "`build` cannot name a hyperparameter",
        ),
        (
            "lr = 1.0, default = 0.5",
            "`default` cannot name a hyperparameter",
        ),
        ("lr = 1.0, flag = -true", "a bool cannot be negated here"),
        (
            "lr = 1.0, k: u8 = 1",
            "unsupported hyperparameter type `u8`",
        ),
    ];
    for (attr, msg) in cases {
        let errors = errors_of(attr, SGD);
        assert_eq!(errors.len(), 1, "{attr}: {errors:?}");
        assert!(errors[0].starts_with(msg), "{attr}: {errors:?}");
    }
}
