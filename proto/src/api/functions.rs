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
    /// What it computes, for people choosing a function (at most 1,024 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema (draft 2020-12) of the `inputs` map the script receives (slot ->
    /// value), for parties preparing inputs. Informative: the daemon does not check inputs
    /// against it (they are encrypted to the instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
}

/// The `registered_by` of the shipped library's functions: 64 zeros, the SHA-256 of no
/// certificate anyone holds, so no client identity can ever be it. Such functions also
/// say `library: true`.
pub const LIBRARY_REGISTRAR: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// A function in the list, and the answer of registration (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FunctionSummary {
    /// Its id.
    pub id: FunctionId,
    /// Its name.
    pub name: String,
    /// Its measurement: `sha256(source)`.
    pub sha256: Sha256Digest,
    /// What it computes, when its registrar (or the library) said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema (draft 2020-12) of the `inputs` map it receives, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
    /// Whether it is one of the daemon's shipped library functions (docs/functions.md),
    /// registered at start rather than through `POST /v1/functions`.
    pub library: bool,
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
    /// What it computes, when its registrar (or the library) said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema (draft 2020-12) of the `inputs` map it receives, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
    /// Whether it is one of the daemon's shipped library functions (docs/functions.md),
    /// registered at start rather than through `POST /v1/functions`.
    pub library: bool,
    /// Who registered it ([`LIBRARY_REGISTRAR`] for the shipped library).
    pub registered_by: IdentityId,
    /// When.
    #[schemars(with = "Timestamp")]
    pub registered_at: String,
}
