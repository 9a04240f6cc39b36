//! Named parameters and their gradients.

use crate::error::{OptimError, Result};
use crate::scalar::Scalar;
use ndarray::{ArrayD, Dimension};
use std::collections::HashMap;
use std::fmt;

/// Positions by name, so that inserting and finding a name costs O(1) however many
/// names there are (a linear search made building the gradients of a model with many
/// tensors quadratic: RESULTS.md section 4).
#[derive(Clone, Default, PartialEq)]
struct NameIndex(HashMap<String, usize>);

impl NameIndex {
    fn get(&self, name: &str) -> Option<usize> {
        self.0.get(name).copied()
    }

    fn insert(&mut self, name: &str, position: usize) {
        self.0.insert(name.to_string(), position);
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// Named parameter arrays of any dimension, in insertion order.
///
/// Arrays are stored contiguous in standard (C) order, so the optimizer can step them as
/// flat slices; an array inserted in another layout is copied into standard order once.
#[derive(Clone, Default, PartialEq)]
pub struct Params<T> {
    names: Vec<String>,
    arrays: Vec<ArrayD<T>>,
    index: NameIndex,
}

impl<T: fmt::Debug> fmt::Debug for Params<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.names.iter().zip(&self.arrays))
            .finish()
    }
}

impl<T: Scalar> Params<T> {
    /// An empty set.
    pub fn new() -> Self {
        Params {
            names: Vec::new(),
            arrays: Vec::new(),
            index: NameIndex::default(),
        }
    }

    /// Adds a parameter. Names must be unique.
    pub fn insert<D: Dimension>(
        &mut self,
        name: impl Into<String>,
        value: ndarray::Array<T, D>,
    ) -> Result<()> {
        let name = name.into();
        if self.index_of(&name).is_some() {
            return Err(OptimError::DuplicateParam(name));
        }
        let value = value.into_dyn();
        let value = if value.is_standard_layout() {
            value
        } else {
            value.as_standard_layout().into_owned()
        };
        self.index.insert(&name, self.names.len());
        self.names.push(name);
        self.arrays.push(value);
        Ok(())
    }

    /// Builder form of [`Params::insert`].
    pub fn with<D: Dimension>(
        mut self,
        name: impl Into<String>,
        value: ndarray::Array<T, D>,
    ) -> Result<Self> {
        self.insert(name, value)?;
        Ok(self)
    }

    /// The parameter named `name`.
    pub fn get(&self, name: &str) -> Option<&ArrayD<T>> {
        self.index_of(name).map(|i| &self.arrays[i])
    }

    /// The parameter named `name`, mutably (for initialisation; keep its shape).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut ArrayD<T>> {
        self.index_of(name).map(move |i| &mut self.arrays[i])
    }

    /// Position of `name` in insertion order.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name)
    }

    /// Names in insertion order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// `(name, array)` pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ArrayD<T>)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.arrays.iter())
    }

    /// `(name, array)` pairs in insertion order, arrays mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut ArrayD<T>)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.arrays.iter_mut())
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Total number of elements over all parameters.
    pub fn num_elements(&self) -> usize {
        self.arrays.iter().map(|a| a.len()).sum()
    }

    /// The parameter at `index` (in insertion order) with its name; `None` past the end.
    pub fn entry(&self, index: usize) -> Option<(&str, &ArrayD<T>)> {
        Some((self.names.get(index)?, self.arrays.get(index)?))
    }

    /// The parameter at `index` with its name, mutably; `None` past the end.
    pub fn entry_mut(&mut self, index: usize) -> Option<(&str, &mut ArrayD<T>)> {
        Some((self.names.get(index)?, self.arrays.get_mut(index)?))
    }

    /// Whether `other` has the same names, in the same order, with the same shapes.
    pub fn same_layout(&self, other: &Params<T>) -> bool {
        self.names == other.names
            && self
                .arrays
                .iter()
                .zip(&other.arrays)
                .all(|(a, b)| a.shape() == b.shape())
    }

    /// Makes `self` a copy of `source`: in place, without allocating, when the two have
    /// the same layout ([`Params::same_layout`]); else rebuilt.
    pub fn copy_from(&mut self, source: &Params<T>) {
        if self.same_layout(source) {
            for (a, b) in self.arrays.iter_mut().zip(&source.arrays) {
                a.assign(b);
            }
        } else {
            self.clone_from(source);
        }
    }
}

