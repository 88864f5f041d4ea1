//! `arbiter-client`: the library under the `arbiter` CLI, for parties who check and use an
//! Arbiter appliance. It shares formats with the daemon only through the pure crates
//! (`arbiter-policy`, `arbiter-measured-boot`), never through the daemon's code, and it
//! never trusts a field it can recompute.
//!
//! Modules: [`http`] (the mutual-TLS connection and the party's identity), [`config`]
//! (server, identity, pin and state defaults from flags, environment and a config file),
//! [`trust`] (the local trust store: the enrolled AK, the attested TLS key, receipts and
//! saved certificates), [`session`] (one party talking to one daemon), [`verify`]
//! (attestation into a verdict), [`party`] (functions, instances, inputs, results and
//! destruction, each checked), [`enroll`] (EK certificate chains and credential
//! activation), [`bundle`] (offline verification bundles) and
//! [`reference`](mod@reference) (platform reference values: policy capture, explanation,
//! comparison with an image's build).

#![forbid(unsafe_code)]

pub mod bundle;
pub mod config;
pub mod enroll;
pub mod http;
pub mod party;
pub mod reference;
pub mod session;
pub mod trust;
pub mod verify;

/// A failure of the client library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The party's identity (certificate or key) is unusable.
    #[error("identity: {0}")]
    Identity(String),
    /// A usage error (bad URL, bad argument).
    #[error("{0}")]
    Usage(String),
    /// The TCP connection failed.
    #[error("cannot connect to {0}")]
    Connect(String),
    /// The TLS handshake failed (including a pinned key mismatch).
    #[error("TLS: {0}")]
    Tls(String),
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// The configuration (file, environment) is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// A local file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The daemon answered with an error.
    #[error("the daemon refused ({status} {code}): {message}{}", problems_suffix(.problems))]
    Server {
        /// The HTTP status.
        status: u16,
        /// The error code (`error.code`).
        code: String,
        /// The message (`error.message`).
        message: String,
        /// Problems listed (e.g. manifest fields), as `pointer: reason`.
        problems: Vec<String>,
    },
    /// The daemon's answer is not what the API promises.
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
    /// The attestation is not trusted; every reason is listed.
    #[error("the appliance is NOT trusted:\n  - {}", .0.join("\n  - "))]
    NotTrusted(Vec<String>),
    /// A check of something the daemon returned failed (a signature, a digest, a receipt).
    #[error("verification failed: {0}")]
    Verification(String),
    /// The local trust store has no enrolment for this server.
    #[error("{0}")]
    NotEnrolled(String),
}

fn problems_suffix(problems: &[String]) -> String {
    if problems.is_empty() {
        String::new()
    } else {
        format!("\n  - {}", problems.join("\n  - "))
    }
}

impl ClientError {
    pub(crate) fn file(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
