//! The adapter against burn's own AdamW, and what it promises: no copies on the CPU
//! backends, resuming through burn's records, per-parameter semantics, errors that change
//! nothing.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor, TensorData};
use optim_burn::ZooOptimizer;
use optim_core::NonFinitePolicy;
use optim_test_support::wiggles;
use serde_json::json;

#[derive(Module, Debug)]
struct Net {
    fc1: Linear,
    fc2: Linear,
}

fn net(device: &Device) -> Net {
    Net {
        fc1: LinearConfig::new(4, 3).init(device),
        fc2: LinearConfig::new(3, 2).init(device),
    }
}

fn batch(k: usize, device: &Device) -> Tensor<2> {
    let x: Vec<f32> = wiggles(100 + k as u64, 5 * 4);
    Tensor::<2>::from_data(TensorData::new(x, [5, 4]), device)
}

fn loss(model: &Net, k: usize, device: &Device) -> Tensor<1> {
    let h = model.fc1.forward(batch(k, device)).tanh();
    model.fc2.forward(h).square().mean()
}

fn step(opt: &mut ModuleOptimizer, model: Net, k: usize, lr: f64, device: &Device) -> Net {
    let grads = GradientsParams::from_grads(loss(&model, k, device).backward(), &model);
    opt.step(lr, model, grads)
}

fn values(model: &Net) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for layer in [&model.fc1, &model.fc2] {
        out.push(
            layer
                .weight
                .val()
                .into_data()
                .try_into_vec::<f32>()
                .unwrap(),
        );
        let bias = layer.bias.as_ref().unwrap().val();
        out.push(bias.into_data().try_into_vec::<f32>().unwrap());
    }
    out
}

/// The CPU backends built: flex, and ndarray with the `ndarray` feature.
fn cpu_devices() -> Vec<Device> {
    #[allow(unused_mut)]
    let mut devices = vec![Device::flex()];
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    devices.push(Device::ndarray());
    devices
}

#[test]
fn our_adamw_equals_burn_adamw_step_for_step() {
    for device in cpu_devices().into_iter().map(Device::autodiff) {
        let start = net(&device);
        let (mut ours, mut theirs) = (start.clone(), start.clone());
        let (lr, wd, eps) = (0.01, 0.1, 1e-5);
        let mut our_opt: ModuleOptimizer =
            ZooOptimizer::json(json!({"optimizer": "adamw", "weight_decay": wd, "eps": eps}))
                .unwrap()
                .into();
        let mut their_opt = AdamWConfig::new()
            .with_weight_decay(wd as f32)
            .with_epsilon(eps as f32)
            .init();
        for k in 0..20 {
            ours = step(&mut our_opt, ours, k, lr, &device);
            theirs = step(&mut their_opt, theirs, k, lr, &device);
            for (a, b) in values(&ours).iter().zip(values(&theirs)) {
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() <= 1e-6, "step {k}: {x} vs {y}");
                }
            }
        }
        let moved = values(&ours)
            .iter()
            .flatten()
            .zip(values(&start).iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(moved > 0.05, "the parameters moved ({moved})");
    }
}

#[test]
fn cpu_tensors_are_stepped_in_their_own_buffer() {
    for device in cpu_devices() {
        let zoo = ZooOptimizer::json(json!({"optimizer": "adam", "lr": 0.1})).unwrap();
        let mut state = None;
        let w: Vec<f32> = wiggles(7, 64 * 32);
        let mut tensor = Tensor::<2>::from_data(TensorData::new(w.clone(), [64, 32]), &device);
        for k in 0..3 {
            let before = {
                let data = tensor.into_data();
                let ptr = data.as_slice::<f32>().unwrap().as_ptr() as usize;
                tensor = Tensor::<2>::from_data(data, &device);
                ptr
            };
            let g: Vec<f32> = wiggles(8 + k, 64 * 32);
            let grad = Tensor::<2>::from_data(TensorData::new(g, [64, 32]), &device);
            let (stepped, next) = zoo.step(0.1, tensor, grad, state);
            state = next;
            let data = stepped.into_data();
            let after = data.as_slice::<f32>().unwrap().as_ptr() as usize;
            assert_eq!(after, before, "{device:?} step {k}: the same buffer");
            tensor = Tensor::<2>::from_data(data, &device);
        }
        let now = tensor.into_data().try_into_vec::<f32>().unwrap();
        assert!(
            now.iter().zip(&w).all(|(a, b)| a != b),
            "every element moved"
        );
        assert!(zoo.errors().take().is_empty());
    }
}

