//! Build any optimizer by name from a config, as `torch`-style code and config files expect:
//! `{"optimizer": "adamw", "lr": 3e-4, "weight_decay": 0.01}`.
//!
//! Nothing unknown is ignored: an unknown optimizer or hyperparameter is an error that
//! lists the valid names and suggests the closest; an out-of-range value names its range.
//! Nothing ambiguous is guessed either: a key given twice in a JSON object, a non-finite
//! number (TOML's `nan`, `inf`) or an optimizer name that is not a string is an error
//! naming the key.
//! Users add their own `#[optimizer]` types with [`Registry::register`]. A `partition`
//! gives each set of parameters its own optimizer ([`Registry::register_partition`]).

use optim_core::optim::Optim;
use optim_core::partition::{in_route, PARTITION};
use optim_core::suggest::closest;
use optim_core::tree::{from_tree, hyper_value, Entries, Tree, TreeError};
use optim_core::wrapper::Wrapped;
use optim_core::StatePrecision;
use optim_core::{
    Algorithm, AlgorithmKind, HyperSpec, OptimError, Optimizer, Partition, Result, Route,
    RouteSelect, Scalar, Selector,
};
use serde::Deserialize;
use serde_json::Value;
use std::any::Any;

/// Keys every config may carry besides hyperparameters.
const OPTIMIZER_KEY: &str = "optimizer";
const INNER_KEY: &str = "inner";
/// Name parts of parameters to exclude from weight decay (BERT: `["LayerNorm", "bias"]`).
const DECAY_MASK_KEY: &str = "exclude_from_weight_decay";
/// A partition's routes.
const ROUTES_KEY: &str = "routes";
/// How element-wise states are stored (`"f32"`, `"bf16"`, `"q8"`; see [`StatePrecision`]).
const PRECISION_KEY: &str = "state_precision";

/// One config object's entries, in the order given.
type Config = [(String, Tree)];

type BuildFn<T> = fn(&Registry, &Config) -> Result<Box<dyn Optimizer<T>>>;

