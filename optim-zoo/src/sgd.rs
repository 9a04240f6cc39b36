//! SGD, with momentum (SGDM), dampening and Nesterov's accelerated gradient (NAG).

use optim_macros::optimizer;

/// Stochastic gradient descent, with optional momentum, dampening, Nesterov momentum
/// and L2 weight decay; `torch.optim.SGD` semantics.
///
/// ```text
/// g ← g + λ·w
/// b ← g                         (first step)
/// b ← μ·b + (1 − τ)·g           (later steps)
/// g ← g + μ·b   (Nesterov)   or   g ← b
/// w ← w − α·g
/// ```
///
/// With μ = 0 this is the survey's plain SGD; μ = 0.9 is SGD with momentum (the survey's
/// rule v = β·v − α(1−β)·g is the same up to rescaling α by 1 − β), and Nesterov gives NAG.
/// Reference: Sutskever et al. (2013), "On the importance of initialization and momentum".
#[optimizer(
    /// Learning rate α.
    lr = 1e-3 in 0.0..,
    /// Momentum factor μ (0 disables the momentum buffer).
    momentum = 0.0 in 0.0..,
    /// Dampening τ of the gradient's contribution to the momentum buffer.
    dampening = 0.0 in 0.0..=1.0,
    /// Nesterov momentum (requires momentum > 0 and dampening = 0 to differ from SGDM).
    nesterov = false,
    /// L2 penalty λ, added to the gradient.
    weight_decay = 0.0 in 0.0..,
)]
pub fn sgd(w: Param, g: Grad, #[when(momentum > 0.0)] b: State) {
    g += weight_decay * w;
    if momentum > 0.0 {
        b = if t == 1 {
            g
        } else {
            momentum * b + (1.0 - dampening) * g
        };
        g = if nesterov { g + momentum * b } else { b };
    }
    w -= lr * g;
}
