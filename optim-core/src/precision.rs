//! How element-wise states are stored: in the parameter's precision, as bf16, or as
//! blockwise 8-bit codes ([`crate::compact`]), and the views the generated kernels step
//! them through.
//!
//! A kernel never sees a whole compact state in full precision: it walks the parameter
//! in windows of [`Q8_BLOCK`] elements, and for each window [`StateSpan::window`] decodes
//! the window's codes into a small buffer on the stack, the element loop updates it, and
//! [`StateSpan::commit`] encodes it back (one scale per block, computed from the block's
//! new values). States in full precision hand out their own elements instead.

use crate::compact::{self, QMap, Q8_BLOCK, Q8_MIN_LEN};
use crate::scalar::Scalar;

/// The precision an optimizer keeps its element-wise states in.
///
/// | precision | bytes per state element | rule |
/// | --- | --- | --- |
/// | `Full` | 4 (`f32`) or 8 (`f64`) | the parameter's precision |
/// | `Bf16` | 2 | `x` rounded to the nearest bfloat16, ties to even |
/// | `Q8` | 1 + 4/256 | per block of 256: scale `s = max(max|x|, 1e-12)`, code = nearest entry of a 256-entry dynamic map to `x/s` |
///
/// It applies to element-wise states that start from a fill value; states that start as
/// a copy of the parameter (Lookahead's slow weights, MADGRAD's `x0`) and factored row
/// and column states keep the parameter's precision, and so does every state of a
/// tensor under [`Q8_MIN_LEN`] elements under `Q8`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StatePrecision {
    /// The parameter's own precision (`f32` or `f64`): the default.
    #[default]
    Full,
    /// bfloat16, round to nearest even.
    Bf16,
    /// Blockwise 8-bit codes with one `f32` scale per block of 256 (bitsandbytes' and
    /// torchao's dynamic quantization).
    Q8,
}

impl StatePrecision {
    /// Every precision, with its name.
    pub const ALL: [StatePrecision; 3] = [
        StatePrecision::Full,
        StatePrecision::Bf16,
        StatePrecision::Q8,
    ];

    /// The name configs use: `"full"`, `"bf16"`, `"q8"`.
    pub fn name(self) -> &'static str {
        match self {
            StatePrecision::Full => "full",
            StatePrecision::Bf16 => "bf16",
            StatePrecision::Q8 => "q8",
        }
    }

    /// Parses a config name for parameters of type `T`: `"full"`, `T`'s own dtype name
    /// (`"f32"` for `f32` parameters), `"bf16"` or `"q8"`.
    pub fn parse<T: Scalar>(name: &str) -> Option<StatePrecision> {
        match name {
            "full" => Some(StatePrecision::Full),
            "bf16" => Some(StatePrecision::Bf16),
            "q8" => Some(StatePrecision::Q8),
            n if n == T::DTYPE.name() => Some(StatePrecision::Full),
            _ => None,
        }
    }

    /// The names [`StatePrecision::parse`] accepts for `T`, for messages.
    pub fn choices<T: Scalar>() -> String {
        format!("\"{}\" (or \"full\"), \"bf16\", \"q8\"", T::DTYPE.name())
    }

    /// How a state of `len` elements is stored under this precision, if it may be
    /// compact at all (element-wise and filled, not a copy of the parameter).
    pub fn storage_for(self, len: usize) -> StatePrecision {
        match self {
            StatePrecision::Q8 if len < Q8_MIN_LEN => StatePrecision::Full,
            p => p,
        }
    }
}

impl std::fmt::Display for StatePrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The storage of one state of one parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum StateBuf<T> {
    /// One value per element in the parameter's precision (also every factored state,
    /// and a disabled state: empty).
    Full(Vec<T>),
    /// One bfloat16 (its bits) per element.
    Bf16(Vec<u16>),
    /// One code per element and one scale per block of [`Q8_BLOCK`] elements.
    Q8 {
        /// Codes into `map`, in memory order.
        codes: Vec<u8>,
        /// `scales[b]` multiplies the map's values for elements `256·b .. 256·b + 255`.
        scales: Vec<f32>,
        /// Signed for states that may be negative, unsigned for the others.
        map: QMap,
    },
}

impl<T> Default for StateBuf<T> {
    fn default() -> Self {
        StateBuf::Full(Vec::new())
    }
}

