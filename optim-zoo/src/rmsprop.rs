//! RMSprop, with centered and momentum variants.

use optim_macros::optimizer;

/// RMSprop (Hinton, Coursera lecture 6e, 2012): divide the gradient by a running RMS of
/// its recent magnitudes. Centered divides by an estimate of the standard deviation
/// instead (Graves, 2013). `torch.optim.RMSprop` semantics.
///
/// ```text
/// g ← g + λ·w
/// v ← α·v + (1 − α)·g²                        ψ
/// a ← α·a + (1 − α)·g;  den ← √(v − a²) + ε   (centered)
/// den ← √v + ε                                (otherwise)
/// b ← μ·b + g/den;  w ← w − lr·b              (momentum μ > 0)
/// w ← w − lr·g/den                            (otherwise)
/// ```
#[optimizer(
    /// Learning rate.
    lr = 1e-2 in 0.0..,
    /// Smoothing constant α of the running mean of g².
    alpha = 0.99 in 0.0..,
    /// ε added to the denominator.
    eps = 1e-8 in 0.0..,
    /// L2 penalty λ, added to the gradient.
    weight_decay = 0.0 in 0.0..,
    /// Momentum μ (0 disables the buffer).
    momentum = 0.0 in 0.0..,
    /// Normalise by the estimated variance instead of the second moment.
    centered = false,
)]
pub fn rmsprop(
    w: Param,
    g: Grad,
    v: State,
    #[when(centered)] a: State,
    #[when(momentum > 0.0)] b: State,
) {
    g += weight_decay * w;
    v = alpha * v + (1.0 - alpha) * g * g;
    let den = if centered {
        a = alpha * a + (1.0 - alpha) * g;
        sqrt(v - a * a) + eps
    } else {
        sqrt(v) + eps
    };
    if momentum > 0.0 {
        b = momentum * b + g / den;
        w -= lr * b;
    } else {
        w -= lr * (g / den);
    }
}
