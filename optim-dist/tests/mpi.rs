//! The scenarios of `tests/threads.rs` over MPI (feature `mpi`).
//!
//! `cargo test -p optim-dist --features mpi --test mpi` runs this binary without
//! `mpiexec`; it then launches itself under `mpiexec -n 1`, `-n 2`, `-n 3` and `-n 4`,
//! once with MPI's own reduction order and once with the rank order, and fails if any
//! run fails. Under `mpiexec` each rank runs every scenario and prints what differs.

mod common;

use optim_dist::{Comm, MpiComm, ReduceOrder, ThreadComm};
use std::process::{Command, ExitCode};
use std::sync::Arc;

/// Set by the launcher: which reduction order the ranks use.
const ORDER_VAR: &str = "OPTIM_DIST_TEST_ORDER";

fn main() -> ExitCode {
    // MPICH's process manager sets PMI_RANK in every process it starts.
    if std::env::var_os("PMI_RANK").is_none() {
        return launch();
    }
    let order = match std::env::var(ORDER_VAR).as_deref() {
        Ok("rank") => ReduceOrder::Rank,
        _ => ReduceOrder::Native,
    };
    let comm = match MpiComm::init() {
        Ok(c) => c.with_order(order),
        Err(e) => {
            eprintln!("cannot start MPI: {e}");
            return ExitCode::FAILURE;
        }
    };
    let comm: Arc<dyn Comm> = Arc::new(comm);
    let (rank, n) = (comm.rank(), comm.size());
    // Native sums of 3 or more ranks are added in MPI's order: equal to rounding only.
    let exact = order == ReduceOrder::Rank || n <= 2;
    let mut failures = 0;
    let mut report = |what: &str, outcome: common::Outcome| match outcome {
        Ok(()) => {
            if rank == 0 {
                println!("ok   {what} ({n} ranks, {order:?} order)");
            }
        }
        Err(e) => {
            failures += 1;
            eprintln!("FAIL {what} ({n} ranks, {order:?} order), rank {rank}: {e}");
        }
    };
    report(
        "every registry optimizer == unsharded",
        common::equivalence(&comm, exact),
    );
    report(
        "clipping by the global norm",
        common::clipping(&comm, exact),
    );
    report("sparse-row gradients", common::sparse_rows(&comm, exact));
    report(
        "a bad gradient on one rank changes nothing anywhere",
        common::error_on_one_rank(&comm),
    );
    match common::resume(&comm, "mpi", exact) {
        Err(e) => report("resume from shards and consolidated", Err(e)),
        Ok(files) => {
            report("resume from shards and consolidated", Ok(()));
            // The consolidated files of this MPI run, loaded at every other world size
            // (thread groups inside rank 0).
            if rank == 0 {
                for m in 1..=4 {
                    let outcomes = ThreadComm::run(m, |c| {
                        let c: Arc<dyn Comm> = Arc::new(c);
                        common::load_elsewhere(&c, &files, n, exact)
                    });
                    let outcome = match outcomes {
                        Ok(all) => all.into_iter().collect(),
                        Err(e) => Err(e.to_string()),
                    };
                    report(
                        &format!("consolidated on {n}, loaded on {m} threads"),
                        outcome,
                    );
                }
                if let Some((_, f)) = files.first() {
                    let _ = std::fs::remove_dir_all(f.parent().unwrap_or(f));
                }
            }
        }
    }
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs this binary under `mpiexec -n 1..4` in both reduction orders.
fn launch() -> ExitCode {
    let Ok(me) = std::env::current_exe() else {
        eprintln!("cannot find this test binary");
        return ExitCode::FAILURE;
    };
    let mut ok = true;
    for order in ["native", "rank"] {
        for n in 1..=4 {
            let status = Command::new("mpiexec")
                .args(["-n", &n.to_string()])
                .arg(&me)
                .env(ORDER_VAR, order)
                .status();
            match status {
                Ok(s) if s.success() => {}
                Ok(s) => {
                    eprintln!("mpiexec -n {n} ({order} order): {s}");
                    ok = false;
                }
                Err(e) => {
                    eprintln!("cannot run mpiexec (install MPICH: apt-get install mpich libmpich-dev): {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
