//! Compact optimizer states: blockwise 8-bit (q8) and bf16 encode/decode primitives.
//!
//! These are the element-level building blocks of compact states; the generated kernels
//! and the checkpoint code call them. Nothing here allocates or panics on any lengths;
//! the only data are, per map, its 256 values and a lookup table, both built at compile
//! time.
//!
//! # q8: blockwise dynamic 8-bit quantization
//!
//! The semantics are those of torchao 0.18 (`torchao.optim`, `quant_utils.py` and
//! `subclass_8bit.py`), bit for bit. A state tensor is cut into blocks of [`Q8_BLOCK`]
//! consecutive elements (the last may be shorter); each block stores one `f32` scale and
//! one code byte per element:
//!
//! - `scale = max(max_i |x_i|, 1e-12)` (in `f32`; torchao's `amax(..).clip(1e-12)`);
//! - `y_i = x_i / scale` (one correctly rounded `f32` division), so `|y_i| <= 1`;
//! - `code_i = Q(y_i)`, where `Q` is torchao's `quantize_8bit_with_qmap` for the map `q`
//!   (256 increasing `f32` values, [`QMap::values`]): with `c` the largest index such
//!   that `q[c] <= y` (0 if there is none), the code is `c' = min(c + 1, 255)` if
//!   `fl(y - q[c]) >= fl(fl(q[c'] - q[c]) * 0.5)` (all in `f32`), else `c`; a NaN `y`
//!   gives 0;
//! - decoding: `x'_i = fl(q[code_i] * scale)` (an `f32` product).
//!
//! ## How `Q` is computed fast and exactly
//!
//! For fixed `c`, `fl(y - q[c])` is non-decreasing in `y`, so the `y` in
//! `[q[c], q[c+1])` that round up form an interval `[t_c, q[c+1])`, where `t_c` is the
//! smallest `f32` with the rounding condition true (it exists: at `y = q[c+1]` the
//! condition holds). The thresholds are found at compile time by bisection over the
//! ordered `f32` bit patterns, and are strictly increasing (`q[c] < t_c <= q[c+1]`).
//! Then, for every non-NaN `f32` `y`,
//!
//! `Q(y) = #{ c in 0..255 : t_c <= y }`
//!
//! (below `q[0]` no threshold is reached and `Q = 0`; at or above `q[255] = 1` all 255
//! are). Counting is done with a bucket table: a bucket is the set of `f32` sharing the
//! top 16 bits of their pattern (sign, exponent, 7 mantissa bits). Every magnitude
//! below `2^-23` shares one bucket per sign, and every magnitude at or above `1.0`
//! another; compile-time assertions check that no threshold lies in these clamped
//! buckets (so all `|y| < 2^-23`, including `±0` and subnormals, get the code of `0.0`,
//! every `y >= 1` gets 255 and every `y <= -1` gets 0), and that no other bucket holds
//! more than one threshold. Each entry holds the code at the bucket's lowest value and the 16-bit
//! in-bucket key of its threshold, if any; the key of `y` is its low 16 bits, flipped
//! for negative `y` so that it grows with `y` there too. The entry is packed as
//! `code_low * 2^16 + (2^16 - key_t)` (with `key_t = 2^16` when the bucket holds no
//! threshold), so that
//!
//! `Q(y) = (entry + key_y) >> 16`.
//!
//! One table per map, `2 * 2946` entries of `u32` (23.6 KB; both maps together fit
//! in a 48 KB L1 cache).
//!
//! Non-finite input: a NaN in the block makes the scale NaN (as torch's `amax`
//! propagates NaN), an infinity makes it infinite; either way every `y` that comes out
//! NaN gets code 0, exactly as torchao, and decoding such a block gives NaN or infinite
//! values (the state is poisoned, visibly).
//!
//! ## Speed
//!
//! LLVM does not vectorize the table lookups (gathers) by itself, so on x86-64 with
//! AVX2 (when [`crate::kernel::isa`] is `Avx2` or `Avx512`, one atomic load per call)
//! encoding and decoding run explicit AVX2 loops: per 8 elements, encoding is one
//! division, about ten integer operations (the bucket index is computed on 16-bit lanes,
//! 16 elements at a time) and one 8-lane gather from the bucket table, after an absmax
//! pass over the block; decoding is one gather from the map and one multiply. The public
//! functions are `#[inline(always)]`; the AVX2 bodies are `#[inline]`
//! `#[target_feature(enable = "avx2,fma")]` functions, which LLVM may inline into an AVX2
//! or AVX-512 kernel or else calls once per block. Otherwise the portable path is scalar
//! (branch-free). Both give the same bits (tested). The gathers bound the speed: on the
//! Xeon this was written on, about 0.33 ns per element to encode and 0.17 ns to decode
//! with the data in cache (`examples/compact_bench.rs`).
//!
//! # bf16
//!
//! `f32 -> bf16` rounds to nearest, ties to even (a NaN stays NaN and is made quiet);
//! `bf16 -> f32` is exact (a 16-bit shift). `f64` elements go through `f32`: `x as f32`
//! (round to nearest) and then to bf16, a double rounding: the result can differ from
//! rounding the `f64` directly when `x` lies within half an `f32` ulp of a bf16
//! rounding midpoint (a relative window of about `2^-24`).
//!
//! # f64 elements
//!
//! q8 with `f64` elements rounds each element to `f32` first (`x as f32`); the scale is
//! `max((max_i |x_i|) as f32, 1e-12)`, which equals the `f32` absmax of the rounded
//! elements because rounding is monotone. Decoding computes the `f32` product and
//! widens it exactly.

use std::any::TypeId;

use crate::Scalar;

/// Elements per q8 block: each block of this many consecutive elements (the last one
/// possibly shorter) has its own `f32` scale `max(max |x|, 1e-12)`.
pub const Q8_BLOCK: usize = 256;

/// Tensors with fewer elements than this keep full-precision states even when compact
/// states are asked for: for small tensors the saving is negligible and the extra
/// rounding not worth it. (bitsandbytes' and torchao's threshold; torchao also requires
/// the length to be a multiple of the block size, whereas here the last block may be
/// shorter.)
pub const Q8_MIN_LEN: usize = 4096;

/// One of the two 256-entry quantization maps (bitsandbytes' dynamic map, as torchao
/// builds it: `create_dynamic_map(signed)` rounded to `f32`).
///
/// - [`QMap::Signed`] (first moments): 127 negative values from about `-0.993` up,
///   `0.0` at code 127, 128 positive values up to `1.0` at code 255;
/// - [`QMap::Unsigned`] (second moments): `0.0` at code 0, 255 positive values up to
///   `1.0` at code 255.
///
/// The values are `10^(-6+i) * m` for `i` in `0..7` and `m` the midpoints of
/// `linspace(0.1, 1, k)` (`k = 2^i + 1` signed, with both signs; `k = 2^(i+1) + 1`
/// unsigned), plus `0` and `1`, sorted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QMap {
    /// The signed dynamic map (`create_dynamic_map(signed=True)`).
    Signed,
    /// The unsigned dynamic map (`create_dynamic_map(signed=False)`).
    Unsigned,
}

