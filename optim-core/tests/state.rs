//! State export/import for `Optim`: bit-exact resume, and every kind of bad state
//! rejected with nothing changed.

mod common;

use common::*;
use ndarray::{arr1, Array2};
use optim_core::optim::Optim;
use optim_core::state::GroupState;
use optim_core::*;
use optim_test_support::{bits, wiggly};

fn params<T: Scalar>() -> Params<T> {
    Params::new()
        .with("emb", wiggly::<T>(1, &[5, 3]))
        .unwrap()
        .with("w", wiggly::<T>(2, &[4]))
        .unwrap()
        .with("bias", wiggly::<T>(3, &[2]))
        .unwrap()
}

/// Gradients of step `s`: sparse rows with a repeat for `emb`, dense `w`, and `bias`
/// only on even steps.
fn grads<T: Scalar>(s: u64, sparse: bool) -> Grads<T> {
    let mut g = Grads::new().with("w", wiggly::<T>(100 + s, &[4]));
    if sparse {
        let values = wiggly::<T>(200 + s, &[3, 3]).into_dimensionality().unwrap();
        g.insert_rows("emb", vec![(s as usize) % 5, 3, (s as usize) % 5], values);
    } else {
        g.insert("emb", wiggly::<T>(200 + s, &[5, 3]));
    }
    if s.is_multiple_of(2) {
        g.insert("bias", wiggly::<T>(300 + s, &[2]));
    }
    g
}

/// Runs 3 steps, exports, imports into a fresh optimizer built from defaults, then runs 4
/// more steps on both: parameters and state must agree bit for bit.
fn resume_is_bit_exact<A: Algorithm, T: Scalar>(hyper: A, groups: &[Group], sparse: bool) {
    let mut p = params::<T>();
    let mut opt = Optim::<A, T>::new(hyper).unwrap();
    for g in groups {
        opt.add_group(g.clone()).unwrap();
    }
    for s in 0..3 {
        opt.step(&mut p, &grads(s, sparse)).unwrap();
    }
    let saved = opt.export_state();
    let mut resumed = Optim::<A, T>::new(A::default()).unwrap();
    resumed.import_state(&saved, &p).unwrap();
    assert_eq!(resumed.export_state(), saved, "export → import → export");

    let mut q = p.clone();
    for s in 3..7 {
        opt.step(&mut p, &grads(s, sparse)).unwrap();
        resumed.step(&mut q, &grads(s, sparse)).unwrap();
    }
    assert_eq!(bits(&p), bits(&q), "{}", A::NAME);
    assert_eq!(opt.export_state(), resumed.export_state());
    assert_eq!(resumed.step_count("bias"), Some(4));
    assert_eq!(resumed.step_count("w"), Some(7));
}

fn bias_group() -> Vec<Group> {
    vec![Group::name_contains(["bias"])
        .set("weight_decay", 0.0)
        .set("lr", 0.05)]
}

#[test]
fn resume_is_bit_exact_for_every_path() {
    let sgd = Sgd::default().lr(0.1).momentum(0.9).weight_decay(0.01);
    resume_is_bit_exact::<_, f32>(sgd.clone(), &bias_group(), false);
    resume_is_bit_exact::<_, f64>(sgd.clone(), &bias_group(), true);
    resume_is_bit_exact::<_, f32>(sgd, &[], true);
    let lazy = LazySgd::default().lr(0.1).momentum(0.9);
    resume_is_bit_exact::<_, f32>(lazy.clone(), &[], true);
    resume_is_bit_exact::<_, f64>(lazy, &bias_group(), true);
    let acc_group = vec![Group::names(["w"]).set("init", 2.0)];
    resume_is_bit_exact::<_, f32>(Acc::default(), &acc_group, false);
    resume_is_bit_exact::<_, f64>(Acc::default(), &acc_group, true);
}

