//! Adam, with AMSGrad and L2 weight decay.

use optim_macros::optimizer;

/// Adam (Kingma & Ba, 2015) with optional AMSGrad (Reddi et al., 2018) and an L2 penalty
/// added to the gradient ("Adam + L2", which the survey contrasts with AdamW);
/// `torch.optim.Adam` semantics.
///
/// ```text
/// g ← g + λ·w
/// m ← β1·m + (1 − β1)·g                 φ: first moment
/// v ← β2·v + (1 − β2)·g²                ψ: second moment
/// v̂ ← max(v̂, v)  (AMSGrad; v̂ replaces v below)
/// w ← w − α/(1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 1e-3 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the second moment.
    beta2 = 0.999 in 0.0..1.0,
    /// ε added to the denominator for numerical stability.
    eps = 1e-8 in 0.0..,
    /// L2 penalty λ, added to the gradient.
    weight_decay = 0.0 in 0.0..,
    /// Use the running maximum of v (AMSGrad).
    amsgrad = false,
)]
pub fn adam(w: Param, g: Grad, m: State, v: State, #[when(amsgrad)] v_max: State) {
    g += weight_decay * w;
    m = beta1 * m + (1.0 - beta1) * g;
    v = beta2 * v + (1.0 - beta2) * g * g;
    let v_hat = if amsgrad {
        v_max = max(v_max, v);
        v_max
    } else {
        v
    };
    let step_size = lr / (1.0 - beta1.powi(t));
    let denom = sqrt(v_hat) / sqrt(1.0 - beta2.powi(t)) + eps;
    w -= step_size * (m / denom);
}
