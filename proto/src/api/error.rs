//! The error answer of every endpoint: `{"error": {"code", "message", "problems"?}}`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Every refusal's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`not_found`, `invalid_manifest`, ...).
    pub code: String,
    /// For people.
    pub message: String,
    /// For `invalid_manifest`: each bad field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<Problem>>,
}

/// One bad field of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Problem {
    /// A JSON pointer to the field.
    pub pointer: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ErrorBody {
    /// An error without problems.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                problems: None,
            },
        }
    }
}
