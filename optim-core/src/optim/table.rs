//! [`SlotTable`]: the per-parameter slots of an optimizer, found by name in O(1) on the
//! steady-state path.
//!
//! A model's parameters come in the same order at every step, so the table remembers,
//! for each position in the caller's [`crate::Params`], which slot the parameter there
//! had last time. Finding a slot is then one name comparison (to confirm the guess)
//! instead of a map search with a string comparison per level; a guess that fails
//! (parameters reordered, added or removed) falls back to the map and is corrected.
//! State stays keyed by name, so that checkpoints and groups never depend on the order
//! of the parameters: a position is only a guess that a name comparison confirms. What
//! this saves per tensor is measured by `step_bench -- adam-many 16384 1 16` (RESULTS.md
//! section 4).

use crate::optim::slot::Slot;
use std::collections::HashMap;

/// No slot remembered for a position.
const NONE: usize = usize::MAX;

/// Slots by parameter name (see the module documentation).
#[derive(Clone, Debug)]
pub(crate) struct SlotTable<T> {
    names: Vec<String>,
    slots: Vec<Slot<T>>,
    index: HashMap<String, usize>,
    /// Per position in the last `Params` stepped: the slot of the parameter found there.
    by_position: Vec<usize>,
}

impl<T> Default for SlotTable<T> {
    fn default() -> Self {
        SlotTable {
            names: Vec::new(),
            slots: Vec::new(),
            index: HashMap::new(),
            by_position: Vec::new(),
        }
    }
}

impl<T> SlotTable<T> {
    /// Number of parameters with a slot.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The slot of `name`, which sits at `position` in the caller's parameters: the
    /// remembered guess when it is right, else a map search. Changes nothing.
    #[inline]
    pub(crate) fn find(&self, position: usize, name: &str) -> Option<usize> {
        match self.by_position.get(position) {
            Some(&i) if i != NONE && self.names.get(i).is_some_and(|n| n == name) => Some(i),
            _ => self.index.get(name).copied(),
        }
    }

    /// [`SlotTable::find`], remembering the answer for `position`. Allocates only when
    /// the caller has more parameters than ever before.
    #[inline]
    pub(crate) fn locate(&mut self, position: usize, name: &str) -> Option<usize> {
        let found = self.find(position, name)?;
        self.remember(position, found);
        Some(found)
    }

    /// Remembers that the parameter at `position` has the slot at `index`.
    #[inline]
    pub(crate) fn remember(&mut self, position: usize, index: usize) {
        if position >= self.by_position.len() {
            self.by_position.resize(position + 1, NONE);
        }
        self.by_position[position] = index;
    }

    /// Adds a slot for `name` (not in the table yet); returns its index.
    pub(crate) fn insert(&mut self, name: &str, slot: Slot<T>) -> usize {
        let i = self.slots.len();
        self.names.push(name.to_string());
        self.slots.push(slot);
        self.index.insert(name.to_string(), i);
        i
    }

    /// The slot of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Slot<T>> {
        self.index.get(name).map(|&i| &self.slots[i])
    }

    /// Whether `name` has a slot.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The slot at `index` (from [`SlotTable::find`] or [`SlotTable::insert`]).
    #[inline]
    pub(crate) fn at(&self, index: usize) -> &Slot<T> {
        &self.slots[index]
    }

    /// The slot at `index`, mutably.
    #[inline]
    pub(crate) fn at_mut(&mut self, index: usize) -> &mut Slot<T> {
        &mut self.slots[index]
    }

    /// Every slot, in no particular order.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Slot<T>> {
        self.slots.iter()
    }

    /// Every slot, mutably, in no particular order.
    pub(crate) fn slots_mut(&mut self) -> impl Iterator<Item = &mut Slot<T>> {
        self.slots.iter_mut()
    }

    /// `(name, slot)` pairs, mutably, in no particular order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Slot<T>)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.slots.iter_mut())
    }

    /// `(name, slot)` pairs in name order (for exported state: the same bytes whatever
    /// order the parameters first took a step in).
    pub(crate) fn sorted(&self) -> Vec<(&str, &Slot<T>)> {
        let mut pairs: Vec<(&str, &Slot<T>)> = self
            .names
            .iter()
            .map(String::as_str)
            .zip(self.slots.iter())
            .collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(t: u64) -> Slot<f32> {
        Slot {
            shape: vec![1],
            t,
            states: Vec::new(),
            precision: Default::default(),
            scalars: Vec::new(),
            group: None,
            epoch: 0,
            job: None,
            work: Default::default(),
        }
    }

    #[test]
    fn finds_by_name_whatever_the_position_guess() {
        let mut table = SlotTable::default();
        let a = table.insert("a", slot(1));
        let b = table.insert("b", slot(2));
        assert_eq!(table.locate(0, "a"), Some(a));
        assert_eq!(table.locate(1, "b"), Some(b));
        // Reordered parameters: the guesses are wrong and get corrected.
        assert_eq!(table.find(0, "b"), Some(b));
        assert_eq!(table.locate(0, "b"), Some(b));
        assert_eq!(table.locate(1, "a"), Some(a));
        assert_eq!(table.find(0, "b"), Some(b));
        assert_eq!(table.find(7, "a"), Some(a));
        assert_eq!(table.find(0, "c"), None);
        assert_eq!(table.locate(5, "c"), None);
    }

    #[test]
    fn sorted_is_name_order() {
        let mut table = SlotTable::default();
        for name in ["w2", "b", "w1"] {
            table.insert(name, slot(1));
        }
        let names: Vec<&str> = table.sorted().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["b", "w1", "w2"]);
    }
}
