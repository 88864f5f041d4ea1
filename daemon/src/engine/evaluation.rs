//! Evaluation: the transition to `evaluating`, decrypting the inputs, running the function
//! in the sandbox with the manifest's limits, storing the result encrypted at rest, and
//! moving to the next round (deleting `provide_each_time` inputs) or closing the instance.
//! Evaluations interrupted by a crash are re-run at start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbiter_policy::hpke;
use arbiter_policy::lifecycle::{self, EvaluationStart};
use arbiter_policy::manifest::Manifest;
use arbiter_proto::InstanceState;
use hkdf::Hkdf;
use sha2::{Digest as _, Sha256};

use super::inputs::kept_across_rounds;
use super::{Engine, EngineError, now};
use crate::eval::{EvalError, EvalOutcome, EvalRequest, Limits};
use crate::keys::InstanceSecret;
use crate::keys::seal_at_rest;
use crate::logging::clip;
use crate::store::queries::{self, InputRow, InstanceRow, ResultRow};

/// The first wait before retrying evaluations whose evaluator did not start.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The longest wait between retries.
const LAST_RETRY: Duration = Duration::from_secs(60);

/// How an evaluation that reached `evaluating` ended.
enum Ran {
    /// The result (success or a script failure) is stored.
    Completed,
    /// The evaluator child could not be started (why); nothing was stored.
    NotStarted(String),
}

/// Evaluations whose evaluator child could not be started, waiting to be retried, and the
/// backoff: 1 s, doubling up to 60 s, back to 1 s once a child starts.
#[derive(Debug)]
pub(crate) struct SpawnRetries {
    /// Instance → the round to evaluate, and whether it is still `evaluating` (its return
    /// to `open` could not be stored either), so the retry resumes it.
    pending: BTreeMap<String, (u64, bool)>,
    /// The wait before the next retry.
    delay: Duration,
    /// Why the last start failed; `Some` (the daemon is degraded) until a child starts.
    failure: Option<String>,
}

