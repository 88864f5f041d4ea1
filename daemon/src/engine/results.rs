//! Results: what each reader may see (the output for `result` readers, only that and when
//! evaluation happened for `status` readers), long-polling until a result exists, and the
//! first-read record that the `after_first_read` destruction policy uses.

use std::time::Duration;

use arbiter_policy::hpke;
use arbiter_policy::lifecycle::Refusal;
use arbiter_policy::manifest::ReaderRole;
use arbiter_proto::InstanceState;
use serde::Serialize;

use super::evaluation::result_context;
use super::{Engine, EngineError, now};
use crate::keys::open_at_rest;
use crate::store::queries;

/// `GET /v1/instances/{id}/result`.
#[derive(Debug, Default, Serialize)]
pub struct ResultView {
    /// The instance.
    pub instance_id: String,
    /// Whether a result exists.
    pub evaluated: bool,
    /// The round of the result shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round: Option<u64>,
    /// When it was evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluated_at: Option<String>,
    /// Whether evaluation succeeded (result readers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<bool>,
    /// The function's output (result readers only, on success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// Why evaluation failed (result readers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
    /// The inputs used (result readers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<serde_json::Value>,
    /// The function's measurement (result readers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_sha256: Option<String>,
    /// The manifest's digest (result readers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// The signed result statement (compact JWS; result readers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jws: Option<String>,
    /// The statement's payload, decoded for convenience (result readers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// The instance's state.
    pub state: String,
}

impl Engine {
    /// The latest (or `round`'s) result for a reader, waiting up to `wait` for one.
    pub async fn get_result(
        &self,
        caller: &str,
        id: &str,
        round: Option<u64>,
        wait: Duration,
    ) -> Result<ResultView, EngineError> {
        let (_, manifest) = self.load_instance(id).await?;
        let role = manifest.reader_role(caller).ok_or_else(|| {
            EngineError::Forbidden(format!(
                "identity {caller} is not a reader of instance {id}"
            ))
        })?;
        let wait = wait.min(Duration::from_secs(self.config().limits.max_wait_seconds));
        let deadline = tokio::time::Instant::now() + wait;
        let mut events = self.events.subscribe();
        loop {
            let (row, _) = self.load_instance(id).await?;
            let key = id.to_owned();
            let stored = self
                .store
                .read(move |c| queries::get_result(c, &key, round))
                .await?;
            if let Some(result) = stored {
                return self.view(caller, role, row, result).await;
            }
            if row.state == InstanceState::Destroyed {
                return Err(EngineError::refused(id, &Refusal::Destroyed));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(ResultView {
                    instance_id: id.to_owned(),
                    state: row.state.to_string(),
                    ..ResultView::default()
                });
            }
            // Wake on any evaluation event (or the deadline), then look again.
            let _ = tokio::time::timeout(deadline - now, events.recv()).await;
        }
    }

    async fn view(
        &self,
        _caller: &str,
        role: ReaderRole,
        row: queries::InstanceRow,
        result: queries::ResultRow,
    ) -> Result<ResultView, EngineError> {
        let mut view = ResultView {
            instance_id: row.id.clone(),
            evaluated: true,
            round: Some(result.round),
            evaluated_at: Some(result.evaluated_at.clone()),
            state: row.state.to_string(),
            ..ResultView::default()
        };
        if role == ReaderRole::Status {
            return Ok(view);
        }
        let secret = self.instance_secret(&row.id).await?;
        let key = hpke::result_at_rest_key(secret.expose());
        drop(secret);
        let plaintext = open_at_rest(
            &key,
            &result_context(&row.id, result.round),
            &result.nonce,
            &result.ciphertext,
        )
        .ok_or_else(|| {
            EngineError::Internal(format!(
                "the stored result of instance {} does not open",
                row.id
            ))
        })?;
        let body: serde_json::Value = serde_json::from_slice(&plaintext)
            .map_err(|e| EngineError::Internal(format!("stored result: {e}")))?;
        view.succeeded = Some(result.succeeded);
        view.output = body.get("output").cloned();
        view.error = body.get("error").cloned().filter(|e| !e.is_null());
        if let Some(jws) = body.get("jws").and_then(serde_json::Value::as_str) {
            let statement = super::statements::statement_view(jws);
            view.payload = statement.get("payload").cloned();
            view.jws = Some(jws.to_owned());
        }
        view.inputs = serde_json::from_str(&result.inputs_json).ok();
        view.function_sha256 = Some(row.function_sha256.clone());
        view.manifest_sha256 = Some(row.manifest_sha256.clone());
        let id = row.id.clone();
        let at = now();
        let first = self
            .store
            .write(move |c| queries::mark_first_read(c, &id, &at))
            .await?;
        if first {
            self.destroy_if_due(&row.id, true).await?;
        }
        Ok(view)
    }
}
