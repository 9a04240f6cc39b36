//! Config parsing: any text as JSON and as TOML through the registry. Must never panic;
//! whatever builds can step, and its state survives a checkpoint round trip.
#![no_main]

#[path = "../src/common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use optim_core::checkpoint::{from_bytes, to_bytes};
use optim_core::{Optimizer, Scalar};
use optim_zoo::Registry;
use std::sync::LazyLock;

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::zoo);

fn exercise<T: Scalar>(mut opt: Box<dyn Optimizer<T>>) {
    let mut p = common::params::<T>();
    for s in 0..2 {
        let _ = opt.step(&mut p, &common::grads(s));
    }
    let state = opt.export_state();
    let back = from_bytes(&to_bytes(&state).expect("encodes")).expect("decodes");
    let mut fresh = opt.boxed_clone();
    fresh
        .import_state(&back, &p)
        .expect("its own state imports");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(opt) = REGISTRY.from_json::<f32>(text) {
        exercise(opt);
    }
    if let Ok(opt) = REGISTRY.from_json::<f64>(text) {
        exercise(opt);
    }
    if let Ok(opt) = REGISTRY.from_toml::<f32>(text) {
        exercise(opt);
    }
});
