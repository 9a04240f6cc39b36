//! Stepping candle's CPU storage in place: each contiguous CPU variable (and gradient) of
//! the optimizer's element type lends its `Vec` to our parameter (or gradient) set for the
//! length of one step, and gets the same `Vec` back.
//!
//! candle hands out a tensor's storage mutably only inside an in-place custom op
//! ([`InplaceOp1::cpu_fwd`]), under the tensor's write lock. Every parameter has to be
//! stepped together (global sums, clipping, partitions), so the ops are nested: the op of
//! tensor `k` takes its `Vec`, runs the op of tensor `k + 1` inside, and puts its `Vec`
//! back when that returns; the innermost level runs the step. Every lock is held for the
//! whole step, so no other thread sees a variable while its storage is lent out. The
//! nesting is one small stack frame per lent tensor (two per variable).

use candle_core::{CpuStorage, InplaceOp1, Layout, Tensor};
use ndarray::{ArrayD, IxDyn};
use optim_core::{Grad, Grads, Params, Scalar};
use std::cell::RefCell;

/// An element type candle stores in a `CpuStorage` variant of its own.
pub trait CandleElem: Scalar + candle_core::WithDType {
    /// The storage's `Vec`, if it holds this type.
    fn vec_mut(storage: &mut CpuStorage) -> Option<&mut Vec<Self>>;
    /// The storage's elements, if it holds this type.
    fn slice(storage: &CpuStorage) -> Option<&[Self]>;
}

impl CandleElem for f32 {
    fn vec_mut(storage: &mut CpuStorage) -> Option<&mut Vec<f32>> {
        match storage {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn slice(storage: &CpuStorage) -> Option<&[f32]> {
        match storage {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl CandleElem for f64 {
    fn vec_mut(storage: &mut CpuStorage) -> Option<&mut Vec<f64>> {
        match storage {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn slice(storage: &CpuStorage) -> Option<&[f64]> {
        match storage {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// Where a lent `Vec` goes: parameter `index` of the set, or the gradient of parameter `name`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target<'a> {
    Param(usize),
    Grad(&'a str),
}

/// One tensor to lend for the step.
pub(crate) struct Loan<'a> {
    pub tensor: &'a Tensor,
    pub target: Target<'a>,
}

/// An empty stand-in for an array whose `Vec` has been returned (allocates nothing).
pub(crate) fn placeholder<T: Scalar>() -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(&[0]), Vec::new()).expect("an empty array of shape [0]")
}

/// Whether `tensor`'s whole storage is exactly its elements, contiguous from offset 0, on
/// the CPU, of type `T`; and the storage's address (to find tensors that share one).
pub(crate) fn lendable<T: CandleElem>(tensor: &Tensor) -> Option<usize> {
    let (storage, layout) = tensor.storage_and_layout();
    let key = &*storage as *const candle_core::Storage as usize;
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return None;
    };
    let data = T::slice(cpu)?;
    (layout.is_contiguous()
        && layout.start_offset() == 0
        && data.len() == layout.shape().elem_count())
    .then_some(key)
}

/// The step run with every loan in place.
pub(crate) type Run<'r, T> =
    dyn FnMut(&mut Params<T>, &mut Grads<T>) -> optim_core::Result<()> + 'r;

struct Ctx<'a, 'r, T: Scalar> {
    params: &'a mut Params<T>,
    grads: &'a mut Grads<T>,
    run: &'r mut Run<'r, T>,
    result: Option<optim_core::Result<()>>,
}

struct Level<'a, 'b, 'r, T: Scalar> {
    loans: &'b [Loan<'b>],
    depth: usize,
    ctx: &'b RefCell<Ctx<'a, 'r, T>>,
}

impl<T: CandleElem> Level<'_, '_, '_, T> {
    /// Runs the next level: the next loan's op, or the step itself past the last loan.
    fn descend(&self) -> candle_core::Result<()> {
        match self.loans.get(self.depth) {
            Some(loan) => loan.tensor.inplace_op1(self),
            None => {
                let mut ctx = self.ctx.borrow_mut();
                let Ctx {
                    params,
                    grads,
                    run,
                    result,
                } = &mut *ctx;
                *result = Some(run(params, grads));
                Ok(())
            }
        }
    }

    fn slot<'c>(ctx: &'c mut Ctx<'_, '_, T>, target: Target<'_>) -> Option<&'c mut ArrayD<T>> {
        match target {
            Target::Param(i) => ctx.params.entry_mut(i).map(|(_, a)| a),
            Target::Grad(name) => match ctx.grads.get_mut(name) {
                Some(Grad::Dense(a)) => Some(a),
                _ => None,
            },
        }
    }
}

impl<T: CandleElem> InplaceOp1 for Level<'_, '_, '_, T> {
    fn name(&self) -> &'static str {
        "optim-candle-step"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let loan = &self.loans[self.depth];
        let vec = T::vec_mut(storage)
            .ok_or_else(|| candle_core::Error::Msg("optim-candle: storage changed type".into()))?;
        let shape = IxDyn(layout.dims());
        {
            let mut ctx = self.ctx.borrow_mut();
            let slot = Self::slot(&mut ctx, loan.target)
                .ok_or_else(|| candle_core::Error::Msg("optim-candle: no slot".into()))?;
            let array = ArrayD::from_shape_vec(shape, std::mem::take(vec))
                .map_err(|e| candle_core::Error::Msg(format!("optim-candle: {e}")))?;
            *slot = array;
        }
        let inner = Level {
            loans: self.loans,
            depth: self.depth + 1,
            ctx: self.ctx,
        }
        .descend();
        // Give the Vec back whatever happened inside.
        let mut ctx = self.ctx.borrow_mut();
        if let Some(slot) = Self::slot(&mut ctx, loan.target) {
            let (back, offset) = std::mem::replace(slot, placeholder()).into_raw_vec_and_offset();
            debug_assert_eq!(offset.unwrap_or(0), 0);
            *vec = back;
        }
        inner
    }
}

/// Lends every loan's storage to `params`/`grads`, runs `run` on them, and returns every
/// `Vec` to its tensor. The candle error is about the lending; the inner result is `run`'s.
pub(crate) fn with_loans<T: CandleElem>(
    loans: &[Loan<'_>],
    params: &mut Params<T>,
    grads: &mut Grads<T>,
    run: &mut Run<'_, T>,
) -> candle_core::Result<optim_core::Result<()>> {
    let ctx = RefCell::new(Ctx {
        params,
        grads,
        run,
        result: None,
    });
    Level {
        loans,
        depth: 0,
        ctx: &ctx,
    }
    .descend()?;
    let result = ctx.into_inner().result;
    result.ok_or_else(|| candle_core::Error::Msg("optim-candle: the step did not run".into()))
}
