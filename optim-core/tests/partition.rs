//! `Partition`: routing by selector, a fixed route per parameter, all-or-nothing steps,
//! hyperparameters, groups and policies through the routes, checked state import and
//! checkpoints. The values are small dyadic numbers, so expectations are exact by hand.

mod common;

use common::*;
use ndarray::{arr1, arr2, ArrayD};
use optim_core::checkpoint::{from_bytes, to_bytes};
use optim_core::optim::Optim;
use optim_core::wrapper::Wrapped;
use optim_core::*;
use optim_test_support::{bits, wiggly};

fn sgd(lr: f64) -> Box<dyn Optimizer<f64>> {
    Box::new(Optim::<Sgd, f64>::new(Sgd::default().lr(lr)).unwrap())
}

fn momentum(lr: f64, mu: f64) -> Box<dyn Optimizer<f64>> {
    Box::new(Optim::<Sgd, f64>::new(Sgd::default().lr(lr).momentum(mu)).unwrap())
}

fn acc() -> Box<dyn Optimizer<f64>> {
    Box::new(Optim::<Acc, f64>::new(Acc::default()).unwrap())
}

fn values(params: &Params<f64>, name: &str) -> Vec<f64> {
    params.get(name).unwrap().iter().copied().collect()
}

/// `enc.w` (2-D, name has "enc"), `dec.w` (2-D) and `enc.b` (1-D).
fn three_params() -> Params<f64> {
    Params::new()
        .with("enc.w", arr2(&[[1.0, 2.0], [3.0, 4.0]]))
        .unwrap()
        .with("dec.w", arr2(&[[1.0, 1.0]]))
        .unwrap()
        .with("enc.b", arr1(&[1.0, -1.0]))
        .unwrap()
}

fn ones_like(params: &Params<f64>) -> Grads<f64> {
    let mut g = Grads::new();
    for (name, a) in params.iter() {
        g.insert(name, ArrayD::from_elem(a.shape(), 1.0));
    }
    g
}

/// Route 0: 2-D and named `enc` (lr 0.5); route 1: 2-D (lr 0.25); route 2: the rest
/// (lr 0.125).
fn three_routes() -> Partition<f64> {
    Partition::new(vec![
        Route::new(RouteSelect::all().ndim(2).name_contains(["enc"]), sgd(0.5)),
        Route::new(RouteSelect::all().ndim(2), sgd(0.25)),
        Route::all(sgd(0.125)),
    ])
    .unwrap()
}

/// Everything observable about an optimizer's state.
fn fingerprint(opt: &dyn Optimizer<f64>) -> Vec<u8> {
    to_bytes(&opt.export_state()).unwrap()
}

#[test]
fn each_parameter_goes_to_the_first_route_whose_every_condition_holds() {
    let mut p = three_params();
    let mut opt = three_routes();
    let ones = ones_like(&p);

    opt.step(&mut p, &ones).unwrap();
    assert_eq!(values(&p, "enc.w"), [0.5, 1.5, 2.5, 3.5]); // lr 0.5
    assert_eq!(values(&p, "dec.w"), [0.75, 0.75]); // lr 0.25: 2-D without "enc"
    assert_eq!(values(&p, "enc.b"), [0.875, -1.125]); // lr 0.125: "enc" but 1-D
    assert_eq!(
        ["enc.w", "dec.w", "enc.b"].map(|n| opt.route_of(n)),
        [Some(0), Some(1), Some(2)]
    );
    assert_eq!(opt.step_count("dec.w"), Some(1));
    assert_eq!(opt.steps(), 1);
    assert_eq!(opt.name(), "partition");
}

#[test]
fn exact_names_select_too() {
    let mut p = three_params();
    let mut opt = Partition::new(vec![
        Route::new(RouteSelect::all().names(["enc.b"]), sgd(0.5)),
        Route::all(sgd(0.0)),
    ])
    .unwrap();
    let ones = ones_like(&p);

    opt.step(&mut p, &ones).unwrap();
    assert_eq!(values(&p, "enc.b"), [0.5, -1.5]);
    assert_eq!(values(&p, "dec.w"), [1.0, 1.0]);
}

