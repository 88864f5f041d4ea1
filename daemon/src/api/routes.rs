//! The route table: one entry per endpoint, used both to route requests and to generate
//! the OpenAPI 3 document at `GET /v1/openapi.json`, so the two cannot drift apart.

use hyper::Method;
use serde_json::Value;

/// Every endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`
    Healthz,
    /// `GET /metrics`
    Metrics,
    /// `GET /v1/openapi.json`
    OpenApi,
    /// `GET /v1/attestation`
    Attestation,
    /// `GET /v1/tpm`
    TpmInfo,
    /// `POST /v1/tpm/activate-credential`
    ActivateCredential,
    /// `GET /v1/functions`
    ListFunctions,
    /// `POST /v1/functions`
    RegisterFunction,
    /// `GET /v1/functions/{id}`
    GetFunction,
    /// `POST /v1/instances`
    CreateInstance,
    /// `GET /v1/instances/{id}`
    GetInstance,
    /// `PUT /v1/instances/{id}/inputs/{slot}`
    PutInput,
    /// `DELETE /v1/instances/{id}/inputs/{slot}`
    DeleteInput,
    /// `POST /v1/instances/{id}/approve`
    Approve,
    /// `POST /v1/instances/{id}/evaluate`
    Evaluate,
    /// `GET /v1/instances/{id}/result`
    GetResult,
    /// `GET /v1/instances/{id}/usage`
    Usage,
    /// `POST /v1/instances/{id}/destroy`
    Destroy,
    /// `GET /v1/instances/{id}/destruction-certificate`
    DestructionCertificate,
    /// `POST /v1/admin/epoch-reset`
    EpochReset,
    /// `GET /v1/admin/upgrade`
    UpgradeStatus,
    /// `POST /v1/admin/upgrade`
    AuthorizeUpgrade,
    /// `DELETE /v1/admin/upgrade`
    WithdrawUpgrade,
    /// `GET /v1/fleet/revocation`
    FleetRevocation,
    /// `DELETE /v1/fleet/revocation`
    ClearFleetRevocation,
}

/// One row of the table.
pub struct Endpoint {
    /// The route.
    pub route: Route,
    /// The method.
    pub method: Method,
    /// The path template (`{name}` segments are parameters).
    pub path: &'static str,
    /// What it does and who may call it.
    pub summary: &'static str,
    /// Success status.
    pub status: u16,
    /// Whether it takes a JSON body.
    pub body: bool,
}

