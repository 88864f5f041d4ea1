//! Backup-proof destruction (docs/protocol.md): the sealing key is rotated so that no copy of the
//! disk state taken before destruction can recover the destroyed instances' secrets, in
//! steps that are each crash-safe — (0) mark `destroying`; (1) new key K′ in memory; (2)
//! wrap every other live secret and the TLS key under K′ at epoch e+1; (3) write K′ ‖ e+1
//! to the sealing index; (4) delete the instances' inputs, results and wrappings, measure
//! `instance_destroyed`, sign the certificates. Destructions queued together share one
//! rotation. Also: the automatic policies, the unrecoverable-instance check at start and
//! the operator's epoch reset.

use std::sync::Arc;

use arbiter_measured_boot::cel::{self, EventContent};
use arbiter_policy::jws;
use arbiter_policy::lifecycle;
use arbiter_proto::InstanceState;
use arbiter_proto::api::{DestructionCertificate, EpochReset};

use super::{Engine, EngineError, now};
use crate::keys::Sealer;
use crate::logging::clip;
use crate::store::StoreError;
use crate::store::queries;
use crate::tpm::SealedKey;

/// Test-only crash points (cargo feature `failpoints`): with `ARBITER_FAILPOINT=NAME` the
/// daemon aborts right there, as a power loss would.
pub(crate) fn failpoint(name: &str) {
    #[cfg(feature = "failpoints")]
    if std::env::var("ARBITER_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::error!(failpoint = name, "failpoint reached: aborting");
        std::process::abort();
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// The states of the instances whose secret must have a wrapping that opens at the current
/// epoch (a `destroying` one may already have lost it to step (3)).
const WRAPPED_STATES: [InstanceState; 3] = [
    InstanceState::Open,
    InstanceState::Evaluating,
    InstanceState::Evaluated,
];

/// When [`Engine::rotate`] rotates the sealing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rotation {
    /// Only when one of the instances being destroyed has a wrapping at the current epoch
    /// (otherwise a crash after step (3) already retired it).
    IfDestroyingWrapped,
    /// In any case (epoch reset).
    Always,
}

impl Engine {
    /// `POST /v1/instances/{id}/destroy` by one of the manifest's destroyers: marks the
    /// instance `destroying` durably, then destroys it (sharing a rotation with any other
    /// pending destruction) and returns its certificate.
    pub async fn request_destruction(
        self: &Arc<Self>,
        caller: &str,
        id: &str,
    ) -> Result<DestructionCertificate, EngineError> {
        let (row, manifest) = self.load_instance(id).await?;
        lifecycle::destruction_request_allowed(&manifest, caller)
            .map_err(|refusal| EngineError::refused(id, &refusal))?;
        if lifecycle::destruction_may_begin(row.state) {
            self.mark_destroying(id).await?;
            self.run_destructions().await?;
        }
        self.destruction_certificate(caller, id).await
    }

    /// Step (0): `destroying`, committed before anything else happens.
    pub(crate) async fn mark_destroying(&self, id: &str) -> Result<(), EngineError> {
        let key = id.to_owned();
        self.store
            .write(move |c| -> Result<(), StoreError> {
                if let Some(row) = queries::get_instance(c, &key)?
                    && lifecycle::destruction_may_begin(row.state)
                {
                    queries::set_state(c, &key, InstanceState::Destroying)?;
                }
                Ok(())
            })
            .await?;
        // Its key is no longer needed to take inputs: not kept in memory any longer.
        self.instance_keys.evict(id);
        failpoint("after-mark");
        Ok(())
    }

    /// Destroys every instance marked `destroying`: one rotation (when any of them still
    /// has a wrapping at the current epoch), then step (4) for each.
    pub(crate) async fn run_destructions(&self) -> Result<(), EngineError> {
        let _one_at_a_time = self.destroy_lock.lock().await;
        let destroying = self
            .store
            .read(|c| queries::instances_in_states(c, &[InstanceState::Destroying]))
            .await?;
        if destroying.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = destroying.iter().map(|r| r.id.clone()).collect();
        self.rotate(&ids, Rotation::IfDestroyingWrapped).await?;
        let retired = self.sealer()?.epoch().saturating_sub(1);
        for row in destroying {
            self.finish_destruction(&row.id, retired).await?;
        }
        let current = self.sealer()?.epoch();
        self.store
            .write(move |c| queries::delete_wrapped_except(c, current))
            .await?;
        Ok(())
    }

    /// Steps (1)–(3): a new sealing key; every secret not being destroyed rewrapped under
    /// it; the new key written to the TPM. The wrappings are read under the rotation lock,
    /// so an instance created meanwhile waits and is wrapped under the new key. A wrapping
    /// that does not open is not carried over: its instance is reported unrecoverable
    /// (its secret was already lost) rather than failing every destruction.
    async fn rotate(&self, destroying: &[String], when: Rotation) -> Result<(), EngineError> {
        let _no_new_wrappings = self.rotation.write().await;
        let epoch = self.sealer()?.epoch();
        let wrapped = self
            .store
            .read(move |c| queries::wrapped_at(c, epoch))
            .await?;
        self.pauses.pause("destruction-wrappings-read").await;
        if when == Rotation::IfDestroyingWrapped
            && !wrapped.iter().any(|(owner, _)| destroying.contains(owner))
        {
            return Ok(());
        }
        let next = SealedKey::generate(self.sealer()?.epoch() + 1);
        let next_epoch = next.epoch();
        let new_sealer = Sealer::new(next.duplicate());
        failpoint("after-step-1");
        let mut rewrapped = Vec::new();
        for (owner, w) in wrapped {
            if destroying.contains(&owner) {
                continue;
            }
            let opened = self.sealer()?.unwrap(&owner, &w);
            match opened {
                Ok(secret) => rewrapped.push((owner.clone(), new_sealer.wrap(&owner, &secret))),
                Err(e) => {
                    tracing::warn!(
                        event = "wrapping_dropped",
                        owner = %owner,
                        epoch = next_epoch,
                        error = %clip(&e.to_string()),
                        "not carrying over a wrapping to the next sealing epoch"
                    );
                    if owner != "tls" {
                        self.note_unrecoverable(&owner);
                    }
                }
            }
        }
        self.store
            .write(move |c| -> Result<(), StoreError> {
                for (owner, w) in &rewrapped {
                    queries::put_wrapped(c, owner, w)?;
                }
                Ok(())
            })
            .await?;
        failpoint("after-step-2");
        self.tpm.write_sealing_key(next).await?;
        *self.sealer.write().unwrap_or_else(|p| p.into_inner()) = Some(new_sealer);
        // No derived key outlives the epoch it was derived under.
        self.instance_keys.rotated(next_epoch);
        failpoint("after-step-3");
        tracing::info!(
            event = "sealing_key_rotated",
            epoch = next_epoch,
            "sealing key rotated"
        );
        Ok(())
    }

    /// Step (4) for one instance; idempotent, so a crash anywhere in it resumes cleanly.
    async fn finish_destruction(&self, id: &str, retired: u64) -> Result<(), EngineError> {
        let key = id.to_owned();
        let accepted = self
            .store
            .read(move |c| queries::accepted_inputs(c, &key))
            .await?;
        if self.log_position(id, true).await.is_none() {
            self.measurer
                .measure(EventContent::InstanceDestroyed(cel::InstanceDestroyed {
                    instance_id: super::cel_id(id),
                    epoch_retired: retired,
                }))
                .await?;
        }
        failpoint("after-step-4-measure");
        let at = now();
        let jws = self.sign_destruction(id, &at, &accepted, retired).await?;
        let key = id.to_owned();
        self.store
            .write(move |c| -> Result<(), StoreError> {
                queries::delete_inputs(c, &key)?;
                queries::delete_results(c, &key)?;
                queries::delete_wrapped(c, &key)?;
                queries::delete_approvals(c, &key)?;
                queries::put_certificate(c, &key, &jws, &at)?;
                queries::mark_destroyed(c, &key, &at)
            })
            .await?;
        self.instance_keys.evict(id);
        let _ = self.events.send(id.to_owned());
        failpoint("after-step-4");
        tracing::info!(
            event = "instance_destroyed",
            instance = id,
            retired_epoch = retired,
            "instance destroyed"
        );
        Ok(())
    }

    /// `GET /v1/instances/{id}/destruction-certificate` (parties and operators): the JWS
    /// (and its decoded payload) with the caller's own leaves of the inputs tree and their
    /// inclusion proofs (docs/protocol.md) — never the other parties' leaves.
    pub async fn destruction_certificate(
        &self,
        caller: &str,
        id: &str,
    ) -> Result<DestructionCertificate, EngineError> {
        let (_, manifest) = self.load_instance(id).await?;
        self.require_party(caller, id, &manifest)?;
        let key = id.to_owned();
        let (jws, accepted) = self
            .store
            .read(move |c| -> Result<_, StoreError> {
                Ok((
                    queries::certificate(c, &key)?,
                    queries::accepted_inputs(c, &key)?,
                ))
            })
            .await?;
        let jws = jws.ok_or_else(|| {
            EngineError::conflict("not_destroyed", format!("instance {id} is not destroyed"))
        })?;
        let payload = super::statements::statement_payload(&jws);
        // The tree is the one signed: its first `inputs_count` leaves (the record is
        // append-only and a destroyed instance accepts nothing, so that is all of it).
        let count = payload["inputs_count"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                EngineError::Internal(format!("the certificate of {id} has no inputs_count"))
            })?;
        let leaves = accepted.get(..count).ok_or_else(|| {
            EngineError::Internal(format!(
                "the certificate of {id} counts {count} inputs, the store records {}",
                accepted.len()
            ))
        })?;
        let mut own = Vec::new();
        for (index, leaf) in leaves.iter().enumerate() {
            if leaf.submitter == caller {
                let inclusion = jws::inclusion_of(leaves, index)
                    .map_err(|e| EngineError::Internal(format!("inclusion proof: {e}")))?;
                own.push(inclusion);
            }
        }
        Ok(DestructionCertificate {
            inputs: own,
            jws,
            payload,
        })
    }

    /// Applies the automatic destruction policies that are due for `id`.
    pub(crate) async fn destroy_if_due(
        &self,
        id: &str,
        first_read: bool,
    ) -> Result<(), EngineError> {
        let (row, manifest) = self.load_instance(id).await?;
        let due = lifecycle::destruction_due(
            manifest.destruction.policy,
            row.state,
            first_read || row.first_read_at.is_some(),
            time::OffsetDateTime::now_utc(),
        );
        if due {
            self.mark_destroying(id).await?;
            self.run_destructions().await?;
        }
        Ok(())
    }

    /// The deadline check of the background loop: destroys every live instance whose
    /// policy makes it due now. It reads each live instance's id, state and whether its
    /// result was read (not its manifest), and the policy from memory (from the manifest
    /// the first time an instance is seen); only a due instance is loaded again and
    /// re-checked by [`Engine::destroy_if_due`].
    async fn destroy_due(&self) {
        let live = self
            .store
            .read(|c| queries::instance_states(c, &InstanceState::LIVE))
            .await
            .unwrap_or_default();
        self.destruction_policies
            .retain_live(&live.iter().map(|(id, _, _)| id.as_str()).collect());
        let now = time::OffsetDateTime::now_utc();
        for (id, state, read) in live {
            if let Err(e) = self.destroy_if_policy_due(&id, state, read, now).await {
                tracing::error!(
                    event = "destruction_failed",
                    instance = %id,
                    error = %clip(&e.to_string()),
                    "destruction failed"
                );
            }
        }
    }

    /// Destroys `id` if its destruction policy (kept in memory, read from its manifest
    /// the first time) makes it due at `now` in `state`.
    async fn destroy_if_policy_due(
        &self,
        id: &str,
        state: InstanceState,
        result_read: bool,
        now: time::OffsetDateTime,
    ) -> Result<(), EngineError> {
        let policy = match self.destruction_policies.get(id) {
            Some(policy) => policy,
            None => {
                let (_, manifest) = self.load_instance(id).await?;
                self.destruction_policies
                    .insert(id, manifest.destruction.policy);
                manifest.destruction.policy
            }
        };
        if lifecycle::destruction_due(policy, state, result_read, now) {
            self.destroy_if_due(id, false).await?;
        }
        Ok(())
    }

    /// Background work: resume interrupted destructions, apply deadlines, notice TPM
    /// startups under the running daemon, and retry evaluations whose evaluator did not
    /// start. None of it runs in a degraded start: all of it needs the sealing key or writes.
    pub fn spawn_background(self: &Arc<Self>) {
        if self.sealing_unavailable.is_some() {
            // Degraded: resuming evaluations, destructions and re-measuring after a TPM
            // startup all need the sealing key or write state; none runs.
            return;
        }
        // Interrupted evaluations resume here, after READY: one may run for the manifest's
        // whole wall-time limit, far beyond a service manager's start timeout.
        let resuming = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = resuming.resume().await {
                tracing::error!(
                    event = "resume_failed",
                    error = %clip(&e.to_string()),
                    "resuming interrupted evaluations failed"
                );
            }
        });
        tokio::spawn(Arc::clone(self).retry_evaluations());
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = engine.run_destructions().await {
                tracing::error!(
                    event = "resume_failed",
                    error = %clip(&e.to_string()),
                    "resuming destructions failed"
                );
            }
            for tick in 1u64.. {
                // A stopped engine (a test's daemon before its restart) leaves the TPM and the
                // state to its successor.
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                    () = engine.stopped() => return,
                }
                engine.destroy_due().await;
                // A quote per check: every 10 s, not every tick (hardware TPMs are slow).
                if tick % 5 != 0 {
                    continue;
                }
                if let Err(e) = engine.measurer.check_startup().await {
                    tracing::error!(
                        event = "startup_check_failed",
                        error = %clip(&e.to_string()),
                        "checking for a TPM startup failed"
                    );
                }
            }
        });
    }

    /// Live instances whose secret has no wrapping at the current epoch (a restored old
    /// copy) or one that does not open under the sealing key (the sealing index redefined,
    /// a damaged store): their secrets are gone for good. Each wrapping is opened, not only
    /// looked up, so a bad one is reported at start rather than by a later rotation.
    pub(crate) async fn find_unrecoverable(&self) -> Result<Vec<String>, StoreError> {
        let _no_rotation = self.rotation.read().await;
        // Degraded (no sealing key): nothing can be opened, so nothing is judged lost.
        let Some(epoch) = self.sealer().ok().map(|s| s.epoch()) else {
            return Ok(Vec::new());
        };
        let live = self
            .store
            .read(move |c| -> Result<Vec<_>, StoreError> {
                let mut out = Vec::new();
                for row in queries::instances_in_states(c, &WRAPPED_STATES)? {
                    let wrapped = queries::get_wrapped(c, &row.id, epoch)?;
                    out.push((row.id, wrapped));
                }
                Ok(out)
            })
            .await?;
        let Ok(sealer) = self.sealer() else {
            return Ok(Vec::new());
        };
        Ok(live
            .into_iter()
            .filter(|(id, wrapped)| {
                wrapped
                    .as_ref()
                    .is_none_or(|w| sealer.unwrap_instance(id, w).is_err())
            })
            .map(|(id, _)| id)
            .collect())
    }

    /// Adds `id` to the instances reported unrecoverable (once).
    fn note_unrecoverable(&self, id: &str) {
        let mut lost = self.unrecoverable.lock().unwrap_or_else(|p| p.into_inner());
        if !lost.iter().any(|l| l == id) {
            lost.push(id.to_owned());
        }
    }

    /// `POST /v1/admin/epoch-reset` (operators): gives up the unrecoverable instances,
    /// rotates the sealing key and measures `epoch_reset`, so new instances are accepted
    /// again.
    pub async fn epoch_reset(&self, caller: &str) -> Result<EpochReset, EngineError> {
        if !self.config().is_operator(caller) {
            return Err(EngineError::Forbidden(format!(
                "identity {caller} is not an operator"
            )));
        }
        let _one_at_a_time = self.destroy_lock.lock().await;
        let lost = self.find_unrecoverable().await?;
        if lost.is_empty() {
            // Each rotation is an NV write, and hardware NV wears out: nothing to give up,
            // nothing to do.
            return Err(EngineError::conflict(
                "nothing_unrecoverable",
                "no instance is unrecoverable, so there is nothing for an epoch reset to give up; \
                 the sealing key was not rotated",
            ));
        }
        self.rotate(&lost, Rotation::Always).await?;
        let new_epoch = self.sealer()?.epoch();
        self.measurer
            .measure(EventContent::EpochReset(cel::EpochReset {
                epoch: new_epoch,
                unrecoverable: lost.iter().map(|id| super::cel_id(id)).collect(),
            }))
            .await?;
        let at = now();
        let ids = lost.clone();
        self.store
            .write(move |c| -> Result<(), StoreError> {
                for id in &ids {
                    queries::delete_inputs(c, id)?;
                    queries::delete_results(c, id)?;
                    queries::delete_wrapped(c, id)?;
                    queries::mark_destroyed(c, id, &at)?;
                }
                queries::delete_wrapped_except(c, new_epoch)
            })
            .await?;
        self.unrecoverable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        tracing::warn!(
            event = "epoch_reset",
            identity = caller,
            epoch = new_epoch,
            gave_up = lost.len(),
            "epoch reset: unrecoverable instances given up"
        );
        Ok(EpochReset {
            epoch: new_epoch,
            unrecoverable: lost
                .iter()
                .map(|id| super::stored(id))
                .collect::<Result<_, _>>()?,
        })
    }
}