#[test]
fn export_describes_everything() {
    let mut p = params::<f32>();
    let mut opt = Optim::<Acc, f32>::new(Acc::default()).unwrap();
    opt.add_group(Group::names(["w"]).set("init", 2.0)).unwrap();
    opt.step(&mut p, &grads(1, false)).unwrap();
    let s = opt.export_state();
    assert_eq!(
        (s.format_version, s.optimizer.as_str()),
        (STATE_FORMAT_VERSION, "acc")
    );
    assert_eq!(
        s.hyper,
        [
            ("lr".to_string(), HyperValue::Float(0.1)),
            ("init".to_string(), HyperValue::Float(0.25)),
            ("maximize".to_string(), HyperValue::Bool(false)),
        ]
    );
    assert_eq!(
        s.groups,
        [GroupState {
            selector: Selector::Names(vec!["w".into()]),
            overrides: vec![("init".into(), HyperValue::Float(2.0))],
        }]
    );
    assert_eq!(s.step, 1);
    assert!(s.inner.is_none());
    let names: Vec<_> = s.params.iter().map(|p| p.param.as_str()).collect();
    assert_eq!(names.len(), 2, "bias had no gradient: {names:?}");
    let w = s.params.iter().find(|p| p.param == "w").unwrap();
    assert_eq!(w.step, 1);
    assert_eq!(w.scalars, [("p".to_string(), 0.5)]);
    assert_eq!(w.tensors.len(), 1);
    assert_eq!(
        (w.tensors[0].name.as_str(), &w.tensors[0].shape[..]),
        ("s", &[4][..])
    );
    // s = init + g² for the group's init (2.0), in f32.
    let g = wiggly::<f32>(101, &[4]);
    let want: Vec<f32> = g.iter().map(|&g| 2.0 + g * g).collect();
    assert_eq!(w.tensors[0].data, TensorData::F32(want));
}

/// A trained SGD-with-momentum optimizer over `weight` [2, 3] and `bias` [2].
fn trained() -> (Params<f64>, Optim<Sgd, f64>) {
    let mut p = Params::new()
        .with("weight", wiggly::<f64>(1, &[2, 3]))
        .unwrap()
        .with("bias", wiggly::<f64>(2, &[2]))
        .unwrap();
    let mut opt = Optim::<Sgd, f64>::new(Sgd::default().lr(0.1).momentum(0.5)).unwrap();
    let g = Grads::new()
        .with("weight", wiggly::<f64>(3, &[2, 3]))
        .with("bias", wiggly::<f64>(4, &[2]));
    opt.step(&mut p, &g).unwrap();
    (p, opt)
}

fn expect_rejected(opt: &mut Optim<Sgd, f64>, p: &Params<f64>, state: &OptimizerState, want: &str) {
    let before = opt.export_state();
    let err = opt.import_state(state, p).unwrap_err();
    assert!(err.to_string().contains(want), "`{err}` lacks `{want}`");
    assert_eq!(opt.export_state(), before, "{want}");
}

#[test]
fn import_rejects_bad_state_and_changes_nothing() {
    let (p, mut opt) = trained();
    let good = opt.export_state();
    let weight = good
        .params
        .iter()
        .position(|s| s.param == "weight")
        .unwrap();
    let edit = |f: &dyn Fn(&mut OptimizerState)| {
        let mut s = good.clone();
        f(&mut s);
        s
    };
    let cases: Vec<(OptimizerState, &str)> = vec![
        (
            edit(&|s| s.format_version = 2),
            "state format version 2, but this build reads version 1",
        ),
        (
            edit(&|s| s.optimizer = "adam".into()),
            "the state is for optimizer `adam`, not `sgd`",
        ),
        (
            edit(&|s| s.params[weight].param = "wieght".into()),
            "state for parameter `wieght`, which is not among the parameters \
             (did you mean `weight`?)",
        ),
        (
            edit(&|s| s.params.push(s.params[weight].clone())),
            "parameter `weight` appears twice",
        ),
        (
            edit(&|s| s.params[weight].tensors[0].shape = vec![3, 2]),
            "`weight`: state tensor `b` has shape [3, 2], the parameter has shape [2, 3]",
        ),
        (
            edit(&|s| s.params[weight].tensors.clear()),
            "`weight`: state tensor `b` is missing",
        ),
        (
            edit(&|s| s.params[weight].tensors[0].name = "bb".into()),
            "`weight`: unknown state tensor `bb`; sgd has: b",
        ),
        (
            edit(&|s| {
                let t = s.params[weight].tensors[0].clone();
                s.params[weight].tensors.push(t);
            }),
            "`weight`: state tensor `b` appears twice",
        ),
        (
            edit(&|s| s.params[weight].tensors[0].data = TensorData::F64(vec![0.0; 5])),
            "`weight`: state tensor `b` has 5 values, its shape [2, 3] needs 6",
        ),
        (
            edit(&|s| s.hyper[1].1 = HyperValue::Float(0.0)),
            "`bias`: state tensor `b` is saved but disabled under the saved hyperparameters",
        ),
        (edit(&|s| s.params[weight].step = 0), "`weight`: step 0"),
        (
            edit(&|s| s.params[weight].scalars.push(("p".into(), 1.0))),
            "`weight`: unknown scalar state `p`",
        ),
        (
            edit(&|s| s.hyper[0].1 = HyperValue::Float(-1.0)),
            "sgd: invalid lr value -1: must be in [0, inf)",
        ),
        (
            edit(&|s| s.hyper.push(("nesterov".into(), HyperValue::Bool(true)))),
            "sgd: unknown hyperparameter `nesterov`",
        ),
        (
            edit(&|s| {
                s.groups.push(GroupState {
                    selector: Selector::Names(vec!["bias".into()]),
                    overrides: vec![("lrr".into(), HyperValue::Float(0.1))],
                })
            }),
            "sgd: unknown hyperparameter `lrr` (did you mean `lr`?)",
        ),
        (
            edit(&|s| s.inner = Some(Box::new(s.clone()))),
            "the state holds a wrapped optimizer's state, but sgd wraps nothing",
        ),
    ];
    for (state, want) in &cases {
        expect_rejected(&mut opt, &p, state, want);
    }

    // The optimizer still steps exactly like one that never saw the bad states.
    let (mut q, mut untouched) = trained();
    let mut p = p;
    let g = Grads::new().with("weight", wiggly::<f64>(5, &[2, 3]));
    opt.step(&mut p, &g).unwrap();
    untouched.step(&mut q, &g).unwrap();
    assert_eq!(bits(&p), bits(&q));
    assert_eq!(opt.export_state(), untouched.export_state());
}

