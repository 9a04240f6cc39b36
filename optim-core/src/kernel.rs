//! The runtime side of generated kernels: instruction-set dispatch, threads, and the
//! small helpers the generated code calls.
//!
//! A generated kernel is one `#[inline(always)]` element loop over contiguous slices. It
//! hands its work to [`run`] as a [`Kernel`]: a span of the parameter with the same span
//! of its gradient and states. [`run`] then
//!
//! - stays on the calling thread when the span is small (below [`PARALLEL_MIN_BYTES`]
//!   over all its arrays) or [`num_threads`] is 1: a small step pays no thread overhead;
//! - otherwise splits the span recursively into chunks of about [`CHUNK_BYTES`] and runs
//!   them with rayon (`join`), in the pool chosen by [`set_num_threads`];
//! - runs each chunk through the best instruction set the CPU has ([`isa`]): the same loop
//!   compiled under `#[target_feature(enable = "avx2,fma")]` or AVX-512, chosen once at
//!   run time and cached, with the portable build as the fallback. A default release
//!   build (baseline x86-64) thus gets AVX2/AVX-512 code without `RUSTFLAGS`.
//!
//! A build without `debug_assertions` (the release profile) inlines the loop into each
//! wrapper. An unoptimized build compiles it once and calls it from every wrapper: the
//! dispatch is the same, the loop is portable code, and the crate that expands the
//! optimizers compiles in half the time (vectorizing is the optimizer's work anyway).
//!
//! Element-wise updates are independent, and Rust never contracts `a * b + c` into a
//! fused multiply-add, so every instruction set and every thread count gives the same
//! bits.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Bytes (summed over the parameter, its gradient and its states) per parallel chunk:
/// a few hundred KiB, so a chunk is worth a task but the chunks still balance.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// A kernel call touching fewer bytes than this stays on the calling thread; so does a
/// step of many small tensors whose total is below it.
pub const PARALLEL_MIN_BYTES: usize = 1024 * 1024;

/// Elements per block of a reduction: a pass that reduces records one partial sum per
/// block of this many elements (from the start of the tensor) and adds the blocks in
/// order, so the result does not depend on how the tensor is split across threads.
pub const REDUCE_BLOCK: usize = 4096;

/// Chunks are split at multiples of this many elements: a block of 8-bit state
/// ([`crate::compact::Q8_BLOCK`]) never straddles two chunks, and every vector loop's
/// remainder is in the last chunk only.
const SPLIT_ALIGN: usize = crate::compact::Q8_BLOCK;

// ---------------------------------------------------------------------------------------
// Instruction sets

/// An instruction set a generated kernel is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// What the crate is compiled for (baseline x86-64 in a default release build).
    Portable,
    /// x86-64 with AVX2 and FMA.
    Avx2,
    /// x86-64 with AVX-512 (F, VL), AVX2 and FMA.
    Avx512,
}

impl Isa {
    fn code(self) -> u8 {
        match self {
            Isa::Portable => 1,
            Isa::Avx2 => 2,
            Isa::Avx512 => 3,
        }
    }

    fn from_code(c: u8) -> Option<Isa> {
        match c {
            1 => Some(Isa::Portable),
            2 => Some(Isa::Avx2),
            3 => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// Lower-case name (`"portable"`, `"avx2"`, `"avx512"`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// The chosen instruction set (0 until first asked).
static ISA: AtomicU8 = AtomicU8::new(0);

/// The best instruction set this CPU supports (detected each call; [`isa`] caches).
pub fn detected_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        if avx2
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return Isa::Avx512;
        }
        if avx2 {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// The instruction set kernels run with: the best the CPU has, unless lowered by
/// [`set_isa`]. Detected on first use, then one atomic load.
#[inline]
pub fn isa() -> Isa {
    match Isa::from_code(ISA.load(Ordering::Relaxed)) {
        Some(isa) => isa,
        None => {
            let best = detected_isa();
            ISA.store(best.code(), Ordering::Relaxed);
            best
        }
    }
}

/// Caps the instruction set kernels use at `cap` (for benchmarks and tests: results are
/// the same bits under every instruction set). Returns the one now in use, which is
/// never more than the CPU supports.
pub fn set_isa(cap: Isa) -> Isa {
    let used = cap.min(detected_isa());
    ISA.store(used.code(), Ordering::Relaxed);
    used
}

// ---------------------------------------------------------------------------------------
// Threads

/// Threads set with [`set_num_threads`]; 0 means rayon's current pool.
static THREADS: AtomicUsize = AtomicUsize::new(0);
/// The pool built for an explicit thread count of 2 or more.
static POOL: Mutex<Option<Arc<rayon::ThreadPool>>> = Mutex::new(None);

/// Sets how many threads a step may use:
///
/// - `0` (the default): rayon's current pool — the global pool (sized by
///   `RAYON_NUM_THREADS`, else one thread per core), or the pool the step is called from
///   inside (`pool.install(|| opt.step(..))`);
/// - `1`: the calling thread only; rayon is never entered;
/// - `n ≥ 2`: a dedicated pool of `n` threads, built here (replacing one built before).
///
/// Process-wide; it changes timing only, never results.
pub fn set_num_threads(n: usize) -> crate::Result<()> {
    let pool = if n >= 2 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("optim-{i}"))
            .build()
            .map_err(|e| crate::OptimError::Config(format!("cannot start {n} threads: {e}")))?;
        Some(Arc::new(pool))
    } else {
        None
    };
    *POOL.lock().unwrap_or_else(PoisonError::into_inner) = pool;
    THREADS.store(n, Ordering::Relaxed);
    Ok(())
}

/// The number of threads a step may use now (see [`set_num_threads`]).
#[inline]
pub fn num_threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => rayon::current_num_threads(),
        n => n,
    }
}

