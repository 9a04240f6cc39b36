//! Documents (configs, checkpoint metadata, conformance cases) as a plain tree, and typed
//! reading from it.
//!
//! A [`Tree`] is what JSON, TOML or a [`serde_json::Value`] hold, read through serde, with
//! two things a `Value` loses kept: a key given twice is an error (not "last one wins"),
//! and a non-finite float (TOML's `nan`, `inf`) stays a float, so it can be refused by
//! name rather than read as `null`. [`from_tree`] then fills a `#[derive(Deserialize)]`
//! type from a tree, with errors that name the path of the value at fault
//! (`params[2].step`), say what was expected and what was found, and suggest the closest
//! known field for an unknown one. [`hyper_value`] is the one reading of a
//! hyperparameter value, for configs and checkpoints alike.

use crate::error::{OptimError, Result};
use crate::hyper::HyperValue;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// A document value. Maps keep their keys in the order given, each key once.
#[derive(Clone, Debug, PartialEq)]
pub enum Tree {
    /// JSON `null`.
    Null,
    /// A bool.
    Bool(bool),
    /// A negative integer, or one read as signed.
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// A float, possibly non-finite (TOML's `nan`, `inf`).
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<Tree>),
    /// An object or table: `(key, value)` in the order given, no key twice.
    Map(Vec<(String, Tree)>),
}

impl Tree {
    /// Reads a serde_json value (which cannot hold a repeated key or a non-finite float).
    pub fn from_value(value: &serde_json::Value) -> Tree {
        use serde_json::Value;
        match value {
            Value::Null => Tree::Null,
            Value::Bool(b) => Tree::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Tree::UInt(u),
                (None, Some(i)) => Tree::Int(i),
                _ => Tree::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Tree::Str(s.clone()),
            Value::Array(a) => Tree::List(a.iter().map(Tree::from_value).collect()),
            Value::Object(m) => Tree::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), Tree::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// The value at `key` of a map (`None` for a missing key or a tree that is not a map).
    pub fn get(&self, key: &str) -> Option<&Tree> {
        match self {
            Tree::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Tree::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Tree {
    /// As JSON, with non-finite floats written `nan`, `inf`, `-inf` (as TOML writes them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tree::Null => f.write_str("null"),
            Tree::Bool(b) => write!(f, "{b}"),
            Tree::Int(i) => write!(f, "{i}"),
            Tree::UInt(u) => write!(f, "{u}"),
            Tree::Float(x) if x.is_finite() => write!(f, "{}", serde_json::Value::from(*x)),
            Tree::Float(x) if x.is_nan() => f.write_str("nan"),
            Tree::Float(x) => f.write_str(if *x > 0.0 { "inf" } else { "-inf" }),
            Tree::Str(s) => write!(f, "{}", serde_json::Value::from(s.as_str())),
            Tree::List(items) => {
                f.write_str("[")?;
                for (i, t) in items.iter().enumerate() {
                    write!(f, "{}{t}", if i > 0 { "," } else { "" })?;
                }
                f.write_str("]")
            }
            Tree::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    let k = serde_json::Value::from(k.as_str());
                    write!(f, "{}{k}:{v}", if i > 0 { "," } else { "" })?;
                }
                f.write_str("}")
            }
        }
    }
}

