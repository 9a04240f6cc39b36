//! Micro-benchmark of the compact-state primitives (`optim_core::compact`): blockwise
//! 8-bit (q8) and bf16 encode/decode over 16M `f32` elements, best of 5, against a plain
//! `f32` copy loop (4 bytes read + 4 bytes written per element) measured in the same run.
//!
//! The loops run as a `Kernel` through `optim_core::kernel::run_best`, so they are compiled
//! exactly as a generated kernel is (AVX2 or AVX-512 variant, chosen at run time); the
//! q8 ones are also run with the instruction set capped to portable.
//!
//! ```text
//! cargo run --release -p optim-core --example compact_bench
//! cargo run --release -p optim-core --example compact_bench -- --exhaustive
//! ```
//!
//! `--exhaustive` additionally checks the q8 codes of every `f32` `y` with `|y| <= 1`
//! (about 4.3e9 lookups over both maps and signs) against torchao's formula written
//! plainly (binary search + residual rule), at scale 1.

use std::hint::black_box;
use std::time::Instant;

use optim_core::compact::{bf16_decode, bf16_encode, q8_decode, q8_encode, QMap, Q8_BLOCK};
use optim_core::kernel::{self, Isa, Kernel};

const N: usize = 16 << 20;

/// One timed loop over the whole arrays.
enum Job<'a> {
    /// dst = src.
    Copy(&'a [f32], &'a mut [f32]),
    /// codes, scales = q8(src).
    Q8Encode(QMap, &'a [f32], &'a mut [u8], &'a mut [f32]),
    /// dst = dequant(codes, scales).
    Q8Decode(QMap, &'a [u8], &'a [f32], &'a mut [f32]),
    /// Per block: codes = q8(src), then dst = dequant(codes).
    Q8RoundTrip(QMap, &'a [f32], &'a mut [u8], &'a mut [f32], &'a mut [f32]),
    /// Per block, in place: decode the state to a stack buffer and encode it back (the
    /// state traffic a q8 state adds to a kernel: 1 byte read + 1 written per element).
    Q8State(QMap, &'a mut [u8], &'a mut [f32]),
    /// bits = bf16(src).
    Bf16Encode(&'a [f32], &'a mut [u16]),
    /// dst = f32(bits).
    Bf16Decode(&'a [u16], &'a mut [f32]),
    /// Per block: bits = bf16(src), then dst = f32(bits).
    Bf16RoundTrip(&'a [f32], &'a mut [u16], &'a mut [f32]),
    /// Per block, in place: decode to a stack buffer and encode back (2 + 2 bytes).
    Bf16State(&'a mut [u16]),
}

impl Kernel for Job<'_> {
    fn split_len(&self) -> usize {
        0
    }
    fn bytes_per_elem(&self) -> usize {
        8
    }
    fn split_at(self, _mid: usize) -> (Self, Self) {
        unreachable!("split_len is 0")
    }
    #[inline(always)]
    fn run(self) {
        match self {
            Job::Copy(src, dst) => {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = *s;
                }
            }
            Job::Q8Encode(map, src, codes, scales) => {
                for ((x, c), s) in src
                    .chunks(Q8_BLOCK)
                    .zip(codes.chunks_mut(Q8_BLOCK))
                    .zip(scales)
                {
                    *s = q8_encode(map, x, c);
                }
            }
            Job::Q8Decode(map, codes, scales, dst) => {
                for ((c, s), o) in codes
                    .chunks(Q8_BLOCK)
                    .zip(scales)
                    .zip(dst.chunks_mut(Q8_BLOCK))
                {
                    q8_decode(map, c, *s, o);
                }
            }
            Job::Q8RoundTrip(map, src, codes, scales, dst) => {
                for (((x, c), s), o) in src
                    .chunks(Q8_BLOCK)
                    .zip(codes.chunks_mut(Q8_BLOCK))
                    .zip(scales)
                    .zip(dst.chunks_mut(Q8_BLOCK))
                {
                    *s = q8_encode(map, x, c);
                    q8_decode(map, c, *s, o);
                }
            }
            Job::Q8State(map, codes, scales) => {
                let mut buf = [0f32; Q8_BLOCK];
                for (c, s) in codes.chunks_mut(Q8_BLOCK).zip(scales) {
                    let b = &mut buf[..c.len()];
                    q8_decode(map, c, *s, b);
                    *s = q8_encode(map, b, c);
                }
            }
            Job::Bf16Encode(src, bits) => bf16_encode(src, bits),
            Job::Bf16Decode(bits, dst) => bf16_decode(bits, dst),
            Job::Bf16RoundTrip(src, bits, dst) => {
                for ((x, b), o) in src
                    .chunks(Q8_BLOCK)
                    .zip(bits.chunks_mut(Q8_BLOCK))
                    .zip(dst.chunks_mut(Q8_BLOCK))
                {
                    bf16_encode(x, b);
                    bf16_decode(b, o);
                }
            }
            Job::Bf16State(bits) => {
                let mut buf = [0f32; Q8_BLOCK];
                for b in bits.chunks_mut(Q8_BLOCK) {
                    let v = &mut buf[..b.len()];
                    bf16_decode(b, v);
                    bf16_encode(v, b);
                }
            }
        }
    }
}

/// Best of 5 runs, in ns per element; a run is `reps` jobs of `len` elements each.
fn best_of_5(len: usize, reps: usize, mut make: impl FnMut() -> Job<'static>) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            kernel::run_best(black_box(make()));
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    best * 1e9 / (len * reps) as f64
}

/// SplitMix64.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// torchao's `quantize_8bit_with_qmap`, plainly.
fn ref_code(q: &[f32; 256], y: f32) -> u8 {
    let mut c = if y >= q[128] { 128 } else { 0 };
    for step in [64, 32, 16, 8, 4, 2, 1] {
        if y >= q[c + step] {
            c += step;
        }
    }
    let up = (c + 1).min(255);
    if (y - q[c]) >= (q[up] - q[c]) * 0.5 {
        up as u8
    } else {
        c as u8
    }
}

fn exhaustive() {
    let t = Instant::now();
    let mut checked = 0u64;
    for map in [QMap::Signed, QMap::Unsigned] {
        let q = map.values();
        for sign in [0u32, 0x8000_0000] {
            let mut block = [0f32; Q8_BLOCK];
            let mut codes = [0u8; Q8_BLOCK];
            // block[0] = 1.0 makes the scale 1, so y = x.
            block[0] = 1.0;
            let mut next = 0u32;
            while next <= 0x3F80_0000 {
                let k = ((0x3F80_0001 - next) as usize).min(Q8_BLOCK - 1);
                for (j, v) in block[1..=k].iter_mut().enumerate() {
                    *v = f32::from_bits(sign | (next + j as u32));
                }
                let scale = q8_encode(map, &block[..=k], &mut codes[..=k]);
                assert_eq!(scale, 1.0);
                for j in 1..=k {
                    let y = block[j];
                    assert_eq!(codes[j], ref_code(q, y), "{} y = {y:e}", map.name());
                }
                checked += k as u64;
                next += k as u32;
            }
        }
    }
    println!(
        "exhaustive: {checked} f32 values with |y| <= 1 over both maps: codes equal torchao's ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
}

fn main() {
    let best = kernel::isa();
    println!(
        "compact_bench: {N} f32 elements, best of 5, instruction set {}",
        best.name()
    );

    // A first-moment-like state: signs random, magnitudes log-uniform over 4 decades,
    // the decade varying per 4096-element stretch.
    let mut rng = 42u64;
    let mut src = vec![0f32; N];
    for (i, v) in src.iter_mut().enumerate() {
        let r = splitmix(&mut rng);
        let e = ((i / 4096) % 5) as f32;
        let u = (r >> 40) as f32 / (1u64 << 24) as f32;
        let m = 10f32.powf(-(e + 4.0 * u));
        *v = if r & 1 == 0 { m } else { -m };
    }
    let src: &'static [f32] = Vec::leak(src);
    let dst: &'static mut [f32] = Vec::leak(vec![0f32; N]);
    let codes: &'static mut [u8] = Vec::leak(vec![0u8; N]);
    let scales: &'static mut [f32] = Vec::leak(vec![0f32; N.div_ceil(Q8_BLOCK)]);
    let bits: &'static mut [u16] = Vec::leak(vec![0u16; N]);
    // The jobs borrow these mutably one at a time; raw pointers let `best_of_5` remake
    // a job per run.
    let (dp, cp, sp, bp) = (
        dst.as_mut_ptr(),
        codes.as_mut_ptr(),
        scales.as_mut_ptr(),
        bits.as_mut_ptr(),
    );
    // SAFETY: each job is the only live borrow of these leaked arrays while it runs, and
    // `n <= N` (scales: one per block).
    let d = |n: usize| unsafe { std::slice::from_raw_parts_mut(dp, n) };
    let c = |n: usize| unsafe { std::slice::from_raw_parts_mut(cp, n) };
    let s = |n: usize| unsafe { std::slice::from_raw_parts_mut(sp, n.div_ceil(Q8_BLOCK)) };
    let b = |n: usize| unsafe { std::slice::from_raw_parts_mut(bp, n) };

    // Streaming over all N elements, and in cache: the first HOT elements N / HOT times
    // (64 KiB of f32, 16 KiB of codes: L2-resident), which shows the compute cost alone.
    const HOT: usize = 16 * 1024;
    let copy = best_of_5(N, 1, || Job::Copy(src, d(N)));
    let copy_hot = best_of_5(HOT, N / HOT, || Job::Copy(&src[..HOT], d(HOT)));
    println!("\nbaseline f32 copy loop (4 B read + 4 B write per element):");
    println!("  streaming {N} elements: {copy:.3} ns/elem; in cache ({HOT} elements): {copy_hot:.3} ns/elem");
    println!(
        "\n{:<42} {:>9} {:>8} {:>11}",
        "loop", "ns/elem", "vs copy", "in cache"
    );
    let row = |name: &str, t: f64, hot: f64| {
        println!("{name:<42} {t:>9.3} {:>7.2}x {hot:>11.3}", t / copy)
    };
    let both = |make: &dyn Fn(usize) -> Job<'static>| {
        (
            best_of_5(N, 1, || make(N)),
            best_of_5(HOT, N / HOT, || make(HOT)),
        )
    };

    for isa in [best, Isa::Portable] {
        let used = kernel::set_isa(isa);
        println!("-- {}", used.name());
        for map in [QMap::Signed, QMap::Unsigned] {
            let m = map.name();
            let (enc, enc_h) = both(&|n| Job::Q8Encode(map, &src[..n], c(n), s(n)));
            let (dec, dec_h) = both(&|n| Job::Q8Decode(map, c(n), s(n), d(n)));
            let (rt, rt_h) = both(&|n| Job::Q8RoundTrip(map, &src[..n], c(n), s(n), d(n)));
            let (st, st_h) = both(&|n| Job::Q8State(map, c(n), s(n)));
            row(&format!("q8 {m} encode (f32 -> u8 + scale)"), enc, enc_h);
            row(&format!("q8 {m} decode (u8 + scale -> f32)"), dec, dec_h);
            row(
                &format!("q8 {m} encode+decode (f32 -> u8 -> f32)"),
                rt,
                rt_h,
            );
            row(&format!("q8 {m} state cycle in place (u8 -> u8)"), st, st_h);
        }
        let (enc, enc_h) = both(&|n| Job::Bf16Encode(&src[..n], b(n)));
        let (dec, dec_h) = both(&|n| Job::Bf16Decode(b(n), d(n)));
        let (rt, rt_h) = both(&|n| Job::Bf16RoundTrip(&src[..n], b(n), d(n)));
        let (st, st_h) = both(&|n| Job::Bf16State(b(n)));
        row("bf16 encode (f32 -> u16)", enc, enc_h);
        row("bf16 decode (u16 -> f32)", dec, dec_h);
        row("bf16 encode+decode (f32 -> u16 -> f32)", rt, rt_h);
        row("bf16 state cycle in place (u16 -> u16)", st, st_h);
        if best == Isa::Portable {
            break;
        }
    }
    kernel::set_isa(best);

    if std::env::args().any(|a| a == "--exhaustive") {
        exhaustive();
    }
}
