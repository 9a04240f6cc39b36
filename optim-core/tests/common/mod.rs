//! Hand-written `Algorithm` impls, shaped like what `#[optimizer]` generates, for
//! testing the runtime on its own.
#![allow(dead_code)]

use optim_core::algorithm::{ScalarSpec, StateSpec};
use optim_core::hyper::find_spec;
use optim_core::*;

const NONNEG: Range = Range {
    lo: Bound::Inclusive(0.0),
    hi: Bound::Unbounded,
};

/// Checks `value` against the spec of `name` and hands back the converted value, as the
/// generated `set_hyper` does before writing the field.
fn checked(
    optimizer: &str,
    specs: &[HyperSpec],
    name: &str,
    value: HyperValue,
) -> Result<HyperValue> {
    find_spec(optimizer, specs, name)?.check(optimizer, value)
}

fn validate_all<A: Algorithm>(a: &A) -> Result<()> {
    for spec in A::HYPERS {
        if let Some(v) = a.get_hyper(spec.name) {
            spec.check(A::NAME, v)?;
        }
    }
    Ok(())
}

/// SGD with momentum and L2 weight decay; `LAZY` selects the sparse rule.
///
/// g ← ±g + wd·w; b ← g if t = 1 else μ·b + g (b exists when μ > 0); w ← w − lr·b.
#[derive(Clone, Debug, PartialEq)]
pub struct SgdAlgo<const LAZY: bool> {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub maximize: bool,
}

pub type Sgd = SgdAlgo<false>;
pub type LazySgd = SgdAlgo<true>;

impl<const LAZY: bool> Default for SgdAlgo<LAZY> {
    fn default() -> Self {
        SgdAlgo {
            lr: 1e-3,
            momentum: 0.0,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl<const LAZY: bool> SgdAlgo<LAZY> {
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }
}

impl<const LAZY: bool> Algorithm for SgdAlgo<LAZY> {
    const NAME: &'static str = if LAZY { "lazysgd" } else { "sgd" };
    const DOC: &'static str = "SGD with momentum.";
    const HYPERS: &'static [HyperSpec] = &[
        HyperSpec {
            name: "lr",
            kind: HyperKind::Float,
            default: HyperValue::Float(1e-3),
            range: NONNEG,
            doc: "",
        },
        HyperSpec {
            name: "momentum",
            kind: HyperKind::Float,
            default: HyperValue::Float(0.0),
            range: Range {
                lo: Bound::Inclusive(0.0),
                hi: Bound::Exclusive(1.0),
            },
            doc: "",
        },
        HyperSpec {
            name: "weight_decay",
            kind: HyperKind::Float,
            default: HyperValue::Float(0.0),
            range: NONNEG,
            doc: "",
        },
        HyperSpec {
            name: "maximize",
            kind: HyperKind::Bool,
            default: HyperValue::Bool(false),
            range: Range::ANY,
            doc: "",
        },
    ];
    const STATES: &'static [StateSpec] = &[StateSpec {
        name: "b",
        init: StateInit::Fill,
        when: Some("momentum > 0"),
        shape: StateShape::Elem,
        never_negative: false,
    }];
    const SCALARS: &'static [ScalarSpec] = &[];
    const SPARSE: SparseRule = if LAZY {
        SparseRule::Lazy
    } else {
        SparseRule::Densify
    };
    const KIND: AlgorithmKind = AlgorithmKind::Optimizer;

    fn get_hyper(&self, name: &str) -> Option<HyperValue> {
        Some(match name {
            "lr" => HyperValue::Float(self.lr),
            "momentum" => HyperValue::Float(self.momentum),
            "weight_decay" => HyperValue::Float(self.weight_decay),
            "maximize" => HyperValue::Bool(self.maximize),
            _ => return None,
        })
    }

    fn set_hyper(&mut self, name: &str, value: HyperValue) -> Result<()> {
        match (name, checked(Self::NAME, Self::HYPERS, name, value)?) {
            ("lr", HyperValue::Float(x)) => self.lr = x,
            ("momentum", HyperValue::Float(x)) => self.momentum = x,
            ("weight_decay", HyperValue::Float(x)) => self.weight_decay = x,
            ("maximize", HyperValue::Bool(b)) => self.maximize = b,
            _ => unreachable!("checked above"),
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        validate_all(self)
    }

    fn state_enabled(&self, index: usize, _shape: &[usize]) -> bool {
        index == 0 && self.momentum > 0.0
    }

    fn state_fill(&self, _index: usize) -> f64 {
        0.0
    }

    fn scalar_init(&self, _index: usize) -> f64 {
        0.0
    }

    fn step<T: Scalar>(
        &self,
        t: u64,
        _shape: &[usize],
        _scalars: &mut [f64],
        w: &mut [T],
        grad: GradView<'_, T>,
        states: &mut [optim_core::StateBuf<T>],
        _work: &mut optim_core::Workspace<T>,
    ) {
        let lr = T::from_f64(self.lr);
        let mu = T::from_f64(self.momentum);
        let wd = T::from_f64(self.weight_decay);
        let (maximize, has_b, first) = (self.maximize, self.momentum > 0.0, t == 1);
        let update = |i: usize, g: T, w: &mut [T], states: &mut [optim_core::StateBuf<T>]| {
            let g = (if maximize { -g } else { g }) + wd * w[i];
            let d = if has_b {
                let b = &mut states[0].full_mut()[i];
                *b = if first { g } else { mu * *b + g };
                *b
            } else {
                g
            };
            w[i] = w[i] - lr * d;
        };
        match grad {
            GradView::Dense(g) => {
                for (i, &gi) in g.iter().enumerate() {
                    update(i, gi, w, states);
                }
            }
            GradView::Rows {
                width,
                rows,
                values,
            } => {
                for (k, &r) in rows.iter().enumerate() {
                    for j in 0..width {
                        update(r * width + j, values[k * width + j], w, states);
                    }
                }
            }
            GradView::None => {}
        }
    }
}

