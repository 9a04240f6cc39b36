//! CAME: Adafactor's memory with a confidence-guided step.

use optim_macros::optimizer;

/// CAME (Luo et al., 2023): Adafactor's factored second moment normalizes the gradient,
/// the clipped result feeds a first moment m, and a second factored moment of the
/// instability (u − m)² scales the step; `pytorch_optimizer.CAME` semantics (decoupled
/// decay). Row/column states for tensors of two or more dimensions, full ones for vectors.
///
/// ```text
/// w ← w·(1 − α·λ);  q = g² + ε1
/// ≥ 2-D: R ← β2·R + (1 − β2)·row_mean(q);  C ← β2·C + (1 − β2)·col_mean(q)
///        u = g / √(R/mean(R)) / √C          1-D: V ← β2·V + (1 − β2)·q;  u = g / √V
/// u ← u / max(RMS(u)/d, 1);  m ← m + (1 − β1)·(u − m)
/// ≥ 2-D: ρ = (u − m)² + ε2;  S ← β3·S + (1 − β3)·row_mean(ρ);  T likewise per column
///        w ← w − α·m / √(S/mean(S)) / √T    1-D: w ← w − α·m
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 2e-4 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the factored second moment.
    beta2 = 0.999 in 0.0..1.0,
    /// Decay β3 of the factored instability.
    beta3 = 0.9999 in 0.0..1.0,
    /// Decoupled weight decay λ.
    weight_decay = 0.0 in 0.0..,
    /// Clipping threshold d of the normalized update's RMS.
    clip_threshold = 1.0 in 0.0..,
    /// ε1 added to the squared gradient.
    eps1 = 1e-30 in 0.0..,
    /// ε2 added to the squared instability.
    eps2 = 1e-16 in 0.0..,
)]
pub fn came(
    w: Param,
    g: Grad,
    m: State,
    #[when(ndim >= 2)] r: RowState,
    #[when(ndim >= 2)] c: ColState,
    #[when(ndim < 2)] v: State,
    #[when(ndim >= 2)] res_r: RowState,
    #[when(ndim >= 2)] res_c: ColState,
) {
    w *= 1.0 - lr * weight_decay;
    let q = g * g + eps1;
    if ndim >= 2 {
        r = beta2 * r + (1.0 - beta2) * row_mean(q);
        c = beta2 * c + (1.0 - beta2) * col_mean(q);
    } else {
        v = beta2 * v + (1.0 - beta2) * q;
    }
    let scale = if ndim >= 2 {
        1.0 / sqrt(r / mean(r)) * (1.0 / sqrt(c))
    } else {
        1.0 / sqrt(v)
    };
    let u_raw = scale * g;
    let u = u_raw / max(rms(u_raw) / clip_threshold, 1.0);
    m += (1.0 - beta1) * (u - m);
    if ndim >= 2 {
        let res = (u - m) * (u - m) + eps2;
        res_r = beta3 * res_r + (1.0 - beta3) * row_mean(res);
        res_c = beta3 * res_c + (1.0 - beta3) * col_mean(res);
    }
    let confidence = if ndim >= 2 {
        1.0 / sqrt(res_r / mean(res_r)) * (1.0 / sqrt(res_c))
    } else {
        1.0
    };
    w -= lr * confidence * m;
}
