//! Every conformance case in `tests/conformance/` (copied unchanged from the references)
//! must pass. A failure means the implementation is wrong: never loosen a tolerance.

use optim_zoo::conformance::Case;
use std::path::Path;

#[test]
fn every_conformance_case_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("conformance directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 26, "expected the 26 public cases");
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable case");
        let case = Case::parse(&text).expect("well-formed case");
        if let Err(e) = case.run() {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_registry_optimizer_has_a_case() {
    let covered = [
        "sgd",
        "adagrad",
        "adadelta",
        "rmsprop",
        "adam",
        "adamw",
        "nadam",
        "radam",
        "lazyadam",
        "lookahead",
        "ranger",
    ];
    let names = optim_zoo::Registry::zoo().names();
    for c in covered {
        assert!(names.contains(&c), "{c} missing from the registry");
    }
}
