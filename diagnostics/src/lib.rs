//! The `#[optimizer]` language's diagnostics (`tests/compile_fail.rs`): each misuse in
//! `ui/*.rs` is rejected with the error in its `.stderr`, and the definitions of
//! `ui/pass/` compile and run. A crate of its own so that trybuild, which builds the
//! dev-dependencies again, builds only the runtime and the macro.
