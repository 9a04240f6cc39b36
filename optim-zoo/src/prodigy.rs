//! Prodigy: Adam whose step size d is estimated from the distance travelled.

use optim_macros::optimizer;

/// Prodigy (Mishchenko & Defazio, 2024): Adam scaled by an estimate `d` of the distance
/// to the solution, grown from sums over every parameter; `prodigyopt.Prodigy` semantics
/// (decoupled decay; d from the base hyperparameters, a group with lr 0 frozen). Two
/// passes over all parameters per step.
///
/// ```text
/// dlr = d·α·bc   (bc = √(1 − β2ᵏ⁺¹)/(1 − β1ᵏ⁺¹) with bias correction, else 1)
/// m ← β1·m + d(1 − β1)·g;  v ← β2·v + d²(1 − β2)·g²;  s ← β3·s + (d/d0)·dlr·g
/// D = Σ‖s‖₁ over all parameters; if D > 0:
///   r ← β3·r + Σ (d/d0)·dlr·⟨g, x0 − w⟩;  d̂ = d_coef·r/D
///   d ← max(d, d̂) while d = d0;  d_max ← max(d_max, d̂);  d ← min(d_max, d·growth)
///   w ← w − λ·dlr·w;  w ← w − dlr·m/(√v + d·ε)
/// ```
#[optimizer(
    /// Learning rate α (a multiplier of the estimated d).
    lr = 1.0 in 0.0..,
    /// Decay β1 of the first moment.
    beta1 = 0.9 in 0.0..1.0,
    /// Decay β2 of the second moment.
    beta2 = 0.999 in 0.0..1.0,
    /// Decay β3 of the distance estimates; negative: √β2.
    beta3 = -1.0 in -1.0..1.0,
    /// ε added to the denominator (times d).
    eps = 1e-8 in 0.0..,
    /// Decoupled weight decay λ.
    weight_decay = 0.0 in 0.0..,
    /// Bias-correct the step as Adam does.
    bias_correction = false,
    /// Grow s with d instead of d·α (for warmup schedules).
    safeguard_warmup = false,
    /// Initial estimate d0.
    d0 = 1e-6 in 0.0<..,
    /// Multiplier of the estimate d̂.
    d_coef = 1.0 in 0.0..,
    /// Largest growth of d per step.
    growth_rate = inf in 1.0..=inf,
)]
pub fn prodigy(
    w: Param,
    g: Grad,
    #[init(w)] x0: State,
    m: State,
    v: State,
    s: State,
    #[init(d0)] d: GlobalState,
    #[init(d0)] d_max: GlobalState,
    r: GlobalState,
    k: GlobalState,
) {
    let b3 = if beta3 < 0.0 { sqrt(beta2) } else { beta3 };
    let bc = if bias_correction {
        sqrt(1.0 - beta2.powf(k + 1.0)) / (1.0 - beta1.powf(k + 1.0))
    } else {
        1.0
    };
    let dlr = d * lr * bc;
    // A parameter group with lr 0 is frozen: it adds nothing and its moments stay 0.
    let active = lr > 0.0;
    let numerator = total_sum(if active {
        d / d0 * dlr * g * (x0 - w)
    } else {
        0.0
    });
    if active {
        m = beta1 * m + d * (1.0 - beta1) * g;
        v = beta2 * v + d * d * (1.0 - beta2) * g * g;
        s = b3 * s + d / d0 * (if safeguard_warmup { d } else { dlr }) * g;
    }
    let denominator = total_sum(abs(s));
    if denominator > 0.0 {
        r = b3 * r + numerator;
        let d_hat = d_coef * r / denominator;
        if d == d0 {
            d = max(d, d_hat);
        }
        d_max = max(d_max, d_hat);
        d = min(d_max, d * growth_rate);
        w -= weight_decay * dlr * w;
        w -= dlr * m / (sqrt(v) + d * eps);
        k += 1.0;
    }
}
