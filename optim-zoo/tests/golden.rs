//! Golden checkpoints: files written by an earlier build (`tests/golden/`), which every
//! later build must still load, re-encode to the same bytes, and continue training from
//! to the committed parameter bits. A format change that breaks old files fails here.
//!
//! The files were written with format version 1 at commit 6bd3ddd. To write them again
//! (only for a deliberate format change, with a new version):
//!
//! ```sh
//! cargo test -p optim-zoo --test golden -- --ignored regenerate_golden_checkpoints
//! ```

use ndarray::Array2;
use optim_core::checkpoint::{load_checkpoint, load_into, save, to_bytes};
use optim_core::{Grads, Group, Optimizer, Params, Scalar};
use optim_test_support::{bits, wiggly};
use optim_zoo::Registry;
use serde_json::{json, Value};
use std::path::PathBuf;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Steps taken before the checkpoint, and after it.
const SAVED_AT: u64 = 3;
const RESUMED_FOR: u64 = 3;

fn params<T: Scalar>() -> Params<T> {
    Params::new()
        .with("emb", wiggly::<T>(1, &[4, 3]))
        .unwrap()
        .with("fc.weight", wiggly::<T>(2, &[3, 2]))
        .unwrap()
        .with("fc.bias", wiggly::<T>(3, &[2]))
        .unwrap()
}

/// Step `s`'s gradients: the embedding as sparse rows when `sparse` (one repeated), the
/// bias only on even steps (so step counts differ between parameters).
fn grads<T: Scalar>(s: u64, sparse: bool) -> Grads<T> {
    let mut g = Grads::new().with("fc.weight", wiggly::<T>(200 + s, &[3, 2]));
    if sparse {
        let rows: Array2<T> = wiggly::<T>(100 + s, &[3, 3]).into_dimensionality().unwrap();
        g.insert_rows("emb", vec![(s as usize) % 4, 2, (s as usize) % 4], rows);
    } else {
        g.insert("emb", wiggly::<T>(100 + s, &[4, 3]));
    }
    if s.is_multiple_of(2) {
        g.insert("fc.bias", wiggly::<T>(400 + s, &[2]));
    }
    g
}

/// One golden file: its name, element type, how its optimizer is built, and whether
/// its gradients are sparse.
struct Golden {
    name: &'static str,
    f64: bool,
    config: Value,
    groups: bool,
    sparse: bool,
}

fn goldens() -> Vec<Golden> {
    vec![
        // Plain Adam with a parameter group overriding lr and weight decay.
        Golden {
            name: "adam-groups-f32",
            f64: false,
            config: json!({"optimizer": "adam", "lr": 0.01, "weight_decay": 0.001}),
            groups: true,
            sparse: false,
        },
        // A wrapper: Lookahead around RAdam (its inner state nested under `inner/`).
        Golden {
            name: "ranger-f64",
            f64: true,
            config: json!({"optimizer": "ranger", "lr": 0.01, "k": 2}),
            groups: false,
            sparse: false,
        },
        // Routes: each route's state under `route/<i>/`, selectors in the metadata.
        Golden {
            name: "partition-f32",
            f64: false,
            config: json!({"optimizer": "partition", "routes": [
                {"select": {"ndim": 2, "name_contains": ["fc"]}, "optimizer": "sgd",
                 "hyper": {"lr": 0.1, "momentum": 0.9}},
                {"select": {"names": ["emb"]}, "optimizer": {"optimizer": "lamb", "lr": 0.01}},
                {"optimizer": "adamw", "hyper": {"lr": 0.01}},
            ]}),
            groups: false,
            sparse: false,
        },
        // Optimizer-wide states (`globals`: d, d_max, ...) and an infinite
        // hyperparameter (growth_rate, stored as "inf").
        Golden {
            name: "prodigy-f64",
            f64: true,
            config: json!({"optimizer": "prodigy", "lr": 1.0}),
            groups: false,
            sparse: false,
        },
        // Sparse rows: lazily updated rows, per-parameter step counts.
        Golden {
            name: "lazyadam-f32",
            f64: false,
            config: json!({"optimizer": "lazyadam", "lr": 0.01}),
            groups: false,
            sparse: true,
        },
        // Per-parameter scalar states (NAdam's product of μ).
        Golden {
            name: "nadam-f64",
            f64: true,
            config: json!({"optimizer": "nadam", "lr": 0.01}),
            groups: false,
            sparse: false,
        },
    ]
}