impl<T: Scalar> StateBuf<T> {
    /// `len` elements of `value`, stored as `precision` says (with map `map` for `Q8`).
    pub fn filled(precision: StatePrecision, map: QMap, len: usize, value: T) -> Self {
        match precision.storage_for(len) {
            StatePrecision::Full => StateBuf::Full(vec![value; len]),
            StatePrecision::Bf16 => {
                let mut bits = [0u16; 1];
                compact::bf16_encode(&[value], &mut bits);
                StateBuf::Bf16(vec![bits[0]; len])
            }
            StatePrecision::Q8 => {
                let block = [value; Q8_BLOCK];
                let mut codes = vec![0u8; len];
                let mut scales = vec![0f32; len.div_ceil(Q8_BLOCK)];
                for (c, s) in codes.chunks_mut(Q8_BLOCK).zip(&mut scales) {
                    *s = compact::q8_encode(map, &block[..c.len()], c);
                }
                StateBuf::Q8 { codes, scales, map }
            }
        }
    }

    /// The same values re-stored as `precision` says (decoded, then encoded block by
    /// block); a copy when it is already stored so. For explicit conversions, not steps.
    pub fn converted(&self, precision: StatePrecision, map: QMap) -> Self {
        let len = self.len();
        let want = precision.storage_for(len);
        if want == self.precision() && (want != StatePrecision::Q8 || self.map() == Some(map)) {
            return self.clone();
        }
        let values = self.to_vec();
        if want == StatePrecision::Full {
            return StateBuf::Full(values);
        }
        let mut out = StateBuf::filled(want, map, len, T::zero());
        let mut span = out.span();
        let mut buf = [T::zero(); Q8_BLOCK];
        for (lo, v) in (0..len).step_by(Q8_BLOCK).zip(values.chunks(Q8_BLOCK)) {
            span.window(lo, v.len(), &mut buf).copy_from_slice(v);
            span.commit(lo, v.len(), &buf);
        }
        out
    }

    /// Number of elements (0 for a disabled state).
    pub fn len(&self) -> usize {
        match self {
            StateBuf::Full(v) => v.len(),
            StateBuf::Bf16(v) => v.len(),
            StateBuf::Q8 { codes, .. } => codes.len(),
        }
    }

    /// Whether the state holds nothing (disabled or not allocated yet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How it is stored.
    pub fn precision(&self) -> StatePrecision {
        match self {
            StateBuf::Full(_) => StatePrecision::Full,
            StateBuf::Bf16(_) => StatePrecision::Bf16,
            StateBuf::Q8 { .. } => StatePrecision::Q8,
        }
    }

    /// The map of a `Q8` state.
    pub fn map(&self) -> Option<QMap> {
        match self {
            StateBuf::Q8 { map, .. } => Some(*map),
            _ => None,
        }
    }

    /// Bytes the state occupies (codes and scales for `Q8`).
    pub fn bytes(&self) -> usize {
        match self {
            StateBuf::Full(v) => std::mem::size_of_val(v.as_slice()),
            StateBuf::Bf16(v) => 2 * v.len(),
            StateBuf::Q8 { codes, scales, .. } => codes.len() + 4 * scales.len(),
        }
    }

    /// The elements of a full-precision state; empty for a compact one (factored states
    /// and copies of the parameter are always full).
    pub fn full(&self) -> &[T] {
        match self {
            StateBuf::Full(v) => v,
            _ => &[],
        }
    }

    /// Mutable [`StateBuf::full`].
    pub fn full_mut(&mut self) -> &mut [T] {
        match self {
            StateBuf::Full(v) => v,
            _ => &mut [],
        }
    }

