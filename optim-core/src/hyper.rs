//! Hyperparameters: their declared kind, default, documentation and valid range.

use crate::error::OptimError;
use std::fmt;

/// The value of one hyperparameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HyperValue {
    /// A real number (learning rate, β, ε, ...).
    Float(f64),
    /// An on/off option (amsgrad, nesterov, ...).
    Bool(bool),
    /// A count (Lookahead's k).
    Int(i64),
}

impl HyperValue {
    /// The kind of this value.
    pub fn kind(&self) -> HyperKind {
        match self {
            HyperValue::Float(_) => HyperKind::Float,
            HyperValue::Bool(_) => HyperKind::Bool,
            HyperValue::Int(_) => HyperKind::Int,
        }
    }
    /// The value as `f64` if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            HyperValue::Float(x) => Some(x),
            HyperValue::Int(i) => Some(i as f64),
            HyperValue::Bool(_) => None,
        }
    }
}

impl fmt::Display for HyperValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HyperValue::Float(x) => write!(f, "{x:?}"),
            HyperValue::Bool(b) => write!(f, "{b}"),
            HyperValue::Int(i) => write!(f, "{i}"),
        }
    }
}

impl From<f64> for HyperValue {
    fn from(x: f64) -> Self {
        HyperValue::Float(x)
    }
}
impl From<bool> for HyperValue {
    fn from(b: bool) -> Self {
        HyperValue::Bool(b)
    }
}
impl From<i64> for HyperValue {
    fn from(i: i64) -> Self {
        HyperValue::Int(i)
    }
}

/// The declared kind of a hyperparameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HyperKind {
    /// `f64`.
    Float,
    /// `bool`.
    Bool,
    /// `i64`.
    Int,
}

impl fmt::Display for HyperKind {
    /// With its article, as messages use it: "a float", "a bool", "an integer".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HyperKind::Float => "a float",
            HyperKind::Bool => "a bool",
            HyperKind::Int => "an integer",
        })
    }
}

/// One end of a valid range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// No limit on this side but infinity itself: the open end `-inf` or `inf` of the
    /// interval.
    Unbounded,
    /// The end itself is valid.
    Inclusive(f64),
    /// The end itself is not valid.
    Exclusive(f64),
}

/// The valid range of a numeric hyperparameter, as declared with `in lo..hi`.
///
/// A range holds finite values only, unless one of its ends is an inclusive infinity:
/// `0.0..` is `[0, inf)`, which holds neither inf nor NaN, while `1.0..=inf` (`hi =
/// Inclusive(inf)`) is `[1, inf]` and holds inf (Prodigy's unbounded growth rate).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    /// Lower end.
    pub lo: Bound,
    /// Upper end.
    pub hi: Bound,
}

impl Range {
    /// Every finite value, `(-inf, inf)` (and the range of bools, which have none).
    pub const ANY: Range = Range {
        lo: Bound::Unbounded,
        hi: Bound::Unbounded,
    };

    /// Whether `x` lies in the range: `lo ≤ x` (`<` if exclusive) and `x ≤ hi` (`<` if
    /// exclusive), an unbounded end being the open `-inf` or `inf`. NaN never lies in a
    /// range, and ±inf only at an inclusive infinite end.
    pub fn contains(&self, x: f64) -> bool {
        let lo_ok = match self.lo {
            Bound::Unbounded => x > f64::NEG_INFINITY,
            Bound::Inclusive(l) => x >= l,
            Bound::Exclusive(l) => x > l,
        };
        let hi_ok = match self.hi {
            Bound::Unbounded => x < f64::INFINITY,
            Bound::Inclusive(h) => x <= h,
            Bound::Exclusive(h) => x < h,
        };
        // Every comparison with NaN is false, so NaN fails both.
        lo_ok && hi_ok
    }
}

impl fmt::Display for Range {
    /// Written as an interval: `[0, 1)`, `[0, inf)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.lo {
            Bound::Unbounded => write!(f, "(-inf, ")?,
            Bound::Inclusive(l) => write!(f, "[{l}, ")?,
            Bound::Exclusive(l) => write!(f, "({l}, ")?,
        }
        match self.hi {
            Bound::Unbounded => write!(f, "inf)"),
            Bound::Inclusive(h) => write!(f, "{h}]"),
            Bound::Exclusive(h) => write!(f, "{h})"),
        }
    }
}

/// Everything declared about one hyperparameter: what a registry or config needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HyperSpec {
    /// Name, as used in configs and `set_hyper`.
    pub name: &'static str,
    /// Kind of value.
    pub kind: HyperKind,
    /// Default value.
    pub default: HyperValue,
    /// Valid range (numeric kinds only; `Range::ANY` for bools).
    pub range: Range,
    /// The rustdoc given at the declaration.
    pub doc: &'static str,
}

impl HyperSpec {
    /// Checks kind and range of `value` for this hyperparameter, converting an integer
    /// given for a float (configs write `1` for `1.0`).
    pub fn check(&self, optimizer: &str, value: HyperValue) -> Result<HyperValue, OptimError> {
        let value = match (self.kind, value) {
            (HyperKind::Float, HyperValue::Int(i)) => HyperValue::Float(i as f64),
            (HyperKind::Int, HyperValue::Float(x)) if x.fract() == 0.0 && x.abs() < 9e15 => {
                HyperValue::Int(x as i64)
            }
            (k, v) if k == v.kind() => v,
            (_, v) => {
                return Err(OptimError::HyperKind {
                    optimizer: optimizer.to_string(),
                    name: self.name.to_string(),
                    expected: self.kind,
                    got: v,
                })
            }
        };
        if let Some(x) = value.as_f64() {
            if !self.range.contains(x) {
                return Err(OptimError::HyperRange {
                    optimizer: optimizer.to_string(),
                    name: self.name.to_string(),
                    value: x,
                    range: self.range,
                });
            }
        }
        Ok(value)
    }
}

/// Finds the spec named `name`, or explains which names exist and which is closest.
pub fn find_spec<'a>(
    optimizer: &str,
    specs: &'a [HyperSpec],
    name: &str,
) -> Result<&'a HyperSpec, OptimError> {
    specs
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| OptimError::UnknownHyper {
            optimizer: optimizer.to_string(),
            name: name.to_string(),
            suggestion: crate::suggest::closest(name, specs.iter().map(|s| s.name))
                .map(str::to_string),
            valid: specs.iter().map(|s| s.name.to_string()).collect(),
        })
}