#[test]
fn a_parameter_no_route_takes_is_an_error_naming_it_and_nothing_changes() {
    let mut p = three_params();
    let mut opt = Partition::new(vec![Route::new(RouteSelect::all().ndim(2), sgd(0.5))]).unwrap();
    let g = ones_like(&p);
    let want = OptimError::UnroutedParam {
        name: "enc.b".into(),
        shape: vec![2],
    };
    assert_eq!(opt.check(&p, &g), Err(want.clone()));
    let before = p.clone();
    assert_eq!(opt.step(&mut p, &g), Err(want.clone()));
    assert_eq!(p, before);
    assert_eq!((opt.steps(), opt.route_of("enc.w")), (0, None));
    let msg = want.to_string();
    assert!(
        msg.contains("`enc.b`") && msg.contains("catch-all route"),
        "{msg}"
    );
    // A parameter without a gradient still needs a route.
    let only_w = Grads::new().with("enc.w", arr2(&[[1.0, 1.0], [1.0, 1.0]]));
    assert!(matches!(
        opt.step(&mut p, &only_w),
        Err(OptimError::UnroutedParam { .. })
    ));
    assert_eq!(p, before);
}

#[test]
fn a_route_is_fixed_at_the_first_step_and_never_silently_moves() {
    let mut p = Params::new().with("x", arr2(&[[1.0, 2.0]])).unwrap();
    let mut opt = Partition::new(vec![
        Route::new(RouteSelect::all().ndim(2), momentum(0.5, 0.5)),
        Route::all(sgd(0.5)),
    ])
    .unwrap();
    let ones = ones_like(&p);

    opt.step(&mut p, &ones).unwrap();
    assert_eq!(opt.route_of("x"), Some(0));
    // `x` becomes 1-D: the selectors would now send it to route 1, but it stays with
    // route 0, whose state no longer fits it.
    *p.get_mut("x").unwrap() = arr1(&[1.0, 2.0]).into_dyn();
    let ones = ones_like(&p);

    let err = opt.step(&mut p, &ones).unwrap_err();
    assert!(
        matches!(&err, OptimError::BadState(m) if m.contains("`x` has shape [2]")),
        "{err}"
    );
    assert_eq!(opt.route_of("x"), Some(0));
    assert_eq!(values(&p, "x"), [1.0, 2.0]);
}

#[test]
fn a_parameter_is_fixed_to_its_route_even_without_a_gradient() {
    let mut p = three_params();
    let mut opt = three_routes();
    opt.step(&mut p, &Grads::new()).unwrap();
    assert_eq!(opt.route_of("enc.b"), Some(2));
    assert_eq!(opt.step_count("enc.b"), None); // no gradient yet: no state
    assert_eq!(p, three_params());
}