/// The gradient of one parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Grad<T> {
    /// A gradient for every element, shaped like the parameter.
    Dense(ArrayD<T>),
    /// Gradient rows of a 2-D parameter (embedding tables): `values` has one row of the
    /// parameter's width per entry of `rows`. Rows may repeat; repeats are summed. Rows not
    /// listed have zero gradient.
    Rows {
        /// Row indices, in any order, possibly repeated.
        rows: Vec<usize>,
        /// Shape `[rows.len(), width]`.
        values: ndarray::Array2<T>,
    },
}

/// Gradients by parameter name. A parameter without an entry has no gradient this step:
/// it is skipped and its state does not advance.
#[derive(Clone, Default, PartialEq)]
pub struct Grads<T> {
    entries: Vec<(String, Grad<T>)>,
    index: NameIndex,
}

impl<T: fmt::Debug> fmt::Debug for Grads<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(n, g)| (n, g)))
            .finish()
    }
}

impl<T: Scalar> Grads<T> {
    /// No gradients.
    pub fn new() -> Self {
        Grads {
            entries: Vec::new(),
            index: NameIndex::default(),
        }
    }

    /// Sets the dense gradient of `name` (replacing any earlier one).
    pub fn insert<D: Dimension>(&mut self, name: impl Into<String>, grad: ndarray::Array<T, D>) {
        self.set(name.into(), Grad::Dense(grad.into_dyn()));
    }

    /// Sets a sparse-row gradient of the 2-D parameter `name`.
    pub fn insert_rows(
        &mut self,
        name: impl Into<String>,
        rows: Vec<usize>,
        values: ndarray::Array2<T>,
    ) {
        self.set(name.into(), Grad::Rows { rows, values });
    }

    /// Builder form of [`Grads::insert`].
    pub fn with<D: Dimension>(
        mut self,
        name: impl Into<String>,
        grad: ndarray::Array<T, D>,
    ) -> Self {
        self.insert(name, grad);
        self
    }

    fn set(&mut self, name: String, grad: Grad<T>) {
        match self.index.get(&name) {
            Some(i) => self.entries[i].1 = grad,
            None => {
                self.index.insert(&name, self.entries.len());
                self.entries.push((name, grad));
            }
        }
    }

    /// The gradient of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&Grad<T>> {
        self.index.get(name).map(|i| &self.entries[i].1)
    }

    /// Mutable access to the gradient of `name` (for clipping).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Grad<T>> {
        self.index.get(name).map(|i| &mut self.entries[i].1)
    }

    /// `(name, gradient)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Grad<T>)> {
        self.entries.iter().map(|(n, g)| (n.as_str(), g))
    }

    /// `(name, gradient)` pairs, gradients mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Grad<T>)> {
        self.entries.iter_mut().map(|(n, g)| (n.as_str(), g))
    }

    /// Makes `self` hold copies of `source`'s gradients, in `source`'s order, reusing its
    /// buffers: a gradient whose position, name and shape are the same as the last time
    /// is copied in place, so refilling with the same layout allocates nothing.
    /// (A [`crate::Partition`] step gives each route its share of the gradients this way.)
    pub(crate) fn refill<'a>(&mut self, source: impl IntoIterator<Item = (&'a str, &'a Grad<T>)>)
    where
        T: 'a,
    {
        let mut len = 0;
        let mut renamed = false;
        for (name, grad) in source {
            match self.entries.get_mut(len) {
                Some((old_name, old)) => {
                    if old_name != name {
                        old_name.clear();
                        old_name.push_str(name);
                        renamed = true;
                    }
                    copy_grad(old, grad);
                }
                None => {
                    self.entries.push((name.to_string(), grad.clone()));
                    renamed = true;
                }
            }
            len += 1;
        }
        if len < self.entries.len() {
            self.entries.truncate(len);
            renamed = true;
        }
        if renamed {
            self.index.clear();
            for (position, (name, _)) in self.entries.iter().enumerate() {
                self.index.insert(name, position);
            }
        }
    }

    /// Removes every gradient, keeping nothing.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
    }

    /// Number of gradients given.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no gradient is given.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Copies `source` into `target`, in place when both are dense with the same shape or
