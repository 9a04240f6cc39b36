//! Checkpoints: the whole [`OptimizerState`] in one [safetensors] file.
//!
//! A checkpoint is an ordinary safetensors file, so Python reads it as is
//! (`safetensors.numpy.load_file(path)`):
//!
//! * every element-wise state is a tensor named `param/<parameter>/<state>`, in the
//!   optimizer's element type (`F32` or `F64`), shaped like its parameter; a wrapper's
//!   inner optimizer has its tensors under `inner/` (`inner/param/w/m`), a partition's
//!   route `i` under `route/<i>/` (`route/0/param/w/m`);
//! * everything else is in the file's `__metadata__` (string → string): `format`
//!   (`optim-checkpoint`), `format_version`, `optimizer`, `state` (JSON: hyperparameters,
//!   groups, step counts, scalar states, a wrapper's `inner` state and a partition's
//!   `routes`, each with its selector, its parameters and its state) and `checksum`
//!   (CRC-32 of all of that and every tensor's name, dtype, shape and bytes).
//!
//! Writing is atomic: the bytes go to a temporary file in the same directory, which is
//! flushed to disk and then renamed over the target, so a crash mid-save leaves the
//! previous checkpoint intact. Reading checks everything before anything is used: a
//! truncated or corrupt file, another format version, a tensor missing or not described,
//! an unsupported dtype, all fail with an error that says which; [`load_into`] then hands
//! the state to [`Optimizer::import_state`], which checks it against the optimizer and the
//! parameters (optimizer name, hyperparameters, parameter names, shapes, dtypes, missing
//! and extra states) and changes nothing unless all of it fits.
//!
//! Floats in the JSON are written so that they read back bit for bit (non-finite values
//! as the strings `"inf"`, `"-inf"`, `"nan"`); tensors are stored bit for bit, so resuming
//! from a checkpoint continues exactly as if training had not stopped.
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

use crate::error::{OptimError, Result};
use crate::group::Selector;
use crate::hyper::HyperValue;
use crate::optimizer::Optimizer;
use crate::params::Params;
use crate::partition::RouteSelect;
use crate::scalar::{DType, Scalar};
use crate::state::{
    GroupState, OptimizerState, ParamState, RouteState, TensorData, TensorState,
    STATE_FORMAT_VERSION,
};
use crate::tree::{from_tree, hyper_of, Tree};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

/// The `format` entry of every checkpoint's metadata.
pub const CHECKPOINT_FORMAT: &str = "optim-checkpoint";

/// The largest header safetensors readers accept.
const MAX_HEADER: usize = 100_000_000;

/// Writes `opt`'s whole state to `path`, atomically.
pub fn save<T: Scalar>(opt: &dyn Optimizer<T>, path: impl AsRef<Path>) -> Result<()> {
    save_checkpoint(path, &opt.export_state())
}

/// Reads the checkpoint at `path` and loads it into `opt` for `params`. Everything is
/// checked (the file, then the state against `opt` and `params`) before anything changes:
/// on error `opt` is exactly as it was.
pub fn load_into<T: Scalar>(
    opt: &mut dyn Optimizer<T>,
    params: &Params<T>,
    path: impl AsRef<Path>,
) -> Result<()> {
    let state = load_checkpoint(path)?;
    opt.import_state(&state, params)
}

/// Writes `state` to `path` as a safetensors checkpoint: to a temporary file in the same
/// directory, flushed and synced, then renamed over `path`. On error `path` is untouched
/// and the temporary file removed.
pub fn save_checkpoint(path: impl AsRef<Path>, state: &OptimizerState) -> Result<()> {
    let bytes = to_bytes(state)?;
    write_atomic(path.as_ref(), &bytes, None)
}

