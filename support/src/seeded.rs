//! Reproducible numbers: a seeded generator for property tests and a closed-form wiggle
//! for fixtures.

use ndarray::ArrayD;
use optim_core::Scalar;

/// SplitMix64 (Steele, Lea & Flood 2014): one 64-bit word of state, so a failing case is
/// reproduced from its seed alone.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), with the 53 bits an `f64` holds.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A deterministic, irregular value in (−1, 1) for element `i` of stream `seed`. No
/// dyadic shortcuts: it exercises rounding, so bit-exact comparisons mean something.
pub fn wiggle(seed: u64, i: usize) -> f64 {
    ((seed as f64 * 12.9898 + i as f64 * 78.233).sin() * 43758.5453).fract()
}

/// `n` values `wiggle(seed, 0..n)`.
pub fn wiggles<T: Scalar>(seed: u64, n: usize) -> Vec<T> {
    (0..n).map(|i| T::from_f64(wiggle(seed, i))).collect()
}

/// An array of `shape` filled with `wiggle(seed, ..)` in memory order.
pub fn wiggly<T: Scalar>(seed: u64, shape: &[usize]) -> ArrayD<T> {
    let n = shape.iter().product();
    ArrayD::from_shape_vec(shape, wiggles(seed, n))
        .expect("the shape's product is the number of values")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_published_stream() {
        // The first outputs for seed 0 of the reference implementation (Vigna's splitmix64.c).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut r = SplitMix64::new(7);
        for _ in 0..1000 {
            let u = r.uniform(-2.0, 3.0);
            assert!((-2.0..3.0).contains(&u));
            assert!(r.below(5) < 5);
            assert!(wiggle(3, r.below(1000)).abs() < 1.0);
        }
    }
}
