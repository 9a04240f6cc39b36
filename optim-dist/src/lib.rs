//! # optim-dist
//!
//! ZeRO stage 1 (Rajbhandari et al., 2019) for any `optim-core` optimizer: in
//! data-parallel training over `N` processes, each keeps and updates the optimizer state
//! of `1/N` of the parameters ([`Sharded`]), moving per step what an all-reduce of the
//! gradients moves.
//!
//! The processes talk through [`Comm`], a small set of collectives with two
//! implementations: [`ThreadComm`] (threads of one process: tests, and users without
//! MPI) and, with the `mpi` feature, [`MpiComm`] (MPI through rsmpi).
//!
//! ```
//! use std::sync::Arc;
//! use ndarray::Array1;
//! use optim_core::{Grads, Optimizer, Params};
//! use optim_dist::{Comm, Sharded, ThreadComm};
//!
//! # fn main() -> optim_core::Result<()> {
//! // Two ranks as two threads; each has its own gradient (its part of the batch).
//! let finals = ThreadComm::run(2, |comm| -> optim_core::Result<Vec<f32>> {
//!     let comm: Arc<dyn Comm> = Arc::new(comm);
//!     let rank = comm.rank() as f32;
//!     let mut params = Params::<f32>::new().with("w", Array1::<f32>::zeros(5))?;
//!     let adam = optim_zoo::build::<f32>(&serde_json::json!({"optimizer": "adam", "lr": 0.1}))?;
//!     let mut opt = Sharded::new(adam, comm)?; // each rank holds Adam's m, v for 3 or 2 of 5
//!     let grads = Grads::new().with("w", Array1::from_elem(5, 1.0 + rank));
//!     opt.step(&mut params, &grads)?; // steps with the mean gradient, 1.5
//!     Ok(params.get("w").unwrap().iter().copied().collect())
//! })?;
//! for w in finals {
//!     // Adam's first step is −lr·ḡ/(|ḡ| + ε), on every rank alike.
//!     assert!(w?.iter().all(|&x| (x + 0.1).abs() < 1e-6));
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod comm;
mod layout;
#[cfg(feature = "mpi")]
mod mpi;
mod sharded;
mod threads;

pub use comm::{all_gather_bytes, Buf, BufMut, Comm, ReduceOrder, Wire};
pub use layout::{Layout, Segment, ShardRule};
#[cfg(feature = "mpi")]
pub use mpi::MpiComm;
pub use sharded::{Sharded, SHARD_STATE};
pub use threads::ThreadComm;
