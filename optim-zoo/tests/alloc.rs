//! Every registry optimizer steps without touching the heap once warmed up, counted
//! with a global allocator on every thread.
//!
//! One `#[test]` only: the counter is process-wide, and a test running next to it
//! would be counted too.

use ndarray::{Array1, Array2};
use optim_core::{Grads, Optimizer, Params};
use optim_test_support::alloc::{allocations_anywhere as allocations, Counting};
use optim_test_support::wiggles;
use optim_zoo::Registry;
use serde_json::json;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A dense matrix, a vector, an embedding with a sparse-row gradient (repeated rows,
/// unsorted, so the runtime sums and sorts them), one with distinct rows out of order,
/// `many` small tensors and one of `big` elements.
fn setup(many: usize, big: usize) -> (Params<f32>, Grads<f32>) {
    let mut params = Params::new();
    let mut grads = Grads::new();
    params
        .insert(
            "w",
            Array2::from_shape_vec((16, 32), wiggles::<f32>(1, 512)).unwrap(),
        )
        .unwrap();
    grads.insert(
        "w",
        Array2::from_shape_vec((16, 32), wiggles::<f32>(2, 512)).unwrap(),
    );
    params
        .insert("bias", Array1::from(wiggles::<f32>(3, 32)))
        .unwrap();
    grads.insert("bias", Array1::from(wiggles::<f32>(4, 32)));
    params
        .insert(
            "emb",
            Array2::from_shape_vec((64, 8), wiggles::<f32>(5, 512)).unwrap(),
        )
        .unwrap();
    let rows = Array2::from_shape_vec((4, 8), wiggles::<f32>(6, 32)).unwrap();
    grads.insert_rows("emb", vec![9, 2, 9, 40], rows);
    params
        .insert(
            "emb2",
            Array2::from_shape_vec((64, 8), wiggles::<f32>(7, 512)).unwrap(),
        )
        .unwrap();
    let rows = Array2::from_shape_vec((3, 8), wiggles::<f32>(8, 24)).unwrap();
    grads.insert_rows("emb2", vec![50, 3, 17], rows);
    for i in 0..many {
        let name = format!("layer{i}");
        params
            .insert(
                name.clone(),
                Array1::from(wiggles::<f32>((10 + i) as u64, 1000)),
            )
            .unwrap();
        grads.insert(name, Array1::from(wiggles::<f32>((1000 + i) as u64, 1000)));
    }
    if big > 0 {
        params
            .insert("big", Array1::from(wiggles::<f32>(7, big)))
            .unwrap();
        grads.insert("big", Array1::from(wiggles::<f32>(8, big)));
    }
    (params, grads)
}

fn config(name: &str) -> serde_json::Value {
    match name {
        "lookahead" => json!({"optimizer": "lookahead", "inner": {"optimizer": "adam"}}),
        // The matrices (sparse-row embeddings among them) to SGD with momentum, the rest
        // to AdamW.
        "partition" => json!({"optimizer": "partition", "routes": [
            {"select": {"ndim": 2}, "optimizer": {"optimizer": "sgd", "momentum": 0.9}},
            {"optimizer": {"optimizer": "adamw"}},
        ]}),
        // Muon steps matrices only: the others go to AdamW.
        "muon" => json!({"optimizer": "partition", "routes": [
            {"select": {"ndim": 2}, "optimizer": {"optimizer": "muon"}},
            {"optimizer": {"optimizer": "adamw"}},
        ]}),
        _ => json!({ "optimizer": name }),
    }
}

/// Allocations of 3 steps after 2 warm-up steps.
fn steady_state(opt: &mut dyn Optimizer<f32>, many: usize, big: usize) -> usize {
    let (mut params, grads) = setup(many, big);
    opt.step(&mut params, &grads).unwrap(); // allocates state and scratch
    opt.step(&mut params, &grads).unwrap();
    allocations(|| {
        for _ in 0..3 {
            opt.step(&mut params, &grads).unwrap();
        }
    })
}

#[test]
fn steady_state_steps_do_not_allocate() {
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8]))) >= 1);
    let registry = Registry::zoo();
    let names = registry.names();
    assert!(names.len() >= 15, "{names:?}");

    // One thread: no allocation at all, small or large, for every optimizer but Muon,
    // whose matrix products allocate their packing buffers in `matrixmultiply` (a fixed
    // number per product, next to O(n³) work; see `muon_allocates_only_in_matrix_products`).
    optim_core::set_num_threads(1).unwrap();
    for &name in names.iter().filter(|&&n| n != "muon") {
        let mut opt = registry.build::<f32>(&config(name)).unwrap();
        assert_eq!(steady_state(opt.as_mut(), 4, 0), 0, "{name}, 1 thread");
        let mut opt = registry.build::<f32>(&config(name)).unwrap();
        assert_eq!(
            steady_state(opt.as_mut(), 300, 300_000),
            0,
            "{name}, 1 thread, large"
        );
        // Compact states are decoded into and encoded from buffers on the stack.
        for precision in ["bf16", "q8"] {
            let mut opt = registry.build::<f32>(&config(name)).unwrap();
            let p = optim_core::StatePrecision::parse::<f32>(precision).unwrap();
            opt.set_state_precision(p).unwrap();
            assert_eq!(
                steady_state(opt.as_mut(), 4, 300_000),
                0,
                "{name}, 1 thread, {precision} states"
            );
        }
    }
    muon_allocates_only_in_matrix_products(&registry);

    // Two threads, a small step (stays on the calling thread): no allocation either.
    // (The pool's threads allocate as they start: wait until they all run.)
    optim_core::set_num_threads(2).unwrap();
    optim_core::kernel::in_pool(|| optim_core::rayon::broadcast(|_| ()));
    for &name in names.iter().filter(|&&n| n != "muon") {
        let mut opt = registry.build::<f32>(&config(name)).unwrap();
        assert_eq!(
            steady_state(opt.as_mut(), 4, 0),
            0,
            "{name}, 2 threads, small"
        );
    }

    // Two threads, large enough to run in parallel: rayon's work queues may allocate
    // a block now and then (crossbeam's injector allocates one per 63 injected jobs);
    // the optimizer itself allocates nothing. Reported, not asserted.
    let mut opt = registry.build::<f32>(&config("adam")).unwrap();
    let n = steady_state(opt.as_mut(), 300, 300_000);
    eprintln!("adam, 2 threads, parallel steps: {n} allocations in 3 steps");
    optim_core::set_num_threads(0).unwrap();
}

/// Muon's only allocations are `matrixmultiply`'s packing buffers: the same number every
/// step (15 products for 5 Newton–Schulz iterations per matrix), none in the runtime or the
/// generated kernel, and nothing that grows. Called with one thread.
fn muon_allocates_only_in_matrix_products(registry: &Registry) {
    let mut opt = registry.build::<f32>(&config("muon")).unwrap();
    let (mut params, grads) = setup(4, 0);
    let matrices = params.iter().filter(|(_, p)| p.ndim() == 2).count();
    opt.step(&mut params, &grads).unwrap();
    opt.step(&mut params, &grads).unwrap();
    let per_step: Vec<usize> = (0..3)
        .map(|_| allocations(|| opt.step(&mut params, &grads).unwrap()))
        .collect();
    assert!(per_step.iter().all(|&n| n == per_step[0]), "{per_step:?}");
    assert!(
        per_step[0] <= 15 * 2 * matrices,
        "{per_step:?} for {matrices} matrices"
    );
}
