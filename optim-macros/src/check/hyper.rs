//! Hyperparameter declarations: kind, default and range, each checked with its span.

use super::Ctxt;
use crate::model::*;
use crate::parse::{HyperDecl, SignedLit};
use quote::ToTokens;
use syn::Lit;

/// The value of a float literal; an error at its span if it overflows to infinity (Rust
/// reads `1e400` as inf without a word), since the DSL spells infinity `inf`.
pub(super) fn finite_float(cx: &mut Ctxt, f: &syn::LitFloat) -> Option<f64> {
    match f.base10_parse::<f64>() {
        Ok(x) if x.is_finite() => Some(x),
        Ok(_) => {
            cx.spanned(
                f,
                format!(
                    "`{f}` is too large for an f64 (it would be inf); write a finite value such \
                     as `1e300`, or, for infinity, `inf` as a hyperparameter's default with a \
                     range that admits it (`in 0.0..=inf`)"
                ),
            );
            None
        }
        Err(e) => {
            cx.spanned(f, e);
            None
        }
    }
}

/// The value of a literal, negated if written with a minus.
pub(super) fn lit_value(cx: &mut Ctxt, l: &SignedLit) -> Option<Value> {
    if l.inf {
        return Some(Value::Float(if l.negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }));
    }
    let v = match &l.lit {
        Lit::Float(f) => Value::Float(finite_float(cx, f)?),
        Lit::Int(i) => match i.base10_parse::<i64>() {
            Ok(x) => Value::Int(x),
            Err(_) => {
                cx.spanned(
                    i,
                    "this integer does not fit in an `i64`; write it as a float, such as `1e20`",
                );
                return None;
            }
        },
        Lit::Bool(b) => Value::Bool(b.value),
        other => {
            cx.spanned(other, "expected a number or `true`/`false`");
            return None;
        }
    };
    Some(match (l.negative, v) {
        (false, v) => v,
        (true, Value::Float(x)) => Value::Float(-x),
        (true, Value::Int(i)) => Value::Int(-i),
        (true, Value::Bool(_)) => {
            cx.at(
                l.span,
                "a bool cannot be negated here; write `true` or `false`",
            );
            return None;
        }
    })
}

fn kind_text(k: HyperKind) -> &'static str {
    match k {
        HyperKind::Float => "a float",
        HyperKind::Bool => "a bool",
        HyperKind::Int => "an integer",
    }
}