impl Default for SpawnRetries {
    fn default() -> Self {
        Self {
            pending: BTreeMap::new(),
            delay: FIRST_RETRY,
            failure: None,
        }
    }
}

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
    ) -> Result<arbiter_proto::api::EvaluationStarted, EngineError> {
        let (row, manifest) = self.load_instance(id).await?;
        let operator = self.config().is_operator(caller);
        lifecycle::evaluation_request_allowed(&manifest, caller, operator, row.state)
            .map_err(|refusal| EngineError::refused(id, &refusal))?;
        let key = id.to_owned();
        let inputs = self
            .store
            .read(move |c| queries::list_inputs_without_data(c, &key))
            .await?;
        lifecycle::missing_slots(&manifest, &filled_slots(&inputs))
            .map_err(|refusal| EngineError::refused(id, &refusal))?;
        self.spawn_evaluation(id.to_owned(), row.round);
        Ok(arbiter_proto::api::EvaluationStarted {
            instance_id: super::stored(id)?,
            round: row.round,
            state: InstanceState::Evaluating,
        })
    }

    /// Runs the evaluation of `round` in the background.
    pub(crate) fn spawn_evaluation(self: &Arc<Self>, id: String, round: u64) {
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = engine.evaluate_round(&id, round, false).await {
                tracing::error!(
                    event = "evaluation_failed",
                    instance = %id,
                    round,
                    error = %clip(&e.to_string()),
                    "evaluation failed"
                );
            }
        });
    }

    /// Evaluates one round. `resuming` re-runs a round left `evaluating` by a crash. The
    /// trigger is checked again in the same write that moves the instance to `evaluating`,
    /// so the evaluation runs on exactly the inputs present at that commit (a withdrawal
    /// is either before it or refused). If anything fails before the result is stored, the
    /// instance returns to `open` at the same round; if the evaluator child cannot be
    /// started, the round is also queued for a retry with backoff.
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
        // Revoked by the fleet verifier (docs/fleet.md): no evaluation starts, also not one
        // queued before the revocation arrived.
        if let Some(refusal) = self.fleet_refusal() {
            return Err(refusal);
        }
        let (_, manifest) = self.load_instance(id).await?;
        // After a power loss that undid the move to `evaluating`, the instance is `open`
        // with the round's inputs and a met automatic trigger, which a restart fires again
        // (`resume`): that move need not wait for the disk. An explicit request's move must.
        let automatic = manifest.automatic_trigger_count().is_some();
        let key = id.to_owned();
        let begin = move |c: &rusqlite::Connection| -> Result<bool, EngineError> {
            let Some(row) = queries::get_instance(c, &key)? else {
                return Ok(false);
            };
            // Which slots are filled, not what they hold: the ciphertexts (80 MB for two
            // lists of a million strings) are read once, by the evaluation itself.
            let inputs = queries::list_inputs_without_data(c, &key)?;
            let ready = lifecycle::round_ready(&manifest, &filled_slots(&inputs));
            let next =
                match lifecycle::evaluation_start(row.state, row.round, round, resuming, ready) {
                    EvaluationStart::Begin => InstanceState::Evaluating,
                    EvaluationStart::Reopen => InstanceState::Open,
                    EvaluationStart::Skip => return Ok(false),
                };
            queries::update_instance(c, &key, next, row.round, row.evaluations)?;
            Ok(next == InstanceState::Evaluating)
        };
        let started = if automatic {
            self.store.write_relaxed(begin).await
        } else {
            self.store.write(begin).await
        };
        let started = match started {
            Ok(started) => started,
            Err(e) => {
                if storage_fault(&e).is_some() {
                    // The move to `evaluating` did not commit (a full or read-only disk):
                    // the instance is still `open` with its inputs, and an automatic
                    // trigger does not fire twice. Retried with backoff like a failed run.
                    self.queue_retry(id, round, false);
                }
                return Err(e);
            }
        };
        if !started {
            return Ok(());
        }
        match self.run_round(id, round).await {
            Ok(Ran::Completed) => Ok(()),
            Ok(Ran::NotStarted(why)) => {
                self.abandon_round(id, round).await?;
                self.evaluator_failed(id, round, why);
                Ok(())
            }
            Err(e) => {
                let abandoned = self.abandon_round(id, round).await;
                if let Err(undo) = &abandoned {
                    tracing::error!(
                        event = "evaluation_abandon_failed",
                        instance = id,
                        round,
                        error = %clip(&undo.to_string()),
                        "returning the instance to `open` after a failed evaluation failed"
                    );
                }
                if storage_fault(&e).is_some() || tpm_fault(&e) {
                    // A full or read-only disk, or a TPM that went away or failed a
                    // command: nothing the parties did was wrong, and nothing would
                    // evaluate the round again before a restart (an automatic trigger fired
                    // once). Retried with backoff until the state directory takes writes
                    // and the TPM answers.
                    self.queue_retry(id, round, abandoned.is_err());
                }
                Err(e)
            }
        }
    }

    /// Returns an instance whose evaluation of `round` did not complete to `open` at the
    /// same round (if it is still `evaluating` it): nothing was stored, the round is not
    /// used up, and the parties may act on it again.
    async fn abandon_round(&self, id: &str, round: u64) -> Result<(), EngineError> {
        let key = id.to_owned();
        let reopened = self
            .store
            .write(move |c| -> Result<bool, crate::store::StoreError> {
                let Some(row) = queries::get_instance(c, &key)? else {
                    return Ok(false);
                };
                match lifecycle::abandoned_round(row.state, row.round, round) {
                    Some(state) => {
                        queries::update_instance(c, &key, state, round, row.evaluations)?;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            })
            .await?;
        if reopened {
            tracing::warn!(
                event = "evaluation_abandoned",
                instance = id,
                round,
                "the evaluation did not complete; the instance is open again (nothing was \
                 stored, the round is not used up)"
            );
            let _ = self.events.send(id.to_owned());
        }
        self.pauses.pause("evaluation-abandoned").await;
        Ok(())
    }

    /// Evaluates a round that is `evaluating`: the function's integrity, the inputs, the
    /// sandbox, the signed result, the next round. `NotStarted` when the evaluator child
    /// could not be started (nothing was stored).
    async fn run_round(&self, id: &str, round: u64) -> Result<Ran, EngineError> {
        let began = Instant::now();
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
        let loaded = began.elapsed();
        let mut decrypt_time = Duration::ZERO;
        let used: Vec<serde_json::Value> = inputs
            .iter()
            .map(|input| {
                serde_json::json!({
                    "slot": input.slot,
                    "submitter": input.submitter,
                    "ciphertext_sha256": input.ciphertext_sha256,
                })
            })
            .collect();
        // The source read from the store must still be what was measured (and what the
        // parties attested): a source altered at rest is never run.
        let source_sha256 = hex::encode(Sha256::digest(function.source.as_bytes()));
        let (mut succeeded, output, mut error, usage) = if source_sha256 == row.function_sha256 {
            let decrypting = Instant::now();
            let values = Self::open_inputs(&row, &secret, &inputs)?;
            decrypt_time = decrypting.elapsed();
            let rng_seed = manifest.seeded_rng.then(|| {
                let mut seed = [0u8; 32];
                let info = [b"arbiter/v1/rng\0".as_slice(), &round.to_be_bytes()].concat();
                // HKDF-SHA256 expands 32 bytes from a 32-byte key without failing.
                let _ = Hkdf::<Sha256>::new(None, secret.expose()).expand(&info, &mut seed);
                seed
            });
            let ran = self
                .evaluator
                .evaluate(EvalRequest {
                    source: function.source,
                    inputs: values,
                    limits: limits_of(&manifest),
                    rng_seed,
                })
                .await;
            if let Err(e @ EvalError::Spawn { .. }) = ran {
                return Ok(Ran::NotStarted(e.to_string()));
            }
            self.evaluator_started();
            match ran {
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
            }
        } else {
            tracing::error!(
                event = "function_tampered",
                instance = id,
                round,
                function = %function.id,
                source_sha256 = %source_sha256,
                measured_sha256 = %row.function_sha256,
                "REFUSED to run a function whose stored source does not hash to its \
                 measurement: the store was altered. The evaluation fails without output"
            );
            (
                false,
                serde_json::Value::Null,
                Some(serde_json::json!({
                    "reason": "function_tampered",
                    "message": format!(
                        "the stored source of function {} does not hash to its measurement {}; \
                         it was not run",
                        function.id, row.function_sha256
                    ),
                })),
                None,
            )
        };
        let evaluated_at = now();
        let signing = Instant::now();
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
            // The TPM went away (a restart, a lost connection): nothing is stored, the round
            // returns to `open` and is evaluated again once the TPM answers, rather than
            // used up with a withheld result.
            Err(e) if tpm_gone(&e) => return Err(e),
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
        let sign_time = signing.elapsed();
        // The next evaluation's child starts now, beside the store, after this one's TPM
        // signature (`Evaluator::prepare_next` says why not earlier).
        self.evaluator.prepare_next();
        let took = began.elapsed();
        self.metrics.evaluation(succeeded, took);
        tracing::info!(
            event = "evaluated",
            instance = id,
            round,
            succeeded,
            duration_ms = took.as_secs_f64() * 1e3,
            "evaluation finished"
        );
        let storing = Instant::now();
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
        let (state, next) = lifecycle::after_evaluation(&manifest, round);
        let key = id.to_owned();
        let logged_usage = usage.clone();
        self.store
            .write(move |c| -> Result<(), EngineError> {
                // A destruction requested meanwhile wins: its result is never stored.
                let current = queries::get_instance(c, &key)?;
                if !lifecycle::result_may_be_stored(current.map(|r| r.state)) {
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
                queries::update_instance(c, &key, state, next, row.evaluations + 1)?;
                Ok(())
            })
            .await?;
        let _ = self.events.send(id.to_owned());
        if let Some(u) = &logged_usage {
            log_phases(
                id,
                round,
                loaded,
                decrypt_time,
                u,
                sign_time,
                storing.elapsed(),
            );
        }
        self.destroy_if_due(id, false).await?;
        Ok(Ran::Completed)
    }

    /// Decrypts and decodes the round's inputs, slot → value.
    /// Decrypts every input of the round. Each is handed on as its decrypted text,
    /// zeroized: only the evaluator child parses it.
    fn open_inputs(
        row: &InstanceRow,
        secret: &InstanceSecret,
        inputs: &[InputRow],
    ) -> Result<BTreeMap<String, zeroize::Zeroizing<Vec<u8>>>, EngineError> {
        /// Below this much ciphertext, threads cost more than they save.
        const PARALLEL_BYTES: usize = 1 << 20;
        let (private, _) = hpke::derive_keypair(secret.expose());
        let open = |input: &InputRow| {
            Self::open_input(
                row,
                &private,
                &input.slot,
                input.round,
                &input.submitter,
                &input.enc,
                &input.ciphertext,
            )
            .map(|plaintext| (input.slot.clone(), plaintext))
        };
        let total: usize = inputs.iter().map(|i| i.ciphertext.len()).sum();
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        if total < PARALLEL_BYTES || inputs.len() < 2 || cores < 2 {
            return inputs.iter().map(open).collect();
        }
        // Large inputs (two 40 MB lists) are decrypted side by side, spread over the
        // cores; the first failure in slot order is the one reported.
        let per_thread = inputs.len().div_ceil(cores);
        let opened: Vec<Result<Vec<_>, EngineError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = inputs
                .chunks(per_thread)
                .map(|chunk| scope.spawn(move || chunk.iter().map(open).collect()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        let mut values = BTreeMap::new();
        for chunk in opened {
            values.extend(chunk?);
        }
        Ok(values)
    }

    /// Queues `id`'s `round` for the background retry (`resuming` when the instance may
    /// still be `evaluating`).
    fn queue_retry(&self, id: &str, round: u64, resuming: bool) {
        self.spawn_retries()
            .pending
            .insert(id.to_owned(), (round, resuming));
        self.retry_wake.notify_one();
    }

    fn spawn_retries(&self) -> std::sync::MutexGuard<'_, SpawnRetries> {
        self.spawn_retries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An evaluator child started: the daemon is no longer degraded on its account.
    fn evaluator_started(&self) {
        let mut retries = self.spawn_retries();
        retries.delay = FIRST_RETRY;
        if retries.failure.take().is_some() {
            tracing::info!(event = "evaluator_recovered", "the evaluator starts again");
        }
    }

    /// The evaluator child for `id`'s `round` could not be started: the daemon reports
    /// itself degraded and retries the round with backoff.
    fn evaluator_failed(&self, id: &str, round: u64, why: String) {
        tracing::error!(
            event = "evaluator_unavailable",
            instance = id,
            round,
            reason = %clip(&why),
            "DEGRADED: the evaluation could not start; retrying with backoff"
        );
        let mut retries = self.spawn_retries();
        retries.pending.insert(id.to_owned(), (round, false));
        retries.failure = Some(why);
        drop(retries);
        self.retry_wake.notify_one();
    }

    /// Why evaluations cannot run now, if they cannot (for `/healthz`).
    pub(crate) fn evaluator_degraded(&self) -> Option<String> {
        self.spawn_retries()
            .failure
            .clone()
            .map(|why| format!("evaluations cannot start, retrying with backoff: {why}"))
    }

    /// Background work: retries the evaluations whose evaluator did not start, waiting
    /// 1 s, then twice as long each time (at most 60 s) while starts keep failing. Ends
    /// when the engine shuts down.
    pub(crate) async fn retry_evaluations(self: Arc<Self>) {
        loop {
            let delay = {
                let retries = self.spawn_retries();
                (!retries.pending.is_empty()).then_some(retries.delay)
            };
            match delay {
                None => tokio::select! {
                    () = self.retry_wake.notified() => continue,
                    () = self.stopped() => return,
                },
                Some(delay) => tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = self.stopped() => return,
                },
            }
            // A pass re-runs whole evaluations (decryption, the sandbox) before their
            // signature: while the TPM does not answer, it would fail again at the end. A
            // random number proves the TPM is back; until it is, wait again without running
            // anything (the probe is cheap, so it keeps the first wait rather than backing
            // off, and the round runs about a second after the TPM returns).
            if let Err(e) = self.tpm().random(8).await {
                tracing::debug!(
                    event = "evaluation_retry_waits_for_tpm",
                    error = %clip(&e.to_string()),
                    "evaluations to retry wait for the TPM"
                );
                self.spawn_retries().delay = FIRST_RETRY;
                continue;
            }
            let due = {
                let mut retries = self.spawn_retries();
                retries.delay = (retries.delay * 2).min(LAST_RETRY);
                std::mem::take(&mut retries.pending)
            };
            for (id, (round, resuming)) in due {
                if let Err(e) = self.evaluate_round(&id, round, resuming).await {
                    tracing::error!(
                        event = "evaluation_retry_failed",
                        instance = %id,
                        round,
                        error = %clip(&e.to_string()),
                        "retrying the evaluation failed"
                    );
                }
            }
        }
    }

    /// Resumes work a crash or a restart interrupted: evaluations left `evaluating` run
    /// again, and so do open rounds whose automatic trigger is met by an input of this
    /// round but which were not evaluated (their evaluator did not start, or the daemon
    /// stopped between the input and the evaluation). An `explicit` request whose
    /// evaluation could not start is retried while the daemon runs, not across a restart.
    pub(crate) async fn resume(&self) -> Result<(), crate::store::StoreError> {
        let pending = self
            .store
            .read(|c| queries::instances_in_states(c, &[InstanceState::Evaluating]))
            .await?;
        for row in pending {
            if let Err(e) = self.evaluate_round(&row.id, row.round, true).await {
                tracing::error!(
                    event = "evaluation_resume_failed",
                    instance = %row.id,
                    error = %clip(&e.to_string()),
                    "resuming the evaluation failed"
                );
            }
        }
        let open = self
            .store
            .read(|c| -> Result<_, crate::store::StoreError> {
                let mut out = Vec::new();
                for row in queries::instances_in_states(c, &[InstanceState::Open])? {
                    let inputs = queries::list_inputs_without_data(c, &row.id)?;
                    out.push((row, inputs));
                }
                Ok(out)
            })
            .await?;
        let lost = self.unrecoverable();
        for (row, inputs) in open.into_iter().filter(|(row, _)| !lost.contains(&row.id)) {
            let manifest = match self.load_instance(&row.id).await {
                Ok((_, manifest)) => manifest,
                Err(e) => {
                    tracing::error!(
                        event = "instance_resume_failed",
                        instance = %row.id,
                        error = %clip(&e.to_string()),
                        "resuming the instance failed"
                    );
                    continue;
                }
            };
            let input_rounds: Vec<u64> = inputs.iter().map(|i| i.round).collect();
            if !lifecycle::resume_triggered(&manifest, row.round, &input_rounds) {
                continue;
            }
            if let Err(e) = self.evaluate_round(&row.id, row.round, false).await {
                tracing::error!(
                    event = "evaluation_failed",
                    instance = %row.id,
                    round = row.round,
                    error = %clip(&e.to_string()),
                    "evaluating at start failed"
                );
            }
        }
        Ok(())
    }
}

/// The `evaluation_phases` debug event: where the time of one evaluation went, in
/// milliseconds (durations only: no input, output or key material). Off at the default
/// `info` level.
fn log_phases(
    id: &str,
    round: u64,
    load: Duration,
    decrypt: Duration,
    usage: &crate::eval::Usage,
    sign: Duration,
    store: Duration,
) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p = &usage.phases;
    tracing::debug!(
        event = "evaluation_phases",
        instance = id,
        round,
        input_bytes = usage.input_bytes,
        load_ms = ms(load),
        decrypt_ms = ms(decrypt),
        frame_ms = ms(p.frame),
        spawn_ms = ms(p.spawn),
        child_ms = ms(p.child),
        child_start_cpu_ms = ms(p.child_start),
        child_read_cpu_ms = ms(p.child_read),
        child_setup_cpu_ms = ms(p.child_setup),
        child_compile_cpu_ms = ms(p.child_compile),
        child_compute_cpu_ms = ms(p.child_compute),
        child_output_cpu_ms = ms(p.child_output),
        response_ms = ms(p.response),
        sign_ms = ms(sign),
        store_ms = ms(store),
        "where the evaluation's time went"
    );
}

/// The slots that hold an input.
fn filled_slots(inputs: &[InputRow]) -> Vec<&str> {
    inputs.iter().map(|i| i.slot.as_str()).collect()
}

/// The storage fault behind an evaluation's failure, if that is what it was.
fn storage_fault(e: &EngineError) -> Option<crate::storage::StorageFault> {
    match e {
        EngineError::Store(s) => s.storage_fault(),
        EngineError::Measure(m) => m.storage_fault(),
        _ => None,
    }
}

/// Whether an evaluation failed on the TPM at all (gone, busy, a failed command): worth
/// another attempt later, unlike a refusal.
fn tpm_fault(e: &EngineError) -> bool {
    use crate::measure::MeasureError;
    matches!(
        e,
        EngineError::Tpm(_) | EngineError::Measure(MeasureError::Tpm(_))
    )
}

/// Whether an evaluation failed because the TPM stopped answering (it is restarting or the
/// connection broke), which a later attempt can get past; not a refusal by the TPM.
fn tpm_gone(e: &EngineError) -> bool {
    use crate::measure::MeasureError;
    use crate::tpm::TpmError;
    matches!(
        e,
        EngineError::Tpm(TpmError::Unreachable { .. })
            | EngineError::Measure(MeasureError::Tpm(TpmError::Unreachable { .. }))
    )
}
