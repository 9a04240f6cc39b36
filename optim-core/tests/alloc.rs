//! Steady-state steps do not touch the heap: counted with a global allocator.

mod common;

use common::*;
use ndarray::Array2;
use optim_core::optim::Optim;
use optim_core::wrapper::Wrapped;
use optim_core::*;
use optim_test_support::alloc::{allocations_on_this_thread as allocations, Counting};
use optim_test_support::wiggly;

#[global_allocator]
static GLOBAL: Counting = Counting;

fn setup() -> (Params<f32>, Grads<f32>) {
    let params = Params::new()
        .with("emb", wiggly::<f32>(1, &[8, 4]))
        .unwrap()
        .with("w", wiggly::<f32>(2, &[3, 5]))
        .unwrap()
        .with("bias", wiggly::<f32>(3, &[5]))
        .unwrap();
    let mut grads = Grads::new()
        .with("w", wiggly::<f32>(4, &[3, 5]))
        .with("bias", wiggly::<f32>(5, &[5]));
    let rows: Array2<f32> = wiggly::<f32>(6, &[3, 4]).into_dimensionality().unwrap();
    grads.insert_rows("emb", vec![5, 1, 5], rows);
    (params, grads)
}

fn steady_state_is_allocation_free(opt: &mut dyn Optimizer<f32>) {
    let (mut params, grads) = setup();
    opt.step(&mut params, &grads).unwrap(); // allocates state and scratch
    opt.step(&mut params, &grads).unwrap();
    let n = allocations(|| {
        for _ in 0..3 {
            opt.step(&mut params, &grads).unwrap();
        }
    });
    assert_eq!(n, 0, "{}", opt.name());
}

#[test]
fn steady_state_steps_do_not_allocate() {
    assert_eq!(allocations(|| drop(std::hint::black_box(vec![1u8]))), 1);
    let sgd = Sgd::default().lr(0.01).momentum(0.9);
    let lazy = LazySgd::default().lr(0.01).momentum(0.9);
    let mut dense = Optim::<Sgd, f32>::new(sgd.clone()).unwrap();
    dense
        .add_group(Group::name_contains(["bias"]).set("lr", 0.1))
        .unwrap();
    steady_state_is_allocation_free(&mut dense);
    steady_state_is_allocation_free(&mut Optim::<LazySgd, f32>::new(lazy.clone()).unwrap());
    // The scans of the non-finite policies, repeated sparse rows included, allocate nothing
    // either (their sums are made only for values that could overflow).
    for policy in [NonFinitePolicy::SkipParam, NonFinitePolicy::Error] {
        let mut dense = Optim::<Sgd, f32>::new(sgd.clone()).unwrap();
        dense.set_non_finite_policy(policy).unwrap();
        steady_state_is_allocation_free(&mut dense);
        let mut lazy = Optim::<LazySgd, f32>::new(lazy.clone()).unwrap();
        lazy.set_non_finite_policy(policy).unwrap();
        steady_state_is_allocation_free(&mut lazy);
    }
    let inner = Box::new(Optim::<Sgd, f32>::new(sgd.clone()).unwrap());
    let mut wrapped = Wrapped::new(Lookahead { k: 2, alpha: 0.5 }, inner).unwrap();
    steady_state_is_allocation_free(&mut wrapped);
    // The matrices (one with a sparse-row gradient) to SGD, the bias to Lookahead.
    let matrices = Box::new(Optim::<Sgd, f32>::new(sgd.clone()).unwrap());
    let inner = Box::new(Optim::<Sgd, f32>::new(sgd).unwrap());
    let rest = Box::new(Wrapped::new(Lookahead { k: 2, alpha: 0.5 }, inner).unwrap());
    let mut partition = Partition::new(vec![
        Route::new(RouteSelect::all().ndim(2), matrices),
        Route::all(rest),
    ])
    .unwrap();
    steady_state_is_allocation_free(&mut partition);
}
