//! Checking gradients against parameters, and turning a [`Grad`] into the [`GradView`]
//! a kernel reads, through buffers that are reused from step to step.

use crate::algorithm::{GradView, SparseRule};
use crate::error::{OptimError, Result};
use crate::params::{Grad, Grads, Params};
use crate::scalar::Scalar;
use ndarray::{ArrayD, ArrayView2};

/// Checks every gradient against its parameter: the name exists, a dense gradient has the
/// parameter's shape, a sparse one targets a 2-D parameter with `[rows.len(), width]`
/// values and rows in bounds. Non-finite values are not checked.
///
/// Calls `found(index, name, param)` for each gradient once it passed, in `grads` order.
/// Each parameter is found in O(1): one name comparison when gradients come in parameter
/// order (the usual case), else a hash lookup.
pub(crate) fn check_grads<'p, T: Scalar>(
    params: &'p Params<T>,
    grads: &Grads<T>,
    mut found: impl FnMut(usize, &'p str, &'p ArrayD<T>) -> Result<()>,
) -> Result<()> {
    let mut next = 0;
    for (name, grad) in grads.iter() {
        let at = |index: usize| params.entry(index).map(|entry| (index, entry));
        let guess = at(next).filter(|(_, (pname, _))| *pname == name);
        let Some((index, (pname, param))) = guess.or_else(|| params.index_of(name).and_then(at))
        else {
            return Err(OptimError::UnknownParam {
                name: name.to_string(),
                suggestion: crate::suggest::closest(name, params.names()).map(str::to_string),
            });
        };
        next = index + 1;
        check_one(name, param, grad)?;
        found(index, pname, param)?;
    }
    Ok(())
}

fn check_one<T: Scalar>(name: &str, param: &ArrayD<T>, grad: &Grad<T>) -> Result<()> {
    let bad = |reason: String| OptimError::BadSparse {
        name: name.to_string(),
        reason,
    };
    match grad {
        Grad::Dense(g) if g.shape() != param.shape() => Err(OptimError::ShapeMismatch {
            name: name.to_string(),
            expected: param.shape().to_vec(),
            got: g.shape().to_vec(),
        }),
        Grad::Dense(_) => Ok(()),
        Grad::Rows { rows, values } => {
            let &[nrows, width] = param.shape() else {
                return Err(bad(format!(
                    "sparse-row gradients need a 2-D parameter, but it has shape {:?}",
                    param.shape()
                )));
            };
            if values.shape() != [rows.len(), width] {
                return Err(bad(format!(
                    "values have shape {:?}, expected [{}, {width}] (one row of width {width} per row index)",
                    values.shape(),
                    rows.len()
                )));
            }
            match rows.iter().find(|&&r| r >= nrows) {
                Some(r) => Err(bad(format!(
                    "row {r} is out of bounds: the parameter has {nrows} rows"
                ))),
                None => Ok(()),
            }
        }
    }
}

/// Buffers reused across steps, so that steady-state steps do not allocate.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scratch<T> {
    /// A dense gradient in standard order, or a densified sparse one.
    grad: Vec<T>,
    /// Sparse rows sorted by (row, position).
    order: Vec<usize>,
    /// Distinct rows, increasing.
    rows: Vec<usize>,
    /// Summed values of `rows`.
    values: Vec<T>,
}

impl<T: Scalar> Scratch<T> {
    /// The kernel's view of `grad` (already checked) for a parameter of `len` elements,
    /// under the algorithm's sparse rule.
    ///
    /// Repeated sparse rows are summed in the order they appear. `Lazy` passes distinct
    /// rows as given (sorted and summed first if some repeat); `Densify` passes a dense gradient that is zero
    /// outside the listed rows.
    pub(crate) fn view<'a>(
        &'a mut self,
        grad: &'a Grad<T>,
        len: usize,
        rule: SparseRule,
    ) -> GradView<'a, T> {
        match grad {
            Grad::Dense(g) => match g.as_slice() {
                Some(s) => GradView::Dense(s),
                None => {
                    self.grad.clear();
                    self.grad.extend(g.iter().copied());
                    GradView::Dense(&self.grad)
                }
            },
            Grad::Rows { rows, values } => {
                let width = values.ncols();
                match rule {
                    SparseRule::Densify => {
                        densify(rows, values.view(), len, &mut self.grad);
                        GradView::Dense(&self.grad)
                    }
                    SparseRule::Lazy => {
                        if let Some(view) = direct_view(grad, rule) {
                            return view;
                        }
                        // Distinct rows in another order need no copy: the kernel steps
                        // each row on its own, so their order does not matter.
                        if let Some(v) = values.as_slice() {
                            self.rows.clear();
                            self.rows.extend_from_slice(rows);
                            self.rows.sort_unstable();
                            if self.rows.windows(2).all(|p| p[0] < p[1]) {
                                return GradView::Rows {
                                    width,
                                    rows,
                                    values: v,
                                };
                            }
                        }
                        self.coalesce(rows, values.view());
                        GradView::Rows {
                            width,
                            rows: &self.rows,
                            values: &self.values,
                        }
                    }
                }
            }
        }
    }

    /// Sorts rows, summing the values of repeated ones into `self.rows`/`self.values`.
    fn coalesce(&mut self, rows: &[usize], values: ArrayView2<'_, T>) {
        let width = values.ncols();
        self.order.clear();
        self.order.extend(0..rows.len());
        self.order.sort_unstable_by_key(|&k| (rows[k], k));
        self.rows.clear();
        self.values.clear();
        for &k in &self.order {
            let src = values.row(k);
            if self.rows.last() == Some(&rows[k]) {
                let start = self.values.len() - width;
                let dst = &mut self.values[start..];
                match src.as_slice() {
                    Some(src) => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = *d + s),
                    None => dst
                        .iter_mut()
                        .zip(src.iter())
                        .for_each(|(d, &s)| *d = *d + s),
                }
            } else {
                self.rows.push(rows[k]);
                match src.as_slice() {
                    Some(src) => self.values.extend_from_slice(src),
                    None => self.values.extend(src.iter().copied()),
                }
            }
        }
    }
}