/// How an entry is built.
#[derive(Clone)]
enum Recipe {
    /// A generated optimizer type.
    Algorithm {
        f32: BuildFn<f32>,
        f64: BuildFn<f64>,
    },
    /// A wrapper rule around an inner optimizer given under `"inner"`, or around a fixed
    /// inner entry whose hyperparameters share the flat config (Ranger).
    Wrapper {
        f32: BuildFn<f32>,
        f64: BuildFn<f64>,
        fixed_inner: Option<&'static str>,
    },
    /// Another entry under a new name (`nag` = sgd with momentum and nesterov preset).
    Alias(&'static str),
    /// A [`Partition`] of optimizers built from this registry, one per route.
    Partition,
}

/// A registered optimizer.
#[derive(Clone)]
pub struct Entry {
    /// Registry name.
    pub name: &'static str,
    /// One-line description.
    pub summary: String,
    /// Declared hyperparameters (of the base algorithm for presets).
    pub hypers: &'static [HyperSpec],
    /// Values preset by this entry; a config may still override them.
    pub preset: Vec<(&'static str, Value)>,
    recipe: Recipe,
}

/// Optimizers by name.
#[derive(Clone, Default)]
pub struct Registry {
    entries: Vec<Entry>,
}

fn first_line(doc: &str) -> String {
    doc.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The value at `key` of a config.
fn lookup<'c>(config: &'c Config, key: &str) -> Option<&'c Tree> {
    config.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Sets `key` to `value`, in place if present (a config overriding a preset).
fn set(config: &mut Vec<(String, Tree)>, key: &str, value: Tree) {
    match config.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => config.push((key.to_string(), value)),
    }
}

/// Sets every hyperparameter in `config` (other than reserved keys) on `a`.
fn configure<A: Algorithm>(config: &Config, a: &mut A) -> Result<()> {
    for (k, v) in config {
        if k == OPTIMIZER_KEY || k == DECAY_MASK_KEY {
            continue;
        }
        if k == INNER_KEY {
            return Err(OptimError::Config(format!(
                "{} takes no `inner` optimizer; only wrappers such as lookahead do",
                A::NAME
            )));
        }
        // The name is checked before the value, so an unknown key is reported as unknown
        // whatever its value.
        optim_core::hyper::find_spec(A::NAME, A::HYPERS, k)?;
        a.set_hyper(k, hyper_value(k, v)?)?;
    }
    Ok(())
}

fn decay_mask(config: &Config) -> Result<Option<Vec<String>>> {
    let Some(v) = lookup(config, DECAY_MASK_KEY) else {
        return Ok(None);
    };
    from_tree(v, DECAY_MASK_KEY).map(Some).map_err(|_| {
        OptimError::Config(format!(
            "`{DECAY_MASK_KEY}` must be a list of strings, such as [\"LayerNorm\", \"bias\"], got {v}"
        ))
    })
}

fn build_algorithm<A: Algorithm, T: Scalar>(
    _: &Registry,
    config: &Config,
) -> Result<Box<dyn Optimizer<T>>> {
    let mut a = A::default();
    configure(config, &mut a)?;
    let mut opt = Optim::<A, T>::new(a)?;
    if let Some(parts) = decay_mask(config)? {
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        opt.exclude_from_weight_decay(&parts)?;
    }
    Ok(Box::new(opt))
}

/// Builds wrapper rule `R` around its inner optimizer: the config's `"inner"`, or for a
/// composite entry (Ranger) its fixed inner entry configured by the same flat config.
fn build_wrapper<R: Algorithm, T: Scalar>(
    reg: &Registry,
    config: &Config,
) -> Result<Box<dyn Optimizer<T>>> {
    let name = lookup(config, OPTIMIZER_KEY)
        .and_then(Tree::as_str)
        .unwrap_or(R::NAME);
    let fixed = match reg.find(name)?.recipe {
        Recipe::Wrapper { fixed_inner, .. } => fixed_inner,
        _ => None,
    };
    // The rule's own keys, and the rest.
    let (own, mut rest): (Vec<_>, Vec<_>) = config
        .iter()
        .filter(|(k, _)| k != OPTIMIZER_KEY)
        .cloned()
        .partition(|(k, _)| R::HYPERS.iter().any(|h| h.name == k));
    let inner = rest
        .iter()
        .position(|(k, _)| k == INNER_KEY)
        .map(|i| rest.remove(i).1);
    let inner = match (fixed, inner) {
        (Some(inner_name), None) => {
            rest.push((OPTIMIZER_KEY.into(), Tree::Str(inner_name.into())));
            // Unknown keys are reported against the composite's whole vocabulary.
            reg.build_tree::<T>(&Tree::Map(rest)).map_err(|e| match e {
                OptimError::UnknownHyper { name: n, suggestion, mut valid, .. } => {
                    valid.extend(R::HYPERS.iter().map(|h| h.name.to_string()));
                    let suggestion = suggestion.or_else(|| closest(&n, R::HYPERS.iter().map(|h| h.name)).map(str::to_string));
                    OptimError::UnknownHyper { optimizer: name.to_string(), name: n, suggestion, valid }
                }
                other => other,
            })?
        }
        (Some(inner_name), Some(_)) => {
            return Err(OptimError::Config(format!("{name} has a fixed inner optimizer ({inner_name}); give its hyperparameters directly")));
        }
        (None, Some(inner)) => {
            if let Some((k, _)) = rest.first() {
                let names: Vec<&str> = R::HYPERS.iter().map(|h| h.name).collect();
                return Err(OptimError::UnknownHyper {
                    optimizer: name.into(),
                    name: k.clone(),
                    suggestion: closest(k, names.iter().copied()).map(str::to_string),
                    valid: names.iter().map(|s| s.to_string()).chain([INNER_KEY.to_string()]).collect(),
                });
            }
            reg.build_tree::<T>(&inner)?
        }
        (None, None) => {
            return Err(OptimError::Config(format!(
                "{name} wraps another optimizer: give it as `\"inner\": {{\"optimizer\": \"adam\", ...}}`"
            )))
        }
    };
    let mut rule = R::default();
    configure(&own, &mut rule)?;
    Ok(Box::new(Wrapped::<R, T>::new(rule, inner)?))
}

/// A partition route as written: `{"select": {...}, "optimizer": ..., "hyper": {...}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteDoc {
    #[serde(default)]
    select: Option<SelectDoc>,
    /// A name (with `hyper`) or a whole config.
    #[serde(default)]
    optimizer: Option<Tree>,
    #[serde(default)]
    hyper: Option<Entries>,
}

