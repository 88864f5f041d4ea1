//! The OpenAPI 3.0 document served at `GET /v1/openapi.json`, assembled from the route
//! table ([`super::routes`]) and the wire contract's types (`arbiter_proto::api`), whose
//! JSON Schemas are generated from the Rust types: the document cannot drift from the
//! code that routes requests and serializes answers.

use arbiter_proto::api::{
    ActivateCredential, Approval, Attestation, AuthorizeUpgrade, CreateInstance, CreatedInstance,
    DestructionCertificate, EpochReset, ErrorBody, EvaluationStarted, FleetRevocation,
    FunctionDetail, FunctionSummary, Health, InputReceipt, InstanceDescription, RegisterFunction,
    ResultView, Secret, SubmitInput, TpmInfo, UpgradeStatus, Usage, Withdrawal,
};
use arbiter_proto::{FunctionId, InstanceId};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::routes::{Endpoint, Route, endpoints};

/// A schema of the contract, generated into the document's components.
type SchemaOf = fn(&mut SchemaGenerator) -> Schema;

fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// What one endpoint reads and answers beyond its path.
struct Contract {
    /// The JSON body it reads, if any.
    request: Option<SchemaOf>,
    /// Its success answer: JSON of this schema, or `None` for the metrics text.
    answer: Option<SchemaOf>,
    /// Query parameters: name, required, schema.
    query: Vec<(&'static str, bool, Value)>,
    /// The type of the `{id}` path parameter.
    id: Option<SchemaOf>,
}

/// The request, answer, query and id of each route. Exhaustive, so a new route has to say.
fn contract(route: Route) -> Contract {
    let plain = |answer: SchemaOf| Contract {
        request: None,
        answer: Some(answer),
        query: Vec::new(),
        id: None,
    };
    let on_instance = |answer: SchemaOf| Contract {
        id: Some(of::<InstanceId>),
        ..plain(answer)
    };
    match route {
        Route::Healthz => plain(of::<Health>),
        Route::Metrics => Contract {
            request: None,
            answer: None,
            query: Vec::new(),
            id: None,
        },
        Route::OpenApi => plain(|_| Schema::from(true)),
        Route::Attestation => Contract {
            query: vec![
                (
                    "nonce",
                    true,
                    json!({"type": "string", "pattern": "^([0-9a-f]{2}){16,64}$",
                           "description": "lowercase hex of 16 to 64 random bytes"}),
                ),
                (
                    "instance",
                    false,
                    json!({"type": "string", "pattern": "^[0-9a-f]{32}$",
                           "description": "an instance id: adds its description"}),
                ),
            ],
            ..plain(of::<Attestation>)
        },
        Route::TpmInfo => plain(of::<TpmInfo>),
        Route::ActivateCredential => Contract {
            request: Some(of::<ActivateCredential>),
            ..plain(of::<Secret>)
        },
        Route::ListFunctions => plain(of::<Vec<FunctionSummary>>),
        Route::RegisterFunction => Contract {
            request: Some(of::<RegisterFunction>),
            ..plain(of::<FunctionSummary>)
        },
        Route::GetFunction => Contract {
            id: Some(of::<FunctionId>),
            ..plain(of::<FunctionDetail>)
        },
        Route::CreateInstance => Contract {
            request: Some(of::<CreateInstance>),
            ..plain(of::<CreatedInstance>)
        },
        Route::GetInstance => on_instance(of::<InstanceDescription>),
        Route::PutInput => Contract {
            request: Some(of::<SubmitInput>),
            ..on_instance(of::<InputReceipt>)
        },
        Route::DeleteInput => on_instance(of::<Withdrawal>),
        Route::Approve => on_instance(of::<Approval>),
        Route::Evaluate => on_instance(of::<EvaluationStarted>),
        Route::GetResult => Contract {
            query: vec![
                (
                    "wait",
                    false,
                    json!({"type": "integer", "minimum": 0,
                           "description": "seconds to wait for a result (capped by the daemon)"}),
                ),
                (
                    "round",
                    false,
                    json!({"type": "integer", "minimum": 0, "description": "the round wanted"}),
                ),
            ],
            ..on_instance(of::<ResultView>)
        },
        Route::Usage => on_instance(of::<Usage>),
        Route::Destroy | Route::DestructionCertificate => on_instance(of::<DestructionCertificate>),
        Route::EpochReset => plain(of::<EpochReset>),
        Route::UpgradeStatus | Route::WithdrawUpgrade => plain(of::<UpgradeStatus>),
        Route::AuthorizeUpgrade => Contract {
            request: Some(of::<AuthorizeUpgrade>),
            ..plain(of::<UpgradeStatus>)
        },
        Route::FleetRevocation | Route::ClearFleetRevocation => plain(of::<FleetRevocation>),
    }
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn operation(e: &Endpoint, g: &mut SchemaGenerator) -> Value {
    let c = contract(e.route);
    let mut parameters = Vec::new();
    for segment in e.path.split('/') {
        let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            continue;
        };
        let schema = match (name, c.id) {
            ("id", Some(id)) => id(g).to_value(),
            ("slot", _) => json!({"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"}),
            _ => json!({"type": "string"}),
        };
        parameters.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
    }
    for (name, required, schema) in c.query {
        parameters
            .push(json!({"name": name, "in": "query", "required": required, "schema": schema}));
    }
    let success = match c.answer {
        Some(answer) => {
            json!({"description": "success", "content": json_content(answer(g).to_value())})
        }
        None => json!({"description": "Prometheus metrics in the OpenMetrics text format",
                       "content": {crate::metrics::MEDIA_TYPE: {"schema": {"type": "string"}}}}),
    };
    let error = of::<ErrorBody>(g).to_value();
    let mut responses = Map::new();
    responses.insert(e.status.to_string(), success);
    responses.insert(
        "405".into(),
        json!({"description": "the path exists but not with this method; `Allow` lists its methods",
               "headers": {"Allow": {"schema": {"type": "string"}}},
               "content": json_content(error.clone())}),
    );
    if c.request.is_some() {
        responses.insert(
            "413".into(),
            json!({"description": "the body is over a size limit; `error.message` names the limit and its value",
                   "content": json_content(error.clone())}),
        );
    }
    if e.method != hyper::Method::GET {
        responses.insert(
            "507".into(),
            json!({"description": "`disk_full`: the appliance's disk is full; the request was not stored \
                                  (docs/reliability.md)",
                   "content": json_content(error.clone())}),
        );
    }
    responses.insert(
        "503".into(),
        json!({"description": "not now: `busy` (a shared budget is spent: request bodies, the spool, or the places for \
                              client requests waiting for the TPM; retry after `Retry-After` seconds), \
                              `tpm_unavailable`, `storage_unavailable` (the state directory cannot be written: its \
                              filesystem is read-only or failing; nothing was stored), or `sealing_unavailable` \
                              (the daemon is degraded)",
               "headers": {"Retry-After": {"description": "seconds to wait, sent with `busy` and `storage_unavailable`",
                                           "schema": {"type": "integer", "minimum": 0}}},
               "content": json_content(error.clone())}),
    );
    responses.insert(
        "default".into(),
        json!({"description": "a refusal or failure: `error.code` says which",
               "content": json_content(error)}),
    );
    let mut op = json!({
        "summary": e.summary,
        "operationId": format!("{:?}", e.route),
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(request) = c.request {
        op["requestBody"] =
            json!({"required": true, "content": json_content(request(g).to_value())});
    }
    op
}

/// The OpenAPI 3.0 document of the route table with the contract's schemas.
pub fn document() -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let mut paths = Map::new();
    for e in endpoints() {
        let op = operation(&e, &mut g);
        let entry = paths.entry(e.path.to_owned()).or_insert_with(|| json!({}));
        entry[super::method_name(&e.method)] = op;
    }
    let mut schemas = g.take_definitions(true);
    // The document's traditional name for the error body.
    if let Some(error) = schemas.get(&ErrorBody::schema_name().into_owned()).cloned() {
        schemas.insert("Error".into(), error);
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Arbiter", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Attested trusted third party for multi-party computation. Mutual TLS: the caller's identity is the SHA-256 of its certificate's SubjectPublicKeyInfo. Schemas are generated from the wire contract's Rust types (crate arbiter-proto)."},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in `v`.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_every_operation_answers() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.0.3");
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 20, "schemas are referenced: {}", all.len());
        for r in all {
            let pointer = r.strip_prefix('#').unwrap_or(r);
            assert!(
                r.starts_with("#/components/schemas/") && doc.pointer(pointer).is_some(),
                "unresolved $ref {r}"
            );
        }
        for e in endpoints() {
            let op = &doc["paths"][e.path][super::super::method_name(&e.method)];
            let ok = &op["responses"][e.status.to_string()]["content"];
            assert!(
                ok.is_object(),
                "{} {} has no success content",
                e.method,
                e.path
            );
            assert_eq!(
                op["requestBody"].is_object(),
                e.body,
                "{} {}",
                e.method,
                e.path
            );
            assert!(
                op["responses"]["default"]["content"]["application/json"]["schema"].is_object()
            );
        }
    }

