//! Gradient clipping by the global norm over all parameters
//! (PyTorch `torch.nn.utils.clip_grad_norm_`, BERT's `clip_by_global_norm`).
//!
//! ```
//! use ndarray::array;
//! use optim_core::{clip::clip_grad_norm, Grads};
//! let mut grads = Grads::new().with("a", array![3.0f32]).with("b", array![4.0f32]);
//! let total = clip_grad_norm(&mut grads, 1.0).unwrap(); // ‖(3, 4)‖ = 5 > 1
//! assert_eq!(total, 5.0);
//! ```

use crate::error::{OptimError, Result};
use crate::hyper::{Bound, Range};
use crate::params::{Grad, Grads};
use crate::scalar::Scalar;

/// Added to the norm before dividing, as PyTorch does, so a norm just above `max_norm`
/// never divides by (nearly) zero.
const NORM_EPS: f64 = 1e-6;

/// Below this, a sum of squares may have lost squares to underflow (`(1e-200)²` is 0):
/// the smallest normal f64 over ε, so what underflow can lose (under 2⁻¹⁰⁷⁴ a square) is
/// far below the sum's own rounding.
const MIN_EXACT_SUM: f64 = f64::MIN_POSITIVE / f64::EPSILON;

/// The global L2 norm of all gradients, in `f64`: `‖g‖ = sqrt(Σ_params Σ_elements g²)`.
///
/// A sparse-row gradient counts as the dense gradient it stands for: repeated rows are
/// summed first (as the optimizer will sum them), then squared.
///
/// The norm is finite whenever the true norm is, though the squares of finite f64
/// gradients may overflow (`(1e200)²`) or underflow (`(1e-200)²`): when their plain sum is
/// infinite, or too small to be exact, the norm is computed again scaled by the largest
/// magnitude `M`, as `M · sqrt(Σ (g/M)²)` (each `(g/M)² ≤ 1`). A NaN gradient gives NaN, an
/// infinite one inf.
pub fn grad_norm<T: Scalar>(grads: &Grads<T>) -> f64 {
    let sum: f64 = grads.iter().map(|(_, grad)| squared_norm(grad)).sum();
    if sum.is_nan() || (sum.is_finite() && sum >= MIN_EXACT_SUM) {
        return sum.sqrt();
    }
    let mut max = 0.0f64;
    for (_, grad) in grads.iter() {
        for_each_value(grad, |g| max = max.max(g.abs()));
    }
    if max == 0.0 || max.is_infinite() {
        return max; // every gradient zero, or one infinite
    }
    let mut scaled = 0.0;
    for (_, grad) in grads.iter() {
        for_each_value(grad, |g| scaled += (g / max) * (g / max));
    }
    max * scaled.sqrt()
}

/// Scales every gradient so that their global norm is at most `max_norm`, and returns the
/// norm measured before scaling.
///
/// With `total = `[`grad_norm`]`(grads)`: if `total > max_norm`, every gradient (dense and
/// sparse-row values) is multiplied by `max_norm / (total + 1e-6)`; otherwise nothing
/// changes. A non-finite total (a NaN or infinite gradient, or a norm beyond `f64::MAX`)
/// is returned as is and the
/// gradients are left untouched, so the caller can see it and skip the step (PyTorch
/// would multiply by 0 or NaN and hide where the problem came from).
///
/// Errors if `max_norm` is negative, NaN or infinite.
pub fn clip_grad_norm<T: Scalar>(grads: &mut Grads<T>, max_norm: f64) -> Result<f64> {
    let valid = Range {
        lo: Bound::Inclusive(0.0),
        hi: Bound::Exclusive(f64::INFINITY),
    };
    if !valid.contains(max_norm) {
        return Err(OptimError::HyperRange {
            optimizer: "clip_grad_norm".to_string(),
            name: "max_norm".to_string(),
            value: max_norm,
            range: valid,
        });
    }
    let total = grad_norm(grads);
    if total.is_finite() && total > max_norm {
        let scale = T::from_f64(max_norm / (total + NORM_EPS));
        for (_, grad) in grads.iter_mut() {
            match grad {
                Grad::Dense(values) => values.mapv_inplace(|g| g * scale),
                Grad::Rows { values, .. } => values.mapv_inplace(|g| g * scale),
            }
        }
    }
    Ok(total)
}

