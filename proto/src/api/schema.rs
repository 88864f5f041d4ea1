//! JSON Schemas of wire encodings whose Rust types live elsewhere (base64 and hex byte
//! strings, CEL records), for the `#[schemars(with = ...)]` attributes of the API types.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// Base64 (RFC 4648 §4, padded) text.
pub struct Base64;

impl JsonSchema for Base64 {
    fn schema_name() -> Cow<'static, str> {
        "Base64".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
            "description": "base64 (RFC 4648 section 4, padded)",
        })
    }
}

/// Lowercase hex text of any even length.
pub struct Hex;

impl JsonSchema for Hex {
    fn schema_name() -> Cow<'static, str> {
        "Hex".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9a-f]{2})*$",
            "description": "lowercase hex",
        })
    }
}

/// A record of the measurement log in its CEL-JSON encoding.
pub struct CelRecord;

impl JsonSchema for CelRecord {
    fn schema_name() -> Cow<'static, str> {
        "CelRecord".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "required": ["recnum", "pcr", "digests", "content_type", "content"],
            "description": "a CEL-JSON record of the daemon's measurement log",
        })
    }
}

/// An RFC 3339 UTC timestamp.
pub struct Timestamp;

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "an RFC 3339 timestamp in UTC (`Z`)",
        })
    }
}