#[test]
fn a_failed_step_leaves_every_parameter_and_every_route_as_it_was() {
    let mut p = three_params();
    let mut opt = Partition::new(vec![
        Route::new(RouteSelect::all().ndim(2), momentum(0.5, 0.5)),
        Route::all(momentum(0.25, 0.5)),
    ])
    .unwrap();
    let ones = ones_like(&p);

    opt.step(&mut p, &ones).unwrap();
    let (params_before, state_before) = (p.clone(), fingerprint(&opt));
    let good = ones_like(&p);
    // A bad gradient in each route in turn, the other route's gradients good.
    for (bad_name, bad) in [
        ("enc.b", arr1(&[1.0, 1.0, 1.0]).into_dyn()),
        ("enc.w", arr1(&[1.0]).into_dyn()),
        ("dec.w", arr1(&[1.0]).into_dyn()),
    ] {
        let mut g = good.clone();
        g.insert(bad_name, bad);
        let err = opt.step(&mut p, &g).unwrap_err();
        assert!(
            matches!(&err, OptimError::ShapeMismatch { name, .. } if name == bad_name),
            "{err}"
        );
        assert_eq!(opt.check(&p, &g), Err(err));
        assert_eq!(p, params_before, "{bad_name}");
        assert_eq!(fingerprint(&opt), state_before, "{bad_name}");
    }
    // A gradient for a parameter that does not exist, with a suggestion.
    let g = good.clone().with("enc.bb", arr1(&[1.0]));
    assert_eq!(
        opt.step(&mut p, &g),
        Err(OptimError::UnknownParam {
            name: "enc.bb".into(),
            suggestion: Some("enc.b".into())
        })
    );
    assert_eq!(
        (p.clone(), fingerprint(&opt)),
        (params_before, state_before)
    );
    assert_eq!(opt.steps(), 1);
    // The next good step runs as if the failures had not happened: b = 0.5·1 + 1.
    opt.step(&mut p, &good).unwrap();
    assert_eq!(
        values(&p, "enc.b"),
        [1.0 - 0.25 - 0.375, -1.0 - 0.25 - 0.375]
    );
}

#[test]
fn plain_names_set_every_route_that_has_them_and_indexed_names_one() {
    let mut opt = Partition::new(vec![
        Route::new(RouteSelect::all().ndim(2), sgd(0.5)),
        Route::all(acc()),
    ])
    .unwrap();
    assert!(opt.hyper_specs().is_empty());
    opt.set_hyper("lr", HyperValue::Float(0.25)).unwrap();
    assert_eq!(opt.hyper("lr"), Ok(HyperValue::Float(0.25)));
    assert_eq!(opt.hyper("routes.0.lr"), Ok(HyperValue::Float(0.25)));
    assert_eq!(opt.hyper("routes.1.lr"), Ok(HyperValue::Float(0.25)));
    // Only Acc has `init`.
    opt.set_hyper("init", HyperValue::Float(1.0)).unwrap();
    assert_eq!(opt.hyper("routes.1.init"), Ok(HyperValue::Float(1.0)));
    // One route only.
    opt.set_hyper("routes.1.lr", HyperValue::Float(0.125))
        .unwrap();
    assert_eq!(opt.hyper("routes.0.lr"), Ok(HyperValue::Float(0.25)));
    let err = opt.hyper("lr").unwrap_err().to_string();
    assert!(
        err.contains("route 0: 0.25")
            && err.contains("route 1: 0.125")
            && err.contains("routes.<i>.lr"),
        "{err}"
    );
    // A name no route has: the closest name of any route is suggested.
    match opt.set_hyper("momentun", HyperValue::Float(0.5)) {
        Err(OptimError::UnknownHyper {
            optimizer,
            suggestion,
            valid,
            ..
        }) => {
            assert_eq!(optimizer, "partition");
            assert_eq!(suggestion.as_deref(), Some("momentum"));
            assert!(valid.contains(&"init".to_string()) && valid.contains(&"momentum".to_string()));
        }
        other => panic!("{other:?}"),
    }
    // Out of range for the routes: nothing changes.
    assert!(matches!(
        opt.set_hyper("lr", HyperValue::Float(-1.0)),
        Err(OptimError::HyperRange { .. })
    ));
    assert_eq!(opt.hyper("routes.0.lr"), Ok(HyperValue::Float(0.25)));
    assert_eq!(opt.hyper("routes.1.lr"), Ok(HyperValue::Float(0.125)));
    // Bad route addresses.
    for name in ["routes.2.lr", "routes.x.lr", "routes.0", "routes.0."] {
        let err = opt.set_hyper(name, HyperValue::Float(0.1)).unwrap_err();
        assert!(err.to_string().contains("from 0 to 1"), "{name}: {err}");
    }
    // A route's own error says which route.
    let err = opt
        .set_hyper("routes.1.lrr", HyperValue::Float(0.1))
        .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "partition route 1 (acc): unknown hyperparameter `lrr` (did you mean `lr`?)"
        ),
        "{err}"
    );
}

