//! Yogi: Adam whose second moment moves additively, by the sign of its error.

use optim_macros::optimizer;

/// Yogi (Zaheer et al., 2018, "Adaptive Methods for Nonconvex Optimization"): Adam with
/// the second moment updated by ±(1 − β2)·g² towards g², so that it cannot shrink
/// multiplicatively after a burst of large gradients; `optax.scale_by_yogi` then the
/// learning rate (`optax.yogi`), both moments starting at `initial_accumulator_value`.
///
/// ```text
/// m, v start at v₀
/// m ← β1·m + (1 − β1)·g
/// v ← v − (1 − β2)·sign(v − g²)·g²
/// w ← w − α·(m/(1 − β1ᵗ)) / (√(v/(1 − β2ᵗ) + ε_root) + ε)
/// ```
#[optimizer(
    /// Learning rate α (optax has no default; the paper's).
    lr = 1e-2 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.9 in 0.0..1.0,
    /// Rate β2 of the second moment's additive update.
    beta2 = 0.999 in 0.0..1.0,
    /// ε added to the denominator.
    eps = 1e-3 in 0.0..,
    /// ε_root added under the square root.
    eps_root = 0.0 in 0.0..,
    /// Initial value v₀ of both moments.
    initial_accumulator_value = 1e-6 in 0.0..,
)]
pub fn yogi(
    w: Param,
    g: Grad,
    #[init(initial_accumulator_value)] m: State,
    #[init(initial_accumulator_value)] v: State,
) {
    m = beta1 * m + (1.0 - beta1) * g;
    let g2 = g * g;
    v -= (1.0 - beta2) * sign(v - g2) * g2;
    let m_hat = m / (1.0 - beta1.powi(t));
    let v_hat = v / (1.0 - beta2.powi(t));
    w -= lr * m_hat / (sqrt(v_hat + eps_root) + eps);
}
