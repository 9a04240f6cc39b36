//! Compact optimizer states (bf16, blockwise 8-bit) for every registry optimizer:
//! descent, bit-identical resume, the same bits under every instruction set and thread
//! count, state memory, checkpoints that refuse another precision, and which states
//! the equations prove never negative.

use ndarray::{Array1, Array2};
use optim_core::checkpoint::{from_bytes, to_bytes};
use optim_core::kernel::{detected_isa, set_isa, Isa};
use optim_core::{Algorithm, Grads, OptimError, Optimizer, Params, StatePrecision, TensorData};
use optim_test_support::{bits, build, config_with, wiggles, zoo_names};
use serde_json::json;

const COMPACT: [StatePrecision; 2] = [StatePrecision::Bf16, StatePrecision::Q8];

/// `w` (rows × cols, large enough to be quantized) and `b` (10, kept full under q8),
/// for the quadratic ½·Σ c·(x − target)², minimised at `target`.
struct Quadratic {
    params: Params<f32>,
    target: Vec<Vec<f32>>,
    curvature: Vec<Vec<f32>>,
}

impl Quadratic {
    fn new(rows: usize, cols: usize) -> Self {
        let mut params = Params::new();
        let w: Vec<f32> = wiggles(1, rows * cols);
        params
            .insert("w", Array2::from_shape_vec((rows, cols), w).unwrap())
            .unwrap();
        params
            .insert("b", Array1::from(wiggles::<f32>(2, 10)))
            .unwrap();
        let target = vec![wiggles(3, rows * cols), wiggles(4, 10)];
        let curvature = [(5, rows * cols), (6, 10)]
            .iter()
            .map(|&(seed, n)| {
                wiggles::<f32>(seed, n)
                    .iter()
                    .map(|c| 1.0 + c.abs())
                    .collect()
            })
            .collect();
        Quadratic {
            params,
            target,
            curvature,
        }
    }

    fn grads(&self) -> Grads<f32> {
        let mut grads = Grads::new();
        for (k, (name, p)) in self.params.iter().enumerate() {
            let g = p
                .iter()
                .zip(&self.target[k])
                .zip(&self.curvature[k])
                .map(|((&x, &t), &c)| c * (x - t));
            let g = ndarray::ArrayD::from_shape_vec(p.shape(), g.collect()).unwrap();
            grads.insert(name, g);
        }
        grads
    }

    fn loss(&self) -> f64 {
        self.params
            .iter()
            .enumerate()
            .map(|(k, (_, p))| {
                p.iter()
                    .zip(&self.target[k])
                    .zip(&self.curvature[k])
                    .map(|((&x, &t), &c)| 0.5 * f64::from(c) * f64::from(x - t).powi(2))
                    .sum::<f64>()
            })
            .sum()
    }

    fn step(&mut self, opt: &mut dyn Optimizer<f32>, steps: usize) {
        for _ in 0..steps {
            let grads = self.grads();
            opt.step(&mut self.params, &grads).unwrap();
        }
    }
}

fn with_precision(name: &str, precision: StatePrecision) -> Box<dyn Optimizer<f32>> {
    build::<f32>(&config_with(
        name,
        "state_precision",
        json!(precision.name()),
    ))
}

#[test]
fn every_optimizer_descends_with_compact_states_and_holds_fewer_bytes() {
    for name in zoo_names() {
        let mut full = with_precision(name, StatePrecision::Full);
        let mut reference = Quadratic::new(64, 96);
        let before = reference.loss();
        reference.step(full.as_mut(), 60);
        for precision in COMPACT {
            let mut opt = with_precision(name, precision);
            assert_eq!(opt.state_precision(), precision, "{name}");
            let mut q = Quadratic::new(64, 96);
            q.step(opt.as_mut(), 60);
            let after = q.loss();
            assert!(
                after < before,
                "{name} {precision}: loss {before} -> {after}"
            );
            assert!(
                opt.state_bytes() <= full.state_bytes(),
                "{name} {precision}: {} bytes of state, {} in f32",
                opt.state_bytes(),
                full.state_bytes()
            );
        }
    }
}