/// The table.
pub fn endpoints() -> Vec<Endpoint> {
    use Route::*;
    let e = |route, method, path, summary, status, body| Endpoint {
        route,
        method,
        path,
        summary,
        status,
        body,
    };
    vec![
        e(
            Healthz,
            Method::GET,
            "/healthz",
            "Liveness; echoes the caller's identity. `status` is `ok`, or `degraded` with the \
             reasons in `degraded` (e.g. evaluations cannot start and are being retried; or \
             `sealing: unavailable: …` when the platform state does not satisfy the sealing \
             policy — then only this, attestation and the TPM's public parts answer and every \
             other endpoint answers 503 `sealing_unavailable`). Any authenticated client.",
            200,
            false,
        ),
        e(
            Metrics,
            Method::GET,
            "/metrics",
            "Prometheus metrics. Operators.",
            200,
            false,
        ),
        e(
            OpenApi,
            Method::GET,
            "/v1/openapi.json",
            "This document. Any authenticated client.",
            200,
            false,
        ),
        e(
            Attestation,
            Method::GET,
            "/v1/attestation",
            "A TPM quote bound to ?nonce=HEX (16-64 bytes) and this TLS channel through an RFC 9162 \
             Merkle leaf, with the AK, PCR values, measurement log, sealing index and firmware \
             log; &instance=ID adds the instance's description (its parties and operators). Any \
             authenticated client.",
            200,
            false,
        ),
        e(
            TpmInfo,
            Method::GET,
            "/v1/tpm",
            "The AK, each EK {alg, tpm2b_public, cert_der} and the statement key's certification \
             by the AK. Any authenticated client.",
            200,
            false,
        ),
        e(
            ActivateCredential,
            Method::POST,
            "/v1/tpm/activate-credential",
            "TPM2_ActivateCredential of {ek_alg, credential_blob, encrypted_secret} (base64 \
             TPM2B) with the AK; returns {secret}. Any authenticated client.",
            200,
            true,
        ),
        e(
            ListFunctions,
            Method::GET,
            "/v1/functions",
            "Registered functions (id, name, sha256). Any authenticated client.",
            200,
            false,
        ),
        e(
            RegisterFunction,
            Method::POST,
            "/v1/functions",
            "Register {name, language: \"rhai\", source}; returns {id, name, sha256}. Operators and access.function_registrars.",
            201,
            true,
        ),
        e(
            GetFunction,
            Method::GET,
            "/v1/functions/{id}",
            "One function with its source. Any authenticated client.",
            200,
            false,
        ),
        e(
            CreateInstance,
            Method::POST,
            "/v1/instances",
            "Create an instance from {manifest}; returns {id, public_key, hpke_suite, manifest_sha256, function_sha256, state, round}. Operators and access.creators (quota).",
            201,
            true,
        ),
        e(
            GetInstance,
            Method::GET,
            "/v1/instances/{id}",
            "Describe an instance: manifest, function, state, round, window, slot statuses (never values), public key. Parties and operators.",
            200,
            false,
        ),
        e(
            PutInput,
            Method::PUT,
            "/v1/instances/{id}/inputs/{slot}",
            "Submit {enc, ciphertext, expect_function_sha256?} (base64, HPKE as docs/protocol.md describes); returns {slot, round, ciphertext_sha256, accepted_at}. The slot's providers.",
            200,
            true,
        ),
        e(
            DeleteInput,
            Method::DELETE,
            "/v1/instances/{id}/inputs/{slot}",
            "Withdraw and delete the caller's own input. The slot's providers.",
            200,
            false,
        ),
        e(
            Approve,
            Method::POST,
            "/v1/instances/{id}/approve",
            "Approve the manifest (explicit approval). Parties.",
            200,
            false,
        ),
        e(
            Evaluate,
            Method::POST,
            "/v1/instances/{id}/evaluate",
            "Evaluate now (explicit trigger, every slot filled). Evaluators.",
            202,
            false,
        ),
        e(
            GetResult,
            Method::GET,
            "/v1/instances/{id}/result",
            "The result (?wait=SECONDS long-polls, ?round=N); status readers see only {evaluated, evaluated_at}. Readers.",
            200,
            false,
        ),
        e(
            Usage,
            Method::GET,
            "/v1/instances/{id}/usage",
            "Usage (parties and operators): a party sees its own figures and the number of evaluations; evaluation figures (operations, wall time, output size) only result readers and operators; totals and per-identity figures only operators.",
            200,
            false,
        ),
        e(
            Destroy,
            Method::POST,
            "/v1/instances/{id}/destroy",
            "Destroy now (backup-proof: the sealing key is rotated); returns the signed \
             certificate {jws, payload, inputs} as the certificate endpoint does. The \
             manifest's destroyers.",
            200,
            false,
        ),
        e(
            DestructionCertificate,
            Method::GET,
            "/v1/instances/{id}/destruction-certificate",
            "The signed certificate of destruction {jws, payload, inputs}: inputs are the caller's own leaves of the signed inputs tree with their RFC 9162 inclusion proofs {leaf, leaf_index, proof}. Parties and operators.",
            200,
            false,
        ),
        e(
            EpochReset,
            Method::POST,
            "/v1/admin/epoch-reset",
            "Give up instances whose secrets no longer open (a restored old copy) and rotate \
             the sealing key, so new instances are accepted again. Operators.",
            200,
            false,
        ),
        e(
            UpgradeStatus,
            Method::GET,
            "/v1/admin/upgrade",
            "Before an image upgrade: every live instance (its secret is sealed to this boot \
             chain, so an image with other measured values locks it away) and the upgrade \
             authorization in force, or null. Operators.",
            200,
            false,
        ),
        e(
            AuthorizeUpgrade,
            Method::POST,
            "/v1/admin/upgrade",
            "Authorize the next start in another platform state (the upgraded image) to seal \
             afresh; until then no instance is created. Refused (409 instances_live) while an \
             instance is live, unless {\"force\": true}. Operators.",
            200,
            true,
        ),
        e(
            WithdrawUpgrade,
            Method::DELETE,
            "/v1/admin/upgrade",
            "Withdraw the upgrade authorization; returns the one withdrawn (or null). \
             Operators.",
            200,
            false,
        ),
        e(
            FleetRevocation,
            Method::GET,
            "/v1/fleet/revocation",
            "The fleet revocation in force (Keylime's verifier said this appliance failed), \
             or null. Operators.",
            200,
            false,
        ),
        e(
            ClearFleetRevocation,
            Method::DELETE,
            "/v1/fleet/revocation",
            "Clear the fleet revocation once the appliance was checked: inputs and \
             evaluations are accepted again. Returns the revocation cleared (or null). \
             Operators.",
            200,
            false,
        ),
    ]
}