/// Reads and decodes the checkpoint at `path` (see [`from_bytes`]).
///
/// The 8-byte header length is read and checked first: a length beyond the end of the
/// file, or beyond what safetensors readers accept, is refused before anything else is
/// read or allocated.
pub fn load_checkpoint(path: impl AsRef<Path>) -> Result<OptimizerState> {
    let path = path.as_ref();
    let bytes = read_checkpoint_file(path)?;
    from_bytes(&bytes).map_err(|e| match e {
        OptimError::Checkpoint(msg) => {
            OptimError::Checkpoint(format!("`{}`: {msg}", path.display()))
        }
        other => other,
    })
}

/// The bytes of the file at `path`, read only once its header length fits the file and
/// the safetensors limit.
fn read_checkpoint_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let cannot_read = |e: std::io::Error| {
        OptimError::Checkpoint(format!("cannot read `{}`: {e}", path.display()))
    };
    let unreadable = |what: String| {
        OptimError::Checkpoint(format!(
            "`{}`: not a readable safetensors file (truncated or corrupt?): {what}",
            path.display()
        ))
    };
    let mut file = std::fs::File::open(path).map_err(cannot_read)?;
    let len = file.metadata().map_err(cannot_read)?.len();
    if len < 8 {
        return Err(unreadable(format!(
            "{len} bytes, shorter than the 8-byte header length"
        )));
    }
    let mut head = [0u8; 8];
    file.read_exact(&mut head).map_err(cannot_read)?;
    let claimed = u64::from_le_bytes(head);
    let rest = len - 8;
    if claimed > rest {
        return Err(unreadable(format!(
            "header too large: its length field says {claimed} bytes; the file has {rest} \
             bytes after it"
        )));
    }
    if claimed > MAX_HEADER as u64 {
        return Err(unreadable(format!(
            "header too large: its length field says {claimed} bytes; safetensors readers \
             accept at most {MAX_HEADER}"
        )));
    }
    // The tensors are as large as the optimizer's state: a file too large for memory is
    // an error, not an abort.
    let mut bytes = Vec::new();
    usize::try_from(len)
        .ok()
        .and_then(|n| bytes.try_reserve_exact(n).ok())
        .ok_or_else(|| {
            OptimError::Checkpoint(format!(
                "cannot read `{}`: {len} bytes do not fit in memory",
                path.display()
            ))
        })?;
    bytes.extend_from_slice(&head);
    file.take(rest)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    Ok(bytes)
}

/// Encodes `state` as the bytes of a safetensors checkpoint.
///
/// Fails if the state cannot be written faithfully: two tensors that would get the same
/// name, values that do not fill their shape, or a wrapped state in another format
/// version than its wrapper.
pub fn to_bytes(state: &OptimizerState) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Tensor<'_>)> = Vec::new();
    let doc = encode_level(state, "", state.format_version, &mut tensors)?;
    let state_json = serde_json::to_string(&doc)
        .map_err(|e| OptimError::Checkpoint(format!("cannot encode the state: {e}")))?;
    let version = state.format_version.to_string();
    let checksum = checksum(
        &version,
        &state.optimizer,
        &state_json,
        tensors
            .iter()
            .map(|(k, t)| (k.as_str(), t.dtype, t.shape, &t.bytes[..])),
    );
    // The safetensors layout, written here rather than by `safetensors::serialize` so that
    // the same state always gives the same bytes (its metadata map has no fixed order):
    // an 8-byte little-endian header length, the JSON header padded with spaces to a
    // multiple of 8, then every tensor's bytes, in name order.
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| tensors[a].0.cmp(&tensors[b].0));
    if let Some(w) = order
        .windows(2)
        .find(|w| tensors[w[0]].0 == tensors[w[1]].0)
    {
        return Err(OptimError::Checkpoint(format!(
            "two state tensors would both be stored as `{}`",
            tensors[w[0]].0
        )));
    }
    let mut header = Map::new();
    let mut metadata = Map::new();
    for (k, v) in [
        ("checksum", checksum),
        ("format", CHECKPOINT_FORMAT.to_string()),
        ("format_version", version),
        ("optimizer", state.optimizer.clone()),
        ("state", state_json),
    ] {
        metadata.insert(k.to_string(), Value::String(v));
    }
    header.insert("__metadata__".to_string(), Value::Object(metadata));
    let mut offset = 0usize;
    for &i in &order {
        let (key, t) = &tensors[i];
        let end = offset + t.bytes.len();
        header.insert(
            key.clone(),
            json!({"data_offsets": [offset, end], "dtype": t.dtype.to_string(), "shape": t.shape}),
        );
        offset = end;
    }
    let mut head = Value::Object(header).to_string().into_bytes();
    head.resize(head.len().next_multiple_of(8), b' ');
    if head.len() > MAX_HEADER {
        return Err(OptimError::Checkpoint(format!(
            "the metadata takes {} bytes; safetensors readers accept at most {MAX_HEADER}",
            head.len()
        )));
    }
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    for &i in &order {
        out.extend_from_slice(&tensors[i].1.bytes);
    }
    Ok(out)
}

