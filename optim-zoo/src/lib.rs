//! # optim-zoo
//!
//! Every optimizer of the survey, each written with `#[optimizer]` as its equations.

pub mod adam;
pub mod sgd;

pub use adam::Adam;
pub use sgd::Sgd;

pub mod conformance;
pub mod registry;

pub use registry::{build, Registry};

/// Adds every zoo optimizer and the survey's presets to `r`.
pub(crate) fn register_zoo(r: &mut Registry) {
    use serde_json::json;
    let results = [
        r.register::<Sgd>(),
        r.register_preset("momentum", "SGD with momentum 0.9 (SGDM)", "sgd", vec![("momentum", json!(0.9))]),
        r.register_preset("sgdm", "SGD with momentum 0.9 (SGDM)", "sgd", vec![("momentum", json!(0.9))]),
        r.register_preset("nag", "Nesterov accelerated gradient: SGD, momentum 0.9, Nesterov", "sgd", vec![("momentum", json!(0.9)), ("nesterov", json!(true))]),
        r.register::<Adam>(),
        r.register_preset("amsgrad", "Adam with AMSGrad", "adam", vec![("amsgrad", json!(true))]),
    ];
    debug_assert!(results.iter().all(Result::is_ok), "zoo registration: {results:?}");
}
