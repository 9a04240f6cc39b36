//! What the multi-pass optimizers promise beyond their conformance cases: factored state
//! is factored (memory), matrices-only optimizers refuse other shapes and change nothing,
//! evaluation weights are written in place, and 3-D factored state resumes bit for bit.

use optim_core::{checkpoint, Grads, Optimizer, Params, TensorData};
use optim_test_support::{bits, wiggly};
use optim_zoo::Registry;
use serde_json::json;

fn build(config: serde_json::Value) -> Box<dyn Optimizer<f64>> {
    Registry::zoo().build::<f64>(&config).unwrap()
}

#[test]
fn adafactor_keeps_one_value_per_row_and_column_of_each_matrix() {
    let mut params = Params::new()
        .with("w", wiggly::<f64>(1, &[64, 32]))
        .unwrap()
        .with("batched", wiggly::<f64>(2, &[3, 5, 7]))
        .unwrap()
        .with("b", wiggly::<f64>(3, &[9]))
        .unwrap();
    let grads = Grads::new()
        .with("w", wiggly::<f64>(4, &[64, 32]))
        .with("batched", wiggly::<f64>(5, &[3, 5, 7]))
        .with("b", wiggly::<f64>(6, &[9]));
    let mut opt = build(json!({"optimizer": "adafactor"}));
    opt.step(&mut params, &grads).unwrap();
    let state = opt.export_state();
    let shapes = |p: &str| -> Vec<(String, Vec<usize>)> {
        let s = state.params.iter().find(|s| s.param == p).unwrap();
        s.tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect()
    };
    let named = |v: &[(&str, &[usize])]| -> Vec<(String, Vec<usize>)> {
        v.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect()
    };
    assert_eq!(
        shapes("w"),
        named(&[("row_var", &[64]), ("col_var", &[32])])
    );
    assert_eq!(
        shapes("batched"),
        named(&[("row_var", &[3, 5]), ("col_var", &[3, 7])])
    );
    assert_eq!(shapes("b"), named(&[("variance", &[9])]));
}

#[test]
fn muon_refuses_a_vector_by_name_and_changes_nothing() {
    let mut params = Params::new()
        .with("w", wiggly::<f64>(1, &[4, 3]))
        .unwrap()
        .with("bias", wiggly::<f64>(2, &[3]))
        .unwrap();
    let mut opt = build(json!({"optimizer": "muon", "lr": 0.02}));
    let only_w = Grads::new().with("w", wiggly::<f64>(3, &[4, 3]));
    opt.step(&mut params, &only_w).unwrap();
    let (before, state) = (params.clone(), opt.export_state());
    let both = Grads::new()
        .with("w", wiggly::<f64>(4, &[4, 3]))
        .with("bias", wiggly::<f64>(5, &[3]));
    let err = opt.step(&mut params, &both).unwrap_err().to_string();
    assert!(err.contains("`bias`") && err.contains("partition"), "{err}");
    assert_eq!(params, before);
    assert_eq!(opt.export_state(), state);
}

#[test]
fn evaluation_weights_are_written_in_place_and_training_state_is_untouched() {
    let mut params = Params::new().with("w", wiggly::<f64>(1, &[50])).unwrap();
    let mut opt = build(json!({"optimizer": "schedule_free_adamw", "lr": 0.05}));
    for k in 0..3 {
        opt.step(
            &mut params,
            &Grads::new().with("w", wiggly::<f64>(10 + k, &[50])),
        )
        .unwrap();
    }
    let state = opt.export_state();
    let mut eval = opt.eval_params(&params).unwrap();
    let at = eval.get("w").unwrap().as_ptr();
    let first = eval.clone();
    opt.eval_params_into(&params, &mut eval).unwrap();
    assert_eq!(
        eval.get("w").unwrap().as_ptr(),
        at,
        "reused, not reallocated"
    );
    assert_eq!(eval, first);
    assert_ne!(
        eval, params,
        "schedule-free evaluates at the average x, not at y"
    );
    assert_eq!(opt.export_state(), state);
    // x = (y − (1 − β1)·z)/β1, with z from the exported state.
    let z = &state.params[0]
        .tensors
        .iter()
        .find(|t| t.name == "z")
        .unwrap()
        .data;
    let TensorData::F64(z) = z else {
        panic!("f64 state")
    };
    for ((x, y), z) in eval
        .get("w")
        .unwrap()
        .iter()
        .zip(params.get("w").unwrap())
        .zip(z)
    {
        let want = (y - 0.1 * z) / 0.9;
        assert!(
            (x - want).abs() <= 1e-12 * want.abs().max(1.0),
            "{x} vs {want}"
        );
    }
}