#[test]
fn a_schedule_drives_every_route() {
    let mut opt = Partition::new(vec![
        Route::new(RouteSelect::all().ndim(2), sgd(0.5)),
        Route::all(acc()),
    ])
    .unwrap();
    let schedule = schedule::Schedule::linear_warmup_decay(1.0, 4, 8).unwrap();
    assert_eq!(schedule.apply(2, &mut opt), Ok(0.5));
    assert_eq!(opt.hyper("routes.0.lr"), Ok(HyperValue::Float(0.5)));
    assert_eq!(opt.hyper("routes.1.lr"), Ok(HyperValue::Float(0.5)));
}

#[test]
fn nested_partitions_address_routes_by_path() {
    let inner = Partition::new(vec![
        Route::new(RouteSelect::all().name_contains(["enc"]), sgd(0.5)),
        Route::all(sgd(0.5)),
    ])
    .unwrap();
    let mut opt = Partition::new(vec![
        Route::new(RouteSelect::all().ndim(2), Box::new(inner)),
        Route::all(sgd(0.5)),
    ])
    .unwrap();
    opt.set_hyper("routes.0.routes.1.lr", HyperValue::Float(0.25))
        .unwrap();
    let mut p = three_params();
    let ones = ones_like(&p);

    opt.step(&mut p, &ones).unwrap();
    assert_eq!(values(&p, "enc.w"), [0.5, 1.5, 2.5, 3.5]);
    assert_eq!(values(&p, "dec.w"), [0.75, 0.75]);
    assert_eq!(values(&p, "enc.b"), [0.5, -1.5]);
    // The inner routes disagree on `lr`: reading it is an error naming the path, setting
    // it reaches every route at every level.
    let err = opt.hyper("lr").unwrap_err().to_string();
    assert!(
        err.contains("partition route 0: partition: the routes disagree on `lr` (route 0: 0.5, route 1: 0.25)"),
        "{err}"
    );
    opt.set_hyper("lr", HyperValue::Float(0.125)).unwrap();
    for path in [
        "routes.0.routes.0.lr",
        "routes.0.routes.1.lr",
        "routes.1.lr",
        "lr",
    ] {
        assert_eq!(opt.hyper(path), Ok(HyperValue::Float(0.125)), "{path}");
    }
}

#[test]
fn groups_go_to_every_route_that_accepts_them() {
    let mut opt = Partition::new(vec![
        Route::new(RouteSelect::all().ndim(2), sgd(0.5)),
        Route::all(acc()),
    ])
    .unwrap();
    // Only Acc has `init`: the group reaches route 1 alone. Acc: p = 1/2 at t = 1,
    // s = init + g² = 4, w ← w − lr·p·g/√s = w − 0.1·0.5·1/2.
    opt.add_group(Group::name_contains(["enc"]).set("init", 3.0))
        .unwrap();
    // `lr` is everyone's.
    opt.add_group(Group::names(["dec.w"]).set("lr", 0.25))
        .unwrap();
    let mut p = three_params();
    let ones = ones_like(&p);

    opt.step(&mut p, &ones).unwrap();
    assert_eq!(values(&p, "enc.w"), [0.5, 1.5, 2.5, 3.5]);
    assert_eq!(values(&p, "dec.w"), [0.75, 0.75]);
    assert_eq!(values(&p, "enc.b"), [1.0 - 0.025, -1.0 - 0.025]);
    // A group no route accepts: an error giving every route's reason.
    let before = fingerprint(&opt);
    let err = opt
        .add_group(Group::names(["enc.w"]).set("betta", 0.5))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("no route of the partition accepts it")
            && msg.contains("route 0 (sgd)")
            && msg.contains("route 1 (acc)"),
        "{msg}"
    );
    assert_eq!(fingerprint(&opt), before);
}

