//! The API document as a test oracle: every answer an end-to-end test receives through a
//! [`crate::daemon::Party`] is checked against the schema that the daemon's OpenAPI
//! document (`GET /v1/openapi.json`, generated from the wire contract's types) gives for
//! its path, method and status, so a test fails as soon as code and document disagree.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use arbiter_client::http::Response;
use serde_json::{Map, Value, json};

/// The document, as the daemon serves it.
fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(arbiter_daemon::api::routes::openapi)
}

/// An OpenAPI 3.0 schema as JSON Schema: `nullable: true` becomes a union with null.
fn to_json_schema(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out: Map<String, Value> = m
                .iter()
                .map(|(k, v)| (k.clone(), to_json_schema(v)))
                .collect();
            if out.remove("nullable") == Some(Value::Bool(true)) {
                json!({"anyOf": [Value::Object(out), {"type": "null"}]})
            } else {
                Value::Object(out)
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(to_json_schema).collect()),
        other => other.clone(),
    }
}

/// The path template of the document that `path` matches, if any.
fn template_of(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    document()["paths"].as_object()?.keys().find_map(|t| {
        let ts: Vec<&str> = t.trim_matches('/').split('/').collect();
        let fits = ts.len() == segments.len()
            && ts
                .iter()
                .zip(&segments)
                .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s);
        fits.then_some(t.as_str())
    })
}

/// The schema the document gives for an answer, or `None` when the answer is not JSON
/// (`/metrics`).
fn schema_for(method: &str, path: &str, status: u16) -> Option<Value> {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let Some(template) = template_of(path) else {
        // No such endpoint: a 404 error body.
        return Some(error);
    };
    let op = &document()["paths"][template][method.to_ascii_lowercase()];
    if !op.is_object() {
        // No such method: a 405 error body.
        return Some(error);
    }
    let responses = &op["responses"];
    let response = match &responses[status.to_string()] {
        Value::Null => &responses["default"],
        r => r,
    };
    let content = &response["content"];
    if content["application/json"].is_object() {
        Some(content["application/json"]["schema"].clone())
    } else {
        None
    }
}

/// A compiled validator per (method, template, status).
fn validator(
    method: &str,
    path: &str,
    status: u16,
) -> Option<std::sync::Arc<jsonschema::Validator>> {
    static CACHE: OnceLock<Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>> =
        OnceLock::new();
    let key = format!("{method} {} {status}", template_of(path).unwrap_or(path));
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(v) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Some(v.clone());
    }
    let schema = schema_for(method, path, status)?;
    let root = json!({
        "allOf": [to_json_schema(&schema)],
        "components": to_json_schema(&document()["components"]),
    });
    let compiled = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .unwrap_or_else(|e| panic!("the API document's schema for {key} does not compile: {e}"));
    let compiled = std::sync::Arc::new(compiled);
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, compiled.clone());
    Some(compiled)
}

/// Panics, naming every mismatch, unless the answer `r` to `method path` is what the API
/// document says the daemon answers for its status.
pub fn check(method: &str, path: &str, r: &Response) {
    let path = path.split('?').next().unwrap_or(path);
    let status = r.status.as_u16();
    if status == 405 {
        assert!(
            r.headers.contains_key(hyper::header::ALLOW),
            "{method} {path}: a 405 answer without an Allow header"
        );
    }
    let Some(validator) = validator(method, path, status) else {
        assert!(
            !r.body.is_empty(),
            "{method} {path}: {status} with an empty body, the API document promises text"
        );
        return;
    };
    let body: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: the {status} answer is not JSON ({e}), as the API document says: {}",
            String::from_utf8_lossy(&r.body)
        )
    });
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path}: the {status} answer does not match the API document:\n  {}\nanswer: {body}",
        errors.join("\n  ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_becomes_a_union_with_null() {
        let s = to_json_schema(&json!({"type": "string", "nullable": true}));
        assert_eq!(s, json!({"anyOf": [{"type": "string"}, {"type": "null"}]}));
    }

    fn answer(status: u16, body: Value) -> Response {
        Response {
            status: hyper::StatusCode::from_u16(status).unwrap(),
            json: body.clone(),
            body: body.to_string().into_bytes().into(),
            headers: hyper::HeaderMap::new(),
            server_spki_sha256: String::new(),
        }
    }

    #[test]
    fn a_matching_answer_passes() {
        let f = json!([{"id": "0".repeat(32), "name": "f", "sha256": "a".repeat(64),
                        "library": false, "registered_at": "2026-01-01T00:00:00Z"},
                       {"id": "1".repeat(32), "name": "g", "sha256": "b".repeat(64),
                        "library": true, "description": "d", "input_schema": {"type": "object"},
                        "registered_at": "2026-01-01T00:00:00Z"}]);
        check("GET", "/v1/functions", &answer(200, f));
        let mut refused = answer(
            405,
            json!({"error": {"code": "method_not_allowed", "message": "no"}}),
        );
        refused.headers.insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, POST"),
        );
        check("DELETE", "/v1/functions", &refused);
    }

    #[test]
    #[should_panic(expected = "does not match the API document")]
    fn an_object_where_the_document_says_array_fails() {
        check(
            "GET",
            "/v1/functions",
            &answer(200, json!({"functions": []})),
        );
    }

    #[test]
    #[should_panic(expected = "does not match the API document")]
    fn a_malformed_id_fails() {
        let f = json!([{"id": "XYZ", "name": "f", "sha256": "a".repeat(64),
                        "library": false, "registered_at": "2026-01-01T00:00:00Z"}]);
        check("GET", "/v1/functions", &answer(200, f));
    }

    #[test]
    fn templates_match_concrete_paths() {
        assert_eq!(
            template_of(&format!("/v1/instances/{}/inputs/a", "0".repeat(32))),
            Some("/v1/instances/{id}/inputs/{slot}")
        );
        assert_eq!(template_of("/v1/functions"), Some("/v1/functions"));
        assert_eq!(template_of("/v1/nothing/here"), None);
        assert!(schema_for("GET", "/metrics", 200).is_none());
        assert!(schema_for("GET", "/v1/functions", 200).is_some());
    }
}