/// A route's selector: every condition given must hold.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectDoc {
    #[serde(default)]
    ndim: Option<usize>,
    #[serde(default)]
    name_contains: Option<Vec<String>>,
    #[serde(default)]
    names: Option<Vec<String>>,
}

/// A route that does not read as a [`RouteDoc`], explained in the config's terms.
fn route_error(route: usize, e: TreeError) -> OptimError {
    let unknown = e.message.starts_with("unknown field");
    let what = match e.path.as_str() {
        "" if unknown => e.message.replacen("unknown field", "unknown key", 1),
        "select" if unknown => e.message.replacen("unknown field", "unknown selector condition", 1),
        "" => format!(
            "expected an object such as {{\"select\": {{\"ndim\": 2}}, \"optimizer\": \"sgd\"}}, {}",
            e.message
        ),
        "select" => format!(
            "`select` must be an object such as {{\"ndim\": 2, \"name_contains\": [\"enc\"]}}, {}",
            e.message
        ),
        "select.ndim" => format!(
            "`select.ndim` must be a number of dimensions (0, 1, 2, ...), {}",
            e.message
        ),
        "hyper" => format!(
            "`hyper` must be an object of hyperparameters, such as {{\"lr\": 0.01}}, {}",
            e.message
        ),
        path => match ["name_contains", "names"]
            .into_iter()
            .find(|k| path.starts_with(&format!("select.{k}")))
        {
            Some(k) => format!(
                "`select.{k}` must be a list of strings, such as [\"enc\"]; `{path}`: {}",
                e.message
            ),
            None => e.to_string(),
        },
    };
    OptimError::Config(format!("partition route {route}: {what}"))
}

impl SelectDoc {
    fn select(self, route: usize) -> Result<RouteSelect> {
        let mut select = RouteSelect::all();
        if let Some(ndim) = self.ndim {
            select = select.ndim(ndim);
        }
        select.name = match (self.name_contains, self.names) {
            (Some(_), Some(_)) => {
                return Err(OptimError::Config(format!(
                "partition route {route}: give `select.name_contains` or `select.names`, not both"
            )))
            }
            (Some(parts), None) => Some(Selector::NameContains(parts)),
            (None, Some(names)) => Some(Selector::Names(names)),
            (None, None) => None,
        };
        Ok(select)
    }
}

/// A route's optimizer config: `"optimizer"` as a config object, or as a name with its
/// hyperparameters under `"hyper"` (the conformance cases' form).
fn route_config(route: usize, doc: RouteDoc) -> Result<Tree> {
    let context = format!("partition route {route}");
    match (doc.optimizer, doc.hyper) {
        (Some(Tree::Map(config)), None) => Ok(Tree::Map(config)),
        (Some(Tree::Str(name)), hyper) => {
            let mut config = hyper.map(|h| h.0).unwrap_or_default();
            if lookup(&config, OPTIMIZER_KEY).is_some() {
                return Err(OptimError::Config(format!(
                    "{context}: `hyper` holds hyperparameters; the optimizer is named by the route's `optimizer`"
                )));
            }
            config.push((OPTIMIZER_KEY.into(), Tree::Str(name)));
            Ok(Tree::Map(config))
        }
        (Some(Tree::Map(_)), Some(_)) => Err(OptimError::Config(format!(
            "{context}: give the hyperparameters inside `optimizer` ({{\"optimizer\": \"adamw\", \"lr\": 0.001}}), \
             or name the optimizer as a string and give them under `hyper`, not both"
        ))),
        (Some(other), _) => Err(OptimError::Config(format!(
            "{context}: `optimizer` must be a name (\"adamw\") or a config ({{\"optimizer\": \"adamw\", ...}}), got {other}"
        ))),
        (None, _) => Err(OptimError::Config(format!(
            "{context}: missing `optimizer` (a name such as \"adamw\", or a config)"
        ))),
    }
}

