//! Functions: `POST /v1/functions` (registration), `GET /v1/functions` (the list) and
//! `GET /v1/functions/{id}` (one function with its source).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::Timestamp;
use crate::ids::{FunctionId, IdentityId, Sha256Digest};

/// The body of `POST /v1/functions`. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterFunction {
    /// A name for people (1–128 printable characters).
    pub name: String,
    /// `rhai`.
    pub language: String,
    /// The script; its measurement is the SHA-256 of these bytes exactly.
    pub source: String,
}

/// A function in the list, and the answer of registration (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FunctionSummary {
    /// Its id.
    pub id: FunctionId,
    /// Its name.
    pub name: String,
    /// Its measurement: `sha256(source)`.
    pub sha256: Sha256Digest,
    /// When it was registered.
    #[schemars(with = "Timestamp")]
    pub registered_at: String,
}

/// The answer of `GET /v1/functions/{id}`: a function with its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FunctionDetail {
    /// Its id.
    pub id: FunctionId,
    /// Its name.
    pub name: String,
    /// Its language.
    pub language: String,
    /// Its measurement: `sha256(source)`.
    pub sha256: Sha256Digest,
    /// The source exactly as registered.
    pub source: String,
    /// Who registered it.
    pub registered_by: IdentityId,
    /// When.
    #[schemars(with = "Timestamp")]
    pub registered_at: String,
}