#[test]
fn adam_keeps_two_bytes_and_a_scale_per_parameter_in_q8_and_two_in_bf16() {
    let (rows, cols) = (64usize, 96usize);
    let n = rows * cols;
    for (precision, per_weight) in [
        (StatePrecision::Full, 8 * n),
        (StatePrecision::Bf16, 4 * n),
        // m and v: one code each per element, one f32 scale each per block of 256.
        (StatePrecision::Q8, 2 * n + 2 * 4 * n.div_ceil(256)),
    ] {
        let mut opt = with_precision("adam", precision);
        let mut q = Quadratic::new(rows, cols);
        q.step(opt.as_mut(), 1);
        // `b` (10 elements) keeps f32 states under q8, bf16 ones under bf16.
        let bias = if precision == StatePrecision::Bf16 {
            40
        } else {
            80
        };
        assert_eq!(opt.state_bytes(), per_weight + bias, "{precision}");
    }
}

#[test]
fn resume_from_a_compact_checkpoint_is_bit_identical() {
    for name in zoo_names() {
        for precision in COMPACT {
            let mut a = with_precision(name, precision);
            let mut qa = Quadratic::new(48, 96);
            qa.step(a.as_mut(), 3);
            let saved = from_bytes(&to_bytes(&a.export_state()).unwrap()).unwrap();
            let mut b = with_precision(name, precision);
            let mut qb = Quadratic::new(48, 96);
            qb.params = qa.params.clone();
            b.import_state(&saved, &qb.params).unwrap();
            qa.step(a.as_mut(), 3);
            qb.step(b.as_mut(), 3);
            assert_eq!(bits(&qa.params), bits(&qb.params), "{name} {precision}");
            assert_eq!(a.export_state(), b.export_state(), "{name} {precision}");
        }
    }
}

#[test]
fn compact_states_give_the_same_bits_under_every_instruction_set_and_thread_count() {
    // 64 × 2048: large enough that a step is split across two threads.
    let run = |name: &str, precision, isa, threads| {
        set_isa(isa);
        optim_core::set_num_threads(threads).unwrap();
        let mut opt = with_precision(name, precision);
        let mut q = Quadratic::new(64, 2048);
        q.step(opt.as_mut(), 3);
        bits(&q.params)
    };
    let best = detected_isa();
    for name in zoo_names() {
        for precision in COMPACT {
            let reference = run(name, precision, best, 1);
            assert_eq!(
                run(name, precision, Isa::Portable, 1),
                reference,
                "{name} {precision}"
            );
            assert_eq!(
                run(name, precision, best, 2),
                reference,
                "{name} {precision}, 2 threads"
            );
        }
    }
    set_isa(best);
    optim_core::set_num_threads(0).unwrap();
}

