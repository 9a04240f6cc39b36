//! MADGRAD: dual averaging with a cube-root AdaGrad denominator and momentum.

use optim_macros::optimizer;

/// MADGRAD (Defazio & Jelassi, 2021, "Adaptivity without Compromise: A Momentumized,
/// Adaptive, Dual Averaged Gradient Method for Stochastic Optimization"): the weights are
/// averaged towards z, the initial weights minus the weighted gradient sum over the cube
/// root of the weighted squared-gradient sum; `optax.contrib.madgrad` semantics (L2 decay
/// added to the gradient first, the rate offset by ε as in the authors' code).
///
/// ```text
/// g ← g + λ·w
/// λₖ = (α + ε)·√t                  (√(k + 1), k = t − 1)
/// G ← G + λₖ·g²;  s ← s + λₖ·g
/// z = x0 − s/(∛G + ε)              (x0: the initial weights)
/// w ← (1 − μ)·z + μ·w
/// ```
///
/// The last line is written `w ← w + (1 − μ)·(z − w)`, equal up to rounding, so that a
/// weight at z (a fresh one under a zero gradient) stays exactly where it is. optax
/// computes λₖ in f32 whatever the parameters' precision (`jnp.sqrt` of its int32 step
/// count is f32, and the Python float α + ε takes that type); so does this.
#[optimizer(
    /// Learning rate α (optax has no default; the authors').
    lr = 1e-2 in 0.0..,
    /// Momentum μ: the weight of the current point in the average.
    momentum = 0.9 in 0.0..1.0,
    /// L2 penalty λ, added to the gradient.
    weight_decay = 0.0 in 0.0..,
    /// ε added to the rate and to the denominator.
    eps = 1e-6 in 0.0..,
)]
pub fn madgrad(w: Param, g: Grad, #[init(w)] x0: State, grad_sum_sq: State, s: State) {
    g += weight_decay * w;
    let lamb = round_f32(round_f32(lr + eps) * round_f32(sqrt(t)));
    grad_sum_sq += lamb * (g * g);
    s += lamb * g;
    let z = x0 - s / (cbrt(grad_sum_sq) + eps);
    w += (1.0 - momentum) * (z - w);
}
