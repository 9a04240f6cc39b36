//! Helpers shared by every test crate of the workspace (`optim-core/tests`,
//! `optim-zoo/tests`, `tests/tests`), so that each exists once:
//!
//! * [`seeded`]: seeded, reproducible numbers ([`SplitMix64`], [`wiggle`]/[`wiggly`]);
//! * [`bits`](mod@bits): bit patterns of parameters, for exact comparisons;
//! * [`alloc`]: a counting global allocator for the zero-allocation tests;
//! * [`zoo`]: the registry's names (from `Registry::zoo()`, never a copied list) and a
//!   config for each, with the learning rate the test problems need;
//! * [`problem`]: smooth test problems with their gradients, and small fixtures;
//! * [`readme`]: the README's code blocks against the crates' doctests.

pub mod alloc;
pub mod bits;
pub mod problem;
pub mod readme;
pub mod seeded;
pub mod zoo;

pub use bits::{bits, bits_of};
pub use problem::{array, dense, grads_at, two_params, values, Problem};
pub use seeded::{wiggle, wiggles, wiggly, SplitMix64};
pub use zoo::{build, config, config_with, documented_lr, steps_matrices_only, zoo_names};
