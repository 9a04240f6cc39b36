//! NovoGrad: a per-layer second moment normalizing the gradient.

use optim_macros::optimizer;

/// NovoGrad (Ginsburg et al., 2019): one second moment ν per tensor (the squared norm of
/// its gradient, averaged), the gradient normalized by it plus weight decay accumulated
/// into the first moment; `optax.novograd` semantics.
///
/// ```text
/// ν ← ‖g‖² (t = 1), else β2·ν + (1 − β2)·‖g‖²      (one number per tensor)
/// u = g / (√(ν + ε_root) + ε) + λ·w
/// m ← u (t = 1), else β1·m + u
/// w ← w − α·m
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 1e-3 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the per-tensor second moment.
    beta2 = 0.25 in 0.0..1.0,
    /// ε added to the denominator.
    eps = 1e-8 in 0.0..,
    /// ε added under the square root.
    eps_root = 0.0 in 0.0..,
    /// Weight decay λ, added to the normalized gradient.
    weight_decay = 0.0 in 0.0..,
)]
pub fn novograd(w: Param, g: Grad, m: State, nu: ScalarState) {
    let g_norm_sq = norm(g) * norm(g);
    nu = if t == 1 {
        g_norm_sq
    } else {
        beta2 * nu + (1.0 - beta2) * g_norm_sq
    };
    let u = g / (sqrt(nu + eps_root) + eps) + weight_decay * w;
    m = if t == 1 { u } else { beta1 * m + u };
    w -= lr * m;
}