#[test]
fn import_checks_shapes_against_the_parameters() {
    let (_, mut opt) = trained();
    let good = opt.export_state();
    let other = Params::new()
        .with("weight", wiggly::<f64>(1, &[3, 2]))
        .unwrap()
        .with("bias", wiggly::<f64>(2, &[2]))
        .unwrap();
    expect_rejected(
        &mut opt,
        &other,
        &good,
        "`weight`: state tensor `b` has shape [2, 3], the parameter has shape [3, 2]",
    );
}

#[test]
fn import_rejects_another_dtype() {
    let mut p32 = Params::new().with("w", arr1(&[1.0f32, 2.0])).unwrap();
    let mut opt32 = Optim::<Sgd, f32>::new(Sgd::default().momentum(0.5)).unwrap();
    opt32
        .step(&mut p32, &Grads::new().with("w", arr1(&[1.0f32, 1.0])))
        .unwrap();
    let saved = opt32.export_state();

    let p64 = Params::new().with("w", arr1(&[1.0f64, 2.0])).unwrap();
    let mut opt64 = Optim::<Sgd, f64>::new(Sgd::default()).unwrap();
    let err = opt64.import_state(&saved, &p64).unwrap_err();
    assert_eq!(
        err,
        OptimError::DTypeMismatch {
            name: "w".into(),
            expected: DType::F64,
            saved: DType::F32,
        }
    );
    assert_eq!(
        err.to_string(),
        "cannot load optimizer state for `w`: saved as f32, parameters are f64"
    );
    assert_eq!(opt64.step_count("w"), None);
    assert_eq!(
        Optimizer::hyper(&opt64, "momentum").unwrap(),
        HyperValue::Float(0.0)
    );
}

#[test]
fn import_requires_exactly_the_declared_scalars() {
    let mut p = Params::new().with("w", arr1(&[1.0, 2.0])).unwrap();
    let mut opt = Optim::<Acc, f64>::new(Acc::default()).unwrap();
    opt.step(&mut p, &Grads::new().with("w", arr1(&[1.0, 1.0])))
        .unwrap();
    let good = opt.export_state();
    for (edit, want) in [
        (0, "`w`: scalar state `p` is missing"),
        (1, "`w`: scalar state `p` appears twice"),
    ] {
        let mut s = good.clone();
        if edit == 0 {
            s.params[0].scalars.clear();
        } else {
            s.params[0].scalars.push(("p".into(), 0.25));
        }
        let err = opt.import_state(&s, &p).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
        assert_eq!(opt.export_state(), good);
    }
}

#[test]
fn import_replaces_everything() {
    let (p, opt) = trained();
    let saved = opt.export_state();
    let mut other = Optim::<Sgd, f64>::new(Sgd::default().lr(0.5)).unwrap();
    other
        .add_group(Group::names(["bias"]).set("lr", 0.25))
        .unwrap();
    let mut q = Params::new()
        .with("weight", Array2::<f64>::zeros((2, 3)))
        .unwrap()
        .with("bias", arr1(&[0.0, 0.0]))
        .unwrap()
        .with("extra", arr1(&[0.0]))
        .unwrap();
    other
        .step(&mut q, &Grads::new().with("extra", arr1(&[1.0])))
        .unwrap();
    other.import_state(&saved, &p).unwrap();
    assert_eq!(other.export_state(), saved);
    assert!(other.groups().is_empty());
    assert_eq!(other.step_count("extra"), None);
    assert_eq!(other.config().lr, 0.1);
}
