//! `Optimizer::elementwise`, which `#[optimizer]` derives from the equations and which
//! decides how `Sharded` splits the parameters.

use optim_core::Optimizer;
use optim_dist::{Comm, ShardRule, Sharded, ThreadComm};
use optim_macros::optimizer;
use std::sync::Arc;

/// Signum: element-wise.
#[optimizer(
    /// Learning rate.
    lr = 1e-3 in 0.0..,
)]
pub fn plain(w: Param, g: Grad, m: State) {
    m = 0.9 * m + 0.1 * g;
    w -= lr * sign(m);
}

/// Reads the shape: a 100-element parameter steps differently from its pieces.
#[optimizer(
    /// Learning rate.
    lr = 1e-3 in 0.0..,
)]
pub fn by_size(w: Param, g: Grad) {
    w -= lr * g / sqrt(numel);
}

/// A shape condition on a state.
#[optimizer(
    /// Learning rate.
    lr = 1e-3 in 0.0..,
)]
pub fn matrices_only(w: Param, g: Grad, #[when(ndim >= 2)] m: State) {
    if ndim >= 2 {
        m = m + g;
        w -= lr * m;
    } else {
        w -= lr * g;
    }
}

/// A per-tensor reduction.
#[optimizer(
    /// Learning rate.
    lr = 1e-3 in 0.0..,
)]
pub fn normalized(w: Param, g: Grad) {
    w -= lr * g / (norm(g) + 1e-8);
}

/// A row state.
#[optimizer(
    /// Learning rate.
    lr = 1e-3 in 0.0..,
)]
pub fn per_row(w: Param, g: Grad, r: RowState) {
    r = r + row_mean(g * g);
    w -= lr * g / sqrt(r + 1e-8);
}

#[test]
fn the_macro_derives_elementwise_from_the_equations() {
    let b = |opt: Box<dyn Optimizer<f32>>| opt.elementwise();
    assert!(b(Box::new(Plain::default().build::<f32>().unwrap())));
    assert!(!b(Box::new(BySize::default().build::<f32>().unwrap())));
    assert!(!b(Box::new(
        MatricesOnly::default().build::<f32>().unwrap()
    )));
    assert!(!b(Box::new(Normalized::default().build::<f32>().unwrap())));
    assert!(!b(Box::new(PerRow::default().build::<f32>().unwrap())));
}

/// The zoo's optimizers with per-tensor norms, factored states or matrix functions (the
/// README's table), and partitions (their routes select by shape), are not element-wise;
/// every other entry is. Prodigy is, with sums over every parameter.
#[test]
fn the_zoo_splits_as_its_equations_say() {
    let not_elementwise = ["lamb", "lars", "novograd", "adafactor", "came", "muon"];
    for name in optim_test_support::zoo_names() {
        let opt = optim_test_support::build::<f32>(&optim_test_support::config(name));
        assert_eq!(
            opt.elementwise(),
            !not_elementwise.contains(&name),
            "{name}"
        );
        assert_eq!(opt.global_sums(), name == "prodigy", "{name}");
        let comm: Arc<dyn Comm> = Arc::new(ThreadComm::group(1).unwrap().remove(0));
        let sharded = Sharded::new(opt, comm).unwrap();
        let want = if not_elementwise.contains(&name) {
            ShardRule::Whole
        } else {
            ShardRule::Flat
        };
        assert_eq!(sharded.rule(), want, "{name}");
    }
}

#[test]
fn flat_shards_are_refused_for_an_optimizer_that_is_not_elementwise() {
    let comm: Arc<dyn Comm> = Arc::new(ThreadComm::group(1).unwrap().remove(0));
    let lamb = optim_test_support::build::<f32>(&optim_test_support::config("lamb"));
    let err = Sharded::with_rule(lamb, comm, ShardRule::Flat).unwrap_err();
    assert!(
        err.to_string().contains("lamb is not element-wise"),
        "{err}"
    );
}

#[test]
fn a_partition_routing_prodigy_cannot_be_sharded() {
    let comm: Arc<dyn Comm> = Arc::new(ThreadComm::group(1).unwrap().remove(0));
    let p = optim_zoo::build::<f32>(&serde_json::json!({"optimizer": "partition", "routes": [
        {"optimizer": {"optimizer": "prodigy"}}]}))
    .unwrap();
    let err = Sharded::new(p, comm).unwrap_err();
    assert!(
        err.to_string().contains("inside a partition route"),
        "{err}"
    );
}
