//! What the engine answers when it refuses or fails: each variant says what was wrong in
//! words a caller can act on; the API maps them to HTTP statuses and error codes.

use arbiter_policy::lifecycle::{Refusal, RefusalKind};
use arbiter_policy::manifest::ManifestProblem;

use crate::keys::KeyError;
use crate::store::StoreError;
use crate::tls::TlsError;
use crate::tpm::TpmError;

/// A refused or failed request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The caller's identity may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed (code names the problem).
    #[error("{message}")]
    BadRequest {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// The request conflicts with the instance's state (code names it).
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// The manifest is invalid; every problem is listed.
    #[error("invalid manifest: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidManifest(Vec<ManifestProblem>),
    /// An input is larger than a limit allows (code and message name which); nothing was
    /// stored.
    #[error("{message}")]
    TooLarge {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable explanation naming the limit and its value.
        message: String,
    },
    /// A quota is exhausted.
    #[error("{0}")]
    Quota(String),
    /// The TPM failed; nothing was changed.
    #[error("TPM: {0}")]
    Tpm(#[from] TpmError),
    /// The store failed; nothing was acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A secret could not be unwrapped.
    #[error("keys: {0}")]
    Keys(#[from] KeyError),
    /// Evidence cannot be produced now (the TPM or the measurement log refused); the
    /// message says why.
    #[error("{0}")]
    Unavailable(String),
    /// The daemon started degraded: the platform state does not satisfy the sealing
    /// index's policy, so nothing that needs a secret is done (docs/protocol.md); the reason.
    #[error("the appliance is degraded, nothing that needs a secret is done: {0}")]
    SealingUnavailable(String),
    /// Keylime's verifier said this appliance failed (docs/fleet.md): nothing that needs a
    /// secret is done until an operator clears it; the reason.
    #[error("the appliance is degraded, nothing that needs a secret is done: {0}")]
    FleetRevoked(String),
    /// The measurement could not be taken; nothing was changed.
    #[error("measurement: {0}")]
    Measure(#[from] crate::measure::MeasureError),
    /// An internal failure (a defect); the message never holds secrets.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// A lifecycle rule's refusal of a request about instance `id`, with the rule's code
    /// and message.
    pub(crate) fn refused(id: &str, refusal: &Refusal) -> Self {
        let message = refusal.message(id);
        match refusal.kind() {
            RefusalKind::Forbidden => Self::Forbidden(message),
            RefusalKind::NotFound => Self::NotFound(message),
            RefusalKind::Conflict => Self::conflict(refusal.code(), message),
        }
    }
}

/// Why the daemon could not start. Each names what to check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The TPM could not be used.
    #[error("TPM: {0}")]
    Tpm(#[from] TpmError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// TLS could not be set up.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// A stored secret could not be opened.
    #[error("keys: {0}")]
    Keys(#[from] KeyError),
    /// The measurement log and the TPM disagree, or the log cannot be written.
    #[error("measurement: {0}")]
    Measure(#[from] crate::measure::MeasureError),
    /// Another daemon holds the state directory.
    #[error("{0}")]
    Locked(#[from] crate::lock::LockError),
    /// Something else in the configuration or environment.
    #[error("{0}")]
    Other(String),
}
