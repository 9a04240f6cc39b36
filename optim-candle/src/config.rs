//! What [`crate::CandleOptimizer`] is built from: an optimizer (a registry config or a typed
//! hyperparameter struct) and what runs around every step (schedule, clipping, groups,
//! non-finite policy).

use optim_core::schedule::Schedule;
use optim_core::{Algorithm, Group, NonFinitePolicy, Optim, Optimizer, Result, Scalar};
use optim_zoo::Registry;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

type BuildF32 = dyn Fn() -> Result<Box<dyn Optimizer<f32>>> + Send + Sync;
type BuildF64 = dyn Fn() -> Result<Box<dyn Optimizer<f64>>> + Send + Sync;

#[derive(Clone)]
pub(crate) enum Source {
    Json {
        config: Value,
        registry: Option<Arc<Registry>>,
    },
    Typed {
        name: &'static str,
        f32: Arc<BuildF32>,
        f64: Arc<BuildF64>,
    },
}

/// The `Config` of [`crate::CandleOptimizer`]'s `candle_nn::Optimizer` implementation.
///
/// ```
/// use optim_candle::Config;
/// use serde_json::json;
/// // Any registry config, as `optim_zoo::build` takes it:
/// let adamw = Config::json(json!({"optimizer": "adamw", "lr": 3e-4, "weight_decay": 0.01}));
/// // Or a typed hyperparameter struct, checked when the optimizer is built:
/// let lion = Config::algorithm(optim_zoo::Lion::default().lr(1e-4));
/// // Plus what runs around each step:
/// let bert = Config::json(json!({"optimizer": "bert", "lr": 1e-4}))
///     .clip_grad_norm(1.0)
///     .schedule(optim_core::schedule::Schedule::linear_warmup_decay(1e-4, 100, 1000).unwrap());
/// # let _ = (adamw, lion, bert);
/// ```
#[derive(Clone)]
pub struct Config {
    source: Source,
    pub(crate) schedule: Option<Schedule>,
    pub(crate) max_grad_norm: Option<f64>,
    pub(crate) groups: Vec<Group>,
    pub(crate) non_finite: Option<NonFinitePolicy>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Config");
        match &self.source {
            Source::Json { config, .. } => s.field("config", config),
            Source::Typed { name, .. } => s.field("algorithm", name),
        };
        s.field("schedule", &self.schedule)
            .field("max_grad_norm", &self.max_grad_norm)
            .field("groups", &self.groups)
            .field("non_finite", &self.non_finite)
            .finish()
    }
}

impl Config {
    fn new(source: Source) -> Self {
        Config {
            source,
            schedule: None,
            max_grad_norm: None,
            groups: Vec::new(),
            non_finite: None,
        }
    }

    /// A registry config (`{"optimizer": "adamw", "lr": 1e-3}`), built by
    /// [`Registry::zoo`]: any zoo optimizer, `lookahead` around one, or a `partition`.
    pub fn json(config: Value) -> Self {
        Config::new(Source::Json {
            config,
            registry: None,
        })
    }

    /// A registry config built by `registry` (the zoo plus your own `#[optimizer]` types).
    pub fn json_in(registry: Registry, config: Value) -> Self {
        Config::new(Source::Json {
            config,
            registry: Some(Arc::new(registry)),
        })
    }

    /// A typed hyperparameter struct (`optim_zoo::AdamW::default().lr(1e-3)` or one of your
    /// own `#[optimizer]`s); its ranges are checked when the optimizer is built.
    pub fn algorithm<A: Algorithm>(hyper: A) -> Self {
        let for_f64 = hyper.clone();
        Config::new(Source::Typed {
            name: A::NAME,
            f32: Arc::new(move || Ok(Box::new(Optim::<A, f32>::new(hyper.clone())?) as Box<_>)),
            f64: Arc::new(move || Ok(Box::new(Optim::<A, f64>::new(for_f64.clone())?) as Box<_>)),
        })
    }

    /// Sets the base learning rate before every step to `schedule.lr_at(steps taken)`;
    /// it overrides `set_learning_rate`.
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = Some(schedule);
        self
    }

    /// Scales the gradients before every step so that their global L2 norm (over every
    /// variable with a gradient) is at most `max_norm`
    /// ([`optim_core::clip::clip_grad_norm`]). Like `torch.nn.utils.clip_grad_norm_`, this
    /// scales candle's gradient tensors themselves when they are stepped in place.
    pub fn clip_grad_norm(mut self, max_norm: f64) -> Self {
        self.max_grad_norm = Some(max_norm);
        self
    }

    /// Adds a parameter group (hyperparameter overrides for the variables it selects by
    /// name; see [`Group`]).
    pub fn group(mut self, group: Group) -> Self {
        self.groups.push(group);
        self
    }

    /// What a step does with NaN or ±inf in a gradient (see [`NonFinitePolicy`]).
    pub fn non_finite(mut self, policy: NonFinitePolicy) -> Self {
        self.non_finite = Some(policy);
        self
    }

    /// Builds the optimizer for element type `T`, with the groups and policy applied.
    pub(crate) fn build<T: Scalar + BuildFor>(&self) -> Result<Box<dyn Optimizer<T>>> {
        let mut opt = T::build(&self.source)?;
        for group in &self.groups {
            opt.add_group(group.clone())?;
        }
        if let Some(policy) = self.non_finite {
            opt.set_non_finite_policy(policy)?;
        }
        if let Some(schedule) = &self.schedule {
            schedule.check()?;
        }
        if let Some(max_norm) = self.max_grad_norm {
            // An empty set of gradients checks `max_norm`'s range and changes nothing.
            optim_core::clip::clip_grad_norm(&mut optim_core::Grads::<T>::new(), max_norm)?;
        }
        Ok(opt)
    }
}

impl From<Value> for Config {
    fn from(config: Value) -> Self {
        Config::json(config)
    }
}

/// Builds a [`Source`] for one element type (the typed builders keep one closure per type).
pub(crate) trait BuildFor: Scalar {
    fn build(source: &Source) -> Result<Box<dyn Optimizer<Self>>>;
}

impl BuildFor for f32 {
    fn build(source: &Source) -> Result<Box<dyn Optimizer<f32>>> {
        match source {
            Source::Json { config, registry } => match registry {
                Some(r) => r.build(config),
                None => optim_zoo::build(config),
            },
            Source::Typed { f32, .. } => f32(),
        }
    }
}

impl BuildFor for f64 {
    fn build(source: &Source) -> Result<Box<dyn Optimizer<f64>>> {
        match source {
            Source::Json { config, registry } => match registry {
                Some(r) => r.build(config),
                None => optim_zoo::build(config),
            },
            Source::Typed { f64, .. } => f64(),
        }
    }
}
