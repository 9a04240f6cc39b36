//! AdaDelta.

use optim_macros::optimizer;

/// AdaDelta (Zeiler, 2012): RMSprop whose step size is the running RMS of past updates,
/// so no learning rate is needed in principle; `torch.optim.Adadelta` semantics.
///
/// ```text
/// g ← g + λ·w
/// v ← ρ·v + (1 − ρ)·g²                        ψ: running mean of g²
/// d ← √(u + ε)/√(v + ε) · g                   the update, in units of w
/// u ← ρ·u + (1 − ρ)·d²                        running mean of d²
/// w ← w − α·d
/// ```
#[optimizer(
    /// Scale α applied to the update (1.0 in the paper).
    lr = 1.0 in 0.0..,
    /// Decay ρ of both running means.
    rho = 0.9 in 0.0..=1.0,
    /// ε inside both square roots.
    eps = 1e-6 in 0.0..,
    /// L2 penalty λ, added to the gradient.
    weight_decay = 0.0 in 0.0..,
)]
pub fn adadelta(w: Param, g: Grad, v: State, u: State) {
    g += weight_decay * w;
    v = rho * v + (1.0 - rho) * g * g;
    let d = sqrt(u + eps) / sqrt(v + eps) * g;
    u = rho * u + (1.0 - rho) * d * d;
    w -= lr * d;
}