fn squared_norm<T: Scalar>(grad: &Grad<T>) -> f64 {
    match grad {
        Grad::Dense(values) => array_sum_of_squares(values),
        Grad::Rows { rows, values } => {
            if has_repeats(rows) {
                summed_rows_squared_norm(rows, values)
            } else {
                array_sum_of_squares(values)
            }
        }
    }
}

fn array_sum_of_squares<T: Scalar, D: ndarray::Dimension>(values: &ndarray::Array<T, D>) -> f64 {
    match values.as_slice_memory_order() {
        Some(slice) => sum_of_squares(slice),
        None => values.iter().map(|&g| Scalar::to_f64(g).powi(2)).sum(),
    }
}

/// `Σ g²` in `f64` over four independent accumulators, so the additions pipeline instead
/// of waiting on one another.
fn sum_of_squares<T: Scalar>(values: &[T]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let chunks = values.chunks_exact(4);
    let rest: f64 = chunks
        .remainder()
        .iter()
        .map(|&g| Scalar::to_f64(g).powi(2))
        .sum();
    for chunk in chunks {
        for (lane, &g) in lanes.iter_mut().zip(chunk) {
            let g = Scalar::to_f64(g);
            *lane += g * g;
        }
    }
    lanes.iter().sum::<f64>() + rest
}

fn has_repeats(rows: &[usize]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    !rows.iter().all(|r| seen.insert(*r))
}

/// Each row given, with its entries summed (in `f64`). A row count that does not match
/// `values` is the optimizer's error to report; here every row present is used.
fn summed_rows<T: Scalar>(
    rows: &[usize],
    values: &ndarray::Array2<T>,
) -> std::collections::HashMap<usize, Vec<f64>> {
    let mut summed: std::collections::HashMap<usize, Vec<f64>> = std::collections::HashMap::new();
    for (row, value_row) in rows.iter().zip(values.rows()) {
        let acc = summed
            .entry(*row)
            .or_insert_with(|| vec![0.0; value_row.len()]);
        for (a, g) in acc.iter_mut().zip(value_row.iter()) {
            *a += Scalar::to_f64(*g);
        }
    }
    summed
}

/// Squared norm after summing repeated rows (in `f64`).
fn summed_rows_squared_norm<T: Scalar>(rows: &[usize], values: &ndarray::Array2<T>) -> f64 {
    summed_rows(rows, values)
        .values()
        .flatten()
        .map(|a| a * a)
        .sum()
}

