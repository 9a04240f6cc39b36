//! Adamax.

use optim_macros::optimizer;

/// Adamax (Kingma & Ba, 2015, section 7.1): Adam with the L2 norm of past gradients
/// replaced by the L∞ norm; `torch.optim.Adamax` semantics.
///
/// ```text
/// g ← g + λ·w
/// m ← β1·m + (1 − β1)·g
/// u ← max(β2·u, |g| + ε)                      ψ: exponentially weighted infinity norm
/// w ← w − α/(1 − β1^t) · m/u
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 2e-3 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the infinity norm.
    beta2 = 0.999 in 0.0..1.0,
    /// ε added to |g|.
    eps = 1e-8 in 0.0..,
    /// L2 penalty λ, added to the gradient.
    weight_decay = 0.0 in 0.0..,
)]
pub fn adamax(w: Param, g: Grad, m: State, u: State) {
    g += weight_decay * w;
    m = beta1 * m + (1.0 - beta1) * g;
    u = max(beta2 * u, abs(g) + eps);
    w -= lr / (1.0 - beta1.powi(t)) * (m / u);
}
