//! Lookahead, around any optimizer; Ranger is Lookahead around RAdam.

use optim_macros::optimizer;

/// Lookahead (Zhang, Lucas, Hinton & Ba, 2019): an inner optimizer moves the fast
/// weights; every k steps the slow weights move a fraction α towards them and the fast
/// weights restart from there. Wraps any optimizer, from the zoo or your own.
///
/// ```text
/// (inner step on w)
/// every k-th step:  s ← s + α·(w − s);  w ← s          s starts as the initial w
/// ```
///
/// `t` counts the whole optimizer's steps, and the sync moves every parameter.
#[optimizer(
    /// Synchronise every k steps.
    k = 5 in 1..,
    /// Step size α of the slow weights towards the fast ones.
    alpha = 0.5 in 0.0..=1.0,
)]
pub fn lookahead(w: Param, #[init(w)] slow: State) {
    if t % k == 0 {
        slow += alpha * (w - slow);
        w = slow;
    }
}
