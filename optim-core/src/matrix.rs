//! Matrix functions the equations can call on a 2-D parameter-shaped value:
//! [`newton_schulz`] (Muon's orthogonalization). Matrix products run on
//! `matrixmultiply` (already a dependency of `ndarray`; its `sgemm`/`dgemm` pick AVX2/FMA
//! kernels at run time and are single-threaded, so results do not depend on the thread
//! count).

use crate::scalar::Scalar;
use std::any::TypeId;

/// A matrix view into a slice: `rows × cols` with row stride `rs` and column stride `cs`
/// (in elements).
#[derive(Clone, Copy, Debug)]
struct View {
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl View {
    fn contiguous(rows: usize, cols: usize) -> View {
        View {
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    fn transposed(self) -> View {
        View {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// One past the largest offset it addresses (0 for an empty matrix).
    fn extent(self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.rs + (self.cols - 1) * self.cs + 1
        }
    }

    fn at(self, i: usize, j: usize) -> usize {
        i * self.rs + j * self.cs
    }
}

/// `c ← alpha·a·b + beta·c`. Returns without doing anything if a view does not fit its
/// slice or the shapes do not chain (never the case for the callers below).
#[allow(clippy::too_many_arguments)]
fn gemm<T: Scalar>(alpha: T, a: &[T], va: View, b: &[T], vb: View, beta: T, c: &mut [T], vc: View) {
    let (m, k, n) = (va.rows, va.cols, vb.cols);
    let fits = va.extent() <= a.len() && vb.extent() <= b.len() && vc.extent() <= c.len();
    if !fits || vb.rows != k || vc.rows != m || vc.cols != n || m == 0 || n == 0 {
        return;
    }
    let s = |x: usize| x as isize;
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        let cast = |x: T| x.to_f64() as f32;
        // SAFETY: `T` is `f32` (same TypeId), so the casts are identities; every offset the
        // views address lies inside its slice (checked above) and `c` does not alias `a`
        // or `b` (it is a distinct `&mut`).
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                cast(alpha),
                a.as_ptr().cast::<f32>(),
                s(va.rs),
                s(va.cs),
                b.as_ptr().cast::<f32>(),
                s(vb.rs),
                s(vb.cs),
                cast(beta),
                c.as_mut_ptr().cast::<f32>(),
                s(vc.rs),
                s(vc.cs),
            )
        }
    } else if TypeId::of::<T>() == TypeId::of::<f64>() {
        // SAFETY: as above, with `T` = `f64`.
        unsafe {
            matrixmultiply::dgemm(
                m,
                k,
                n,
                alpha.to_f64(),
                a.as_ptr().cast::<f64>(),
                s(va.rs),
                s(va.cs),
                b.as_ptr().cast::<f64>(),
                s(vb.rs),
                s(vb.cs),
                beta.to_f64(),
                c.as_mut_ptr().cast::<f64>(),
                s(vc.rs),
                s(vc.cs),
            )
        }
    } else {
        for i in 0..m {
            for j in 0..n {
                let mut acc = T::zero();
                for l in 0..k {
                    acc = acc + a[va.at(i, l)] * b[vb.at(l, j)];
                }
                let at = vc.at(i, j);
                c[at] = alpha * acc
                    + if beta == T::zero() {
                        T::zero()
                    } else {
                        beta * c[at]
                    };
            }
        }
    }
}

/// Muon's Newton–Schulz orthogonalization of the `rows × cols` row-major matrix `x`, in
/// place, in `T`'s precision:
///
/// X = x (its transpose if rows > cols, so the Gram matrix is the smaller one);
/// X ← X / max(‖X‖_F, eps); then `steps` times: A = X·Xᵀ, B = b·A + c·A·A,
/// X ← a·X + B·X; transposed back.
///
/// `scratch` is resized on first use and reused (a steady-state call allocates nothing).
/// The Frobenius norm is summed in `f64`, in index order.
#[allow(clippy::too_many_arguments)]
pub fn newton_schulz<T: Scalar>(
    x: &mut [T],
    rows: usize,
    cols: usize,
    steps: usize,
    a: f64,
    b: f64,
    c: f64,
    eps: f64,
    scratch: &mut Vec<T>,
) {
    if rows.checked_mul(cols) != Some(x.len()) || x.is_empty() {
        return;
    }
    let full = View::contiguous(rows, cols);
    let vx = if rows > cols { full.transposed() } else { full };
    let (r, n) = (vx.rows, vx.cols);
    let norm = x
        .iter()
        .map(|&v| {
            let v = v.to_f64();
            v * v
        })
        .sum::<f64>()
        .sqrt();
    let inv = T::from_f64(1.0 / norm.max(eps));
    x.iter_mut().for_each(|v| *v = *v * inv);
    let need = 2 * r * r + r * n;
    if scratch.len() != need {
        scratch.clear();
        scratch.resize(need, T::zero());
    }
    let (gram, rest) = scratch.split_at_mut(r * r);
    let (upd, y) = rest.split_at_mut(r * r);
    let vg = View::contiguous(r, r);
    let vy = View::contiguous(r, n);
    let (ta, tb, tc) = (T::from_f64(a), T::from_f64(b), T::from_f64(c));
    for _ in 0..steps {
        // A = X Xᵀ
        gemm(T::one(), x, vx, x, vx.transposed(), T::zero(), gram, vg);
        // B = b A + c A A
        for (u, &g) in upd.iter_mut().zip(gram.iter()) {
            *u = tb * g;
        }
        gemm(tc, gram, vg, gram, vg, T::one(), upd, vg);
        // X ← a X + B Y with Y the old X (the product must not write what it reads).
        for i in 0..r {
            for j in 0..n {
                y[vy.at(i, j)] = x[vx.at(i, j)];
            }
        }
        gemm(T::one(), upd, vg, y, vy, ta, x, vx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Newton–Schulz with the classic cubic coefficients (1.5, −0.5, 0) converges to the
    /// orthogonal polar factor: for a diagonal matrix, the signs of its diagonal.
    #[test]
    fn cubic_iteration_orthogonalizes_a_diagonal_matrix() {
        let mut x = vec![3.0f64, 0.0, 0.0, 0.0, -0.5, 0.0];
        let mut scratch = Vec::new();
        newton_schulz(&mut x, 2, 3, 40, 1.5, -0.5, 0.0, 1e-7, &mut scratch);
        let want = [1.0, 0.0, 0.0, 0.0, -1.0, 0.0];
        for (g, w) in x.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{x:?}");
        }
    }

    /// A tall matrix is handled through its transpose: the result is the transpose of the
    /// wide matrix's result, in f32 and f64.
    #[test]
    fn tall_is_the_transpose_of_wide() {
        let wide: Vec<f32> = (0..12).map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.3).collect();
        let mut tall = vec![0.0f32; 12];
        for i in 0..3 {
            for j in 0..4 {
                tall[j * 3 + i] = wide[i * 4 + j];
            }
        }
        let mut w = wide.clone();
        let (mut s1, mut s2) = (Vec::new(), Vec::new());
        newton_schulz(&mut w, 3, 4, 5, 3.4445, -4.775, 2.0315, 1e-7, &mut s1);
        newton_schulz(&mut tall, 4, 3, 5, 3.4445, -4.775, 2.0315, 1e-7, &mut s2);
        for i in 0..3 {
            for j in 0..4 {
                assert_eq!(w[i * 4 + j], tall[j * 3 + i]);
            }
        }
        assert!(w.iter().any(|&v| v != 0.0));
    }
}