/// The entries of a map, each key once: the [`Tree::Map`] payload on its own, for a
/// `#[serde(flatten)]` field that collects every key a type does not name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entries(pub Vec<(String, Tree)>);

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON or TOML value")
    }
    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }
    fn visit_none<E>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        Tree::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Tree, E> {
        Ok(Tree::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Tree, E> {
        Ok(if i >= 0 {
            Tree::UInt(i as u64)
        } else {
            Tree::Int(i)
        })
    }
    fn visit_u64<E>(self, u: u64) -> Result<Tree, E> {
        Ok(Tree::UInt(u))
    }
    fn visit_f64<E>(self, x: f64) -> Result<Tree, E> {
        Ok(Tree::Float(x))
    }
    fn visit_str<E>(self, s: &str) -> Result<Tree, E> {
        Ok(Tree::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Tree, E> {
        Ok(Tree::Str(s))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(t) = seq.next_element()? {
            items.push(t);
        }
        Ok(Tree::List(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Tree, A::Error> {
        EntriesVisitor.visit_map(map).map(|e| Tree::Map(e.0))
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
        let mut entries: Vec<(String, Tree)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            // Readers disagree on which of two equal keys wins (serde_json keeps the
            // last, others the first): refuse rather than guess.
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key `{key}`: each key may be given once"
                )));
            }
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Entries(entries))
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tree, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Entries, D::Error> {
        d.deserialize_map(EntriesVisitor)
    }
}

/// Why a tree does not fit the type asked of [`from_tree`].
#[derive(Clone, Debug, PartialEq)]
pub struct TreeError {
    /// Where: the root path given to [`from_tree`] followed by `.key` and `[index]` steps
    /// (`state.params[2].step`).
    pub path: String,
    /// What is wrong (`expected a non-negative integer, got -3`).
    pub message: String,
    /// Whether `path` is final (set where the error arose; outer levels keep it).
    placed: bool,
}

impl TreeError {
    fn at(mut self, path: &str) -> TreeError {
        if !self.placed {
            self.path = path.to_string();
            self.placed = true;
        }
        self
    }
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for TreeError {}

/// A value as messages show it: `-3`, `"yes"`, `a list`.
fn shown(u: &Unexpected<'_>) -> String {
    match u {
        Unexpected::Bool(b) => b.to_string(),
        Unexpected::Unsigned(u) => u.to_string(),
        Unexpected::Signed(i) => i.to_string(),
        Unexpected::Float(x) => Tree::Float(*x).to_string(),
        Unexpected::Str(s) => Tree::Str(s.to_string()).to_string(),
        Unexpected::Unit => "null".into(),
        Unexpected::Seq => "a list".into(),
        Unexpected::Map => "an object".into(),
        other => other.to_string(),
    }
}

/// What serde's own visitors expect, in the words of these documents.
fn expected(exp: &dyn de::Expected) -> String {
    let e = exp.to_string();
    match e.as_str() {
        "u64" | "u32" | "usize" => "a non-negative integer".into(),
        "i64" | "i32" => "an integer".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" => "a bool".into(),
        "a sequence" => "a list".into(),
        "a tuple of size 2" => "a [name, value] pair".into(),
        _ if e.starts_with("struct ") => "an object".into(),
        _ => e,
    }
}

impl de::Error for TreeError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        TreeError {
            path: String::new(),
            message: msg.to_string(),
            placed: false,
        }
    }
    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!(
            "expected {}, got {}",
            expected(exp),
            shown(&unexp)
        ))
    }
    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::invalid_type(unexp, exp)
    }
    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!("expected {}, got {len} items", expected(exp)))
    }
    fn unknown_field(field: &str, valid: &'static [&'static str]) -> Self {
        let hint = crate::suggest::closest(field, valid.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        Self::custom(format_args!(
            "unknown field `{field}`{hint}; valid: {}",
            valid.join(", ")
        ))
    }
    fn missing_field(field: &'static str) -> Self {
        Self::custom(format_args!("field `{field}` is missing"))
    }
    fn duplicate_field(field: &'static str) -> Self {
        Self::custom(format_args!(
            "duplicate key `{field}`: each key may be given once"
        ))
    }
}

/// Reads `T` from `tree`; errors name their path below `root` (`""`: paths start at the
/// first key).
pub fn from_tree<T: DeserializeOwned>(tree: &Tree, root: &str) -> Result<T, TreeError> {
    T::deserialize(At {
        tree,
        path: root.to_string(),
    })
}

