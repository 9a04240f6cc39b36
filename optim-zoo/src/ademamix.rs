//! AdEMAMix: Adam with a second, much slower momentum mixed in.

use optim_macros::optimizer;

/// AdEMAMix (Pagliardini et al., 2024, "The AdEMAMix Optimizer: Better, Faster, Older"):
/// Adam's fast momentum plus α times a slow one (β3 close to 1, not bias-corrected, so
/// that it fills in slowly), which keeps using gradients tens of thousands of steps old;
/// decoupled weight decay; `optax.contrib.ademamix` semantics, with constant β3 and α.
///
/// ```text
/// m1 ← β1·m1 + (1 − β1)·g        fast momentum
/// m2 ← β3·m2 + (1 − β3)·g        slow momentum
/// v ← β2·v + (1 − β2)·g²
/// w ← w − α_lr·((m1/(1 − β1ᵗ) + α·m2) / (√(v/(1 − β2ᵗ) + ε_root) + ε) + λ·w)
/// ```
#[optimizer(
    /// Learning rate (optax has no default; Adam's).
    lr = 1e-3 in 0.0..,
    /// Decay β1 of the fast momentum.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the second moment.
    beta2 = 0.999 in 0.0..1.0,
    /// Decay β3 of the slow momentum.
    beta3 = 0.9999 in 0.0..1.0,
    /// Weight α of the slow momentum.
    alpha = 5.0 in 0.0..,
    /// ε added to the denominator.
    eps = 1e-8 in 0.0..,
    /// ε_root added under the square root.
    eps_root = 0.0 in 0.0..,
    /// Decoupled weight decay λ (multiplied by the learning rate).
    weight_decay = 0.0 in 0.0..,
)]
pub fn ademamix(w: Param, g: Grad, m1: State, m2: State, v: State) {
    m1 = beta1 * m1 + (1.0 - beta1) * g;
    m2 = beta3 * m2 + (1.0 - beta3) * g;
    v = beta2 * v + (1.0 - beta2) * g * g;
    let m1_hat = m1 / (1.0 - beta1.powi(t));
    let v_hat = v / (1.0 - beta2.powi(t));
    let u = (m1_hat + alpha * m2) / (sqrt(v_hat + eps_root) + eps);
    w -= lr * (u + weight_decay * w);
}