#[test]
fn bad_routes_are_refused_when_the_partition_is_built() {
    let err = |routes: Vec<Route<f64>>| Partition::new(routes).unwrap_err().to_string();
    assert!(err(vec![]).contains("at least one route"));
    let unreachable = err(vec![
        Route::all(sgd(0.1)),
        Route::new(RouteSelect::all().ndim(2), sgd(0.1)),
    ]);
    assert!(
        unreachable.contains("route 1 can never be used"),
        "{unreachable}"
    );
    let empty = err(vec![Route::new(
        RouteSelect::all().name_contains(Vec::<String>::new()),
        sgd(0.1),
    )]);
    assert!(
        empty.contains("route 0: bad selector: it lists no name parts"),
        "{empty}"
    );
    let blank = err(vec![Route::new(
        RouteSelect::all().name_contains([""]),
        sgd(0.1),
    )]);
    assert!(blank.contains("empty name part"), "{blank}");
}

#[test]
fn non_finite_policies_reach_every_route_and_skips_are_reported_in_gradient_order() {
    let mut opt = Partition::new(vec![
        Route::new(RouteSelect::all().ndim(2), sgd(0.5)),
        Route::all(sgd(0.5)),
    ])
    .unwrap();
    opt.set_non_finite_policy(NonFinitePolicy::SkipParam)
        .unwrap();
    assert_eq!(opt.non_finite_policy(), NonFinitePolicy::SkipParam);
    for route in opt.routes() {
        assert_eq!(
            route.optimizer().non_finite_policy(),
            NonFinitePolicy::SkipParam
        );
    }
    let mut p = three_params();
    // Gradient order: enc.b (route 1), dec.w (route 0), enc.w (route 0).
    let g = Grads::new()
        .with("enc.b", arr1(&[f64::NAN, 1.0]))
        .with("dec.w", arr2(&[[1.0, 1.0]]))
        .with("enc.w", arr2(&[[1.0, f64::INFINITY], [1.0, 1.0]]));
    opt.step(&mut p, &g).unwrap();
    assert_eq!(opt.skipped(), ["enc.b", "enc.w"]);
    assert_eq!(values(&p, "dec.w"), [0.5, 0.5]);
    assert_eq!(values(&p, "enc.b"), [1.0, -1.0]);
    assert_eq!(
        (opt.step_count("enc.b"), opt.step_count("dec.w")),
        (None, Some(1))
    );
    let ones = ones_like(&p);

    opt.step(&mut p, &ones).unwrap();
    assert!(opt.skipped().is_empty());

    opt.set_non_finite_policy(NonFinitePolicy::Error).unwrap();
    let (params_before, state_before) = (p.clone(), fingerprint(&opt));
    let err = opt.step(&mut p, &g).unwrap_err();
    assert!(matches!(err, OptimError::NonFiniteGrad { .. }), "{err}");
    assert_eq!((p, fingerprint(&opt)), (params_before, state_before));
}

/// SGD behind the trait's provided methods, with two quirks routes must cope with: it
/// refuses every non-finite policy but `Propagate` (the provided default), and its
/// evaluation weights are twice its parameters (so that they differ from them).
#[derive(Clone, Debug)]
struct Quirky(Optim<Sgd, f64>);

