//! Evaluation and results: `POST /v1/instances/{id}/evaluate` (an explicit trigger) and
//! `GET /v1/instances/{id}/result` (what each reader may see of a result).

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::schema::Timestamp;
use crate::InstanceState;
use crate::ids::{IdentityId, InstanceId, Sha256Digest};

/// The answer of `POST /v1/instances/{id}/evaluate` (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EvaluationStarted {
    /// The instance.
    pub instance_id: InstanceId,
    /// The round being evaluated.
    pub round: u64,
    /// `evaluating`.
    pub state: InstanceState,
}

/// Why an evaluation produced no output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EvaluationError {
    /// What happened, for people.
    pub message: String,
    /// The reason's code: `compile`, `no_compute_function`, `runtime`, `operation_limit`,
    /// `memory_limit`, `call_depth_limit`, `size_limit`, `timeout`, `crashed`, `bad_output`,
    /// or, outside the sandbox, `sandbox`, `function_tampered` and `unsigned`
    /// (docs/sandbox.md).
    pub reason: String,
}

/// An input an evaluation used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UsedInput {
    /// `sha256(enc || ciphertext)`.
    pub ciphertext_sha256: Sha256Digest,
    /// The slot.
    pub slot: String,
    /// Who submitted it.
    pub submitter: IdentityId,
}

/// The answer of `GET /v1/instances/{id}/result`. Status readers see only `evaluated`,
/// `round`, `evaluated_at` and `state`; the other fields are for result readers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResultView {
    /// The instance.
    pub instance_id: InstanceId,
    /// Whether a result exists.
    pub evaluated: bool,
    /// The round of the result shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u64>,
    /// When it was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Timestamp>")]
    pub evaluated_at: Option<String>,
    /// Whether evaluation succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<bool>,
    /// The function's output (null when evaluation failed). A present `null` reads as
    /// `Some(Value::Null)`, an absent field as `None`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<serde_json::Value>")]
    pub output: Option<serde_json::Value>,
    /// Why evaluation failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<EvaluationError>,
    /// The inputs used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<UsedInput>>,
    /// The function's measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_sha256: Option<Sha256Digest>,
    /// The manifest's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<Sha256Digest>,
    /// The signed result statement (compact JWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jws: Option<String>,
    /// The statement's payload, decoded for convenience (unverified: check `jws`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// The instance's state.
    pub state: InstanceState,
}

/// Reads a field that is present (even as `null`) as `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

impl ResultView {
    /// A view with nothing evaluated yet.
    pub fn pending(instance_id: InstanceId, state: InstanceState) -> Self {
        Self {
            instance_id,
            evaluated: false,
            round: None,
            evaluated_at: None,
            succeeded: None,
            output: None,
            error: None,
            inputs: None,
            function_sha256: None,
            manifest_sha256: None,
            jws: None,
            payload: None,
            state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_output_is_present_and_an_absent_one_is_not() {
        let id = "0".repeat(32);
        let with_null: Result<ResultView, _> = serde_json::from_str(&format!(
            r#"{{"instance_id":"{id}","evaluated":true,"output":null,"state":"evaluated"}}"#
        ));
        assert_eq!(
            with_null.ok().and_then(|v| v.output),
            Some(serde_json::Value::Null)
        );
        let without: Result<ResultView, _> = serde_json::from_str(&format!(
            r#"{{"instance_id":"{id}","evaluated":false,"state":"open"}}"#
        ));
        assert_eq!(without.map(|v| v.output).ok(), Some(None));
    }
}
