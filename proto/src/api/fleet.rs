//! The fleet revocation (docs/fleet.md): set when Keylime's verifier says the appliance
//! failed, reported in the attestation answer, read with `GET /v1/fleet/revocation` and
//! cleared by an operator with `DELETE /v1/fleet/revocation`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A revocation in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FleetRevoked {
    /// What the verifier said.
    pub reason: String,
    /// How it arrived: `notification`, `webhook` or `verifier_status`.
    pub source: String,
    /// When it arrived (RFC 3339, UTC).
    pub since: String,
}

/// The answer of `GET` and `DELETE /v1/fleet/revocation`: the revocation in force (for
/// `DELETE`, the one just cleared), or null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FleetRevocation {
    /// The revocation, or null when there is none.
    pub revoked: Option<FleetRevoked>,
}