impl QMap {
    /// The 256 map values `q[0] < q[1] < ... < q[255] = 1.0`, indexed by code.
    #[inline(always)]
    pub fn values(self) -> &'static [f32; 256] {
        match self {
            QMap::Signed => &QMAP_SIGNED,
            QMap::Unsigned => &QMAP_UNSIGNED,
        }
    }

    /// The map's name: `"signed"` or `"unsigned"`.
    pub fn name(self) -> &'static str {
        match self {
            QMap::Signed => "signed",
            QMap::Unsigned => "unsigned",
        }
    }

    /// The bucket table (see the module documentation).
    #[inline(always)]
    fn table(self) -> &'static [u32; TABLE_LEN] {
        match self {
            QMap::Signed => &TABLE_SIGNED,
            QMap::Unsigned => &TABLE_UNSIGNED,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The maps

// Dumped from torchao 0.18: `torch.tensor(get_qmap_signed(), dtype=torch.float32)` (and
// `get_qmap_unsigned()`), as f32 bit patterns.
const QMAP_SIGNED_BITS: [u32; 256] = [
    0xbf7e3333, 0xbf7a999a, 0xbf770000, 0xbf736666, 0xbf6fcccd, 0xbf6c3333, 0xbf68999a, 0xbf650000,
    0xbf616666, 0xbf5dcccd, 0xbf5a3333, 0xbf56999a, 0xbf530000, 0xbf4f6666, 0xbf4bcccd, 0xbf483333,
    0xbf44999a, 0xbf410000, 0xbf3d6666, 0xbf39cccd, 0xbf363334, 0xbf32999a, 0xbf2f0000, 0xbf2b6666,
    0xbf27cccd, 0xbf243334, 0xbf20999a, 0xbf1d0000, 0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a,
    0xbf0b0000, 0xbf076666, 0xbf03cccc, 0xbf003333, 0xbef93332, 0xbef20000, 0xbeeacccc, 0xbee3999a,
    0xbedc6666, 0xbed53333, 0xbece0000, 0xbec6cccc, 0xbebf999a, 0xbeb86666, 0xbeb13333, 0xbeaa0000,
    0xbea2cccc, 0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d9999, 0xbe6f3333, 0xbe60cccd,
    0xbe526666, 0xbe440000, 0xbe35999a, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000, 0xbddb3334,
    0xbdc9eb85, 0xbdc428f7, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8, 0xbda75c2a, 0xbda1999a,
    0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd, 0xbd7e147b, 0xbd728f5d, 0xbd670a3d,
    0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3, 0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae148,
    0xbcfeb852, 0xbce7ae15, 0xbcd0a3d7, 0xbcb9999a, 0xbca28f5d, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148,
    0xbc1f3b64, 0xbc160418, 0xbc0ccccd, 0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4,
    0xbbab020d, 0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d,
    0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705, 0xb923d70b,
    0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94, 0xb513a3b7, 0x00000000,
    0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034, 0x388aefb3, 0x38ba1f4b, 0x3923d70b,
    0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d,
    0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4,
    0x3bcfdf3b, 0x3be24dd3, 0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148,
    0x3c68f5c3, 0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae15, 0x3cfeb852, 0x3d0ae148,
    0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d,
    0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a,
    0x3da75c2a, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667, 0x3dc428f7, 0x3dc9eb85, 0x3ddb3334,
    0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e35999a, 0x3e440000, 0x3e526666, 0x3e60cccd,
    0x3e6f3333, 0x3e7d9999, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000,
    0x3eb13333, 0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a,
    0x3eeacccc, 0x3ef20000, 0x3ef93332, 0x3f003333, 0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
    0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd, 0x3f2b6666,
    0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000, 0x3f44999a, 0x3f483333,
    0x3f4bcccd, 0x3f4f6666, 0x3f530000, 0x3f56999a, 0x3f5a3333, 0x3f5dcccd, 0x3f616666, 0x3f650000,
    0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666, 0x3f770000, 0x3f7a999a, 0x3f7e3333, 0x3f800000,
];
const QMAP_UNSIGNED_BITS: [u32; 256] = [
    0x00000000, 0x34ae7baa, 0x35500998, 0x360e9b38, 0x3692ccf6, 0x36de4c51, 0x3714e5d5, 0x3783126e,
    0x37e171a0, 0x381fe868, 0x384f1800, 0x387e479a, 0x3896bb99, 0x38ae5364, 0x38c5eb31, 0x3906594b,
    0x394154ca, 0x397c5049, 0x399ba5e4, 0x39b923a2, 0x39d6a163, 0x39f41f22, 0x3a08ce71, 0x3a178d50,
    0x3a264c30, 0x3a350b10, 0x3a43c9ef, 0x3a5288d0, 0x3a6147af, 0x3a70068e, 0x3a7ec56e, 0x3a958106,
    0x3aba5e35, 0x3adf3b64, 0x3b020c4a, 0x3b147ae1, 0x3b26e978, 0x3b395810, 0x3b4bc6a7, 0x3b5e3540,
    0x3b70a3d7, 0x3b818937, 0x3b8ac082, 0x3b93f7cf, 0x3b9d2f1a, 0x3ba66666, 0x3baf9db2, 0x3bb8d4fd,
    0x3bc20c4a, 0x3bcb4395, 0x3bd47ae1, 0x3bddb22e, 0x3be6e978, 0x3bf020c5, 0x3bf9580f, 0x3c0147ae,
    0x3c05e354, 0x3c0a7ef9, 0x3c0f1aa0, 0x3c13b645, 0x3c1851eb, 0x3c1ced92, 0x3c218937, 0x3c2f5c2a,
    0x3c466667, 0x3c5d70a3, 0x3c747ae2, 0x3c85c28f, 0x3c9147af, 0x3c9ccccd, 0x3ca851eb, 0x3cb3d70b,
    0x3cbf5c29, 0x3ccae147, 0x3cd66667, 0x3ce1eb87, 0x3ced70a3, 0x3cf8f5c3, 0x3d023d70, 0x3d080000,
    0x3d0dc28f, 0x3d13851f, 0x3d1947af, 0x3d1f0a3d, 0x3d24cccd, 0x3d2a8f5c, 0x3d3051eb, 0x3d36147b,
    0x3d3bd70a, 0x3d41999a, 0x3d475c28, 0x3d4d1eb8, 0x3d52e147, 0x3d58a3d7, 0x3d5e6667, 0x3d6428f7,
    0x3d69eb87, 0x3d6fae15, 0x3d7570a3, 0x3d7b3333, 0x3d807ae2, 0x3d835c2a, 0x3d863d71, 0x3d891eb8,
    0x3d8c0000, 0x3d8ee148, 0x3d91c290, 0x3d94a3d7, 0x3d97851f, 0x3d9a6667, 0x3d9d47af, 0x3da028f6,
    0x3da30a3e, 0x3da5eb85, 0x3da8cccd, 0x3dabae15, 0x3dae8f5c, 0x3db170a4, 0x3db451eb, 0x3db73333,
    0x3dba147b, 0x3dbcf5c3, 0x3dbfd70b, 0x3dc2b852, 0x3dc5999a, 0x3dc87ae2, 0x3dcb5c29, 0x3dd40000,
    0x3de26666, 0x3df0cccd, 0x3dff3333, 0x3e06cccc, 0x3e0e0000, 0x3e153334, 0x3e1c6666, 0x3e23999a,
    0x3e2acccc, 0x3e320000, 0x3e393334, 0x3e406666, 0x3e47999a, 0x3e4ecccc, 0x3e560000, 0x3e5d3334,
    0x3e646666, 0x3e6b999a, 0x3e72cccc, 0x3e7a0000, 0x3e809999, 0x3e843333, 0x3e87cccd, 0x3e8b6666,
    0x3e8f0000, 0x3e92999a, 0x3e963333, 0x3e99cccc, 0x3e9d6666, 0x3ea10000, 0x3ea4999a, 0x3ea83333,
    0x3eabcccc, 0x3eaf6666, 0x3eb30000, 0x3eb6999a, 0x3eba3333, 0x3ebdcccc, 0x3ec16666, 0x3ec50000,
    0x3ec8999a, 0x3ecc3333, 0x3ecfcccc, 0x3ed36666, 0x3ed70000, 0x3eda999a, 0x3ede3333, 0x3ee1cccc,
    0x3ee56666, 0x3ee90000, 0x3eec999a, 0x3ef03333, 0x3ef3cccc, 0x3ef76666, 0x3efb0000, 0x3efe9999,
    0x3f01199a, 0x3f02e666, 0x3f04b333, 0x3f068000, 0x3f084ccc, 0x3f0a199a, 0x3f0be666, 0x3f0db334,
    0x3f0f8000, 0x3f114ccd, 0x3f13199a, 0x3f14e666, 0x3f16b334, 0x3f188000, 0x3f1a4ccd, 0x3f1c199a,
    0x3f1de666, 0x3f1fb334, 0x3f218000, 0x3f234ccd, 0x3f25199a, 0x3f26e666, 0x3f28b334, 0x3f2a8000,
    0x3f2c4ccd, 0x3f2e199a, 0x3f2fe666, 0x3f31b334, 0x3f338000, 0x3f354ccd, 0x3f37199a, 0x3f38e666,
    0x3f3ab334, 0x3f3c8000, 0x3f3e4ccd, 0x3f40199a, 0x3f41e666, 0x3f43b334, 0x3f458000, 0x3f474ccc,
    0x3f49199a, 0x3f4ae666, 0x3f4cb334, 0x3f4e8000, 0x3f504ccc, 0x3f52199a, 0x3f53e666, 0x3f55b334,
    0x3f578000, 0x3f594ccc, 0x3f5b199a, 0x3f5ce666, 0x3f5eb334, 0x3f608000, 0x3f624ccc, 0x3f64199a,
    0x3f65e666, 0x3f67b334, 0x3f698000, 0x3f6b4ccc, 0x3f6d199a, 0x3f6ee666, 0x3f70b334, 0x3f728000,
    0x3f744ccc, 0x3f76199a, 0x3f77e666, 0x3f79b334, 0x3f7b8000, 0x3f7d4ccc, 0x3f7f199a, 0x3f800000,
];

const fn f32_array(bits: &[u32; 256]) -> [f32; 256] {
    let mut out = [0.0f32; 256];
    let mut i = 0;
    while i < 256 {
        out[i] = f32::from_bits(bits[i]);
        i += 1;
    }
    out
}

const QMAP_SIGNED_F32: [f32; 256] = f32_array(&QMAP_SIGNED_BITS);
const QMAP_UNSIGNED_F32: [f32; 256] = f32_array(&QMAP_UNSIGNED_BITS);
static QMAP_SIGNED: [f32; 256] = QMAP_SIGNED_F32;
static QMAP_UNSIGNED: [f32; 256] = QMAP_UNSIGNED_F32;

// ---------------------------------------------------------------------------------------
// Thresholds and bucket tables (built at compile time)

/// The lowest bucket (top 16 bits of the magnitude's pattern): every magnitude below
/// `2^-23` (pattern `0x3400_0000`) is looked up here.
const LO: u32 = 0x33FF;
/// The highest bucket: every magnitude at or above `1.0` (pattern `0x3F80_0000`).
const HI: u32 = 0x3F80;
/// Buckets per sign.
const SPAN: u32 = HI - LO + 1;
/// Entries per table: positive buckets, then negative ones.
const TABLE_LEN: usize = 2 * SPAN as usize;

/// A key that orders non-NaN `f32` patterns like their values (`-0` and `+0` both 0).
const fn ord_key(bits: u32) -> i32 {
    if bits >> 31 != 0 {
        -((bits & 0x7FFF_FFFF) as i32)
    } else {
        bits as i32
    }
}

/// The pattern of an [`ord_key`] (0 gives `+0.0`).
const fn from_ord(k: i32) -> u32 {
    if k < 0 {
        k.unsigned_abs() | 0x8000_0000
    } else {
        k as u32
    }
}

/// torchao's rounding rule for `q[c] <= y < q[c+1]`: up iff
/// `fl(y - q[c]) >= fl(fl(q[c+1] - q[c]) * 0.5)`.
const fn rounds_up(q: &[f32; 256], c: usize, y: f32) -> bool {
    (y - q[c]) >= (q[c + 1] - q[c]) * 0.5
}

/// `t[c]` = the [`ord_key`] of the smallest `f32` `y` in `(q[c], q[c+1]]` that rounds
/// up from `c` (bisection over the ordered patterns; the rule is monotone in `y`).
const fn thresholds(q: &[f32; 256]) -> [i32; 255] {
    let mut t = [0i32; 255];
    let mut c = 0;
    while c < 255 {
        let mut lo = ord_key(q[c].to_bits());
        let mut hi = ord_key(q[c + 1].to_bits());
        assert!(lo < hi, "the map is not strictly increasing");
        assert!(!rounds_up(q, c, q[c]) && rounds_up(q, c, q[c + 1]));
        // Invariant: lo does not round up, hi does.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if rounds_up(q, c, f32::from_bits(from_ord(mid))) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        t[c] = hi;
        c += 1;
    }
    t
}

/// How many thresholds are `<= k` (binary search; `t` is strictly increasing).
const fn count_le(t: &[i32; 255], k: i32) -> usize {
    let (mut lo, mut hi) = (0usize, 255usize);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if t[mid] <= k {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The bucket table of a map: entry `s * SPAN + (m - LO)` for sign `s` and magnitude
/// bucket `m` in `LO..=HI` is `code_low * 2^16 + (2^16 - key_t)`, where `code_low` is the
/// code of the bucket's lowest value and `key_t` the in-bucket key of the bucket's one
/// threshold (`2^16` if it has none). Fails to compile if a bucket holds two thresholds
/// or a clamped bucket holds one.
const fn build_table(q: &[f32; 256]) -> [u32; TABLE_LEN] {
    let t = thresholds(q);
    let mut c = 1;
    while c < 255 {
        assert!(t[c - 1] < t[c]);
        c += 1;
    }
    let mut table = [0u32; TABLE_LEN];
    let mut s = 0;
    while s < 2 {
        let mut m = LO;
        while m <= HI {
            // The magnitudes the bucket covers, as patterns.
            let mag_lo = if m == LO { 0 } else { m << 16 };
            let mag_hi = if m == HI {
                0x7F80_0000
            } else {
                (m << 16) | 0xFFFF
            };
            // The values it covers, as ord keys: [lo, hi].
            let (lo, hi) = if s == 0 {
                (mag_lo as i32, mag_hi as i32)
            } else {
                (-(mag_hi as i32), -(mag_lo as i32))
            };
            let base = count_le(&t, lo);
            let inside = count_le(&t, hi) - base;
            let key_t = if inside == 0 {
                0x1_0000
            } else {
                assert!(inside == 1, "a bucket holds more than one threshold");
                assert!(m != LO && m != HI, "a clamped bucket holds a threshold");
                // The bucket's threshold is the first one above `lo`: t[base].
                let low16 = from_ord(t[base]) & 0xFFFF;
                let key = if s == 0 { low16 } else { low16 ^ 0xFFFF };
                assert!(key >= 1);
                key
            };
            table[(s * SPAN + m - LO) as usize] = ((base as u32) << 16) + (0x1_0000 - key_t);
            m += 1;
        }
        s += 1;
    }
    table
}

static TABLE_SIGNED: [u32; TABLE_LEN] = build_table(&QMAP_SIGNED_F32);
static TABLE_UNSIGNED: [u32; TABLE_LEN] = build_table(&QMAP_UNSIGNED_F32);

/// `Q(y)` for a non-NaN `y` (a NaN gets the code of 0.0 here, not torchao's 0; the
/// callers route NaN through [`code_of_any`]).
#[inline(always)]
fn code_of(table: &[u32; TABLE_LEN], y: f32) -> u8 {
    let b = y.to_bits();
    let neg = 0u32.wrapping_sub(b >> 31);
    // clamp(magnitude bucket, LO, HI) - LO. The clamp is done on the magnitude as a
    // float (`maxss`/`minss`): written on integers, LLVM turns it into branches, which
    // mispredict on blocks mixing zeros and non-zeros. The clamped buckets hold no
    // threshold, so the key (from `y` itself) does not matter there.
    let a = f32::from_bits(b & 0x7FFF_FFFF)
        .max(f32::from_bits(LO << 16))
        .min(1.0);
    let m = (a.to_bits() >> 16) - LO;
    let idx = (m + (neg & SPAN)) as usize;
    let key = (b ^ neg) & 0xFFFF;
    let e = match table.get(idx) {
        Some(&e) => e,
        None => 0, // unreachable: idx < 2 * SPAN
    };
    (e.wrapping_add(key) >> 16) as u8
}

/// `Q(y)` for any `y`, NaN included (torchao gives NaN code 0).
#[inline(always)]
fn code_of_any(table: &[u32; TABLE_LEN], y: f32) -> u8 {
    if y.is_nan() {
        0
    } else {
        code_of(table, y)
    }
}

/// The scale of a block of `f32`: `max(max |x|, 1e-12)`, NaN if any element is NaN.
/// (The maximum of the magnitude patterns: a NaN's is above infinity's, which is above
/// every finite one; integer maxima vectorize.)
#[inline(always)]
fn scale_f32(values: &[f32]) -> f32 {
    let mut m = 0u32;
    for x in values {
        m = m.max(x.to_bits() & 0x7FFF_FFFF);
    }
    scale_from_abs_bits(m)
}

/// `max(from_bits(m), 1e-12)` for a magnitude pattern `m`, keeping NaN.
#[inline(always)]
fn scale_from_abs_bits(m: u32) -> f32 {
    const MIN: u32 = 1e-12f32.to_bits();
    f32::from_bits(m.max(MIN))
}

/// Codes of a block whose scale is infinite or NaN: elementwise, NaN `y` giving 0.
#[cold]
fn encode_nonfinite(table: &[u32; TABLE_LEN], values: &[f32], scale: f32, codes: &mut [u8]) {
    for (x, c) in values.iter().zip(codes.iter_mut()) {
        *c = code_of_any(table, *x / scale);
    }
}

/// Portable encoding of `values` with a given scale.
#[inline(always)]
fn encode_scaled_portable(table: &[u32; TABLE_LEN], values: &[f32], scale: f32, codes: &mut [u8]) {
    if !scale.is_finite() {
        return encode_nonfinite(table, values, scale, codes);
    }
    for (x, c) in values.iter().zip(codes.iter_mut()) {
        *c = code_of(table, *x / scale);
    }
}

/// Portable decoding: `out[i] = q[codes[i]] * scale`.
#[inline(always)]
fn decode_portable(q: &[f32; 256], codes: &[u8], scale: f32, out: &mut [f32]) {
    for (c, o) in codes.iter().zip(out.iter_mut()) {
        *o = q[*c as usize] * scale;
    }
}

/// Whether the AVX2 paths may run (the CPU has AVX2 and FMA and [`crate::kernel::isa`]
/// has not been capped to portable).
#[inline(always)]
fn simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::kernel::isa() != crate::Isa::Portable
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Encodes a whole `f32` block: computes the scale, writes the codes, returns the scale.
#[inline(always)]
fn encode_f32(table: &[u32; TABLE_LEN], values: &[f32], codes: &mut [u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: `simd()` is true only when `isa()` is Avx2 or Avx512, which it is only
        // when the CPU has AVX2 and FMA.
        return unsafe { x86::encode(table, values, codes) };
    }
    let scale = scale_f32(values);
    encode_scaled_portable(table, values, scale, codes);
    scale
}

/// Encodes `f32` values with a given scale.
#[inline(always)]
fn encode_scaled_f32(table: &[u32; TABLE_LEN], values: &[f32], scale: f32, codes: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: as in `encode_f32`.
        return unsafe { x86::encode_scaled(table, values, scale, codes) };
    }
    encode_scaled_portable(table, values, scale, codes)
}

/// Decodes into `f32`.
#[inline(always)]
fn decode_f32(q: &[f32; 256], codes: &[u8], scale: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: as in `encode_f32`.
        return unsafe { x86::decode(q, codes, scale, out) };
    }
    decode_portable(q, codes, scale, out)
}

/// `values` as `&[f32]` when `T` is `f32`.
#[inline(always)]
fn as_f32<T: 'static>(values: &[T]) -> Option<&[f32]> {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: `T` is `f32` (same `TypeId`), so this is the same slice, retyped.
        Some(unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<f32>(), values.len()) })
    } else {
        None
    }
}

