//! The OTLP trace messages (`opentelemetry/proto/{collector/trace,trace,common,resource}/v1`),
//! written out by hand with `prost`'s derive: the few messages an exporter sends, no `protoc`.
//!
//! Field numbers and types follow the upstream `.proto` files exactly; OTLP/HTTP carries
//! [`ExportTraceServiceRequest`] as `application/x-protobuf`, or as JSON ([`to_json`]).

use serde_json::json;

/// The body of `POST /v1/traces`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    /// Spans grouped by the resource that produced them.
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// The answer to an export (empty when every span was accepted).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceResponse {
    /// Set when some spans were rejected.
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportTracePartialSuccess>,
}

/// How many spans a receiver rejected, and why.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTracePartialSuccess {
    /// Spans rejected.
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    /// Why.
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// Spans of one resource.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    /// The process that produced them.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// Spans by instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
    /// Schema of the resource attributes.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// The entity producing telemetry (`service.name`, …).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    /// Attributes.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// Attributes dropped.
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

/// Spans of one instrumentation scope.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    /// The instrumentation that produced them.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// The spans.
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
    /// Schema (semantic conventions version) of the span attributes.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// The instrumentation library.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Version.
    #[prost(string, tag = "2")]
    pub version: String,
    /// Attributes.
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    /// Attributes dropped.
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

/// One operation.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// W3C `tracestate`.
    #[prost(string, tag = "3")]
    pub trace_state: String,
    /// 8 bytes; empty for a root span.
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    /// W3C trace flags in the low 8 bits.
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
    /// Display name.
    #[prost(string, tag = "5")]
    pub name: String,
    /// A [`SpanKind`] value.
    #[prost(int32, tag = "6")]
    pub kind: i32,
    /// Start, ns since the epoch.
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    /// End, ns since the epoch.
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    /// Attributes.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    /// Attributes dropped.
    #[prost(uint32, tag = "10")]
    pub dropped_attributes_count: u32,
    /// Timestamped annotations.
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<SpanEvent>,
    /// Events dropped.
    #[prost(uint32, tag = "12")]
    pub dropped_events_count: u32,
    /// Links to other spans.
    #[prost(message, repeated, tag = "13")]
    pub links: Vec<SpanLink>,
    /// Links dropped.
    #[prost(uint32, tag = "14")]
    pub dropped_links_count: u32,
    /// Final status.
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

/// `Span.Event`: a timestamped annotation.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanEvent {
    /// When, ns since the epoch.
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    /// Name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Attributes.
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    /// Attributes dropped.
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

/// `Span.Link`: a pointer to another span.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanLink {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// W3C `tracestate`.
    #[prost(string, tag = "3")]
    pub trace_state: String,
    /// Attributes.
    #[prost(message, repeated, tag = "4")]
    pub attributes: Vec<KeyValue>,
    /// Attributes dropped.
    #[prost(uint32, tag = "5")]
    pub dropped_attributes_count: u32,
    /// W3C trace flags.
    #[prost(fixed32, tag = "6")]
    pub flags: u32,
}

/// A span's outcome.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// Error message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// A [`StatusCode`] value.
    #[prost(int32, tag = "3")]
    pub code: i32,
}

/// `Span.SpanKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum SpanKind {
    /// In-process work.
    Internal = 1,
    /// A call to a remote service.
    Client = 3,
}

/// `Status.StatusCode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum StatusCode {
    /// Not set: the default, meaning no error.
    Unset = 0,
    /// Explicitly successful.
    Ok = 1,
    /// Failed.
    Error = 2,
}

/// An attribute.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// Key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// An attribute value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    /// One of the value kinds.
    #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<Value>,
}

/// A list of values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayValue {
    /// Values.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

/// A list of key-value pairs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValueList {
    /// Pairs.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// `AnyValue.value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    /// A string.
    #[prost(string, tag = "1")]
    StringValue(String),
    /// A boolean.
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    /// An integer.
    #[prost(int64, tag = "3")]
    IntValue(i64),
    /// A float.
    #[prost(double, tag = "4")]
    DoubleValue(f64),
    /// A list.
    #[prost(message, tag = "5")]
    ArrayValue(ArrayValue),
    /// A map.
    #[prost(message, tag = "6")]
    KvlistValue(KeyValueList),
    /// Bytes.
    #[prost(bytes = "vec", tag = "7")]
    BytesValue(Vec<u8>),
}

impl KeyValue {
    /// A string attribute.
    pub fn str(key: &str, value: impl Into<String>) -> KeyValue {
        KeyValue::of(key, Value::StringValue(value.into()))
    }

    /// An integer attribute.
    pub fn int(key: &str, value: i64) -> KeyValue {
        KeyValue::of(key, Value::IntValue(value))
    }

