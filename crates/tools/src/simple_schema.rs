//! A fast path for the argument schemas most tools have: objects of typed properties.
//!
//! Compiling a schema with `jsonschema` first checks it against the JSON Schema meta-schema,
//! and the first such check in a process builds the meta-schema's own validator: about 4
//! million instructions, a third of a whole 10-step `chassis run`. The schemas of the built-in
//! tools, and of most command, MCP and Rust tools, use a handful of keywords whose meaning
//! needs no meta-schema to check. [`Node::parse`] accepts exactly those, well-formed (so such
//! a schema is valid by construction); anything else (`$ref`, `anyOf`, `pattern`, a checked
//! `format`, an unknown keyword, a keyword of the wrong type) is left to `jsonschema`.
//!
//! [`Node::surely_valid`] is one-sided: `true` only when the instance certainly satisfies the
//! schema. Everything it is unsure about, and every instance that may be invalid, is decided
//! by `jsonschema` itself, which also words the violations; so this path can make a call
//! cheaper, never change how it is judged (`tests::never_more_lenient_than_jsonschema`).

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

/// Keywords that only annotate: accepted when their value has the meta-schema's type.
const ANNOTATIONS: [(&str, Kind); 7] = [
    ("title", Kind::String),
    ("description", Kind::String),
    ("$comment", Kind::String),
    ("default", Kind::Any),
    ("examples", Kind::Array),
    ("deprecated", Kind::Bool),
    ("readOnly", Kind::Bool),
];

/// The JSON type an annotation's value must have.
#[derive(Clone, Copy)]
enum Kind {
    String,
    Array,
    Bool,
    Any,
}

/// The `format` values that stay annotations (see `validate::UNCHECKED_FORMATS`); `uri`,
/// `date-time` and `email` are checked, by `jsonschema`.
fn format_is_annotation(format: &str) -> bool {
    crate::validate::UNCHECKED_FORMATS.contains(&format)
}

/// One schema of the subset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// `true` or `false`.
    Bool(bool),
    /// An object schema; every keyword optional.
    Object(Box<Checks>),
}

/// What an object schema of the subset checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Checks {
    types: Option<Vec<Type>>,
    properties: BTreeMap<String, Node>,
    required: Vec<String>,
    additional: Option<Node>,
    items: Option<Node>,
    one_of_values: Option<Vec<Value>>,
    minimum: Option<Bound>,
    maximum: Option<Bound>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
}