    #[test]
    fn size_limits_and_overload_are_documented_where_they_happen() {
        let doc = document();
        let put = &doc["paths"]["/v1/instances/{id}/inputs/{slot}"]["put"]["responses"];
        assert!(
            put["413"]["content"]["application/json"].is_object(),
            "{put}"
        );
        assert_eq!(
            put["503"]["headers"]["Retry-After"]["schema"]["type"], "integer",
            "{put}"
        );
        // A body-less request cannot be too large.
        let get = &doc["paths"]["/v1/functions"]["get"]["responses"];
        assert!(get.get("413").is_none(), "{get}");
    }

    #[test]
    fn the_answers_schemathesis_found_wrong_are_right() {
        let doc = document();
        let list = &doc["paths"]["/v1/functions"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        assert_eq!(list["type"], "array", "{list}");
        assert!(
            doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
                [crate::metrics::MEDIA_TYPE]
                .is_object()
        );
        let params = doc["paths"]["/v1/attestation"]["get"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "nonce" && p["required"] == true)
        );
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "instance" && p["in"] == "query")
        );
        let id = &doc["paths"]["/v1/instances/{id}"]["get"]["parameters"][0]["schema"];
        let id = doc
            .pointer(id["$ref"].as_str().unwrap_or("").trim_start_matches('#'))
            .unwrap_or(id);
        assert_eq!(id["pattern"], "^[0-9a-f]{32}$", "{id}");
        let body = &doc["paths"]["/v1/functions"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        assert!(body["$ref"].is_string(), "request bodies are typed: {body}");
    }
}