#[test]
fn records_resume_bit_identically() {
    let device = Device::flex().autodiff();
    let config = || {
        ZooOptimizer::json(json!({"optimizer": "ranger", "lr": 0.01}))
            .unwrap()
            .into()
    };
    let mut model = net(&device);
    let mut opt: ModuleOptimizer = config();
    for k in 0..6 {
        model = step(&mut opt, model, k, 0.01, &device);
    }
    let bytes = opt.into_bytes().unwrap();
    let saved_weights = values(&model);
    let mut resumed_model = model.clone();
    for k in 6..12 {
        model = step(&mut opt, model, k, 0.01, &device);
    }
    // A new optimizer loaded from the bytes, on the saved weights.
    let fresh: ModuleOptimizer = config();
    let mut resumed = fresh.from_bytes(bytes).unwrap();
    assert_eq!(values(&resumed_model), saved_weights);
    for k in 6..12 {
        resumed_model = step(&mut resumed, resumed_model, k, 0.01, &device);
    }
    let bits = |m: &Net| -> Vec<Vec<u32>> {
        values(m)
            .iter()
            .map(|v| v.iter().map(|x| x.to_bits()).collect())
            .collect()
    };
    assert_eq!(bits(&resumed_model), bits(&model));
    // And the record's file form.
    let path = std::env::temp_dir().join(format!("optim-burn-{}.bpk", std::process::id()));
    opt.save(&path).unwrap();
    let mut from_file: ModuleOptimizer = config();
    from_file = from_file.load(&path).unwrap();
    let a = step(&mut opt, model.clone(), 12, 0.01, &device);
    let b = step(&mut from_file, model, 12, 0.01, &device);
    assert_eq!(bits(&a), bits(&b));
    std::fs::remove_file(&path).ok();
}

#[test]
fn each_parameter_runs_its_own_instance_so_global_sums_are_per_tensor() {
    // Prodigy's d sums over every parameter it steps; in burn it sees one at a time, so a
    // two-parameter module must move each parameter as a Prodigy run on it alone would.
    let device = Device::flex();
    let zoo = ZooOptimizer::json(json!({"optimizer": "prodigy", "lr": 1.0})).unwrap();
    let alone = |seed: u64| -> Vec<f32> {
        let mut opt = optim_zoo::build::<f32>(&json!({"optimizer": "prodigy", "lr": 1.0})).unwrap();
        let w: Vec<f32> = wiggles(seed, 6);
        let mut params = optim_core::Params::new()
            .with("param", ndarray::Array1::from(w).into_dyn())
            .unwrap();
        for k in 0..4 {
            let g: Vec<f32> = wiggles(seed * 10 + k, 6);
            let grads = optim_core::Grads::new().with("param", ndarray::Array1::from(g));
            opt.step(&mut params, &grads).unwrap();
        }
        params.get("param").unwrap().iter().copied().collect()
    };
    for seed in [1u64, 2] {
        let mut state = None;
        let mut t = Tensor::<1>::from_data(TensorData::new(wiggles::<f32>(seed, 6), [6]), &device);
        for k in 0..4 {
            let g: Vec<f32> = wiggles(seed * 10 + k, 6);
            let g = Tensor::<1>::from_data(TensorData::new(g, [6]), &device);
            let (next_t, next_state) = zoo.step(1.0, t, g, state);
            (t, state) = (next_t, next_state);
        }
        let got = t.into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(got, alone(seed), "seed {seed}");
    }
}

#[test]
fn a_failed_step_leaves_the_parameter_and_its_state_and_reports_the_error() {
    let device = Device::flex();
    let zoo = ZooOptimizer::json(json!({"optimizer": "adam", "lr": 0.1}))
        .unwrap()
        .non_finite(NonFinitePolicy::Error)
        .unwrap();
    let errors = zoo.errors();
    let w: Vec<f32> = wiggles(3, 4);
    let t = Tensor::<1>::from_data(TensorData::new(w.clone(), [4]), &device);
    let g = Tensor::<1>::from_data(TensorData::new(vec![1.0f32; 4], [4]), &device);
    let (t, state) = zoo.step(0.1, t, g, None);
    let after_one = t.clone().into_data().try_into_vec::<f32>().unwrap();
    let exported = state.as_ref().unwrap().export_state();
    let bad = Tensor::<1>::from_data(TensorData::new(vec![1.0, f32::NAN, 1.0, 1.0], [4]), &device);
    let (t, state) = zoo.step(0.1, t, bad, state);
    assert_eq!(t.into_data().try_into_vec::<f32>().unwrap(), after_one);
    assert_eq!(state.unwrap().export_state(), exported);
    let reported = errors.take();
    assert_eq!(reported.len(), 1);
    assert!(reported[0].to_string().contains("param"), "{}", reported[0]);
    // A negative learning rate from burn: refused, nothing changes.
    let t = Tensor::<1>::from_data(TensorData::new(w.clone(), [4]), &device);
    let g = Tensor::<1>::from_data(TensorData::new(vec![1.0f32; 4], [4]), &device);
    let (t, _) = zoo.step(-1.0, t, g, None);
    assert_eq!(t.into_data().try_into_vec::<f32>().unwrap(), w);
    assert!(errors.take()[0].to_string().contains("lr"));
}

