//! AdaGrad.

use optim_macros::optimizer;

/// AdaGrad (Duchi, Hazan & Singer, 2011): each coordinate's step shrinks with the sum of
/// its squared gradients; `torch.optim.Adagrad` semantics.
///
/// ```text
/// g ← g + λ·w
/// s ← s + g²                                  ψ: sum of squares, starts at s₀
/// w ← w − α/(1 + (t − 1)·δ) · g/(√s + ε)
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 1e-2 in 0.0..,
    /// Learning-rate decay δ per step.
    lr_decay = 0.0 in 0.0..,
    /// L2 penalty λ, added to the gradient.
    weight_decay = 0.0 in 0.0..,
    /// Initial value s₀ of the accumulator.
    initial_accumulator_value = 0.0 in 0.0..,
    /// ε added to the denominator.
    eps = 1e-10 in 0.0..,
)]
pub fn adagrad(w: Param, g: Grad, #[init(initial_accumulator_value)] s: State) {
    g += weight_decay * w;
    s += g * g;
    let clr = lr / (1.0 + (t - 1.0) * lr_decay);
    w -= clr * (g / (sqrt(s) + eps));
}
