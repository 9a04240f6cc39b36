//! RAdam: rectified Adam.

use optim_macros::optimizer;

/// RAdam (Liu et al., 2020): Adam whose adaptive step is switched on only once the
/// variance of the adaptive learning rate is tractable (ρ_t > 5), and rectified by r_t;
/// before that, a bias-corrected momentum step. `torch.optim.RAdam` semantics.
///
/// ```text
/// g ← g + λ·w          or   w ← w·(1 − α·λ)   (decoupled)
/// m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²
/// ρ∞ = 2/(1 − β2) − 1;     ρ_t = ρ∞ − 2t·β2^t/(1 − β2^t)
/// ρ_t > 5:  r = √((ρ_t − 4)(ρ_t − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρ_t))
///           w ← w − m/(1 − β1^t) · α · √(1 − β2^t)/(√v + ε) · r
/// else:     w ← w − m/(1 − β1^t) · α
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 1e-3 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the second moment.
    beta2 = 0.999 in 0.0..1.0,
    /// ε added to the denominator.
    eps = 1e-8 in 0.0..,
    /// Weight decay λ (L2, or decoupled).
    weight_decay = 0.0 in 0.0..,
    /// Apply weight decay to the weights (AdamW-style) instead of the gradient.
    decoupled_weight_decay = false,
)]
pub fn radam(w: Param, g: Grad, m: State, v: State) {
    if decoupled_weight_decay {
        w *= 1.0 - lr * weight_decay;
    } else {
        g += weight_decay * w;
    }
    m = beta1 * m + (1.0 - beta1) * g;
    v = beta2 * v + (1.0 - beta2) * g * g;
    let bc1 = 1.0 - beta1.powi(t);
    let bc2 = 1.0 - beta2.powi(t);
    let rho_inf = 2.0 / (1.0 - beta2) - 1.0;
    let rho_t = rho_inf - 2.0 * t * beta2.powi(t) / bc2;
    if rho_t > 5.0 {
        let r = sqrt(
            (rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t),
        );
        w -= m / bc1 * lr * (sqrt(bc2) / (sqrt(v) + eps)) * r;
    } else {
        w -= m / bc1 * lr;
    }
}
