//! Integration tests that span the workspace's crates live in `tests/` (the registry,
//! the zoo's properties, the DSL's functions, and the compile-fail cases of `ui/`); what
//! they share is in `optim-test-support`.
