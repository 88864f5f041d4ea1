//! Inputs: who may fill a slot and when (approval, window, state, resubmission), opening
//! the HPKE ciphertext to check it is for this instance, slot, round and submitter (and of
//! the slot's type) before it is stored, the submitter's function condition, withdrawal,
//! and the trigger.

use std::collections::BTreeMap;
use std::sync::Arc;

use arbiter_policy::hpke::{self, InputContext};
use arbiter_policy::lifecycle::{self, ResubmissionOutcome};
use arbiter_policy::manifest::{Manifest, Provide, Slot};
use arbiter_proto::api::{InputReceipt, SubmitInput, Withdrawal};
use base64::Engine as _;
use zeroize::Zeroizing;

use super::input_limits::InputLimits;
use super::{Engine, EngineError, now};
use crate::logging::clip;
use crate::store::queries::{self, InputRow, InstanceRow};

/// The deepest nesting accepted in an input (what `serde_json` parses by default); the
/// evaluator takes less (`eval`'s limit), and reports deeper inputs as a size failure.
const MAX_INPUT_DEPTH: usize = 128;

/// Inputs whose base64 ciphertext is at most this long are decoded, opened and checked on
/// the request's own task; larger ones on a blocking thread.
const INLINE_CHECK_BYTES: usize = 16 * 1024;

impl Engine {
    /// Why inputs are not accepted now, or `None` if they are (the lifecycle rule on the
    /// instance's state, the approvals and the window at the current time).
    pub(crate) fn inputs_refusal(
        &self,
        row: &InstanceRow,
        manifest: &Manifest,
        approvals: &BTreeMap<String, String>,
    ) -> Option<EngineError> {
        lifecycle::inputs_accepted(
            row.state,
            manifest,
            approvals,
            time::OffsetDateTime::now_utc(),
        )
        .err()
        .map(|refusal| EngineError::refused(&row.id, &refusal))
    }