/// Decodes the bytes of a checkpoint, checking all of it: the safetensors structure
/// (a truncated or corrupt file is an error), the format and its version, the checksum,
/// the metadata, and that the file holds exactly the tensors the metadata describes,
/// each `F32` or `F64` with values for its whole shape.
///
/// Never panics, whatever the bytes.
pub fn from_bytes(bytes: &[u8]) -> Result<OptimizerState> {
    let (header_len, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
        OptimError::Checkpoint(format!(
            "not a readable safetensors file (truncated or corrupt?): {e}"
        ))
    })?;
    let data = bytes.get(8 + header_len..).unwrap_or_default();
    let meta = header.metadata().as_ref().ok_or_else(|| {
        OptimError::Checkpoint(
            "no `__metadata__`: a safetensors file, but not an optimizer checkpoint".into(),
        )
    })?;
    let entry = |key: &str| {
        meta.get(key)
            .map(String::as_str)
            .ok_or_else(|| OptimError::Checkpoint(format!("metadata entry `{key}` is missing")))
    };
    let format = meta.get("format").map(String::as_str);
    if format != Some(CHECKPOINT_FORMAT) {
        return Err(OptimError::Checkpoint(format!(
            "metadata `format` is {}, expected `{CHECKPOINT_FORMAT}`: not an optimizer \
             checkpoint",
            format.map_or("missing".to_string(), |f| format!("`{f}`"))
        )));
    }
    let version_text = entry("format_version")?;
    let version: u32 = version_text.parse().map_err(|_| {
        OptimError::Checkpoint(format!(
            "metadata `format_version` is `{version_text}`, not a version number"
        ))
    })?;
    if version != STATE_FORMAT_VERSION {
        return Err(OptimError::VersionMismatch {
            saved: version,
            supported: STATE_FORMAT_VERSION,
        });
    }
    let optimizer = entry("optimizer")?;
    let state_json = entry("state")?;
    let saved_sum = entry("checksum")?;

    // The tensors the file holds, by name.
    let mut stored = HashMap::new();
    for (name, info) in header.tensors() {
        let (start, end) = info.data_offsets;
        let Some(data) = data.get(start..end) else {
            return Err(OptimError::Checkpoint(format!(
                "tensor `{name}` lies outside the file"
            )));
        };
        let view = Stored {
            dtype: info.dtype,
            shape: &info.shape,
            data,
        };
        stored.insert(name, view);
    }
    let tree: Tree = serde_json::from_str(state_json)
        .map_err(|e| OptimError::Checkpoint(format!("metadata `state` is not JSON: {e}")))?;
    let doc: LevelDoc =
        from_tree(&tree, "state").map_err(|e| OptimError::Checkpoint(format!("metadata {e}")))?;
    let mut used = Used::default();
    let state = decode_level(doc, "state", "", version, &stored, &mut used)?;
    let mut extra: Vec<&str> = stored
        .keys()
        .map(String::as_str)
        .filter(|k| !used.set.contains(*k))
        .collect();
    extra.sort_unstable();
    if let Some(first) = extra.first() {
        return Err(OptimError::Checkpoint(format!(
            "tensor `{first}` is in the file but not described by its metadata{}",
            if extra.len() > 1 {
                format!(" ({} such tensors)", extra.len())
            } else {
                String::new()
            }
        )));
    }
    let sum = checksum(
        version_text,
        optimizer,
        state_json,
        used.order.iter().map(|key| {
            let v = &stored[key];
            (key.as_str(), v.dtype, v.shape, v.data)
        }),
    );
    // Fuzzing (cargo fuzz sets `cfg(fuzzing)`) skips this check so that mutated
    // metadata reaches the decoding and import checks behind it.
    if sum != saved_sum && !cfg!(fuzzing) {
        return Err(OptimError::Checkpoint(format!(
            "checksum mismatch (stored {saved_sum}, computed {sum}): the file is corrupt"
        )));
    }
    if state.optimizer != optimizer {
        return Err(OptimError::Checkpoint(format!(
            "metadata `optimizer` is `{optimizer}`, but its state is for `{}`",
            state.optimizer
        )));
    }
    Ok(state)
}