/// A hyperparameter from its declaration. `Err(Some(h))`: an error was reported but `h`
/// (its kind known, its default a stand-in) lets the rest of the definition be checked;
/// `Err(None)`: nothing usable.
pub(super) fn hyper(cx: &mut Ctxt, d: HyperDecl) -> Result<Hyper, Option<Hyper>> {
    let declared = match &d.ty {
        None => None,
        Some(ty) => {
            let t = ty.to_token_stream().to_string();
            match t.as_str() {
                "f64" | "f32" => Some(HyperKind::Float),
                "bool" => Some(HyperKind::Bool),
                "i64" | "i32" | "u32" | "u64" | "usize" => Some(HyperKind::Int),
                _ => {
                    cx.spanned(
                        ty,
                        format!(
                            "unsupported hyperparameter type `{t}`; use `f64`, `bool` or `i64`"
                        ),
                    );
                    return Err(None);
                }
            }
        }
    };
    let doc = d
        .docs
        .iter()
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) if nv.path.is_ident("doc") => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value().trim().to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ");
    // What the rest of the definition sees if this declaration is wrong.
    let stand_in = |kind: HyperKind| {
        Some(Hyper {
            name: d.name.clone(),
            kind,
            default: match kind {
                HyperKind::Float => Value::Float(0.0),
                HyperKind::Bool => Value::Bool(false),
                HyperKind::Int => Value::Int(0),
            },
            lo: Bound::Unbounded,
            hi: Bound::Unbounded,
            doc: String::new(),
        })
    };
    let Some(default) = lit_value(cx, &d.default) else {
        return Err(declared.and_then(stand_in));
    };
    let written_kind = match default {
        Value::Float(_) => HyperKind::Float,
        Value::Bool(_) => HyperKind::Bool,
        Value::Int(_) => HyperKind::Int,
    };
    let kind = declared.unwrap_or(written_kind);
    let default = match (kind, default) {
        (HyperKind::Float, Value::Int(i)) => Value::Float(i as f64),
        (k, v) if k == written_kind => v,
        (k, _) => {
            let want = match k {
                HyperKind::Float => "a float such as `0.5`",
                HyperKind::Bool => "`true` or `false`",
                HyperKind::Int => "an integer such as `5`",
            };
            cx.at(
                d.default.span,
                format!(
                    "the default of `{0}` has the wrong type: `{0}` is declared {1}, so the default must be {want}",
                    d.name,
                    kind_text(k)
                ),
            );
            return Err(stand_in(kind));
        }
    };
    let (mut lo, mut hi) = (Bound::Unbounded, Bound::Unbounded);
    if let Some(r) = &d.range {
        if kind == HyperKind::Bool {
            cx.at(
                r.span,
                format!(
                    "`{}` is a bool; a bool takes no range: remove `in ...`",
                    d.name
                ),
            );
            return Err(stand_in(kind));
        }
        let bound = |cx: &mut Ctxt, l: &SignedLit| -> Option<f64> {
            match lit_value(cx, l)? {
                Value::Float(x) if kind == HyperKind::Float => Some(x),
                Value::Int(i) => Some(i as f64),
                _ => {
                    cx.at(
                        l.span,
                        format!(
                            "range bounds of `{}` must be {}",
                            d.name,
                            if kind == HyperKind::Int {
                                "integers, such as `1..`"
                            } else {
                                "numbers, such as `0.0..1.0`"
                            }
                        ),
                    );
                    None
                }
            }
        };
        if let Some(l) = &r.lo {
            match bound(cx, l) {
                Some(x) if r.exclusive_lo => lo = Bound::Exclusive(x),
                Some(x) => lo = Bound::Inclusive(x),
                None => return Err(stand_in(kind)),
            }
        }
        if let Some(h) = &r.hi {
            let Some(x) = bound(cx, h) else {
                return Err(stand_in(kind));
            };
            hi = if r.inclusive_hi {
                Bound::Inclusive(x)
            } else {
                Bound::Exclusive(x)
            };
        }
        if is_empty(lo, hi) {
            cx.at(
                r.span,
                format!(
                    "the range {} of `{}` is empty; write the lower bound first, as in `0.0..1.0`",
                    show_range(lo, hi),
                    d.name
                ),
            );
            return Err(stand_in(kind));
        }
    }
    let x = match default {
        Value::Float(x) => Some(x),
        Value::Int(i) => Some(i as f64),
        Value::Bool(_) => None,
    };
    if let Some(x) = x {
        if !contains(lo, hi, x) {
            let hint = if x == f64::INFINITY {
                "; a range admits inf only when it ends in `..=inf`, as in `0.0..=inf`"
            } else if x == f64::NEG_INFINITY {
                "; a range admits -inf only when it starts at `-inf`, as in `-inf..=0.0`"
            } else {
                "; change the default or the range"
            };
            cx.at(
                d.default.span,
                format!(
                    "the default {x} of `{}` is outside its range {}{hint}",
                    d.name,
                    show_range(lo, hi)
                ),
            );
            return Err(stand_in(kind));
        }
    }
    Ok(Hyper {
        name: d.name,
        kind,
        default,
        lo,
        hi,
        doc,
    })
}

/// The ends of a range as `(value, inclusive)`: an unbounded end is the open infinity on
/// its side, so that `0.0..` is `[0, inf)` and holds every finite value from 0 but not inf
/// (the runtime's `optim_core::Range::contains` reads ranges the same way).
fn ends(lo: Bound, hi: Bound) -> ((f64, bool), (f64, bool)) {
    let end = |b: Bound, open: f64| match b {
        Bound::Unbounded => (open, false),
        Bound::Inclusive(x) => (x, true),
        Bound::Exclusive(x) => (x, false),
    };
    (end(lo, f64::NEG_INFINITY), end(hi, f64::INFINITY))
}

/// Whether `x` lies in the range (NaN never does; ±inf only at an inclusive infinite end).
fn contains(lo: Bound, hi: Bound, x: f64) -> bool {
    let ((l, l_in), (h, h_in)) = ends(lo, hi);
    (x > l || (l_in && x == l)) && (x < h || (h_in && x == h))
}

/// Whether no value lies in the range (`1.0..0.0`, `inf..`).
fn is_empty(lo: Bound, hi: Bound) -> bool {
    let ((l, l_in), (h, h_in)) = ends(lo, hi);
    l.is_nan() || h.is_nan() || l > h || (l == h && !(l_in && h_in))
}

/// An interval as users read it: `[0, 1)`.
pub fn show_range(lo: Bound, hi: Bound) -> String {
    let l = match lo {
        Bound::Inclusive(l) => format!("[{l}"),
        Bound::Exclusive(l) => format!("({l}"),
        Bound::Unbounded => "(-inf".into(),
    };
    let h = match hi {
        Bound::Inclusive(h) => format!("{h}]"),
        Bound::Exclusive(h) => format!("{h})"),
        Bound::Unbounded => "inf)".into(),
    };
    format!("{l}, {h}")
}