impl Optimizer<f64> for Quirky {
    fn name(&self) -> &str {
        "quirky"
    }
    fn hyper_specs(&self) -> &'static [HyperSpec] {
        self.0.hyper_specs()
    }
    fn hyper(&self, name: &str) -> Result<HyperValue> {
        self.0.hyper(name)
    }
    fn set_hyper(&mut self, name: &str, value: HyperValue) -> Result<()> {
        self.0.set_hyper(name, value)
    }
    fn add_group(&mut self, group: Group) -> Result<()> {
        self.0.add_group(group)
    }
    fn check(&self, params: &Params<f64>, grads: &Grads<f64>) -> Result<()> {
        self.0.check(params, grads)
    }
    fn step(&mut self, params: &mut Params<f64>, grads: &Grads<f64>) -> Result<()> {
        self.0.step(params, grads)
    }
    fn step_count(&self, name: &str) -> Option<u64> {
        self.0.step_count(name)
    }
    fn export_state(&self) -> OptimizerState {
        self.0.export_state()
    }
    fn import_state(&mut self, state: &OptimizerState, params: &Params<f64>) -> Result<()> {
        self.0.import_state(state, params)
    }
    fn boxed_clone(&self) -> Box<dyn Optimizer<f64>> {
        Box::new(self.clone())
    }
    /// Evaluation weights twice the parameters, to tell them apart.
    fn eval_params_into(&self, params: &Params<f64>, out: &mut Params<f64>) -> Result<()> {
        out.copy_from(params);
        for (_, a) in out.iter_mut() {
            a.mapv_inplace(|x| 2.0 * x);
        }
        Ok(())
    }
}

#[test]
fn a_policy_one_route_refuses_changes_no_route() {
    let refusing = Quirky(Optim::new(Sgd::default()).unwrap());
    let mut opt = Partition::new(vec![
        Route::new(RouteSelect::all().ndim(2), sgd(0.5)),
        Route::all(Box::new(refusing)),
    ])
    .unwrap();
    let err = opt
        .set_non_finite_policy(NonFinitePolicy::SkipParam)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("partition route 1: quirky does not support the non-finite policy"),
        "{err}"
    );
    assert_eq!(
        opt.routes()[0].optimizer().non_finite_policy(),
        NonFinitePolicy::Propagate
    );
}

