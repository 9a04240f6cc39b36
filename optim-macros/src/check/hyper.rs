//! Hyperparameter declarations: kind, default and range, each checked with its span.

use super::Ctxt;
use crate::model::*;
use crate::parse::{HyperDecl, SignedLit};
use quote::ToTokens;
use syn::Lit;

/// The value of a literal, negated if written with a minus.
pub(super) fn lit_value(cx: &mut Ctxt, l: &SignedLit) -> Option<Value> {
    let v = match &l.lit {
        Lit::Float(f) => match f.base10_parse::<f64>() {
            Ok(x) => Value::Float(x),
            Err(e) => {
                cx.spanned(f, e);
                return None;
            }
        },
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
        if let (
            Bound::Inclusive(l) | Bound::Exclusive(l),
            Bound::Inclusive(h) | Bound::Exclusive(h),
        ) = (lo, hi)
        {
            let empty = match (lo, hi) {
                (Bound::Inclusive(_), Bound::Inclusive(_)) => l > h,
                _ => l >= h,
            };
            if empty || l.is_nan() || h.is_nan() {
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
    }
    let x = match default {
        Value::Float(x) => Some(x),
        Value::Int(i) => Some(i as f64),
        Value::Bool(_) => None,
    };
    if let Some(x) = x {
        let ok_lo = match lo {
            Bound::Inclusive(l) => x >= l,
            Bound::Exclusive(l) => x > l,
            _ => true,
        };
        let ok_hi = match hi {
            Bound::Inclusive(h) => x <= h,
            Bound::Exclusive(h) => x < h,
            _ => true,
        };
        if !(ok_lo && ok_hi) {
            cx.at(
                d.default.span,
                format!(
                    "the default {x} of `{}` is outside its range {}; change the default or the range",
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
