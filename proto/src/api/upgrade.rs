//! Image upgrades (docs/appliance.md, "Upgrades"): a new boot chain changes the measured
//! platform PCRs, and the sealing key is sealed to them, so every live secret is locked
//! away by the first boot of a new image. `GET /v1/admin/upgrade` lists what is live;
//! `POST` authorizes the next start in another platform state to seal afresh (refused while
//! an instance is live unless forced); `DELETE` withdraws the authorization.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The body of `POST /v1/admin/upgrade`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeUpgrade {
    /// Authorize even while instances are live: their inputs become unrecoverable after
    /// the upgrade (an epoch reset gives them up).
    #[serde(default)]
    pub force: bool,
}

/// An instance that is not destroyed: its secret is sealed to the current boot chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LiveInstance {
    /// The instance id.
    pub id: String,
    /// The manifest's name.
    pub name: String,
    /// `open`, `evaluating`, `evaluated` or `destroying`.
    pub state: String,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
}

/// An operator's authorization to seal afresh at the next start in another platform state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UpgradeAuthorization {
    /// The operator who authorized it.
    pub by: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Whether it was forced while instances were live.
    pub forced: bool,
    /// The instances live when it was authorized (empty unless forced).
    pub live_at_authorization: Vec<String>,
}

/// The answer of `GET`, `POST` and `DELETE /v1/admin/upgrade`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UpgradeStatus {
    /// Every instance not destroyed, oldest first.
    pub live_instances: Vec<LiveInstance>,
    /// The authorization in force (for `DELETE`, the one withdrawn), or null.
    pub authorized: Option<UpgradeAuthorization>,
}