/// A numeric bound and whether it is exclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bound {
    value: f64,
    exclusive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl Type {
    fn parse(name: &str) -> Option<Type> {
        Some(match name {
            "null" => Type::Null,
            "boolean" => Type::Boolean,
            "integer" => Type::Integer,
            "number" => Type::Number,
            "string" => Type::String,
            "array" => Type::Array,
            "object" => Type::Object,
            _ => return None,
        })
    }

    /// Whether `value` is certainly of this type.
    fn holds(self, value: &Value) -> bool {
        match (self, value) {
            (Type::Null, Value::Null)
            | (Type::Boolean, Value::Bool(_))
            | (Type::Number, Value::Number(_))
            | (Type::String, Value::String(_))
            | (Type::Array, Value::Array(_))
            | (Type::Object, Value::Object(_)) => true,
            (Type::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            _ => false,
        }
    }
}

/// Largest integer an `f64` holds exactly; beyond it a comparison is left to `jsonschema`.
const EXACT: f64 = 9_007_199_254_740_992.0;

impl Node {
    /// The schema, if it is in the subset and well-formed.
    pub(crate) fn parse(schema: &Value) -> Option<Node> {
        match schema {
            Value::Bool(b) => Some(Node::Bool(*b)),
            Value::Object(map) => Checks::parse(map).map(|c| Node::Object(Box::new(c))),
            _ => None,
        }
    }

    /// True only when `value` certainly satisfies the schema.
    pub(crate) fn surely_valid(&self, value: &Value) -> bool {
        match self {
            Node::Bool(b) => *b,
            Node::Object(checks) => checks.surely_valid(value),
        }
    }
}

impl Checks {
    fn parse(map: &Map<String, Value>) -> Option<Checks> {
        let mut checks = Checks::default();
        let mut exclusive_minimum = None;
        let mut exclusive_maximum = None;
        for (key, value) in map {
            match key.as_str() {
                "type" => {
                    let names: Vec<&Value> = match value {
                        Value::String(_) => vec![value],
                        Value::Array(items) if !items.is_empty() => items.iter().collect(),
                        _ => return None,
                    };
                    let mut types = Vec::with_capacity(names.len());
                    for name in names {
                        let t = Type::parse(name.as_str()?)?;
                        if types.contains(&t) {
                            return None;
                        }
                        types.push(t);
                    }
                    checks.types = Some(types);
                }
                "properties" => {
                    for (name, schema) in value.as_object()? {
                        checks.properties.insert(name.clone(), Node::parse(schema)?);
                    }
                }
                "required" => {
                    for name in value.as_array()? {
                        let name = name.as_str()?;
                        if checks.required.iter().any(|r| r == name) {
                            return None;
                        }
                        checks.required.push(name.to_string());
                    }
                }
                "additionalProperties" => checks.additional = Some(Node::parse(value)?),
                "items" => checks.items = Some(Node::parse(value)?),
                "enum" => checks.one_of_values = Some(value.as_array()?.clone()),
                "const" => checks.one_of_values = Some(vec![value.clone()]),
                "minimum" => checks.minimum = Some(bound(value, false)?),
                "maximum" => checks.maximum = Some(bound(value, false)?),
                "exclusiveMinimum" => exclusive_minimum = Some(bound(value, true)?),
                "exclusiveMaximum" => exclusive_maximum = Some(bound(value, true)?),
                "minLength" => checks.min_length = Some(count(value)?),
                "maxLength" => checks.max_length = Some(count(value)?),
                "minItems" => checks.min_items = Some(count(value)?),
                "maxItems" => checks.max_items = Some(count(value)?),
                "minProperties" => checks.min_properties = Some(count(value)?),
                "maxProperties" => checks.max_properties = Some(count(value)?),
                "format" => {
                    if !format_is_annotation(value.as_str()?) {
                        return None;
                    }
                }
                other => {
                    let (_, kind) = ANNOTATIONS.iter().find(|(name, _)| *name == other)?;
                    let fits = match kind {
                        Kind::String => value.is_string(),
                        Kind::Array => value.is_array(),
                        Kind::Bool => value.is_boolean(),
                        Kind::Any => true,
                    };
                    if !fits {
                        return None;
                    }
                }
            }
        }
        // Both `enum` and `const`, or two bounds on one side: rare, and left to `jsonschema`.
        if map.contains_key("enum") && map.contains_key("const") {
            return None;
        }
        if let Some(b) = exclusive_minimum {
            if checks.minimum.is_some() {
                return None;
            }
            checks.minimum = Some(b);
        }
        if let Some(b) = exclusive_maximum {
            if checks.maximum.is_some() {
                return None;
            }
            checks.maximum = Some(b);
        }
        Some(checks)
    }

    fn surely_valid(&self, value: &Value) -> bool {
        if let Some(types) = &self.types
            && !types.iter().any(|t| t.holds(value))
        {
            return false;
        }
        if let Some(allowed) = &self.one_of_values
            && !allowed.iter().any(|a| same(a, value))
        {
            return false;
        }
        match value {
            Value::Number(n) => self.number_fits(n),
            Value::String(s) => {
                let length = s.chars().count() as u64;
                self.min_length.is_none_or(|min| length >= min)
                    && self.max_length.is_none_or(|max| length <= max)
            }
            Value::Array(items) => {
                let n = items.len() as u64;
                self.min_items.is_none_or(|min| n >= min)
                    && self.max_items.is_none_or(|max| n <= max)
                    && self
                        .items
                        .as_ref()
                        .is_none_or(|schema| items.iter().all(|i| schema.surely_valid(i)))
            }
            Value::Object(fields) => {
                let n = fields.len() as u64;
                self.min_properties.is_none_or(|min| n >= min)
                    && self.max_properties.is_none_or(|max| n <= max)
                    && self.required.iter().all(|r| fields.contains_key(r))
                    && fields.iter().all(|(name, field)| {
                        match (self.properties.get(name), &self.additional) {
                            (Some(schema), _) => schema.surely_valid(field),
                            (None, Some(additional)) => additional.surely_valid(field),
                            (None, None) => true,
                        }
                    })
            }
            Value::Null | Value::Bool(_) => true,
        }
    }

    fn number_fits(&self, n: &Number) -> bool {
        let Some(x) = exact(n) else {
            // Too large to compare exactly here: only fine if nothing bounds it.
            return self.minimum.is_none() && self.maximum.is_none();
        };
        let above = self.minimum.is_none_or(|b| {
            if b.exclusive {
                x > b.value
            } else {
                x >= b.value
            }
        });
        let below = self.maximum.is_none_or(|b| {
            if b.exclusive {
                x < b.value
            } else {
                x <= b.value
            }
        });
        above && below
    }
}

/// Whether two JSON values are certainly equal as JSON Schema compares them. Numbers compare
/// by value in JSON Schema (1 equals 1.0) and by representation here: a pair this calls
/// different goes to `jsonschema`, which decides.
fn same(a: &Value, b: &Value) -> bool {
    a == b
}

/// A number as an `f64`, when it is exactly one.
fn exact(n: &Number) -> Option<f64> {
    let x = n.as_f64()?;
    if (n.is_i64() || n.is_u64()) && x.abs() > EXACT {
        return None;
    }
    x.is_finite().then_some(x)
}

fn bound(value: &Value, exclusive: bool) -> Option<Bound> {
    match value {
        Value::Number(n) => Some(Bound {
            value: exact(n)?,
            exclusive,
        }),
        _ => None,
    }
}

/// A non-negative integer (lengths and counts).
fn count(value: &Value) -> Option<u64> {
    value.as_u64()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn full(schema: &Value) -> jsonschema::Validator {
        crate::validate::compile_full(schema).expect("the subset is valid JSON Schema")
    }

    #[test]
    fn the_builtin_shapes_are_in_the_subset() {
        let schema = json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Path under the root"},
                "max_bytes": {"type": "integer", "minimum": 1},
            },
            "required": ["path"],
            "additionalProperties": false,
        });
        let node = Node::parse(&schema).expect("in the subset");
        assert!(node.surely_valid(&json!({"path": "a"})));
        assert!(node.surely_valid(&json!({"path": "a", "max_bytes": 3})));
        assert!(!node.surely_valid(&json!({"path": 3})));
        assert!(!node.surely_valid(&json!({})));
        assert!(!node.surely_valid(&json!({"path": "a", "other": 1})));
        assert!(!node.surely_valid(&json!({"path": "a", "max_bytes": 0})));
    }

    #[test]
    fn what_needs_jsonschema_is_left_to_it() {
        for schema in [
            json!({"$ref": "#/$defs/a", "$defs": {"a": {"type": "string"}}}),
            json!({"anyOf": [{"type": "string"}, {"type": "null"}]}),
            json!({"type": "string", "pattern": "^a"}),
            json!({"type": "string", "format": "uri"}),
            json!({"type": "strng"}),
            json!({"type": ["string", "string"]}),
            json!({"required": "path"}),
            json!({"minLength": -1}),
            json!({"description": 3}),
            json!({"$schema": "http://json-schema.org/draft-07/schema#"}),
            json!({"nullable": true}),
            json!({"items": [{"type": "string"}]}),
        ] {
            assert_eq!(Node::parse(&schema), None, "{schema}");
        }
    }

    /// Schemas of the subset, small and nested.
    fn schema() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(json!({})),
            Just(json!(true)),
            Just(json!(false)),
            prop::sample::select(vec![
                "null", "boolean", "integer", "number", "string", "array", "object"
            ])
            .prop_map(|t| json!({"type": t})),
            (0u64..4, 0u64..6)
                .prop_map(|(a, b)| json!({"type": "string", "minLength": a, "maxLength": b})),
            (-3i64..3, -3i64..3, any::<bool>()).prop_map(|(a, b, ex)| {
                if ex {
                    json!({"exclusiveMinimum": a, "maximum": b})
                } else {
                    json!({"type": ["integer", "null"], "minimum": a, "exclusiveMaximum": b})
                }
            }),
            prop::collection::vec(value(), 1..3).prop_map(|v| json!({"enum": v})),
            value().prop_map(|v| json!({"const": v})),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                (
                    prop::collection::btree_map("[abc]", inner.clone(), 0..3),
                    prop::collection::vec("[abcd]", 0..3),
                    prop::option::of(inner.clone()),
                    prop::option::of(0u64..3),
                )
                    .prop_map(|(props, required, additional, max)| {
                        let mut required: Vec<String> = required;
                        required.sort();
                        required.dedup();
                        let mut s =
                            json!({"type": "object", "properties": props, "required": required});
                        if let Some(a) = additional {
                            s["additionalProperties"] = a;
                        }
                        if let Some(m) = max {
                            s["maxProperties"] = json!(m);
                        }
                        s
                    }),
                (inner, 0u64..2, 1u64..4).prop_map(|(items, min, max)| {
                    json!({"type": "array", "items": items, "minItems": min, "maxItems": max})
                }),
            ]
        })
    }

    /// JSON values, small and nested, with numbers on both sides of the bounds above.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-4i64..4).prop_map(|n| json!(n)),
            prop::sample::select(vec![-2.5f64, -1.0, 0.0, 0.5, 1.0, 2.0, 3.5])
                .prop_map(|f| json!(f)),
            "[ab]{0,5}".prop_map(Value::String),
            Just(json!("é€")),
        ];
        leaf.prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[abcd]", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the fast path calls valid, `jsonschema` calls valid: it never lets through
        /// arguments the full validator would refuse.
        #[test]
        fn never_more_lenient_than_jsonschema(schema in schema(), instance in value()) {
            let node = Node::parse(&schema).expect("the generator stays in the subset");
            if node.surely_valid(&instance) {
                prop_assert!(
                    full(&schema).is_valid(&instance),
                    "fast path accepted {instance} against {schema}"
                );
            }
        }
    }

    #[test]
    fn mostly_agrees_on_valid_instances() {
        // Not a requirement (the fast path may defer), but it should rarely have to.
        let node = Node::parse(&json!({"type": "object", "properties": {"n": {"type": "number"}}}))
            .unwrap();
        assert!(node.surely_valid(&json!({"n": 1.5})));
        assert!(node.surely_valid(&json!({"n": 2, "other": [1, 2]})));
    }
}