    /// Accepts an input: authorisation, state, HPKE opening and type check, resubmission
    /// policy, durable commit — then the trigger.
    ///
    /// The API calls [`Engine::authorize_submission`] first, before reading the body.
    pub async fn submit_input(
        self: &Arc<Self>,
        caller: &str,
        id: &str,
        slot: &str,
        request: SubmitInput,
    ) -> Result<InputReceipt, EngineError> {
        // The instance, its manifest and its approvals in one store read.
        let (row, manifest, approvals) = self
            .load_instance_with(id, |c, row| queries::approvals(c, &row.id))
            .await?;
        let approvals: BTreeMap<String, String> = approvals.into_iter().collect();
        let slot_spec = Self::submitter_allowed(caller, id, slot, &manifest, &self.config())?;
        if let Some(refusal) = self.inputs_refusal(&row, &manifest, &approvals) {
            return Err(refusal);
        }
        lifecycle::function_condition(
            request.expect_function_sha256.as_deref(),
            &row.function_sha256,
        )
        .map_err(|refusal| EngineError::refused(id, &refusal))?;
        let limits = InputLimits::of(&manifest.limits, &self.config().limits);
        let SubmitInput {
            enc,
            ciphertext,
            expect_function_sha256,
        } = request;
        let private = self.instance_key(&row.id).await?;
        let value_type = slot_spec.value_type;
        let inline = ciphertext.len() <= INLINE_CHECK_BYTES;
        let check = move |row: &InstanceRow, slot: &str, caller: &str| {
            let (enc, ciphertext) = decode_input(&enc, ciphertext)?;
            limits.check(slot, ciphertext.len() as u64, 0)?;
            // Open it now: a ciphertext for another instance, slot, round or submitter, or
            // a tampered one, is refused before anything is stored.
            let plaintext =
                Self::open_input(row, &private, slot, row.round, caller, &enc, &ciphertext)?;
            drop(private);
            check_plaintext(&plaintext, slot, value_type)?;
            Ok::<_, EngineError>((enc, ciphertext))
        };
        let (enc, ciphertext) = if inline {
            // A small input opens in about as long as a hop to a blocking thread and back
            // costs in wake-ups: checked right here.
            check(&row, slot, caller)?
        } else {
            // Decoding, opening and checking a large input take a while: off the runtime's
            // threads. The base64 text is dropped as soon as it is decoded.
            let (slot_owned, caller_owned) = (slot.to_owned(), caller.to_owned());
            let row_for_check = row.clone();
            tokio::task::spawn_blocking(move || check(&row_for_check, &slot_owned, &caller_owned))
                .await
                .map_err(|e| EngineError::Internal(format!("checking an input: {e}")))??
        };
        let ciphertext_sha256 = hex::encode(hpke::ciphertext_sha256(&enc, &ciphertext));
        let input = InputRow {
            instance_id: id.to_owned(),
            slot: slot.to_owned(),
            submitter: caller.to_owned(),
            round: row.round,
            enc,
            ciphertext,
            ciphertext_sha256,
            expect_function_sha256,
            accepted_at: now(),
        };
        let resubmission = manifest.window.resubmission;
        let round = row.round;
        let bytes = (input.enc.len() + input.ciphertext.len()) as u64;
        let (receipt, current) = self
            .store
            .write(move |c| -> Result<_, EngineError> {
                // Re-read inside the write: the state may have moved since the check.
                let (state, current_round) = queries::instance_state(c, &input.instance_id)?
                    .ok_or_else(|| {
                        EngineError::NotFound(format!("no instance {}", input.instance_id))
                    })?;
                lifecycle::submission_still_current(state, current_round, round)
                    .map_err(|refusal| EngineError::refused(&input.instance_id, &refusal))?;
                // The instance's total, inside the write: two slots filled at once cannot
                // both fit in what is left for one.
                let others = queries::input_bytes_except(c, &input.instance_id, &input.slot)?;
                limits.check(&input.slot, input.ciphertext.len() as u64, others)?;
                if let Some(existing) = queries::get_input(c, &input.instance_id, &input.slot)? {
                    let outcome = lifecycle::resubmission(
                        resubmission,
                        &input.slot,
                        Some(&existing.accepted_at),
                    )
                    .map_err(|refusal| EngineError::refused(&input.instance_id, &refusal))?;
                    if outcome == ResubmissionOutcome::KeepExisting {
                        let receipt = InputReceipt {
                            slot: existing.slot,
                            round: existing.round,
                            ciphertext_sha256: super::stored(&existing.ciphertext_sha256)?,
                            accepted_at: existing.accepted_at,
                            kept_first: true,
                        };
                        return Ok((receipt, None));
                    }
                }
                queries::put_input(c, &input)?;
                queries::record_accepted(c, &input)?;
                queries::add_usage(
                    c,
                    &input.instance_id,
                    &input.submitter,
                    "inputs_submitted",
                    1,
                )?;
                queries::add_usage(
                    c,
                    &input.instance_id,
                    &input.submitter,
                    "input_bytes",
                    bytes,
                )?;
                // What the automatic trigger needs, as this transaction leaves it.
                let filled = queries::count_inputs(c, &input.instance_id)?;
                let receipt = InputReceipt {
                    slot: input.slot,
                    round: input.round,
                    ciphertext_sha256: super::stored(&input.ciphertext_sha256)?,
                    accepted_at: input.accepted_at,
                    kept_first: false,
                };
                Ok((receipt, Some((state, current_round, filled))))
            })
            .await?;
        tracing::info!(
            event = "input_accepted",
            instance = id,
            identity = caller,
            slot = %clip(slot),
            round = receipt.round,
            kept_first = receipt.kept_first,
            "input accepted"
        );
        if let Some((state, current_round, filled)) = current {
            self.metrics.inputs_accepted.inc();
            let filled = usize::try_from(filled).unwrap_or(usize::MAX);
            if manifest.automatic_trigger_count().is_some()
                && lifecycle::automatic_trigger_met(state, &manifest, filled)
            {
                self.spawn_evaluation(id.to_owned(), current_round);
            }
        }
        Ok(receipt)
    }

    /// The instance's HPKE private key, derived from its unwrapped secret once per sealing
    /// epoch and then kept ([`super::caches::InstanceKeys`]).
    pub(crate) async fn instance_key(
        &self,
        id: &str,
    ) -> Result<Arc<hpke::PrivateKey>, EngineError> {
        self.check_recoverable(id)?;
        // Held until the key is kept: a rotation (which empties the cache) waits for it.
        let _no_rotation = self.rotation.read().await;
        let epoch = self.sealer()?.epoch();
        if let Some(key) = self.instance_keys.get(id, epoch) {
            return Ok(key);
        }
        let secret = self.secret_under_rotation_lock(id, epoch).await?;
        let key = Arc::new(hpke::derive_keypair(secret.expose()).0);
        drop(secret);
        self.instance_keys.insert(id, epoch, Arc::clone(&key));
        Ok(key)
    }

