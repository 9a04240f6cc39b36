//! The collectives a sharded optimizer needs, over a group of `size` processes (ranks
//! `0..size`): sum all-reduce, sum reduce-scatter, all-gather, broadcast, barrier.
//!
//! Every rank of the group must make the same calls in the same order with buffers of
//! the same lengths (as with MPI). Two implementations: [`crate::ThreadComm`] (threads
//! of one process) and, with the `mpi` feature, [`crate::MpiComm`].

use optim_core::{OptimError, Result, Scalar};
use std::fmt;

/// A read-only buffer of one of the element types the collectives carry.
#[derive(Clone, Copy, Debug)]
pub enum Buf<'a> {
    /// `f32` elements.
    F32(&'a [f32]),
    /// `f64` elements.
    F64(&'a [f64]),
    /// Bytes (never summed).
    U8(&'a [u8]),
}

/// A writable buffer of one of the element types the collectives carry.
#[derive(Debug)]
pub enum BufMut<'a> {
    /// `f32` elements.
    F32(&'a mut [f32]),
    /// `f64` elements.
    F64(&'a mut [f64]),
    /// Bytes (never summed).
    U8(&'a mut [u8]),
}

impl Buf<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Buf::F32(b) => b.len(),
            Buf::F64(b) => b.len(),
            Buf::U8(b) => b.len(),
        }
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes per element.
    pub fn elem_bytes(&self) -> usize {
        match self {
            Buf::F32(_) => 4,
            Buf::F64(_) => 8,
            Buf::U8(_) => 1,
        }
    }
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Buf::F32(_) => "f32",
            Buf::F64(_) => "f64",
            Buf::U8(_) => "u8",
        }
    }
}

impl BufMut<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            BufMut::F32(b) => b.len(),
            BufMut::F64(b) => b.len(),
            BufMut::U8(b) => b.len(),
        }
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A read-only view of the same elements.
    pub fn as_buf(&self) -> Buf<'_> {
        match self {
            BufMut::F32(b) => Buf::F32(b),
            BufMut::F64(b) => Buf::F64(b),
            BufMut::U8(b) => Buf::U8(b),
        }
    }
}

/// A group of processes and the collectives over it.
///
/// Sums add in `f32` or `f64` as the buffers are typed; bytes are only moved. Lengths:
/// with `n = size()`,
///
/// * `all_reduce_sum(buf)`: every rank's `buf` becomes `Σ_r buf_r` (element-wise);
/// * `reduce_scatter_sum(send, recv)`: `send.len() = n · recv.len() = n · B`; rank `q`
///   receives block `q` of the sum: `recv_q[i] = Σ_r send_r[q·B + i]`;
/// * `all_gather(send, recv)`: `recv.len() = n · send.len()`; block `r` of every rank's
///   `recv` is rank `r`'s `send`;
/// * `broadcast(buf, root)`: every rank's `buf` becomes `root`'s.
///
/// An implementation says in which order it adds the ranks' values (it decides the
/// bits); [`crate::ThreadComm`] and [`crate::MpiComm`] in
/// [`ReduceOrder::Rank`] add `((x_0 + x_1) + x_2) + …`, in rank order.
///
/// Errors: mismatched lengths or element types are refused before anything is sent.
pub trait Comm: Send + Sync + fmt::Debug {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// Number of processes in the group.
    fn size(&self) -> usize;
    /// In-place sum over all ranks.
    fn all_reduce_sum(&self, buf: BufMut<'_>) -> Result<()>;
    /// Sum over all ranks, block `rank()` of it into `recv`.
    fn reduce_scatter_sum(&self, send: Buf<'_>, recv: BufMut<'_>) -> Result<()>;
    /// Every rank's `send`, in rank order, into `recv`.
    fn all_gather(&self, send: Buf<'_>, recv: BufMut<'_>) -> Result<()>;
    /// `root`'s `buf` into every rank's `buf`.
    fn broadcast(&self, buf: BufMut<'_>, root: usize) -> Result<()>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;
}

/// In which order a sum over ranks is added up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReduceOrder {
    /// The MPI library's own reduction (`MPI_Reduce_scatter_block`, `MPI_Allreduce`):
    /// its fastest algorithm, in an order it chooses (it may differ with the number of
    /// ranks and the message size).
    #[default]
    Native,
    /// `((x_0 + x_1) + x_2) + …` in rank order, whatever the transport: every rank's
    /// values are moved to where they are added (an all-to-all, which sends what a
    /// reduce-scatter sends), then added locally. The bits then equal those of
    /// [`crate::ThreadComm`] and of one process adding the ranks' values in order.
    Rank,
}

/// An element type the collectives carry: `f32` or `f64`.
pub trait Wire: Scalar {
    /// `s` as a collective buffer.
    fn buf(s: &[Self]) -> Buf<'_>;
    /// `s` as a writable collective buffer.
    fn buf_mut(s: &mut [Self]) -> BufMut<'_>;
}

impl Wire for f32 {
    fn buf(s: &[f32]) -> Buf<'_> {
        Buf::F32(s)
    }
    fn buf_mut(s: &mut [f32]) -> BufMut<'_> {
        BufMut::F32(s)
    }
}

