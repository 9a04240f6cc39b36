//! The step of an algorithm whose equations sum over every parameter (`total_sum`,
//! Prodigy): each phase runs over every parameter with a gradient, in gradient order,
//! then the parameters' shares of each sum are added (in that order, so the result does
//! not depend on threads) and the optimizer-wide code runs before the next phase.

use super::{hyper_for, Optim, Plan};
use crate::algorithm::Algorithm;
use crate::optim::grad::with_flat;
use crate::optim::slot::Slot;
use crate::params::{Grads, Params};
use crate::scalar::Scalar;

impl<A: Algorithm, T: Scalar> Optim<A, T> {
    /// Steps every planned parameter through every phase. Everything was checked before.
    pub(super) fn step_phased(&mut self, params: &mut Params<T>, grads: &Grads<T>, plan: &[Plan]) {
        let Optim {
            base,
            groups,
            resolved,
            epoch,
            slots,
            scratch,
            wbuf,
            skipped,
            frame,
            shares,
            totals,
            sum_hook,
            ..
        } = self;
        skipped.clear();
        shares.resize(A::SUMS, 0.0);
        totals.resize(A::SUMS, 0.0);
        if frame.len() != A::FRAME {
            frame.resize(A::FRAME, 0.0);
        }
        for phase in 0..A::PHASES {
            base.global_step(phase, frame);
            totals.iter_mut().for_each(|x| *x = 0.0);
            for ((gname, grad), entry) in grads.iter().zip(plan) {
                if entry.skip {
                    if phase == 0 {
                        skipped.push(gname.to_string());
                    }
                    continue;
                }
                let Some(at) = entry.slot else { continue };
                let Some((name, param)) = params.entry_mut(entry.position) else {
                    continue; // a position `check_and_plan` found: never
                };
                let slot = slots.at_mut(at);
                let a = hyper_for(base, groups, resolved, *epoch, name, slot);
                if phase == 0 {
                    slot.prepare(a, param);
                    slot.t += 1;
                }
                let view = scratch.view(grad, param.len(), A::SPARSE);
                shares.iter_mut().for_each(|x| *x = 0.0);
                let Slot {
                    t,
                    shape,
                    scalars,
                    states,
                    work,
                    ..
                } = slot;
                let frame_now: &[f64] = frame;
                with_flat(param, wbuf, |w| {
                    a.step_phase(
                        phase, frame_now, shares, *t, shape, scalars, w, view, states, work,
                    )
                });
                for (total, share) in totals.iter_mut().zip(shares.iter()) {
                    *total += *share;
                }
            }
            if let Some(hook) = sum_hook {
                hook(totals);
            }
            let n = frame.len();
            if let Some(sums) = frame.get_mut(n.saturating_sub(A::SUMS)..) {
                sums.copy_from_slice(totals);
            }
        }
        for ((_, _), entry) in grads.iter().zip(plan) {
            if let (false, Some(at)) = (entry.skip, entry.slot) {
                slots.remember(entry.position, at);
            }
        }
    }
}
