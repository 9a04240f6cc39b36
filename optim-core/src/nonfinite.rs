//! What a step does with a gradient that holds NaN or ±inf.
//!
//! | policy | what happens | cost |
//! | --- | --- | --- |
//! | [`NonFinitePolicy::Propagate`] (default) | the values go through the update like any other | none: the gradient is not scanned |
//! | [`NonFinitePolicy::SkipParam`] | that parameter is not stepped: its values, state and step count stay as they were; [`crate::Optimizer::skipped`] lists it until the next step | one read pass over each gradient |
//! | [`NonFinitePolicy::Error`] | the step returns [`crate::OptimError::NonFiniteGrad`] naming the parameter and the first bad element, before anything changes | one read pass over each gradient |
//!
//! The scan is a separate streaming read of each gradient before its update (the update
//! itself is untouched); `Propagate` adds one comparison per gradient and nothing per
//! element. What the scan costs is measured by
//! `cargo run --release -p optim-zoo --example nonfinite_cost` (RESULTS.md section 10).
//!
//! A sparse gradient whose rows repeat is checked as the step reads it, its repeated rows
//! summed (two finite rows of `f32::MAX` sum to inf): that costs a second read of its
//! values, and only when they are large enough for a sum to overflow, a sort of its row
//! indices and the sums themselves.

use crate::params::Grad;
use crate::scalar::Scalar;
use ndarray::ArrayView2;

/// What a step does with a gradient that contains NaN or ±inf. Set per optimizer with
/// [`crate::Optimizer::set_non_finite_policy`]; a wrapper (Lookahead) forwards it to the
/// optimizer it wraps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NonFinitePolicy {
    /// Step as usual: NaN and inf flow into the parameters and state. No cost.
    #[default]
    Propagate,
    /// Leave a parameter whose gradient is not all finite exactly as it is (values, state,
    /// step count) and step the others; the skipped names are reported by
    /// [`crate::Optimizer::skipped`].
    SkipParam,
    /// Fail the whole step with [`crate::OptimError::NonFiniteGrad`] before anything
    /// changes.
    Error,
}

impl NonFinitePolicy {
    /// Whether gradients must be scanned under this policy.
    #[inline]
    pub fn scans(self) -> bool {
        self != NonFinitePolicy::Propagate
    }
}

impl std::fmt::Display for NonFinitePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NonFinitePolicy::Propagate => "propagate",
            NonFinitePolicy::SkipParam => "skip_param",
            NonFinitePolicy::Error => "error",
        })
    }
}

/// Position and value of the first non-finite element of `values`.
pub fn first_non_finite<T: Scalar>(values: &[T]) -> Option<(usize, T)> {
    // Eight running products per chunk, each starting at zero: `0 · x` stays zero for every
    // finite `x` and turns NaN at the first NaN or ±inf, and the lanes vectorise (about
    // twice the speed of testing `is_finite` element by element). The exact position is
    // searched only in a chunk known to hold a bad value.
    const CHUNK: usize = 256;
    for (c, chunk) in values.chunks(CHUNK).enumerate() {
        let mut acc = [T::zero(); 8];
        let mut lanes = chunk.chunks_exact(8);
        for l in &mut lanes {
            for i in 0..8 {
                acc[i] = acc[i] * l[i];
            }
        }
        let mut ok = acc.iter().all(|a| *a == T::zero());
        for &x in lanes.remainder() {
            ok &= x.is_finite();
        }
        if !ok {
            let i = chunk.iter().position(|x| !x.is_finite())?;
            return Some((c * CHUNK + i, chunk[i]));
        }
    }
    None
}

/// The first non-finite element of a gradient, as a row-major index into its parameter
/// (a sparse-row entry maps to the parameter element it updates), with its value.
///
/// Sparse rows are checked as the step reads them: a row given more than once counts as
/// the sum of its entries, added in the order given, since two finite rows of `f32::MAX`
/// sum to inf. A value given that is not finite is reported first; then the first element,
/// in row-major order, of a sum that is not.
pub fn first_non_finite_in<T: Scalar>(grad: &Grad<T>) -> Option<(usize, T)> {
    match grad {
        Grad::Dense(g) => match g.as_slice() {
            Some(s) => first_non_finite(s),
            None => g
                .iter()
                .enumerate()
                .find(|(_, x)| !x.is_finite())
                .map(|(i, &x)| (i, x)),
        },
        Grad::Rows { rows, values } => {
            let width = values.ncols();
            for (row, &r) in values.rows().into_iter().zip(rows) {
                let hit = match row.as_slice() {
                    Some(s) => first_non_finite(s),
                    None => row
                        .iter()
                        .enumerate()
                        .find(|(_, x)| !x.is_finite())
                        .map(|(i, &x)| (i, x)),
                };
                if let Some((j, x)) = hit {
                    return Some((r * width + j, x));
                }
            }
            if rows.windows(2).all(|p| p[0] < p[1]) || !sums_may_overflow(rows, values.view()) {
                return None; // no row repeats, or no sum can reach inf
            }
            first_non_finite_sum(rows, values.view())
        }
    }
}

