//! JSON helpers shared by manifests, HPKE `info`, Merkle leaves and signed statements:
//! RFC 8785 canonical serialisation (JCS) and a strict parser that refuses duplicate
//! object keys (which different JSON parsers resolve differently, so two parties could
//! read the same text as two different documents).

use serde::Deserialize as _;
use serde::de;
use serde_json::Value;

/// `JCS(value)` (RFC 8785) as bytes.
pub fn to_vec(value: &Value) -> Vec<u8> {
    // JCS fails only for numbers JSON cannot hold (NaN, infinities), which a
    // `serde_json::Value` cannot contain; an empty output would match no digest anyone
    // computes, so the fallback fails closed.
    serde_jcs::to_vec(value).unwrap_or_default()
}

/// `JCS(value)` (RFC 8785) as a string.
pub fn to_string(value: &Value) -> String {
    String::from_utf8(to_vec(value)).unwrap_or_default()
}

/// Parses one JSON document from `bytes`, refusing duplicate keys in any object and
/// anything after the document other than whitespace (the wire contract's strict
/// reader, shared with the daemon's request parsing).
///
/// # Errors
/// The parser's message (with line and column) for malformed JSON or a duplicate key.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    arbiter_proto::json::parse_strict(bytes)
}

/// The kind of a JSON document's top-level value, as [`raw_kind`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawKind {
    /// `null`.
    Null,
    /// `true` or `false`.
    Boolean,
    /// A number without fraction or exponent that fits an `i64` or `u64`.
    Integer,
    /// Any other number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

/// Checks that `bytes` are exactly one JSON document (whitespace around it allowed) and
/// returns the kind of its top-level value — without building a `serde_json::Value` or
/// copying any string out of it, so a secret document (a decrypted input) leaves no copies
/// behind. Numbers are classified as `serde_json` classifies them (`Integer` when
/// `Value::is_i64` or `is_u64` would hold).
///
/// # Errors
/// The parser's message for malformed JSON or trailing data.
pub fn raw_kind(bytes: &[u8]) -> Result<RawKind, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de::IgnoredAny::deserialize(&mut de)?;
    de.end()?;
    let token = bytes.trim_ascii();
    Ok(match token.first() {
        Some(b'"') => RawKind::String,
        Some(b'[') => RawKind::Array,
        Some(b'{') => RawKind::Object,
        Some(b't' | b'f') => RawKind::Boolean,
        Some(b'n') => RawKind::Null,
        _ => {
            // A number token (the parse above checked it). `-0` is a float to serde_json.
            let text = std::str::from_utf8(token).unwrap_or_default();
            if text != "-0" && (text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok()) {
                RawKind::Integer
            } else {
                RawKind::Number
            }
        }
    })
}

/// The nesting depth of the JSON text `bytes` (a scalar has depth 0; `[[1]]` has 2),
/// counted on the bytes without parsing them into a value. Meaningful for valid JSON
/// (check it with [`raw_kind`]).
pub fn raw_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                // Skip the string: jump from quote or backslash to the next one (a
                // backslash escapes the byte after it), which memchr finds many bytes at a
                // time; lists of long strings are most of a large input.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', bytes.get(i..).unwrap_or_default()) {
                        Some(at) if bytes.get(i + at) == Some(&b'\\') => i += at + 2,
                        Some(at) => {
                            i += at;
                            break;
                        }
                        None => return deepest,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jcs_sorts_keys_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1, {"z": true, "a": null}], "a": "é\n" }"#).unwrap();
        assert_eq!(
            to_string(&v),
            "{\"a\":\"é\\n\",\"b\":[1,{\"a\":null,\"z\":true}]}"
        );
    }

    #[test]
    fn jcs_rfc8785_key_order_is_by_utf16_code_units() {
        // RFC 8785 §3.2.3's example: U+1F600 (UTF-16 D83D DE00) sorts before U+FB33,
        // although its code point (and UTF-8) is larger.
        let v: Value = serde_json::from_str(
            r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#,
        )
        .unwrap();
        let expected = concat!(
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",",
            "\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",",
            "\"\u{1f600}\":\"Emoji: Grinning Face\",",
            "\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
        assert_eq!(to_string(&v), expected);
    }

    #[test]
    fn raw_kind_and_depth_agree_with_parsed_values() {
        for text in [
            "null",
            " true ",
            "false",
            "0",
            "-0",
            "-3",
            "42  \n",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1.0",
            "1e2",
            "-1.5E-3",
            r#""a\"[{""#,
            r#""""#,
            r#"["\\", "[\\\"[", {"\\\\": ["\\\\\"]"]}]"#,
            r#"[["\u005b"], "\\"]"#,
            "[]",
            r#"[1, "]", {"a": [[]]}]"#,
            r#"{"k": "}}}", "l": {"m": [1, {"n": null}]}}"#,
            "{}",
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            let kind = raw_kind(text.as_bytes()).unwrap();
            let expected = match &value {
                Value::Null => RawKind::Null,
                Value::Bool(_) => RawKind::Boolean,
                Value::Number(n) if n.is_i64() || n.is_u64() => RawKind::Integer,
                Value::Number(_) => RawKind::Number,
                Value::String(_) => RawKind::String,
                Value::Array(_) => RawKind::Array,
                Value::Object(_) => RawKind::Object,
            };
            assert_eq!(kind, expected, "{text}");
            fn depth(v: &Value) -> usize {
                match v {
                    Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
                    Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
                    _ => 0,
                }
            }
            assert_eq!(raw_depth(text.as_bytes()), depth(&value), "{text}");
        }
        for bad in ["", "[1,", "{\"a\":1} x", "tru", "01", "\"open", "1 2"] {
            assert!(raw_kind(bad.as_bytes()).is_err(), "{bad}");
        }
        // Deep nesting is measured, not refused by a recursion limit.
        let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
        assert_eq!(raw_kind(deep.as_bytes()).unwrap(), RawKind::Array);
        assert_eq!(raw_depth(deep.as_bytes()), 500);
    }

    #[test]
    fn strict_parse_refuses_duplicates_and_trailing_data() {
        assert_eq!(
            parse_strict(br#"{"a":1,"b":[{"c":2}]}"#).unwrap(),
            serde_json::json!({"a":1,"b":[{"c":2}]})
        );
        let err = parse_strict(br#"{"a":1,"b":{"c":2,"c":3}}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key \"c\""), "{err}");
        assert!(parse_strict(br#"{"a":1} x"#).is_err());
        assert!(parse_strict(br#"{"a":1}  "#).is_ok());
        assert!(parse_strict(b"").is_err());
        assert!(parse_strict(b"[1,").is_err());
        assert_eq!(parse_strict(b"1.5").unwrap(), serde_json::json!(1.5));
        assert_eq!(parse_strict(b"-3").unwrap(), serde_json::json!(-3));
    }
}
