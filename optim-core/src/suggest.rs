//! "Did you mean" suggestions for misspelled names: the rule of [`optim_suggest`], which
//! the `#[optimizer]` macro's compile errors use too, so both suggest the same names.

pub use optim_suggest::{closest, distance_within, edit_distance, max_edits, MAX_EDITS};
