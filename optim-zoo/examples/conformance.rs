//! Runs conformance cases: `cargo run --release -q -p optim-zoo --example conformance -- PATH...`
//! where each PATH is a case file or a directory of them. Prints `ok NAME` or
//! `FAIL NAME: ...` per case, the failure naming the field of the case at fault
//! (`steps[2].expect.w[5]: got ..., want ...`, `eval.w[0]: ...`, `unsupported:
//! `state_precision` ...`), then `N passed, M failed`; exits non-zero if any failed.

use optim_zoo::conformance::Case;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn collect(path: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
    if path.is_dir() {
        match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_dir() || p.extension().is_some_and(|x| x == "json"))
                    .collect();
                files.sort();
                for f in files {
                    collect(&f, out, errors);
                }
            }
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    } else {
        out.push(path.to_path_buf());
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: conformance PATH...  (case files or directories of them)");
        return ExitCode::from(2);
    }
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for a in &args {
        collect(Path::new(a), &mut files, &mut unreadable);
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for msg in unreadable {
        println!("FAIL {msg}");
        failed += 1;
    }
    for f in files {
        let label = f.file_stem().map_or_else(
            || f.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let outcome = std::fs::read_to_string(&f)
            .map_err(|e| e.to_string())
            .and_then(|text| Case::parse(&text).map_err(|e| e.to_string()))
            .and_then(|case| {
                let name = case.name.clone();
                case.run()
                    .map(|()| name.clone())
                    .map_err(|e| format!("{name}: {e}"))
            });
        match outcome {
            Ok(name) => {
                println!("ok {name}");
                passed += 1;
            }
            Err(msg) if msg.starts_with(&label) => {
                println!("FAIL {msg}");
                failed += 1;
            }
            Err(msg) => {
                println!("FAIL {label}: {msg}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
