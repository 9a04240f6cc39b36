//! The collectives between threads of one process: for tests, and to run the sharded
//! optimizer without MPI.

use crate::comm::{check_pair, comm_error, sum_in_rank_order, Buf, BufMut, Comm};
use optim_core::Result;
use std::sync::{Arc, Condvar, Mutex, RwLock};

/// One rank of a group of threads ([`ThreadComm::group`], [`ThreadComm::run`]).
///
/// Each collective copies every rank's buffer into shared memory, waits for all ranks,
/// and lets each rank compute its result from the copies; sums add the ranks in rank
/// order (`((x_0 + x_1) + x_2) + …`), so the bits are those of
/// [`crate::ReduceOrder::Rank`]. A rank that panics or is dropped while the others wait
/// makes their calls fail instead of hanging.
#[derive(Debug)]
pub struct ThreadComm {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    slots: RwLock<Vec<Slot>>,
    gate: Mutex<Gate>,
    turn: Condvar,
}

#[derive(Debug, Default)]
struct Gate {
    arrived: usize,
    generation: u64,
    /// A rank that left the group (dropped, or panicked) while others may wait for it.
    gone: Option<usize>,
}

/// What one rank deposited for the current collective.
#[derive(Debug, Default)]
struct Slot {
    /// Operation, element type, length and root: equal on every rank, or the call fails.
    tag: (u8, u8, usize, usize),
    f32s: Vec<f32>,
    f64s: Vec<f64>,
    u8s: Vec<u8>,
}

impl Slot {
    fn put(&mut self, op: u8, root: usize, buf: Buf<'_>) {
        let kind = match buf {
            Buf::F32(b) => {
                self.f32s.clear();
                self.f32s.extend_from_slice(b);
                0
            }
            Buf::F64(b) => {
                self.f64s.clear();
                self.f64s.extend_from_slice(b);
                1
            }
            Buf::U8(b) => {
                self.u8s.clear();
                self.u8s.extend_from_slice(b);
                2
            }
        };
        self.tag = (op, kind, buf.len(), root);
    }
}

const ALL_REDUCE: u8 = 0;
const REDUCE_SCATTER: u8 = 1;
const ALL_GATHER: u8 = 2;
const BROADCAST: u8 = 3;
const BARRIER: u8 = 4;

impl ThreadComm {
    /// `size` ranks of one group, to hand one to each thread. Errors if `size` is 0.
    pub fn group(size: usize) -> Result<Vec<ThreadComm>> {
        if size == 0 {
            return Err(comm_error("a group needs at least one rank"));
        }
        let shared = Arc::new(Shared {
            slots: RwLock::new((0..size).map(|_| Slot::default()).collect()),
            gate: Mutex::new(Gate::default()),
            turn: Condvar::new(),
        });
        Ok((0..size)
            .map(|rank| ThreadComm {
                rank,
                size,
                shared: Arc::clone(&shared),
            })
            .collect())
    }

    /// Runs `f` on `size` scoped threads, one rank each, and returns their results in
    /// rank order. A thread that panics is reported as an error (and makes the other
    /// ranks' pending collectives fail rather than hang).
    pub fn run<R: Send>(size: usize, f: impl Fn(ThreadComm) -> R + Sync) -> Result<Vec<R>> {
        let comms = ThreadComm::group(size)?;
        let f = &f;
        std::thread::scope(|s| {
            let handles: Vec<_> = comms.into_iter().map(|c| s.spawn(move || f(c))).collect();
            handles
                .into_iter()
                .enumerate()
                .map(|(r, h)| {
                    h.join()
                        .map_err(|_| comm_error(format_args!("rank {r} panicked")))
                })
                .collect()
        })
    }

    /// Waits until every rank arrives (or fails if one has left the group).
    fn wait(&self) -> Result<()> {
        let mut gate = self
            .shared
            .gate
            .lock()
            .map_err(|_| comm_error("a rank panicked"))?;
        if let Some(r) = gate.gone {
            return Err(comm_error(format_args!("rank {r} left the group")));
        }
        gate.arrived += 1;
        if gate.arrived == self.size {
            gate.arrived = 0;
            gate.generation = gate.generation.wrapping_add(1);
            self.shared.turn.notify_all();
            return Ok(());
        }
        let generation = gate.generation;
        while gate.generation == generation {
            if let Some(r) = gate.gone {
                return Err(comm_error(format_args!("rank {r} left the group")));
            }
            gate = self
                .shared
                .turn
                .wait(gate)
                .map_err(|_| comm_error("a rank panicked"))?;
        }
        Ok(())
    }