fn split(path: &str) -> Vec<&str> {
    path.trim_matches('/').split('/').collect()
}

fn matches(template: &str, path: &str) -> Option<Vec<String>> {
    let t = split(template);
    let p = split(path);
    if t.len() != p.len() {
        return None;
    }
    let mut params = Vec::new();
    for (a, b) in t.iter().zip(&p) {
        if a.starts_with('{') {
            if b.is_empty() {
                return None;
            }
            params.push((*b).to_owned());
        } else if a != b {
            return None;
        }
    }
    Some(params)
}

/// Whether `route` answers while the daemon is degraded (its sealing key unavailable,
/// docs/protocol.md): health, the API description, attestation and the TPM's public parts
/// (including credential activation, which enrolling verifiers need), and the fleet
/// revocation (its file under `STATE/keylime/` is outside the store). Every other route
/// may need a secret, or would change state that a later healthy start must find as it
/// was, and is refused. Exhaustive, so a new route has to decide.
pub fn serves_when_degraded(route: Route) -> bool {
    match route {
        Route::Healthz
        | Route::OpenApi
        | Route::Attestation
        | Route::TpmInfo
        | Route::ActivateCredential
        | Route::FleetRevocation
        | Route::ClearFleetRevocation => true,
        Route::Metrics
        | Route::ListFunctions
        | Route::RegisterFunction
        | Route::GetFunction
        | Route::CreateInstance
        | Route::GetInstance
        | Route::PutInput
        | Route::DeleteInput
        | Route::Approve
        | Route::Evaluate
        | Route::GetResult
        | Route::Usage
        | Route::Destroy
        | Route::DestructionCertificate
        | Route::EpochReset
        | Route::UpgradeStatus
        | Route::AuthorizeUpgrade
        | Route::WithdrawUpgrade => false,
    }
}
/// The route for a method and path, with its parameters in order.
pub fn match_route(method: &Method, path: &str) -> Option<(Route, Vec<String>)> {
    endpoints()
        .into_iter()
        .filter(|e| e.method == *method)
        .find_map(|e| matches(e.path, path).map(|p| (e.route, p)))
}

/// Whether some method serves `path` (to tell 405 from 404).
pub fn path_exists(path: &str) -> bool {
    endpoints().iter().any(|e| matches(e.path, path).is_some())
}

/// The methods that serve `path`, in table order (a 405's `Allow` header); empty when
/// none does.
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = Vec::new();
    for e in endpoints() {
        if matches(e.path, path).is_some() && !methods.contains(&method_str(&e.method)) {
            methods.push(method_str(&e.method));
        }
    }
    methods
}

fn method_str(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "OPTIONS",
    }
}

/// The OpenAPI 3.0 document of the table, with the wire contract's schemas.
pub fn openapi() -> Value {
    super::openapi::document()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_routable() {
        let doc = openapi();
        for e in endpoints() {
            let op = &doc["paths"][e.path][super::super::method_name(&e.method)];
            assert!(
                op.is_object(),
                "{} {} missing from the OpenAPI document",
                e.method,
                e.path
            );
            let concrete = e
                .path
                .replace("{id}", &"a".repeat(32))
                .replace("{slot}", "s");
            assert_eq!(
                match_route(&e.method, &concrete).map(|r| r.0),
                Some(e.route)
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .map(|p| {
                p.values()
                    .map(|m| m.as_object().map_or(0, |m| m.len()))
                    .sum()
            })
            .unwrap_or(0);
        assert_eq!(documented, endpoints().len());
    }

    #[test]
    fn unknown_paths_and_methods() {
        assert!(match_route(&Method::GET, "/v1/nothing").is_none());
        assert!(!path_exists("/v1/nothing"));
        assert!(match_route(&Method::DELETE, "/v1/functions").is_none());
        assert!(path_exists("/v1/functions"));
    }
}