/// An accumulator algorithm with a state filled from a hyperparameter and a scalar state:
/// p ← p/2 (p starts at 1); s ← s + g²  (s starts at `init`); w ← w − lr·p·g/√s.
#[derive(Clone, Debug, PartialEq)]
pub struct Acc {
    pub lr: f64,
    pub init: f64,
    pub maximize: bool,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            lr: 0.1,
            init: 0.25,
            maximize: false,
        }
    }
}

impl Algorithm for Acc {
    const NAME: &'static str = "acc";
    const DOC: &'static str = "Accumulator.";
    const HYPERS: &'static [HyperSpec] = &[
        HyperSpec {
            name: "lr",
            kind: HyperKind::Float,
            default: HyperValue::Float(0.1),
            range: NONNEG,
            doc: "",
        },
        HyperSpec {
            name: "init",
            kind: HyperKind::Float,
            default: HyperValue::Float(0.25),
            range: Range {
                lo: Bound::Exclusive(0.0),
                hi: Bound::Unbounded,
            },
            doc: "",
        },
        HyperSpec {
            name: "maximize",
            kind: HyperKind::Bool,
            default: HyperValue::Bool(false),
            range: Range::ANY,
            doc: "",
        },
    ];
    const STATES: &'static [StateSpec] = &[StateSpec {
        name: "s",
        init: StateInit::Fill,
        when: None,
        shape: StateShape::Elem,
        never_negative: false,
    }];
    const SCALARS: &'static [ScalarSpec] = &[ScalarSpec { name: "p" }];
    const SPARSE: SparseRule = SparseRule::Densify;
    const KIND: AlgorithmKind = AlgorithmKind::Optimizer;

    fn get_hyper(&self, name: &str) -> Option<HyperValue> {
        Some(match name {
            "lr" => HyperValue::Float(self.lr),
            "init" => HyperValue::Float(self.init),
            "maximize" => HyperValue::Bool(self.maximize),
            _ => return None,
        })
    }

    fn set_hyper(&mut self, name: &str, value: HyperValue) -> Result<()> {
        match (name, checked(Self::NAME, Self::HYPERS, name, value)?) {
            ("lr", HyperValue::Float(x)) => self.lr = x,
            ("init", HyperValue::Float(x)) => self.init = x,
            ("maximize", HyperValue::Bool(b)) => self.maximize = b,
            _ => unreachable!("checked above"),
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        validate_all(self)
    }

    fn state_enabled(&self, _index: usize, _shape: &[usize]) -> bool {
        true
    }

    fn state_fill(&self, _index: usize) -> f64 {
        self.init
    }

    fn scalar_init(&self, _index: usize) -> f64 {
        1.0
    }

    fn step<T: Scalar>(
        &self,
        _t: u64,
        _shape: &[usize],
        scalars: &mut [f64],
        w: &mut [T],
        grad: GradView<'_, T>,
        states: &mut [optim_core::StateBuf<T>],
        _work: &mut optim_core::Workspace<T>,
    ) {
        scalars[0] *= 0.5;
        let step = T::from_f64(self.lr * scalars[0]);
        let GradView::Dense(g) = grad else { return };
        for ((w, s), &g) in w.iter_mut().zip(states[0].full_mut().iter_mut()).zip(g) {
            let g = if self.maximize { -g } else { g };
            *s = *s + g * g;
            *w = *w - step * g / s.sqrt();
        }
    }
}

