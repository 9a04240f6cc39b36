//! Schedule-free AdamW and SGD: no learning-rate schedule, evaluated at an average.

use optim_macros::optimizer;

/// Schedule-free AdamW (Defazio et al., 2024): the parameter holds the gradient point y,
/// the state z the base iterate; their weighted average x is what to evaluate with
/// (`eval_params`); `schedulefree.AdamWScheduleFree` semantics.
///
/// ```text
/// αₜ = α·min(1, t/warmup);  α_max ← max(α_max, αₜ)
/// wₜ = t^r · α_max^p;  W ← W + wₜ;  c = wₜ/W
/// v ← β2·v + (1 − β2)·g²;  ĝ = g / (√(v/(1 − β2ᵗ)) + ε) + λ·y
/// y ← y + c·(z − y) + αₜ·(β1·(1 − c) − 1)·ĝ
/// z ← z − αₜ·ĝ
/// evaluate at x = (y − (1 − β1)·z) / β1
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 0.0025 in 0.0..,
    /// Interpolation β1 between the average and the base iterate.
    beta1 = 0.9 in 0.0<..1.0,
    /// Decay β2 of the second moment.
    beta2 = 0.999 in 0.0..1.0,
    /// ε added to the denominator.
    eps = 1e-8 in 0.0..,
    /// Weight decay λ, at the gradient point y.
    weight_decay = 0.0 in 0.0..,
    /// Steps of linear learning-rate warmup.
    warmup_steps: i64 = 0 in 0..,
    /// Exponent r of the step count in the averaging weights.
    r = 0.0 in 0.0..,
    /// Exponent p of the largest learning rate so far in the averaging weights.
    weight_lr_power = 2.0 in 0.0..,
)]
#[eval((w - (1.0 - beta1) * z) / beta1)]
pub fn schedule_free_adamw(
    w: Param,
    g: Grad,
    #[init(w)] z: State,
    v: State,
    lr_max: ScalarState,
    weight_sum: ScalarState,
) {
    let lr_t = if t <= warmup_steps {
        lr * t / warmup_steps
    } else {
        lr
    };
    lr_max = max(lr_max, lr_t);
    let weight = t.powf(r) * lr_max.powf(weight_lr_power);
    weight_sum += weight;
    let c = if weight_sum > 0.0 {
        weight / weight_sum
    } else {
        0.0
    };
    v = beta2 * v + (1.0 - beta2) * g * g;
    let g_hat = g / (sqrt(v / (1.0 - beta2.powi(t))) + eps) + weight_decay * w;
    w += c * (z - w) + lr_t * (beta1 * (1.0 - c) - 1.0) * g_hat;
    z -= lr_t * g_hat;
}

/// Schedule-free SGD (Defazio et al., 2024): schedule-free AdamW's averaging around plain
/// SGD steps, momentum in the role of β1 and an L2 penalty at the gradient point y;
/// evaluate at x (`eval_params`); `schedulefree.SGDScheduleFree` semantics.
///
/// ```text
/// αₜ = α·min(1, t/warmup);  α_max ← max(α_max, αₜ)
/// wₜ = t^r · α_max^p;  W ← W + wₜ;  c = wₜ/W
/// g ← g + λ·y
/// y ← y + c·(z − y) + αₜ·(μ·(1 − c) − 1)·g
/// z ← z − αₜ·g
/// evaluate at x = (y − (1 − μ)·z) / μ
/// ```
///
/// The reference refuses μ = 0 (the evaluation weights divide by it); the range here
/// accepts it, and its evaluation weights are then not finite.
#[optimizer(
    /// Learning rate α.
    lr = 1.0 in 0.0..,
    /// Momentum μ: interpolation between the average and the base iterate.
    momentum = 0.9 in 0.0<..1.0,
    /// L2 penalty λ, added to the gradient at the gradient point y.
    weight_decay = 0.0 in 0.0..,
    /// Steps of linear learning-rate warmup.
    warmup_steps: i64 = 0 in 0..,
    /// Exponent r of the step count in the averaging weights.
    r = 0.0 in 0.0..,
    /// Exponent p of the largest learning rate so far in the averaging weights.
    weight_lr_power = 2.0 in 0.0..,
)]
#[eval((w - (1.0 - momentum) * z) / momentum)]
pub fn schedule_free_sgd(
    w: Param,
    g: Grad,
    #[init(w)] z: State,
    lr_max: ScalarState,
    weight_sum: ScalarState,
) {
    let lr_t = if t <= warmup_steps {
        lr * t / warmup_steps
    } else {
        lr
    };
    lr_max = max(lr_max, lr_t);
    let weight = t.powf(r) * lr_max.powf(weight_lr_power);
    weight_sum += weight;
    let c = if weight_sum > 0.0 {
        weight / weight_sum
    } else {
        0.0
    };
    g += weight_decay * w;
    w += c * (z - w) + lr_t * (momentum * (1.0 - c) - 1.0) * g;
    z -= lr_t * g;
}
