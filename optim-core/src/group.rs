//! Parameter groups: hyperparameter overrides for the parameters a selector matches.

use crate::hyper::HyperValue;

/// Which parameters a group covers, by name.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector {
    /// Exactly these names.
    Names(Vec<String>),
    /// Every name containing any of these substrings (BERT's decay mask:
    /// `["LayerNorm", "layer_norm", "bias"]`).
    NameContains(Vec<String>),
}

impl Selector {
    /// Whether the parameter `name` belongs to the group.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Selector::Names(names) => names.iter().any(|n| n == name),
            Selector::NameContains(parts) => parts.iter().any(|p| name.contains(p.as_str())),
        }
    }
}

/// A parameter group: a selector and the hyperparameters it overrides. A parameter uses
/// the first group that matches it, else the optimizer's base hyperparameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Which parameters.
    pub selector: Selector,
    /// `(name, value)` overrides on top of the base hyperparameters.
    pub overrides: Vec<(String, HyperValue)>,
}

impl Group {
    /// A group of exactly these parameters, with no overrides yet.
    pub fn names<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Group {
            selector: Selector::Names(names.into_iter().map(Into::into).collect()),
            overrides: Vec::new(),
        }
    }

    /// A group of every parameter whose name contains one of `parts`.
    pub fn name_contains<S: Into<String>>(parts: impl IntoIterator<Item = S>) -> Self {
        Group {
            selector: Selector::NameContains(parts.into_iter().map(Into::into).collect()),
            overrides: Vec::new(),
        }
    }

    /// Adds an override.
    pub fn set(mut self, name: impl Into<String>, value: impl Into<HyperValue>) -> Self {
        self.overrides.push((name.into(), value.into()));
        self
    }
}