/// Tensor names described so far, in order.
#[derive(Default)]
struct Used {
    order: Vec<String>,
    set: HashSet<String>,
}

/// A tensor as stored in the file.
struct Stored<'a> {
    dtype: Dtype,
    shape: &'a [usize],
    data: &'a [u8],
}

// ---------------------------------------------------------------------------------------
// Writing

/// One tensor ready for safetensors: little-endian bytes.
struct Tensor<'a> {
    dtype: Dtype,
    shape: &'a [usize],
    bytes: Vec<u8>,
}

fn tensor_key(prefix: &str, param: &str, state: &str) -> String {
    format!("{prefix}param/{param}/{state}")
}

// The metadata's `state` JSON, as mirror types of the state. Fields are declared in
// alphabetical order, the order the format has always been written in (a serde_json map
// sorts its keys), so that the same state gives the same bytes as before.

/// One level: the whole state of an optimizer, a wrapper's `inner` one, or a route's.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelDoc {
    /// Written only by optimizers with optimizer-wide states.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    globals: Vec<(String, FloatDoc)>,
    groups: Vec<GroupDoc>,
    hyper: Vec<(String, HyperDoc)>,
    inner: Option<Box<LevelDoc>>,
    optimizer: String,
    params: Vec<ParamDoc>,
    /// Written only by a partition, so that every other optimizer's file is as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<RouteDoc>,
    step: u64,
}

/// One parameter: its step count, its scalar states, and the names of its tensors (the
/// tensors themselves are the file's).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamDoc {
    name: String,
    scalars: Vec<(String, FloatDoc)>,
    step: u64,
    tensors: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDoc {
    overrides: Vec<(String, HyperDoc)>,
    selector: NamesDoc,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteDoc {
    params: Vec<String>,
    select: SelectDoc,
    state: LevelDoc,
}

/// A name selector: `{"names": [...]}` or `{"name_contains": [...]}`.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamesDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name_contains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    names: Option<Vec<String>>,
}

/// A route's selector as the registry writes it: `{"ndim": 2, "name_contains": [...]}`,
/// `{}` for a catch-all.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name_contains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ndim: Option<usize>,
}

impl NamesDoc {
    fn of(selector: &Selector) -> NamesDoc {
        match selector {
            Selector::Names(n) => NamesDoc {
                names: Some(n.clone()),
                ..NamesDoc::default()
            },
            Selector::NameContains(n) => NamesDoc {
                name_contains: Some(n.clone()),
                ..NamesDoc::default()
            },
        }
    }

