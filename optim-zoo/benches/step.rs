//! Criterion benchmarks of one optimizer step (f32, dense gradient) through the public
//! API: `registry::build` and `Optimizer::step`.
//!
//! ```text
//! cargo bench -p optim-zoo --bench step                 # everything (about 2 minutes)
//! cargo bench -p optim-zoo --bench step -- adam/        # one optimizer
//! cargo bench -p optim-zoo --bench step -- '/1t'        # one thread only
//! ```
//!
//! Each optimizer (`adam`, `adamw`, `momentum` = SGD with momentum 0.9, `rmsprop`,
//! `lazyadam`) at 64K, 1M and 16M elements, with 1 and 2 threads
//! (`optim_core::set_num_threads`). Ids read `algo/elements/threads`; throughput is in
//! elements per second. Samples and measurement times are kept small so the whole run
//! stays short; for the head-to-head comparisons with a hand-written loop, ndarray and
//! a bandwidth probe, see `examples/step_bench.rs` and `benches/RESULTS.md`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::Array1;
use optim_core::{Grads, Params};
use serde_json::json;
use std::time::Duration;

const ALGOS: [&str; 5] = ["adam", "adamw", "momentum", "rmsprop", "lazyadam"];
const SIZES: [usize; 3] = [1 << 16, 1 << 20, 1 << 24];
const THREADS: [usize; 2] = [1, 2];

fn values(n: usize, seed: u32) -> Array1<f32> {
    Array1::from_iter((0..n as u32).map(|i| {
        let x = i
            .wrapping_mul(2_654_435_761)
            .wrapping_add(seed.wrapping_mul(40_503));
        (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    }))
}

fn steps(c: &mut Criterion) {
    for algo in ALGOS {
        let mut group = c.benchmark_group(algo);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
        for n in SIZES {
            let mut opt = optim_zoo::registry::build::<f32>(&json!({ "optimizer": algo }))
                .expect("registry optimizer");
            let mut params = Params::new().with("w", values(n, 1)).expect("params");
            let grads = Grads::new().with("w", values(n, 2));
            opt.step(&mut params, &grads).expect("step"); // allocates the state
            group.throughput(Throughput::Elements(n as u64));
            for threads in THREADS {
                optim_core::set_num_threads(threads).expect("thread pool");
                let id = BenchmarkId::new(n.to_string(), format!("{threads}t"));
                group.bench_function(id, |b| {
                    b.iter(|| opt.step(&mut params, &grads).expect("step"))
                });
            }
        }
        group.finish();
    }
    optim_core::set_num_threads(0).expect("default threads");
}

criterion_group!(benches, steps);
criterion_main!(benches);