/// Runs `f` in the pool set by [`set_num_threads`] (inside it, `rayon::join` uses that
/// pool), or directly when rayon's current pool is the one to use.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pool = match THREADS.load(Ordering::Relaxed) {
        0 | 1 => None,
        _ => POOL.lock().unwrap_or_else(PoisonError::into_inner).clone(),
    };
    match pool {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// Whether work of `bytes` bytes should be split across threads.
#[inline]
pub fn parallel_worth(bytes: usize) -> bool {
    bytes >= PARALLEL_MIN_BYTES && num_threads() > 1
}

// ---------------------------------------------------------------------------------------
// Kernels

/// One call's work for a generated kernel: the parameter's elements (or a span of them)
/// with the same span of its gradient and states, plus the per-step values.
///
/// Implemented by the code `#[optimizer]` generates; users never implement it.
pub trait Kernel: Send + Sized {
    /// Elements that can be split into spans (0 for work that runs whole, such as the
    /// rows of a sparse gradient).
    fn split_len(&self) -> usize;
    /// Bytes per element over every array the loop reads or writes.
    fn bytes_per_elem(&self) -> usize;
    /// Splits fall on multiples of this many elements ([`REDUCE_BLOCK`] for a pass that
    /// reduces, so that its blocks stay whole).
    fn align(&self) -> usize {
        SPLIT_ALIGN
    }
    /// The first `mid` elements and the rest (`0 < mid < len`).
    fn split_at(self, mid: usize) -> (Self, Self);
    /// The element loop over this span, on the calling thread. Generated with
    /// `#[inline(always)]` in optimized builds, so that the instruction-set wrappers below
    /// compile it.
    fn run(self);
}

/// Runs a generated kernel: split across threads when it is large enough, each piece
/// with the best instruction set (see the module documentation).
#[inline]
pub fn run<K: Kernel>(k: K) {
    let n = k.split_len();
    let per = k.bytes_per_elem().max(1);
    if n > SPLIT_ALIGN && parallel_worth(n.saturating_mul(per)) {
        let chunk = (CHUNK_BYTES / per).next_multiple_of(k.align().max(SPLIT_ALIGN));
        in_pool(|| split(k, chunk));
    } else {
        run_best(k);
    }
}

/// Halves `k` until its pieces are at most `chunk` elements, running the halves with
/// `rayon::join`.
fn split<K: Kernel>(k: K, chunk: usize) {
    let n = k.split_len();
    if n <= chunk {
        return run_best(k);
    }
    let chunks = n.div_ceil(chunk);
    let mid = (chunks / 2) * chunk;
    if mid == 0 || mid >= n {
        return run_best(k);
    }
    let (a, b) = k.split_at(mid);
    rayon::join(|| split(a, chunk), || split(b, chunk));
}

/// Runs `k` on the calling thread with the instruction set [`isa`] chose.
#[inline]
pub fn run_best<K: Kernel>(k: K) {
    #[cfg(target_arch = "x86_64")]
    match isa() {
        // SAFETY: `isa()` returns these only when `detected_isa` found the features.
        Isa::Avx512 => return unsafe { x86::avx512(k) },
        Isa::Avx2 => return unsafe { x86::avx2(k) },
        Isa::Portable => {}
    }
    k.run()
}

/// The element loop compiled for each instruction set. `Kernel::run` is
/// `#[inline(always)]` (without `debug_assertions`), so its whole loop is generated again
/// inside each of these.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Kernel;

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn avx2<K: Kernel>(k: K) {
        k.run()
    }

    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    pub(super) fn avx512<K: Kernel>(k: K) {
        k.run()
    }
}

