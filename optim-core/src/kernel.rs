//! Small helpers the generated kernels call.

/// The elements `a..b` of an element-wise state, or the empty slice for a state that
/// does not exist under the current options (its kernel never reads it).
#[inline(always)]
pub fn span_or_empty<T>(state: &mut [T], a: usize, b: usize) -> &mut [T] {
    if state.is_empty() {
        state
    } else {
        match state.get_mut(a..b) {
            Some(s) => s,
            None => &mut [],
        }
    }
}
