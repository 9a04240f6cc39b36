//! TEMPORARY: a hand-written SGD (with optional momentum / Nesterov and L2 weight decay)
//! so the race runs end to end before `optim_zoo::registry` exists. It stands in for the
//! registry's "sgd", "momentum" and "nag"; every other name is reported as not yet
//! available. Delete this file once `lineup::build` calls the registry.

use ndarray::ArrayD;
use optim_core::hyper::find_spec;
use optim_core::{
    Bound, Grad, Grads, Group, HyperKind, HyperSpec, HyperValue, OptimError, Optimizer,
    OptimizerState, Params, Range, Result, Scalar, STATE_FORMAT_VERSION,
};
use serde_json::Value;
use std::collections::HashMap;

const NON_NEGATIVE: Range = Range {
    lo: Bound::Inclusive(0.0),
    hi: Bound::Unbounded,
};
const UNIT: Range = Range {
    lo: Bound::Inclusive(0.0),
    hi: Bound::Exclusive(1.0),
};
const fn float(name: &'static str, default: f64, range: Range, doc: &'static str) -> HyperSpec {
    HyperSpec {
        name,
        kind: HyperKind::Float,
        default: HyperValue::Float(default),
        range,
        doc,
    }
}
static SPECS: [HyperSpec; 4] = [
    float("lr", 0.01, NON_NEGATIVE, "learning rate"),
    float("momentum", 0.0, UNIT, "heavy-ball momentum"),
    float(
        "weight_decay",
        0.0,
        NON_NEGATIVE,
        "L2 penalty added to the gradient",
    ),
    HyperSpec {
        name: "nesterov",
        kind: HyperKind::Bool,
        default: HyperValue::Bool(false),
        range: Range::ANY,
        doc: "Nesterov momentum",
    },
];

/// PyTorch `SGD` semantics: `g += wd·p; b = μ·b + g (b₁ = g); d = nesterov ? g + μ·b : b;
/// p −= lr·d`.
#[derive(Clone, Debug)]
pub struct FallbackSgd<T> {
    name: String,
    hyper: [HyperValue; 4],
    groups: Vec<Group>,
    buffers: HashMap<String, (u64, ArrayD<T>)>,
}

/// Builds "sgd", "momentum" or "nag" from a registry-style config.
pub fn build<T: Scalar>(config: &Value) -> Result<Box<dyn Optimizer<T>>> {
    let name = config["optimizer"].as_str().unwrap_or_default();
    let mut opt = FallbackSgd::<T> {
        name: name.to_string(),
        hyper: SPECS.map(|s| s.default),
        groups: Vec::new(),
        buffers: HashMap::new(),
    };
    match name {
        "sgd" => {}
        "momentum" => opt.set_hyper("momentum", HyperValue::Float(0.9))?,
        "nag" => {
            opt.set_hyper("momentum", HyperValue::Float(0.9))?;
            opt.set_hyper("nesterov", HyperValue::Bool(true))?;
        }
        _ => {
            return Err(OptimError::Config(format!(
                "`{name}` needs optim_zoo::registry (not hooked up yet)"
            )))
        }
    }
    for (key, value) in config
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "optimizer")
    {
        let value = match value {
            Value::Bool(b) => HyperValue::Bool(*b),
            Value::Number(n) => HyperValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            other => {
                return Err(OptimError::Config(format!(
                    "{name}: `{key}` = {other} is not a number or bool"
                )))
            }
        };
        opt.set_hyper(key, value)?;
    }
    Ok(Box::new(opt))
}

impl<T: Scalar> FallbackSgd<T> {
    fn value(&self, param: &str, name: &str) -> f64 {
        let index = SPECS.iter().position(|s| s.name == name).unwrap_or(0);
        let group = self.groups.iter().find(|g| g.selector.matches(param));
        let value = group
            .and_then(|g| g.overrides.iter().find(|(n, _)| n == name).map(|(_, v)| *v))
            .unwrap_or(self.hyper[index]);
        value
            .as_f64()
            .unwrap_or(if value == HyperValue::Bool(true) {
                1.0
            } else {
                0.0
            })
    }
}

