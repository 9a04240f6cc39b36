//! The `#[optimizer]` language rejects each misuse with one error at the offending token
//! and a message that says how to fix it (`ui/*.rs` with their `.stderr`), and accepts a
//! definition using every feature (`ui/pass/*.rs`, which also run).
//!
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test -p optim-diagnostics --test
//! compile_fail`, then read every changed `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
    t.pass("ui/pass/*.rs");
}
