//! Bit patterns of parameters: two runs agree exactly when these are equal (NaN payloads
//! and signed zeros included), which `==` on floats does not say.

use optim_core::{Params, Scalar};

/// Every parameter's bits, named, in the parameters' order.
pub fn bits<T: Scalar>(params: &Params<T>) -> Vec<(String, Vec<u64>)> {
    params
        .iter()
        .map(|(name, a)| {
            let bits = a.iter().map(|&x| Scalar::to_f64(x).to_bits()).collect();
            (name.to_string(), bits)
        })
        .collect()
}

/// The bits of parameter `name`; panics (a test failure) if there is none.
pub fn bits_of<T: Scalar>(params: &Params<T>, name: &str) -> Vec<u64> {
    params
        .get(name)
        .unwrap_or_else(|| panic!("no parameter {name}"))
        .iter()
        .map(|&x| Scalar::to_f64(x).to_bits())
        .collect()
}
