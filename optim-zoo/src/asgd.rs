//! ASGD: SGD with a decaying rate, evaluated at the running average of its iterates.

use optim_macros::optimizer;

/// Averaged SGD (Polyak & Juditsky, 1992, "Acceleration of Stochastic Approximation by
/// Averaging"): SGD with a decaying step η and a decay term, whose iterates are averaged
/// from step t0 on; the average `ax` is what to evaluate with (`eval_params`);
/// `torch.optim.ASGD` semantics.
///
/// ```text
/// g ← g + λ_wd·w
/// w ← w·(1 − λ·η) − η·g                       (η starts at α)
/// ax ← w while μ = 1, else ax + μ·(w − ax)    (μ starts at 1)
/// η ← α/(1 + λ·α·t)^a;  μ ← 1/max(1, t − t0)  (for the next step)
/// evaluate at ax
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 1e-2 in 0.0..,
    /// Decay term λ (of the weights and of the rate).
    lambd = 1e-4 in 0.0..,
    /// Power a of the rate's decay.
    alpha = 0.75 in 0.0..,
    /// Step t0 from which the average starts.
    t0 = 1e6,
    /// L2 penalty λ_wd, added to the gradient.
    weight_decay = 0.0 in 0.0..,
)]
#[eval(ax)]
pub fn asgd(
    w: Param,
    g: Grad,
    ax: State,
    #[init(lr)] eta: ScalarState,
    #[init(1.0)] mu: ScalarState,
) {
    g += weight_decay * w;
    w *= 1.0 - lambd * eta;
    w -= eta * g;
    ax = if mu == 1.0 { w } else { ax + mu * (w - ax) };
    eta = lr / (1.0 + lambd * lr * t).powf(alpha);
    mu = 1.0 / max(1.0, t - t0);
}
