//! Checkpoint files: exact round trip and resume, the safetensors layout Python reads,
//! atomic writes, and every kind of bad file rejected with its own error and nothing
//! changed.

mod common;

use common::*;
use optim_core::checkpoint::{self, from_bytes, load_into, save, save_checkpoint, to_bytes};
use optim_core::optim::Optim;
use optim_core::state::GroupState;
use optim_core::wrapper::Wrapped;
use optim_core::*;
use optim_test_support::{bits, wiggly};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A fresh directory for one test.
fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("optim-ckpt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn params<T: Scalar>() -> Params<T> {
    Params::new()
        .with("weight", wiggly::<T>(1, &[2, 3]))
        .unwrap()
        .with("layer/bias", wiggly::<T>(2, &[3]))
        .unwrap()
        .with("empty", wiggly::<T>(3, &[0, 4]))
        .unwrap()
}

fn grads<T: Scalar>(s: u64) -> Grads<T> {
    let mut g = Grads::new()
        .with("weight", wiggly::<T>(10 + s, &[2, 3]))
        .with("empty", wiggly::<T>(0, &[0, 4]));
    if s % 3 != 1 {
        g.insert("layer/bias", wiggly::<T>(20 + s, &[3]));
    }
    g
}

fn sgd<T: Scalar>() -> Box<dyn Optimizer<T>> {
    let mut o = Optim::<Sgd, T>::new(Sgd::default().lr(0.1).momentum(0.9)).unwrap();
    o.add_group(Group::name_contains(["bias"]).set("lr", 0.05))
        .unwrap();
    Box::new(o)
}

fn acc<T: Scalar>() -> Box<dyn Optimizer<T>> {
    Box::new(Optim::<Acc, T>::new(Acc::default()).unwrap())
}

fn lookahead_sgd<T: Scalar>() -> Box<dyn Optimizer<T>> {
    Box::new(Wrapped::new(Lookahead { k: 2, alpha: 0.5 }, sgd::<T>()).unwrap())
}

fn fresh<T: Scalar>(name: &str) -> Box<dyn Optimizer<T>> {
    match name {
        "sgd" => Box::new(Optim::<Sgd, T>::new(Sgd::default()).unwrap()),
        "acc" => Box::new(Optim::<Acc, T>::new(Acc::default()).unwrap()),
        "lookahead" => Box::new(
            Wrapped::new(
                Lookahead::default(),
                Box::new(Optim::<Sgd, T>::new(Sgd::default()).unwrap()),
            )
            .unwrap(),
        ),
        _ => unreachable!(),
    }
}

/// The exported state as checkpoint bytes: equal bytes mean equal state bit for bit
/// (NaN included).
fn fingerprint<T: Scalar>(opt: &dyn Optimizer<T>) -> Vec<u8> {
    to_bytes(&opt.export_state()).unwrap()
}

fn resume_through_a_file<T: Scalar>(make: fn() -> Box<dyn Optimizer<T>>, dir: &Path) {
    let mut p = params::<T>();
    let mut opt = make();
    for s in 0..3 {
        opt.step(&mut p, &grads(s)).unwrap();
    }
    let path = dir.join(format!("{}-{}.safetensors", opt.name(), T::DTYPE));
    save(opt.as_ref(), &path).unwrap();
    let saved = opt.export_state();
    assert_eq!(checkpoint::load_checkpoint(&path).unwrap(), saved);

    let mut resumed = fresh::<T>(opt.name());
    load_into(resumed.as_mut(), &p, &path).unwrap();
    assert_eq!(resumed.export_state(), saved);
    let mut q = p.clone();
    for s in 3..9 {
        opt.step(&mut p, &grads(s)).unwrap();
        resumed.step(&mut q, &grads(s)).unwrap();
        assert_eq!(bits(&p), bits(&q), "{} step {s}", opt.name());
    }
    assert_eq!(fingerprint(opt.as_ref()), fingerprint(resumed.as_ref()));
}