#[test]
fn evaluation_weights_come_from_each_parameters_route() {
    let doubling = Quirky(Optim::new(Sgd::default().lr(0.5)).unwrap());
    let opt = Partition::new(vec![
        Route::new(RouteSelect::all().ndim(2), sgd(0.5)),
        Route::all(Box::new(doubling)),
    ])
    .unwrap();
    let p = three_params();
    let eval = opt.eval_params(&p).unwrap();
    assert_eq!(
        eval.names().collect::<Vec<_>>(),
        ["enc.w", "dec.w", "enc.b"]
    );
    assert_eq!(values(&eval, "enc.w"), [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(values(&eval, "dec.w"), [1.0, 1.0]);
    assert_eq!(values(&eval, "enc.b"), [2.0, -2.0]);
    // Into an output of the right layout: overwritten in place.
    let mut out = eval.clone();
    out.get_mut("enc.b").unwrap().fill(7.0);
    let place = out.get("enc.b").unwrap().as_ptr();
    opt.eval_params_into(&p, &mut out).unwrap();
    assert_eq!(out, eval);
    assert_eq!(out.get("enc.b").unwrap().as_ptr(), place);
    // An unroutable parameter is an error here too.
    let lone = Partition::new(vec![Route::new(RouteSelect::all().ndim(2), sgd(0.5))]).unwrap();
    assert!(matches!(
        lone.eval_params(&p),
        Err(OptimError::UnroutedParam { .. })
    ));
}

/// A partition of `momentum` and `acc` after two steps on `three_params`.
fn trained() -> (Params<f64>, Partition<f64>) {
    let mut p = three_params();
    let mut opt = Partition::new(vec![
        Route::new(
            RouteSelect::all().ndim(2).name_contains(["enc"]),
            momentum(0.5, 0.5),
        ),
        Route::all(acc()),
    ])
    .unwrap();
    for s in 0..2 {
        let mut g = Grads::new();
        for (name, a) in p.iter() {
            g.insert(name, wiggly::<f64>(10 + s, a.shape()));
        }
        opt.step(&mut p, &g).unwrap();
    }
    (p, opt)
}

fn fresh() -> Partition<f64> {
    Partition::new(vec![
        Route::new(
            RouteSelect::all().ndim(2).name_contains(["enc"]),
            momentum(0.1, 0.0),
        ),
        Route::all(acc()),
    ])
    .unwrap()
}

#[test]
fn exported_state_nests_each_route_with_its_parameters() {
    let (p, opt) = trained();
    let state = opt.export_state();
    assert_eq!((state.optimizer.as_str(), state.step), ("partition", 2));
    assert!(state.params.is_empty() && state.hyper.is_empty() && state.inner.is_none());
    assert_eq!(state.routes.len(), 2);
    assert_eq!(state.routes[0].params, ["enc.w"]);
    assert_eq!(state.routes[1].params, ["dec.w", "enc.b"]);
    assert_eq!(state.routes[0].state.optimizer, "sgd");
    assert_eq!(state.routes[1].state.optimizer, "acc");
    assert_eq!(
        state.routes[0].select,
        RouteSelect::all().ndim(2).name_contains(["enc"])
    );

    // Imported into a fresh partition (other hyperparameters: the state's win), the two
    // continue bit for bit.
    let mut resumed = fresh();
    resumed.import_state(&state, &p).unwrap();
    assert_eq!(resumed.export_state(), state);
    assert_eq!(resumed.hyper("routes.0.lr"), Ok(HyperValue::Float(0.5)));
    let (mut a, mut b) = (p.clone(), p);
    let mut opt = opt;
    for s in 2..5 {
        let g = ones_like(&a).with("enc.w", wiggly::<f64>(50 + s, &[2, 2]));
        opt.step(&mut a, &g).unwrap();
        resumed.step(&mut b, &g).unwrap();
        assert_eq!(bits(&a), bits(&b), "step {s}");
    }
    assert_eq!(opt.export_state(), resumed.export_state());
}

/// A change that spoils exported state.
type Breakage = fn(&mut OptimizerState);

#[test]
fn importing_checks_every_part_first_and_changes_nothing_on_error() {
    let (p, opt) = trained();
    let good = opt.export_state();
    let cases: Vec<(Breakage, &str)> = vec![
        (
            |s| {
                s.routes.pop();
            },
            "the state has 1 routes, this partition 2",
        ),
        (
            |s| s.routes[1].state.optimizer = "sgd".into(),
            "route 1: the state is for optimizer `sgd`, this route's optimizer is `acc`",
        ),
        (
            |s| s.routes[0].select = RouteSelect::all().ndim(2),
            "route 0 takes ndim = 2 in the state, ndim = 2, name contains \"enc\" in this partition",
        ),
        (
            |s| s.routes[1].params.push("dec.ww".into()),
            "route 1: parameter `dec.ww` is not among the parameters (did you mean `dec.w`?)",
        ),
        (
            |s| s.routes[1].params.push("enc.w".into()),
            "parameter `enc.w` is assigned to both route 0 and route 1",
        ),
        (
            |s| s.routes[0].params.clear(),
            "route 0 holds state for parameter `enc.w`, which the state does not assign to it",
        ),
        (
            |s| s.params = s.routes[0].state.params.clone(),
            "the state gives the partition per-parameter state of its own",
        ),
        (
            |s| s.routes[1].state.params[0].tensors[0].shape = vec![9],
            "route 1: ",
        ),
        (
            |s| s.optimizer = "lookahead".into(),
            "the state is for optimizer `lookahead`, not `partition`",
        ),
    ];
    for (break_it, want) in cases {
        let mut bad = good.clone();
        break_it(&mut bad);
        let mut target = fresh();
        let mut q = three_params();
        let ones = ones_like(&q);

        target.step(&mut q, &ones).unwrap();
        let before = fingerprint(&target);
        let err = target.import_state(&bad, &p).unwrap_err().to_string();
        assert!(err.contains(want), "want {want:?}, got {err:?}");
        assert_eq!(fingerprint(&target), before, "{want}");
    }
    // A partition's state into a plain optimizer, and routes in a plain one's state.
    let mut plain = Optim::<Sgd, f64>::new(Sgd::default()).unwrap();
    assert!(plain.import_state(&good, &p).is_err());
    let mut sneaky = plain.export_state();
    sneaky.routes = good.routes.clone();
    let err = plain.import_state(&sneaky, &p).unwrap_err().to_string();
    assert!(
        err.contains("holds the routes of a partition, but sgd has no routes"),
        "{err}"
    );
}

#[test]
fn checkpoints_store_routes_under_their_index_and_read_back_exactly() {
    let (_, opt) = trained();
    let state = opt.export_state();
    let bytes = to_bytes(&state).unwrap();
    assert_eq!(from_bytes(&bytes).unwrap(), state);
    // The tensor names Python sees.
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let mut names: Vec<&str> = header
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "__metadata__")
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "route/0/param/enc.w/b",
            "route/1/param/dec.w/s",
            "route/1/param/enc.b/s"
        ]
    );
    let meta: serde_json::Value =
        serde_json::from_str(header["__metadata__"]["state"].as_str().unwrap()).unwrap();
    assert_eq!(
        meta["routes"][0]["select"],
        serde_json::json!({"ndim": 2, "name_contains": ["enc"]})
    );
    assert_eq!(meta["routes"][1]["select"], serde_json::json!({}));
    assert_eq!(
        meta["routes"][1]["params"],
        serde_json::json!(["dec.w", "enc.b"])
    );
    // A plain optimizer's file has no `routes` entry at all.
    let plain = Optim::<Sgd, f64>::new(Sgd::default()).unwrap();
    let plain_bytes = to_bytes(&plain.export_state()).unwrap();
    assert!(!String::from_utf8_lossy(&plain_bytes).contains("routes"));
}

