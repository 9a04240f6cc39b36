//! Targeted tests of what the mutation tests found or the error messages promise: each
//! expansion here has an exact expected outcome.

use crate::expand_optimizer;
use proc_macro2::{TokenStream, TokenTree};
use std::str::FromStr;

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

/// `n` bool options, each guarding its own update.
fn options(n: usize) -> (String, String) {
    let attr: Vec<String> = (0..n).map(|i| format!("o{i} = false")).collect();
    let body: Vec<String> = (0..n)
        .map(|i| format!("if o{i} {{ w -= {i}.5 * g; }}"))
        .collect();
    let item = format!("fn many(w: Param, g: Grad) {{ {} }}", body.join(" "));
    (attr.join(", "), item)
}

#[test]
fn many_options_do_not_multiply_the_generated_loops() {
    // Each hoisted condition doubles the element loops compiled (2^11 took 280 s and
    // 8 GB to build); past five, conditions are evaluated in the loop.
    let (attr, item) = options(5);
    let five = expand(&attr, &item).to_string().len();
    let (attr, item) = options(16);
    let sixteen = expand(&attr, &item).to_string();
    assert!(!sixteen.contains("compile_error"));
    assert!(
        sixteen.len() < 2 * five,
        "{} vs {five} chars",
        sixteen.len()
    );
}

#[test]
fn conditions_that_must_be_hoisted_are_limited() {
    let n = 7;
    let attr: Vec<String> = (0..n).map(|i| format!("o{i} = false")).collect();
    let states: Vec<String> = (0..n)
        .map(|i| format!("#[when(o{i})] s{i}: State"))
        .collect();
    let body: Vec<String> = (0..n)
        .map(|i| format!("if o{i} {{ s{i} = g; w -= s{i}; }}"))
        .collect();
    let item = format!(
        "fn many(w: Param, g: Grad, {}) {{ {} }}",
        states.join(", "),
        body.join(" ")
    );
    let errors = errors_of(&attr.join(", "), &item);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("`many` needs 7 per-step conditions compiled out"),
        "{}",
        errors[0]
    );
    // Six are fine.
    let item = item
        .replace(", #[when(o6)] s6: State", "")
        .replace("if o6 { s6 = g; w -= s6; }", "");
    assert_eq!(errors_of(&attr.join(", "), &item), Vec::<String>::new());
}

/// The checked model of a valid definition.
fn model_of(attr: &str, item: &str) -> crate::model::Model {
    let mut cx = crate::errors::Ctxt::default();
    let func: syn::ItemFn = syn::parse_str(item).unwrap();
    let mut broken = Vec::new();
    let attr = TokenStream::from_str(attr).unwrap();
    let hypers = crate::parse::hypers(attr, &mut cx, &mut broken);
    let settings = crate::parse::settings(&func.attrs, &mut cx);
    let args = crate::parse::args(&func.sig, &mut cx, &mut broken);
    let model = crate::check::model(&mut cx, hypers, &func, args, settings, broken);
    assert!(cx.finish().is_ok());
    model.unwrap()
}

#[test]
fn past_five_only_conditions_that_must_be_are_hoisted() {
    use crate::model::{Cond, Stmt};
    let (attr, item) = options(5);
    let attr = format!("{attr}, o5 = false, o6 = false, o7 = false");
    let item = item
        .replace(
            "g: Grad)",
            "g: Grad, #[init(1.0)] s: ScalarState, #[when(o7)] v: State)",
        )
        .replace(
            "w -= 4.5 * g; }",
            "w -= 4.5 * g; } if o5 { s *= 0.5; } if o6 { w -= s * g; } if o7 { v = g; }",
        );
    let model = model_of(&attr, &item);
    let hoisted: Vec<bool> = model
        .body
        .iter()
        .map(|s| {
            matches!(
                s,
                Stmt::If {
                    cond: Cond::Hoisted(_),
                    ..
                }
            )
        })
        .collect();
    // o7 is hoisted first (its state's option), then o0..o3; o4 and o6 are past the
    // limit, but o5 guards a scalar-state update, and o7 an option-only state.
    assert_eq!(hoisted, [true, true, true, true, false, true, false, true]);
    assert_eq!(model.conds.len(), 6);
}

#[test]
fn a_literal_that_overflows_to_inf_is_an_error_and_inf_needs_a_range_that_admits_it() {
    // Issue 13: `1e400` read as inf and `inf` passed any `lo..` range.
    let too_large = "`1e400` is too large for an f64 (it would be inf); write a finite value \
                     such as `1e300`, or, for infinity, `inf` as a hyperparameter's default \
                     with a range that admits it (`in 0.0..=inf`)";
    assert_eq!(errors_of("lr = 1e400 in 0.0..", SGD), [too_large]);
    assert_eq!(errors_of("lr = 1e400", SGD), [too_large]);
    assert_eq!(errors_of("lr = 0.1 in 0.0..1e400", SGD), [too_large]);
    let body = "fn sgd(w: Param, g: Grad) { w -= lr * 1e400 * g; }";
    assert_eq!(errors_of("lr = 0.1", body), [too_large]);

    let item = "fn sgd(w: Param, g: Grad) { w -= lr * min(g, cap); }";
    assert_eq!(
        errors_of("lr = 0.1, cap = inf in 0.0..", item),
        [
            "the default inf of `cap` is outside its range [0, inf); a range admits inf only \
          when it ends in `..=inf`, as in `0.0..=inf`"
        ]
    );
    assert_eq!(
        errors_of("lr = 0.1, cap = inf", item),
        [
            "the default inf of `cap` is outside its range (-inf, inf); a range admits inf \
          only when it ends in `..=inf`, as in `0.0..=inf`"
        ]
    );
    assert_eq!(
        errors_of("lr = 0.1, cap = -inf in ..0.0", item),
        [
            "the default -inf of `cap` is outside its range (-inf, 0); a range admits -inf \
          only when it starts at `-inf`, as in `-inf..=0.0`"
        ]
    );
    assert_eq!(
        errors_of("lr = 0.1, cap = 1.0 in inf..", item),
        [
            "the range [inf, inf) of `cap` is empty; write the lower bound first, as in \
          `0.0..1.0`"
        ]
    );
    for ok in [
        "lr = 0.1, cap = inf in 0.0..=inf",
        "lr = 0.1, cap = inf in 0.0<..=inf",
        "lr = 0.1, cap = -inf in -inf..=0.0",
        "lr = 0.1, cap = 1e300 in 0.0..",
    ] {
        assert_eq!(errors_of(ok, item), Vec::<String>::new(), "{ok}");
    }
}