    /// Deposits `mine` as this rank's part of collective `op`.
    fn deposit(&self, op: u8, root: usize, mine: Buf<'_>) -> Result<()> {
        let mut slots = self
            .shared
            .slots
            .write()
            .map_err(|_| comm_error("a rank panicked"))?;
        slots[self.rank].put(op, root, mine);
        Ok(())
    }

    /// After [`ThreadComm::deposit`]: waits for every rank, runs `read` on all deposits
    /// (once every rank is known to have called the same collective with the same
    /// lengths), then waits again so that no rank overwrites a deposit still being read.
    fn finish<R>(&self, read: impl FnOnce(&[Slot]) -> R) -> Result<R> {
        self.wait()?;
        let result = {
            let slots = self
                .shared
                .slots
                .read()
                .map_err(|_| comm_error("a rank panicked"))?;
            let tag = slots[0].tag;
            match slots.iter().position(|s| s.tag != tag) {
                // Every rank sees the same deposits, so every rank fails alike.
                Some(r) => Err(comm_error(format_args!(
                    "ranks 0 and {r} called different collectives or lengths ({:?} and {:?})",
                    tag, slots[r].tag
                ))),
                None => Ok(read(&slots)),
            }
        };
        self.wait()?;
        result
    }
}

impl Drop for ThreadComm {
    fn drop(&mut self) {
        // The other ranks would wait for this one forever.
        if let Ok(mut gate) = self.shared.gate.lock() {
            gate.gone.get_or_insert(self.rank);
            self.shared.turn.notify_all();
        }
    }
}

impl Comm for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, buf: BufMut<'_>) -> Result<()> {
        if let BufMut::U8(_) = buf {
            return Err(comm_error("all_reduce_sum: bytes cannot be summed"));
        }
        self.deposit(ALL_REDUCE, 0, buf.as_buf())?;
        self.finish(|slots| match buf {
            BufMut::F32(out) => sum_in_rank_order(slots.iter().map(|s| &s.f32s), out),
            BufMut::F64(out) => sum_in_rank_order(slots.iter().map(|s| &s.f64s), out),
            BufMut::U8(_) => {}
        })
    }

    fn reduce_scatter_sum(&self, send: Buf<'_>, recv: BufMut<'_>) -> Result<()> {
        check_pair("reduce_scatter_sum", &recv.as_buf(), &send, self.size)?;
        if let Buf::U8(_) = send {
            return Err(comm_error("reduce_scatter_sum: bytes cannot be summed"));
        }
        let (q, b) = (self.rank, recv.len());
        self.deposit(REDUCE_SCATTER, 0, send)?;
        self.finish(|slots| match recv {
            BufMut::F32(out) => {
                sum_in_rank_order(slots.iter().map(|s| &s.f32s[q * b..(q + 1) * b]), out)
            }
            BufMut::F64(out) => {
                sum_in_rank_order(slots.iter().map(|s| &s.f64s[q * b..(q + 1) * b]), out)
            }
            BufMut::U8(_) => {}
        })
    }

    fn all_gather(&self, send: Buf<'_>, recv: BufMut<'_>) -> Result<()> {
        check_pair("all_gather", &send, &recv.as_buf(), self.size)?;
        let b = send.len();
        self.deposit(ALL_GATHER, 0, send)?;
        self.finish(|slots| match recv {
            BufMut::F32(out) => {
                for (o, s) in out.chunks_exact_mut(b.max(1)).zip(slots) {
                    o.copy_from_slice(&s.f32s);
                }
            }
            BufMut::F64(out) => {
                for (o, s) in out.chunks_exact_mut(b.max(1)).zip(slots) {
                    o.copy_from_slice(&s.f64s);
                }
            }
            BufMut::U8(out) => {
                for (o, s) in out.chunks_exact_mut(b.max(1)).zip(slots) {
                    o.copy_from_slice(&s.u8s);
                }
            }
        })
    }

    fn broadcast(&self, buf: BufMut<'_>, root: usize) -> Result<()> {
        if root >= self.size {
            return Err(comm_error(format_args!(
                "broadcast: root {root} is not a rank of a group of {}",
                self.size
            )));
        }
        self.deposit(BROADCAST, root, buf.as_buf())?;
        self.finish(|slots| {
            let s = &slots[root];
            match buf {
                BufMut::F32(out) => out.copy_from_slice(&s.f32s),
                BufMut::F64(out) => out.copy_from_slice(&s.f64s),
                BufMut::U8(out) => out.copy_from_slice(&s.u8s),
            }
        })
    }

    fn barrier(&self) -> Result<()> {
        self.deposit(BARRIER, 0, Buf::U8(&[]))?;
        self.finish(|_| ())
    }
}
