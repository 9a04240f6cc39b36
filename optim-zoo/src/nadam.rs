//! Nadam: Adam with Nesterov momentum.

use optim_macros::optimizer;

/// Nadam (Dozat, 2016): Adam whose momentum looks ahead as Nesterov's does, with Dozat's
/// warming momentum schedule μ_t; `torch.optim.NAdam` semantics.
///
/// ```text
/// g ← g + λ·w          or   w ← w·(1 − α·λ)   (decoupled)
/// μ_t = β1·(1 − ½·0.96^(t·ψ))                 ψ: momentum_decay
/// Π ← Π·μ_t                                    running product, per parameter
/// m ← β1·m + (1 − β1)·g
/// v ← β2·v + (1 − β2)·g²
/// den = √(v/(1 − β2^t)) + ε
/// w ← w − α(1 − μ_t)/(1 − Π) · g/den − α·μ_{t+1}/(1 − Π·μ_{t+1}) · m/den
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 2e-3 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the second moment.
    beta2 = 0.999 in 0.0..1.0,
    /// ε added to the denominator.
    eps = 1e-8 in 0.0..,
    /// Weight decay λ (L2, or decoupled).
    weight_decay = 0.0 in 0.0..,
    /// Momentum decay ψ of Dozat's schedule.
    momentum_decay = 4e-3 in 0.0..,
    /// Apply weight decay to the weights (AdamW-style) instead of the gradient.
    decoupled_weight_decay = false,
)]
pub fn nadam(w: Param, g: Grad, m: State, v: State, #[init(1.0)] mu_product: ScalarState) {
    if decoupled_weight_decay {
        w *= 1.0 - lr * weight_decay;
    } else {
        g += weight_decay * w;
    }
    let mu = beta1 * (1.0 - 0.5 * 0.96.powf(t * momentum_decay));
    let mu_next = beta1 * (1.0 - 0.5 * 0.96.powf((t + 1.0) * momentum_decay));
    mu_product *= mu;
    m = beta1 * m + (1.0 - beta1) * g;
    v = beta2 * v + (1.0 - beta2) * g * g;
    let den = sqrt(v / (1.0 - beta2.powi(t))) + eps;
    w -= lr * (1.0 - mu) / (1.0 - mu_product) * (g / den);
    w -= lr * mu_next / (1.0 - mu_product * mu_next) * (m / den);
}
