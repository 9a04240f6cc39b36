//! AdamW: Adam with decoupled weight decay; BERT's optimizer without bias correction.

use optim_macros::optimizer;

/// AdamW (Loshchilov & Hutter, 2019): weight decay applied to the weights directly
/// rather than through the gradient, so adaptive scaling does not weaken it;
/// `torch.optim.AdamW` semantics. With `bias_correction = false` it is BERT's
/// `AdamWeightDecayOptimizer` (Devlin et al., 2019); the `bert` preset also sets ε = 1e-6,
/// λ = 0.01 and excludes LayerNorm and bias parameters from decay.
///
/// ```text
/// w ← w·(1 − α·λ)                             decoupled decay
/// m ← β1·m + (1 − β1)·g
/// v ← β2·v + (1 − β2)·g²
/// v̂ ← max(v̂, v)  (AMSGrad; v̂ replaces v below)
/// w ← w − α/(1 − β1^t) · m/(√v/√(1 − β2^t) + ε)   (bias correction)
/// w ← w − α · m/(√v + ε)                          (BERT)
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
    /// Decoupled weight decay λ.
    weight_decay = 1e-2 in 0.0..,
    /// Use the running maximum of v (AMSGrad).
    amsgrad = false,
    /// Divide the moments by 1 − β^t (false: BERT's AdamWeightDecayOptimizer).
    bias_correction = true,
)]
pub fn adamw(w: Param, g: Grad, m: State, v: State, #[when(amsgrad)] v_max: State) {
    w *= 1.0 - lr * weight_decay;
    m = beta1 * m + (1.0 - beta1) * g;
    v = beta2 * v + (1.0 - beta2) * g * g;
    let v_hat = if amsgrad {
        v_max = max(v_max, v);
        v_max
    } else {
        v
    };
    if bias_correction {
        let denom = sqrt(v_hat) / sqrt(1.0 - beta2.powi(t)) + eps;
        w -= lr / (1.0 - beta1.powi(t)) * (m / denom);
    } else {
        w -= lr * (m / (sqrt(v_hat) + eps));
    }
}