/// The error for a key of a partition's config that is not one of `valid`.
fn unknown_key(key: &str, valid: &[&str], note: &str) -> OptimError {
    let hint = closest(key, valid.iter().copied())
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    OptimError::Config(format!(
        "{PARTITION}: unknown key `{key}`{hint}; valid: {}{note}",
        valid.join(", ")
    ))
}

/// Builds a partition: `{"optimizer": "partition", "routes": [{"select": {...},
/// "optimizer": {...}}, ..., {"optimizer": {...}}]}`, each route's optimizer built by
/// this registry.
fn build_partition<T: Scalar>(reg: &Registry, config: &Config) -> Result<Box<dyn Optimizer<T>>> {
    let valid = [OPTIMIZER_KEY, ROUTES_KEY];
    if let Some((k, _)) = config.iter().find(|(k, _)| !valid.contains(&k.as_str())) {
        return Err(unknown_key(
            k,
            &valid,
            " (a partition has no hyperparameters of its own: give them to each route's optimizer)",
        ));
    }
    let Some(Tree::List(routes)) = lookup(config, ROUTES_KEY) else {
        return Err(OptimError::Config(
            "partition: give its routes as `\"routes\": [{\"select\": {\"ndim\": 2}, \
             \"optimizer\": {\"optimizer\": \"sgd\"}}, {\"optimizer\": {\"optimizer\": \"adamw\"}}]`"
                .into(),
        ));
    };
    let mut built = Vec::with_capacity(routes.len());
    for (i, route) in routes.iter().enumerate() {
        let mut doc: RouteDoc = from_tree(route, "").map_err(|e| route_error(i, e))?;
        let select = match doc.select.take() {
            Some(s) => s.select(i)?,
            None => RouteSelect::all(),
        };
        let optimizer = reg
            .build_tree::<T>(&route_config(i, doc)?)
            .map_err(|e| in_route(i, e))?;
        built.push(Route::new(select, optimizer));
    }
    Ok(Box::new(Partition::new(built)?))
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Every zoo optimizer and the survey's named presets.
    pub fn zoo() -> Self {
        let mut r = Registry::new();
        crate::register_zoo(&mut r);
        let partition = r.register_partition();
        debug_assert!(partition.is_ok(), "{partition:?}");
        r
    }

    /// Adds `partition`: one optimizer of this registry per route, each parameter going to
    /// the first route whose selector matches it (see [`Partition`]):
    ///
    /// ```json
    /// {"optimizer": "partition", "routes": [
    ///     {"select": {"ndim": 2, "name_contains": ["enc"]}, "optimizer": {"optimizer": "sgd", "lr": 0.1}},
    ///     {"optimizer": {"optimizer": "adamw"}}
    /// ]}
    /// ```
    ///
    /// A route's `select` takes `ndim` (exact number of dimensions), `name_contains` (any
    /// of these substrings) or `names` (exactly these); every condition given must hold,
    /// and a route without `select` takes every parameter. A route's optimizer may also be
    /// named with its hyperparameters beside it: `{"optimizer": "adamw", "hyper":
    /// {"lr": 0.001}}`. [`Registry::zoo`] has it already.
    pub fn register_partition(&mut self) -> Result<()> {
        self.add(Entry {
            name: PARTITION,
            summary:
                "Partition: one optimizer per route, each parameter routed by selector (ndim, name)"
                    .to_string(),
            hypers: &[],
            preset: Vec::new(),
            recipe: Recipe::Partition,
        })
    }

    /// Adds a generated optimizer (or wrapper rule) under its own name. Fails if the name
    /// is taken.
    pub fn register<A: Algorithm>(&mut self) -> Result<()> {
        let recipe = match A::KIND {
            AlgorithmKind::Optimizer => Recipe::Algorithm {
                f32: build_algorithm::<A, f32>,
                f64: build_algorithm::<A, f64>,
            },
            AlgorithmKind::Wrapper => Recipe::Wrapper {
                f32: build_wrapper::<A, f32>,
                f64: build_wrapper::<A, f64>,
                fixed_inner: None,
            },
        };
        self.add(Entry {
            name: A::NAME,
            summary: first_line(A::DOC),
            hypers: A::HYPERS,
            preset: Vec::new(),
            recipe,
        })
    }

    /// Registers wrapper rule `R` under `name` around the fixed inner entry `inner`, with
    /// one flat config for both (Ranger = Lookahead around RAdam) and preset values.
    pub fn register_composite<R: Algorithm>(
        &mut self,
        name: &'static str,
        summary: &str,
        inner: &'static str,
        preset: Vec<(&'static str, Value)>,
    ) -> Result<()> {
        let hypers = self.find(inner)?.hypers;
        let recipe = Recipe::Wrapper {
            f32: build_wrapper::<R, f32>,
            f64: build_wrapper::<R, f64>,
            fixed_inner: Some(inner),
        };
        self.add(Entry {
            name,
            summary: summary.to_string(),
            hypers,
            preset,
            recipe,
        })
    }

    /// Registers `name` as `base` with some hyperparameters preset; a config may still
    /// override them.
    pub fn register_preset(
        &mut self,
        name: &'static str,
        summary: &str,
        base: &'static str,
        preset: Vec<(&'static str, Value)>,
    ) -> Result<()> {
        let hypers = self.find(base)?.hypers;
        self.add(Entry {
            name,
            summary: summary.to_string(),
            hypers,
            preset,
            recipe: Recipe::Alias(base),
        })
    }

    fn add(&mut self, e: Entry) -> Result<()> {
        if self.entries.iter().any(|x| x.name == e.name) {
            return Err(OptimError::Config(format!(
                "an optimizer named `{}` is already registered",
                e.name
            )));
        }
        self.entries.push(e);
        Ok(())
    }

    /// Names of every entry users can build, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.name).collect()
    }

    /// The entry named `name`, or an error listing the names and the closest one.
    pub fn find(&self, name: &str) -> Result<&Entry> {
        self.entries.iter().find(|e| e.name == name).ok_or_else(|| {
            let names = self.names();
            let hint = closest(name, names.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            OptimError::Config(format!(
                "unknown optimizer `{name}`{hint}; valid: {}",
                names.join(", ")
            ))
        })
    }

    /// Builds the optimizer a config describes, in element type `T`.
    pub fn build<T: Scalar>(&self, config: &Value) -> Result<Box<dyn Optimizer<T>>> {
        self.build_tree(&Tree::from_value(config))
    }

    /// Builds the optimizer a config read as a [`Tree`] describes (what
    /// [`Registry::from_json`] and [`Registry::from_toml`] read, repeated keys refused and
    /// non-finite numbers kept so that they are refused by name).
    pub fn build_tree<T: Scalar>(&self, config: &Tree) -> Result<Box<dyn Optimizer<T>>> {
        let Tree::Map(map) = config else {
            return Err(OptimError::Config(
                "expected an object such as {\"optimizer\": \"adam\", \"lr\": 0.001}".into(),
            ));
        };
        let name = match lookup(map, OPTIMIZER_KEY) {
            Some(Tree::Str(name)) => name,
            Some(other) => {
                return Err(OptimError::Config(format!(
                    "`{OPTIMIZER_KEY}` must be a string, the name of an optimizer, got {other}; valid: {}",
                    self.names().join(", ")
                )))
            }
            None => return Err(OptimError::Config("missing `\"optimizer\": \"<name>\"`".into())),
        };
        let entry = self.find(name)?;
        let mut merged: Vec<(String, Tree)> = entry
            .preset
            .iter()
            .map(|(k, v)| (k.to_string(), Tree::from_value(v)))
            .collect();
        for (k, v) in map {
            set(&mut merged, k, v.clone());
        }
        // The state precision is a setting of the built optimizer, not a hyperparameter.
        let precision = match merged.iter().position(|(k, _)| k == PRECISION_KEY) {
            Some(at) => Some(state_precision::<T>(&merged.remove(at).1)?),
            None => None,
        };
        let mut built = self.build_entry::<T>(entry, merged)?;
        if let Some(p) = precision {
            built.set_state_precision(p)?;
        }
        Ok(built)
    }

    /// Builds `entry` from its merged config.
    fn build_entry<T: Scalar>(
        &self,
        entry: &Entry,
        mut merged: Vec<(String, Tree)>,
    ) -> Result<Box<dyn Optimizer<T>>> {
        match &entry.recipe {
            Recipe::Algorithm { f32, f64 } | Recipe::Wrapper { f32, f64, .. } => {
                pick::<T>(self, &merged, *f32, *f64)
            }
            Recipe::Alias(base) => {
                set(&mut merged, OPTIMIZER_KEY, Tree::Str(base.to_string()));
                self.build_tree::<T>(&Tree::Map(merged))
            }
            Recipe::Partition => pick::<T>(
                self,
                &merged,
                build_partition::<f32>,
                build_partition::<f64>,
            ),
        }
    }

    /// Builds from JSON text. A key given twice in one object is an error (JSON readers
    /// disagree on which one counts).
    pub fn from_json<T: Scalar>(&self, text: &str) -> Result<Box<dyn Optimizer<T>>> {
        let tree: Tree = serde_json::from_str(text).map_err(|e| match e.classify() {
            // Well-formed JSON that `Tree` refuses: a repeated key.
            serde_json::error::Category::Data => OptimError::Config(e.to_string()),
            _ => OptimError::Config(format!("invalid JSON: {e}")),
        })?;
        self.build_tree(&tree)
    }

    /// Builds from TOML text (`optimizer = "adamw"` and hyperparameters as keys; a wrapper's
    /// inner optimizer as an `[inner]` table).
    pub fn from_toml<T: Scalar>(&self, text: &str) -> Result<Box<dyn Optimizer<T>>> {
        let tree: Tree =
            toml::from_str(text).map_err(|e| OptimError::Config(format!("invalid TOML: {e}")))?;
        self.build_tree(&tree)
    }
}

/// The `"state_precision"` value of a config.
fn state_precision<T: Scalar>(v: &Tree) -> Result<StatePrecision> {
    let parsed = match v {
        Tree::Str(s) => StatePrecision::parse::<T>(s),
        _ => None,
    };
    parsed.ok_or_else(|| {
        OptimError::Config(format!(
            "`{PRECISION_KEY}` must be one of {}, got {v}",
            StatePrecision::choices::<T>()
        ))
    })
}

/// Calls the builder for `T`'s element type.
fn pick<T: Scalar>(
    reg: &Registry,
    map: &Config,
    f32: BuildFn<f32>,
    f64: BuildFn<f64>,
) -> Result<Box<dyn Optimizer<T>>> {
    let built: Box<dyn Any> = match T::DTYPE {
        optim_core::DType::F32 => Box::new(f32(reg, map)?),
        optim_core::DType::F64 => Box::new(f64(reg, map)?),
        other => {
            return Err(OptimError::Config(format!(
                "parameters of type {other} are not supported; use f32 or f64"
            )))
        }
    };
    built
        .downcast::<Box<dyn Optimizer<T>>>()
        .map(|b| *b)
        .map_err(|_| OptimError::Config("element type is neither f32 nor f64".into()))
}

/// Builds `config` with the zoo registry. Convenience for [`Registry::zoo`]`().build(config)`.
pub fn build<T: Scalar>(config: &Value) -> Result<Box<dyn Optimizer<T>>> {
    Registry::zoo().build(config)
}
