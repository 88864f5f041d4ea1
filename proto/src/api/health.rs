//! `GET /healthz`: liveness, the reasons the daemon is degraded, and the caller's
//! identity.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::IdentityId;

/// Whether the daemon is fully working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Everything works.
    Ok,
    /// Something does not; `degraded` says what.
    Degraded,
}

/// The answer of `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// Why the daemon is degraded (only when it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<Vec<String>>,
    /// The caller's identity, as the daemon sees it.
    pub identity: IdentityId,
    /// `ok` or `degraded`.
    pub status: HealthStatus,
}
