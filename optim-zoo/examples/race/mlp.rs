//! A two-layer perceptron, inputs → hidden (tanh) → classes, trained with softmax
//! cross-entropy. Forward and backward are written out with ndarray so every gradient
//! the optimizers see is visible here. Parameters follow PyTorch's `nn.Linear` layout
//! (`weight` is `[out, in]`) and names, so BERT's decay mask ("bias") applies as is.

use crate::rng::SplitMix64;
use crate::AnyResult;
use ndarray::{Array1, Array2, ArrayView2, Axis, Ix1, Ix2};
use optim_core::{Grads, Params};

/// Layer sizes.
#[derive(Clone, Copy, Debug)]
pub struct Mlp {
    /// Input features.
    pub inputs: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Output classes.
    pub classes: usize,
}

/// Mean cross-entropy and accuracy over a data set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean of −ln p(true class).
    pub loss: f64,
    /// Fraction of rows whose most likely class is the true one.
    pub accuracy: f64,
}

/// What the backward pass needs from the forward pass.
struct Forward {
    hidden: Array2<f32>,
    log_probs: Array2<f32>,
}

impl Mlp {
    /// Glorot-normal weights (std `sqrt(2 / (fan_in + fan_out))`, suited to tanh) and
    /// zero biases, drawn from `seed` so every optimizer starts from the same point.
    pub fn init(&self, seed: u64) -> AnyResult<Params<f32>> {
        let mut rng = SplitMix64::stream(seed, 2);
        let mut glorot = |fan_out: usize, fan_in: usize| {
            let std = (2.0 / (fan_in + fan_out) as f64).sqrt();
            Array2::from_shape_simple_fn((fan_out, fan_in), || (rng.normal() * std) as f32)
        };
        let fc1 = glorot(self.hidden, self.inputs);
        let fc2 = glorot(self.classes, self.hidden);
        Ok(Params::new()
            .with("fc1.weight", fc1)?
            .with("fc1.bias", Array1::<f32>::zeros(self.hidden))?
            .with("fc2.weight", fc2)?
            .with("fc2.bias", Array1::<f32>::zeros(self.classes))?)
    }

    fn forward(&self, params: &Params<f32>, x: ArrayView2<f32>) -> AnyResult<Forward> {
        let (w1, b1) = (matrix(params, "fc1.weight")?, vector(params, "fc1.bias")?);
        let (w2, b2) = (matrix(params, "fc2.weight")?, vector(params, "fc2.bias")?);
        let hidden = (x.dot(&w1.t()) + b1).mapv(f32::tanh);
        let mut logits = hidden.dot(&w2.t()) + b2;
        // log-softmax per row, shifted by the row maximum so exp never overflows.
        for mut row in logits.rows_mut() {
            let max = row.fold(f32::NEG_INFINITY, |m, &z| m.max(z));
            let log_sum = row.iter().map(|&z| (z - max).exp()).sum::<f32>().ln() + max;
            row.mapv_inplace(|z| z - log_sum);
        }
        Ok(Forward {
            hidden,
            log_probs: logits,
        })
    }

    /// Mean cross-entropy of the batch `(x, y)` and its gradient for every parameter.
    pub fn loss_and_grads(
        &self,
        params: &Params<f32>,
        x: ArrayView2<f32>,
        y: &[usize],
    ) -> AnyResult<(f64, Grads<f32>)> {
        let Forward { hidden, log_probs } = self.forward(params, x)?;
        let n = y.len() as f32;
        let loss = mean_nll(&log_probs, y);
        // d loss / d logits = (softmax − onehot) / n
        let mut d_logits = log_probs.mapv(f32::exp);
        for (mut row, &class) in d_logits.rows_mut().into_iter().zip(y) {
            row[class] -= 1.0;
        }
        d_logits /= n;
        let w2 = matrix(params, "fc2.weight")?;
        // tanh' = 1 − tanh²
        let d_hidden = d_logits.dot(&w2) * hidden.mapv(|h| 1.0 - h * h);
        let grads = Grads::new()
            .with("fc1.weight", d_hidden.t().dot(&x))
            .with("fc1.bias", d_hidden.sum_axis(Axis(0)))
            .with("fc2.weight", d_logits.t().dot(&hidden))
            .with("fc2.bias", d_logits.sum_axis(Axis(0)));
        Ok((loss, grads))
    }

