//! Every zoo optimizer, and Lookahead around each, resumes bit-identically from a
//! checkpoint file: train, save mid-run, load into a freshly built optimizer, continue.

use ndarray::Array2;
use optim_core::checkpoint::{load_into, save, to_bytes};
use optim_core::{Grads, HyperValue, OptimError, Params, Scalar};
use optim_test_support::{bits, wiggly};
use optim_zoo::Registry;
use serde_json::{json, Value};
use std::path::PathBuf;

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("optim-zoo-ckpt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn params<T: Scalar>() -> Params<T> {
    Params::new()
        .with("emb", wiggly::<T>(1, &[6, 3]))
        .unwrap()
        .with("fc.weight", wiggly::<T>(2, &[3, 4]))
        .unwrap()
        .with("fc.bias", wiggly::<T>(3, &[4]))
        .unwrap()
        .with("LayerNorm.weight", wiggly::<T>(4, &[4]))
        .unwrap()
}

/// Step `s`'s gradients: sparse rows (one repeated) for the embedding, dense elsewhere;
/// the bias only on even steps.
fn grads<T: Scalar>(s: u64) -> Grads<T> {
    let rows: Array2<T> = wiggly::<T>(100 + s, &[3, 3]).into_dimensionality().unwrap();
    let mut g = Grads::new()
        .with("fc.weight", wiggly::<T>(200 + s, &[3, 4]))
        .with("LayerNorm.weight", wiggly::<T>(300 + s, &[4]));
    g.insert_rows("emb", vec![(s as usize) % 6, 4, (s as usize) % 6], rows);
    if s.is_multiple_of(2) {
        g.insert("fc.bias", wiggly::<T>(400 + s, &[4]));
    }
    g
}

/// Every optimizer the registry builds on its own, as (trained config, fresh config).
fn configs() -> Vec<(Value, Value)> {
    let reg = Registry::zoo();
    let mut out = Vec::new();
    for name in reg.names() {
        match name {
            "lookahead" => continue, // needs an inner optimizer: covered below
            // Needs routes: its own tests (tests/partition.rs) cover more; here, every
            // zoo optimizer as a route.
            "partition" => continue,
            // Steps matrices only: covered as a partition's route below.
            "muon" => continue,
            "ranger" => out.push((
                json!({"optimizer": "ranger", "lr": 0.01, "k": 2}),
                json!({"optimizer": "ranger"}),
            )),
            _ => {
                out.push((
                    json!({"optimizer": name, "lr": 0.01}),
                    json!({"optimizer": name}),
                ));
                out.push((
                    json!({"optimizer": "lookahead", "k": 2, "alpha": 0.7, "inner": {"optimizer": name, "lr": 0.01}}),
                    json!({"optimizer": "lookahead", "inner": {"optimizer": name}}),
                ));
            }
        }
    }
    // Every zoo optimizer as the matrices' route of a partition (the rest to Adam).
    for name in reg.names() {
        if matches!(name, "lookahead" | "partition") {
            continue;
        }
        out.push((
            json!({"optimizer": "partition", "routes": [
                {"select": {"ndim": 2}, "optimizer": name, "hyper": {"lr": 0.01}},
                {"optimizer": "adam", "hyper": {"lr": 0.01}},
            ]}),
            json!({"optimizer": "partition", "routes": [
                {"select": {"ndim": 2}, "optimizer": name},
                {"optimizer": "adam"},
            ]}),
        ));
    }
    // Optional states switched on.
    for extra in [
        json!({"optimizer": "rmsprop", "lr": 0.01, "centered": true, "momentum": 0.5}),
        json!({"optimizer": "adamw", "lr": 0.01, "amsgrad": true}),
    ] {
        if reg.build::<f32>(&extra).is_ok() {
            let fresh = json!({"optimizer": extra["optimizer"]});
            out.push((extra, fresh));
        }
    }
    out
}

fn resume<T: Scalar>(trained: &Value, fresh: &Value, dir: &std::path::Path) {
    let reg = Registry::zoo();
    let mut p = params::<T>();
    let mut opt = reg.build::<T>(trained).unwrap();
    for s in 0..3 {
        opt.step(&mut p, &grads(s)).unwrap();
    }
    let path = dir.join("ckpt.safetensors");
    save(opt.as_ref(), &path).unwrap();

    let mut resumed = reg.build::<T>(fresh).unwrap();
    load_into(resumed.as_mut(), &p, &path).unwrap();
    assert_eq!(resumed.export_state(), opt.export_state(), "{trained}");
    assert_eq!(
        resumed.hyper("lr").unwrap(),
        HyperValue::Float(0.01),
        "{trained}: hyperparameters restored"
    );
    let mut q = p.clone();
    for s in 3..9 {
        opt.step(&mut p, &grads(s)).unwrap();
        resumed.step(&mut q, &grads(s)).unwrap();
        assert_eq!(bits(&p), bits(&q), "{trained} ({}) step {s}", T::DTYPE);
    }
    assert_eq!(
        to_bytes(&opt.export_state()).unwrap(),
        to_bytes(&resumed.export_state()).unwrap(),
        "{trained}: state after resuming"
    );
    for name in ["emb", "fc.weight", "fc.bias"] {
        assert_eq!(opt.step_count(name), resumed.step_count(name));
    }
}

#[test]
fn every_zoo_optimizer_and_lookahead_around_each_resume_bit_identically() {
    let dir = tmp_dir("resume");
    let configs = configs();
    assert!(configs.len() >= 30, "{} configs", configs.len());
    for (trained, fresh) in &configs {
        resume::<f32>(trained, fresh, &dir);
        resume::<f64>(trained, fresh, &dir);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_checkpoint_loads_only_into_the_optimizer_it_came_from() {
    let dir = tmp_dir("mismatch");
    let path = dir.join("adam.safetensors");
    let reg = Registry::zoo();
    let mut p = params::<f32>();
    let mut adam = reg
        .build::<f32>(&json!({"optimizer": "lookahead", "inner": {"optimizer": "adam"}}))
        .unwrap();
    adam.step(&mut p, &grads(0)).unwrap();
    save(adam.as_ref(), &path).unwrap();

    let mut other = reg
        .build::<f32>(&json!({"optimizer": "lookahead", "inner": {"optimizer": "adamw"}}))
        .unwrap();
    let before = to_bytes(&other.export_state()).unwrap();
    let err = load_into(other.as_mut(), &p, &path).unwrap_err();
    assert_eq!(
        err,
        OptimError::OptimizerMismatch {
            saved: "adam".into(),
            expected: "adamw".into()
        }
    );
    assert_eq!(to_bytes(&other.export_state()).unwrap(), before);

    let mut plain = reg.build::<f32>(&json!({"optimizer": "adam"})).unwrap();
    let err = load_into(plain.as_mut(), &p, &path).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot load optimizer state: the state is for optimizer `lookahead`, not `adam`"
    );
    assert_eq!(plain.step_count("emb"), None);
    std::fs::remove_dir_all(&dir).unwrap();
}
