//! The element types an optimizer can run in.

use std::fmt::{Debug, Display};

/// A floating-point element type for parameters, gradients and states: `f32` or `f64`.
///
/// Per-step scalars (bias corrections, learning rates) are computed in `f64` once per step
/// and converted with [`Scalar::from_f64`]; the element loop then runs entirely in `Self`.
pub trait Scalar: num_traits::Float + Debug + Display + Default + Send + Sync + 'static {
    /// The dtype tag used in errors and exported state.
    const DTYPE: DType;
    /// Converts a per-step scalar computed in `f64` (rounding to nearest for `f32`).
    fn from_f64(x: f64) -> Self;
    /// Widens to `f64` (exact for both types).
    fn to_f64(self) -> f64;
}

impl Scalar for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Scalar for f64 {
    const DTYPE: DType = DType::F64;
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}

/// Element type tag of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
    /// bfloat16 (compact optimizer state only; never a parameter type).
    Bf16,
    /// Unsigned bytes (8-bit state codes only).
    U8,
}

impl DType {
    /// The conventional short name (`"f32"`, `"f64"`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::Bf16 => "bf16",
            DType::U8 => "u8",
        }
    }
}

impl Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
