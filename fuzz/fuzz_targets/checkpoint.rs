//! Checkpoint loading: any bytes, decoded and imported into optimizers. Must never
//! panic; a failed import changes nothing; whatever decodes encodes again to a file that
//! decodes to the same state; whatever imports can step.
//!
//! Inputs come in two forms. Raw: the file's bytes as they are. Header-first (the input
//! starts with `{`): the JSON header followed by the tensor bytes, without the 8-byte
//! length prefix, which the target computes; so a mutation may grow or shrink the
//! metadata (a longer number, a new field) and still reach the checks behind the
//! safetensors framing. (`cargo fuzz` builds with `cfg(fuzzing)`, under which a checksum
//! mismatch is not an error, for the same reason.)
#![no_main]

#[path = "../src/common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use optim_core::checkpoint::{from_bytes, to_bytes};
use optim_core::Scalar;
use optim_zoo::Registry;
use std::sync::LazyLock;

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::zoo);

fn import_into<T: Scalar>(state: &optim_core::OptimizerState) {
    let params = common::params::<T>();
    for config in common::configs() {
        let mut opt = common::build::<T>(&REGISTRY, &config);
        let mut p = params.clone();
        opt.step(&mut p, &common::grads(0)).unwrap();
        let before = to_bytes(&opt.export_state()).unwrap();
        match opt.import_state(state, &p) {
            Err(_) => assert_eq!(to_bytes(&opt.export_state()).unwrap(), before, "{config}"),
            Ok(()) => {
                let _ = opt.step(&mut p, &common::grads(1));
                let _ = opt.step(&mut p, &common::grads(2));
                let _ = to_bytes(&opt.export_state()).unwrap();
            }
        }
    }
}

/// The file for a header-first input: length prefix added.
fn framed(data: &[u8]) -> Option<Vec<u8>> {
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<serde_json::Value>();
    values.next()?.ok()?;
    let end = values.byte_offset();
    let mut out = Vec::with_capacity(data.len() + 8);
    out.extend_from_slice(&(end as u64).to_le_bytes());
    out.extend_from_slice(data);
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let file;
    let data = if data.first() == Some(&b'{') {
        match framed(data) {
            Some(f) => {
                file = f;
                &file[..]
            }
            None => return,
        }
    } else {
        data
    };
    let Ok(state) = from_bytes(data) else { return };
    let bytes = to_bytes(&state).expect("a decoded state encodes");
    let again = from_bytes(&bytes).expect("an encoded state decodes");
    assert_eq!(to_bytes(&again).unwrap(), bytes, "encoding is stable");
    import_into::<f32>(&state);
    import_into::<f64>(&state);
});
