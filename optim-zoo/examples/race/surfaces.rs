//! 2-D test functions with analytic gradients, and the path an optimizer takes on them.

use crate::lineup::Family;
use crate::AnyResult;
use ndarray::array;
use optim_core::{Grads, Optimizer, Params};

/// A function of `(x, y)` to minimize, with where to start and what to draw.
#[derive(Clone, Copy, Debug)]
pub struct Surface {
    /// File-name friendly name.
    pub name: &'static str,
    /// Chart title.
    pub title: &'static str,
    /// `f(x, y)`.
    pub f: fn(f64, f64) -> f64,
    /// `(∂f/∂x, ∂f/∂y)`.
    pub grad: fn(f64, f64) -> (f64, f64),
    /// Where every optimizer starts.
    pub start: (f64, f64),
    /// The global minimum, marked on the chart (none for the saddle).
    pub minimum: Option<(f64, f64)>,
    /// Plotted x range.
    pub x_range: (f64, f64),
    /// Plotted y range.
    pub y_range: (f64, f64),
    /// Steps per optimizer in a full run.
    pub steps: usize,
    /// Learning rate for [`Family::GradientScaled`] optimizers.
    pub gradient_scaled_lr: f64,
    /// Learning rate for [`Family::Adaptive`] optimizers.
    pub adaptive_lr: f64,
    /// Color by `ln(1 + f)` rather than `f` (for functions spanning many decades).
    pub log_color: bool,
}

impl Surface {
    /// The learning rate an optimizer of `family` gets here.
    pub fn lr_for(&self, family: Family) -> f64 {
        match family {
            Family::GradientScaled => self.gradient_scaled_lr,
            Family::Adaptive => self.adaptive_lr,
            // A tenth keeps the gradient-scaled first steps on the chart; the adaptive
            // steps after are slower than Adam's, which is what RAdam trades for safety.
            Family::Rectified => self.adaptive_lr / 10.0,
            Family::Adadelta => 1.0,
        }
    }

    /// Whether `(x, y)` is far enough outside the plot to stop following the path.
    fn escaped(&self, (x, y): (f64, f64)) -> bool {
        let outside = |v: f64, (lo, hi): (f64, f64)| {
            let margin = hi - lo;
            !(lo - margin..=hi + margin).contains(&v)
        };
        outside(x, self.x_range) || outside(y, self.y_range)
    }
}

/// Rosenbrock's banana valley `(1 − x)² + 100 (y − x²)²`, minimum 0 at (1, 1).
fn rosenbrock(x: f64, y: f64) -> f64 {
    (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2)
}
fn rosenbrock_grad(x: f64, y: f64) -> (f64, f64) {
    (
        -2.0 * (1.0 - x) - 400.0 * x * (y - x * x),
        200.0 * (y - x * x),
    )
}

/// Beale's function `Σᵢ (cᵢ − x + x yⁱ)²` with c = (1.5, 2.25, 2.625), minimum 0 at (3, 0.5).
fn beale(x: f64, y: f64) -> f64 {
    BEALE_C
        .iter()
        .enumerate()
        .map(|(i, c)| (c - x + x * y.powi(i as i32 + 1)).powi(2))
        .sum()
}
const BEALE_C: [f64; 3] = [1.5, 2.25, 2.625];
fn beale_grad(x: f64, y: f64) -> (f64, f64) {
    let mut g = (0.0, 0.0);
    for (i, c) in BEALE_C.iter().enumerate() {
        let power = i as i32 + 1;
        let residual = c - x + x * y.powi(power);
        g.0 += 2.0 * residual * (y.powi(power) - 1.0);
        g.1 += 2.0 * residual * x * f64::from(power) * y.powi(power - 1);
    }
    g
}

/// The saddle `x² − y²`: a stationary point at the origin that is no minimum. Starting
/// just off the ridge shows who escapes, and how fast.
fn saddle(x: f64, y: f64) -> f64 {
    x * x - y * y
}
fn saddle_grad(x: f64, y: f64) -> (f64, f64) {
    (2.0 * x, -2.0 * y)
}