    /// A float attribute.
    pub fn double(key: &str, value: f64) -> KeyValue {
        KeyValue::of(key, Value::DoubleValue(value))
    }

    /// A boolean attribute.
    pub fn bool(key: &str, value: bool) -> KeyValue {
        KeyValue::of(key, Value::BoolValue(value))
    }

    /// A string-array attribute.
    pub fn strs(key: &str, values: impl IntoIterator<Item = String>) -> KeyValue {
        let values = values
            .into_iter()
            .map(|v| AnyValue {
                value: Some(Value::StringValue(v)),
            })
            .collect();
        KeyValue::of(key, Value::ArrayValue(ArrayValue { values }))
    }

    fn of(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Some(AnyValue { value: Some(value) }),
        }
    }
}

/// The value of attribute `key` in `attributes`, if set.
pub fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// The OTLP/JSON form of a request (`application/json`): ids in hex, 64-bit integers as
/// strings, field names in lowerCamelCase, as the OTLP specification maps protobuf to JSON.
pub fn to_json(request: &ExportTraceServiceRequest) -> serde_json::Value {
    let resource_spans: Vec<serde_json::Value> = request
        .resource_spans
        .iter()
        .map(|rs| {
            json!({
                "resource": rs.resource.as_ref().map(|r| json!({
                    "attributes": attributes_json(&r.attributes),
                })),
                "scopeSpans": rs.scope_spans.iter().map(|ss| json!({
                    "scope": ss.scope.as_ref().map(|s| json!({
                        "name": s.name,
                        "version": s.version,
                    })),
                    "spans": ss.spans.iter().map(span_json).collect::<Vec<_>>(),
                    "schemaUrl": ss.schema_url,
                })).collect::<Vec<_>>(),
                "schemaUrl": rs.schema_url,
            })
        })
        .collect();
    json!({ "resourceSpans": resource_spans })
}

fn span_json(span: &Span) -> serde_json::Value {
    let mut value = json!({
        "traceId": crate::ids::hex(&span.trace_id),
        "spanId": crate::ids::hex(&span.span_id),
        "flags": span.flags,
        "name": span.name,
        "kind": span.kind,
        "startTimeUnixNano": span.start_time_unix_nano.to_string(),
        "endTimeUnixNano": span.end_time_unix_nano.to_string(),
        "attributes": attributes_json(&span.attributes),
        "events": span.events.iter().map(|e| json!({
            "timeUnixNano": e.time_unix_nano.to_string(),
            "name": e.name,
            "attributes": attributes_json(&e.attributes),
        })).collect::<Vec<_>>(),
    });
    if !span.parent_span_id.is_empty() {
        value["parentSpanId"] = crate::ids::hex(&span.parent_span_id).into();
    }
    if let Some(status) = &span.status {
        value["status"] = json!({ "code": status.code, "message": status.message });
    }
    value
}

fn attributes_json(attributes: &[KeyValue]) -> Vec<serde_json::Value> {
    attributes
        .iter()
        .map(|kv| json!({ "key": kv.key, "value": any_json(kv.value.as_ref()) }))
        .collect()
}

fn any_json(value: Option<&AnyValue>) -> serde_json::Value {
    match value.and_then(|v| v.value.as_ref()) {
        None => json!({}),
        Some(Value::StringValue(s)) => json!({ "stringValue": s }),
        Some(Value::BoolValue(b)) => json!({ "boolValue": b }),
        Some(Value::IntValue(i)) => json!({ "intValue": i.to_string() }),
        Some(Value::DoubleValue(d)) => json!({ "doubleValue": d }),
        Some(Value::ArrayValue(a)) => json!({ "arrayValue": {
            "values": a.values.iter().map(|v| any_json(Some(v))).collect::<Vec<_>>(),
        }}),
        Some(Value::KvlistValue(kv)) => json!({ "kvlistValue": {
            "values": attributes_json(&kv.values),
        }}),
        Some(Value::BytesValue(b)) => {
            json!({ "bytesValue": b.iter().map(|x| format!("{x:02x}")).collect::<String>() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn fields_use_the_upstream_numbers() {
        // span_id (field 2, bytes) then flags (field 16, fixed32): tag bytes 0x12 and 0x85 0x01.
        let span = Span {
            span_id: vec![1; 8],
            flags: 1,
            ..Span::default()
        };
        let bytes = span.encode_to_vec();
        assert_eq!(bytes[0], 0x12);
        assert_eq!(&bytes[10..12], &[0x85, 0x01]);
        let kv = KeyValue::int("n", 5);
        // key (1, string "n"), value (2, AnyValue { int_value (3) = 5 }).
        assert_eq!(kv.encode_to_vec(), [0x0a, 1, b'n', 0x12, 2, 0x18, 5]);
        assert_eq!(KeyValue::decode(&kv.encode_to_vec()[..]).unwrap(), kv);
    }
}
