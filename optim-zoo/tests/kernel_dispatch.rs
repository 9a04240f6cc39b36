//! The fast paths change nothing: every registry optimizer gives the same bits under
//! every instruction set the CPU has and with one or two threads (a large tensor split
//! into chunks, many small tensors stepped as parallel tasks, sparse rows), in f32 and
//! f64.
//!
//! One `#[test]`: the instruction set and the thread count are process-wide settings.

use ndarray::{Array1, Array2};
use optim_core::kernel::{self, Isa};
use optim_core::{Grads, Optimizer, Params, Scalar, TensorData};
use optim_test_support::wiggles;
use optim_zoo::Registry;
use serde_json::json;

/// A large tensor (split into chunks), many small ones (parallel tasks), a matrix in
/// column-major order (the copy path) and embeddings with sparse rows (repeated, and
/// distinct out of order).
fn setup<T: Scalar>() -> (Params<T>, Grads<T>) {
    let mut params = Params::new();
    let mut grads = Grads::new();
    params
        .insert("big", Array1::from(wiggles::<T>(1, 100_001)))
        .unwrap();
    grads.insert("big", Array1::from(wiggles::<T>(2, 100_001)));
    for i in 0..150 {
        let name = format!("small{i}");
        params
            .insert(
                name.clone(),
                Array1::from(wiggles::<T>((10 + i) as u64, 1000 + i)),
            )
            .unwrap();
        grads.insert(name, Array1::from(wiggles::<T>((500 + i) as u64, 1000 + i)));
    }
    let cm = Array2::from_shape_vec((30, 20), wiggles::<T>(3, 600)).unwrap();
    params.insert("cm", cm).unwrap();
    let gcm = Array2::from_shape_vec((20, 30), wiggles::<T>(4, 600)).unwrap();
    grads.insert("cm", gcm.reversed_axes());
    params
        .insert(
            "emb",
            Array2::from_shape_vec((500, 16), wiggles::<T>(5, 8000)).unwrap(),
        )
        .unwrap();
    let rows = Array2::from_shape_vec((5, 16), wiggles::<T>(6, 80)).unwrap();
    grads.insert_rows("emb", vec![400, 3, 77, 3, 499], rows);
    // Distinct rows out of order: passed to the kernel as given, without a copy.
    params
        .insert(
            "emb2",
            Array2::from_shape_vec((300, 8), wiggles::<T>(7, 2400)).unwrap(),
        )
        .unwrap();
    let rows = Array2::from_shape_vec((4, 8), wiggles::<T>(8, 32)).unwrap();
    grads.insert_rows("emb2", vec![250, 7, 299, 0], rows);
    (params, grads)
}

fn config(name: &str) -> serde_json::Value {
    match name {
        "lookahead" => json!({"optimizer": "lookahead", "inner": {"optimizer": "adam"}, "k": 2}),
        "partition" => json!({"optimizer": "partition", "routes": [
            {"select": {"ndim": 2}, "optimizer": {"optimizer": "lazyadam"}},
            {"optimizer": {"optimizer": "nadam"}},
        ]}),
        // Muon steps matrices only: the others go to AdamW.
        "muon" => json!({"optimizer": "partition", "routes": [
            {"select": {"ndim": 2}, "optimizer": {"optimizer": "muon"}},
            {"optimizer": {"optimizer": "adamw"}},
        ]}),
        _ => json!({ "optimizer": name }),
    }
}

/// Every parameter's bits and every state's bits after 3 steps.
fn run<T: Scalar>(name: &str) -> Vec<u64> {
    let mut opt: Box<dyn Optimizer<T>> = Registry::zoo().build::<T>(&config(name)).unwrap();
    let (mut params, grads) = setup::<T>();
    for _ in 0..3 {
        opt.step(&mut params, &grads).unwrap();
    }
    let mut bits: Vec<u64> = params
        .iter()
        .flat_map(|(_, p)| {
            p.iter()
                .map(|&x| Scalar::to_f64(x).to_bits())
                .collect::<Vec<_>>()
        })
        .collect();
    state_bits(&opt.export_state(), &mut bits);
    bits
}

/// The bits of every state tensor and scalar, the wrapped optimizer's included.
fn state_bits(state: &optim_core::OptimizerState, out: &mut Vec<u64>) {
    for p in &state.params {
        out.push(p.step);
        for t in &p.tensors {
            match &t.data {
                TensorData::F32(v) => out.extend(v.iter().map(|x| u64::from(x.to_bits()))),
                TensorData::F64(v) => out.extend(v.iter().map(|x| x.to_bits())),
                TensorData::Bf16(v) => out.extend(v.iter().map(|&x| u64::from(x))),
                TensorData::U8(v) => out.extend(v.iter().map(|&x| u64::from(x))),
            }
        }
        out.extend(p.scalars.iter().map(|(_, x)| x.to_bits()));
    }
    if let Some(inner) = &state.inner {
        state_bits(inner, out);
    }
    for route in &state.routes {
        state_bits(&route.state, out);
    }
}

fn check_all<T: Scalar>(names: &[&str]) {
    for &name in names {
        kernel::set_isa(Isa::Portable);
        optim_core::set_num_threads(1).unwrap();
        let reference = run::<T>(name);
        for (isa, threads) in [(Isa::Avx512, 1), (Isa::Avx512, 2), (Isa::Avx2, 2)] {
            let used = kernel::set_isa(isa);
            {
                optim_core::set_num_threads(threads).unwrap();
                assert!(
                    run::<T>(name) == reference,
                    "{name} ({:?}): {} with {threads} threads differs from portable, 1 thread",
                    T::DTYPE,
                    used.name()
                );
            }
        }
    }
}

#[test]
fn same_bits_under_every_instruction_set_and_thread_count() {
    let names = Registry::zoo().names();
    check_all::<f32>(&names);
    check_all::<f64>(&["adam", "sgd", "nag", "rmsprop", "lazyadam", "ranger"]);
    kernel::set_isa(Isa::Avx512);
    optim_core::set_num_threads(0).unwrap();
}