/// A deserializer of one node that knows its path.
struct At<'a> {
    tree: &'a Tree,
    path: String,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'de> Deserializer<'de> for At<'_> {
    type Error = TreeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TreeError> {
        let path = &self.path;
        let r = match self.tree {
            Tree::Null => v.visit_unit(),
            Tree::Bool(b) => v.visit_bool(*b),
            Tree::Int(i) => v.visit_i64(*i),
            Tree::UInt(u) => v.visit_u64(*u),
            Tree::Float(x) => v.visit_f64(*x),
            Tree::Str(s) => v.visit_str(s),
            Tree::List(items) => v.visit_seq(Seq {
                items: items.iter().enumerate(),
                path,
            }),
            Tree::Map(entries) => v.visit_map(Map {
                entries: entries.iter(),
                value: None,
                path,
            }),
        };
        r.map_err(|e| e.at(path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TreeError> {
        match self.tree {
            Tree::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, TreeError> {
        v.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

struct Seq<'a, I> {
    items: I,
    path: &'a str,
}

impl<'de, 'a, I: Iterator<Item = (usize, &'a Tree)>> de::SeqAccess<'de> for Seq<'_, I> {
    type Error = TreeError;

    fn next_element_seed<S: de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, TreeError> {
        match self.items.next() {
            Some((i, tree)) => seed
                .deserialize(At {
                    tree,
                    path: format!("{}[{i}]", self.path),
                })
                .map(Some),
            None => Ok(None),
        }
    }
}

struct Map<'a, I> {
    entries: I,
    value: Option<(&'a str, &'a Tree)>,
    path: &'a str,
}

impl<'de, 'a, I: Iterator<Item = &'a (String, Tree)>> de::MapAccess<'de> for Map<'a, I> {
    type Error = TreeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TreeError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some((k, v));
                let key: de::value::StrDeserializer<'_, TreeError> = k.as_str().into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TreeError> {
        let (key, tree) = self
            .value
            .take()
            .ok_or_else(|| <TreeError as de::Error>::custom("a value without its key"))?;
        seed.deserialize(At {
            tree,
            path: child(self.path, key),
        })
    }
}

/// The value of hyperparameter `key` as configs and checkpoints give it: a bool, an
/// integer (one beyond `i64` as a float), or a finite float. Whether it suits the
/// hyperparameter (kind, range) is for [`crate::HyperSpec::check`].
pub fn hyper_value(key: &str, value: &Tree) -> Result<HyperValue> {
    hyper_of(value).map_err(|m| OptimError::Config(format!("`{key}`: {m}")))
}

/// [`hyper_value`] without the key: what is wrong with `value`, if anything.
pub fn hyper_of(value: &Tree) -> Result<HyperValue, String> {
    match *value {
        Tree::Bool(b) => Ok(HyperValue::Bool(b)),
        Tree::Int(i) => Ok(HyperValue::Int(i)),
        Tree::UInt(u) => Ok(i64::try_from(u).map_or(HyperValue::Float(u as f64), HyperValue::Int)),
        Tree::Float(x) if x.is_finite() => Ok(HyperValue::Float(x)),
        Tree::Float(_) => Err(format!(
            "{value} is not a finite number; a hyperparameter must be finite"
        )),
        ref other => Err(format!("expected a number or a bool, got {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        name: String,
        steps: Vec<u64>,
        #[serde(default)]
        inner: Option<Box<Doc>>,
    }

    fn read(json: &str) -> Result<Doc, String> {
        let tree: Tree = serde_json::from_str(json).map_err(|e| e.to_string())?;
        from_tree(&tree, "doc").map_err(|e| e.to_string())
    }

    #[test]
    fn errors_name_the_path_and_what_was_found() {
        assert_eq!(
            read(r#"{"name": "a", "steps": [1, -2]}"#).unwrap_err(),
            "`doc.steps[1]`: expected a non-negative integer, got -2"
        );
        assert_eq!(
            read(r#"{"name": "a", "steps": [], "inner": {"name": 5, "steps": []}}"#).unwrap_err(),
            "`doc.inner.name`: expected a string, got 5"
        );
        assert_eq!(
            read(r#"{"name": "a", "stepz": []}"#).unwrap_err(),
            "`doc`: unknown field `stepz` (did you mean `steps`?); valid: name, steps, inner"
        );
        assert_eq!(
            read(r#"{"name": "a"}"#).unwrap_err(),
            "`doc`: field `steps` is missing"
        );
        let e = read(r#"{"name": "a", "steps": [], "name": "b"}"#).unwrap_err();
        assert!(
            e.starts_with("duplicate key `name`: each key may be given once at line 1"),
            "{e}"
        );
        assert_eq!(
            read(r#"{"name": "a", "steps": [3], "inner": null}"#),
            Ok(Doc {
                name: "a".into(),
                steps: vec![3],
                inner: None
            })
        );
    }

    #[test]
    fn hyperparameter_values_follow_one_set_of_rules() {
        let v = |t: Tree| hyper_value("x", &t).map_err(|e| e.to_string());
        assert_eq!(v(Tree::Bool(true)), Ok(HyperValue::Bool(true)));
        assert_eq!(v(Tree::Int(-3)), Ok(HyperValue::Int(-3)));
        assert_eq!(v(Tree::UInt(3)), Ok(HyperValue::Int(3)));
        assert_eq!(
            v(Tree::UInt(u64::MAX)),
            Ok(HyperValue::Float(u64::MAX as f64))
        );
        assert_eq!(v(Tree::Float(3.0)), Ok(HyperValue::Float(3.0)));
        assert_eq!(
            v(Tree::Float(f64::NEG_INFINITY)),
            Err("config: `x`: -inf is not a finite number; a hyperparameter must be finite".into())
        );
        assert_eq!(
            v(Tree::Str("yes".into())),
            Err("config: `x`: expected a number or a bool, got \"yes\"".into())
        );
    }
}
