//! `arbiter-client`: the library under the `arbiter` CLI, for parties who check and use an
//! Arbiter appliance. It shares formats with the daemon only through the pure crates
//! (`arbiter-policy`, `arbiter-measured-boot`), never through the daemon's code.
//!
//! Modules: [`http`] (the mutual-TLS connection to a daemon and the party's identity).

#![forbid(unsafe_code)]

pub mod http;

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
}
