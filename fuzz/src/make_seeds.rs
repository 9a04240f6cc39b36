//! Writes the seed corpora: real checkpoints of every fuzzed optimizer (f32 and f64,
//! after a few steps) into seeds/checkpoint, and configs into seeds/config.
//!
//! ```sh
//! cd fuzz && cargo run --bin make_seeds
//! ```

mod common;

use optim_core::checkpoint::to_bytes;
use optim_core::Scalar;
use optim_zoo::Registry;
use std::path::Path;

fn checkpoints<T: Scalar>(reg: &Registry, dir: &Path) {
    for (i, config) in common::configs().iter().enumerate() {
        let mut opt = common::build::<T>(reg, config);
        let mut p = common::params::<T>();
        for s in 0..3 {
            opt.step(&mut p, &common::grads(s)).unwrap();
        }
        let name = format!("{i:02}-{}-{}", opt.name(), T::DTYPE);
        let bytes = to_bytes(&opt.export_state()).unwrap();
        std::fs::write(dir.join(format!("{name}.safetensors")), &bytes).unwrap();
        // Header-first form (see the checkpoint target): no length prefix, no padding.
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap().trim_end();
        let mut h = header.as_bytes().to_vec();
        h.extend_from_slice(&bytes[8 + n..]);
        std::fs::write(dir.join(format!("{name}.header-first")), h).unwrap();
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let ckpt = root.join("checkpoint");
    let cfg = root.join("config");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::create_dir_all(&cfg).unwrap();
    let reg = Registry::zoo();
    checkpoints::<f32>(&reg, &ckpt);
    checkpoints::<f64>(&reg, &ckpt);
    for (i, config) in common::configs().iter().enumerate() {
        std::fs::write(cfg.join(format!("{i:02}.json")), config.to_string()).unwrap();
    }
    let toml = [
        "optimizer = \"adamw\"\nlr = 3e-4\nweight_decay = 0.01\n",
        "optimizer = \"lookahead\"\nk = 6\nalpha = 0.5\n[inner]\noptimizer = \"radam\"\nlr = 1e-3\n",
        "optimizer = \"bert\"\nexclude_from_weight_decay = [\"LayerNorm\", \"bias\"]\n",
        "optimizer = \"sgd\"\nmomentum = 0.9\nnesterov = true\n",
    ];
    for (i, t) in toml.iter().enumerate() {
        std::fs::write(cfg.join(format!("t{i:02}.toml")), t).unwrap();
    }
    for (i, j) in [
        r#"{"optimizer": "adam", "lr": 1e-3, "betas": [0.9, 0.999]}"#,
        r#"{"optimizer": "ranger", "lr": 0.01, "k": 6}"#,
        r#"{"optimizer": "nag", "lr": 0.1, "exclude_from_weight_decay": ["bias"]}"#,
        r#"{"optimizer": "adadelta", "rho": 0.9, "eps": 1e-6}"#,
        r#"{"optimizer": "adagrad", "lr_decay": 0.0, "initial_accumulator_value": 0.1}"#,
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(cfg.join(format!("j{i:02}.json")), j).unwrap();
    }
    println!("seeds written under {}", root.display());
}
