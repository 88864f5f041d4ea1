//! Functions: registration (who may, what a valid script is, its measurement) and reading
//! them back. Any authenticated client may read functions: parties review the source
//! before they agree to a manifest naming its measurement.

use arbiter_proto::api::{FunctionDetail, FunctionSummary, RegisterFunction};
use sha2::{Digest, Sha256};

use super::{Engine, EngineError, is_id, new_id, now, stored};
use crate::eval::Evaluator;
use crate::store::queries::{self, FunctionRow};

/// A stored function as the API answers it.
pub(crate) fn detail(f: FunctionRow) -> Result<FunctionDetail, EngineError> {
    Ok(FunctionDetail {
        id: stored(&f.id)?,
        name: f.name,
        language: f.language,
        sha256: stored(&f.sha256)?,
        source: f.source,
        registered_by: stored(&f.registered_by)?,
        registered_at: f.registered_at,
    })
}

/// A stored function in the list.
fn summary(f: &FunctionRow) -> Result<FunctionSummary, EngineError> {
    Ok(FunctionSummary {
        id: stored(&f.id)?,
        name: f.name.clone(),
        sha256: stored(&f.sha256)?,
        registered_at: f.registered_at.clone(),
    })
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
        let summary = summary(&row)?;
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
        rows.iter().map(summary).collect()
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
            .map(detail)
            .ok_or_else(|| EngineError::NotFound(format!("no function {id}")))?
    }
}