    /// Decrypts one input under the instance key (docs/protocol.md's info binding).
    pub(crate) fn open_input(
        row: &InstanceRow,
        private: &hpke::PrivateKey,
        slot: &str,
        round: u64,
        submitter: &str,
        enc: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EngineError> {
        let ctx = InputContext {
            instance_id: &row.id,
            slot,
            round,
            function_sha256: &row.function_sha256,
            submitter,
        };
        hpke::open(private, &ctx, enc, ciphertext).map_err(|_| {
            EngineError::bad(
                "decryption_failed",
                format!(
                    "the ciphertext does not open for instance {}, slot `{slot}`, round {round} and \
                     submitter {submitter}: it was tampered with, or encrypted for another \
                     instance, slot, round or submitter; nothing was stored",
                    row.id
                ),
            )
        })
    }

    /// The instance's secret, unwrapped from the store under the current sealing key. The
    /// epoch and the wrapping are read under the rotation lock's shared side, so a rotation
    /// cannot retire the epoch in between. An instance found unrecoverable at start is a
    /// conflict that says so, not an internal error.
    pub(crate) async fn instance_secret(
        &self,
        id: &str,
    ) -> Result<crate::keys::InstanceSecret, EngineError> {
        self.check_recoverable(id)?;
        let _no_rotation = self.rotation.read().await;
        let epoch = self.sealer()?.epoch();
        self.secret_under_rotation_lock(id, epoch).await
    }

    /// Refuses an instance found unrecoverable at start.
    fn check_recoverable(&self, id: &str) -> Result<(), EngineError> {
        let lost = self.unrecoverable.lock().unwrap_or_else(|p| p.into_inner());
        if lost.iter().any(|lost| lost == id) {
            return Err(unrecoverable(id));
        }
        Ok(())
    }

    /// The secret's wrapping at `epoch`, read and unwrapped; the caller holds the rotation
    /// lock's shared side and read `epoch` under it.
    async fn secret_under_rotation_lock(
        &self,
        id: &str,
        epoch: u64,
    ) -> Result<crate::keys::InstanceSecret, EngineError> {
        self.pauses.pause("secret-epoch-read").await;
        let key = id.to_owned();
        let wrapped = self
            .store
            .read_small(move |c| queries::get_wrapped(c, &key, epoch))
            .await?
            .ok_or_else(|| {
                EngineError::Internal(format!("instance {id} has no secret at epoch {epoch}"))
            })?;
        Ok(self.sealer()?.unwrap_instance(id, &wrapped)?)
    }

    /// Withdraws (deletes) the caller's own input from a slot.
    pub async fn withdraw_input(
        &self,
        caller: &str,
        id: &str,
        slot: &str,
    ) -> Result<Withdrawal, EngineError> {
        let (row, manifest) = self.load_instance(id).await?;
        lifecycle::withdrawal_allowed(&manifest, caller, slot, row.state)
            .map_err(|refusal| EngineError::refused(id, &refusal))?;
        self.pauses.pause("withdraw-checked").await;
        let (key, s, who, round) = (id.to_owned(), slot.to_owned(), caller.to_owned(), row.round);
        self.store
            .write(move |c| -> Result<(), EngineError> {
                // Checked again inside the write: an evaluation may have started (and used
                // the input) since the check above.
                let current = queries::get_instance(c, &key)?
                    .ok_or_else(|| EngineError::NotFound(format!("no instance {key}")))?;
                lifecycle::withdrawal_still_current(current.state, current.round, round, &s)
                    .map_err(|refusal| EngineError::refused(&key, &refusal))?;
                let input = queries::get_input(c, &key, &s)?;
                lifecycle::withdrawal_target(
                    &who,
                    &s,
                    input.as_ref().map(|i| i.submitter.as_str()),
                )
                .map_err(|refusal| EngineError::refused(&key, &refusal))?;
                Ok(queries::delete_input(c, &key, &s)?)
            })
            .await?;
        Ok(Withdrawal {
            instance_id: super::stored(id)?,
            slot: slot.to_owned(),
            withdrawn: true,
        })
    }
}

/// Decodes an input's base64 `enc` and `ciphertext` (consuming the text, so it is freed
/// as soon as the bytes exist) and checks the encapsulation's length.
fn decode_input(enc: &str, ciphertext: String) -> Result<(Vec<u8>, Vec<u8>), EngineError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let enc = b64
        .decode(enc)
        .map_err(|e| EngineError::bad("invalid_base64", format!("`enc` is not base64: {e}")))?;
    if enc.len() != hpke::ENC_LEN {
        return Err(EngineError::bad(
            "invalid_enc",
            format!(
                "`enc` is {} bytes; DHKEM(P-256) encapsulations are {}",
                enc.len(),
                hpke::ENC_LEN
            ),
        ));
    }
    let decoded = b64.decode(&ciphertext).map_err(|e| {
        EngineError::bad("invalid_base64", format!("`ciphertext` is not base64: {e}"))
    })?;
    drop(ciphertext);
    Ok((enc, decoded))
}

