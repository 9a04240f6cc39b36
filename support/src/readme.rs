//! The README shows some crates' training loops; each must be that crate's doctest word
//! for word, so that the README's copy compiles and runs and cannot drift.

/// The first fenced block of the crate docs in `source` (`//! ` stripped).
pub fn doc_block(source: &str) -> String {
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

/// The fenced block after `marker` in `readme`; panics (a test failure) without it.
pub fn readme_block(readme: &str, marker: &str) -> String {
    let after = &readme[readme.find(marker).expect("the README marks the loop")..];
    let block: Vec<&str> = after
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    block.join("\n")
}