/// Calls `f` with every value of the dense gradient `grad` stands for, in `f64`, but the
/// zeros of the rows a sparse gradient leaves out (a repeated row once, summed).
fn for_each_value<T: Scalar>(grad: &Grad<T>, mut f: impl FnMut(f64)) {
    match grad {
        Grad::Dense(values) => values.iter().for_each(|&g| f(Scalar::to_f64(g))),
        Grad::Rows { rows, values } if has_repeats(rows) => summed_rows(rows, values)
            .values()
            .flatten()
            .for_each(|&g| f(g)),
        Grad::Rows { values, .. } => values.iter().for_each(|&g| f(Scalar::to_f64(g))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    #[test]
    fn norm_spans_all_parameters() {
        // 1² + 2² + 2² = 9 and 4² = 16: total 5.
        let grads = Grads::new()
            .with("w", array![[1.0f64, 2.0], [2.0, 0.0]])
            .with("b", array![4.0f64]);
        assert_eq!(grad_norm(&grads), 5.0);
        assert_eq!(grad_norm(&Grads::<f32>::new()), 0.0);
    }

    #[test]
    fn clips_to_max_norm_with_torch_epsilon() {
        let mut grads = Grads::new()
            .with("a", array![3.0f64, 0.0])
            .with("b", array![4.0f64]);
        let total = clip_grad_norm(&mut grads, 1.0).unwrap();
        assert_eq!(total, 5.0);
        let scale = 1.0 / (5.0 + 1e-6);
        assert_eq!(
            grads.get("a"),
            Some(&Grad::Dense(array![3.0 * scale, 0.0].into_dyn()))
        );
        assert_eq!(
            grads.get("b"),
            Some(&Grad::Dense(array![4.0 * scale].into_dyn()))
        );
        assert!((grad_norm(&grads) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn leaves_small_gradients_alone() {
        let mut grads = Grads::new().with("a", array![0.3f32, 0.4]);
        let before = grads.clone();
        let expected = (0.3f32 as f64).hypot(0.4f32 as f64);
        assert!((clip_grad_norm(&mut grads, 1.0).unwrap() - expected).abs() < 1e-15);
        assert_eq!(grads, before);
        // Exactly at the limit: not clipped (strictly greater only).
        let mut grads = Grads::new().with("a", array![3.0f64, 4.0]);
        assert_eq!(clip_grad_norm(&mut grads, 5.0).unwrap(), 5.0);
        assert_eq!(
            grads.get("a"),
            Some(&Grad::Dense(array![3.0, 4.0].into_dyn()))
        );
    }

    #[test]
    fn sparse_rows_count_and_are_scaled() {
        // Dense 2² = 4 plus rows [3, 0] and [0, 6]: 9 + 36; total 7.
        let mut grads = Grads::new().with("d", array![2.0f64]);
        grads.insert_rows("emb", vec![0, 5], array![[3.0, 0.0], [0.0, 6.0]]);
        assert_eq!(clip_grad_norm(&mut grads, 3.5).unwrap(), 7.0);
        let scale = 3.5 / (7.0 + 1e-6);
        match grads.get("emb") {
            Some(Grad::Rows { rows, values }) => {
                assert_eq!(rows, &vec![0, 5]);
                assert_eq!(values, &array![[3.0 * scale, 0.0], [0.0, 6.0 * scale]]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn repeated_sparse_rows_are_summed_before_the_norm() {
        // Row 1 given twice as [1, 2] and [2, 2]: the gradient row is [3, 4], norm 5.
        let mut grads = Grads::<f64>::new();
        grads.insert_rows("emb", vec![1, 1], array![[1.0, 2.0], [2.0, 2.0]]);
        assert_eq!(grad_norm(&grads), 5.0);
    }

    #[test]
    fn zero_max_norm_zeroes_gradients() {
        let mut grads = Grads::new().with("a", array![1.0f32, -1.0]);
        clip_grad_norm(&mut grads, 0.0).unwrap();
        assert_eq!(
            grads.get("a"),
            Some(&Grad::Dense(array![0.0f32, 0.0].into_dyn()))
        );
    }

    #[test]
    fn non_finite_norm_is_reported_and_nothing_changes() {
        let mut grads = Grads::new().with("a", array![f32::NAN, 1.0]);
        assert!(clip_grad_norm(&mut grads, 1.0).unwrap().is_nan());
        let mut grads = Grads::new().with("a", array![f32::INFINITY, 1.0]);
        assert_eq!(clip_grad_norm(&mut grads, 1.0).unwrap(), f64::INFINITY);
        assert_eq!(
            grads.get("a"),
            Some(&Grad::Dense(array![f32::INFINITY, 1.0].into_dyn()))
        );
    }

    #[test]
    fn invalid_max_norm_is_an_error() {
        let mut grads = Grads::new().with("a", Array2::<f32>::ones((2, 2)));
        let e = clip_grad_norm(&mut grads, -1.0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "clip_grad_norm: invalid max_norm value -1: must be in [0, inf)"
        );
        assert!(clip_grad_norm(&mut grads, f64::NAN).is_err());
        assert!(clip_grad_norm(&mut grads, f64::INFINITY).is_err());
        assert_eq!(
            grads.get("a"),
            Some(&Grad::Dense(Array2::ones((2, 2)).into_dyn()))
        );
    }
}
