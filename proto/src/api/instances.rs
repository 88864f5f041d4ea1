//! Instances: `POST /v1/instances` (creation from a manifest), `GET /v1/instances/{id}`
//! (the description parties and operators see), `POST /v1/instances/{id}/approve` and
//! `GET /v1/instances/{id}/usage`.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::functions::FunctionDetail;
use super::schema::Timestamp;
use crate::InstanceState;
use crate::ids::{IdentityId, InstanceId, Sha256Digest};

/// The body of `POST /v1/instances`. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstance {
    /// The manifest (docs/manifest.md) as JSON; its digest is `sha256(JCS(manifest))`.
    pub manifest: serde_json::Value,
}

/// The answer of `POST /v1/instances` (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreatedInstance {
    /// The instance id.
    pub id: InstanceId,
    /// The HPKE public key for inputs: hex of the SEC1 uncompressed point (65 bytes).
    pub public_key: String,
    /// The HPKE suite.
    pub hpke_suite: String,
    /// `sha256(JCS(manifest))`.
    pub manifest_sha256: Sha256Digest,
    /// The function's measurement.
    pub function_sha256: Sha256Digest,
    /// The lifecycle state (`open`).
    pub state: InstanceState,
    /// The current round (1).
    pub round: u64,
}

/// An instance's state as its description reports it: a lifecycle state, or
/// `unrecoverable` for an instance whose secret no longer opens (a restored old copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportedState {
    /// `open`.
    Open,
    /// `evaluating`.
    Evaluating,
    /// `evaluated`.
    Evaluated,
    /// `destroying`.
    Destroying,
    /// `destroyed`.
    Destroyed,
    /// The instance's secret does not open any more; only an epoch reset gives it up.
    Unrecoverable,
}

impl From<InstanceState> for ReportedState {
    fn from(s: InstanceState) -> Self {
        match s {
            InstanceState::Open => ReportedState::Open,
            InstanceState::Evaluating => ReportedState::Evaluating,
            InstanceState::Evaluated => ReportedState::Evaluated,
            InstanceState::Destroying => ReportedState::Destroying,
            InstanceState::Destroyed => ReportedState::Destroyed,
        }
    }
}

impl ReportedState {
    /// The lifecycle state, unless unrecoverable.
    pub const fn lifecycle(self) -> Option<InstanceState> {
        match self {
            ReportedState::Open => Some(InstanceState::Open),
            ReportedState::Evaluating => Some(InstanceState::Evaluating),
            ReportedState::Evaluated => Some(InstanceState::Evaluated),
            ReportedState::Destroying => Some(InstanceState::Destroying),
            ReportedState::Destroyed => Some(InstanceState::Destroyed),
            ReportedState::Unrecoverable => None,
        }
    }
}

impl fmt::Display for ReportedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.lifecycle() {
            Some(s) => f.write_str(s.as_str()),
            None => f.write_str("unrecoverable"),
        }
    }
}

/// One slot's status: filled or not, by whom and when — never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SlotStatus {
    /// The slot.
    pub slot: String,
    /// Whether an input is in it.
    pub filled: bool,
    /// Who filled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitter: Option<IdentityId>,
    /// When it was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Timestamp>")]
    pub accepted_at: Option<String>,
    /// The round it was submitted in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u64>,
    /// Its `ciphertext_sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext_sha256: Option<Sha256Digest>,
}

/// What happens when a provider submits again to a slot it already filled in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resubmission {
    /// The first submission stays.
    First,
    /// The last submission replaces earlier ones.
    Last,
    /// A second submission is an error.
    Reject,
}

/// When inputs are accepted (the manifest's window).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Window {
    /// Inputs are refused from this time on (absent: until destruction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Timestamp>")]
    pub closes: Option<String>,
    /// Inputs are refused before this time (absent: from creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Timestamp>")]
    pub opens: Option<String>,
    /// How a second submission to the same slot is treated.
    pub resubmission: Resubmission,
}

/// The answer of `GET /v1/instances/{id}` (and an attestation's `instance`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceDescription {
    /// The id.
    pub id: InstanceId,
    /// The manifest exactly as submitted.
    pub manifest: serde_json::Value,
    /// Its digest, `sha256(JCS(manifest))`.
    pub manifest_sha256: Sha256Digest,
    /// The function: id, measurement and source.
    pub function: FunctionDetail,
    /// The state.
    pub state: ReportedState,
    /// The current round.
    pub round: u64,
    /// Evaluations so far.
    pub evaluations: u64,
    /// The input window.
    pub window: Window,
    /// Whether inputs are accepted now (approval, window, state).
    pub accepting_inputs: bool,
    /// Slot statuses, in slot order.
    pub slots: Vec<SlotStatus>,
    /// Who approved (explicit approval), with when.
    pub approvals: BTreeMap<IdentityId, String>,
    /// The HPKE public key for inputs, hex SEC1 uncompressed.
    pub public_key: String,
    /// The HPKE suite.
    pub hpke_suite: String,
    /// Who created it.
    pub created_by: IdentityId,
    /// When.
    #[schemars(with = "Timestamp")]
    pub created_at: String,
}

/// The answer of `POST /v1/instances/{id}/approve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Approval {
    /// Every party that has approved so far.
    pub approved: Vec<IdentityId>,
    /// Whether every party has approved.
    pub complete: bool,
    /// The instance.
    pub instance_id: InstanceId,
}

/// The answer of `GET /v1/instances/{id}/usage`: what the caller may see of the usage
/// figures (docs/api.md). Figures are by metric name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    /// Figures derived from evaluations (result readers and operators only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<BTreeMap<String, u64>>,
    /// The number of evaluations.
    pub evaluations: u64,
    /// The instance.
    pub instance_id: InstanceId,
    /// The caller's own figures (parties only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own: Option<BTreeMap<String, u64>>,
    /// Every identity's figures, evaluations' under `evaluation` (operators only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_identity: Option<BTreeMap<String, BTreeMap<String, u64>>>,
    /// Totals by metric (operators only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<BTreeMap<String, u64>>,
}