    /// The selector, if any; `path` names the object for the error of giving both.
    fn selector(self, path: &str) -> Result<Option<Selector>> {
        match (self.names, self.name_contains) {
            (Some(_), Some(_)) => Err(bad(path, "give `names` or `name_contains`, not both")),
            (Some(n), None) => Ok(Some(Selector::Names(n))),
            (None, Some(n)) => Ok(Some(Selector::NameContains(n))),
            (None, None) => Ok(None),
        }
    }
}

/// A float that reads back bit for bit: a JSON number, or `"inf"`, `"-inf"`, `"nan"`
/// (JSON has no non-finite numbers).
#[derive(Clone, Copy)]
struct FloatDoc(f64);

impl Serialize for FloatDoc {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            x if x.is_finite() => s.serialize_f64(x),
            x if x.is_nan() => s.serialize_str("nan"),
            x if x > 0.0 => s.serialize_str("inf"),
            _ => s.serialize_str("-inf"),
        }
    }
}

/// The float a non-finite string stands for.
fn non_finite(s: &str) -> Option<f64> {
    match s {
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => None,
    }
}

impl<'de> Deserialize<'de> for FloatDoc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<FloatDoc, D::Error> {
        let tree = Tree::deserialize(d)?;
        match tree {
            Tree::Float(x) => Ok(FloatDoc(x)),
            Tree::Int(i) => Ok(FloatDoc(i as f64)),
            Tree::UInt(u) => Ok(FloatDoc(u as f64)),
            other => other
                .as_str()
                .and_then(non_finite)
                .map(FloatDoc)
                .ok_or_else(|| {
                    serde::de::Error::custom(format_args!(
                        "expected a number (or \"inf\", \"-inf\", \"nan\"), got {other}"
                    ))
                }),
        }
    }
}

/// A hyperparameter value: a float as [`FloatDoc`], a bool, an integer.
#[derive(Clone, Copy)]
struct HyperDoc(HyperValue);

impl Serialize for HyperDoc {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            HyperValue::Float(x) => FloatDoc(x).serialize(s),
            HyperValue::Bool(b) => s.serialize_bool(b),
            HyperValue::Int(i) => s.serialize_i64(i),
        }
    }
}

impl<'de> Deserialize<'de> for HyperDoc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<HyperDoc, D::Error> {
        // A stored value was valid when saved, infinite ones included (Prodigy's
        // growth_rate): the checkpoint's non-finite strings, then the rules of configs.
        let tree = Tree::deserialize(d)?;
        match tree.as_str().and_then(non_finite) {
            Some(x) => Ok(HyperDoc(HyperValue::Float(x))),
            None => hyper_of(&tree)
                .map(HyperDoc)
                .map_err(serde::de::Error::custom),
        }
    }
}

fn float_pairs(pairs: &[(String, f64)]) -> Vec<(String, FloatDoc)> {
    pairs
        .iter()
        .map(|(n, x)| (n.clone(), FloatDoc(*x)))
        .collect()
}

fn hyper_pairs(pairs: &[(String, HyperValue)]) -> Vec<(String, HyperDoc)> {
    pairs
        .iter()
        .map(|(n, v)| (n.clone(), HyperDoc(*v)))
        .collect()
}

