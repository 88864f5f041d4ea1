//! Functions: registration (who may, what a valid script is, its measurement), the shipped
//! library's registration at start (docs/functions.md) and reading them back. Any
//! authenticated client may read functions: parties review the source before they agree to
//! a manifest naming its measurement.

use arbiter_measured_boot::cel;
use arbiter_proto::api::{FunctionDetail, FunctionSummary, RegisterFunction};
use sha2::{Digest, Sha256};

use super::{Engine, EngineError, is_id, new_id, now, stored};
use crate::eval::Evaluator;
use crate::library::{self, LibraryFunction};
use crate::measure::Measurer;
use crate::store::queries::{self, FunctionRow};
use crate::store::{Store, StoreError};

/// The longest description accepted, in characters.
const MAX_DESCRIPTION_CHARS: usize = 1024;

/// A stored input schema as JSON (stored by the engine from a JSON value).
fn schema_of(f: &FunctionRow) -> Result<Option<serde_json::Value>, EngineError> {
    f.input_schema
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| EngineError::Internal(format!("the stored input schema of {}: {e}", f.id)))
}

/// A stored function as the API answers it.
pub(crate) fn detail(f: FunctionRow) -> Result<FunctionDetail, EngineError> {
    let input_schema = schema_of(&f)?;
    Ok(FunctionDetail {
        id: stored(&f.id)?,
        name: f.name,
        language: f.language,
        sha256: stored(&f.sha256)?,
        source: f.source,
        description: f.description,
        input_schema,
        library: f.library,
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
        description: f.description.clone(),
        input_schema: schema_of(f)?,
        library: f.library,
        registered_at: f.registered_at.clone(),
    })
}

/// The `function_loaded` event of a function.
pub(crate) fn loaded(id: &str, name: &str, sha256: &str) -> cel::EventContent {
    cel::EventContent::FunctionLoaded(cel::FunctionLoaded {
        function_id: super::cel_id(id),
        name: name.to_owned(),
        sha256: cel::Sha256Digest(super::hex_array(sha256)),
    })
}

/// Whether a stored function is offered: every registered function, and of the library's
/// only those this build ships and the configuration enables (`enabled` holds their ids).
/// Others (disabled, or an earlier release's) stay stored for the instances using them.
pub(crate) fn offered(f: &FunctionRow, enabled: &[String]) -> bool {
    !f.library || enabled.contains(&f.id)
}

/// Registers the enabled library functions not yet stored: each measured (`function_loaded`)
/// then stored, as [`Engine::register_function`] does. One already stored was measured in
/// this log generation, when registered or when the generation started (the measurer
/// re-measures what is live then), so a restart within one TPM startup measures nothing.
/// A crash between measuring and storing leaves a measured function not stored: the next
/// start in the same generation finds its record in the log and stores it without measuring
/// it twice. Returns how many were registered.
pub(crate) async fn register_library(
    store: &Store,
    measurer: &Measurer,
    functions: &[LibraryFunction],
) -> Result<usize, super::StartError> {
    let (_, records) = measurer.snapshot().await;
    // Which are stored already, in one read.
    let ids: Vec<String> = functions.iter().map(|f| f.id.clone()).collect();
    let stored: Vec<bool> = store
        .read(move |c| -> Result<Vec<bool>, StoreError> {
            ids.iter()
                .map(|id| Ok(queries::get_function(c, id)?.is_some()))
                .collect()
        })
        .await?;
    let mut rows = Vec::new();
    for (f, _) in functions.iter().zip(stored).filter(|(_, stored)| !stored) {
        let row = FunctionRow {
            id: f.id.clone(),
            name: f.name.to_owned(),
            language: "rhai".into(),
            source: f.source.to_owned(),
            sha256: f.sha256.clone(),
            registered_by: library::REGISTRAR.to_owned(),
            registered_at: now(),
            description: Some(f.description.clone()),
            input_schema: Some(f.input_schema.to_string()),
            library: true,
        };
        // Measured before it is stored: a crash in between leaves a measured function
        // that the next start stores without measuring it again (the check above).
        let event = loaded(&row.id, &row.name, &row.sha256);
        if !records.iter().any(|r| r.content == event) {
            measurer.measure(event).await?;
        }
        rows.push(row);
    }
    // Every new record in one transaction: one fsync at a first start, not one each.
    let registered = rows.len();
    if !rows.is_empty() {
        store
            .write(move |c| -> Result<(), StoreError> {
                rows.iter()
                    .try_for_each(|row| queries::insert_function(c, row))
            })
            .await?;
    }
    Ok(registered)
}