/// `values` as `&mut [f32]` when `T` is `f32`.
#[inline(always)]
fn as_f32_mut<T: 'static>(values: &mut [T]) -> Option<&mut [f32]> {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: `T` is `f32` (same `TypeId`), so this is the same slice, retyped; the
        // borrow of `values` is moved into the result.
        Some(unsafe {
            std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<f32>(), values.len())
        })
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------
// Public q8 API

/// Quantizes one block (`values.len() == codes.len() <= Q8_BLOCK`); returns the
/// block's scale.
///
/// `scale = max(max_i |x_i|, 1e-12)` in `f32`, `y_i = x_i / scale` (`f32` division) and
/// `codes[i] = Q(y_i)`: the index `c` of the largest map value `q[c] <= y_i` (0 if none),
/// moved up to `min(c + 1, 255)` iff `fl(y_i - q[c]) >= fl(fl(q[c+1] - q[c]) * 0.5)`;
/// bit for bit torchao's `quantize_8bit_with_qmap(scale_tensor(x))` (see the module
/// documentation for the method and the non-finite cases: a NaN element makes the scale
/// NaN, and NaN `y` get code 0).
///
/// `f64` elements are rounded to `f32` first (`x as f32`), so the scale is
/// `max((max |x|) as f32, 1e-12)`.
///
/// Only the first `min(values.len(), codes.len())` elements are used (the rest of
/// `codes` is left as it was). Longer inputs than [`Q8_BLOCK`] are quantized as one
/// block with a single scale; callers pass blocks of `Q8_BLOCK`.
#[inline(always)]
pub fn q8_encode<T: Scalar>(map: QMap, values: &[T], codes: &mut [u8]) -> f32 {
    let n = values.len().min(codes.len());
    let (values, codes) = (&values[..n], &mut codes[..n]);
    let table = map.table();
    if let Some(v) = as_f32(values) {
        return encode_f32(table, v, codes);
    }
    // Other element types (f64): round to f32 through a stack buffer. The absmax of the
    // rounded values is the rounded absmax (rounding is monotone).
    let mut buf = [0.0f32; Q8_BLOCK];
    if n <= Q8_BLOCK {
        for (b, x) in buf.iter_mut().zip(values) {
            *b = Scalar::to_f64(*x) as f32;
        }
        return encode_f32(table, &buf[..n], codes);
    }
    let mut m = 0u32;
    for x in values {
        m = m.max((Scalar::to_f64(*x) as f32).to_bits() & 0x7FFF_FFFF);
    }
    let scale = scale_from_abs_bits(m);
    for (vc, cc) in values.chunks(Q8_BLOCK).zip(codes.chunks_mut(Q8_BLOCK)) {
        for (b, x) in buf.iter_mut().zip(vc) {
            *b = Scalar::to_f64(*x) as f32;
        }
        let k = vc.len().min(Q8_BLOCK);
        encode_scaled_f32(table, &buf[..k], scale, cc);
    }
    scale
}

