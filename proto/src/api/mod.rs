//! The types of every API request body, answer and error, by endpoint family, and the
//! parsing of request bodies (strict JSON, then the endpoint's shape) that the daemon and
//! the fuzz targets share. Every type derives `JsonSchema`, from which the daemon's
//! served OpenAPI document takes its schemas.

pub mod attestation;
pub mod destruction;
pub mod error;
pub mod fleet;
pub mod functions;
pub mod health;
pub mod inputs;
pub mod instances;
pub mod results;
pub mod schema;
pub mod upgrade;

pub use attestation::{
    ActivateCredential, Attestation, Binding, BindingLeaf, EkAlgorithm, EndorsementKey, Quote,
    QuotedPcrs, Sealing, Secret, StatementKey, TpmInfo, TpmKey,
};
pub use destruction::{DestructionCertificate, EpochReset, InputInclusion, InputLeaf};
pub use error::{ErrorBody, ErrorDetail, Problem};
pub use fleet::{FleetRevocation, FleetRevoked};
pub use functions::{FunctionDetail, FunctionSummary, LIBRARY_REGISTRAR, RegisterFunction};
pub use health::{Health, HealthStatus};
pub use inputs::{InputReceipt, SubmitInput, Withdrawal};
pub use instances::{
    Approval, CreateInstance, CreatedInstance, InstanceDescription, ReportedState, SlotStatus,
    Usage, Window,
};
pub use results::{EvaluationError, EvaluationStarted, ResultView, UsedInput};
pub use upgrade::{AuthorizeUpgrade, LiveInstance, UpgradeAuthorization, UpgradeStatus};

use serde::de::DeserializeOwned;

use crate::ProtoError;

/// Parses a request body: strict JSON (no duplicate keys, nothing after the document),
/// then the endpoint's shape (unknown fields refused where the type says so).
///
/// # Errors
/// [`ProtoError::Json`] for text that is not JSON, [`ProtoError::Shape`] for JSON of
/// another shape.
pub fn parse_request<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtoError> {
    let value = crate::json::parse_strict(bytes).map_err(|e| ProtoError::Json(e.to_string()))?;
    serde_json::from_value(value).map_err(|e| ProtoError::Shape(e.to_string()))
}

/// Parses the JSON answer of `endpoint` (e.g. `GET /v1/tpm`, for the error message).
///
/// # Errors
/// [`ProtoError::Answer`] naming the endpoint and the parser's message.
pub fn parse_answer<T: DeserializeOwned>(endpoint: &str, bytes: &[u8]) -> Result<T, ProtoError> {
    serde_json::from_slice(bytes).map_err(|e| ProtoError::Answer {
        endpoint: endpoint.to_owned(),
        reason: e.to_string(),
    })
}

/// Decodes an answer already parsed as JSON.
///
/// # Errors
/// As [`parse_answer`].
pub fn answer_from_value<T: DeserializeOwned>(
    endpoint: &str,
    value: serde_json::Value,
) -> Result<T, ProtoError> {
    serde_json::from_value(value).map_err(|e| ProtoError::Answer {
        endpoint: endpoint.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_are_strict() {
        let ok: Result<RegisterFunction, _> =
            parse_request(br#"{"name":"n","language":"rhai","source":"fn compute(i) { 1 }"}"#);
        assert_eq!(ok.map(|r| r.name).ok(), Some("n".to_owned()));
        let dup: Result<RegisterFunction, _> =
            parse_request(br#"{"name":"n","name":"m","language":"rhai","source":""}"#);
        assert!(matches!(dup, Err(ProtoError::Json(_))));
        let unknown: Result<RegisterFunction, _> =
            parse_request(br#"{"name":"n","language":"rhai","source":"","extra":1}"#);
        assert!(matches!(unknown, Err(ProtoError::Shape(_))));
        let unknown: Result<SubmitInput, _> =
            parse_request(br#"{"enc":"","ciphertext":"","other":null}"#);
        assert!(matches!(unknown, Err(ProtoError::Shape(_))));
    }

    #[test]
    fn answers_name_their_endpoint_when_malformed() {
        let e = parse_answer::<Health>("GET /healthz", b"{}")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("GET /healthz"), "{e}");
    }
}