    /// The element values in the parameter's precision (decoded for compact storage).
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            StateBuf::Full(v) => v.clone(),
            StateBuf::Bf16(bits) => {
                let mut out = vec![T::zero(); bits.len()];
                compact::bf16_decode(bits, &mut out);
                out
            }
            StateBuf::Q8 { codes, scales, map } => {
                let mut out = vec![T::zero(); codes.len()];
                for ((o, c), &s) in out
                    .chunks_mut(Q8_BLOCK)
                    .zip(codes.chunks(Q8_BLOCK))
                    .zip(scales)
                {
                    compact::q8_decode(*map, c, s, o);
                }
                out
            }
        }
    }

    /// Elements `lo .. lo + len` to read (`len` at most [`Q8_BLOCK`], `lo` a multiple of
    /// it for compact storage): the state's own, or decoded into `buf`. Empty for a
    /// disabled state or out of range.
    #[inline(always)]
    pub fn block<'s>(&'s self, lo: usize, len: usize, buf: &'s mut [T; Q8_BLOCK]) -> &'s [T] {
        let len = len.min(Q8_BLOCK);
        match self {
            StateBuf::Full(v) => v.get(lo..lo + len).unwrap_or(&[]),
            StateBuf::Bf16(v) => match v.get(lo..lo + len) {
                Some(bits) => {
                    compact::bf16_decode(bits, &mut buf[..len]);
                    &buf[..len]
                }
                None => &[],
            },
            StateBuf::Q8 { codes, scales, map } => {
                match (codes.get(lo..lo + len), scales.get(lo / Q8_BLOCK)) {
                    (Some(c), Some(&s)) => {
                        compact::q8_decode(*map, c, s, &mut buf[..len]);
                        &buf[..len]
                    }
                    _ => &[],
                }
            }
        }
    }

    /// The view a kernel steps.
    pub fn span(&mut self) -> StateSpan<'_, T> {
        match self {
            StateBuf::Full(v) => StateSpan::Full(v),
            StateBuf::Bf16(v) => StateSpan::Bf16(v),
            StateBuf::Q8 { codes, scales, map } => StateSpan::Q8 {
                codes,
                scales,
                map: *map,
            },
        }
    }
}

/// A span of one state as a kernel sees it: full elements, or compact storage that is
/// decoded and encoded a window at a time.
#[derive(Debug)]
pub enum StateSpan<'a, T> {
    /// Elements in the parameter's precision (empty: the state is disabled).
    Full(&'a mut [T]),
    /// bfloat16 bits.
    Bf16(&'a mut [u16]),
    /// 8-bit codes; the span starts at a block boundary, `scales[0]` is its first
    /// block's.
    Q8 {
        /// Codes of the span's elements.
        codes: &'a mut [u8],
        /// Scales of the span's blocks.
        scales: &'a mut [f32],
        /// The map the codes index.
        map: QMap,
    },
}

impl<'a, T: Scalar> StateSpan<'a, T> {
    /// Whether the span is in full precision (or disabled), so that kernels can step it
    /// directly.
    #[inline(always)]
    pub fn is_full(&self) -> bool {
        matches!(self, StateSpan::Full(_))
    }

    /// Elements of the span.
    #[inline(always)]
    pub fn len(&self) -> usize {
        match self {
            StateSpan::Full(v) => v.len(),
            StateSpan::Bf16(v) => v.len(),
            StateSpan::Q8 { codes, .. } => codes.len(),
        }
    }

    /// Whether the span is empty (a disabled state).
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per element the span moves when read and written (scales included).
    #[inline(always)]
    pub fn bytes_per_elem(&self) -> usize {
        match self {
            StateSpan::Full([]) => 0,
            StateSpan::Full(_) => std::mem::size_of::<T>(),
            StateSpan::Bf16(_) => 2,
            StateSpan::Q8 { .. } => 1,
        }
    }

    /// The elements of a full span (empty for a compact one).
    #[inline(always)]
    pub fn into_full(self) -> &'a mut [T] {
        match self {
            StateSpan::Full(v) => v,
            _ => &mut [],
        }
    }

    /// Starts loading elements `at .. at + len` (codes, bits or values) into cache.
    #[inline(always)]
    pub fn prefetch(&self, at: usize, len: usize) {
        match self {
            StateSpan::Full(v) => crate::kernel::prefetch_span(v, at, len),
            StateSpan::Bf16(v) => crate::kernel::prefetch_span(v, at, len),
            StateSpan::Q8 { codes, .. } => crate::kernel::prefetch_span(codes, at, len),
        }
    }

    /// The first `mid` elements and the rest. `mid` is a multiple of [`Q8_BLOCK`] for a
    /// `Q8` span (kernels split at multiples of it); a disabled span splits into two.
    #[inline]
    pub fn split_at(self, mid: usize) -> (Self, Self) {
        match self {
            StateSpan::Full(v) => {
                let (a, b) = v.split_at_mut(mid.min(v.len()));
                (StateSpan::Full(a), StateSpan::Full(b))
            }
            StateSpan::Bf16(v) => {
                let (a, b) = v.split_at_mut(mid.min(v.len()));
                (StateSpan::Bf16(a), StateSpan::Bf16(b))
            }
            StateSpan::Q8 { codes, scales, map } => {
                let (ca, cb) = codes.split_at_mut(mid.min(codes.len()));
                let at = mid.div_ceil(Q8_BLOCK).min(scales.len());
                let (sa, sb) = scales.split_at_mut(at);
                (
                    StateSpan::Q8 {
                        codes: ca,
                        scales: sa,
                        map,
                    },
                    StateSpan::Q8 {
                        codes: cb,
                        scales: sb,
                        map,
                    },
                )
            }
        }
    }

    /// Elements `lo .. lo + len` to update: the span's own for a full span (empty if it is
    /// disabled), else decoded into `buf`. For `Q8`, `lo` is a multiple of [`Q8_BLOCK`]
    /// and `len` at most one block (the last may be short). Out of range gives empty.
    #[inline(always)]
    pub fn window<'s>(
        &'s mut self,
        lo: usize,
        len: usize,
        buf: &'s mut [T; Q8_BLOCK],
    ) -> &'s mut [T] {
        let len = len.min(Q8_BLOCK);
        match self {
            StateSpan::Full(v) => match v.get_mut(lo..lo + len) {
                Some(s) => s,
                None => &mut [],
            },
            StateSpan::Bf16(v) => match v.get(lo..lo + len) {
                Some(bits) => {
                    compact::bf16_decode(bits, &mut buf[..len]);
                    &mut buf[..len]
                }
                None => &mut [],
            },
            StateSpan::Q8 { codes, scales, map } => {
                match (codes.get(lo..lo + len), scales.get(lo / Q8_BLOCK)) {
                    (Some(c), Some(&s)) => {
                        compact::q8_decode(*map, c, s, &mut buf[..len]);
                        &mut buf[..len]
                    }
                    _ => &mut [],
                }
            }
        }
    }

    /// Stores the window `lo .. lo + len` that [`StateSpan::window`] decoded into `buf`
    /// (nothing to do for a full span, whose window was its own elements).
    #[inline(always)]
    pub fn commit(&mut self, lo: usize, len: usize, buf: &[T; Q8_BLOCK]) {
        let len = len.min(Q8_BLOCK);
        match self {
            StateSpan::Full(_) => {}
            StateSpan::Bf16(v) => {
                if let Some(bits) = v.get_mut(lo..lo + len) {
                    compact::bf16_encode(&buf[..len], bits);
                }
            }
            StateSpan::Q8 { codes, scales, map } => {
                if let (Some(c), Some(s)) =
                    (codes.get_mut(lo..lo + len), scales.get_mut(lo / Q8_BLOCK))
                {
                    *s = compact::q8_encode(*map, &buf[..len], c);
                }
            }
        }
    }
}