#[test]
fn resuming_from_a_file_is_bit_identical() {
    let dir = tmp_dir("resume");
    resume_through_a_file::<f32>(sgd, &dir);
    resume_through_a_file::<f64>(sgd, &dir);
    resume_through_a_file::<f32>(acc, &dir);
    resume_through_a_file::<f64>(acc, &dir);
    resume_through_a_file::<f32>(lookahead_sgd, &dir);
    resume_through_a_file::<f64>(lookahead_sgd, &dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A trained Lookahead(SGD) in f32, its parameters and its checkpoint bytes.
fn trained() -> (Params<f32>, Box<dyn Optimizer<f32>>, Vec<u8>) {
    let mut p = params::<f32>();
    let mut opt = lookahead_sgd::<f32>();
    for s in 0..3 {
        opt.step(&mut p, &grads(s)).unwrap();
    }
    let bytes = to_bytes(&opt.export_state()).unwrap();
    (p, opt, bytes)
}

#[test]
fn the_file_is_plain_safetensors_with_the_state_as_metadata() {
    let (_, opt, bytes) = trained();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "inner/param/empty/b",
            "inner/param/layer/bias/b",
            "inner/param/weight/b",
            "param/empty/slow",
            "param/layer/bias/slow",
            "param/weight/slow",
        ]
    );
    let b = st.tensor("inner/param/weight/b").unwrap();
    assert_eq!((b.dtype(), b.shape()), (Dtype::F32, &[2, 3][..]));
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().as_ref().unwrap();
    assert_eq!(meta["format"], "optim-checkpoint");
    assert_eq!(meta["format_version"], "1");
    assert_eq!(meta["optimizer"], "lookahead");
    assert!(meta["checksum"].starts_with("crc32:"));
    let state: serde_json::Value = serde_json::from_str(&meta["state"]).unwrap();
    assert_eq!(
        state["hyper"],
        serde_json::json!([["k", 2], ["alpha", 0.5]])
    );
    assert_eq!(state["step"], 3);
    assert_eq!(state["inner"]["optimizer"], "sgd");
    assert_eq!(
        state["inner"]["groups"],
        serde_json::json!([{"selector": {"name_contains": ["bias"]}, "overrides": [["lr", 0.05]]}])
    );
    let bias = &state["inner"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "layer/bias")
        .unwrap();
    assert_eq!(bias["step"], 2, "no gradient at step 1");
    assert_eq!(from_bytes(&bytes).unwrap(), opt.export_state());
}

#[test]
fn scalar_states_and_odd_values_round_trip_bit_for_bit() {
    let mut p = params::<f64>();
    let mut opt = acc::<f64>();
    opt.step(&mut p, &grads(0)).unwrap();
    let mut s = opt.export_state();
    let w = s.params.iter_mut().find(|p| p.param == "weight").unwrap();
    w.scalars[0].1 = -0.0;
    w.tensors[0].data = TensorData::F64(vec![
        -0.0,
        f64::MIN_POSITIVE / 7.0,
        f64::MAX,
        1.0 / 3.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ]);
    s.hyper[0].1 = HyperValue::Float(f64::INFINITY);
    s.step = u64::MAX;
    let back = from_bytes(&to_bytes(&s).unwrap()).unwrap();
    assert_eq!(back, s);
    let w = back.params.iter().find(|p| p.param == "weight").unwrap();
    assert_eq!(w.scalars[0].1.to_bits(), (-0.0f64).to_bits());
    // NaN is NaN after the trip (in tensors, bit for bit).
    let mut n = s.clone();
    n.params[2].scalars[0].1 = f64::NAN;
    n.params[2].tensors[0].data = TensorData::F64(vec![f64::from_bits(0x7ff8_dead_beef_0001); 6]);
    let back = from_bytes(&to_bytes(&n).unwrap()).unwrap();
    assert!(back.params[2].scalars[0].1.is_nan());
    assert_eq!(to_bytes(&back).unwrap(), to_bytes(&n).unwrap());
}

