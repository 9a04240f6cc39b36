//! The README's optim-burn training loop is this crate's doctest, word for word: the
//! doctest compiles and runs, so the README's copy must not drift from it.

/// The first fenced block of the crate docs (`//! ` stripped).
fn doc_block(source: &str) -> String {
    let mut lines = source
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .skip_while(|l| !l.starts_with("```"))
        .skip(1);
    let block: Vec<&str> = lines
        .by_ref()
        .take_while(|l| !l.starts_with("```"))
        .collect();
    block.join("\n")
}

/// The fenced block after `marker` in the README.
fn readme_block(readme: &str, marker: &str) -> String {
    let after = &readme[readme.find(marker).expect("the README marks the loop")..];
    let block: Vec<&str> = after
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    block.join("\n")
}

#[test]
fn the_readme_shows_the_doctested_loop() {
    let lib = include_str!("../src/lib.rs");
    let readme = include_str!("../../README.md");
    let doc = doc_block(lib);
    assert!(doc.contains("opt"), "found the doctest");
    assert_eq!(readme_block(readme, "<!-- optim-burn loop -->"), doc);
}
