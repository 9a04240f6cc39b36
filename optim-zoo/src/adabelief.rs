//! AdaBelief: Adam with the variance of the gradient around its prediction.

use optim_macros::optimizer;

/// AdaBelief (Zhuang et al., 2020, "AdaBelief Optimizer: Adapting Stepsizes by the Belief
/// in Observed Gradients"): Adam with the second moment of g replaced by the "belief" s,
/// the running variance of g around its prediction m; steps are large where the gradient
/// is as predicted, small where it surprises; `optax.adabelief` semantics.
///
/// ```text
/// m ← β1·m + (1 − β1)·g
/// s ← β2·s + (1 − β2)·(g − m)² + ε_root
/// w ← w − α·(m/(1 − β1ᵗ)) / (√(s/(1 − β2ᵗ)) + ε)
/// ```
#[optimizer(
    /// Learning rate α (optax has no default; the authors' `adabelief-pytorch` one).
    lr = 1e-3 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the belief s.
    beta2 = 0.999 in 0.0..1.0,
    /// ε added to the denominator.
    eps = 1e-16 in 0.0..,
    /// ε_root added to s at every step.
    eps_root = 1e-16 in 0.0..,
)]
pub fn adabelief(w: Param, g: Grad, m: State, s: State) {
    m = beta1 * m + (1.0 - beta1) * g;
    let surprise = g - m;
    s = beta2 * s + (1.0 - beta2) * surprise * surprise + eps_root;
    let m_hat = m / (1.0 - beta1.powi(t));
    let s_hat = s / (1.0 - beta2.powi(t));
    w -= lr * m_hat / (sqrt(s_hat) + eps);
}
