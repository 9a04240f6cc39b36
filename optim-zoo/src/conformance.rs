//! Conformance cases: reference trajectories (PyTorch and others) that every optimizer
//! must reproduce. The format is fixed by `tests/conformance/FORMAT.md`: its first part,
//! and of its second part the `routes` of a `partition` (handed to the registry as they
//! are) and the evaluation weights `eval`, checked after the last step with
//! [`Optimizer::eval_params`]. A case that asks for something the runner does not do
//! (`state_precision: "q8"`) fails as [`Failure::Unsupported`] rather than at a tolerance.

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
    /// The evaluation weights expected after the last step (`"eval"`), if the case gives
    /// them.
    pub eval: Option<Vec<(String, Vec<f64>)>>,
    /// Relative tolerance.
    pub rel: f64,
    /// Absolute tolerance.
    pub abs: f64,
}

/// Which values of a case a [`Failure::Mismatch`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    /// The training weights after a step (`steps[i].expect`).
    Expect,
    /// The evaluation weights after the last step (`eval`).
    Eval,
}

/// Why a case did not pass. Each names the field of the case it is about.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The file is not a valid case (the message names the field).
    Malformed(String),
    /// The case asks for something the runner does not do (the message names the field).
    Unsupported(String),
    /// The optimizer could not be built from the case's `optimizer`, `hyper`, `inner` or
    /// `routes`.
    Config(OptimError),
    /// The optimizer returned an error at a step (1-based), or (`step` 0) when asked for
    /// its evaluation weights.
    Optimizer {
        /// 1-based step; 0 for the evaluation weights.
        step: usize,
        /// The error.
        error: OptimError,
    },
    /// A value outside tolerance (the first one found).
    Mismatch {
        /// 1-based step (the last step for [`Checked::Eval`]).
        step: usize,
        /// Training or evaluation weights.
        checked: Checked,
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
            Failure::Unsupported(m) => write!(f, "unsupported: {m}"),
            Failure::Config(e) => write!(f, "building the optimizer: {e}"),
            Failure::Optimizer { step: 0, error } => {
                write!(f, "computing the evaluation weights: {error}")
            }
            Failure::Optimizer { step, error } => {
                write!(f, "steps[{}] (step {step}): the step failed: {error}", step - 1)
            }
            Failure::Mismatch {
                step,
                checked,
                param,
                index,
                got,
                want,
            } => match checked {
                Checked::Expect => write!(
                    f,
                    "steps[{}].expect.{param}[{index}]: got {got:e}, want {want:e} (after step {step})",
                    step - 1
                ),
                Checked::Eval => write!(
                    f,
                    "eval.{param}[{index}]: got {got:e}, want {want:e} (evaluation weights \
                     after step {step}; the training weights matched)"
                ),
            },
        }
    }
}

/// Every top-level field a case may have.
const CASE_FIELDS: &[&str] = &[
    "format",
    "name",
    "optimizer",
    "hyper",
    "inner",
    "routes",
    "dtype",
    "reference",
    "params",
    "steps",
    "eval",
    "state_precision",
    "tolerance",
];

fn bad(msg: impl Into<String>) -> Failure {
    Failure::Malformed(msg.into())
}

/// The numbers of the array at `path`.
fn floats(v: &Value, path: &str) -> Result<Vec<f64>, Failure> {
    v.as_array()
        .ok_or_else(|| bad(format!("`{path}` is not an array")))?
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_f64()
                .ok_or_else(|| bad(format!("`{path}[{i}]` is not a number: {x}")))
        })
        .collect()
}

/// Field `key` of the object at `path`.
fn field<'a>(v: &'a Value, path: &str, key: &str) -> Result<&'a Value, Failure> {
    v.get(key).ok_or_else(|| {
        if path.is_empty() {
            bad(format!("missing `{key}`"))
        } else {
            bad(format!("`{path}` has no `{key}`"))
        }
    })
}

/// The name → values object at `path` (`expect`, `eval`).
fn named_values(v: &Value, path: &str) -> Result<Vec<(String, Vec<f64>)>, Failure> {
    v.as_object()
        .ok_or_else(|| bad(format!("`{path}` is not an object")))?
        .iter()
        .map(|(n, e)| Ok((n.clone(), floats(e, &format!("{path}.{n}"))?)))
        .collect()
}