    /// Loss and accuracy on `(x, y)` without gradients.
    pub fn evaluate(
        &self,
        params: &Params<f32>,
        x: ArrayView2<f32>,
        y: &[usize],
    ) -> AnyResult<Evaluation> {
        let log_probs = self.forward(params, x)?.log_probs;
        let correct = log_probs
            .rows()
            .into_iter()
            .zip(y)
            .filter(|(row, &class)| argmax(row.iter().copied()) == class)
            .count();
        Ok(Evaluation {
            loss: mean_nll(&log_probs, y),
            accuracy: correct as f64 / y.len().max(1) as f64,
        })
    }
}

fn mean_nll(log_probs: &Array2<f32>, y: &[usize]) -> f64 {
    let total: f64 = y
        .iter()
        .enumerate()
        .map(|(i, &c)| -f64::from(log_probs[[i, c]]))
        .sum();
    total / y.len().max(1) as f64
}

fn argmax(values: impl Iterator<Item = f32>) -> usize {
    values
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

fn matrix<'a>(params: &'a Params<f32>, name: &str) -> AnyResult<ArrayView2<'a, f32>> {
    let array = params
        .get(name)
        .ok_or_else(|| format!("missing parameter `{name}`"))?;
    Ok(array.view().into_dimensionality::<Ix2>()?)
}

fn vector<'a>(params: &'a Params<f32>, name: &str) -> AnyResult<ndarray::ArrayView1<'a, f32>> {
    let array = params
        .get(name)
        .ok_or_else(|| format!("missing parameter `{name}`"))?;
    Ok(array.view().into_dimensionality::<Ix1>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use optim_core::Grad;

    const TINY: Mlp = Mlp {
        inputs: 3,
        hidden: 4,
        classes: 3,
    };

    fn batch() -> (Array2<f32>, Vec<usize>) {
        let x = Array2::from_shape_fn((5, 3), |(i, j)| ((i * 3 + j) as f32 * 0.37).sin());
        (x, vec![0, 2, 1, 2, 0])
    }

    #[test]
    fn init_is_seeded_and_named_like_pytorch() {
        let a = TINY.init(1).unwrap();
        assert_eq!(a, TINY.init(1).unwrap());
        assert_ne!(a, TINY.init(2).unwrap());
        let names: Vec<&str> = a.names().collect();
        assert_eq!(names, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
        assert_eq!(a.get("fc1.weight").unwrap().shape(), [4, 3]);
        assert_eq!(a.get("fc2.bias").unwrap().shape(), [3]);
    }

    #[test]
    fn untrained_loss_is_near_ln_classes() {
        let params = TINY.init(0).unwrap();
        let (x, y) = batch();
        let eval = TINY.evaluate(&params, x.view(), &y).unwrap();
        assert!((eval.loss - 3f64.ln()).abs() < 0.7, "{}", eval.loss);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut params = TINY.init(5).unwrap();
        let (x, y) = batch();
        let (_, grads) = TINY.loss_and_grads(&params, x.view(), &y).unwrap();
        let names: Vec<String> = params.names().map(str::to_string).collect();
        for name in names {
            let Some(Grad::Dense(analytic)) = grads.get(&name).cloned() else {
                panic!("no dense gradient for {name}");
            };
            for i in 0..analytic.len() {
                let h = 1e-2f32;
                let mut loss_at = |delta: f32| {
                    let p = params.get_mut(&name).unwrap();
                    let slot = p.iter_mut().nth(i).unwrap();
                    *slot += delta;
                    let loss = TINY.evaluate(&params, x.view(), &y).unwrap().loss;
                    let p = params.get_mut(&name).unwrap();
                    *p.iter_mut().nth(i).unwrap() -= delta;
                    loss
                };
                let numeric = (loss_at(h) - loss_at(-h)) / (2.0 * h as f64);
                let exact = f64::from(*analytic.iter().nth(i).unwrap());
                assert!(
                    (numeric - exact).abs() < 2e-3,
                    "{name}[{i}]: {numeric} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn accuracy_counts_argmax_hits() {
        assert_eq!(argmax([0.1, 0.7, 0.2].into_iter()), 1);
        let params = TINY.init(0).unwrap();
        let (x, y) = batch();
        let eval = TINY.evaluate(&params, x.view(), &y).unwrap();
        assert!((0.0..=1.0).contains(&eval.accuracy));
    }

    #[test]
    fn missing_parameter_is_an_error() {
        let (x, y) = batch();
        let e = TINY
            .loss_and_grads(&Params::new(), x.view(), &y)
            .unwrap_err();
        assert_eq!(e.to_string(), "missing parameter `fc1.weight`");
    }
}