/// Lookahead: every k steps of the whole optimizer, s ← s + α(w − s); w ← s.
#[derive(Clone, Debug, PartialEq)]
pub struct Lookahead {
    pub k: i64,
    pub alpha: f64,
}

impl Default for Lookahead {
    fn default() -> Self {
        Lookahead { k: 5, alpha: 0.5 }
    }
}

impl Algorithm for Lookahead {
    const NAME: &'static str = "lookahead";
    const DOC: &'static str = "Lookahead.";
    const HYPERS: &'static [HyperSpec] = &[
        HyperSpec {
            name: "k",
            kind: HyperKind::Int,
            default: HyperValue::Int(5),
            range: Range {
                lo: Bound::Inclusive(1.0),
                hi: Bound::Unbounded,
            },
            doc: "",
        },
        HyperSpec {
            name: "alpha",
            kind: HyperKind::Float,
            default: HyperValue::Float(0.5),
            range: Range {
                lo: Bound::Inclusive(0.0),
                hi: Bound::Inclusive(1.0),
            },
            doc: "",
        },
    ];
    const STATES: &'static [StateSpec] = &[StateSpec {
        name: "slow",
        init: StateInit::CopyOfParam,
        when: None,
        shape: StateShape::Elem,
        never_negative: false,
    }];
    const SCALARS: &'static [ScalarSpec] = &[];
    const SPARSE: SparseRule = SparseRule::Densify;
    const KIND: AlgorithmKind = AlgorithmKind::Wrapper;

    fn get_hyper(&self, name: &str) -> Option<HyperValue> {
        Some(match name {
            "k" => HyperValue::Int(self.k),
            "alpha" => HyperValue::Float(self.alpha),
            _ => return None,
        })
    }

    fn set_hyper(&mut self, name: &str, value: HyperValue) -> Result<()> {
        match (name, checked(Self::NAME, Self::HYPERS, name, value)?) {
            ("k", HyperValue::Int(k)) => self.k = k,
            ("alpha", HyperValue::Float(x)) => self.alpha = x,
            _ => unreachable!("checked above"),
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        validate_all(self)
    }

    fn state_enabled(&self, _index: usize, _shape: &[usize]) -> bool {
        true
    }

    fn state_fill(&self, _index: usize) -> f64 {
        0.0
    }

    fn scalar_init(&self, _index: usize) -> f64 {
        0.0
    }

    fn step<T: Scalar>(
        &self,
        t: u64,
        _shape: &[usize],
        _scalars: &mut [f64],
        w: &mut [T],
        _grad: GradView<'_, T>,
        states: &mut [optim_core::StateBuf<T>],
        _work: &mut optim_core::Workspace<T>,
    ) {
        if !t.is_multiple_of(self.k as u64) {
            return;
        }
        let alpha = T::from_f64(self.alpha);
        for (w, s) in w.iter_mut().zip(states[0].full_mut().iter_mut()) {
            *s = *s + alpha * (*w - *s);
            *w = *s;
        }
    }
}
