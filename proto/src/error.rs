//! The one error type of this crate: a wire value that does not parse.

/// A value on the wire that is not what the contract allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// An instance state this version does not know.
    #[error("unknown instance state {0:?}")]
    UnknownState(String),
}