#[test]
fn a_parameter_without_a_gradient_is_left_alone() {
    let device = Device::flex().autodiff();
    let mut model = net(&device);
    let mut opt: ModuleOptimizer = ZooOptimizer::json(json!({"optimizer": "adamw"}))
        .unwrap()
        .into();
    model = step(&mut opt, model, 0, 0.01, &device);
    let before = values(&model);
    // fc2 is not in this loss: only fc1 gets gradients.
    let l = model.fc1.forward(batch(1, &device)).square().mean();
    let grads = GradientsParams::from_grads(l.backward(), &model);
    model = opt.step(0.01, model, grads);
    let after = values(&model);
    assert_ne!(after[0], before[0], "fc1 stepped");
    assert_eq!(after[2..], before[2..], "fc2 unchanged");
}

#[test]
fn a_partition_by_ndim_routes_matrices_to_muon() {
    let device = Device::flex().autodiff();
    let mut model = net(&device);
    let zoo = ZooOptimizer::json(json!({"optimizer": "partition", "routes": [
        {"select": {"ndim": 2}, "optimizer": {"optimizer": "muon", "lr": 0.02}},
        {"optimizer": {"optimizer": "adamw", "lr": 0.001}}
    ]}))
    .unwrap()
    .keep_config_lr();
    let errors = zoo.errors();
    let mut opt: ModuleOptimizer = zoo.into();
    let start = values(&model);
    model = step(&mut opt, model, 0, 123.0, &device);
    assert!(errors.take().is_empty());
    // Muon moves a matrix by lr·√max(1, rows/cols)·O, whatever burn's 123.
    let moved: f32 = values(&model)[0]
        .iter()
        .zip(&start[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(moved > 0.0 && moved < 0.1, "{moved}");
}

/// Records where each parameter's values live when `ModuleOptimizer` hands them over and
/// when our step gives them back.
#[derive(Clone)]
struct Probe {
    inner: ZooOptimizer,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(usize, usize)>>>,
}

impl Optimizer for Probe {
    type State<const D: usize> = optim_burn::ZooState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        let data = tensor.into_data();
        let ptr = data.as_slice::<f32>().unwrap().as_ptr() as usize;
        let (out, state) = self
            .inner
            .step(lr, Tensor::from_data(data, &device), grad, state);
        let data = out.into_data();
        let back = data.as_slice::<f32>().unwrap().as_ptr() as usize;
        self.seen.lock().unwrap().push((ptr, back));
        (Tensor::from_data(data, &device), state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, _device: &Device) -> Self::State<D> {
        state
    }
}

#[test]
fn inside_a_module_optimizer_each_parameter_keeps_its_buffer_through_the_step() {
    let device = Device::flex().autodiff();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let probe = Probe {
        inner: ZooOptimizer::json(json!({"optimizer": "adamw"})).unwrap(),
        seen: seen.clone(),
    };
    let mut opt: ModuleOptimizer = probe.into();
    let mut model = net(&device);
    for k in 0..3 {
        model = step(&mut opt, model, k, 0.01, &device);
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 12, "four parameters, three steps");
    // Our step gives back the buffer it was handed...
    assert!(
        seen.iter().all(|&(handed, back)| handed == back),
        "{seen:?}"
    );
    // ...and burn hands the same buffer over at the next step: no copy on the way through
    // the module, the forward and backward passes (nothing else holds the parameter).
    for k in 1..3 {
        for i in 0..4 {
            assert_eq!(
                seen[4 * k + i].0,
                seen[4 * (k - 1) + i].1,
                "step {k}, parameter {i}"
            );
        }
    }
}