#[test]
fn lookahead_around_a_partition_and_a_partition_of_lookaheads() {
    // Lookahead (k 1, α 0.5) around a partition of two SGDs: w = 1, g = 1, lr 0.5 and
    // 0.25: fast 0.5 and 0.75, slow 1 → 0.75 and 0.875.
    let partition = Partition::new(vec![
        Route::new(RouteSelect::all().ndim(2), sgd(0.5)),
        Route::all(sgd(0.25)),
    ])
    .unwrap();
    let mut outer = Wrapped::new(Lookahead { k: 1, alpha: 0.5 }, Box::new(partition)).unwrap();
    let mut p = Params::new()
        .with("m", arr2(&[[1.0]]))
        .unwrap()
        .with("v", arr1(&[1.0]))
        .unwrap();
    let ones = ones_like(&p);

    outer.step(&mut p, &ones).unwrap();
    assert_eq!(
        (values(&p, "m"), values(&p, "v")),
        (vec![0.75], vec![0.875])
    );
    let state = outer.export_state();
    let bytes = to_bytes(&state).unwrap();
    assert_eq!(from_bytes(&bytes).unwrap(), state);

    // A Lookahead route syncs its parameters every k steps, with or without a gradient.
    let inner = Box::new(Optim::<Sgd, f64>::new(Sgd::default().lr(0.5)).unwrap());
    let route = Wrapped::new(Lookahead { k: 2, alpha: 0.5 }, inner).unwrap();
    let mut opt = Partition::new(vec![
        Route::new(RouteSelect::all().ndim(2), Box::new(route)),
        Route::all(sgd(0.5)),
    ])
    .unwrap();
    let mut p = Params::new()
        .with("m", arr2(&[[1.0]]))
        .unwrap()
        .with("v", arr1(&[1.0]))
        .unwrap();
    let ones = ones_like(&p);

    opt.step(&mut p, &ones).unwrap(); // m fast 0.5, v 0.5
    opt.step(&mut p, &Grads::new().with("v", arr1(&[1.0])))
        .unwrap(); // sync m: 1 + 0.5·(0.5 − 1)
    assert_eq!((values(&p, "m"), values(&p, "v")), (vec![0.75], vec![0.0]));
    let bytes = to_bytes(&opt.export_state()).unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("route/0/param/m/slow"));
    assert_eq!(from_bytes(&bytes).unwrap(), opt.export_state());
}