/// Loads `bytes` (written to a file) into a trained optimizer: must fail with exactly
/// `want` and change nothing.
fn expect_load_error(bytes: &[u8], params: &Params<f32>, want: &str) {
    let (_, mut opt, _) = trained();
    let before = fingerprint(opt.as_ref());
    let dir = tmp_dir("bad");
    let path = dir.join("bad.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let err = load_into(opt.as_mut(), params, &path)
        .unwrap_err()
        .to_string();
    let err = err.replace(&format!("`{}`: ", path.display()), "`PATH`: ");
    assert_eq!(err, want);
    assert_eq!(fingerprint(opt.as_ref()), before, "{want}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_truncated_file_is_an_error_at_every_length() {
    let (p, mut opt, bytes) = trained();
    let before = fingerprint(opt.as_ref());
    for len in 0..bytes.len() {
        let err = from_bytes(&bytes[..len]).unwrap_err();
        assert!(
            matches!(&err, OptimError::Checkpoint(m) if m.starts_with("not a readable safetensors file")),
            "length {len}: {err}"
        );
    }
    // Through the file API too, for a few lengths, and the optimizer is unchanged.
    let dir = tmp_dir("truncated");
    let path = dir.join("cut.safetensors");
    for len in [0, 7, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..len]).unwrap();
        assert!(load_into(opt.as_mut(), &p, &path).is_err());
        assert_eq!(fingerprint(opt.as_ref()), before);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_single_byte_corruption_is_caught() {
    let (_, _, bytes) = trained();
    let good = from_bytes(&bytes).unwrap();
    let mut harmless = 0;
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x10, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[i] ^= mask;
            match from_bytes(&bad) {
                Err(OptimError::Checkpoint(_) | OptimError::VersionMismatch { .. }) => {}
                Err(other) => panic!("byte {i} ^ {mask:#x}: unexpected error kind {other}"),
                // Only a flip that changes nothing decoded (padding space to another
                // whitespace) may load, and then it loads the same state.
                Ok(state) => {
                    assert_eq!(
                        state, good,
                        "byte {i} ^ {mask:#x} changed the state silently"
                    );
                    harmless += 1;
                }
            }
        }
    }
    assert_eq!(harmless, 0, "{harmless} flips loaded");
}

/// The file's metadata and tensors, to edit and write back (keeping its checksum).
type Parts = (
    HashMap<String, String>,
    Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
);

fn parts(bytes: &[u8]) -> Parts {
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let st = SafeTensors::deserialize(bytes).unwrap();
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    (header.metadata().clone().unwrap(), tensors)
}

fn assemble((meta, tensors): &Parts) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, Some(meta.clone())).unwrap()
}

fn edited(bytes: &[u8], f: impl FnOnce(&mut Parts)) -> Vec<u8> {
    let mut p = parts(bytes);
    f(&mut p);
    assemble(&p)
}

fn inner_sgd(s: &mut OptimizerState) -> &mut OptimizerState {
    s.inner.as_deref_mut().unwrap()
}

/// The file with its `state` JSON edited by `f` (checksum kept).
fn edit_json(bytes: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    edited(bytes, |(m, _)| {
        let mut j: serde_json::Value = serde_json::from_str(&m["state"]).unwrap();
        f(&mut j);
        m.insert("state".into(), j.to_string());
    })
}

/// The state of `trained()` edited by `f`, written consistently (valid checksum).
fn state_edited(f: impl FnOnce(&mut OptimizerState)) -> Vec<u8> {
    let (_, opt, _) = trained();
    let mut s = opt.export_state();
    f(&mut s);
    to_bytes(&s).unwrap()
}