// ---------------------------------------------------------------------------------------
// Helpers for generated code

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

/// Rows ahead that the sparse-row loop prefetches ([`prefetch_row`]).
pub const PREFETCH_ROWS: usize = 4;

/// Asks the CPU to start loading row `rows[j]` (of `width` elements) of `array` into
/// cache: the sparse-row loop calls it for a row a few iterations ahead, so that rows
/// scattered over a large table are fetched while earlier rows are computed. Does
/// nothing for an empty (disabled) state, a row out of range, or off x86-64.
#[inline(always)]
pub fn prefetch_row<T>(array: &[T], rows: &[usize], j: usize, width: usize) {
    if let Some(at) = rows.get(j).and_then(|&r| r.checked_mul(width)) {
        prefetch_span(array, at, width);
    }
}

/// Asks the CPU to start loading the cache lines of `array[at .. at + len]` (nothing if
/// out of range, or off x86-64). The loop over compact states, whose decoding and
/// encoding keep the core busy, calls it for blocks a few ahead, so that their memory
/// arrives while earlier blocks are computed rather than after.
#[inline(always)]
pub fn prefetch_span<T>(array: &[T], at: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(span) = array.get(at..at.saturating_add(len).min(array.len())) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let bytes = std::mem::size_of_val(span);
        let p = span.as_ptr().cast::<i8>();
        for off in (0..bytes).step_by(64) {
            // SAFETY: a prefetch never faults, and `p + off` stays inside `span`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (array, at, len);
}

/// Blocks ahead that the loop over compact states prefetches ([`prefetch_span`]).
pub const PREFETCH_BLOCKS: usize = 4;

/// A state split at `mid`; a disabled (empty) state splits into two empty ones.
#[inline]
pub fn split_state<T>(state: &mut [T], mid: usize) -> (&mut [T], &mut [T]) {
    let mid = mid.min(state.len());
    state.split_at_mut(mid)
}

/// A gradient view split at `mid` (dense gradients only; others are not split, and
/// come back as they were with [`crate::GradView::None`] for the second part).
#[inline]
pub fn split_grad<T>(
    grad: crate::GradView<'_, T>,
    mid: usize,
) -> (crate::GradView<'_, T>, crate::GradView<'_, T>) {
    use crate::GradView;
    match grad {
        GradView::Dense(g) => {
            let (a, b) = g.split_at(mid.min(g.len()));
            (GradView::Dense(a), GradView::Dense(b))
        }
        other => (other, GradView::None),
    }
}

/// The length a kernel may be split over: the parameter's, for a dense gradient or none
/// (a wrapper rule); 0 for sparse rows, which run whole.
#[inline]
pub fn splittable_len<T>(grad: &crate::GradView<'_, T>, len: usize) -> usize {
    match grad {
        crate::GradView::Rows { .. } => 0,
        _ => len,
    }
}

/// Bytes per element over the parameter, the gradient (if `grad`) and the states that
/// exist (non-empty), each as it is stored.
#[inline]
pub fn bytes_per_elem<T: crate::Scalar>(
    grad: bool,
    states: &[crate::precision::StateSpan<'_, T>],
) -> usize {
    let arrays = 1 + usize::from(grad);
    arrays * std::mem::size_of::<T>() + states.iter().map(|s| s.bytes_per_elem()).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isa_is_cached_and_capped() {
        let best = detected_isa();
        assert_eq!(set_isa(Isa::Avx512), best);
        assert_eq!(isa(), best);
        assert_eq!(set_isa(Isa::Portable), Isa::Portable);
        assert_eq!(isa(), Isa::Portable);
        set_isa(Isa::Avx512);
        assert_eq!(isa(), best);
    }

    #[test]
    fn disabled_states_split_empty() {
        let mut s: Vec<f32> = Vec::new();
        let (a, b) = split_state(&mut s, 10);
        assert!(a.is_empty() && b.is_empty());
        let mut s = vec![1.0f32; 5];
        let (a, b) = split_state(&mut s, 2);
        assert_eq!((a.len(), b.len()), (2, 3));
    }
}

/// The mathematical sign, as the equations' `sign(x)`: 1 for positive, −1 for negative,
/// `x` itself for ±0 and NaN (so `sign(0) = 0`, unlike Rust's `signum`, and as
/// `torch.sign`). Written as selects, so the element loop still vectorizes.
#[inline(always)]
pub fn sign<T: num_traits::Float>(x: T) -> T {
    let negative_or_x = select(x < T::zero(), -T::one(), x);
    select(x > T::zero(), T::one(), negative_or_x)
}

/// `a` if `c`, else `b`, with both already computed: the generated code's per-element
/// `if` between pure arms. LLVM turns this two-value choice into a `select`, which
/// vectorizes to a blend; a chain of branches on data does not.
#[inline(always)]
pub fn select<T: Copy>(c: bool, a: T, b: T) -> T {
    if c {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod sign_tests {
    use super::sign;

    #[test]
    fn sign_is_the_mathematical_sign() {
        assert_eq!(sign(2.5f32), 1.0);
        assert_eq!(sign(-1e-30f64), -1.0);
        assert_eq!(sign(0.0f32), 0.0);
        assert!(sign(f64::NAN).is_nan());
        assert_eq!(sign(f64::NEG_INFINITY), -1.0);
    }
}

// ---------------------------------------------------------------------------------------
// Helpers for passes that reduce

/// The partial sums of a chunk split at element `mid` (a multiple of [`REDUCE_BLOCK`]):
/// `per_block` values per block.
#[inline]
pub fn split_parts(parts: &mut [f64], mid: usize, per_block: usize) -> (&mut [f64], &mut [f64]) {
    let at = (mid / REDUCE_BLOCK)
        .saturating_mul(per_block)
        .min(parts.len());
    parts.split_at_mut(at)
}

/// The sum of eight lanes, always in the same order: `((0+1)+(2+3))+((4+5)+(6+7))`.
#[inline(always)]
pub fn fold_sum(a: &[f64; 8]) -> f64 {
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

/// The largest of eight lanes (exact, so its order does not matter).
#[inline(always)]
pub fn fold_max(a: &[f64; 8]) -> f64 {
    a.iter().fold(0.0, |m, &x| f64::max(m, x))
}

/// `x` rounded to the nearest `f32` and back, as the equations' `round_f32(x)`: for
/// references that compute a value in f32 whatever the parameters' precision.
#[inline(always)]
pub fn round_f32<T: crate::Scalar>(x: T) -> T {
    T::from_f64(f64::from(x.to_f64() as f32))
}

/// The real cube root, as the equations' `cbrt(x)`, in the parameters' precision: within
/// 2 ulp of `f64::cbrt` for every finite `f64`, within 1 ulp of the rounded `f64` root
/// for every finite `f32` (checked on all of them), with `cbrt(±0) = ±0` and `±inf`/NaN
/// returned as they are. Written as arithmetic and selects (no libm call), so the element loop still
/// vectorizes, and with plain IEEE operations, so every instruction set gives the same
/// bits.
///
/// The reciprocal cube root r = a^(−1/3) is refined without dividing,
/// r ← r·(4 − a·r³)/3 (Newton on r⁻³ = a), from a first guess made on the high 32 bits;
/// then y = a·r² takes one Newton step y ← y − (y³ − a)/(3y²): one division per element
/// where Newton on y alone needs one per iteration (a vector division costs as much as a
/// dozen multiplies). An `f32` root is computed in `f32`, the same steps on the 32-bit
/// pattern: twice the lanes per vector and half the latency of widening to `f64`.
#[inline(always)]
pub fn cbrt<T: crate::Scalar>(x: T) -> T {
    match T::DTYPE {
        // The widening and narrowing are exact for an f32, and fold away.
        crate::DType::F32 => T::from_f64(f64::from(cbrt_f32(x.to_f64() as f32))),
        _ => T::from_f64(cbrt_f64(x.to_f64())),
    }
}

#[inline(always)]
fn cbrt_f32(x: f32) -> f32 {
    // 2^24, whose cube root is 2^8: scales subnormals into the normal range.
    const TWO_24: f32 = 16_777_216.0;
    // The f64 guess's constant moved to the f32 layout (bias 127, 23 fraction bits): worst
    // relative error of the guess 9.2 %.
    const GUESS: u32 = 0x54AC_955A;
    let a = x.abs();
    let tiny = a < f32::MIN_POSITIVE;
    let scaled = select(tiny, a * TWO_24, a);
    let mut r = f32::from_bits(GUESS.wrapping_sub(scaled.to_bits() / 3));
    for _ in 0..3 {
        r = r * (4.0 - scaled * (r * r * r)) * (1.0 / 3.0);
    }
    let y = scaled * (r * r);
    let y = y - (y * y * y - scaled) / (3.0 * y * y);
    let y = select(tiny, y * (1.0 / 256.0), y); // 2^8, exact
    let y = select(a == 0.0 || !a.is_finite(), a, y);
    y.copysign(x)
}

#[inline(always)]
fn cbrt_f64(x: f64) -> f64 {
    // 2^54, whose cube root is 2^18: scales subnormals into the normal range.
    const TWO_54: f64 = 18_014_398_509_481_984.0;
    // High word of the guess: 1364·2^20 is the biased exponent of r for a = 1, lowered to
    // make the guess's worst relative error smallest (10 %).
    const GUESS: u32 = 0x553E_E800;
    let a = x.abs();
    let tiny = a < f64::MIN_POSITIVE;
    let scaled = select(tiny, a * TWO_54, a);
    // u32 arithmetic on the high word, which vectorizes (a u64 division by 3 does not).
    let high = (scaled.to_bits() >> 32) as u32;
    let mut r = f64::from_bits(u64::from(GUESS.wrapping_sub(high / 3)) << 32);
    for _ in 0..3 {
        r = r * (4.0 - scaled * (r * r * r)) * (1.0 / 3.0);
    }
    let y = scaled * (r * r);
    let y = y - (y * y * y - scaled) / (3.0 * y * y);
    let y = select(tiny, y / 262_144.0, y); // 2^18
    let y = select(a == 0.0 || !a.is_finite(), a, y);
    y.copysign(x)
}

#[cfg(test)]
mod cbrt_tests {
    use super::{cbrt_f32, cbrt_f64};

    /// Every finite f32 is checked once, in a release build (`--ignored`: 90 s); the
    /// default run takes every 61st bit pattern and the edges.
    fn check_f32(stride: u32) {
        let within_one_ulp = |x: f32| {
            let (got, want) = (cbrt_f32(x), (f64::from(x)).cbrt() as f32);
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
            assert!(ulp <= 1, "cbrt({x:e}) = {got:e}, want {want:e}");
        };
        let mut b: u32 = 0;
        while b <= f32::MAX.to_bits() {
            within_one_ulp(f32::from_bits(b));
            within_one_ulp(-f32::from_bits(b));
            b += stride;
        }
        for x in [
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-45,
            3e-44,
            1.0 - f32::EPSILON,
        ] {
            within_one_ulp(x);
        }
        assert_eq!(cbrt_f32(27.0), 3.0);
        assert_eq!(cbrt_f32(-8.0), -2.0);
        assert_eq!(cbrt_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(cbrt_f32(f32::NEG_INFINITY), f32::NEG_INFINITY);
        assert!(cbrt_f32(f32::NAN).is_nan());
    }

    #[test]
    fn f32_cbrt_is_within_one_ulp_of_the_rounded_f64_root() {
        check_f32(997);
    }

    #[test]
    #[ignore = "every f32: run with --release -- --ignored"]
    fn f32_cbrt_is_within_one_ulp_on_every_f32() {
        check_f32(1);
    }

    #[test]
    fn cbrt_is_within_two_ulp_of_libm_and_exact_at_the_edges() {
        let mut x = 1e-310_f64;
        while x < 1e308 {
            for v in [x, -x, x * 1.37, x * 1.999, x * 2.9, x * 7.99] {
                let (got, want) = (cbrt_f64(v), v.cbrt());
                let ulp = (want.abs().to_bits() as i64 - got.abs().to_bits() as i64).abs();
                assert!(
                    ulp <= 2 && got.signum() == want.signum(),
                    "cbrt({v}) = {got}, libm {want}"
                );
            }
            x *= 1.0137;
        }
        for v in [
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            1e-323,
            1.0 - f64::EPSILON,
            1.0 + f64::EPSILON,
        ] {
            let ulp = (v.cbrt().to_bits() as i64 - cbrt_f64(v).to_bits() as i64).abs();
            assert!(ulp <= 2, "cbrt({v}) = {}, libm {}", cbrt_f64(v), v.cbrt());
        }
        assert_eq!(cbrt_f64(27.0), 3.0);
        assert_eq!(cbrt_f64(-8.0), -2.0);
        assert_eq!(cbrt_f64(0.0).to_bits(), 0.0f64.to_bits());
        assert_eq!(cbrt_f64(-0.0).to_bits(), (-0.0f64).to_bits());
        assert_eq!(cbrt_f64(f64::INFINITY), f64::INFINITY);
        assert_eq!(cbrt_f64(f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert!(cbrt_f64(f64::NAN).is_nan());
    }
}
