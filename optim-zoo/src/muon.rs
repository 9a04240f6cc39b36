//! Muon: momentum orthogonalized by Newton–Schulz, for matrices.

use optim_macros::optimizer;

/// Muon (Jordan et al., 2024): the momentum of a weight matrix, orthogonalized by five
/// Newton–Schulz iterations, as the step; `torch.optim.Muon` semantics, in the
/// parameter's precision. For 2-D parameters only: route the others (embeddings, biases,
/// gains) to another optimizer with `partition`.
///
/// ```text
/// b ← b + (1 − μ)·(g − b)
/// u = g + μ·(b − g) (Nesterov), else b
/// O = NewtonSchulz(u)                       (X ← aX + (bA + cA²)X, A = XXᵀ)
/// s = √max(1, rows/cols), or 0.2·√max(rows, cols) to match AdamW's RMS
/// w ← w·(1 − α·λ);  w ← w − α·s·O
/// ```
#[optimizer(
    /// Learning rate α.
    lr = 1e-3 in 0.0..,
    /// Decoupled weight decay λ.
    weight_decay = 0.1 in 0.0..,
    /// Momentum μ.
    momentum = 0.95 in 0.0..1.0,
    /// Nesterov momentum.
    nesterov = true,
    /// Newton–Schulz coefficient a.
    ns_a = 3.4445,
    /// Newton–Schulz coefficient b.
    ns_b = -4.775,
    /// Newton–Schulz coefficient c.
    ns_c = 2.0315,
    /// ε floor of the Frobenius norm the iteration starts by dividing by.
    eps = 1e-7 in 0.0..,
    /// Newton–Schulz iterations.
    ns_steps: i64 = 5 in 0..100,
    /// Scale the step by 0.2·√max(rows, cols), to match AdamW's update RMS.
    match_rms_adamw = false,
)]
pub fn muon(w: Param, g: Grad, b: State) {
    b += (1.0 - momentum) * (g - b);
    let u = if nesterov { g + momentum * (b - g) } else { b };
    let o = newton_schulz(u, ns_steps, ns_a, ns_b, ns_c, eps);
    let scale = if match_rms_adamw {
        0.2 * sqrt(max(rows, cols))
    } else {
        sqrt(max(1.0, rows / cols))
    };
    w *= 1.0 - lr * weight_decay;
    w -= lr * scale * o;
}
