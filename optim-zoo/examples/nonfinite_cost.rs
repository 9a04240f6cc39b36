//! What each non-finite policy costs per step, measured: Adam in f32 on one parameter,
//! small (in cache) and large (streams from memory), all gradients finite (the common
//! case: the scan finds nothing and every parameter is stepped).
//!
//! ```sh
//! cargo run --release -p optim-zoo --example nonfinite_cost
//! ```

use ndarray::Array1;
use optim_core::{Grads, NonFinitePolicy, OptimError, Optimizer, Params};
use optim_zoo::Adam;
use std::time::Instant;

/// Seconds per step of `steps` steps.
fn time_steps(
    opt: &mut dyn Optimizer<f32>,
    p: &mut Params<f32>,
    g: &Grads<f32>,
    steps: usize,
) -> f64 {
    let t = Instant::now();
    for _ in 0..steps {
        opt.step(p, g).unwrap();
    }
    t.elapsed().as_secs_f64() / steps as f64
}

fn main() -> Result<(), OptimError> {
    const POLICIES: [NonFinitePolicy; 3] = [
        NonFinitePolicy::Propagate,
        NonFinitePolicy::SkipParam,
        NonFinitePolicy::Error,
    ];
    const REPS: usize = 15;
    println!("Adam (f32), one parameter, gradients all finite; per step, median of {REPS} interleaved runs");
    println!(
        "{:>10} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "elements", "propagate", "skip_param", "error", "skip +%", "error +%"
    );
    for (n, steps) in [(4_096usize, 20_000usize), (262_144, 400), (4_194_304, 25)] {
        let g = Grads::new().with(
            "w",
            Array1::from_iter((0..n).map(|i| ((i % 97) as f32 - 48.0) * 1e-3)),
        );
        let mut runs = Vec::new();
        for policy in POLICIES {
            let p = Params::new().with("w", Array1::<f32>::from_elem(n, 0.5))?;
            let mut opt = Adam::default().lr(1e-3).build::<f32>()?;
            opt.set_non_finite_policy(policy)?;
            runs.push((opt, p, Vec::with_capacity(REPS)));
        }
        // Warm up, then alternate the policies so that load from elsewhere hits all alike.
        for (opt, p, _) in &mut runs {
            time_steps(opt, p, &g, steps.min(50));
        }
        for _ in 0..REPS {
            for (opt, p, times) in &mut runs {
                times.push(time_steps(opt, p, &g, steps));
            }
        }
        let per: Vec<f64> = runs
            .iter_mut()
            .map(|(_, _, t)| {
                t.sort_by(f64::total_cmp);
                t[REPS / 2]
            })
            .collect();
        let pct = |x: f64| 100.0 * (x / per[0] - 1.0);
        println!(
            "{n:>10} {:>10.1}us {:>10.1}us {:>10.1}us {:>9.1}% {:>9.1}%",
            per[0] * 1e6,
            per[1] * 1e6,
            per[2] * 1e6,
            pct(per[1]),
            pct(per[2])
        );
    }
    // The scan alone, for reference: one read pass over the gradient.
    let n = 4_194_304;
    let v: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let t = Instant::now();
    let mut found = 0;
    for _ in 0..50 {
        found +=
            optim_core::nonfinite::first_non_finite(std::hint::black_box(&v)).is_some() as usize;
    }
    let s = t.elapsed().as_secs_f64() / 50.0;
    println!(
        "scan alone: {n} f32 in {:.1}us ({:.1} GB/s), found {found}",
        s * 1e6,
        n as f64 * 4.0 / s / 1e9
    );
    Ok(())
}
