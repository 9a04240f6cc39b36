//! Conformance cases: reference trajectories (PyTorch and others) that every optimizer
//! must reproduce. The format is fixed by `tests/conformance/FORMAT.md`.

use crate::registry;
use ndarray::{Array2, ArrayD, IxDyn};
use optim_core::{Grads, OptimError, Optimizer, Params, Scalar};
use serde_json::Value;
use std::fmt;

/// One parameter's starting value.
#[derive(Clone, Debug)]
pub struct CaseParam {
    /// Parameter name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub value: Vec<f64>,
}

/// A gradient in a case.
#[derive(Clone, Debug)]
pub enum CaseGrad {
    /// Row-major, parameter-shaped.
    Dense(Vec<f64>),
    /// Rows of a 2-D parameter (repeats allowed), flattened values.
    Rows(Vec<usize>, Vec<f64>),
}

/// One step: gradients by name, and the parameters expected after it.
#[derive(Clone, Debug)]
pub struct CaseStep {
    /// Gradients given at this step.
    pub grads: Vec<(String, CaseGrad)>,
    /// Expected values after the step.
    pub expect: Vec<(String, Vec<f64>)>,
}

/// A whole case.
#[derive(Clone, Debug)]
pub struct Case {
    /// Case name.
    pub name: String,
    /// Optimizer config (`{"optimizer": ..., hyperparameters..., "inner": ...}`).
    pub config: Value,
    /// `"f32"` or `"f64"`.
    pub dtype: String,
    /// Starting parameters.
    pub params: Vec<CaseParam>,
    /// Steps.
    pub steps: Vec<CaseStep>,
    /// Relative tolerance.
    pub rel: f64,
    /// Absolute tolerance.
    pub abs: f64,
}

/// Why a case did not pass.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The file is not a valid case.
    Malformed(String),
    /// The optimizer returned an error.
    Optimizer(OptimError),
    /// A value outside tolerance (the first one found).
    Mismatch {
        /// 1-based step.
        step: usize,
        /// Parameter name.
        param: String,
        /// Flat index.
        index: usize,
        /// Value produced.
        got: f64,
        /// Reference value.
        want: f64,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Malformed(m) => write!(f, "malformed case: {m}"),
            Failure::Optimizer(e) => write!(f, "{e}"),
            Failure::Mismatch {
                step,
                param,
                index,
                got,
                want,
            } => {
                write!(
                    f,
                    "step {step}, param {param}, index {index}: got {got:e}, want {want:e}"
                )
            }
        }
    }
}

fn bad(msg: impl Into<String>) -> Failure {
    Failure::Malformed(msg.into())
}

fn floats(v: &Value, what: &str) -> Result<Vec<f64>, Failure> {
    v.as_array()
        .ok_or_else(|| bad(format!("{what} is not an array")))?
        .iter()
        .map(|x| {
            x.as_f64()
                .ok_or_else(|| bad(format!("{what} holds a non-number")))
        })
        .collect()
}

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value, Failure> {
    v.get(key).ok_or_else(|| bad(format!("missing `{key}`")))
}