/// Whether a sum of entries of `values` (all finite) could overflow. With `n` entries of
/// magnitude at most `M`, every partial sum of a row's entries is at most `n·M·(1 + u)ⁿ`
/// (`u` = ε/2 the unit roundoff), below `T::MAX` when `n·M ≤ T::MAX / 2` and `n·ε ≤ 1`
/// (then `(1 + u)ⁿ ≤ e^½ < 2`). Allocates nothing: only when this fails are the sums made.
fn sums_may_overflow<T: Scalar>(rows: &[usize], values: ArrayView2<'_, T>) -> bool {
    let n = rows.len() as f64;
    let max = values
        .iter()
        .fold(0.0f64, |m, &x| m.max(Scalar::to_f64(x).abs()));
    let (big, eps) = (T::max_value().to_f64(), T::epsilon().to_f64());
    !(n * max <= big / 2.0 && n * eps <= 1.0)
}

/// The first non-finite element, in row-major order, of the sums of rows given more than
/// once, each summed in the order its entries are given (the order the step sums them in).
fn first_non_finite_sum<T: Scalar>(
    rows: &[usize],
    values: ArrayView2<'_, T>,
) -> Option<(usize, T)> {
    let width = values.ncols();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_unstable_by_key(|&k| (rows[k], k));
    let mut sum = vec![T::zero(); width];
    for group in order.chunk_by(|&a, &b| rows[a] == rows[b]) {
        let [first, rest @ ..] = group else { continue };
        if rest.is_empty() {
            continue; // given once: already checked
        }
        for (s, &v) in sum.iter_mut().zip(values.row(*first)) {
            *s = v;
        }
        for &k in rest {
            for (s, &v) in sum.iter_mut().zip(values.row(k)) {
                *s = *s + v;
            }
        }
        if let Some(j) = sum.iter().position(|x| !x.is_finite()) {
            return Some((rows[*first] * width + j, sum[j]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr1, arr2};

    #[test]
    fn finds_the_first_bad_element_anywhere() {
        let mut v = vec![1.0f32; 600];
        assert_eq!(first_non_finite(&v), None);
        for i in [0, 7, 8, 255, 256, 599] {
            let mut w = v.clone();
            w[i] = f32::NAN;
            assert_eq!(first_non_finite(&w).map(|(j, _)| j), Some(i));
            w[i] = -0.0;
            assert_eq!(first_non_finite(&w), None);
        }
        v[200] = f32::INFINITY;
        v[250] = f32::NAN;
        assert_eq!(first_non_finite(&v), Some((200, f32::INFINITY)));
        v[3] = f32::NEG_INFINITY;
        assert_eq!(first_non_finite(&v), Some((3, f32::NEG_INFINITY)));
        assert_eq!(first_non_finite::<f64>(&[]), None);
    }

    #[test]
    fn repeated_sparse_rows_are_checked_as_summed() {
        // Row 3 twice as [1, MAX]: its sum [2, inf] is inf at element 3·2 + 1.
        let g = Grad::Rows {
            rows: vec![3, 0, 3],
            values: arr2(&[[1.0, f32::MAX], [f32::MAX, 1.0], [1.0, f32::MAX]]),
        };
        assert_eq!(first_non_finite_in(&g), Some((7, f32::INFINITY)));
        // Summed in the order given: MAX − MAX + MAX is MAX, MAX + MAX − MAX is inf.
        let rows = |a: f32, b: f32, c: f32| Grad::Rows {
            rows: vec![1, 1, 1],
            values: arr2(&[[a], [b], [c]]),
        };
        assert_eq!(
            first_non_finite_in(&rows(f32::MAX, -f32::MAX, f32::MAX)),
            None
        );
        assert_eq!(
            first_non_finite_in(&rows(f32::MAX, f32::MAX, -f32::MAX)),
            Some((1, f32::INFINITY))
        );
        // Distinct rows are never summed.
        let g = Grad::Rows {
            rows: vec![2, 0],
            values: arr2(&[[f64::MAX], [f64::MAX]]),
        };
        assert_eq!(first_non_finite_in(&g), None);
    }

    #[test]
    fn sparse_rows_report_the_parameter_element() {
        let g = Grad::Rows {
            rows: vec![4, 1],
            values: arr2(&[[0.0, 1.0, 2.0], [3.0, f64::NAN, 5.0]]),
        };
        let (i, x) = first_non_finite_in(&g).unwrap();
        assert_eq!(i, 4);
        assert!(x.is_nan());
        let d = Grad::Dense(arr1(&[0.0, 1.0, f64::INFINITY]).into_dyn());
        assert_eq!(first_non_finite_in(&d), Some((2, f64::INFINITY)));
        let t = Grad::Dense(
            arr2(&[[0.0, f64::NAN], [1.0, 2.0]])
                .reversed_axes()
                .into_dyn(),
        );
        // Transposed: logical [[0, 1], [NaN, 2]], the NaN at row-major index 2.
        assert_eq!(first_non_finite_in(&t).map(|(i, _)| i), Some(2));
    }
}