/// both are sparse rows with as many rows of the same width.
fn copy_grad<T: Scalar>(target: &mut Grad<T>, source: &Grad<T>) {
    match (&mut *target, source) {
        (Grad::Dense(t), Grad::Dense(s)) if t.shape() == s.shape() => t.assign(s),
        (
            Grad::Rows { rows, values },
            Grad::Rows {
                rows: source_rows,
                values: source_values,
            },
        ) if values.dim() == source_values.dim() => {
            rows.clear();
            rows.extend_from_slice(source_rows);
            values.assign(source_values);
        }
        _ => target.clone_from(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn params_keep_insertion_order_and_reject_duplicates() {
        let mut p = Params::new();
        for (i, name) in ["w2", "b", "w1"].into_iter().enumerate() {
            p.insert(name, array![i as f64]).unwrap();
        }
        assert!(matches!(
            p.insert("b", array![9.0]),
            Err(OptimError::DuplicateParam(n)) if n == "b"
        ));
        assert_eq!(p.names().collect::<Vec<_>>(), ["w2", "b", "w1"]);
        assert_eq!(p.index_of("w1"), Some(2));
        assert_eq!(p.get("b").map(|a| a[[0]]), Some(1.0));
        assert_eq!(p.index_of("nope"), None);
        assert_eq!(p.entry(0).map(|(n, _)| n), Some("w2"));
        assert!(p.entry(3).is_none());
    }

    #[test]
    fn grads_replace_by_name_and_forget_on_clear() {
        let mut g = Grads::new();
        g.insert("a", array![1.0f32]);
        g.insert("b", array![2.0f32]);
        g.insert("a", array![3.0f32]);
        assert_eq!(g.len(), 2);
        let order: Vec<&str> = g.iter().map(|(n, _)| n).collect();
        assert_eq!(order, ["a", "b"]);
        assert_eq!(g.get("a"), Some(&Grad::Dense(array![3.0f32].into_dyn())));
        if let Some(Grad::Dense(a)) = g.get_mut("b") {
            a[[0]] = 5.0;
        }
        assert_eq!(g.get("b"), Some(&Grad::Dense(array![5.0f32].into_dyn())));
        g.clear();
        assert!(g.is_empty() && g.get("a").is_none());
        g.insert("b", array![7.0f32]);
        assert_eq!(g.iter().count(), 1);
        assert_eq!(g.get("b"), Some(&Grad::Dense(array![7.0f32].into_dyn())));
    }

    #[test]
    fn refill_copies_in_place_when_the_layout_is_unchanged() {
        let mut source = Grads::new().with("a", array![1.0, 2.0]);
        source.insert_rows("e", vec![1, 0], array![[1.0], [2.0]]);
        let mut target = Grads::new();
        target.refill(source.iter());
        assert_eq!(target, source);
        let dense_at = |g: &Grads<f64>| match g.get("a") {
            Some(Grad::Dense(a)) => a.as_ptr(),
            other => panic!("{other:?}"),
        };
        let place = dense_at(&target);
        source.insert("a", array![3.0, 4.0]);
        source.insert_rows("e", vec![0, 0], array![[5.0], [6.0]]);
        target.refill(source.iter());
        assert_eq!(target, source);
        assert_eq!(dense_at(&target), place, "copied into the same buffer");
        // Fewer, renamed and reshaped entries: rebuilt, and found by name.
        let other = Grads::new().with("b", array![9.0, 9.0, 9.0]);
        target.refill(other.iter());
        assert_eq!(target, other);
        assert_eq!(target.get("b"), other.get("b"));
        assert!(target.get("a").is_none() && target.get("e").is_none());
    }
}