/// A compact state walked in windows that need not start on block boundaries (the rows
/// of a matrix, each in windows of up to [`Q8_BLOCK`] columns), in increasing order.
///
/// It keeps the (at most two) blocks the current window touches decoded, and encodes a
/// block once the walk has moved past it, so that each block is decoded once and encoded
/// once from its final values, as a walk in whole blocks would.
pub struct StateCursor<'a, T> {
    span: StateSpan<'a, T>,
    /// Blocks `first .. first + loaded` are decoded into `buf`.
    buf: [[T; Q8_BLOCK]; 2],
    first: usize,
    loaded: usize,
    /// Whether the walk writes the state (else blocks are never encoded).
    writes: bool,
}

impl<'a, T: Scalar> StateCursor<'a, T> {
    /// A cursor over `span`; `writes` says whether the walk updates the state.
    #[inline]
    pub fn new(span: StateSpan<'a, T>, writes: bool) -> Self {
        StateCursor {
            span,
            buf: [[T::zero(); Q8_BLOCK]; 2],
            first: 0,
            loaded: 0,
            writes,
        }
    }

    /// Elements `at .. at + len` (`len` at most [`Q8_BLOCK`]; each window starts at or
    /// after the one before). Empty for a disabled state or out of range.
    #[inline(always)]
    pub fn window(&mut self, at: usize, len: usize) -> &mut [T] {
        let len = len.min(Q8_BLOCK);
        if self.span.is_full() {
            let StateSpan::Full(v) = &mut self.span else {
                return &mut [];
            };
            return match v.get_mut(at..at + len) {
                Some(s) => s,
                None => &mut [],
            };
        }
        let n = self.span.len();
        if len == 0 || at + len > n {
            return &mut [];
        }
        let (b0, b1) = (at / Q8_BLOCK, (at + len - 1) / Q8_BLOCK);
        // Flush the blocks the walk has left behind.
        while self.loaded > 0 && self.first < b0 {
            self.flush_first();
        }
        if self.loaded == 0 {
            self.first = b0;
        }
        while self.first + self.loaded <= b1 {
            let b = self.first + self.loaded;
            let lo = b * Q8_BLOCK;
            let bl = (n - lo).min(Q8_BLOCK);
            let mut tmp = [T::zero(); Q8_BLOCK];
            let got = self.span.window(lo, bl, &mut tmp).len();
            self.buf[self.loaded][..got].copy_from_slice(&tmp[..got]);
            self.loaded += 1;
        }
        let off = at - self.first * Q8_BLOCK;
        let flat = self.buf.as_flattened_mut();
        &mut flat[off..off + len]
    }

