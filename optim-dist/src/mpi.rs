//! The collectives over MPI (rsmpi on the system's MPI library; feature `mpi`).

use crate::comm::{check_pair, comm_error, sum_in_rank_order, Buf, BufMut, Comm, ReduceOrder};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;
use optim_core::Result;
use std::fmt;

/// `MPI_COMM_WORLD`: every process `mpiexec` started.
///
/// Created once per process by [`MpiComm::init`] (which initializes MPI; dropping the
/// last handle finalizes it). MPI errors abort the job (MPI's default error handler);
/// what this type returns as errors are calls it refuses before reaching MPI.
pub struct MpiComm {
    world: SimpleCommunicator,
    order: ReduceOrder,
    rank: usize,
    size: usize,
    // Declared last: finalizes MPI after the communicator is gone.
    _universe: Universe,
}

impl fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpiComm")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("order", &self.order)
            .finish()
    }
}

impl MpiComm {
    /// Initializes MPI (`MPI_THREAD_SERIALIZED`: the optimizer may move between threads,
    /// one call at a time) and returns the world. Errors if MPI was already initialized
    /// or does not grant that level.
    pub fn init() -> Result<MpiComm> {
        let (universe, level) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| comm_error("MPI is already initialized in this process"))?;
        if level < Threading::Serialized {
            return Err(comm_error(format_args!(
                "the MPI library grants thread level {level:?}; MPI_THREAD_SERIALIZED is needed"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(MpiComm {
            world,
            order: ReduceOrder::Native,
            rank,
            size,
            _universe: universe,
        })
    }

    /// The same communicator, summing in `order` (default [`ReduceOrder::Native`]).
    pub fn with_order(mut self, order: ReduceOrder) -> MpiComm {
        self.order = order;
        self
    }

    /// How sums are added up.
    pub fn order(&self) -> ReduceOrder {
        self.order
    }

    /// The underlying communicator, for the application's own MPI calls.
    pub fn world(&self) -> &SimpleCommunicator {
        &self.world
    }

    fn rank_ordered_reduce_scatter<T>(&self, send: &[T], recv: &mut [T])
    where
        T: Equivalence + Copy + Default + std::ops::AddAssign,
    {
        // Block q of every rank goes to rank q (what a reduce-scatter sends), which adds
        // the blocks in rank order.
        let mut blocks = vec![T::default(); send.len()];
        self.world.all_to_all_into(send, &mut blocks[..]);
        let b = recv.len();
        sum_in_rank_order(blocks.chunks_exact(b.max(1)).take(self.size), recv);
    }

    fn rank_ordered_all_reduce<T>(&self, buf: &mut [T])
    where
        T: Equivalence + Copy + Default + std::ops::AddAssign,
    {
        let mut all = vec![T::default(); buf.len() * self.size];
        self.world.all_gather_into(&buf[..], &mut all[..]);
        let n = buf.len();
        sum_in_rank_order(all.chunks_exact(n.max(1)).take(self.size), buf);
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, buf: BufMut<'_>) -> Result<()> {
        match (buf, self.order) {
            (BufMut::U8(_), _) => return Err(comm_error("all_reduce_sum: bytes cannot be summed")),
            (BufMut::F32(b), ReduceOrder::Native) => {
                let send = b.to_vec();
                self.world
                    .all_reduce_into(&send[..], b, SystemOperation::sum());
            }
            (BufMut::F64(b), ReduceOrder::Native) => {
                let send = b.to_vec();
                self.world
                    .all_reduce_into(&send[..], b, SystemOperation::sum());
            }
            (BufMut::F32(b), ReduceOrder::Rank) => self.rank_ordered_all_reduce(b),
            (BufMut::F64(b), ReduceOrder::Rank) => self.rank_ordered_all_reduce(b),
        }
        Ok(())
    }

    fn reduce_scatter_sum(&self, send: Buf<'_>, recv: BufMut<'_>) -> Result<()> {
        check_pair("reduce_scatter_sum", &recv.as_buf(), &send, self.size)?;
        match (send, recv, self.order) {
            (Buf::F32(s), BufMut::F32(r), ReduceOrder::Native) => self
                .world
                .reduce_scatter_block_into(s, r, SystemOperation::sum()),
            (Buf::F64(s), BufMut::F64(r), ReduceOrder::Native) => self
                .world
                .reduce_scatter_block_into(s, r, SystemOperation::sum()),
            (Buf::F32(s), BufMut::F32(r), ReduceOrder::Rank) => {
                self.rank_ordered_reduce_scatter(s, r)
            }
            (Buf::F64(s), BufMut::F64(r), ReduceOrder::Rank) => {
                self.rank_ordered_reduce_scatter(s, r)
            }
            _ => return Err(comm_error("reduce_scatter_sum: bytes cannot be summed")),
        }
        Ok(())
    }

    fn all_gather(&self, send: Buf<'_>, recv: BufMut<'_>) -> Result<()> {
        check_pair("all_gather", &send, &recv.as_buf(), self.size)?;
        match (send, recv) {
            (Buf::F32(s), BufMut::F32(r)) => self.world.all_gather_into(s, r),
            (Buf::F64(s), BufMut::F64(r)) => self.world.all_gather_into(s, r),
            (Buf::U8(s), BufMut::U8(r)) => self.world.all_gather_into(s, r),
            _ => unreachable_types()?,
        }
        Ok(())
    }

    fn broadcast(&self, buf: BufMut<'_>, root: usize) -> Result<()> {
        if root >= self.size {
            return Err(comm_error(format_args!(
                "broadcast: root {root} is not a rank of a group of {}",
                self.size
            )));
        }
        let root = self.world.process_at_rank(root as i32);
        match buf {
            BufMut::F32(b) => root.broadcast_into(b),
            BufMut::F64(b) => root.broadcast_into(b),
            BufMut::U8(b) => root.broadcast_into(b),
        }
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }
}

/// `check_pair` has refused buffers of two element types already.
fn unreachable_types() -> Result<()> {
    Err(comm_error("buffers of two element types"))
}