#[test]
fn a_checkpoint_loads_only_at_its_own_precision_and_converts_on_request() {
    let mut q8 = with_precision("adamw", StatePrecision::Q8);
    let mut q = Quadratic::new(64, 96);
    q.step(q8.as_mut(), 2);
    let saved = q8.export_state();
    // Codes as u8 and scales as f32 tensors, next to each other.
    let w = saved.params.iter().find(|p| p.param == "w").unwrap();
    let names: Vec<_> = w.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["m.codes", "m.scales", "v.codes", "v.scales"]);
    assert!(matches!(w.tensors[0].data, TensorData::U8(_)));
    assert_eq!(w.tensors[1].shape, vec![64 * 96 / 256]);

    let mut full = with_precision("adamw", StatePrecision::Full);
    q.step(full.as_mut(), 1);
    let before = full.export_state();
    match full.import_state(&saved, &q.params) {
        Err(OptimError::StatePrecisionMismatch {
            name,
            state,
            expected,
            saved,
        }) => {
            assert_eq!((name.as_str(), state.as_str()), ("w", "m"));
            assert_eq!(
                (expected, saved),
                (StatePrecision::Full, StatePrecision::Q8)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        full.export_state(),
        before,
        "a refused load changes nothing"
    );

    // The conversion offered: load at the saved precision, then convert.
    full.set_state_precision(StatePrecision::Q8).unwrap();
    full.import_state(&saved, &q.params).unwrap();
    full.set_state_precision(StatePrecision::Full).unwrap();
    let converted = full.export_state();
    let m = &converted
        .params
        .iter()
        .find(|p| p.param == "w")
        .unwrap()
        .tensors[0];
    assert_eq!(m.name, "m");
    assert!(matches!(m.data, TensorData::F32(_)));
}

#[test]
fn corrupt_q8_checkpoints_are_refused() {
    let mut opt = with_precision("adam", StatePrecision::Q8);
    let mut q = Quadratic::new(64, 96);
    q.step(opt.as_mut(), 1);
    let good = opt.export_state();
    let w = good.params.iter().position(|p| p.param == "w").unwrap();
    type Edit = Box<dyn Fn(&mut optim_core::OptimizerState)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(move |s| s.params[w].tensors[1].data = TensorData::F32(vec![f32::NAN; 24])),
            "scale NaN",
        ),
        (
            Box::new(move |s| drop(s.params[w].tensors.remove(1))),
            "m.scales` is missing",
        ),
        (
            Box::new(move |s| s.params[w].tensors[0].data = TensorData::U8(vec![0; 10])),
            "has 10 values",
        ),
    ];
    for (edit, want) in cases {
        let mut bad = good.clone();
        edit(&mut bad);
        let mut fresh = with_precision("adam", StatePrecision::Q8);
        let err = fresh.import_state(&bad, &q.params).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn a_sparse_row_step_changes_only_the_blocks_its_rows_touch() {
    let mut opt = with_precision("lazyadam", StatePrecision::Q8);
    let mut params = Params::new();
    params
        .insert(
            "emb",
            Array2::from_shape_vec((64, 128), wiggles::<f32>(1, 64 * 128)).unwrap(),
        )
        .unwrap();
    let mut dense = Grads::new();
    dense.insert(
        "emb",
        Array2::from_shape_vec((64, 128), wiggles::<f32>(2, 64 * 128)).unwrap(),
    );
    opt.step(&mut params, &dense).unwrap();
    let before = opt.export_state();
    // Rows 3 and 40 (128 wide): blocks 1 and 20 of 256 elements.
    let mut sparse = Grads::new();
    sparse.insert_rows("emb", vec![3, 40], Array2::from_elem((2, 128), 0.5f32));
    opt.step(&mut params, &sparse).unwrap();
    let after = opt.export_state();
    let codes = |s: &optim_core::OptimizerState| match &s.params[0].tensors[0].data {
        TensorData::U8(c) => c.clone(),
        other => panic!("{other:?}"),
    };
    let (a, b) = (codes(&before), codes(&after));
    for (block, (x, y)) in a.chunks(256).zip(b.chunks(256)).enumerate() {
        if block == 1 || block == 20 {
            assert_ne!(x, y, "block {block} holds a stepped row");
        } else {
            assert_eq!(x, y, "block {block} holds no stepped row");
        }
    }
}

#[test]
fn second_moments_are_proved_never_negative_and_others_are_signed() {
    let never = |states: &[optim_core::StateSpec]| -> Vec<(&str, bool)> {
        states.iter().map(|s| (s.name, s.never_negative)).collect()
    };
    use optim_zoo::*;
    assert_eq!(
        never(Adam::STATES),
        [("m", false), ("v", true), ("v_max", true)]
    );
    assert_eq!(never(Adamw::STATES), never(Adam::STATES));
    // RMSprop's α is declared `0.0..` (torch takes any α ≥ 0), so 1 − α may be negative
    // and v = α·v + (1 − α)·g² is not provably non-negative: signed.
    assert!(never(Rmsprop::STATES).contains(&("v", false)));
    assert!(never(Nadam::STATES).contains(&("v", true)));
    assert!(never(Adagrad::STATES).contains(&("s", true)));
    // v − (1−β2)·sign(v − g²)·g² stays positive, but not by a rule this proof knows.
    assert!(never(Yogi::STATES).contains(&("v", false)));
    assert!(never(Adabelief::STATES).contains(&("s", true)));
}