    /// Encodes the first loaded block (if the walk writes) and drops it.
    fn flush_first(&mut self) {
        let n = self.span.len();
        let lo = self.first * Q8_BLOCK;
        if self.writes && lo < n {
            let bl = (n - lo).min(Q8_BLOCK);
            let block = self.buf[0];
            self.span.commit(lo, bl, &block);
        }
        self.buf[0] = self.buf[1];
        self.first += 1;
        self.loaded -= 1;
    }

    /// Encodes what is still decoded: call once the walk is over.
    #[inline]
    pub fn finish(mut self) {
        while self.loaded > 0 {
            self.flush_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_states_decode_to_their_fill_value_as_the_precision_keeps_it() {
        for p in StatePrecision::ALL {
            for fill in [0.0f32, 1.0, 1e-6, 0.25] {
                let s = StateBuf::filled(p, QMap::Unsigned, 5000, fill);
                assert_eq!(s.precision(), p);
                let v = s.to_vec();
                assert!(
                    v.iter().all(|&x| (x - fill).abs() <= fill * 4e-3),
                    "{p} {fill}"
                );
            }
        }
        // Small tensors keep full states under q8.
        let s = StateBuf::filled(StatePrecision::Q8, QMap::Signed, 100, 0.5f32);
        assert_eq!(s.precision(), StatePrecision::Full);
    }

    #[test]
    fn a_cursor_walk_in_unaligned_windows_encodes_as_a_walk_in_blocks() {
        let len = 5000;
        let values: Vec<f32> = (0..len)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01)
            .collect();
        let mut whole = StateBuf::filled(StatePrecision::Q8, QMap::Signed, len, 0.0f32);
        let mut walked = whole.clone();
        {
            let mut span = whole.span();
            let mut buf = [0.0f32; Q8_BLOCK];
            for lo in (0..len).step_by(Q8_BLOCK) {
                let n = (len - lo).min(Q8_BLOCK);
                span.window(lo, n, &mut buf)
                    .copy_from_slice(&values[lo..lo + n]);
                span.commit(lo, n, &buf);
            }
        }
        {
            let mut cursor = StateCursor::new(walked.span(), true);
            let mut at = 0;
            for w in [1usize, 100, 255, 256, 3, 200].iter().cycle() {
                if at >= len {
                    break;
                }
                let n = (*w).min(len - at);
                cursor.window(at, n).copy_from_slice(&values[at..at + n]);
                at += n;
            }
            cursor.finish();
        }
        assert_eq!(whole, walked);
    }

    #[test]
    fn conversions_keep_values_as_the_target_precision_does() {
        let len: usize = 4096 + 300;
        let values: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
        let full = StateBuf::Full(values.clone());
        let q8 = full.converted(StatePrecision::Q8, QMap::Signed);
        assert_eq!(q8.precision(), StatePrecision::Q8);
        assert_eq!(q8.bytes(), len + 4 * len.div_ceil(256));
        let back = q8.converted(StatePrecision::Full, QMap::Signed).to_vec();
        for (a, b) in values.iter().zip(&back) {
            assert!((a - b).abs() < 0.02, "{a} {b}");
        }
        let bf = full.converted(StatePrecision::Bf16, QMap::Signed);
        for (a, b) in values.iter().zip(bf.to_vec()) {
            assert!((a - b).abs() <= a.abs() / 256.0, "{a} {b}");
        }
    }
}