impl Wire for f64 {
    fn buf(s: &[f64]) -> Buf<'_> {
        Buf::F64(s)
    }
    fn buf_mut(s: &mut [f64]) -> BufMut<'_> {
        BufMut::F64(s)
    }
}

pub(crate) fn comm_error(what: impl fmt::Display) -> OptimError {
    OptimError::Config(format!("collective: {what}"))
}

/// Checks the lengths and element types of a two-buffer collective; `factor` is how many
/// times longer `big` must be than `small`.
pub(crate) fn check_pair(
    op: &str,
    small: &Buf<'_>,
    big: &Buf<'_>,
    size: usize,
) -> std::result::Result<(), OptimError> {
    if std::mem::discriminant(small) != std::mem::discriminant(big) {
        return Err(comm_error(format_args!(
            "{op}: buffers of {} and {}; both must have one element type",
            small.kind(),
            big.kind()
        )));
    }
    if small.len().checked_mul(size) != Some(big.len()) {
        return Err(comm_error(format_args!(
            "{op}: {} elements for {} ranks of {} each; the long buffer must hold ranks × block",
            big.len(),
            size,
            small.len()
        )));
    }
    Ok(())
}

/// Every rank's bytes, in rank order, whatever their lengths (two all-gathers: the
/// lengths, then the payloads padded to the longest).
pub fn all_gather_bytes(comm: &dyn Comm, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let n = comm.size();
    let mut lens = vec![0u8; 8 * n];
    comm.all_gather(
        Buf::U8(&(bytes.len() as u64).to_le_bytes()),
        BufMut::U8(&mut lens),
    )?;
    let lens: Vec<usize> = lens
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as usize)
        .collect();
    let longest = lens.iter().copied().max().unwrap_or(0);
    let mut padded = bytes.to_vec();
    padded.resize(longest, 0);
    let mut all = vec![0u8; longest * n];
    comm.all_gather(Buf::U8(&padded), BufMut::U8(&mut all))?;
    Ok(lens
        .iter()
        .enumerate()
        .map(|(r, &len)| all[r * longest..r * longest + len].to_vec())
        .collect())
}

/// Adds `block` of each rank's values in rank order: `out[i] = ((src_0[i] + src_1[i]) +
/// …)`, `src_r` being `blocks[r]`.
pub(crate) fn sum_in_rank_order<T: Copy + std::ops::AddAssign>(
    blocks: impl Iterator<Item = impl AsRef<[T]>>,
    out: &mut [T],
) {
    for (r, block) in blocks.enumerate() {
        let block = block.as_ref();
        if r == 0 {
            out.copy_from_slice(block);
        } else {
            out.iter_mut().zip(block).for_each(|(o, &x)| *o += x);
        }
    }
}
