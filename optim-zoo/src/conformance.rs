//! Conformance cases: reference trajectories (PyTorch and others) that every optimizer
//! must reproduce. The format is fixed by `tests/conformance/FORMAT.md`: its first part,
//! and of its second part the `routes` of a `partition` (handed to the registry as they
//! are), the evaluation weights `eval`, checked after the last step with
//! [`Optimizer::eval_params`], and `state_precision: "q8"` (the registry's
//! `"state_precision"` setting). A case that asks for something the runner does not do
//! fails as [`Failure::Unsupported`] rather than at a tolerance.

use crate::registry;
use ndarray::{Array2, ArrayD, IxDyn};
use optim_core::tree::{from_tree, Tree, TreeError};
use optim_core::{Grads, OptimError, Optimizer, Params, Scalar};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
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

/// A case file as written (FORMAT.md): every field it may have, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseDoc {
    format: u64,
    name: String,
    optimizer: String,
    #[serde(default)]
    hyper: Option<Map<String, Value>>,
    #[serde(default)]
    inner: Option<InnerDoc>,
    /// A partition's routes, already in the form the registry reads.
    #[serde(default)]
    routes: Option<Value>,
    dtype: String,
    #[serde(default)]
    #[allow(dead_code)] // Provenance, for readers of the file.
    reference: Option<Value>,
    params: Vec<ParamDoc>,
    steps: Vec<StepDoc>,
    #[serde(default)]
    eval: Option<BTreeMap<String, Vec<f64>>>,
    #[serde(default)]
    state_precision: Option<Value>,
    tolerance: ToleranceDoc,
}

/// Lookahead's wrapped optimizer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InnerDoc {
    optimizer: Value,
    #[serde(default)]
    hyper: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamDoc {
    name: String,
    shape: Vec<usize>,
    value: Vec<f64>,
}

/// One step. Maps are read in name order, as the runner always has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepDoc {
    /// Dense (a list) or sparse rows (`{"rows", "values"}`), told apart by their shape.
    grads: BTreeMap<String, Tree>,
    expect: BTreeMap<String, Vec<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RowsDoc {
    rows: Vec<usize>,
    values: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToleranceDoc {
    rel: f64,
    abs: f64,
}

fn bad(msg: impl Into<String>) -> Failure {
    Failure::Malformed(msg.into())
}

/// A field that does not read, named by its path.
fn malformed(e: TreeError) -> Failure {
    match e.message.strip_prefix("expected a number, got ") {
        Some(got) => bad(format!("`{}` is not a number: {got}", e.path)),
        None => bad(e.to_string()),
    }
}

impl Case {
    /// Reads a case from JSON text.
    pub fn parse(text: &str) -> Result<Case, Failure> {
        let tree: Tree = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if !matches!(tree, Tree::Map(_)) {
            return Err(bad("a case is a JSON object"));
        }
        let doc: CaseDoc = from_tree(&tree, "").map_err(malformed)?;
        if doc.format != 1 {
            return Err(bad("unsupported `format` (expected 1)"));
        }
        let mut config = Map::new();
        config.insert("optimizer".into(), Value::String(doc.optimizer.clone()));
        config.extend(doc.hyper.unwrap_or_default());
        if let Some(inner) = doc.inner {
            let mut c = Map::new();
            c.insert("optimizer".into(), inner.optimizer);
            c.extend(inner.hyper.unwrap_or_default());
            config.insert("inner".into(), Value::Object(c));
        }
        if let Some(routes) = doc.routes {
            if doc.optimizer != "partition" {
                return Err(bad(format!(
                    "`routes` is for optimizer `partition`, not `{}`",
                    doc.optimizer
                )));
            }
            config.insert("routes".into(), routes);
        }
        match doc.state_precision {
            None => {}
            // The registry's own setting: states kept as the format's blockwise 8-bit codes.
            Some(Value::String(p)) if p == "q8" => {
                config.insert("state_precision".into(), Value::String(p));
            }
            Some(other) => {
                return Err(bad(format!(
                    "`state_precision` is {other}; the format defines \"q8\""
                )))
            }
        }
        if doc.dtype != "f32" && doc.dtype != "f64" {
            return Err(bad(format!(
                "`dtype`: unsupported `{}` (f32 or f64)",
                doc.dtype
            )));
        }
        let mut params = Vec::with_capacity(doc.params.len());
        for (i, p) in doc.params.into_iter().enumerate() {
            let n = p.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if n != Some(p.value.len()) {
                return Err(bad(format!(
                    "`params[{i}].value` ({}) has {} values for shape {:?}",
                    p.name,
                    p.value.len(),
                    p.shape
                )));
            }
            params.push(CaseParam {
                name: p.name,
                shape: p.shape,
                value: p.value,
            });
        }
        let mut steps = Vec::with_capacity(doc.steps.len());
        for (i, s) in doc.steps.into_iter().enumerate() {
            let mut grads = Vec::with_capacity(s.grads.len());
            for (n, g) in s.grads {
                let path = format!("steps[{i}].grads.{n}");
                let grad = match g {
                    Tree::List(_) => CaseGrad::Dense(from_tree(&g, &path).map_err(malformed)?),
                    _ => {
                        let rows: RowsDoc = from_tree(&g, &path).map_err(malformed)?;
                        CaseGrad::Rows(rows.rows, rows.values)
                    }
                };
                grads.push((n, grad));
            }
            steps.push(CaseStep {
                grads,
                expect: s.expect.into_iter().collect(),
            });
        }
        Ok(Case {
            name: doc.name,
            config: Value::Object(config),
            dtype: doc.dtype,
            params,
            steps,
            eval: doc.eval.map(|e| e.into_iter().collect()),
            rel: doc.tolerance.rel,
            abs: doc.tolerance.abs,
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
