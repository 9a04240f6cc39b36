//! The README's optim-candle training loop is this crate's doctest, word for word: the
//! doctest compiles and runs, so the README's copy must not drift from it.

use optim_test_support::readme::{doc_block, readme_block};

#[test]
fn the_readme_shows_the_doctested_loop() {
    let lib = include_str!("../src/lib.rs");
    let readme = include_str!("../../README.md");
    let doc = doc_block(lib);
    assert!(doc.contains("opt"), "found the doctest");
    assert_eq!(readme_block(readme, "<!-- optim-candle loop -->"), doc);
}
