//! The adapter against candle's own optimizer, and what it promises: no copies of CPU
//! variables, bit-identical resuming, untouched variables without a gradient, errors that
//! change nothing, clipping, schedules, partitions and the copy path.

use candle_core::{CpuStorage, DType, Device, Storage, Tensor, Var};
use candle_nn::{Optimizer, VarMap};
use optim_candle::{CandleOptimizer, Config};
use optim_core::schedule::Schedule;
use optim_test_support::wiggles;
use serde_json::json;

/// A two-layer tanh network's variables, seeded: `w1` [4, 3], `b1` [3], `w2` [3, 2].
fn vars(dtype: DType, seed: u64) -> Vec<(String, Var)> {
    let shapes: [(&str, &[usize]); 3] = [("w1", &[4, 3]), ("b1", &[3]), ("w2", &[3, 2])];
    shapes
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n = shape.iter().product();
            let values: Vec<f64> = wiggles(seed + i as u64, n);
            let t = Tensor::from_vec(values, *shape, &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            (name.to_string(), Var::from_tensor(&t).unwrap())
        })
        .collect()
}

/// The loss of the network on a fixed batch that depends on `k`.
fn loss(vars: &[(String, Var)], k: usize) -> Tensor {
    let dtype = vars[0].1.dtype();
    let x: Vec<f64> = wiggles(100 + k as u64, 5 * 4);
    let x = Tensor::from_vec(x, (5, 4), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let h = x
        .matmul(&vars[0].1)
        .unwrap()
        .broadcast_add(&vars[1].1)
        .unwrap()
        .tanh()
        .unwrap();
    h.matmul(&vars[2].1)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
}

fn values(var: &Var) -> Vec<f32> {
    var.flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn bits(vars: &[(String, Var)]) -> Vec<Vec<u32>> {
    vars.iter()
        .map(|(_, v)| values(v).iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// The address of a CPU variable's storage `Vec`.
fn storage_ptr(t: &Tensor) -> usize {
    let (storage, _) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => v.as_ptr() as usize,
        Storage::Cpu(CpuStorage::F64(v)) => v.as_ptr() as usize,
        _ => panic!("not a CPU f32/f64 storage"),
    }
}

fn just_vars(named: &[(String, Var)]) -> Vec<Var> {
    named.iter().map(|(_, v)| v.clone()).collect()
}

#[test]
fn our_adamw_equals_candle_nn_adamw_step_for_step() {
    let ours = vars(DType::F32, 1);
    let theirs = vars(DType::F32, 1);
    let (lr, wd) = (0.01, 0.1);
    let mut opt = CandleOptimizer::new(
        just_vars(&ours),
        Config::json(json!({"optimizer": "adamw", "lr": lr, "weight_decay": wd, "eps": 1e-8})),
    )
    .unwrap();
    let params = candle_nn::ParamsAdamW {
        lr,
        weight_decay: wd,
        ..Default::default()
    };
    let mut reference = candle_nn::AdamW::new(just_vars(&theirs), params).unwrap();
    let mut moved = 0.0f32;
    for k in 0..20 {
        opt.backward_step(&loss(&ours, k)).unwrap();
        reference.backward_step(&loss(&theirs, k)).unwrap();
        for ((name, a), (_, b)) in ours.iter().zip(&theirs) {
            for (x, y) in values(a).iter().zip(values(b)) {
                assert!((x - y).abs() <= 1e-6, "step {k}, {name}: {x} vs {y}");
            }
        }
    }
    for ((_, a), (_, b)) in ours.iter().zip(&vars(DType::F32, 1)) {
        for (x, y) in values(a).iter().zip(values(b)) {
            moved = moved.max((x - y).abs());
        }
    }
    assert!(moved > 0.05, "the variables moved ({moved})");
}

#[test]
fn cpu_variables_and_gradients_are_stepped_in_their_own_storage() {
    for dtype in [DType::F32, DType::F64] {
        let named = vars(dtype, 2);
        let mut opt = CandleOptimizer::from_named(
            named.clone(),
            Config::json(json!({"optimizer": "adam", "lr": 0.01})),
        )
        .unwrap();
        let before: Vec<usize> = named.iter().map(|(_, v)| storage_ptr(v)).collect();
        let start = bits(&named);
        for k in 0..3 {
            let grads = loss(&named, k).backward().unwrap();
            let grad_ptrs: Vec<usize> = named
                .iter()
                .map(|(_, v)| storage_ptr(grads.get(v).unwrap()))
                .collect();
            let grad_values: Vec<Vec<f32>> = named
                .iter()
                .map(|(_, v)| {
                    let g = grads.get(v).unwrap();
                    g.flatten_all()
                        .unwrap()
                        .to_dtype(DType::F32)
                        .unwrap()
                        .to_vec1()
                        .unwrap()
                })
                .collect();
            opt.step(&grads).unwrap();
            assert_eq!(opt.copied_last_step(), 0, "{dtype:?}: nothing copied");
            let after: Vec<usize> = named.iter().map(|(_, v)| storage_ptr(v)).collect();
            assert_eq!(
                after, before,
                "{dtype:?}: the variables' storage is the same Vec"
            );
            for (((_, v), ptr), old) in named.iter().zip(&grad_ptrs).zip(&grad_values) {
                let g = grads.get(v).unwrap();
                assert_eq!(storage_ptr(g), *ptr, "the gradient's storage went back");
                let now: Vec<f32> = g
                    .flatten_all()
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                assert_eq!(&now, old, "the gradient is unchanged (no clipping)");
            }
        }
        assert_ne!(bits(&named), start, "{dtype:?}: the variables changed");
        assert_eq!(opt.step_count("w1"), Some(3));
    }
}

#[test]
fn checkpoint_save_restart_load_continues_bit_identically() {
    let dir = std::env::temp_dir().join(format!("optim-candle-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ckpt, weights) = (dir.join("opt.safetensors"), dir.join("model.safetensors"));
    let config = || {
        Config::json(json!({"optimizer": "ranger", "lr": 0.01}))
            .clip_grad_norm(0.5)
            .schedule(Schedule::cosine(0.01, 0.001, 2, 12).unwrap())
    };
    let varmap_of = |named: &[(String, Var)]| {
        let map = VarMap::new();
        {
            let mut data = map.data().lock().unwrap();
            for (n, v) in named {
                data.insert(n.clone(), v.clone());
            }
        }
        map
    };

    // Uninterrupted: 12 steps.
    let straight = vars(DType::F32, 3);
    let map = varmap_of(&straight);
    let mut opt = CandleOptimizer::from_varmap(&map, config()).unwrap();
    for k in 0..6 {
        opt.backward_step(&loss(&straight, k)).unwrap();
    }
    opt.save(&ckpt).unwrap();
    map.save(&weights).unwrap();
    for k in 6..12 {
        opt.backward_step(&loss(&straight, k)).unwrap();
    }

    // Restarted after 6: new variables and optimizer, both loaded from files.
    let resumed = vars(DType::F32, 99);
    let mut map2 = varmap_of(&resumed);
    map2.load(&weights).unwrap();
    let mut opt2 = CandleOptimizer::from_varmap(&map2, config()).unwrap();
    opt2.load(&ckpt).unwrap();
    assert_eq!(opt2.steps(), 6);
    for k in 6..12 {
        opt2.backward_step(&loss(&resumed, k)).unwrap();
    }
    assert_eq!(bits(&resumed), bits(&straight));
    assert_eq!(opt2.export_state(), opt.export_state());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_variable_without_a_gradient_and_its_state_are_left_alone() {
    let named = vars(DType::F32, 4);
    let mut opt = CandleOptimizer::from_named(
        named.clone(),
        Config::json(json!({"optimizer": "adamw", "lr": 0.01})),
    )
    .unwrap();
    opt.backward_step(&loss(&named, 0)).unwrap();
    let state_of = |opt: &CandleOptimizer, name: &str| {
        opt.export_state()
            .params
            .into_iter()
            .find(|p| p.param == name)
            .unwrap()
    };
    let b1_state = state_of(&opt, "b1");
    let b1 = values(&named[1].1);
    // A loss without b1: only w1 and w2 get gradients.
    let x = Tensor::ones((2, 4), DType::F32, &Device::Cpu).unwrap();
    let no_bias = x
        .matmul(&named[0].1)
        .unwrap()
        .matmul(&named[2].1)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap();
    let w1 = values(&named[0].1);
    opt.backward_step(&no_bias).unwrap();
    assert_eq!(values(&named[1].1), b1, "b1 unchanged");
    assert_eq!(state_of(&opt, "b1"), b1_state, "b1's state unchanged");
    assert_eq!(opt.step_count("b1"), Some(1));
    assert_eq!(opt.step_count("w1"), Some(2));
    assert_ne!(values(&named[0].1), w1, "w1 stepped");
    // And back to all three: b1's count resumes from its own.
    opt.backward_step(&loss(&named, 1)).unwrap();
    assert_eq!(opt.step_count("b1"), Some(2));
}

#[test]
fn a_bad_learning_rate_fails_the_next_step_and_changes_nothing() {
    let named = vars(DType::F32, 5);
    let mut opt = CandleOptimizer::new(
        just_vars(&named),
        Config::json(json!({"optimizer": "sgd", "lr": 0.1})),
    )
    .unwrap();
    assert_eq!(opt.learning_rate(), 0.1);
    opt.set_learning_rate(-1.0);
    assert_eq!(opt.learning_rate(), 0.1, "the bad rate is not applied");
    let start = bits(&named);
    let state = opt.export_state();
    let err = opt.backward_step(&loss(&named, 0)).unwrap_err();
    assert!(err.to_string().contains("lr"), "{err}");
    assert_eq!(bits(&named), start);
    assert_eq!(opt.export_state(), state);
    assert!(opt.try_set_learning_rate(-1.0).is_err());
    opt.set_learning_rate(0.05);
    assert_eq!(opt.learning_rate(), 0.05);
    opt.backward_step(&loss(&named, 0)).unwrap();
    assert_ne!(bits(&named), start);
}

#[test]
fn bad_configs_and_variables_are_clear_errors() {
    let named = vars(DType::F32, 6);
    let err = CandleOptimizer::new(
        just_vars(&named),
        Config::json(json!({"optimizer": "adam", "betaa1": 0.9})),
    )
    .unwrap_err();
    assert!(err.to_string().contains("did you mean `beta1`?"), "{err}");
    let twice = vec![named[0].clone(), ("again".to_string(), named[0].1.clone())];
    let err = CandleOptimizer::from_named(twice, Config::json(json!({"optimizer": "sgd"})));
    assert!(err.unwrap_err().to_string().contains("given twice"));
    let mut mixed = vars(DType::F32, 7);
    mixed.extend(vars(DType::F64, 8).into_iter().map(|(n, v)| (n + "_64", v)));
    let err = CandleOptimizer::from_named(mixed, Config::json(json!({"optimizer": "sgd"})));
    assert!(err.unwrap_err().to_string().contains("f64 variables mixed"));
    let err = CandleOptimizer::new(
        just_vars(&named),
        Config::json(json!({"optimizer": "sgd"})).clip_grad_norm(-1.0),
    )
    .unwrap_err();
    assert!(err.to_string().contains("max_norm"), "{err}");
}

#[test]
fn global_norm_clipping_and_schedules_act_on_candle_gradients() {
    // SGD with lr from the schedule: each step moves w by exactly lr_t · g · min(1, c/‖g‖).
    let named = vars(DType::F64, 9);
    let schedule = Schedule::linear_warmup_decay(0.5, 2, 6).unwrap();
    let max_norm = 0.01;
    let mut opt = CandleOptimizer::from_named(
        named.clone(),
        Config::json(json!({"optimizer": "sgd", "lr": 0.5}))
            .clip_grad_norm(max_norm)
            .schedule(schedule),
    )
    .unwrap();
    let as_f64 = |t: &Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
    for k in 0..5 {
        let grads = loss(&named, k).backward().unwrap();
        let g: Vec<Vec<f64>> = named
            .iter()
            .map(|(_, v)| as_f64(grads.get(v).unwrap()))
            .collect();
        let norm = g.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
        assert!(norm > max_norm, "the gradients get clipped");
        let scale = max_norm / (norm + 1e-6);
        let before: Vec<Vec<f64>> = named.iter().map(|(_, v)| as_f64(v)).collect();
        opt.step(&grads).unwrap();
        let lr = schedule.lr_at(k as u64);
        for (i, (_, v)) in named.iter().enumerate() {
            for ((w1, w0), g) in as_f64(v).iter().zip(&before[i]).zip(&g[i]) {
                let expected = w0 - lr * g * scale;
                assert!(
                    (w1 - expected).abs() <= 1e-15,
                    "step {k}: {w1} vs {expected}"
                );
            }
        }
        assert_eq!(opt.learning_rate(), lr);
    }
}

#[test]
fn a_partition_routes_matrices_to_muon_by_varmap_name() {
    let named = vars(DType::F32, 10);
    let config = json!({"optimizer": "partition", "routes": [
        {"select": {"ndim": 2}, "optimizer": {"optimizer": "muon", "lr": 0.02}},
        {"optimizer": {"optimizer": "adamw", "lr": 0.01}}
    ]});
    let mut opt = CandleOptimizer::from_named(named.clone(), Config::json(config)).unwrap();
    opt.backward_step(&loss(&named, 0)).unwrap();
    let state = opt.export_state();
    let route_params: Vec<Vec<String>> = state.routes.iter().map(|r| r.params.clone()).collect();
    assert_eq!(route_params, [vec!["w1", "w2"], vec!["b1"]]);
}

#[test]
fn half_precision_variables_step_in_f32_through_one_copy() {
    // bf16 variables go through the copy path; their step must be the f32 step of the
    // same values, rounded to bf16 once.
    let half = vars(DType::BF16, 11);
    let full: Vec<(String, Var)> = half
        .iter()
        .map(|(n, v)| {
            let t = v.to_dtype(DType::F32).unwrap();
            (n.clone(), Var::from_tensor(&t).unwrap())
        })
        .collect();
    let config = || Config::json(json!({"optimizer": "sgd", "lr": 0.1, "momentum": 0.9}));
    let mut on_half = CandleOptimizer::from_named(half.clone(), config()).unwrap();
    let mut on_full = CandleOptimizer::from_named(full.clone(), config()).unwrap();
    let grads_half = loss(&half, 0).backward().unwrap();
    // The same gradient values, in f32 (a store for `full`, its entries replaced).
    let mut grads_full = loss(&full, 0).backward().unwrap();
    for ((_, h), (_, f)) in half.iter().zip(&full) {
        let g = grads_half.get(h).unwrap().to_dtype(DType::F32).unwrap();
        grads_full.insert(f, g);
    }
    on_half.step(&grads_half).unwrap();
    on_full.step(&grads_full).unwrap();
    assert_eq!(
        on_half.copied_last_step(),
        6,
        "three variables and their gradients"
    );
    assert_eq!(on_full.copied_last_step(), 0);
    for ((n, h), (_, f)) in half.iter().zip(&full) {
        let rounded: Vec<f32> = f
            .to_dtype(DType::BF16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(values(h), rounded, "{n}");
        assert_eq!(h.dtype(), DType::BF16);
    }
}

#[test]
fn typed_configs_and_groups_by_varmap_name() {
    // A group that freezes b1 (lr 0) by name: b1 stays, the others move.
    let named = vars(DType::F32, 12);
    let config = Config::algorithm(optim_zoo::Adam::default().lr(0.01))
        .group(optim_core::Group::names(["b1"]).set("lr", 0.0));
    let mut opt = CandleOptimizer::from_named(named.clone(), config).unwrap();
    let b1 = values(&named[1].1);
    let w1 = values(&named[0].1);
    opt.backward_step(&loss(&named, 0)).unwrap();
    assert_eq!(values(&named[1].1), b1);
    assert_ne!(values(&named[0].1), w1);
}
