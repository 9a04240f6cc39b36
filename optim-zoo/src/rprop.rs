//! Rprop: per-element step sizes grown or shrunk by the sign agreement of gradients.

use optim_macros::optimizer;

/// Rprop (Riedmiller & Braun, 1993, "A Direct Adaptive Method for Faster Backpropagation
/// Learning: The RPROP Algorithm"): each weight moves by its own step size in the
/// direction of the gradient's sign; the step grows while successive gradients agree in
/// sign and shrinks when they disagree (that step is then skipped); `torch.optim.Rprop`
/// semantics.
///
/// ```text
/// s = sign(g·g_prev)
/// step ← clamp(step·(η+ if s > 0, η− if s < 0, else 1), step_min, step_max)   (starts at α)
/// g ← 0 where s < 0
/// w ← w − sign(g)·step;  g_prev ← g
/// ```
///
/// The learning rate is only the initial step size: a group with α = 0 still moves by
/// `step_size_min`.
#[optimizer(
    /// Learning rate α: the initial step size.
    lr = 1e-2 in 0.0..,
    /// Factor η− that shrinks the step where the gradient's sign flips.
    eta_minus = 0.5 in 0.0<..1.0,
    /// Factor η+ that grows the step where the gradient's sign holds.
    eta_plus = 1.2 in 1.0<..,
    /// Smallest step size.
    step_size_min = 1e-6 in 0.0..,
    /// Largest step size.
    step_size_max = 50.0 in 0.0..,
)]
pub fn rprop(w: Param, g: Grad, prev: State, #[init(lr)] step_size: State) {
    let agreement = sign(g * prev);
    let factor = if agreement > 0.0 {
        eta_plus
    } else if agreement < 0.0 {
        eta_minus
    } else {
        1.0
    };
    step_size = clamp(step_size * factor, step_size_min, step_size_max);
    g = if agreement < 0.0 { 0.0 } else { g };
    w -= sign(g) * step_size;
    prev = g;
}
