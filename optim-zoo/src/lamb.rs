//! LAMB: Adam's direction, scaled per layer by a trust ratio.

use optim_macros::optimizer;

/// LAMB (You et al., 2020): the Adam direction plus decoupled weight decay, rescaled per
/// tensor so that its norm matches the weights' norm; `optax.lamb` semantics.
///
/// ```text
/// m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
/// u = m̂ / (√(v̂ + ε_root) + ε) + λ·w          (m̂, v̂ bias-corrected)
/// r = ‖w‖ / ‖u‖ if both are > 0, else 1       (norms over the whole tensor)
/// w ← w − α·r·u
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 1e-3 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the second moment.
    beta2 = 0.999 in 0.0..1.0,
    /// ε added to the denominator.
    eps = 1e-6 in 0.0..,
    /// ε added under the square root.
    eps_root = 0.0 in 0.0..,
    /// Decoupled weight decay λ, part of the direction the trust ratio scales.
    weight_decay = 0.0 in 0.0..,
)]
pub fn lamb(w: Param, g: Grad, m: State, v: State) {
    m = beta1 * m + (1.0 - beta1) * g;
    v = beta2 * v + (1.0 - beta2) * g * g;
    // Bias corrections as per-step factors: a multiply per element instead of a divide.
    let m_hat = m * (1.0 / (1.0 - beta1.powi(t)));
    let v_hat = v * (1.0 / (1.0 - beta2.powi(t)));
    let u = m_hat / (sqrt(v_hat + eps_root) + eps) + weight_decay * w;
    let ratio = if norm(w) > 0.0 && norm(u) > 0.0 {
        norm(w) / norm(u)
    } else {
        1.0
    };
    w -= lr * ratio * u;
}