impl Case {
    /// Reads a case from JSON text.
    pub fn parse(text: &str) -> Result<Case, Failure> {
        let v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let top = v
            .as_object()
            .ok_or_else(|| bad("a case is a JSON object"))?;
        if let Some(k) = top.keys().find(|k| !CASE_FIELDS.contains(&k.as_str())) {
            let hint = optim_core::suggest::closest(k, CASE_FIELDS.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(bad(format!("unknown field `{k}`{hint}")));
        }
        if field(&v, "", "format")?.as_u64() != Some(1) {
            return Err(bad("unsupported `format` (expected 1)"));
        }
        let name = field(&v, "", "name")?
            .as_str()
            .ok_or_else(|| bad("`name` is not a string"))?
            .to_string();
        let optimizer = field(&v, "", "optimizer")?
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
            let opt = field(inner, "inner", "optimizer")?.clone();
            c.insert("optimizer".into(), opt);
            if let Some(h) = inner.get("hyper") {
                let h = h
                    .as_object()
                    .ok_or_else(|| bad("`inner.hyper` is not an object"))?;
                c.extend(h.clone());
            }
            config.insert("inner".into(), Value::Object(c));
        }
        if let Some(routes) = v.get("routes") {
            if optimizer != "partition" {
                return Err(bad(format!(
                    "`routes` is for optimizer `partition`, not `{optimizer}`"
                )));
            }
            // Already in a form the registry reads: {"select", "optimizer", "hyper"}.
            config.insert("routes".into(), routes.clone());
        }
        match v.get("state_precision") {
            None => {}
            Some(Value::String(p)) if p == "q8" => {
                return Err(Failure::Unsupported(
                    "`state_precision`: \"q8\" (blockwise 8-bit states): the runner keeps \
                     every state in the case's dtype"
                        .into(),
                ))
            }
            Some(other) => {
                return Err(bad(format!(
                    "`state_precision` is {other}; the format defines \"q8\""
                )))
            }
        }
        let dtype = field(&v, "", "dtype")?.as_str().unwrap_or("").to_string();
        if dtype != "f32" && dtype != "f64" {
            return Err(bad(format!("`dtype`: unsupported `{dtype}` (f32 or f64)")));
        }
        let mut params = Vec::new();
        for (i, p) in field(&v, "", "params")?
            .as_array()
            .ok_or_else(|| bad("`params` is not an array"))?
            .iter()
            .enumerate()
        {
            let path = format!("params[{i}]");
            let name = field(p, &path, "name")?
                .as_str()
                .ok_or_else(|| bad(format!("`{path}.name` is not a string")))?
                .to_string();
            let shape: Vec<usize> = field(p, &path, "shape")?
                .as_array()
                .ok_or_else(|| bad(format!("`{path}.shape` is not an array")))?
                .iter()
                .map(|d| {
                    d.as_u64()
                        .and_then(|d| usize::try_from(d).ok())
                        .ok_or_else(|| bad(format!("`{path}.shape` holds {d}, not a size")))
                })
                .collect::<Result<_, _>>()?;
            let value = floats(field(p, &path, "value")?, &format!("{path}.value"))?;
            if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(value.len()) {
                return Err(bad(format!(
                    "`{path}.value` ({name}) has {} values for shape {shape:?}",
                    value.len()
                )));
            }
            params.push(CaseParam { name, shape, value });
        }
        let mut steps = Vec::new();
        for (i, s) in field(&v, "", "steps")?
            .as_array()
            .ok_or_else(|| bad("`steps` is not an array"))?
            .iter()
            .enumerate()
        {
            let path = format!("steps[{i}]");
            let mut grads = Vec::new();
            for (n, g) in field(s, &path, "grads")?
                .as_object()
                .ok_or_else(|| bad(format!("`{path}.grads` is not an object")))?
            {
                let gpath = format!("{path}.grads.{n}");
                let grad = if g.is_array() {
                    CaseGrad::Dense(floats(g, &gpath)?)
                } else {
                    let rows = field(g, &gpath, "rows")?
                        .as_array()
                        .ok_or_else(|| bad(format!("`{gpath}.rows` is not an array")))?
                        .iter()
                        .map(|r| {
                            r.as_u64()
                                .and_then(|r| usize::try_from(r).ok())
                                .ok_or_else(|| {
                                    bad(format!("`{gpath}.rows` holds {r}, not a row index"))
                                })
                        })
                        .collect::<Result<_, _>>()?;
                    let values = floats(field(g, &gpath, "values")?, &format!("{gpath}.values"))?;
                    CaseGrad::Rows(rows, values)
                };
                grads.push((n.clone(), grad));
            }
            let expect = named_values(field(s, &path, "expect")?, &format!("{path}.expect"))?;
            steps.push(CaseStep { grads, expect });
        }
        let eval = v.get("eval").map(|e| named_values(e, "eval")).transpose()?;
        let tol = field(&v, "", "tolerance")?;
        let rel = field(tol, "tolerance", "rel")?
            .as_f64()
            .ok_or_else(|| bad("`tolerance.rel` is not a number"))?;
        let abs = field(tol, "tolerance", "abs")?
            .as_f64()
            .ok_or_else(|| bad("`tolerance.abs` is not a number"))?;
        Ok(Case {
            name,
            config: Value::Object(config),
            dtype,
            params,
            steps,
            eval,
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
            registry::build(&self.config).map_err(Failure::Config)?;
        let mut params = Params::<T>::new();
        for (i, p) in self.params.iter().enumerate() {
            let data: Vec<T> = p.value.iter().map(|&x| T::from_f64(x)).collect();
            let a = ArrayD::from_shape_vec(IxDyn(&p.shape), data)
                .map_err(|e| bad(format!("`params[{i}]` ({}): {e}", p.name)))?;
            params
                .insert(p.name.clone(), a)
                .map_err(|e| bad(format!("`params[{i}]`: {e}")))?;
        }
        for (i, step) in self.steps.iter().enumerate() {
            let mut grads = Grads::<T>::new();
            for (name, g) in &step.grads {
                let path = format!("steps[{i}].grads.{name}");
                let shape = params
                    .get(name)
                    .map(|a| a.shape().to_vec())
                    .ok_or_else(|| bad(format!("`{path}`: no parameter `{name}`")))?;
                match g {
                    CaseGrad::Dense(v) => {
                        let data = v.iter().map(|&x| T::from_f64(x)).collect();
                        let a = ArrayD::from_shape_vec(IxDyn(&shape), data)
                            .map_err(|e| bad(format!("`{path}`: {e}")))?;
                        grads.insert(name.clone(), a);
                    }
                    CaseGrad::Rows(rows, values) => {
                        let width = shape.get(1).copied().unwrap_or(0);
                        let data = values.iter().map(|&x| T::from_f64(x)).collect();
                        let a = Array2::from_shape_vec((rows.len(), width), data)
                            .map_err(|e| bad(format!("`{path}.values`: {e}")))?;
                        grads.insert_rows(name.clone(), rows.clone(), a);
                    }
                }
            }
            opt.step(&mut params, &grads)
                .map_err(|error| Failure::Optimizer { step: i + 1, error })?;
            self.compare(&params, &step.expect, i + 1, Checked::Expect)?;
        }
        if let Some(eval) = &self.eval {
            let weights = opt
                .eval_params(&params)
                .map_err(|error| Failure::Optimizer { step: 0, error })?;
            self.compare(&weights, eval, self.steps.len(), Checked::Eval)?;
        }
        Ok(())
    }

    /// Compares `got` with the expected values of `checked` after step `step`.
    fn compare<T: Scalar>(
        &self,
        got: &Params<T>,
        want: &[(String, Vec<f64>)],
        step: usize,
        checked: Checked,
    ) -> Result<(), Failure> {
        for (name, want) in want {
            let path = match checked {
                Checked::Expect => format!("steps[{}].expect.{name}", step - 1),
                Checked::Eval => format!("eval.{name}"),
            };
            let values = got
                .get(name)
                .ok_or_else(|| bad(format!("`{path}`: no parameter `{name}`")))?;
            let values = values
                .as_slice_memory_order()
                .ok_or_else(|| bad(format!("`{path}`: the parameter is not contiguous")))?;
            if values.len() != want.len() {
                return Err(bad(format!(
                    "`{path}`: {} values, the parameter has {}",
                    want.len(),
                    values.len()
                )));
            }
            for (index, (g, w)) in values.iter().zip(want).enumerate() {
                let g = Scalar::to_f64(*g);
                // Written so that NaN fails: NaN compares false.
                let within = (g - w).abs() <= self.abs + self.rel * w.abs();
                if !within {
                    return Err(Failure::Mismatch {
                        step,
                        checked,
                        param: name.clone(),
                        index,
                        got: g,
                        want: *w,
                    });
                }
            }
        }
        Ok(())
    }
}
