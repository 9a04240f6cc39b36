//! Integration tests that span the workspace's crates live in `tests/` (the registry,
//! the zoo's properties, the DSL's functions); what they share is in
//! `optim-test-support`. The DSL's compile errors are in `diagnostics/`.
