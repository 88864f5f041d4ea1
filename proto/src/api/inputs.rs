//! Inputs: `PUT /v1/instances/{id}/inputs/{slot}` (an HPKE-encrypted input and its
//! receipt) and `DELETE` of the same path (withdrawal).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::{Base64, Timestamp};
use crate::ids::{InstanceId, Sha256Digest};

/// The body of `PUT /v1/instances/{id}/inputs/{slot}`. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitInput {
    /// HPKE encapsulated key, base64.
    #[schemars(with = "Base64")]
    pub enc: String,
    /// HPKE ciphertext, base64.
    #[schemars(with = "Base64")]
    pub ciphertext: String,
    /// Use this input only with this function measurement (64 lowercase hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_function_sha256: Option<String>,
}

/// The receipt of an accepted input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InputReceipt {
    /// The slot.
    pub slot: String,
    /// The round the input counts for.
    pub round: u64,
    /// `sha256(enc || ciphertext)` of the input kept in the slot.
    pub ciphertext_sha256: Sha256Digest,
    /// When the kept input was accepted.
    #[schemars(with = "Timestamp")]
    pub accepted_at: String,
    /// With resubmission `first`: this submission was discarded and the first one kept
    /// (absent otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept_first: bool,
}

/// The answer of `DELETE /v1/instances/{id}/inputs/{slot}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Withdrawal {
    /// The instance.
    pub instance_id: InstanceId,
    /// The slot.
    pub slot: String,
    /// Always true.
    pub withdrawn: bool,
}
