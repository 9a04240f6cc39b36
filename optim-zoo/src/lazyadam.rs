//! LazyAdam: Adam for sparse gradients, touching only the rows present.

use optim_macros::optimizer;

/// LazyAdam (TF Addons; `torch.optim.SparseAdam`): Adam applied only to the rows present
/// in a sparse gradient (embedding tables); absent rows keep their weights and moments.
/// Repeated rows are summed first. A dense gradient is the case where every row is present.
///
/// ```text
/// for each present row:
/// m ← β1·m + (1 − β1)·g
/// v ← β2·v + (1 − β2)·g²
/// w ← w − α·√(1 − β2^t)/(1 − β1^t) · m/(√v + ε)      (ε not bias-corrected)
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 1e-3 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the second moment.
    beta2 = 0.999 in 0.0..1.0,
    /// ε added to the denominator.
    eps = 1e-8 in 0.0..,
)]
#[sparse(lazy)]
#[name = "lazyadam"]
pub fn lazy_adam(w: Param, g: Grad, m: State, v: State) {
    m = beta1 * m + (1.0 - beta1) * g;
    v = beta2 * v + (1.0 - beta2) * g * g;
    w -= lr * sqrt(1.0 - beta2.powi(t)) / (1.0 - beta1.powi(t)) * (m / (sqrt(v) + eps));
}