/// The three test functions.
pub fn surfaces() -> [Surface; 3] {
    [
        Surface {
            name: "rosenbrock",
            title: "Rosenbrock (1-x)² + 100(y-x²)²",
            f: rosenbrock,
            grad: rosenbrock_grad,
            start: (-1.2, 1.0),
            minimum: Some((1.0, 1.0)),
            x_range: (-2.0, 2.0),
            y_range: (-1.0, 3.0),
            steps: 1000,
            gradient_scaled_lr: 1e-3,
            adaptive_lr: 0.05,
            log_color: true,
        },
        Surface {
            name: "beale",
            title: "Beale",
            f: beale,
            grad: beale_grad,
            start: (1.0, 1.5),
            minimum: Some((3.0, 0.5)),
            x_range: (-1.0, 4.5),
            y_range: (-1.5, 2.0),
            steps: 1000,
            gradient_scaled_lr: 1e-3,
            adaptive_lr: 0.05,
            log_color: true,
        },
        Surface {
            name: "saddle",
            title: "Saddle x² - y²",
            f: saddle,
            grad: saddle_grad,
            start: (-1.0, 1e-3),
            minimum: None,
            x_range: (-1.5, 1.5),
            y_range: (-1.5, 1.5),
            steps: 200,
            gradient_scaled_lr: 0.05,
            adaptive_lr: 0.05,
            log_color: false,
        },
    ]
}

/// Runs `optimizer` for `steps` steps from the surface's start and returns the points
/// visited, the start included. Stops early once the path leaves the neighbourhood of
/// the plot or becomes non-finite.
pub fn run_path(
    surface: &Surface,
    optimizer: &mut dyn Optimizer<f64>,
    steps: usize,
) -> AnyResult<Vec<(f64, f64)>> {
    let (x0, y0) = surface.start;
    let mut params = Params::new().with("xy", array![x0, y0])?;
    let mut path = vec![surface.start];
    for _ in 0..steps {
        let point = params
            .get("xy")
            .map(|p| (p[0], p[1]))
            .ok_or("lost parameter xy")?;
        let (gx, gy) = (surface.grad)(point.0, point.1);
        optimizer.step(&mut params, &Grads::new().with("xy", array![gx, gy]))?;
        let next = params
            .get("xy")
            .map(|p| (p[0], p[1]))
            .ok_or("lost parameter xy")?;
        if !(next.0.is_finite() && next.1.is_finite()) {
            break;
        }
        path.push(next);
        if surface.escaped(next) {
            break;
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_match_finite_differences() {
        for s in surfaces() {
            for &(x, y) in &[(-1.2, 1.0), (0.3, -0.7), (2.0, 0.5), (1.0, 1.5)] {
                let h = 1e-6;
                let dx = ((s.f)(x + h, y) - (s.f)(x - h, y)) / (2.0 * h);
                let dy = ((s.f)(x, y + h) - (s.f)(x, y - h)) / (2.0 * h);
                let (gx, gy) = (s.grad)(x, y);
                let tol = 1e-5 * (1.0 + gx.abs() + gy.abs());
                assert!(
                    (dx - gx).abs() < tol && (dy - gy).abs() < tol,
                    "{} at ({x}, {y})",
                    s.name
                );
            }
        }
    }

    #[test]
    fn minima_are_minima() {
        for s in surfaces() {
            if let Some((x, y)) = s.minimum {
                assert_eq!((s.f)(x, y), 0.0, "{}", s.name);
                assert_eq!((s.grad)(x, y), (0.0, 0.0), "{}", s.name);
            }
        }
    }

    #[test]
    fn a_path_descends_and_stops_when_it_escapes() {
        let [rosenbrock, _, saddle] = surfaces();
        let config = serde_json::json!({"optimizer": "sgd", "lr": rosenbrock.gradient_scaled_lr});
        let mut opt = crate::lineup::build::<f64>(&config).unwrap();
        let path = run_path(&rosenbrock, opt.as_mut(), 200).unwrap();
        assert_eq!(path.len(), 201);
        let f = |p: (f64, f64)| (rosenbrock.f)(p.0, p.1);
        assert!(f(path[200]) < f(path[0]));

        let mut opt =
            crate::lineup::build::<f64>(&serde_json::json!({"optimizer": "sgd", "lr": 0.5}))
                .unwrap();
        let path = run_path(&saddle, opt.as_mut(), 1000).unwrap();
        assert!(path.len() < 1000, "escaping the saddle ends the path early");
    }
}