/// Checks an optional description and input schema of a registration.
fn check_metadata(request: &RegisterFunction) -> Result<(), EngineError> {
    if let Some(d) = &request.description
        && (d.trim().is_empty()
            || d.chars().count() > MAX_DESCRIPTION_CHARS
            || d.chars().any(|c| c.is_control() && c != '\n'))
    {
        return Err(EngineError::bad(
            "invalid_description",
            format!(
                "a description has 1 to {MAX_DESCRIPTION_CHARS} printable characters \
                 (line breaks allowed)"
            ),
        ));
    }
    if let Some(schema) = &request.input_schema {
        if !schema.is_object() {
            return Err(EngineError::bad(
                "invalid_input_schema",
                "input_schema is a JSON Schema object (draft 2020-12) describing the inputs map",
            ));
        }
        jsonschema::meta::validate(schema).map_err(|e| {
            EngineError::bad(
                "invalid_input_schema",
                format!("input_schema is not a valid JSON Schema: {e}"),
            )
        })?;
    }
    Ok(())
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
        check_metadata(&request)?;
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
            description: request.description,
            input_schema: request.input_schema.map(|s| s.to_string()),
            library: false,
        };
        let summary = summary(&row)?;
        // Measured first (write-ahead log, then PCR), stored second: a crash in between
        // leaves a measured function that was never registered, which misleads nobody.
        self.measurer
            .measure(loaded(&row.id, &row.name, &row.sha256))
            .await?;
        self.store
            .write(move |c| queries::insert_function(c, &row))
            .await?;
        Ok(summary)
    }

    /// Every function offered (without sources): the enabled library functions and every
    /// registered one, oldest first.
    pub async fn list_functions(&self) -> Result<Vec<FunctionSummary>, EngineError> {
        let rows = self.store.read(queries::list_functions).await?;
        rows.iter()
            .filter(|f| offered(f, &self.library))
            .map(summary)
            .collect()
    }

    /// The oldest offered function with this measurement, for a new instance; otherwise
    /// why there is none, in words: a library function that is disabled (or of an earlier
    /// release) is not offered.
    pub(crate) async fn offered_function(
        &self,
        sha256: &str,
    ) -> Result<Result<FunctionRow, String>, EngineError> {
        let key = sha256.to_owned();
        let rows = self
            .store
            .read(move |c| queries::functions_by_sha256(c, &key))
            .await?;
        if let Some(f) = rows.iter().find(|f| offered(f, &self.library)) {
            return Ok(Ok(f.clone()));
        }
        let config = self.config();
        let disabled = library::all()
            .unwrap_or_default()
            .into_iter()
            .find(|f| f.sha256 == sha256 && config.library.disabled.iter().any(|d| d == f.name));
        if let Some(f) = disabled {
            return Ok(Err(format!(
                "the library function `{}` (measurement {sha256}) is disabled on this \
                 appliance ([library] disabled)",
                f.name
            )));
        }
        // Rows stored but none offered: library rows of another release than this build's.
        Ok(Err(match rows.first() {
            Some(f) => format!(
                "measurement {sha256} is an earlier release of the library function `{}`, \
                 no longer offered for new instances",
                f.name
            ),
            None => format!("no registered function has measurement {sha256}"),
        }))
    }

    /// One function with its source (any stored one, so that parties of an instance can
    /// still read its function after the library function was disabled or replaced).
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
