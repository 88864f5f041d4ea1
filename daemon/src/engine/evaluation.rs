//! Evaluation: the transition to `evaluating`, decrypting the inputs, running the function
//! in the sandbox with the manifest's limits, storing the result encrypted at rest, and
//! moving to the next round (deleting `provide_each_time` inputs) or closing the instance.
//! Evaluations interrupted by a crash are re-run at start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arbiter_policy::hpke;
use arbiter_policy::manifest::Manifest;
use hkdf::Hkdf;
use sha2::Sha256;

use super::inputs::kept_across_rounds;
use super::{Engine, EngineError, now, tracing_line};
use crate::eval::{EvalOutcome, EvalRequest, Limits};
use crate::keys::seal_at_rest;
use crate::store::queries::{self, ResultRow};

/// The AAD binding a stored result to its instance and round.
pub(crate) fn result_context(instance_id: &str, round: u64) -> Vec<u8> {
    let mut aad = b"arbiter/v1/result\0".to_vec();
    aad.extend_from_slice(instance_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&round.to_be_bytes());
    aad
}

fn limits_of(manifest: &Manifest) -> Limits {
    let l = &manifest.limits;
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Limits {
        operations: l.operations,
        memory_bytes: l.memory_bytes,
        wall_time: Duration::from_millis(l.wall_time_ms),
        max_string_bytes: size(l.max_string_bytes),
        max_array_len: size(l.max_array_len),
        max_map_len: size(l.max_map_len),
        max_call_depth: size(l.max_call_depth),
    }
}

impl Engine {
    /// Evaluates on an `explicit` trigger's request by one of the manifest's evaluators,
    /// once every slot is filled.
    pub async fn request_evaluation(
        self: &Arc<Self>,
        caller: &str,
        id: &str,
    ) -> Result<serde_json::Value, EngineError> {
        let (row, manifest) = self.load_instance(id).await?;
        if manifest.automatic_trigger_count().is_some() {
            if !manifest.is_party(caller) && !self.config.is_operator(caller) {
                return Err(EngineError::Forbidden(format!(
                    "identity {caller} is not a party of instance {id}"
                )));
            }
            return Err(EngineError::conflict(
                "automatic_trigger",
                format!("instance {id} evaluates automatically; its trigger is not `explicit`"),
            ));
        }
        if !manifest.is_evaluator(caller) {
            return Err(EngineError::Forbidden(format!(
                "identity {caller} is not one of the evaluators of instance {id}"
            )));
        }
        if row.state != "open" {
            return Err(EngineError::conflict(
                "not_open",
                format!("instance {id} is {}; it cannot be evaluated now", row.state),
            ));
        }
        let key = id.to_owned();
        let inputs = self
            .store
            .read(move |c| queries::list_inputs(c, &key))
            .await?;
        let missing: Vec<&str> = manifest
            .slots
            .keys()
            .map(|s| s.as_str())
            .filter(|s| !inputs.iter().any(|i| i.slot == *s))
            .collect();
        if !missing.is_empty() {
            return Err(EngineError::conflict(
                "slots_missing",
                format!("slots not yet filled: {}", missing.join(", ")),
            ));
        }
        self.spawn_evaluation(id.to_owned(), row.round);
        Ok(serde_json::json!({ "instance_id": id, "round": row.round, "state": "evaluating" }))
    }