/// The kernel's view of `grad` when it needs no buffer: a dense gradient in standard
/// layout, or (for [`SparseRule::Lazy`]) sparse rows already distinct, increasing and
/// contiguous. `None` when [`Scratch::view`] has to copy, sort or densify.
pub(crate) fn direct_view<T: Scalar>(grad: &Grad<T>, rule: SparseRule) -> Option<GradView<'_, T>> {
    match grad {
        Grad::Dense(g) => g.as_slice().map(GradView::Dense),
        Grad::Rows { rows, values } if rule == SparseRule::Lazy => {
            if !rows.windows(2).all(|p| p[0] < p[1]) {
                return None;
            }
            values.as_slice().map(|v| GradView::Rows {
                width: values.ncols(),
                rows,
                values: v,
            })
        }
        Grad::Rows { .. } => None,
    }
}

/// Scatter-adds sparse rows into a zeroed dense buffer of `len` elements.
fn densify<T: Scalar>(rows: &[usize], values: ArrayView2<'_, T>, len: usize, out: &mut Vec<T>) {
    let width = values.ncols();
    out.clear();
    out.resize(len, T::zero());
    for (&r, src) in rows.iter().zip(values.rows()) {
        let dst = &mut out[r * width..(r + 1) * width];
        for (d, &s) in dst.iter_mut().zip(src.iter()) {
            *d = *d + s;
        }
    }
}

/// Runs `f` on the parameter as a flat slice in standard (row-major) order.
///
/// [`Params`] keeps arrays in standard layout, so this borrows in place; an array put in
/// another layout through [`Params::get_mut`] is copied into `buf` and back.
pub(crate) fn with_flat<T: Scalar, R>(
    param: &mut ArrayD<T>,
    buf: &mut Vec<T>,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    if let Some(w) = param.as_slice_mut() {
        return f(w);
    }
    buf.clear();
    buf.extend(param.iter().copied());
    let out = f(buf);
    for (p, &x) in param.iter_mut().zip(buf.iter()) {
        *p = x;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr2, Array2, ShapeBuilder};

    fn rows_of(view: GradView<'_, f64>) -> (Vec<usize>, Vec<f64>) {
        match view {
            GradView::Rows { rows, values, .. } => (rows.to_vec(), values.to_vec()),
            other => panic!("expected rows, got {other:?}"),
        }
    }

    #[test]
    fn lazy_sorts_and_sums_repeated_rows() {
        let g = Grad::Rows {
            rows: vec![3, 0, 3, 1, 0],
            values: arr2(&[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]),
        };
        let mut s = Scratch::default();
        let (rows, values) = rows_of(s.view(&g, 8, SparseRule::Lazy));
        assert_eq!(rows, [0, 1, 3]);
        assert_eq!(values, [12.0, 14.0, 7.0, 8.0, 6.0, 8.0]);
    }

    #[test]
    fn lazy_passes_sorted_standard_rows_through() {
        let g = Grad::Rows {
            rows: vec![0, 2],
            values: arr2(&[[1.0], [2.0]]),
        };
        let mut s = Scratch::default();
        let (rows, values) = rows_of(s.view(&g, 3, SparseRule::Lazy));
        assert_eq!((rows, values), (vec![0, 2], vec![1.0, 2.0]));
        assert!(s.rows.is_empty(), "no copy needed");
    }

    #[test]
    fn lazy_reads_non_standard_values_by_row() {
        let mut values = Array2::zeros((2, 2).f());
        values.assign(&arr2(&[[1.0, 2.0], [3.0, 4.0]]));
        let g = Grad::Rows {
            rows: vec![1, 0],
            values,
        };
        let (rows, values) = rows_of(Scratch::default().view(&g, 4, SparseRule::Lazy));
        assert_eq!((rows, values), (vec![0, 1], vec![3.0, 4.0, 1.0, 2.0]));
    }

    #[test]
    fn densify_scatters_and_sums() {
        let g = Grad::Rows {
            rows: vec![2, 0, 2],
            values: arr2(&[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        };
        let mut s = Scratch::default();
        match s.view(&g, 6, SparseRule::Densify) {
            GradView::Dense(d) => assert_eq!(d, [3.0, 4.0, 0.0, 0.0, 6.0, 8.0]),
            other => panic!("expected dense, got {other:?}"),
        }
    }

    #[test]
    fn dense_non_standard_gradient_is_copied_in_row_major_order() {
        let g = Grad::Dense(arr2(&[[1.0, 3.0], [2.0, 4.0]]).reversed_axes().into_dyn());
        match Scratch::default().view(&g, 4, SparseRule::Densify) {
            GradView::Dense(d) => assert_eq!(d, [1.0, 2.0, 3.0, 4.0]),
            other => panic!("expected dense, got {other:?}"),
        }
    }

    #[test]
    fn with_flat_writes_back_non_standard_params() {
        let mut p = arr2(&[[1.0, 3.0], [2.0, 4.0]]).reversed_axes().into_dyn();
        let mut buf = Vec::new();
        with_flat(&mut p, &mut buf, |w| {
            assert_eq!(w, [1.0, 2.0, 3.0, 4.0]);
            w[1] = 20.0;
        });
        assert_eq!(p, arr2(&[[1.0, 20.0], [3.0, 4.0]]).into_dyn());
    }
}
