//! Checkpoint files as a hostile user (or an unlucky file system) hands them over: names
//! at the length limit, symlinks at the target path, headers that lie about their size.

mod common;

use common::*;
use optim_core::checkpoint::{from_bytes, load_checkpoint, load_into, save, to_bytes};
use optim_core::optim::Optim;
use optim_core::*;
use optim_test_support::wiggly;
use std::path::{Path, PathBuf};

/// A fresh directory for one test.
fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("optim-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn params() -> Params<f64> {
    Params::new()
        .with("w", wiggly::<f64>(1, &[2, 3]))
        .unwrap()
        .with("b", wiggly::<f64>(2, &[3]))
        .unwrap()
}

/// SGD with momentum after `steps` steps, with its parameters.
fn trained(steps: u64) -> (Params<f64>, Box<dyn Optimizer<f64>>) {
    let mut p = params();
    let mut opt: Box<dyn Optimizer<f64>> =
        Box::new(Optim::<Sgd, f64>::new(Sgd::default().lr(0.1).momentum(0.9)).unwrap());
    for s in 0..steps {
        let g = Grads::new()
            .with("w", wiggly::<f64>(10 + s, &[2, 3]))
            .with("b", wiggly::<f64>(20 + s, &[3]));
        opt.step(&mut p, &g).unwrap();
    }
    (p, opt)
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_file_name_at_the_length_limit_saves_and_loads() {
    let dir = tmp_dir("long-name");
    let (p, opt) = trained(3);
    // 255 bytes is the longest name Linux, macOS and Windows file systems take; the
    // temporary file beside it must not be longer than the name itself allows.
    for len in [200, 240, 250, 255] {
        let name = format!("{}.safetensors", "c".repeat(len - ".safetensors".len()));
        assert_eq!(name.len(), len);
        let path = dir.join(&name);
        save(opt.as_ref(), &path).unwrap_or_else(|e| panic!("{len}-byte name: {e}"));
        assert_eq!(load_checkpoint(&path).unwrap(), opt.export_state());
        let (_, mut fresh) = trained(0);
        load_into(fresh.as_mut(), &p, &path).unwrap();
        assert_eq!(fresh.export_state(), opt.export_state());
        // Saved again over itself: still one file, no temporary left behind.
        save(opt.as_ref(), &path).unwrap();
        assert_eq!(listing(&dir), [name]);
        std::fs::remove_file(&path).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn saving_through_a_symlink_replaces_its_target_and_keeps_the_link() {
    use std::os::unix::fs::symlink;
    let dir = tmp_dir("symlink");
    let (_, old) = trained(2);
    let (_, new) = trained(5);
    // latest.safetensors -> runs/run7.safetensors (relative), as checkpoint rotation
    // scripts set it up.
    std::fs::create_dir(dir.join("runs")).unwrap();
    let target = dir.join("runs/run7.safetensors");
    save(old.as_ref(), &target).unwrap();
    let link = dir.join("latest.safetensors");
    symlink("runs/run7.safetensors", &link).unwrap();

    save(new.as_ref(), &link).unwrap();
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(
        meta.file_type().is_symlink(),
        "the link was replaced by a file"
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("runs/run7.safetensors")
    );
    assert_eq!(load_checkpoint(&target).unwrap(), new.export_state());
    assert_eq!(
        std::fs::read(&target).unwrap(),
        to_bytes(&new.export_state()).unwrap()
    );
    // The temporary file went beside the target (same directory, so the rename is
    // atomic) and is gone.
    assert_eq!(listing(&dir), ["latest.safetensors", "runs"]);
    assert_eq!(listing(&dir.join("runs")), ["run7.safetensors"]);

    // A chain of links, the last one absolute, ends at the same file.
    let chain = dir.join("chain.safetensors");
    symlink(&link, &chain).unwrap();
    save(old.as_ref(), &chain).unwrap();
    assert!(std::fs::symlink_metadata(&chain)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(load_checkpoint(&target).unwrap(), old.export_state());

    // A dangling link: the file is created where it points, as `>` in a shell does.
    let dangling = dir.join("next.safetensors");
    symlink("runs/run8.safetensors", &dangling).unwrap();
    save(new.as_ref(), &dangling).unwrap();
    assert!(std::fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        load_checkpoint(dir.join("runs/run8.safetensors")).unwrap(),
        new.export_state()
    );

    // A loop of links is an error that says so, and creates nothing.
    symlink("loop-b", dir.join("loop-a")).unwrap();
    symlink("loop-a", dir.join("loop-b")).unwrap();
    let before = listing(&dir);
    let err = save(new.as_ref(), dir.join("loop-a"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("symbolic links"), "{err}");
    assert_eq!(listing(&dir), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file whose 8-byte header length says `claimed`, followed by `rest` (a sparse
/// region of that many bytes: nothing is written to disk for it).
fn lying_file(path: &Path, claimed: u64, rest: u64) {
    let f = std::fs::File::create(path).unwrap();
    std::io::Write::write_all(&mut &f, &claimed.to_le_bytes()).unwrap();
    f.set_len(8 + rest).unwrap();
}

/// Bytes this process has read through `read` calls so far (Linux's /proc/self/io).
#[cfg(target_os = "linux")]
fn bytes_read() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_header_length_beyond_the_file_or_the_cap_is_refused_before_reading_on() {
    let dir = tmp_dir("header");
    let (p, mut opt) = trained(3);
    let before = to_bytes(&opt.export_state()).unwrap();
    let path = dir.join("lying.safetensors");
    let cases: [(u64, u64, &str); 4] = [
        (
            u64::MAX,
            16,
            "header too large: its length field says 18446744073709551615 bytes; the file \
             has 16 bytes after it",
        ),
        (
            1 << 30,
            100,
            "header too large: its length field says 1073741824 bytes; the file has 100 \
             bytes after it",
        ),
        // Within the file, but beyond what any safetensors reader accepts.
        (
            100_000_001,
            100_000_008,
            "header too large: its length field says 100000001 bytes; safetensors readers \
             accept at most 100000000",
        ),
        (
            5,
            3,
            "header too large: its length field says 5 bytes; the file has 3 bytes after it",
        ),
    ];
    for (claimed, rest, want) in cases {
        lying_file(&path, claimed, rest);
        let err = load_into(opt.as_mut(), &p, &path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "checkpoint: `{}`: not a readable safetensors file (truncated or corrupt?): \
                 {want}",
                path.display()
            )
        );
        assert_eq!(to_bytes(&opt.export_state()).unwrap(), before);
    }
    // Shorter than the length field itself.
    std::fs::write(&path, [1u8, 0, 0]).unwrap();
    let err = load_checkpoint(&path).unwrap_err().to_string();
    assert!(
        err.ends_with("not a readable safetensors file (truncated or corrupt?): 3 bytes, shorter than the 8-byte header length"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A 256 MiB file (sparse: no disk used) whose header length points past its end: the
/// loader reads its 8-byte length field and stops, instead of reading the whole file
/// into memory first.
#[cfg(target_os = "linux")]
#[test]
fn a_lying_header_length_is_caught_without_reading_the_file() {
    let dir = tmp_dir("no-read");
    let path = dir.join("huge.safetensors");
    lying_file(&path, 1 << 40, 256 << 20);
    let start = bytes_read();
    let err = load_checkpoint(&path).unwrap_err().to_string();
    let read = bytes_read() - start;
    assert!(err.contains("header too large"), "{err}");
    // Other tests of this binary run in parallel and read small files: allow them 16 MiB.
    assert!(read < 16 << 20, "{read} bytes read to refuse the file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_good_file_still_loads_through_the_header_first_reader() {
    let dir = tmp_dir("good");
    let (p, opt) = trained(4);
    let path = dir.join("ok.safetensors");
    save(opt.as_ref(), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(from_bytes(&bytes).unwrap(), opt.export_state());
    let (_, mut fresh) = trained(0);
    load_into(fresh.as_mut(), &p, &path).unwrap();
    assert_eq!(fresh.export_state(), opt.export_state());
    // Trailing bytes after the last tensor are still refused (by safetensors' own check).
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 8]);
    std::fs::write(&path, &longer).unwrap();
    assert!(load_checkpoint(&path).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