/// Dequantizes one block: `out[i] = fl(q[codes[i]] * scale)` (`codes.len() ==
/// out.len() <= Q8_BLOCK`).
///
/// The product is computed in `f32` and converted to `T` (exactly, for `f64`). Only the
/// first `min(codes.len(), out.len())` elements are written.
#[inline(always)]
pub fn q8_decode<T: Scalar>(map: QMap, codes: &[u8], scale: f32, out: &mut [T]) {
    let n = codes.len().min(out.len());
    let (codes, out) = (&codes[..n], &mut out[..n]);
    let q = map.values();
    if let Some(o) = as_f32_mut(out) {
        return decode_f32(q, codes, scale, o);
    }
    let mut buf = [0.0f32; Q8_BLOCK];
    for (cc, oc) in codes.chunks(Q8_BLOCK).zip(out.chunks_mut(Q8_BLOCK)) {
        let k = cc.len().min(Q8_BLOCK);
        let b = &mut buf[..k];
        decode_f32(q, cc, scale, b);
        for (o, v) in oc.iter_mut().zip(b.iter()) {
            *o = T::from_f64(*v as f64);
        }
    }
}

// ---------------------------------------------------------------------------------------
// bf16

/// Rounds each value to bf16: `bits[i] = bf16_round(values[i] as f32)` (round to
/// nearest, ties to even; NaN stays NaN, quiet).
///
/// For `f64` elements this is a double rounding (`f64 -> f32 -> bf16`); see the module
/// documentation. Only the first `min(values.len(), bits.len())` elements are written.
#[inline(always)]
pub fn bf16_encode<T: Scalar>(values: &[T], bits: &mut [u16]) {
    for (x, b) in values.iter().zip(bits.iter_mut()) {
        *b = bf16_round(Scalar::to_f64(*x) as f32);
    }
}

/// Widens bf16 patterns: `out[i] = bf16_value(bits[i])` (exact: the pattern shifted
/// left by 16 bits is the `f32`). Only the first `min(bits.len(), out.len())` elements
/// are written.
#[inline(always)]
pub fn bf16_decode<T: Scalar>(bits: &[u16], out: &mut [T]) {
    for (b, o) in bits.iter().zip(out.iter_mut()) {
        *o = T::from_f64(bf16_value(*b) as f64);
    }
}

/// The bf16 pattern nearest to `x` (ties to the even pattern); overflow rounds to
/// infinity as IEEE does; a NaN gives a quiet NaN with `x`'s sign and top payload bits.
///
/// With `b = x.to_bits()`: `(b + 0x7FFF + ((b >> 16) & 1)) >> 16`, or
/// `(b >> 16) | 0x0040` for NaN.
#[inline(always)]
pub fn bf16_round(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16;
    let quiet = (b >> 16) | 0x0040;
    (if b & 0x7FFF_FFFF > 0x7F80_0000 {
        quiet
    } else {
        rounded
    }) as u16
}

/// The `f32` value of a bf16 pattern: `f32::from_bits((b as u32) << 16)` (exact).
#[inline(always)]
pub fn bf16_value(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

// ---------------------------------------------------------------------------------------
// AVX2

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{code_of, encode_nonfinite, scale_f32, HI, LO, SPAN, TABLE_LEN};
    use std::arch::x86_64::*;

    /// Codes of 16 non-NaN `y` (`y0`, `y1`: one code per 32-bit lane, each in
    /// `0..=255`): [`code_of`] lane by lane. The bucket index is computed on 16-bit
    /// lanes, both vectors at once: word `2k` holds lane `k` of `y0`, word `2k + 1` lane
    /// `k` of `y1`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn codes16(table: &[u32; TABLE_LEN], y0: __m256, y1: __m256) -> (__m256i, __m256i) {
        let b0 = _mm256_castps_si256(y0);
        let b1 = _mm256_castps_si256(y1);
        // Top 16 bits (sign, exponent, 7 mantissa bits) of both.
        let top = _mm256_blend_epi16::<0xAA>(_mm256_srli_epi32::<16>(b0), b1);
        let neg = _mm256_srai_epi16::<15>(top);
        let mag = _mm256_and_si256(top, _mm256_set1_epi16(0x7FFF));
        // clamp(mag, LO, HI) - LO, with unsigned saturation: mag + (0xFFFF - HI)
        // saturates at 0xFFFF exactly when mag >= HI; subtracting 0xFFFF - HI + LO then
        // gives HI - LO there, mag - LO for LO <= mag < HI, and 0 below LO.
        let clamped = _mm256_subs_epu16(
            _mm256_adds_epu16(mag, _mm256_set1_epi16((0xFFFF - HI) as u16 as i16)),
            _mm256_set1_epi16((0xFFFF - HI + LO) as u16 as i16),
        );
        // In 0..2 * SPAN (below 2^15).
        let idx = _mm256_add_epi16(
            clamped,
            _mm256_and_si256(neg, _mm256_set1_epi16(SPAN as i16)),
        );
        let zero = _mm256_setzero_si256();
        let idx0 = _mm256_blend_epi16::<0xAA>(idx, zero);
        let idx1 = _mm256_srli_epi32::<16>(idx);
        // In-bucket keys: the low 16 bits, flipped for negative y.
        let low = _mm256_blend_epi16::<0xAA>(b0, _mm256_slli_epi32::<16>(b1));
        let key = _mm256_xor_si256(low, neg);
        let key0 = _mm256_blend_epi16::<0xAA>(key, zero);
        let key1 = _mm256_srli_epi32::<16>(key);
        let base = table.as_ptr().cast::<i32>();
        // SAFETY: every 32-bit lane of `idx0` and `idx1` is `clamped + (0 or SPAN)` with
        // `clamped` in `0..SPAN`, so it lies in `0..2 * SPAN = 0..TABLE_LEN`; the gathers
        // read only `table[idx]`.
        let (e0, e1) = unsafe {
            (
                _mm256_i32gather_epi32::<4>(base, idx0),
                _mm256_i32gather_epi32::<4>(base, idx1),
            )
        };
        (
            _mm256_srli_epi32::<16>(_mm256_add_epi32(e0, key0)),
            _mm256_srli_epi32::<16>(_mm256_add_epi32(e1, key1)),
        )
    }

    /// Scale and codes of a block (AVX2).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn encode(table: &[u32; TABLE_LEN], values: &[f32], codes: &mut [u8]) -> f32 {
        let scale = scale_f32(values);
        encode_scaled(table, values, scale, codes);
        scale
    }

    /// Codes of `values` for a given scale (AVX2): 32 per iteration, a scalar tail.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn encode_scaled(
        table: &[u32; TABLE_LEN],
        values: &[f32],
        scale: f32,
        codes: &mut [u8],
    ) {
        if !scale.is_finite() {
            return encode_nonfinite(table, values, scale, codes);
        }
        let n = values.len().min(codes.len());
        let vs = _mm256_set1_ps(scale);
        // After the two packs, 32-bit group k of the register holds the codes of lanes
        // 4(k%2)..4(k%2)+4 of input k/2 (per 128-bit half); this puts them in order.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let src = values.as_ptr();
        let dst = codes.as_mut_ptr();
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: `i + 32 <= n`, and `n` is at most both lengths: the loads read
            // `values[i..i + 32]` and the store writes `codes[i..i + 32]`.
            unsafe {
                let y = |k: usize| _mm256_div_ps(_mm256_loadu_ps(src.add(i + 8 * k)), vs);
                let (c0, c1) = codes16(table, y(0), y(1));
                let (c2, c3) = codes16(table, y(2), y(3));
                let p =
                    _mm256_packus_epi16(_mm256_packus_epi32(c0, c1), _mm256_packus_epi32(c2, c3));
                let p = _mm256_permutevar8x32_epi32(p, order);
                _mm256_storeu_si256(dst.add(i).cast::<__m256i>(), p);
            }
            i += 32;
        }
        for (x, c) in values[i..n].iter().zip(codes[i..n].iter_mut()) {
            *c = code_of(table, *x / scale);
        }
    }

    /// `out[i] = q[codes[i]] * scale` (AVX2): 8 per iteration, a scalar tail.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn decode(q: &[f32; 256], codes: &[u8], scale: f32, out: &mut [f32]) {
        let n = codes.len().min(out.len());
        let vs = _mm256_set1_ps(scale);
        let src = codes.as_ptr();
        let dst = out.as_mut_ptr();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: `i + 8 <= n`, at most both lengths: the load reads `codes[i..i + 8]`,
            // the store writes `out[i..i + 8]`; the gather's indices are bytes, `0..256`,
            // inside `q`.
            unsafe {
                let c = _mm_loadl_epi64(src.add(i).cast::<__m128i>());
                let v = _mm256_i32gather_ps::<4>(q.as_ptr(), _mm256_cvtepu8_epi32(c));
                _mm256_storeu_ps(dst.add(i), _mm256_mul_ps(v, vs));
            }
            i += 8;
        }
        for (c, o) in codes[i..n].iter().zip(out[i..n].iter_mut()) {
            *o = q[*c as usize] * scale;
        }
    }
}

// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
        /// A value of random sign with log-uniform magnitude in [2^lo, 2^hi).
        fn logu(&mut self, lo: f64, hi: f64) -> f32 {
            let m = (lo + (hi - lo) * self.unit()).exp2() as f32;
            if self.next() & 1 == 0 {
                m
            } else {
                -m
            }
        }
    }

    const MAPS: [QMap; 2] = [QMap::Signed, QMap::Unsigned];

    /// torchao's `quantize_8bit_with_qmap`, written plainly: the branchless binary
    /// search, then the residual rule.
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

    /// torchao's `scale_tensor` + quantization for one block, written plainly.
    fn ref_encode(map: QMap, x: &[f32]) -> (Vec<u8>, f32) {
        let mut amax = 0.0f32;
        for v in x {
            let a = v.abs();
            if a.is_nan() || amax.is_nan() {
                amax = f32::NAN;
            } else if a > amax {
                amax = a;
            }
        }
        let scale = if amax.is_nan() { amax } else { amax.max(1e-12) };
        let codes = x
            .iter()
            .map(|v| ref_code(map.values(), v / scale))
            .collect();
        (codes, scale)
    }

    fn assert_encode_matches(map: QMap, x: &[f32]) {
        let (want, want_scale) = ref_encode(map, x);
        let mut got = vec![0u8; x.len()];
        let scale = q8_encode(map, x, &mut got);
        assert!(
            scale.to_bits() == want_scale.to_bits() || (scale.is_nan() && want_scale.is_nan()),
            "{} scale {scale:e} vs {want_scale:e}",
            map.name()
        );
        for i in 0..x.len() {
            assert_eq!(
                got[i],
                want[i],
                "{}: x = {:e} ({:#010x}), scale {scale:e}",
                map.name(),
                x[i],
                x[i].to_bits()
            );
        }
    }

    /// Thresholds recomputed at run time, by a different method (walking f32 patterns
    /// up from a bisection bracket with the reference rule).
    fn runtime_thresholds(q: &[f32; 256]) -> Vec<f32> {
        (0..255)
            .map(|c| {
                // First y (as f32 value, stepping by ulps) with ref_code(y) == c + 1.
                let (mut lo, mut hi) = (q[c], q[c + 1]);
                while next_up(lo) < hi {
                    let mid = if lo < 0.0 && hi > 0.0 {
                        0.0
                    } else {
                        lo + (hi - lo) / 2.0
                    };
                    let mid = if mid <= lo {
                        next_up(lo)
                    } else if mid >= hi {
                        next_down(hi)
                    } else {
                        mid
                    };
                    if ref_code(q, mid) as usize > c {
                        hi = mid;
                    } else {
                        lo = mid;
                    }
                }
                assert_eq!(ref_code(q, lo) as usize, c);
                assert_eq!(ref_code(q, hi) as usize, c + 1);
                hi
            })
            .collect()
    }

    fn next_up(x: f32) -> f32 {
        if x == 0.0 {
            f32::from_bits(1)
        } else if x > 0.0 {
            f32::from_bits(x.to_bits() + 1)
        } else {
            f32::from_bits(x.to_bits() - 1)
        }
    }

    fn next_down(x: f32) -> f32 {
        -next_up(-x)
    }

    #[test]
    fn q8_maps_match_formula() {
        for map in MAPS {
            let q = map.values();
            let signed = map == QMap::Signed;
            let mut want: Vec<f64> = vec![0.0, 1.0];
            for i in 0..7i32 {
                let k = if signed {
                    (1 << i) + 1
                } else {
                    (1 << (i + 1)) + 1
                };
                let lin: Vec<f64> = (0..k)
                    .map(|j| 0.1 + 0.9 * j as f64 / (k - 1) as f64)
                    .collect();
                for w in lin.windows(2) {
                    let v = 10f64.powi(-6 + i) * (w[0] + w[1]) / 2.0;
                    want.push(v);
                    if signed {
                        want.push(-v);
                    }
                }
            }
            want.sort_by(f64::total_cmp);
            assert_eq!(want.len(), 256, "{}", map.name());
            assert_eq!(q.len(), 256);
            for i in 1..256 {
                assert!(q[i - 1] < q[i], "{} not increasing at {i}", map.name());
            }
            assert!(q.contains(&0.0) && q.contains(&1.0));
            assert_eq!(q[255], 1.0);
            for i in 0..256 {
                let (g, w) = (q[i] as f64, want[i]);
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs(),
                    "{}[{i}] = {g:e}, formula {w:e}",
                    map.name()
                );
            }
            let negatives = q.iter().filter(|v| **v < 0.0).count();
            assert_eq!(negatives, if signed { 127 } else { 0 }, "{}", map.name());
        }
        assert_eq!(QMap::Signed.values()[127], 0.0);
        assert_eq!(QMap::Unsigned.values()[0], 0.0);
        assert_eq!(QMap::Signed.name(), "signed");
        assert_eq!(QMap::Unsigned.name(), "unsigned");
    }

    #[test]
    fn q8_tables_one_threshold_per_bucket() {
        for map in MAPS {
            let q = map.values();
            let t = runtime_thresholds(q);
            // The compile-time thresholds agree with the run-time ones.
            let ct = thresholds(&f32_array(&q.map(f32::to_bits)));
            for c in 0..255 {
                assert_eq!(from_ord(ct[c]), t[c].to_bits(), "{} t[{c}]", map.name());
            }
            // Count thresholds per bucket of the top 16 pattern bits.
            let mut per = std::collections::HashMap::<u32, usize>::new();
            for v in &t {
                *per.entry(v.to_bits() >> 16).or_default() += 1;
            }
            for (bucket, k) in &per {
                assert!(
                    *k <= 1,
                    "{}: bucket {bucket:#06x} holds {k} thresholds",
                    map.name()
                );
                let mag = bucket & 0x7FFF;
                assert!(
                    mag > LO && mag < HI,
                    "{}: threshold in clamped bucket",
                    map.name()
                );
            }
            // Everything below 2^-23 in magnitude gets the code of 0.0; everything at or
            // above 1 in magnitude the code of ±1.
            let small = 2f32.powi(-23);
            let zero = ref_code(q, 0.0);
            for y in [
                0.0,
                -0.0,
                f32::from_bits(1),
                -f32::from_bits(1),
                f32::MIN_POSITIVE,
                next_down(small),
                -next_down(small),
            ] {
                assert_eq!(ref_code(q, y), zero, "{} y = {y:e}", map.name());
                assert_eq!(code_of(map.table(), y), zero, "{} y = {y:e}", map.name());
            }
            assert!(t.iter().all(|v| v.abs() >= small));
            for y in [1.0f32, 1.5, 1e30, f32::INFINITY] {
                assert_eq!(code_of(map.table(), y), ref_code(q, y));
                assert_eq!(code_of(map.table(), -y), ref_code(q, -y));
            }
        }
    }

    /// Every bucket's ends, every threshold and its neighbours, every map value and its
    /// neighbours: the lookup equals the reference there, and the reference is monotone
    /// with steps only at the thresholds, so it equals it everywhere.
    #[test]
    fn q8_lookup_matches_reference_at_every_step() {
        for map in MAPS {
            let q = map.values();
            let table = map.table();
            let mut ys = Vec::new();
            for s in [0u32, 0x8000_0000] {
                for m in LO..=HI {
                    ys.push(f32::from_bits(s | (m << 16)));
                    ys.push(f32::from_bits(s | (m << 16) | 0xFFFF));
                }
            }
            for t in runtime_thresholds(q) {
                ys.extend([next_down(t), t, next_up(t)]);
            }
            for v in q {
                ys.extend([next_down(*v), *v, next_up(*v)]);
            }
            for y in ys {
                assert_eq!(
                    code_of(table, y),
                    ref_code(q, y),
                    "{} y = {y:e}",
                    map.name()
                );
            }
        }
    }

    #[test]
    fn q8_encode_matches_torchao_formula() {
        let mut rng = Rng(7);
        for map in MAPS {
            let q = *map.values();
            let thr = runtime_thresholds(&q);
            // Random blocks of every length class, various magnitudes.
            for round in 0..400 {
                let len = match round % 4 {
                    0 => Q8_BLOCK,
                    1 => 1 + (rng.next() % 255) as usize,
                    2 => 32 + (rng.next() % 8) as usize,
                    _ => (rng.next() % 40) as usize,
                };
                let e = (rng.next() % 60) as f64 - 40.0;
                let x: Vec<f32> = (0..len)
                    .map(|_| {
                        let v = rng.logu(e - 30.0, e);
                        if map == QMap::Unsigned {
                            v.abs()
                        } else {
                            v
                        }
                    })
                    .collect();
                assert_encode_matches(map, &x);
            }
            // Map values, thresholds and neighbours at scale 1 (a 1.0 in the block) and
            // at other scales.
            let mut special: Vec<f32> = Vec::new();
            for v in q.iter().chain(&thr) {
                special.extend([next_down(*v), *v, next_up(*v)]);
            }
            special.extend([0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, f32::from_bits(1), 1e-7]);
            for scale in [1.0f32, 3.7, 1e-12, 1e-20, 6.0e37, 0.1] {
                for chunk in special.chunks(Q8_BLOCK - 1) {
                    let mut x: Vec<f32> = chunk.iter().map(|v| v * scale).collect();
                    x.push(scale);
                    assert_encode_matches(map, &x);
                    x.pop();
                    x.push(-scale);
                    assert_encode_matches(map, &x);
                }
            }
            // Degenerate blocks.
            assert_encode_matches(map, &[]);
            assert_encode_matches(map, &[0.0]);
            assert_encode_matches(map, &[-0.0; 100]);
            assert_encode_matches(map, &[1e-13, -3e-13, 0.0]);
            assert_encode_matches(map, &[f32::from_bits(1); 40]);
            assert_encode_matches(map, &[f32::MAX, -f32::MAX, 1.0, f32::MIN_POSITIVE]);
        }
    }

    #[test]
    fn q8_nonfinite_blocks_match_torchao() {
        for map in MAPS {
            for x in [
                vec![1.0, f32::NAN, 2.0, -0.5],
                vec![1.0, f32::INFINITY, 2.0, -0.5, 0.0],
                vec![f32::NEG_INFINITY; 33],
                vec![f32::NAN; 40],
            ] {
                assert_encode_matches(map, &x);
                let mut codes = vec![0u8; x.len()];
                let scale = q8_encode(map, &x, &mut codes);
                assert!(!scale.is_finite());
                if x.iter().any(|v| v.is_nan()) {
                    assert!(scale.is_nan());
                    assert!(codes.iter().all(|c| *c == 0));
                }
            }
        }
    }

    /// The values of this test and their codes, scales and decoded values are torchao
    /// 0.18's own (`scale_tensor` + `quantize_8bit_with_qmap` + `dequant_with_qmap`),
    /// dumped with torch 2 on CPU: a 256-element signed block (scale 3.7, log-uniform
    /// magnitudes, map midpoints, signed zeros, tiny values) and a 64-element unsigned one.
    #[test]
    fn q8_matches_torchao_dump() {
        for (map, input, codes, scale, out) in [
            (
                QMap::Signed,
                &TORCHAO_SIGNED_IN[..],
                &TORCHAO_SIGNED_CODES[..],
                TORCHAO_SIGNED_SCALE,
                &TORCHAO_SIGNED_OUT[..],
            ),
            (
                QMap::Unsigned,
                &TORCHAO_UNSIGNED_IN[..],
                &TORCHAO_UNSIGNED_CODES[..],
                TORCHAO_UNSIGNED_SCALE,
                &TORCHAO_UNSIGNED_OUT[..],
            ),
        ] {
            let x: Vec<f32> = input.iter().map(|b| f32::from_bits(*b)).collect();
            let mut got = vec![0u8; x.len()];
            let s = q8_encode(map, &x, &mut got);
            assert_eq!(s.to_bits(), scale, "{}", map.name());
            assert_eq!(got, codes, "{}", map.name());
            let mut back = vec![0f32; x.len()];
            q8_decode(map, &got, s, &mut back);
            let back: Vec<u32> = back.iter().map(|v| v.to_bits()).collect();
            assert_eq!(back, out, "{}", map.name());
            // And through f64 elements (f32 values widen exactly).
            let x64: Vec<f64> = x.iter().map(|v| *v as f64).collect();
            let mut got64 = vec![0u8; x.len()];
            assert_eq!(q8_encode(map, &x64, &mut got64).to_bits(), scale);
            assert_eq!(got64, codes);
        }
    }

    /// The AVX2 paths (when the CPU has them) and the portable ones give the same bits.
    /// The private paths are called directly, so the process-wide `set_isa` is left
    /// alone (other tests read it concurrently).
    #[test]
    fn q8_portable_and_simd_identical() {
        #[cfg(target_arch = "x86_64")]
        if crate::kernel::detected_isa() != crate::Isa::Portable {
            let mut rng = Rng(99);
            for map in MAPS {
                let table = map.table();
                for round in 0..300 {
                    let len = if round % 3 == 0 {
                        Q8_BLOCK
                    } else {
                        (rng.next() % 300) as usize
                    };
                    let e = (rng.next() % 50) as f64 - 30.0;
                    let mut x: Vec<f32> = (0..len).map(|_| rng.logu(e - 40.0, e)).collect();
                    if round % 50 == 7 && len > 3 {
                        x[3] = f32::NAN;
                    }
                    if round % 50 == 8 && len > 3 {
                        x[3] = f32::INFINITY;
                    }
                    let mut portable = vec![0u8; len];
                    let ps = scale_f32(&x);
                    encode_scaled_portable(table, &x, ps, &mut portable);
                    let mut avx = vec![0u8; len];
                    // SAFETY: the CPU has AVX2 and FMA (detected above).
                    let vs = unsafe { x86::encode(table, &x, &mut avx) };
                    assert_eq!(ps.to_bits(), vs.to_bits());
                    assert_eq!(portable, avx, "{} len {len}", map.name());
                    // Decoding, on random codes too.
                    let codes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    for (c, s) in [(&portable, ps), (&codes, 1.7e-3f32)] {
                        let mut a = vec![0f32; len];
                        let mut b = vec![0f32; len];
                        decode_portable(map.values(), c, s, &mut a);
                        // SAFETY: as above.
                        unsafe { x86::decode(map.values(), c, s, &mut b) };
                        let a: Vec<u32> = a.iter().map(|v| v.to_bits()).collect();
                        let b: Vec<u32> = b.iter().map(|v| v.to_bits()).collect();
                        assert_eq!(a, b);
                    }
                }
                // Every threshold and neighbour through the SIMD lanes.
                let mut ys = Vec::new();
                for t in runtime_thresholds(map.values()) {
                    ys.extend([next_down(t), t, next_up(t), -t]);
                }
                ys.push(1.0);
                let mut portable = vec![0u8; ys.len()];
                let mut avx = vec![0u8; ys.len()];
                encode_scaled_portable(table, &ys, 1.0, &mut portable);
                // SAFETY: as above.
                unsafe { x86::encode_scaled(table, &ys, 1.0, &mut avx) };
                assert_eq!(portable, avx, "{}", map.name());
            }
        }
    }

    /// decode(encode(x)) is within half the map gap next to the chosen code, times the
    /// scale (plus f32 rounding), of x.
    #[test]
    fn q8_round_trip_error_bound() {
        let mut rng = Rng(3);
        for map in MAPS {
            let q = map.values();
            for _ in 0..200 {
                let e = (rng.next() % 40) as f64 - 20.0;
                let mut x: Vec<f32> = (0..Q8_BLOCK).map(|_| rng.logu(e - 25.0, e)).collect();
                if map == QMap::Unsigned {
                    x.iter_mut().for_each(|v| *v = v.abs());
                }
                let mut codes = [0u8; Q8_BLOCK];
                let scale = q8_encode(map, &x, &mut codes);
                let mut back = [0f32; Q8_BLOCK];
                q8_decode(map, &codes, scale, &mut back);
                for i in 0..Q8_BLOCK {
                    let c = codes[i] as usize;
                    let below = if c > 0 { q[c] - q[c - 1] } else { q[0] + 1.0 };
                    let above = if c < 255 { q[c + 1] - q[c] } else { 0.0 };
                    let half = below.max(above) as f64 / 2.0;
                    let err = (back[i] as f64 - x[i] as f64).abs();
                    let bound = (half * (1.0 + 1e-5)) * scale as f64
                        + 2f64.powi(-23) * (x[i].abs() as f64 + scale as f64);
                    assert!(
                        err <= bound,
                        "{} x {:e} back {:e} code {c}",
                        map.name(),
                        x[i],
                        back[i]
                    );
                }
            }
        }
    }

    /// encode(decode(codes, s)) gives back the codes and s when the block holds code 255
    /// (the value 1.0, so the decoded absmax is exactly s) and s is in
    /// [1e-12, f32::MAX]: `fl(fl(q[c] * s) / s)` is within an ulp of `q[c]`, far from
    /// every threshold, and `fl(1.0 * s) / s = 1` exactly.
    #[test]
    fn q8_decode_encode_is_identity_with_unit_code() {
        let mut rng = Rng(11);
        for map in MAPS {
            for round in 0..300 {
                let s = match round {
                    0 => 1e-12f32,
                    1 => f32::MAX,
                    2 => 1.0,
                    _ => ((rng.unit() * 50.3 - 12.0) * std::f64::consts::LN_10).exp() as f32,
                };
                let s = s.clamp(1e-12, f32::MAX);
                let len = if round % 2 == 0 {
                    Q8_BLOCK
                } else {
                    1 + (rng.next() % 256) as usize
                };
                let mut codes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                codes[(rng.next() % len as u64) as usize] = 255;
                let mut vals = vec![0f32; len];
                q8_decode(map, &codes, s, &mut vals);
                let mut again = vec![0u8; len];
                let s2 = q8_encode(map, &vals, &mut again);
                assert_eq!(s2.to_bits(), s.to_bits(), "{} s {s:e}", map.name());
                assert_eq!(again, codes, "{} s {s:e}", map.name());
                // Through f64 elements as well.
                let mut v64 = vec![0f64; len];
                q8_decode(map, &codes, s, &mut v64);
                for (a, b) in v64.iter().zip(&vals) {
                    assert_eq!(*a, *b as f64);
                }
                let mut again64 = vec![0u8; len];
                assert_eq!(q8_encode(map, &v64, &mut again64).to_bits(), s.to_bits());
                assert_eq!(again64, codes);
            }
        }
    }

    #[test]
    fn q8_lengths_never_panic() {
        for map in MAPS {
            let x: Vec<f32> = (0..600).map(|i| (i as f32 - 300.0) * 0.01).collect();
            let mut codes = vec![7u8; 10];
            let s = q8_encode(map, &x, &mut codes);
            assert_eq!(s, 3.0);
            let mut codes_long = vec![7u8; 700];
            q8_encode(map, &x[..5], &mut codes_long);
            assert!(codes_long[5..].iter().all(|c| *c == 7));
            // Longer than a block: one scale for all.
            let mut all = vec![0u8; 600];
            let s = q8_encode(map, &x, &mut all);
            let (want, ws) = ref_encode(map, &x);
            assert_eq!((all.clone(), s), (want, ws));
            let x64: Vec<f64> = x.iter().map(|v| *v as f64).collect();
            let mut all64 = vec![0u8; 600];
            assert_eq!(q8_encode(map, &x64, &mut all64), s);
            assert_eq!(all64, all);
            let mut out = vec![0f32; 3];
            q8_decode(map, &all, s, &mut out);
            let mut out64 = vec![0f64; 600];
            q8_decode(map, &all[..599], s, &mut out64);
            assert_eq!(out64[599], 0.0);
            q8_decode::<f32>(map, &[], s, &mut []);
            assert_eq!(q8_encode::<f64>(map, &[], &mut []), 1e-12);
        }
        let mut b = [0u16; 2];
        bf16_encode(&[1.0f32, 2.0, 3.0], &mut b);
        assert_eq!(b, [0x3F80, 0x4000]);
        let mut o = [0f64; 3];
        bf16_decode(&b, &mut o);
        assert_eq!(o, [1.0, 2.0, 0.0]);
    }

    /// f64 elements: rounded to f32 first, then as f32.
    #[test]
    fn q8_f64_goes_through_f32() {
        let mut rng = Rng(5);
        for map in MAPS {
            for _ in 0..100 {
                let x64: Vec<f64> = (0..Q8_BLOCK)
                    .map(|_| {
                        let v = rng.logu(-30.0, 0.0) as f64 * (1.0 + 1e-9 * rng.unit());
                        if map == QMap::Unsigned {
                            v.abs()
                        } else {
                            v
                        }
                    })
                    .collect();
                let x32: Vec<f32> = x64.iter().map(|v| *v as f32).collect();
                let mut c64 = [0u8; Q8_BLOCK];
                let mut c32 = [0u8; Q8_BLOCK];
                let s64 = q8_encode(map, &x64, &mut c64);
                let s32 = q8_encode(map, &x32, &mut c32);
                let amax = x64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                assert_eq!(s64.to_bits(), (amax as f32).max(1e-12).to_bits());
                assert_eq!(s64.to_bits(), s32.to_bits());
                assert_eq!(c64, c32);
            }
        }
    }

    /// bf16 rounding by definition, in f64: the nearer of the two bf16 neighbours
    /// (exact differences in f64), the even one on a tie, infinity past the largest
    /// finite value by half an ulp or more.
    fn bf16_ref(x: f32) -> u16 {
        let b = x.to_bits();
        let down = (b >> 16) as u16; // toward zero
        let dv = bf16_value(down) as f64;
        let up = down + 1; // away from zero (the next magnitude; 0x7F80 is infinity)
        let uv = if up & 0x7FFF == 0x7F80 {
            2f64.powi(128).copysign(x as f64)
        } else {
            bf16_value(up) as f64
        };
        let (dd, du) = ((x as f64 - dv).abs(), (uv - x as f64).abs());
        if dd < du || (dd == du && down & 1 == 0) {
            down
        } else {
            up
        }
    }

    #[test]
    fn bf16_round_matches_f64_definition() {
        let mut rng = Rng(1);
        let lows = [
            0u32, 1, 0x3FFF, 0x7FFF, 0x8000, 0x8001, 0xBFFF, 0xFFFE, 0xFFFF,
        ];
        for hi in 0..=0xFFFFu32 {
            let nan_or_inf = hi & 0x7F80 == 0x7F80;
            for k in 0..lows.len() + 2 {
                let low = if k < lows.len() {
                    lows[k]
                } else {
                    rng.next() as u32 & 0xFFFF
                };
                let b = (hi << 16) | low;
                let x = f32::from_bits(b);
                let r = bf16_round(x);
                if x.is_nan() {
                    assert!(bf16_value(r).is_nan(), "{b:#010x}");
                    assert_eq!(r & 0x0040, 0x0040, "quiet NaN for {b:#010x}");
                    assert_eq!(r & 0x8000, (b >> 16) as u16 & 0x8000);
                } else if nan_or_inf {
                    assert_eq!(r, (b >> 16) as u16, "infinity {b:#010x}");
                } else {
                    assert_eq!(r, bf16_ref(x), "{b:#010x}");
                    assert_eq!(bf16_value(r) as f64, bf16_value(bf16_ref(x)) as f64);
                }
            }
        }
        assert_eq!(bf16_round(f32::MAX), 0x7F80);
        assert_eq!(bf16_round(-f32::MAX), 0xFF80);
        assert_eq!(bf16_round(f32::INFINITY), 0x7F80);
        assert_eq!(bf16_round(f32::NEG_INFINITY), 0xFF80);
        assert_eq!(bf16_round(-0.0), 0x8000);
        assert_eq!(bf16_round(f32::from_bits(0x7F80_0001)) & 0x7FC0, 0x7FC0);
        assert_eq!(bf16_round(f32::from_bits(0xFFFF_FFFF)), 0xFFFF);
        // Exact decode: every pattern.
        for b in 0..=0xFFFFu16 {
            let v = bf16_value(b);
            assert_eq!(v.to_bits() >> 16, b as u32);
            assert_eq!(v.to_bits() & 0xFFFF, 0);
            if !v.is_nan() {
                assert_eq!(bf16_round(v), b);
            }
        }
    }

    #[test]
    fn bf16_slices_match_scalar() {
        let mut rng = Rng(21);
        let x: Vec<f32> = (0..1000)
            .map(|_| f32::from_bits(rng.next() as u32))
            .collect();
        let mut bits = vec![0u16; x.len()];
        bf16_encode(&x, &mut bits);
        for (v, b) in x.iter().zip(&bits) {
            assert_eq!(*b, bf16_round(*v));
        }
        let mut back = vec![0f32; x.len()];
        bf16_decode(&bits, &mut back);
        for (b, v) in bits.iter().zip(&back) {
            assert_eq!(v.to_bits(), bf16_value(*b).to_bits());
        }
        // f64: through f32 (double rounding).
        let x64: Vec<f64> = (0..1000)
            .map(|_| rng.logu(-100.0, 100.0) as f64 * (1.0 + rng.unit() * 1e-3))
            .collect();
        let mut b64 = vec![0u16; x64.len()];
        bf16_encode(&x64, &mut b64);
        let mut back64 = vec![0f64; x64.len()];
        bf16_decode(&b64, &mut back64);
        for i in 0..x64.len() {
            assert_eq!(b64[i], bf16_round(x64[i] as f32));
            assert_eq!(back64[i], bf16_value(b64[i]) as f64);
        }
        // The double rounding: just above a bf16 midpoint in f64, rounded to the
        // midpoint in f32, then to even (down).
        let mid = 1.0 + 2f64.powi(-8);
        let x = mid + 2f64.powi(-30);
        let mut b = [0u16; 1];
        bf16_encode(&[x], &mut b);
        assert_eq!(b[0], 0x3F80);
    }

    const TORCHAO_SIGNED_IN: [u32; 256] = [
        0xab68791f, 0x33801af6, 0xb067315a, 0x32b1efec, 0x2c0c114a, 0x39f412f5, 0x2be67b4a,
        0x34e9a3a4, 0xb95a35e4, 0x31f7bb1f, 0x3bb85706, 0xb6fbde6f, 0x3b8d52f4, 0x3c8c3c49,
        0xb0cf12d9, 0xb98a4e14, 0xb0ec483c, 0x3902bcb2, 0xaff59c49, 0x3a98fd53, 0xb7c5d3ee,
        0xb15b8762, 0x304670d4, 0x38661470, 0xbfad6a95, 0x3ac667bf, 0x348ec190, 0x3512b2cb,
        0xbbbb0c8e, 0xae13bb6d, 0x392dd16a, 0xb206f77f, 0xbbd9f284, 0x31b88136, 0x361f78fc,
        0xb93c02aa, 0x3d0b025c, 0xb4060570, 0x3f7e23ef, 0xac75486b, 0xb3a75f67, 0xaacb5878,
        0xb6839460, 0xb8a78629, 0xb1336259, 0xba16a173, 0xb3d5a219, 0xac2dddc4, 0x3de88358,
        0xbc40a4d4, 0x3b11e200, 0xbe362205, 0x399383d5, 0x3b57bb6f, 0xbe938c67, 0x336cb3c6,
        0x2d256068, 0xb0429e56, 0xb42415f0, 0x3469cbba, 0x35893a60, 0xbbc8a946, 0xb911ee9d,
        0xad97d55b, 0x3256b401, 0xb30ea2ed, 0xbc2afd1d, 0xb1a87a09, 0xb112546e, 0xb3d9eee5,
        0xb2d6238c, 0x32f20090, 0x2b06a9ea, 0x3f389fa8, 0x3b59770c, 0x3080a291, 0xaed6839e,
        0x35fffe2d, 0xbbbef9d9, 0x2dd26816, 0xb186bb2a, 0x3a1d73ac, 0x2e9c5b96, 0xb464b84e,
        0xad738dd4, 0x3f9facb9, 0x3b70e0e1, 0x2b979e9c, 0x2f9d7da5, 0xb971e56b, 0xb62cd13f,
        0xb87cd409, 0xacba9023, 0x2fca3e1d, 0xba8601fb, 0xad56b536, 0xb35112d3, 0x3a594e27,
        0x3b326268, 0x3641065a, 0xb8b79af6, 0x3a6a87de, 0x3452b02e, 0x32a15fac, 0xbddab951,
        0x40225038, 0x3a9a72a0, 0xb0dce8e9, 0x2c2ba5d1, 0x2aecd242, 0xb5a885f8, 0xb17644db,
        0x32df148b, 0x34136f79, 0xbfd1c744, 0x3fd8b2fb, 0x34957ac8, 0x32571af2, 0x3ad83d5d,
        0x34b7945f, 0x2b49b15c, 0x391db708, 0x3ff9ce02, 0xad088dad, 0x333e7572, 0xb7f59929,
        0x2cc56ac0, 0xac52c128, 0xbda92db5, 0x31bfea3a, 0x3bea07d5, 0x36912e33, 0x3838733a,
        0x2e62b014, 0x3345710b, 0xbcb7d483, 0x3a9048a1, 0x327e4910, 0xb6f065d4, 0x3de140cd,
        0x2c1c0b7c, 0x3c8dcea7, 0x32564519, 0x3365de42, 0x3ababe35, 0xac9a4021, 0xb3fc1b36,
        0xbff365e1, 0xb98333ea, 0x3197b4e6, 0xb339411c, 0x3e1f0b26, 0x39ab9d15, 0xbcf19d80,
        0xae9edf59, 0x38b348ac, 0xb78aab43, 0x3781ba81, 0x3fa22b4e, 0x3b95c581, 0xbd0f6682,
        0xba57263d, 0xba22447b, 0x33b2e38a, 0xac0dc9f5, 0x2c7a2c71, 0xaeda1b3b, 0xae96c3d5,
        0x3aacfa8d, 0x38f6a1f7, 0x3286f99f, 0x2d591cfe, 0x403b939d, 0xbdb6221c, 0xbab9f740,
        0x404b4fc2, 0x2fd3a784, 0x2f72bf5e, 0xaf3f58cc, 0x3512f8c5, 0xac0d75f0, 0x3e2667c6,
        0xb5df7292, 0xbb022407, 0x2fa4991e, 0x348193a3, 0x37088fae, 0x32a03acf, 0x3fcc26d1,
        0xb0a44b83, 0x38fa1a18, 0x2e3d3717, 0x344de18b, 0xb2b5c2f5, 0xba3fe03a, 0x3d24b7da,
        0xb8364e38, 0xb49ba908, 0xb2d0c117, 0x3e147304, 0x3e9d78d5, 0x3b3becab, 0x3db65604,
        0x3d8bb646, 0xbead74bd, 0xbc95a858, 0xc05228f6, 0x3df645a1, 0x3e45ba5f, 0x3e05cac2,
        0xc044d70b, 0xbbbd70a3, 0x3c00d1b8, 0x4058d1eb, 0x37aab54b, 0xc04b8000, 0x400591ec,
        0x40238a3e, 0xc030dc29, 0xbcc8ce70, 0xbf2151eb, 0xc030dc29, 0x40482b85, 0x36ebe33f,
        0xbdb65604, 0xc062cf5c, 0x3cb7c1be, 0x4026deb9, 0x3f56999a, 0x3f99eb85, 0x404b8000,
        0x3ed8147b, 0xbb57342f, 0x3db65604, 0x3a4e1c59, 0xbff08000, 0xc0697852, 0xbb20a527,
        0x3ea2cccd, 0xbe705a1d, 0xc06ccccd, 0x00000000, 0x80000000, 0x0da24260, 0x8da24260,
        0x3f5d428f, 0xc049d5c2, 0x3f800000, 0xbf800000, 0x406ccccc, 0xc06ccccc, 0x33d6bf95,
        0xb3d6bf95, 0x360637bd, 0xb60637bd, 0x3f000000,
    ];
    const TORCHAO_SIGNED_CODES: [u8; 256] = [
        127, 127, 127, 127, 127, 135, 127, 127, 121, 127, 143, 125, 143, 149, 127, 121, 127, 132,
        127, 136, 124, 127, 127, 131, 45, 137, 127, 127, 111, 127, 132, 127, 110, 127, 128, 122,
        157, 127, 202, 127, 127, 127, 126, 123, 127, 119, 127, 127, 166, 108, 139, 82, 133, 142,
        71, 127, 127, 127, 127, 127, 128, 110, 122, 127, 127, 127, 108, 127, 127, 127, 127, 127,
        127, 197, 142, 127, 127, 128, 110, 127, 127, 135, 127, 127, 127, 207, 142, 127, 127, 121,
        126, 123, 127, 127, 118, 127, 127, 136, 140, 128, 123, 136, 127, 127, 89, 232, 136, 127,
        127, 127, 126, 127, 127, 127, 39, 216, 127, 127, 138, 127, 127, 132, 221, 127, 127, 124,
        127, 127, 91, 127, 144, 128, 130, 127, 127, 102, 136, 127, 125, 166, 127, 149, 127, 127,
        137, 127, 127, 34, 121, 127, 127, 170, 134, 99, 127, 131, 125, 129, 208, 143, 96, 118, 119,
        127, 127, 127, 127, 127, 137, 131, 127, 127, 240, 91, 117, 244, 127, 127, 127, 127, 127,
        171, 126, 116, 127, 127, 129, 127, 214, 127, 131, 127, 127, 127, 119, 159, 124, 127, 127,
        169, 185, 141, 163, 162, 67, 105, 8, 166, 174, 168, 12, 111, 145, 248, 130, 10, 224, 233,
        18, 102, 59, 18, 243, 129, 91, 3, 152, 234, 200, 207, 245, 192, 113, 163, 135, 34, 1, 115,
        186, 77, 0, 127, 127, 127, 127, 200, 10, 203, 51, 255, 0, 127, 127, 128, 126, 193,
    ];
    const TORCHAO_SIGNED_SCALE: u32 = 0x406ccccd;
    const TORCHAO_SIGNED_OUT: [u32; 256] = [
        0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x3a178d51, 0x00000000,
        0x00000000, 0xb980841f, 0x00000000, 0x3b9b573e, 0xb749befc, 0x3b9b573e, 0x3c8d21ff,
        0x00000000, 0xb980841f, 0x00000000, 0x3929bcfd, 0x00000000, 0x3a8255b2, 0xb7f08b18,
        0x00000000, 0x00000000, 0x38a4e379, 0xbfaa91eb, 0x3ab8e4b9, 0x00000000, 0x00000000,
        0xbb9b573e, 0x00000000, 0x3929bcfd, 0x00000000, 0xbbdf8a09, 0x00000000, 0x36089109,
        0xb929bcfd, 0x3d0ac3ca, 0x00000000, 0x3f77e667, 0x00000000, 0x00000000, 0x00000000,
        0xb6089109, 0xb8a4e379, 0x00000000, 0xba178d51, 0x00000000, 0x00000000, 0x3deb9db2,
        0xbc33f7cf, 0x3b130166, 0xbe35be77, 0x3980841f, 0x3b64d7f2, 0xbe957ae2, 0x00000000,
        0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x36089109, 0xbbdf8a09, 0xb929bcfd,
        0x00000000, 0x00000000, 0x00000000, 0xbc33f7cf, 0x00000000, 0x00000000, 0x00000000,
        0x00000000, 0x00000000, 0x00000000, 0x3f354ccd, 0x3b64d7f2, 0x00000000, 0x00000000,
        0x36089109, 0xbbdf8a09, 0x00000000, 0x00000000, 0x3a178d51, 0x00000000, 0x00000000,
        0x00000000, 0x3f9d4000, 0x3b64d7f2, 0x00000000, 0x00000000, 0xb980841f, 0xb6089109,
        0xb8a4e379, 0x00000000, 0x00000000, 0xba8255b2, 0x00000000, 0x00000000, 0x3a8255b2,
        0x3b2e48ea, 0x36089109, 0xb8a4e379, 0x3a8255b2, 0x00000000, 0x00000000, 0xbdd64dd4,
        0x4021e000, 0x3a8255b2, 0x00000000, 0x00000000, 0x00000000, 0xb6089109, 0x00000000,
        0x00000000, 0x00000000, 0xbfd287af, 0x3fd930a3, 0x00000000, 0x00000000, 0x3aef73c2,
        0x00000000, 0x00000000, 0x3929bcfd, 0x3ffa7d70, 0x00000000, 0x00000000, 0xb7f08b18,
        0x00000000, 0x00000000, 0xbdabae15, 0x00000000, 0x3bdf8a09, 0x36089109, 0x37f08b18,
        0x00000000, 0x00000000, 0xbcc04817, 0x3a8255b2, 0x00000000, 0xb749befc, 0x3deb9db2,
        0x00000000, 0x3c8d21ff, 0x00000000, 0x00000000, 0x3ab8e4b9, 0x00000000, 0x00000000,
        0xbff3d47a, 0xb980841f, 0x00000000, 0x00000000, 0x3e206e97, 0x39ac29bf, 0xbcf36e2f,
        0x00000000, 0x38a4e379, 0xb749befc, 0x3749befc, 0x3fa3e8f6, 0x3b9b573e, 0xbd134a23,
        0xba8255b2, 0xba178d51, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
        0x3ab8e4b9, 0x38a4e379, 0x00000000, 0x00000000, 0x403c83d7, 0xbdabae15, 0xbab8e4b9,
        0x4049d5c3, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x3e2b1688,
        0xb6089109, 0xbaef73c2, 0x00000000, 0x00000000, 0x3749befc, 0x00000000, 0x3fcbdeb8,
        0x00000000, 0x38a4e379, 0x00000000, 0x00000000, 0x00000000, 0xba178d51, 0x3d2cdd30,
        0xb7f08b18, 0x00000000, 0x00000000, 0x3e15c6a8, 0x3ea022d1, 0x3b49906d, 0x3dabae15,
        0x3d965e36, 0xbeaacac1, 0xbc8d21ff, 0xc0507eb8, 0x3deb9db2, 0x3e4b0e56, 0x3e0b1eb9,
        0xc0432ccd, 0xbb9b573e, 0x3c11de6a, 0x405727af, 0x37f08b18, 0xc049d5c3, 0x40073c2a,
        0x4025347b, 0xc02f31eb, 0xbcc04817, 0xbf1aa8f6, 0xc02f31eb, 0x40468148, 0x3749befc,
        0xbdabae15, 0xc061251f, 0x3cc04817, 0x402888f7, 0x3f5d428f, 0x3f9d4000, 0x404d2a3e,
        0x3ee56667, 0xbb49906d, 0x3dabae15, 0x3a178d51, 0xbff3d47a, 0xc067ce15, 0xbb130166,
        0x3ea576c9, 0xbe6b0625, 0xc06b228f, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
        0x3f5d428f, 0xc049d5c3, 0x3f829c2a, 0xbf829c2a, 0x406ccccd, 0xc06b228f, 0x00000000,
        0x00000000, 0x36089109, 0xb6089109, 0x3f00051e,
    ];
    const TORCHAO_UNSIGNED_IN: [u32; 64] = [
        0x3c87fe6d, 0x3aca7ace, 0x3a1bff42, 0x3ac2f0a4, 0x38c110ae, 0x3c127d31, 0x3c844a9b,
        0x3a657c66, 0x3acb0f5d, 0x3824306b, 0x3b5708a6, 0x3a27283c, 0x38609cd2, 0x36163565,
        0x395ccef2, 0x39d5df4c, 0x3b615759, 0x37adf544, 0x3bbb43b5, 0x3c5fded0, 0x3c106e86,
        0x3c0083c2, 0x3c9b334b, 0x3bc8c5d3, 0x399389f7, 0x3a4d0606, 0x3b9cac30, 0x3b2c86b2,
        0x3c55f1ce, 0x3c280093, 0x390d2752, 0x3c2f849b, 0x3b8ac90b, 0x387ed1a9, 0x38ae8059,
        0x3b256e20, 0x3b05bbf4, 0x3b176a40, 0x3b64a352, 0x398c0969, 0x3b5a0b46, 0x3c6ad389,
        0x3a395f53, 0x3ba4c718, 0x39600e2e, 0x3d0446ed, 0x3aa77eca, 0x3cadc314, 0x3cf19843,
        0x3c29edb8, 0x3d34f53c, 0x3cec3bb8, 0x3c304f98, 0x3c0b961d, 0x3b9167bc, 0x3b7a4979,
        0x3d0c3e0e, 0x3d21df5f, 0x3d086ce2, 0x3d232518, 0x3890c42f, 0x3b78d132, 0x00000000,
        0x80000000,
    ];
    const TORCHAO_UNSIGNED_CODES: [u8; 64] = [
        166, 80, 65, 79, 34, 141, 164, 69, 80, 28, 108, 66, 31, 10, 44, 60, 111, 21, 131, 156, 141,
        138, 173, 132, 50, 68, 128, 98, 154, 145, 38, 147, 124, 32, 34, 96, 88, 93, 112, 48, 109,
        158, 67, 128, 44, 216, 76, 181, 207, 146, 255, 205, 147, 140, 126, 117, 223, 240, 220, 241,
        32, 117, 0, 0,
    ];
    const TORCHAO_UNSIGNED_SCALE: u32 = 0x3d34f53c;
    const TORCHAO_UNSIGNED_OUT: [u32; 64] = [
        0x3c88b544, 0x3ac86932, 0x3a1c8753, 0x3ac04490, 0x38b7da71, 0x3c122e1a, 0x3c839e5e,
        0x3a5dac6a, 0x3ac86932, 0x381f3e35, 0x3b56357f, 0x3a2cd09a, 0x38535bdf, 0x36126343,
        0x395e3762, 0x39d75707, 0x3b626c73, 0x37ac8fbf, 0x3bbe9242, 0x3c5e858f, 0x3c122e1a,
        0x3c02e96a, 0x3c9a8569, 0x3bc8c00f, 0x399631f2, 0x3a4d6325, 0x3ba008e1, 0x3b2d7e51,
        0x3c5457c4, 0x3c2689b2, 0x39100ae2, 0x3c30b77d, 0x3b8bad4b, 0x3883bcc5, 0x38b7da71,
        0x3b2559b0, 0x3b04c724, 0x3b1922bb, 0x3b667ec5, 0x39892a87, 0x3b5a47d1, 0x3c68b35c,
        0x3a3d19de, 0x3ba008e1, 0x395e3762, 0x3d03f8da, 0x3aa7d6a7, 0x3caee0ff, 0x3cf10aa9,
        0x3c2ba096, 0x3d34f53c, 0x3cebf3c3, 0x3c30b77d, 0x3c0d1735, 0x3b8fbf9c, 0x3b7ada5b,
        0x3d0ce0eb, 0x3d22823b, 0x3d090fbf, 0x3d23c7f5, 0x3883bcc5, 0x3b7ada5b, 0x00000000,
        0x00000000,
    ];
}
