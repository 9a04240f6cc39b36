//! LARS: momentum SGD with a per-layer trust ratio.

use optim_macros::optimizer;

/// LARS (You et al., 2017): the gradient plus weight decay, rescaled per tensor by
/// `η·‖w‖/‖u‖`, then heavy-ball momentum on the scaled step; `optax.lars` semantics.
///
/// ```text
/// u = g + λ·w
/// r = η·‖w‖ / (‖u‖ + ε) if both norms are > 0, else 1   (norms over the whole tensor)
/// b ← μ·b + α·r·u
/// w ← w − b                    (Nesterov: w ← w − (α·r·u + μ·b))
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 1.0 in 0.0..,
    /// Weight decay λ, added to the gradient before the trust ratio.
    weight_decay = 0.0 in 0.0..,
    /// Trust coefficient η.
    trust_coefficient = 0.001 in 0.0..,
    /// ε added to the update's norm.
    eps = 0.0 in 0.0..,
    /// Momentum μ.
    momentum = 0.9 in 0.0..1.0,
    /// Nesterov momentum.
    nesterov = false,
)]
pub fn lars(w: Param, g: Grad, b: State) {
    let u = g + weight_decay * w;
    let trust = if norm(w) > 0.0 && norm(u) > 0.0 {
        trust_coefficient * norm(w) / (norm(u) + eps)
    } else {
        1.0
    };
    b = momentum * b + lr * trust * u;
    w -= if nesterov {
        lr * trust * u + momentum * b
    } else {
        b
    };
}
