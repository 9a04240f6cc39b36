//! AdaBound: Adam whose per-element step size is clipped into bounds that close on SGD's.

use optim_macros::optimizer;

/// AdaBound (Luo et al., 2019, "Adaptive Gradient Methods with Dynamic Bound of Learning
/// Rate"): Adam's per-element step size α/(√v̂ + ε) is clipped into bounds that start wide
/// and converge to `final_lr`, so training goes from Adam to SGD; with `ams_bound`, on the
/// running maximum of v (AMSBound); `pytorch_optimizer.AdaBound` semantics.
///
/// ```text
/// w ← w·(1 − λ·α)  (weight_decouple; λ alone with fixed_decay)   or   g ← g + λ·w
/// m ← m + (1 − β1)·(g − m);  v ← β2·v + (1 − β2)·g²;  [v̂ ← max(v̂, v)]
/// α* = final_lr·α/α₀      (α₀: the learning rate at the first step)
/// lo = α*·(1 − 1/(γt + 1));  hi = α*·(1 + 1/(γt))
/// w ← w − clamp(α·√(1 − β2ᵗ)/(1 − β1ᵗ) / (√(v + 1e-15) + ε), lo, hi)·m
/// ```
///
/// The reference scales `final_lr` by the learning rate over the group's learning rate at
/// construction (the first positive one); here α₀ is the learning rate at the parameter's
/// first step (the first positive one), the same unless the rate changes before it.
#[optimizer(
    /// Learning rate α.
    lr = 1e-3 in 0.0..,
    /// The SGD learning rate the bounds converge to (scaled by α/α₀).
    final_lr = 1e-1 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the second moment.
    beta2 = 0.999 in 0.0..1.0,
    /// Convergence speed γ of the bounds.
    gamma = 1e-3 in 0.0<..,
    /// Weight decay λ.
    weight_decay = 0.0 in 0.0..,
    /// Decay the weights directly (AdamW's way) instead of adding λ·w to the gradient.
    weight_decouple = true,
    /// Decoupled decay by λ alone, not λ·α.
    fixed_decay = false,
    /// Bound the running maximum of v (AMSBound).
    ams_bound = false,
    /// ε added to the denominator.
    eps = 1e-8 in 0.0..,
)]
pub fn adabound(
    w: Param,
    g: Grad,
    m: State,
    v: State,
    #[when(ams_bound)] v_max: State,
    #[init(lr)] base_lr: ScalarState,
) {
    if base_lr == 0.0 {
        base_lr = lr;
    }
    if weight_decouple {
        w *= 1.0 - weight_decay * (if fixed_decay { 1.0 } else { lr });
    } else {
        g += weight_decay * w;
    }
    m += (1.0 - beta1) * (g - m);
    v = beta2 * v + (1.0 - beta2) * g * g;
    let v_hat = if ams_bound {
        v_max = max(v_max, v);
        v_max
    } else {
        v
    };
    let denom = sqrt(v_hat + 1e-15) + eps;
    let step_size = lr * sqrt(1.0 - beta2.powi(t)) / (1.0 - beta1.powi(t));
    let bound = if base_lr > 0.0 {
        final_lr * lr / base_lr
    } else {
        0.0
    };
    let lower = bound * (1.0 - 1.0 / (gamma * t + 1.0));
    let upper = bound * (1.0 + 1.0 / (gamma * t));
    w -= clamp(step_size / denom, lower, upper) * m;
}
