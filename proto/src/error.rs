//! The one error type of this crate: a wire value (an id, a state, a request body, an
//! answer) that does not parse.

/// A value on the wire that is not what the contract allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// An instance state this version does not know.
    #[error("unknown instance state {0:?}")]
    UnknownState(String),
    /// Text that is not the id or digest it should be.
    #[error("`{text}` is not {what}")]
    Malformed {
        /// What was expected.
        what: &'static str,
        /// The text (its first 80 characters).
        text: String,
    },
    /// A request body that is not JSON (or holds a duplicate key).
    #[error("the request body is not valid JSON: {0}")]
    Json(String),
    /// A request body that is JSON but not of the endpoint's shape.
    #[error("the request body is not valid JSON for this endpoint: {0}")]
    Shape(String),
    /// A request field the endpoint refuses, with the API error code to answer.
    #[error("{message}")]
    Field {
        /// The API error code (`missing_field`, `invalid_base64`, ...).
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A daemon answer that does not have the shape of its endpoint's answer.
    #[error("the answer of {endpoint} is malformed: {reason}")]
    Answer {
        /// The endpoint, e.g. `GET /v1/tpm`.
        endpoint: String,
        /// The parser's message.
        reason: String,
    },
}