#[test]
fn factored_and_optimizer_wide_state_resume_bit_for_bit_from_a_file() {
    let dir = std::env::temp_dir().join(format!("optim-passes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["adafactor", "came", "prodigy", "novograd"] {
        let start = Params::new()
            .with("batched", wiggly::<f64>(1, &[2, 3, 4]))
            .unwrap()
            .with("b", wiggly::<f64>(2, &[5]))
            .unwrap();
        let grads = |k: u64| {
            Grads::new()
                .with("batched", wiggly::<f64>(10 + k, &[2, 3, 4]))
                .with("b", wiggly::<f64>(20 + k, &[5]))
        };
        let (mut whole, mut p_whole) = (build(json!({"optimizer": name})), start.clone());
        for k in 0..6 {
            whole.step(&mut p_whole, &grads(k)).unwrap();
        }
        let (mut first, mut p) = (build(json!({"optimizer": name})), start);
        for k in 0..3 {
            first.step(&mut p, &grads(k)).unwrap();
        }
        let path = dir.join(format!("{name}.safetensors"));
        checkpoint::save(first.as_ref(), &path).unwrap();
        let mut resumed = build(json!({"optimizer": name}));
        checkpoint::load_into(resumed.as_mut(), &p, &path).unwrap();
        for k in 3..6 {
            resumed.step(&mut p, &grads(k)).unwrap();
        }
        assert_eq!(bits(&p), bits(&p_whole), "{name}");
        assert_eq!(resumed.export_state(), whole.export_state(), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_excluded_lower_bound_refuses_the_bound_itself() {
    let reg = Registry::zoo();
    let err = reg
        .build::<f64>(&json!({"optimizer": "schedule_free_sgd", "momentum": 0.0}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("momentum") && err.contains("(0, 1)"), "{err}");
    assert!(reg
        .build::<f64>(&json!({"optimizer": "schedule_free_sgd", "momentum": 1e-9}))
        .is_ok());
}

/// Adafactor on matrices with rows longer than the kernel's 256-column sub-blocks, against
/// torch's rule written out in plain Rust (f64, 1e-12).
#[test]
fn adafactor_on_wide_matrices_follows_the_plain_rule() {
    let (rows, cols) = (3usize, 700usize);
    let (lr, decay, eps1, eps2, d): (f64, f64, f64, f64, f64) = (0.01, -0.8, 1e-30, 1e-3, 1.0);
    let mut params = Params::new()
        .with("w", wiggly::<f64>(1, &[rows, cols]))
        .unwrap();
    let mut w: Vec<f64> = params.get("w").unwrap().iter().copied().collect();
    let (mut r, mut c) = (vec![0.0; rows], vec![0.0; cols]);
    let mut opt = build(json!({"optimizer": "adafactor", "lr": lr, "eps1": eps1}));
    for t in 1..=4 {
        let g: Vec<f64> = wiggly::<f64>(10 + t, &[rows, cols])
            .iter()
            .copied()
            .collect();
        let tf = t as f64;
        let beta2t = tf.powf(decay);
        let rms_w = (w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64).sqrt();
        let alpha = eps2.max(rms_w) * lr.min(1.0 / tf.sqrt());
        for i in 0..rows {
            let mean: f64 = (0..cols).map(|j| g[i * cols + j].powi(2)).sum::<f64>() / cols as f64;
            r[i] += beta2t * (mean - r[i]);
        }
        for j in 0..cols {
            let mean: f64 = (0..rows).map(|i| g[i * cols + j].powi(2)).sum::<f64>() / rows as f64;
            c[j] += beta2t * (mean - c[j]);
        }
        let r_mean = r.iter().sum::<f64>() / rows as f64;
        let u: Vec<f64> = (0..rows * cols)
            .map(|e| {
                let v = r[e / cols] * c[e % cols] / r_mean.max(eps1);
                g[e] / v.max(eps1 * eps1).sqrt()
            })
            .collect();
        let rms_u = (u.iter().map(|x| x * x).sum::<f64>() / u.len() as f64).sqrt();
        for (x, u) in w.iter_mut().zip(&u) {
            *x -= alpha * u / (rms_u / d).max(1.0);
        }
        let grads = Grads::new().with("w", wiggly::<f64>(10 + t, &[rows, cols]));
        opt.step(&mut params, &grads).unwrap();
    }
    for (got, want) in params.get("w").unwrap().iter().zip(&w) {
        assert!(
            (got - want).abs() <= 1e-12 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }
}