/// Checks a decrypted input is JSON of the slot's type, on the bytes: no `Value` tree
/// (whose strings would outlive the zeroized plaintext) is built from it in the daemon.
fn check_plaintext(
    plaintext: &Zeroizing<Vec<u8>>,
    slot: &str,
    value_type: arbiter_policy::manifest::ValueType,
) -> Result<(), EngineError> {
    let kind = arbiter_policy::jcs::raw_kind(plaintext).map_err(|e| {
        EngineError::bad(
            "invalid_plaintext",
            format!("the decrypted input is not JSON: {e}"),
        )
    })?;
    if arbiter_policy::jcs::raw_depth(plaintext) > MAX_INPUT_DEPTH {
        return Err(EngineError::bad(
            "invalid_plaintext",
            format!("the decrypted input is nested deeper than {MAX_INPUT_DEPTH} levels"),
        ));
    }
    if !value_type.accepts_kind(kind) {
        return Err(EngineError::bad(
            "wrong_type",
            format!("slot `{slot}` takes a value of type {value_type:?}"),
        ));
    }
    Ok(())
}

/// The refusal of anything that needs the secret of an instance found unrecoverable.
pub(crate) fn unrecoverable(id: &str) -> EngineError {
    EngineError::conflict(
        "instance_unrecoverable",
        format!(
            "instance {id} is unrecoverable: its secret's wrapping did not open under the sealing \
             key when the daemon started (a restored old copy of the state, a sealing index \
             redefined after a TPM clear, or a damaged store), so its inputs and results can \
             never be opened. An operator's epoch reset (POST /v1/admin/epoch-reset) gives it \
             up"
        ),
    )
}

/// Whether a slot's input survives the end of a round.
pub(crate) fn kept_across_rounds(provide: Provide) -> bool {
    provide == Provide::ProvideOnce
}

impl Engine {
    /// Whether `caller` may submit into `slot` of instance `id`: checked before the
    /// request's body is read, so a stranger cannot make the daemon buffer a body.
    pub async fn authorize_submission(
        &self,
        caller: &str,
        id: &str,
        slot: &str,
    ) -> Result<(), EngineError> {
        let (_, manifest) = self.load_instance(id).await?;
        Self::submitter_allowed(caller, id, slot, &manifest, &self.config()).map(|_| ())
    }

    /// What bounds an input body for `slot` of instance `id` before it is read: the
    /// effective limits and the bytes the other slots hold now (the body limit follows
    /// from both). Checks the caller as [`Engine::authorize_submission`] does.
    pub async fn input_admission(
        &self,
        caller: &str,
        id: &str,
        slot: &str,
    ) -> Result<(InputLimits, u64), EngineError> {
        let s = slot.to_owned();
        let (_, manifest, others) = self
            .load_instance_with(id, move |c, row| {
                queries::input_bytes_except(c, &row.id, &s)
            })
            .await?;
        Self::submitter_allowed(caller, id, slot, &manifest, &self.config())?;
        let limits = InputLimits::of(&manifest.limits, &self.config().limits);
        Ok((limits, others))
    }

    fn submitter_allowed<'m>(
        caller: &str,
        id: &str,
        slot: &str,
        manifest: &'m Manifest,
        config: &crate::config::Config,
    ) -> Result<&'m Slot, EngineError> {
        lifecycle::submitter_allowed(manifest, caller, slot, config.is_operator(caller))
            .map_err(|refusal| EngineError::refused(id, &refusal))
    }
}
