//! Lion: the sign of an interpolated momentum.

use optim_macros::optimizer;

/// Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"): the sign of
/// an interpolation between momentum and gradient, so every coordinate moves by exactly α
/// (plus decoupled weight decay); one state instead of Adam's two; `optax.lion` semantics.
///
/// ```text
/// c = β1·m + (1 − β1)·g
/// w ← w − α·(sign(c) + λ·w)
/// m ← β2·m + (1 − β2)·g
/// ```
///
/// `sign` is 0 at 0 (`jnp.sign`, the paper's): a weight whose gradient and momentum are
/// exactly 0 stays put. The paper advises α 3–10 times smaller than AdamW's and λ 3–10
/// times larger.
#[optimizer(
    /// Learning rate α (optax has no default; the paper's smallest).
    lr = 1e-4 in 0.0..,
    /// Interpolation β1 between momentum and gradient for the update.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the momentum.
    beta2 = 0.99 in 0.0..1.0,
    /// Decoupled weight decay λ (multiplied by α).
    weight_decay = 1e-3 in 0.0..,
)]
pub fn lion(w: Param, g: Grad, m: State) {
    let c = beta1 * m + (1.0 - beta1) * g;
    w -= lr * (sign(c) + weight_decay * w);
    m = beta2 * m + (1.0 - beta2) * g;
}