fn build<T: Scalar>(g: &Golden) -> Box<dyn Optimizer<T>> {
    let mut opt = Registry::zoo().build::<T>(&g.config).unwrap();
    if g.groups {
        opt.add_group(
            Group::name_contains(["bias"])
                .set("lr", 0.05)
                .set("weight_decay", 0.0),
        )
        .unwrap();
    }
    opt
}

/// Every parameter's element bits (an f32 widened to f64 exactly), by name, as JSON.
fn bits_json<T: Scalar>(p: &Params<T>) -> Value {
    let map: serde_json::Map<String, Value> = bits(p)
        .into_iter()
        .map(|(name, b)| (name, json!(b)))
        .collect();
    Value::Object(map)
}

fn params_from_bits<T: Scalar>(bits: &Value) -> Params<T> {
    let mut p = params::<T>();
    for (name, values) in bits.as_object().unwrap() {
        let a = p.get_mut(name).unwrap();
        for (x, b) in a.iter_mut().zip(values.as_array().unwrap()) {
            *x = T::from_f64(f64::from_bits(b.as_u64().unwrap()));
        }
    }
    p
}

fn regenerate<T: Scalar>(g: &Golden) {
    let mut opt = build::<T>(g);
    let mut p = params::<T>();
    for s in 0..SAVED_AT {
        opt.step(&mut p, &grads(s, g.sparse)).unwrap();
    }
    let dir = golden_dir();
    save(opt.as_ref(), dir.join(format!("{}.safetensors", g.name))).unwrap();
    let at_save = bits_json(&p);
    for s in SAVED_AT..SAVED_AT + RESUMED_FOR {
        opt.step(&mut p, &grads(s, g.sparse)).unwrap();
    }
    let expect = json!({"params": at_save, "expect": bits_json(&p)});
    std::fs::write(
        dir.join(format!("{}.json", g.name)),
        serde_json::to_string_pretty(&expect).unwrap() + "\n",
    )
    .unwrap();
}

/// Regenerates every file of `tests/golden/` (see the module docs).
#[test]
#[ignore = "writes tests/golden/: only for a deliberate format change"]
fn regenerate_golden_checkpoints() {
    std::fs::create_dir_all(golden_dir()).unwrap();
    for g in goldens() {
        if g.f64 {
            regenerate::<f64>(&g);
        } else {
            regenerate::<f32>(&g);
        }
    }
}

fn check<T: Scalar>(g: &Golden) {
    let dir = golden_dir();
    let file = dir.join(format!("{}.safetensors", g.name));
    let golden = std::fs::read(&file).unwrap();
    let expect: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{}.json", g.name))).unwrap(),
    )
    .unwrap();
    // Decoding and encoding again gives the very bytes of the old file.
    let state = load_checkpoint(&file).unwrap_or_else(|e| panic!("{}: {e}", g.name));
    assert_eq!(to_bytes(&state).unwrap(), golden, "{}: re-encoded", g.name);
    // A fresh optimizer takes it and continues to the committed bits.
    let mut p = params_from_bits::<T>(&expect["params"]);
    let mut opt = build::<T>(g);
    load_into(opt.as_mut(), &p, &file).unwrap_or_else(|e| panic!("{}: {e}", g.name));
    for s in SAVED_AT..SAVED_AT + RESUMED_FOR {
        opt.step(&mut p, &grads(s, g.sparse)).unwrap();
    }
    assert_eq!(
        bits_json(&p),
        expect["expect"],
        "{}: after resuming",
        g.name
    );
}

#[test]
fn every_golden_checkpoint_loads_re_encodes_to_its_bytes_and_resumes_to_its_bits() {
    let goldens = goldens();
    for g in &goldens {
        if g.f64 {
            check::<f64>(g);
        } else {
            check::<f32>(g);
        }
    }
    // Nothing in the directory goes unchecked.
    let mut files: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let mut want: Vec<String> = goldens
        .iter()
        .flat_map(|g| {
            [
                format!("{}.json", g.name),
                format!("{}.safetensors", g.name),
            ]
        })
        .collect();
    want.sort();
    assert_eq!(files, want);
}
