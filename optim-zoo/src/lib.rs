//! # optim-zoo
//!
//! Every optimizer of the survey, each written with `#[optimizer]` as its equations, and
//! a [`Registry`] that builds any of them by name from a config.
//!
//! | registry name | type | what |
//! | --- | --- | --- |
//! | `sgd` (`momentum`/`sgdm`, `nag`) | [`Sgd`] | SGD, momentum, Nesterov |
//! | `adagrad` | [`Adagrad`] | AdaGrad |
//! | `adadelta` | [`Adadelta`] | AdaDelta |
//! | `rmsprop` | [`Rmsprop`] | RMSprop, centered, momentum |
//! | `adam` (`amsgrad`) | [`Adam`] | Adam + L2, AMSGrad |
//! | `adamw` (`bert`) | [`Adamw`] | AdamW; BERT's optimizer without bias correction |
//! | `adamax` | [`Adamax`] | Adamax |
//! | `nadam` | [`Nadam`] | Nadam |
//! | `radam` | [`Radam`] | RAdam |
//! | `lazyadam` | [`LazyAdam`] | Adam on the rows of a sparse gradient |
//! | `lookahead` | [`Lookahead`] | Lookahead around any optimizer |
//! | `lamb` | [`Lamb`] | LAMB: Adam with a per-tensor trust ratio |
//! | `lars` | [`Lars`] | LARS: momentum SGD with a per-tensor trust ratio |
//! | `novograd` | [`Novograd`] | NovoGrad: a per-tensor second moment |
//! | `adafactor` | [`Adafactor`] | Adafactor: a factored second moment |
//! | `muon` | [`Muon`] | Muon: orthogonalized momentum, for matrices |
//! | `schedule_free_adamw` | [`ScheduleFreeAdamw`] | schedule-free AdamW, with evaluation weights |
//! | `schedule_free_sgd` | [`ScheduleFreeSgd`] | schedule-free SGD, with evaluation weights |
//! | `lion` | [`Lion`] | Lion: the sign of an interpolated momentum |
//! | `adabelief` | [`Adabelief`] | AdaBelief: Adam with the variance around the momentum |
//! | `yogi` | [`Yogi`] | Yogi: Adam with an additive second-moment update |
//! | `adan` | [`Adan`] | Adan: momentum of the gradient's differences |
//! | `ademamix` | [`Ademamix`] | AdEMAMix: Adam plus a slow momentum |
//! | `madgrad` | [`Madgrad`] | MADGRAD: dual averaging with momentum |
//! | `adabound` | [`Adabound`] | AdaBound: Adam's step sizes clipped into bounds that close on SGD |
//! | `rprop` | [`Rprop`] | Rprop: per-element step sizes from gradient signs |
//! | `asgd` | [`Asgd`] | averaged SGD, with evaluation weights |
//! | `came` | [`Came`] | CAME: Adafactor's memory with a confidence-guided step |
//! | `prodigy` | [`Prodigy`] | Prodigy: Adam with a distance estimate from sums over every parameter |
//! | `ranger` | [`Lookahead`] + [`Radam`] | Lookahead around RAdam |

pub mod adabelief;
pub mod adabound;
pub mod adadelta;
pub mod adafactor;
pub mod adagrad;
pub mod adam;
pub mod adamax;
pub mod adamw;
pub mod adan;
pub mod ademamix;
pub mod asgd;
pub mod came;
pub mod lamb;
pub mod lars;
pub mod lazyadam;
pub mod lion;
pub mod lookahead;
pub mod madgrad;
pub mod muon;
pub mod nadam;
pub mod novograd;
pub mod prodigy;
pub mod radam;
pub mod rmsprop;
pub mod rprop;
pub mod schedule_free;
pub mod sgd;
pub mod yogi;

pub mod conformance;
pub mod registry;

pub use adabelief::Adabelief;
pub use adabound::Adabound;
pub use adadelta::Adadelta;
pub use adafactor::Adafactor;
pub use adagrad::Adagrad;
pub use adam::Adam;
pub use adamax::Adamax;
pub use adamw::Adamw;
pub use adan::Adan;
pub use ademamix::Ademamix;
pub use asgd::Asgd;
pub use came::Came;
pub use lamb::Lamb;
pub use lars::Lars;
pub use lazyadam::LazyAdam;
pub use lion::Lion;
pub use lookahead::Lookahead;
pub use madgrad::Madgrad;
pub use muon::Muon;
pub use nadam::Nadam;
pub use novograd::Novograd;
pub use prodigy::Prodigy;
pub use radam::Radam;
pub use registry::{build, Registry};
pub use rmsprop::Rmsprop;
pub use rprop::Rprop;
pub use schedule_free::{ScheduleFreeAdamw, ScheduleFreeSgd};
pub use sgd::Sgd;
pub use yogi::Yogi;

/// Adds every zoo optimizer and the survey's presets to `r`.
pub(crate) fn register_zoo(r: &mut Registry) {
    use serde_json::json;
    let results = [
        r.register::<Sgd>(),
        r.register_preset("momentum", "SGD with momentum 0.9 (SGDM)", "sgd", vec![("momentum", json!(0.9))]),
        r.register_preset("sgdm", "SGD with momentum 0.9 (SGDM)", "sgd", vec![("momentum", json!(0.9))]),
        r.register_preset(
            "nag",
            "Nesterov accelerated gradient: SGD with momentum 0.9, Nesterov",
            "sgd",
            vec![("momentum", json!(0.9)), ("nesterov", json!(true))],
        ),
        r.register::<Adagrad>(),
        r.register::<Adadelta>(),
        r.register::<Rmsprop>(),
        r.register::<Adam>(),
        r.register_preset("amsgrad", "Adam with AMSGrad", "adam", vec![("amsgrad", json!(true))]),
        r.register::<Adamw>(),
        r.register_preset(
            "bert",
            "BERT's AdamWeightDecayOptimizer: AdamW without bias correction, eps 1e-6, decay 0.01 except LayerNorm and bias",
            "adamw",
            vec![
                ("bias_correction", json!(false)),
                ("eps", json!(1e-6)),
                ("weight_decay", json!(0.01)),
                ("exclude_from_weight_decay", json!(["LayerNorm", "layer_norm", "bias"])),
            ],
        ),
        r.register::<Adamax>(),
        r.register::<Nadam>(),
        r.register::<Radam>(),
        r.register::<LazyAdam>(),
        r.register::<Lamb>(),
        r.register::<Lars>(),
        r.register::<Novograd>(),
        r.register::<Adafactor>(),
        r.register::<Muon>(),
        r.register::<ScheduleFreeAdamw>(),
        r.register::<ScheduleFreeSgd>(),
        r.register::<Lion>(),
        r.register::<Adabelief>(),
        r.register::<Yogi>(),
        r.register::<Adan>(),
        r.register::<Ademamix>(),
        r.register::<Madgrad>(),
        r.register::<Adabound>(),
        r.register::<Rprop>(),
        r.register::<Asgd>(),
        r.register::<Prodigy>(),
        r.register::<Came>(),
        r.register::<Lookahead>(),
        r.register_composite::<Lookahead>(
            "ranger",
            "Ranger: Lookahead (k 6, alpha 0.5) around RAdam (betas 0.95/0.999, eps 1e-5)",
            "radam",
            vec![("beta1", json!(0.95)), ("eps", json!(1e-5)), ("k", json!(6)), ("alpha", json!(0.5))],
        ),
    ];
    debug_assert!(
        results.iter().all(Result::is_ok),
        "zoo registration: {results:?}"
    );
}

/// The README's code blocks, compiled and run as doctests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