    /// Runs the evaluation of `round` in the background.
    pub(crate) fn spawn_evaluation(self: &Arc<Self>, id: String, round: u64) {
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = engine.evaluate_round(&id, round, false).await {
                tracing_line(&format!(
                    "evaluation of instance {id} round {round} failed: {e}"
                ));
            }
        });
    }

    /// Evaluates one round. `resuming` re-runs a round left `evaluating` by a crash.
    async fn evaluate_round(
        &self,
        id: &str,
        round: u64,
        resuming: bool,
    ) -> Result<(), EngineError> {
        let _permit = Arc::clone(&self.evaluations)
            .acquire_owned()
            .await
            .map_err(|_| EngineError::Internal("shutting down".into()))?;
        let key = id.to_owned();
        let started = self
            .store
            .write(move |c| -> Result<bool, EngineError> {
                let Some(row) = queries::get_instance(c, &key)? else {
                    return Ok(false);
                };
                let from = if resuming { "evaluating" } else { "open" };
                if row.state != from || row.round != round {
                    return Ok(false);
                }
                queries::update_instance(c, &key, "evaluating", row.round, row.evaluations)?;
                Ok(true)
            })
            .await?;
        if !started {
            return Ok(());
        }
        let (row, manifest) = self.load_instance(id).await?;
        let key = id.to_owned();
        let fid = row.function_id.clone();
        let (inputs, function) = self
            .store
            .read(move |c| -> Result<_, crate::store::StoreError> {
                Ok((
                    queries::list_inputs(c, &key)?,
                    queries::get_function(c, &fid)?,
                ))
            })
            .await?;
        let function = function.ok_or_else(|| {
            EngineError::Internal(format!("the function of instance {id} is gone"))
        })?;
        let secret = self.instance_secret(id).await?;
        let (private, _) = hpke::derive_keypair(secret.expose());
        let mut values = BTreeMap::new();
        let mut used = Vec::new();
        for input in &inputs {
            let plaintext = Self::open_input(
                &row,
                &private,
                &input.slot,
                input.round,
                &input.submitter,
                &input.enc,
                &input.ciphertext,
            )?;
            // Handed on as the decrypted text, zeroized: the child parses it.
            values.insert(input.slot.clone(), plaintext);
            used.push(serde_json::json!({
                "slot": input.slot,
                "submitter": input.submitter,
                "ciphertext_sha256": input.ciphertext_sha256,
            }));
        }
        let rng_seed = manifest.seeded_rng.then(|| {
            let mut seed = [0u8; 32];
            let info = [b"arbiter/v1/rng\0".as_slice(), &round.to_be_bytes()].concat();
            // HKDF-SHA256 expands 32 bytes from a 32-byte key without failing.
            let _ = Hkdf::<Sha256>::new(None, secret.expose()).expand(&info, &mut seed);
            seed
        });
        let outcome = self
            .evaluator
            .evaluate(EvalRequest {
                source: function.source,
                inputs: values,
                limits: limits_of(&manifest),
                rng_seed,
            })
            .await;
        let (mut succeeded, output, mut error, usage) = match outcome {
            Ok(EvalOutcome::Success { output, usage }) => (true, output, None, Some(usage)),
            Ok(EvalOutcome::Failed {
                reason,
                message,
                usage,
            }) => (
                false,
                serde_json::Value::Null,
                Some(serde_json::json!({ "reason": reason.as_str(), "message": message })),
                Some(usage),
            ),
            Err(e) => (
                false,
                serde_json::Value::Null,
                Some(serde_json::json!({
                    "reason": "sandbox",
                    "message": format!("the evaluation sandbox failed: {e}"),
                })),
                None,
            ),
        };
        let evaluated_at = now();
        let refs = super::statements::input_refs(&inputs);
        let signed = self
            .sign_result(
                id,
                round,
                &row.function_sha256,
                &row.manifest_sha256,
                refs,
                output.clone(),
                &evaluated_at,
            )
            .await;
        let body = match signed {
            Ok(jws) => serde_json::json!({ "output": output, "error": error, "jws": jws }),
            Err(e) => {
                // Fail closed: an output the statement key will not sign is not released.
                succeeded = false;
                error = Some(serde_json::json!({
                    "reason": "unsigned",
                    "message": format!("the result could not be signed, so it is withheld: {e}"),
                }));
                serde_json::json!({ "output": null, "error": error })
            }
        };
        if succeeded {
            self.metrics
                .evaluations_succeeded
                .fetch_add(1, Ordering::Relaxed);
        } else {
            self.metrics
                .evaluations_failed
                .fetch_add(1, Ordering::Relaxed);
        }
        let result_key = hpke::result_at_rest_key(secret.expose());
        drop(secret);
        let plaintext = zeroize::Zeroizing::new(body.to_string().into_bytes());
        drop(body);
        let (nonce, ciphertext) = seal_at_rest(&result_key, &result_context(id, round), &plaintext);
        let result = ResultRow {
            instance_id: id.to_owned(),
            round,
            succeeded,
            nonce,
            ciphertext,
            inputs_json: serde_json::Value::Array(used).to_string(),
            evaluated_at,
        };
        let each_time: Vec<String> = manifest
            .slots
            .iter()
            .filter(|(_, s)| !kept_across_rounds(s.provide))
            .map(|(n, _)| n.as_str().to_owned())
            .collect();
        let last_round = round >= manifest.rounds;
        let key = id.to_owned();
        self.store
            .write(move |c| -> Result<(), EngineError> {
                // A destruction requested meanwhile wins: its result is never stored.
                let current = queries::get_instance(c, &key)?;
                if current.is_none_or(|r| r.state != "evaluating") {
                    return Ok(());
                }
                queries::put_result(c, &result)?;
                for slot in &each_time {
                    queries::delete_input(c, &key, slot)?;
                }
                let by = super::instances::EVALUATION_USAGE;
                if let Some(u) = usage {
                    queries::add_usage(c, &key, by, "operations", u.operations)?;
                    let ms = u64::try_from(u.wall_time.as_millis()).unwrap_or(u64::MAX);
                    queries::add_usage(c, &key, by, "wall_time_ms", ms)?;
                    queries::add_usage(c, &key, by, "output_bytes", u.output_bytes)?;
                }
                queries::add_usage(c, &key, by, "evaluations", 1)?;
                let (state, next) = if last_round {
                    ("evaluated", round)
                } else {
                    ("open", round + 1)
                };
                queries::update_instance(c, &key, state, next, row.evaluations + 1)?;
                Ok(())
            })
            .await?;
        let _ = self.events.send(id.to_owned());
        self.destroy_if_due(id, false).await?;
        Ok(())
    }

    /// Resumes work a crash interrupted: evaluations left `evaluating` run again.
    pub(crate) async fn resume(&self) -> Result<(), crate::store::StoreError> {
        let pending = self
            .store
            .read(|c| queries::instances_in_states(c, &["evaluating"]))
            .await?;
        for row in pending {
            if let Err(e) = self.evaluate_round(&row.id, row.round, true).await {
                tracing_line(&format!(
                    "resuming the evaluation of instance {}: {e}",
                    row.id
                ));
            }
        }
        Ok(())
    }
}