impl Case {
    /// Reads a case from JSON text.
    pub fn parse(text: &str) -> Result<Case, Failure> {
        let v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if field(&v, "format")?.as_u64() != Some(1) {
            return Err(bad("unsupported `format` (expected 1)"));
        }
        let name = field(&v, "name")?
            .as_str()
            .ok_or_else(|| bad("`name` is not a string"))?
            .to_string();
        let optimizer = field(&v, "optimizer")?
            .as_str()
            .ok_or_else(|| bad("`optimizer` is not a string"))?;
        let mut config = serde_json::Map::new();
        config.insert("optimizer".into(), Value::String(optimizer.into()));
        if let Some(h) = v.get("hyper") {
            let h = h
                .as_object()
                .ok_or_else(|| bad("`hyper` is not an object"))?;
            config.extend(h.clone());
        }
        if let Some(inner) = v.get("inner") {
            let mut c = serde_json::Map::new();
            let opt = field(inner, "optimizer")?.clone();
            c.insert("optimizer".into(), opt);
            if let Some(h) = inner.get("hyper").and_then(Value::as_object) {
                c.extend(h.clone());
            }
            config.insert("inner".into(), Value::Object(c));
        }
        let dtype = field(&v, "dtype")?.as_str().unwrap_or("").to_string();
        if dtype != "f32" && dtype != "f64" {
            return Err(bad(format!("unsupported dtype `{dtype}`")));
        }
        let mut params = Vec::new();
        for p in field(&v, "params")?
            .as_array()
            .ok_or_else(|| bad("`params` is not an array"))?
        {
            let name = field(p, "name")?
                .as_str()
                .ok_or_else(|| bad("param name"))?
                .to_string();
            let shape: Vec<usize> = field(p, "shape")?
                .as_array()
                .ok_or_else(|| bad("shape"))?
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize).ok_or_else(|| bad("shape")))
                .collect::<Result<_, _>>()?;
            let value = floats(field(p, "value")?, "value")?;
            if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(value.len()) {
                return Err(bad(format!("`{name}`: value length does not match shape")));
            }
            params.push(CaseParam { name, shape, value });
        }
        let mut steps = Vec::new();
        for s in field(&v, "steps")?
            .as_array()
            .ok_or_else(|| bad("`steps` is not an array"))?
        {
            let mut grads = Vec::new();
            for (n, g) in field(s, "grads")?.as_object().ok_or_else(|| bad("grads"))? {
                let grad = if g.is_array() {
                    CaseGrad::Dense(floats(g, "gradient")?)
                } else {
                    let rows = field(g, "rows")?
                        .as_array()
                        .ok_or_else(|| bad("rows"))?
                        .iter()
                        .map(|r| {
                            r.as_u64()
                                .map(|r| r as usize)
                                .ok_or_else(|| bad("row index"))
                        })
                        .collect::<Result<_, _>>()?;
                    CaseGrad::Rows(rows, floats(field(g, "values")?, "values")?)
                };
                grads.push((n.clone(), grad));
            }
            let mut expect = Vec::new();
            for (n, e) in field(s, "expect")?
                .as_object()
                .ok_or_else(|| bad("expect"))?
            {
                expect.push((n.clone(), floats(e, "expect")?));
            }
            steps.push(CaseStep { grads, expect });
        }
        let tol = field(&v, "tolerance")?;
        let rel = field(tol, "rel")?
            .as_f64()
            .ok_or_else(|| bad("tolerance.rel"))?;
        let abs = field(tol, "abs")?
            .as_f64()
            .ok_or_else(|| bad("tolerance.abs"))?;
        Ok(Case {
            name,
            config: Value::Object(config),
            dtype,
            params,
            steps,
            rel,
            abs,
        })
    }

    /// Runs the case in its dtype.
    pub fn run(&self) -> Result<(), Failure> {
        match self.dtype.as_str() {
            "f32" => self.run_as::<f32>(),
            _ => self.run_as::<f64>(),
        }
    }

    fn run_as<T: Scalar>(&self) -> Result<(), Failure> {
        let mut opt: Box<dyn Optimizer<T>> =
            registry::build(&self.config).map_err(Failure::Optimizer)?;
        let mut params = Params::<T>::new();
        for p in &self.params {
            let data: Vec<T> = p.value.iter().map(|&x| T::from_f64(x)).collect();
            let a =
                ArrayD::from_shape_vec(IxDyn(&p.shape), data).map_err(|e| bad(e.to_string()))?;
            params
                .insert(p.name.clone(), a)
                .map_err(Failure::Optimizer)?;
        }
        for (i, step) in self.steps.iter().enumerate() {
            let mut grads = Grads::<T>::new();
            for (name, g) in &step.grads {
                let shape = params
                    .get(name)
                    .map(|a| a.shape().to_vec())
                    .ok_or_else(|| bad(format!("gradient for unknown parameter `{name}`")))?;
                match g {
                    CaseGrad::Dense(v) => {
                        let data = v.iter().map(|&x| T::from_f64(x)).collect();
                        let a = ArrayD::from_shape_vec(IxDyn(&shape), data)
                            .map_err(|e| bad(format!("`{name}`: {e}")))?;
                        grads.insert(name.clone(), a);
                    }
                    CaseGrad::Rows(rows, values) => {
                        let width = shape.get(1).copied().unwrap_or(0);
                        let data = values.iter().map(|&x| T::from_f64(x)).collect();
                        let a = Array2::from_shape_vec((rows.len(), width), data)
                            .map_err(|e| bad(format!("`{name}`: {e}")))?;
                        grads.insert_rows(name.clone(), rows.clone(), a);
                    }
                }
            }
            opt.step(&mut params, &grads).map_err(Failure::Optimizer)?;
            for (name, want) in &step.expect {
                let got = params
                    .get(name)
                    .ok_or_else(|| bad(format!("expected values for unknown `{name}`")))?;
                let got = got
                    .as_slice_memory_order()
                    .ok_or_else(|| bad("non-contiguous parameter"))?;
                if got.len() != want.len() {
                    return Err(bad(format!(
                        "`{name}`: expected {} values, parameter has {}",
                        want.len(),
                        got.len()
                    )));
                }
                for (index, (g, w)) in got.iter().zip(want).enumerate() {
                    let g = Scalar::to_f64(*g);
                    // Written so that NaN fails: NaN compares false.
                    let within = (g - w).abs() <= self.abs + self.rel * w.abs();
                    if !within {
                        return Err(Failure::Mismatch {
                            step: i + 1,
                            param: name.clone(),
                            index,
                            got: g,
                            want: *w,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}