#[test]
fn each_mismatch_is_its_own_error_and_changes_nothing() {
    let (p, _, bytes) = trained();
    let reshaped = Params::new()
        .with("weight", wiggly::<f32>(1, &[3, 2]))
        .unwrap()
        .with("layer/bias", wiggly::<f32>(2, &[3]))
        .unwrap()
        .with("empty", wiggly::<f32>(3, &[0, 4]))
        .unwrap();
    let renamed = Params::new()
        .with("weights", wiggly::<f32>(1, &[2, 3]))
        .unwrap()
        .with("layer/bias", wiggly::<f32>(2, &[3]))
        .unwrap()
        .with("empty", wiggly::<f32>(3, &[0, 4]))
        .unwrap();
    let cases: Vec<(Vec<u8>, &Params<f32>, &str)> = vec![
        // Format version.
        (
            state_edited(|s| {
                s.format_version = 2;
                inner_sgd(s).format_version = 2;
            }),
            &p,
            "cannot load optimizer state: state format version 2, but this build reads version 1",
        ),
        // Optimizer name (outer, then inner).
        (
            state_edited(|s| s.optimizer = "swa".into()),
            &p,
            "cannot load optimizer state: the state is for optimizer `swa`, not `lookahead`",
        ),
        (
            state_edited(|s| inner_sgd(s).optimizer = "adam".into()),
            &p,
            "cannot load optimizer state: the state is for optimizer `adam`, not `sgd`",
        ),
        // Parameter names.
        (
            bytes.clone(),
            &renamed,
            "cannot load optimizer state: state for parameter `weight`, which is not among \
             the parameters (did you mean `weights`?)",
        ),
        // Shapes.
        (
            bytes.clone(),
            &reshaped,
            "cannot load optimizer state: `weight`: state tensor `slow` has shape [2, 3], the \
             parameter has shape [3, 2]",
        ),
        // Missing and extra entries, in the state.
        (
            state_edited(|s| s.params.retain(|p| p.param != "weight")),
            &p,
            "", // a parameter without state is allowed: it has not stepped yet
        ),
        (
            state_edited(|s| inner_sgd(s).params[0].tensors.clear()),
            &p,
            "cannot load optimizer state: `empty`: state tensor `b` is missing",
        ),
        (
            state_edited(|s| {
                let extra = TensorState { name: "v".into(), ..s.params[0].tensors[0].clone() };
                s.params[0].tensors.push(extra);
            }),
            &p,
            "cannot load optimizer state: `empty`: unknown state tensor `v`; lookahead has: slow",
        ),
        (
            state_edited(|s| s.params[2].scalars.push(("mu".into(), 1.0))),
            &p,
            "cannot load optimizer state: `weight`: unknown scalar state `mu`",
        ),
        (
            state_edited(|s| s.hyper.push(("beta".into(), HyperValue::Float(1.0)))),
            &p,
            "lookahead: unknown hyperparameter `beta`; valid: k, alpha",
        ),
        (
            state_edited(|s| s.inner = None),
            &p,
            "cannot load optimizer state: lookahead state without the inner optimizer's state",
        ),
        (
            state_edited(|s| {
                s.groups.push(GroupState { selector: Selector::Names(vec!["weight".into()]), overrides: vec![] })
            }),
            &p,
            "cannot load optimizer state: lookahead takes no parameter groups of its own (they \
             belong to the inner optimizer)",
        ),
        // Step counts that could not advance (found by reasoning about the fuzz target:
        // importing u64::MAX, then stepping, overflowed).
        (
            state_edited(|s| s.params[2].step = u64::MAX),
            &p,
            "cannot load optimizer state: `weight`: step 18446744073709551615 is beyond \
             2^53, the largest step count `t` holds exactly",
        ),
        (
            state_edited(|s| inner_sgd(s).step = (1 << 53) + 1),
            &p,
            "cannot load optimizer state: sgd: step count 9007199254740993 is beyond 2^53, \
             the largest step count `t` holds exactly",
        ),
        // Missing and extra entries, in the file.
        (
            edited(&bytes, |(_, t)| t.retain(|t| t.0 != "inner/param/weight/b")),
            &p,
            "checkpoint: `PATH`: tensor `inner/param/weight/b` (state `b` of parameter \
             `weight`) is missing from the file",
        ),
        (
            edited(&bytes, |(_, t)| {
                let mut x = t[0].clone();
                x.0 = "param/weight/fast".into();
                t.push(x);
            }),
            &p,
            "checkpoint: `PATH`: tensor `param/weight/fast` is in the file but not described \
             by its metadata",
        ),
        (
            edited(&bytes, |(m, _)| {
                m.remove("checksum");
            }),
            &p,
            "checkpoint: `PATH`: metadata entry `checksum` is missing",
        ),
        // Dtypes: the file's own, then against the optimizer's.
        (
            edited(&bytes, |(_, t)| {
                let x = t.iter_mut().find(|t| t.0 == "param/weight/slow").unwrap();
                x.1 = Dtype::I32;
            }),
            &p,
            "checkpoint: `PATH`: tensor `param/weight/slow` has dtype I32; optimizer state is \
             F32, F64, BF16 or U8 (8-bit codes)",
        ),
        (
            {
                let mut p64 = params::<f64>();
                let mut o = lookahead_sgd::<f64>();
                o.step(&mut p64, &grads(0)).unwrap();
                to_bytes(&o.export_state()).unwrap()
            },
            &p,
            "cannot load optimizer state for `empty`: saved as f64, parameters are f32",
        ),
        // Not a checkpoint, or damaged.
        (
            edited(&bytes, |(m, _)| {
                m.insert("format".into(), "pytorch".into());
            }),
            &p,
            "checkpoint: `PATH`: metadata `format` is `pytorch`, expected `optim-checkpoint`: \
             not an optimizer checkpoint",
        ),
        (
            safetensors::serialize(Vec::<(String, TensorView<'_>)>::new(), None).unwrap(),
            &p,
            "checkpoint: `PATH`: no `__metadata__`: a safetensors file, but not an optimizer \
             checkpoint",
        ),
        (
            edit_json(&bytes, |j| j["step"] = (-3).into()),
            &p,
            "checkpoint: `PATH`: metadata `state.step`: expected a non-negative integer, got -3",
        ),
        (
            edit_json(&bytes, |j| j["step"] = 4.into()),
            &p,
            "checkpoint: `PATH`: checksum mismatch (stored crc32:*, computed crc32:*): the \
             file is corrupt",
        ),
        (
            edit_json(&bytes, |j| {
                let g = j.as_object_mut().unwrap().remove("groups").unwrap();
                j["grups"] = g;
            }),
            &p,
            "checkpoint: `PATH`: metadata `state`: unknown field `grups` (did you mean \
             `groups`?); valid: globals, groups, hyper, inner, optimizer, params, routes, step",
        ),
        (
            edit_json(&bytes, |j| {
                j.as_object_mut().unwrap().remove("groups").unwrap();
            }),
            &p,
            "checkpoint: `PATH`: metadata `state`: field `groups` is missing",
        ),
        (b"not a checkpoint".to_vec(), &p, "checkpoint: `PATH`: not a readable safetensors file (truncated or corrupt?): header too large: its length field says 7521891404167278446 bytes; the file has 8 bytes after it"),
    ];
    for (bytes, params, want) in &cases {
        if want.is_empty() {
            let (_, mut opt, _) = trained();
            let state = from_bytes(bytes).unwrap();
            opt.import_state(&state, params).unwrap();
            continue;
        }
        if let Some((head, tail)) = want.split_once("crc32:*, computed crc32:*") {
            let err = from_bytes(bytes).unwrap_err().to_string();
            assert!(
                err.contains(head.trim_start_matches("checkpoint: `PATH`: "))
                    && err.ends_with(tail),
                "{err}"
            );
            continue;
        }
        expect_load_error(bytes, params, want);
    }
}

#[test]
fn a_missing_file_is_an_error() {
    let (p, mut opt, _) = trained();
    let before = fingerprint(opt.as_ref());
    let err = load_into(opt.as_mut(), &p, "/nonexistent/ckpt.safetensors").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("checkpoint: cannot read `/nonexistent/ckpt.safetensors`: "),
        "{err}"
    );
    assert_eq!(fingerprint(opt.as_ref()), before);
}

#[test]
fn a_failed_save_leaves_the_previous_checkpoint_intact() {
    let dir = tmp_dir("atomic");
    let path = dir.join("ckpt.safetensors");
    let (_, opt, good) = trained();
    save(opt.as_ref(), &path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), good);

    // A state that cannot be encoded fails before the file is touched.
    let mut bad = opt.export_state();
    bad.params[0].tensors[0].data = TensorData::F32(vec![1.0; 3]);
    let err = save_checkpoint(&path, &bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "checkpoint: `empty`: state tensor `slow` has 3 values for shape [0, 4]"
    );
    assert_eq!(std::fs::read(&path).unwrap(), good);

    // The rename onto a directory fails: the directory and the old file are as they were,
    // and no temporary file is left behind.
    let blocked = dir.join("blocked");
    std::fs::create_dir(&blocked).unwrap();
    let err = save(opt.as_ref(), &blocked).unwrap_err().to_string();
    assert!(err.contains("rename"), "{err}");
    assert!(blocked.is_dir());
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["blocked", "ckpt.safetensors"]);

    // No directory to put the temporary file in.
    let err = save(opt.as_ref(), dir.join("missing/ckpt.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot create a temporary file beside it"),
        "{err}"
    );
    assert_eq!(
        from_bytes(&std::fs::read(&path).unwrap()).unwrap(),
        opt.export_state()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
