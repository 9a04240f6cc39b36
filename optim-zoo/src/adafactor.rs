//! Adafactor: a second moment factored into row and column averages.

use optim_macros::optimizer;

/// Adafactor (Shazeer & Stern, 2018) without momentum: for a tensor of two or more
/// dimensions the second moment of its last two is kept as one value per row and one per
/// column (`R + C` numbers instead of `R·C`); the update is clipped by its RMS;
/// `torch.optim.Adafactor` semantics.
///
/// ```text
/// β2ₜ = t^beta2_decay;  ρ = min(α, 1/√t);  a = max(ε2, RMS(w))·ρ;  w ← w·(1 − α·λ)
/// ≥ 2-D: R ← R + β2ₜ·(row_mean(g²) − R);  C ← C + β2ₜ·(col_mean(g²) − C)
///        V = R·C / max(mean(R), ε1)
/// 1-D:   V ← V + β2ₜ·(g² − V)
/// u = g / √max(V, ε1²);  w ← w − a·u / max(1, RMS(u)/d)
/// ```
///
/// `eps1` defaults to the f32 machine epsilon, torch's default for f32 parameters.
#[optimizer(
    /// Learning rate α (also caps the relative step ρ).
    lr = 1e-2 in 0.0..,
    /// Exponent of the second moment's decay: β2ₜ = t^beta2_decay.
    beta2_decay = -0.8 in ..=0.0,
    /// ε1: floor of the second moment (squared) and of the row mean.
    eps1 = 1.1920929e-7 in 0.0..,
    /// ε2: floor of the parameter's RMS in the step size.
    eps2 = 1e-3 in 0.0..,
    /// Clipping threshold d of the update's RMS.
    d = 1.0 in 0.0..,
    /// Decoupled weight decay λ.
    weight_decay = 0.0 in 0.0..,
)]
pub fn adafactor(
    w: Param,
    g: Grad,
    #[when(ndim >= 2)] row_var: RowState,
    #[when(ndim >= 2)] col_var: ColState,
    #[when(ndim < 2)] variance: State,
) {
    let beta2_t = t.powf(beta2_decay);
    let alpha = max(eps2, rms(w)) * min(lr, 1.0 / sqrt(t));
    w *= 1.0 - lr * weight_decay;
    if ndim >= 2 {
        row_var += beta2_t * (row_mean(g * g) - row_var);
        col_var += beta2_t * (col_mean(g * g) - col_var);
    } else {
        variance += beta2_t * (g * g - variance);
    }
    let v = if ndim >= 2 {
        row_var * col_var / max(mean(row_var), eps1)
    } else {
        variance
    };
    let u = g / sqrt(max(v, eps1 * eps1));
    w -= alpha * u / max(1.0, rms(u) / d);
}
