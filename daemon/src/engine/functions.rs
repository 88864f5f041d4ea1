//! Functions: registration (who may, what a valid script is, its measurement) and reading
//! them back. Any authenticated client may read functions: parties review the source
//! before they agree to a manifest naming its measurement.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Engine, EngineError, is_id, new_id, now};
use crate::eval::Evaluator;
use crate::store::queries::{self, FunctionRow};

/// `POST /v1/functions` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterFunction {
    /// A name for people (1–128 printable characters).
    pub name: String,
    /// `rhai`.
    pub language: String,
    /// The script; its measurement is the SHA-256 of these bytes exactly.
    pub source: String,
}

/// A function in a listing.
#[derive(Debug, Serialize)]
pub struct FunctionSummary {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its measurement.
    pub sha256: String,
    /// When it was registered.
    pub registered_at: String,
}

/// A function with its source.
#[derive(Debug, Serialize)]
pub struct FunctionDetail {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its language.
    pub language: String,
    /// Its measurement: `sha256(source)`.
    pub sha256: String,
    /// The source exactly as registered.
    pub source: String,
    /// Who registered it.
    pub registered_by: String,
    /// When.
    pub registered_at: String,
}

impl From<FunctionRow> for FunctionDetail {
    fn from(f: FunctionRow) -> Self {
        Self {
            id: f.id,
            name: f.name,
            language: f.language,
            sha256: f.sha256,
            source: f.source,
            registered_by: f.registered_by,
            registered_at: f.registered_at,
        }
    }
}

impl Engine {
    /// Whether `caller` may register functions: checked before the request's body is read.
    pub fn authorize_registration(&self, caller: &str) -> Result<(), EngineError> {
        if self.config().may_register_functions(caller) {
            Ok(())
        } else {
            Err(EngineError::Forbidden(format!(
                "identity {caller} may not register functions (operators and \
                 access.function_registrars may)"
            )))
        }
    }

    /// Registers a function after checking who asks and that the script compiles and
    /// defines `fn compute(inputs)`.
    pub async fn register_function(
        &self,
        caller: &str,
        request: RegisterFunction,
    ) -> Result<FunctionSummary, EngineError> {
        self.authorize_registration(caller)?;
        if request.language != "rhai" {
            return Err(EngineError::bad(
                "unsupported_language",
                format!(
                    "language `{}` is not supported; use `rhai`",
                    request.language
                ),
            ));
        }
        let name = request.name.trim();
        if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err(EngineError::bad(
                "invalid_name",
                "a function name has 1 to 128 printable characters",
            ));
        }
        if request.source.len() > self.config().limits.max_function_bytes {
            return Err(EngineError::bad(
                "source_too_large",
                format!(
                    "the source is {} bytes; the limit is {}",
                    request.source.len(),
                    self.config().limits.max_function_bytes
                ),
            ));
        }
        Evaluator::check_script(&request.source)
            .map_err(|e| EngineError::bad("invalid_script", e))?;
        let row = FunctionRow {
            id: new_id(),
            name: name.to_owned(),
            language: request.language,
            sha256: hex::encode(Sha256::digest(request.source.as_bytes())),
            source: request.source,
            registered_by: caller.to_owned(),
            registered_at: now(),
        };
        let summary = FunctionSummary {
            id: row.id.clone(),
            name: row.name.clone(),
            sha256: row.sha256.clone(),
            registered_at: row.registered_at.clone(),
        };
        // Measured first (write-ahead log, then PCR), stored second: a crash in between
        // leaves a measured function that was never registered, which misleads nobody.
        self.measurer
            .measure(arbiter_measured_boot::cel::EventContent::FunctionLoaded(
                arbiter_measured_boot::cel::FunctionLoaded {
                    function_id: super::cel_id(&row.id),
                    name: row.name.clone(),
                    sha256: arbiter_measured_boot::cel::Sha256Digest(super::hex_array(&row.sha256)),
                },
            ))
            .await?;
        self.store
            .write(move |c| queries::insert_function(c, &row))
            .await?;
        Ok(summary)
    }

    /// Every registered function (without sources).
    pub async fn list_functions(&self) -> Result<Vec<FunctionSummary>, EngineError> {
        let rows = self.store.read(queries::list_functions).await?;
        Ok(rows
            .into_iter()
            .map(|f| FunctionSummary {
                id: f.id,
                name: f.name,
                sha256: f.sha256,
                registered_at: f.registered_at,
            })
            .collect())
    }

    /// One function with its source.
    pub async fn get_function(&self, id: &str) -> Result<FunctionDetail, EngineError> {
        if !is_id(id) {
            return Err(EngineError::bad(
                "invalid_id",
                format!("`{id}` is not an id (32 lowercase hex characters)"),
            ));
        }
        let key = id.to_owned();
        self.store
            .read(move |c| queries::get_function(c, &key))
            .await?
            .map(FunctionDetail::from)
            .ok_or_else(|| EngineError::NotFound(format!("no function {id}")))
    }
}
