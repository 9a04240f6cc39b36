//! Stepping many parameters in parallel: the kernel calls of one step, collected as
//! [`Job`]s and run as independent tasks when their total work is large enough.

use crate::algorithm::{Algorithm, GradView};
use crate::kernel;
use crate::optim::slot::Slot;
use crate::scalar::Scalar;

/// One parameter's kernel call, deferred until every parameter has been looked up.
pub(crate) struct Job<'a, A, T> {
    /// The hyperparameters it runs under.
    pub(crate) a: &'a A,
    /// Its state (filled in once all slots can be borrowed together).
    pub(crate) slot: Option<&'a mut Slot<T>>,
    /// The parameter as a flat slice (filled in likewise).
    pub(crate) w: Option<&'a mut [T]>,
    pub(crate) grad: GradView<'a, T>,
    /// Elements of the parameter.
    pub(crate) len: usize,
}

impl<A: Algorithm, T: Scalar> Job<'_, A, T> {
    fn run(&mut self) {
        if let (Some(slot), Some(w)) = (self.slot.as_deref_mut(), self.w.as_deref_mut()) {
            self.a.step(
                slot.t,
                &slot.shape,
                &mut slot.scalars,
                w,
                self.grad,
                &mut slot.states,
                &mut slot.work,
            );
        }
    }
}

/// An empty job list that keeps `jobs`' allocation, for borrows of another lifetime, so
/// that steady-state steps do not allocate. (Collecting a `vec::IntoIter` into a `Vec`
/// of a type with the same layout reuses its buffer.)
pub(crate) fn recycle<'b, A, T>(mut jobs: Vec<Job<'_, A, T>>) -> Vec<Job<'b, A, T>> {
    jobs.clear();
    // Not a filter: it changes the element type (there are no elements left).
    #[allow(clippy::unnecessary_filter_map)]
    jobs.into_iter().filter_map(|_| None).collect()
}

/// Bytes per element a kernel of `A` moves, at most (parameter, gradient, every state).
fn bytes_per_elem<A: Algorithm, T>() -> usize {
    (2 + A::STATES.len()) * std::mem::size_of::<T>()
}

/// Runs every job: on the calling thread when their total work is small, else as
/// rayon tasks grouped into chunks of about [`kernel::CHUNK_BYTES`]. A large parameter
/// is split further by its own kernel.
pub(crate) fn run_jobs<A: Algorithm, T: Scalar>(jobs: &mut [Job<'_, A, T>]) {
    let per = bytes_per_elem::<A, T>();
    let total: usize = jobs.iter().map(|j| j.len).sum::<usize>() * per;
    if jobs.len() > 1 && kernel::parallel_worth(total) {
        kernel::in_pool(|| split(jobs, per));
    } else {
        jobs.iter_mut().for_each(Job::run);
    }
}

/// Halves the job list by work until a part is one job or one chunk.
fn split<A: Algorithm, T: Scalar>(jobs: &mut [Job<'_, A, T>], per: usize) {
    let total: usize = jobs.iter().map(|j| j.len * per).sum();
    if jobs.len() == 1 || total <= kernel::CHUNK_BYTES {
        jobs.iter_mut().for_each(Job::run);
        return;
    }
    let mut acc = 0;
    let mut mid = jobs.len() - 1;
    for (i, j) in jobs.iter().enumerate() {
        if 2 * acc >= total {
            mid = i;
            break;
        }
        acc += j.len * per;
    }
    let (a, b) = jobs.split_at_mut(mid.clamp(1, jobs.len() - 1));
    rayon::join(|| split(a, per), || split(b, per));
}
