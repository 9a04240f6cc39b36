//! Adan: Nesterov-style momentum from the gradient's difference between steps.

use optim_macros::optimizer;

/// Adan (Xie et al., 2022, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
/// Optimizing Deep Models"): besides Adam's moments of g, a moment v of the difference
/// Δ = g − g_prev, which adds a Nesterov-like look-ahead to the step and to the second
/// moment; decoupled weight decay; `optax.adan` semantics (the paper's Algorithm 1).
///
/// ```text
/// Δ = g − g_prev   (0 at t = 1);  g_prev ← g
/// m ← β1·m + (1 − β1)·g
/// v ← β2·v + (1 − β2)·Δ
/// n ← β3·n + (1 − β3)·(g + (1 − β2)·Δ)²
/// m̂, v̂, n̂ = m/(1 − β1ᵗ), v/(1 − β2ᵗ), n/(1 − β3ᵗ)
/// w ← w − α·((m̂ + (1 − β2)·v̂) / (√(n̂ + ε_root) + ε) + λ·w)
/// ```
#[optimizer(
    /// Learning rate α (optax has no default; the authors').
    lr = 1e-3 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.98 in 0.0..1.0,
    /// Decay β2 of the gradient difference's moment.
    beta2 = 0.92 in 0.0..1.0,
    /// Decay β3 of the second moment.
    beta3 = 0.99 in 0.0..1.0,
    /// ε added to the denominator.
    eps = 1e-8 in 0.0..,
    /// ε_root added under the square root.
    eps_root = 1e-8 in 0.0..,
    /// Decoupled weight decay λ (multiplied by α).
    weight_decay = 0.0 in 0.0..,
)]
pub fn adan(w: Param, g: Grad, m: State, v: State, n: State, g_prev: State) {
    let diff = if t == 1 { 0.0 } else { g - g_prev };
    g_prev = g;
    m = beta1 * m + (1.0 - beta1) * g;
    v = beta2 * v + (1.0 - beta2) * diff;
    let ahead = g + (1.0 - beta2) * diff;
    n = beta3 * n + (1.0 - beta3) * ahead * ahead;
    let m_hat = m / (1.0 - beta1.powi(t));
    let v_hat = v / (1.0 - beta2.powi(t));
    let n_hat = n / (1.0 - beta3.powi(t));
    let u = (m_hat + (1.0 - beta2) * v_hat) / (sqrt(n_hat + eps_root) + eps);
    w -= lr * (u + weight_decay * w);
}