/// The metadata of one level (a wrapper's inner state is a nested level), collecting its
/// tensors under `prefix`.
fn encode_level<'a>(
    state: &'a OptimizerState,
    prefix: &str,
    version: u32,
    tensors: &mut Vec<(String, Tensor<'a>)>,
) -> Result<LevelDoc> {
    if state.format_version != version {
        return Err(OptimError::Checkpoint(format!(
            "the wrapped state has format version {}, its wrapper {version}",
            state.format_version
        )));
    }
    let mut params = Vec::with_capacity(state.params.len());
    for p in &state.params {
        let mut names = Vec::with_capacity(p.tensors.len());
        for t in &p.tensors {
            let key = tensor_key(prefix, &p.param, &t.name);
            let expected = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if expected != Some(t.data.len()) {
                return Err(OptimError::Checkpoint(format!(
                    "`{}`: state tensor `{}` has {} values for shape {:?}",
                    p.param,
                    t.name,
                    t.data.len(),
                    t.shape
                )));
            }
            let (dtype, bytes) = match &t.data {
                TensorData::F32(v) => {
                    (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                }
                TensorData::F64(v) => {
                    (Dtype::F64, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                }
                TensorData::Bf16(v) => (
                    Dtype::BF16,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
                TensorData::U8(v) => (Dtype::U8, v.clone()),
            };
            tensors.push((
                key,
                Tensor {
                    dtype,
                    shape: &t.shape,
                    bytes,
                },
            ));
            names.push(t.name.clone());
        }
        params.push(ParamDoc {
            name: p.param.clone(),
            scalars: float_pairs(&p.scalars),
            step: p.step,
            tensors: names,
        });
    }
    let inner = match &state.inner {
        Some(inner) => Some(Box::new(encode_level(
            inner,
            &format!("{prefix}inner/"),
            version,
            tensors,
        )?)),
        None => None,
    };
    let mut routes = Vec::with_capacity(state.routes.len());
    for (i, route) in state.routes.iter().enumerate() {
        let names = route
            .select
            .name
            .as_ref()
            .map(NamesDoc::of)
            .unwrap_or_default();
        routes.push(RouteDoc {
            params: route.params.clone(),
            select: SelectDoc {
                name_contains: names.name_contains,
                names: names.names,
                ndim: route.select.ndim,
            },
            state: encode_level(&route.state, &route_prefix(prefix, i), version, tensors)?,
        });
    }
    Ok(LevelDoc {
        globals: float_pairs(&state.globals),
        groups: state
            .groups
            .iter()
            .map(|g| GroupDoc {
                overrides: hyper_pairs(&g.overrides),
                selector: NamesDoc::of(&g.selector),
            })
            .collect(),
        hyper: hyper_pairs(&state.hyper),
        inner,
        optimizer: state.optimizer.clone(),
        params,
        routes,
        step: state.step,
    })
}

/// Where route `index`'s tensors go: `route/<index>/` under the level's prefix.
fn route_prefix(prefix: &str, index: usize) -> String {
    format!("{prefix}route/{index}/")
}

/// CRC-32 of the metadata and of every tensor (name, dtype, shape, bytes), each
/// length-prefixed, as `crc32:xxxxxxxx`.
fn checksum<'a>(
    version: &str,
    optimizer: &str,
    state: &str,
    tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>,
) -> String {
    let mut h = crc32fast::Hasher::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(CHECKPOINT_FORMAT.as_bytes());
    field(version.as_bytes());
    field(optimizer.as_bytes());
    field(state.as_bytes());
    for (key, dtype, shape, data) in tensors {
        field(key.as_bytes());
        field(dtype.to_string().as_bytes());
        let dims: Vec<u8> = shape
            .iter()
            .flat_map(|&d| (d as u64).to_le_bytes())
            .collect();
        field(&dims);
        field(data);
    }
    format!("crc32:{:08x}", h.finalize())
}

// ---------------------------------------------------------------------------------------
// Reading

/// A metadata error at `path` (`state.params[2].step`).
fn bad(path: &str, what: &str) -> OptimError {
    OptimError::Checkpoint(format!("metadata `{path}`: {what}"))
}

fn floats(pairs: Vec<(String, FloatDoc)>) -> Vec<(String, f64)> {
    pairs.into_iter().map(|(n, x)| (n, x.0)).collect()
}

fn hypers(pairs: Vec<(String, HyperDoc)>) -> Vec<(String, HyperValue)> {
    pairs.into_iter().map(|(n, v)| (n, v.0)).collect()
}

/// One level of the state metadata at `path`, with the tensors it names taken from
/// `stored` (their names added to `used`).
fn decode_level(
    doc: LevelDoc,
    path: &str,
    prefix: &str,
    version: u32,
    stored: &HashMap<String, Stored<'_>>,
    used: &mut Used,
) -> Result<OptimizerState> {
    let groups = doc
        .groups
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let spath = format!("{path}.groups[{i}].selector");
            let selector = g.selector.selector(&spath)?.ok_or_else(|| {
                bad(
                    &spath,
                    "expected {\"names\": [...]} or {\"name_contains\": [...]}",
                )
            })?;
            Ok(GroupState {
                selector,
                overrides: hypers(g.overrides),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut params = Vec::with_capacity(doc.params.len());
    for p in doc.params {
        let mut tensors = Vec::with_capacity(p.tensors.len());
        for tname in p.tensors {
            let key = tensor_key(prefix, &p.name, &tname);
            let view = stored.get(&key).ok_or_else(|| {
                OptimError::Checkpoint(format!(
                    "tensor `{key}` (state `{tname}` of parameter `{}`) is missing from the file",
                    p.name
                ))
            })?;
            if !used.set.insert(key.clone()) {
                return Err(OptimError::Checkpoint(format!(
                    "tensor `{key}` is described twice"
                )));
            }
            tensors.push(TensorState {
                name: tname,
                shape: view.shape.to_vec(),
                data: tensor_data(&key, view.dtype, view.data)?,
            });
            used.order.push(key);
        }
        params.push(ParamState {
            param: p.name,
            step: p.step,
            tensors,
            scalars: floats(p.scalars),
        });
    }
    let inner = match doc.inner {
        Some(inner) => Some(Box::new(decode_level(
            *inner,
            &format!("{path}.inner"),
            &format!("{prefix}inner/"),
            version,
            stored,
            used,
        )?)),
        None => None,
    };
    let mut routes = Vec::with_capacity(doc.routes.len());
    for (i, r) in doc.routes.into_iter().enumerate() {
        let rpath = format!("{path}.routes[{i}]");
        let names = NamesDoc {
            name_contains: r.select.name_contains,
            names: r.select.names,
        };
        routes.push(RouteState {
            select: RouteSelect {
                ndim: r.select.ndim,
                name: names.selector(&format!("{rpath}.select"))?,
            },
            params: r.params,
            state: decode_level(
                r.state,
                &format!("{rpath}.state"),
                &route_prefix(prefix, i),
                version,
                stored,
                used,
            )?,
        });
    }
    Ok(OptimizerState {
        format_version: version,
        optimizer: doc.optimizer,
        hyper: hypers(doc.hyper),
        groups,
        step: doc.step,
        params,
        globals: floats(doc.globals),
        inner,
        routes,
    })
}

/// Little-endian bytes of an `F32`, `F64`, `BF16` or `U8` tensor (length already checked against the
/// shape by safetensors).
fn tensor_data(key: &str, dtype: Dtype, bytes: &[u8]) -> Result<TensorData> {
    match dtype {
        Dtype::F32 => Ok(TensorData::F32(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )),
        Dtype::F64 => Ok(TensorData::F64(
            bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        )),
        Dtype::BF16 => Ok(TensorData::Bf16(
            bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        )),
        Dtype::U8 => Ok(TensorData::U8(bytes.to_vec())),
        other => Err(OptimError::Checkpoint(format!(
            "tensor `{key}` has dtype {other}; optimizer state is {}, {}, {} or {} (8-bit codes)",
            DType::F32.name().to_uppercase(),
            DType::F64.name().to_uppercase(),
            DType::Bf16.name().to_uppercase(),
            DType::U8.name().to_uppercase()
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// Atomic write

/// Writes `bytes` to a fresh temporary file next to `path` (next to the file it names,
/// if `path` is a symbolic link), syncs it, and renames it over that file; removes the
/// temporary file on any error. `fail_after` (tests) simulates a crash after that many
/// bytes.
fn write_atomic(path: &Path, bytes: &[u8], fail_after: Option<usize>) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let err = |what: &str, e: std::io::Error| {
        OptimError::Checkpoint(format!("cannot write `{}`: {what}: {e}", path.display()))
    };
    // Renaming onto a link would replace the link itself: write where it points instead.
    let target = follow_links(path)?;
    if target.file_name().is_none() {
        return Err(OptimError::Checkpoint(format!(
            "`{}` is not a file path",
            path.display()
        )));
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A short name whatever the target's (a name derived from it would pass the 255-byte
    // limit for long ones), unique per process and call; `create_new` skips any left by
    // an earlier process with the same id.
    let mut attempt = 0;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(
            ".optim-ckpt-{}-{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 64 => attempt += 1,
            Err(e) => return Err(err("cannot create a temporary file beside it", e)),
        }
    };
    let written = (|| {
        match fail_after {
            Some(n) => {
                file.write_all(&bytes[..n.min(bytes.len())])
                    .map_err(|e| err("write", e))?;
                return Err(err(
                    "write",
                    std::io::Error::other("simulated failure mid-write"),
                ));
            }
            None => file.write_all(bytes).map_err(|e| err("write", e))?,
        }
        file.flush().map_err(|e| err("flush", e))?;
        file.sync_all().map_err(|e| err("sync", e))?;
        std::fs::rename(&tmp, &target).map_err(|e| err("rename", e))
    })();
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename itself durable (best effort: not every platform can sync a
    // directory).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `path` with every symbolic link at its end followed (a dangling link gives the path
/// it points to); other errors are left for the write itself to report.
fn follow_links(path: &Path) -> Result<std::path::PathBuf> {
    // Linux's own limit on links followed in one lookup.
    const MAX_LINKS: usize = 40;
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&current).map_err(|e| {
                    OptimError::Checkpoint(format!(
                        "cannot write `{}`: cannot read the link `{}`: {e}",
                        path.display(),
                        current.display()
                    ))
                })?;
                // A relative link is relative to the directory holding it.
                current = match current.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(OptimError::Checkpoint(format!(
        "cannot write `{}`: more than {MAX_LINKS} levels of symbolic links (a loop?)",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("optim-ckpt-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_failed_write_leaves_the_previous_file_and_no_temporary() {
        let dir = tmp_dir("atomic");
        let path = dir.join("ckpt.safetensors");
        write_atomic(&path, b"previous checkpoint", None).unwrap();
        for n in [0, 3, 1000] {
            let err = write_atomic(&path, b"new checkpoint, longer than before", Some(n))
                .unwrap_err()
                .to_string();
            assert!(err.contains("simulated failure mid-write"), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), b"previous checkpoint");
            let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
            assert_eq!(left.len(), 1, "temporary file left behind: {left:?}");
        }
        write_atomic(&path, b"new", None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn floats_round_trip_bit_for_bit() {
        for x in [
            0.0,
            -0.0,
            1.0,
            0.1,
            1e-308,
            f64::MIN_POSITIVE / 3.0,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            1.0 / 3.0,
            0.999_999_999_999_999_9,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let text = serde_json::to_string(&FloatDoc(x)).unwrap();
            let back: FloatDoc = serde_json::from_str(&text).unwrap();
            assert_eq!(back.0.to_bits(), x.to_bits(), "{x:e} written as {text}");
            let text = serde_json::to_string(&HyperDoc(HyperValue::Float(x))).unwrap();
            let h = serde_json::from_str::<HyperDoc>(&text).unwrap().0;
            assert_eq!(h.as_f64().map(f64::to_bits), Some(x.to_bits()));
            assert!(matches!(h, HyperValue::Float(_)), "{x} read back as {h:?}");
        }
        let nan = serde_json::to_string(&FloatDoc(f64::NAN)).unwrap();
        assert!(serde_json::from_str::<FloatDoc>(&nan).unwrap().0.is_nan());
        let int = serde_json::to_string(&HyperDoc(HyperValue::Int(-3))).unwrap();
        assert_eq!(
            serde_json::from_str::<HyperDoc>(&int).unwrap().0,
            HyperValue::Int(-3)
        );
    }
}
