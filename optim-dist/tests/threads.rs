//! The sharded optimizer over groups of 1 to 4 threads ([`ThreadComm`]), against the
//! unsharded optimizer: every registry optimizer, uneven shards, errors on one rank,
//! resuming from shards and from consolidated checkpoints at other world sizes.

mod common;

use common::Outcome;
use optim_dist::{Comm, ThreadComm};
use std::sync::Arc;

/// Runs `scenario` on a group of `n` threads; every rank must pass.
fn on_ranks(n: usize, scenario: impl Fn(&Arc<dyn Comm>) -> Outcome + Sync) {
    let outcomes = ThreadComm::run(n, |c| {
        let comm: Arc<dyn Comm> = Arc::new(c);
        scenario(&comm)
    })
    .unwrap();
    for (rank, outcome) in outcomes.into_iter().enumerate() {
        if let Err(e) = outcome {
            panic!("{n} ranks, rank {rank}: {e}");
        }
    }
}

#[test]
fn every_registry_optimizer_steps_as_unsharded_on_1_to_4_ranks() {
    for n in 1..=4 {
        on_ranks(n, |c| common::equivalence(c, true));
    }
}

#[test]
fn clipping_by_the_global_norm_of_the_mean_gradient() {
    for n in 1..=4 {
        on_ranks(n, |c| common::clipping(c, true));
    }
}

#[test]
fn sparse_row_gradients_average_as_dense() {
    for n in 1..=4 {
        on_ranks(n, |c| common::sparse_rows(c, true));
    }
}

#[test]
fn a_bad_gradient_on_one_rank_fails_every_rank_and_changes_nothing() {
    for n in 1..=4 {
        on_ranks(n, common::error_on_one_rank);
    }
}

#[test]
fn resume_from_shards_and_from_consolidated_checkpoints_at_any_world_size() {
    for saved_on in 1..=4 {
        let files = std::sync::Mutex::new(Vec::new());
        on_ranks(saved_on, |c| {
            let got = common::resume(c, "threads", true)?;
            if c.rank() == 0 {
                *files.lock().unwrap() = got;
            }
            Ok(())
        });
        let files = files.into_inner().unwrap();
        for n in 1..=4 {
            on_ranks(n, |c| common::load_elsewhere(c, &files, saved_on, true));
        }
        if let Some((_, f)) = files.first() {
            let _ = std::fs::remove_dir_all(f.parent().unwrap());
        }
    }
}