impl<T: Scalar> Optimizer<T> for FallbackSgd<T> {
    fn name(&self) -> &str {
        &self.name
    }
    fn hyper_specs(&self) -> &'static [HyperSpec] {
        &SPECS
    }
    fn hyper(&self, name: &str) -> Result<HyperValue> {
        find_spec(&self.name, &SPECS, name)?;
        Ok(self.hyper[SPECS.iter().position(|s| s.name == name).unwrap_or(0)])
    }
    fn set_hyper(&mut self, name: &str, value: HyperValue) -> Result<()> {
        let value = find_spec(&self.name, &SPECS, name)?.check(&self.name, value)?;
        self.hyper[SPECS.iter().position(|s| s.name == name).unwrap_or(0)] = value;
        Ok(())
    }
    fn add_group(&mut self, group: Group) -> Result<()> {
        for (name, value) in &group.overrides {
            find_spec(&self.name, &SPECS, name)?.check(&self.name, *value)?;
        }
        self.groups.push(group);
        Ok(())
    }
    fn check(&self, params: &Params<T>, grads: &Grads<T>) -> Result<()> {
        for (name, grad) in grads.iter() {
            let param = params.get(name).ok_or_else(|| OptimError::UnknownParam {
                name: name.into(),
                suggestion: None,
            })?;
            match grad {
                Grad::Dense(g) if g.shape() == param.shape() => {}
                Grad::Dense(g) => {
                    return Err(OptimError::ShapeMismatch {
                        name: name.into(),
                        expected: param.shape().to_vec(),
                        got: g.shape().to_vec(),
                    })
                }
                Grad::Rows { .. } => {
                    return Err(OptimError::BadSparse {
                        name: name.into(),
                        reason: "the fallback SGD takes dense gradients only".into(),
                    })
                }
            }
        }
        Ok(())
    }
    fn step(&mut self, params: &mut Params<T>, grads: &Grads<T>) -> Result<()> {
        self.check(params, grads)?;
        for (name, grad) in grads.iter() {
            let (Some(param), Grad::Dense(g)) = (params.get_mut(name), grad) else {
                continue;
            };
            let [lr, momentum, decay] =
                ["lr", "momentum", "weight_decay"].map(|h| self.value(name, h));
            let nesterov = self.value(name, "nesterov") != 0.0;
            let g = g + &param.mapv(|p| p * T::from_f64(decay));
            let slot = self
                .buffers
                .entry(name.to_string())
                .or_insert_with(|| (0, g.clone()));
            slot.0 += 1;
            let direction = if momentum == 0.0 {
                g
            } else {
                if slot.0 > 1 {
                    slot.1 = slot.1.mapv(|b| b * T::from_f64(momentum)) + &g;
                }
                if nesterov {
                    g + &slot.1.mapv(|b| b * T::from_f64(momentum))
                } else {
                    slot.1.clone()
                }
            };
            param.zip_mut_with(&direction, |p, d| *p = *p - T::from_f64(lr) * *d);
        }
        Ok(())
    }
    fn step_count(&self, name: &str) -> Option<u64> {
        self.buffers.get(name).map(|(t, _)| *t)
    }
    fn export_state(&self) -> OptimizerState {
        let hyper = SPECS
            .iter()
            .zip(self.hyper)
            .map(|(s, v)| (s.name.to_string(), v))
            .collect();
        OptimizerState {
            format_version: STATE_FORMAT_VERSION,
            optimizer: self.name.clone(),
            hyper,
            groups: Vec::new(),
            step: 0,
            params: Vec::new(),
            inner: None,
        }
    }
    fn import_state(&mut self, _: &OptimizerState, _: &Params<T>) -> Result<()> {
        Err(OptimError::BadState(
            "the temporary fallback SGD cannot import state".into(),
        ))
    }
    fn boxed_clone(&self) -> Box<dyn Optimizer<T>> {
        Box::new(self.clone())
    }
}
