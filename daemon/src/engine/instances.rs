//! Instances: creation from a manifest (quota, validation, the instance secret and its
//! HPKE key, wrapped under the sealing key), their description for parties and operators,
//! explicit approval, and usage figures.

use std::collections::BTreeMap;
use std::sync::Arc;

use arbiter_policy::hpke;
use arbiter_policy::lifecycle;
use arbiter_policy::manifest::{Manifest, ManifestProblem, ReaderRole};
use arbiter_proto::InstanceState;
use arbiter_proto::api::{
    Approval, CreateInstance, CreatedInstance, InstanceDescription, ReportedState, SlotStatus,
    Usage, Window,
};

use super::{Engine, EngineError, is_id, new_id, now, stored};
use crate::keys::InstanceSecret;
use crate::store::StoreError;
use crate::store::queries::{self, InstanceRow};

impl Engine {
    /// Loads an instance and its manifest, refusing malformed and unknown ids.
    pub(crate) async fn load_instance(
        &self,
        id: &str,
    ) -> Result<(InstanceRow, Arc<Manifest>), EngineError> {
        let (row, manifest, ()) = self.load_instance_with(id, |_, _| Ok(())).await?;
        Ok((row, manifest))
    }

    /// Loads an instance, its manifest and what `also` reads about it, in one short store
    /// read; refuses malformed and unknown ids.
    pub(crate) async fn load_instance_with<T: Send + 'static>(
        &self,
        id: &str,
        also: impl FnOnce(&rusqlite::Connection, &InstanceRow) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(InstanceRow, Arc<Manifest>, T), EngineError> {
        if !is_id(id) {
            return Err(EngineError::bad(
                "invalid_id",
                format!("`{id}` is not an id (32 lowercase hex characters)"),
            ));
        }
        let key = id.to_owned();
        let (row, extra) = self
            .store
            .read_small(move |c| -> Result<_, StoreError> {
                match queries::get_instance(c, &key)? {
                    Some(row) => {
                        let extra = also(c, &row)?;
                        Ok(Some((row, extra)))
                    }
                    None => Ok(None),
                }
            })
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("no instance {id}")))?;
        let manifest = self.manifest_of(&row)?;
        Ok((row, manifest, extra))
    }

    /// The instance's manifest, parsed and validated from its stored JSON once and then
    /// kept ([`super::caches::Manifests`]).
    fn manifest_of(&self, row: &InstanceRow) -> Result<Arc<Manifest>, EngineError> {
        if let Some(manifest) = self.manifests.get(&row.id, &row.manifest_sha256) {
            return Ok(manifest);
        }
        let id = &row.id;
        let raw: serde_json::Value = serde_json::from_str(&row.manifest_json)
            .map_err(|e| EngineError::Internal(format!("stored manifest of {id}: {e}")))?;
        let manifest = Manifest::from_json_value(raw)
            .map_err(|p| {
                EngineError::Internal(format!(
                    "stored manifest of {id} no longer validates: {p:?}"
                ))
            })?
            .into_parts()
            .0;
        let manifest = Arc::new(manifest);
        self.manifests
            .insert(id, &row.manifest_sha256, Arc::clone(&manifest));
        Ok(manifest)
    }

    /// Refuses callers who are neither parties of the manifest nor operators.
    pub(crate) fn require_party(
        &self,
        caller: &str,
        id: &str,
        manifest: &Manifest,
    ) -> Result<(), EngineError> {
        if manifest.is_party(caller) || self.config().is_operator(caller) {
            Ok(())
        } else {
            Err(EngineError::Forbidden(format!(
                "identity {caller} is not a party of instance {id} nor an operator"
            )))
        }
    }

    /// Whether `caller` may create instances at all (quotas are checked with the manifest):
    /// checked before the request's body is read.
    pub fn authorize_creation(&self, caller: &str) -> Result<(), EngineError> {
        self.config()
            .creation_quota(caller)
            .map(|_| ())
            .ok_or_else(|| {
                EngineError::Forbidden(format!(
                    "identity {caller} may not create instances (operators and access.creators may)"
                ))
            })
    }

    /// Creates an instance: quota, manifest validation, function lookup, a fresh secret
    /// wrapped under the sealing key, all committed before the answer.
    pub async fn create_instance(
        &self,
        caller: &str,
        request: CreateInstance,
    ) -> Result<CreatedInstance, EngineError> {
        let quota = self.config().creation_quota(caller).ok_or_else(|| {
            EngineError::Forbidden(format!(
                "identity {caller} may not create instances (operators and access.creators may)"
            ))
        })?;
        self.refuse_while_upgrading()?;
        let lost = self.unrecoverable();
        if !lost.is_empty() {
            return Err(EngineError::conflict(
                "epoch_reset_required",
                format!(
                    "{} instance(s) are unrecoverable since a restored state; an operator must run \
                     an epoch reset before new instances are created",
                    lost.len()
                ),
            ));
        }
        let validated =
            Manifest::from_json_value(request.manifest).map_err(EngineError::InvalidManifest)?;
        let problems = validated
            .manifest()
            .check_times(time::OffsetDateTime::now_utc());
        if !problems.is_empty() {
            return Err(EngineError::InvalidManifest(problems));
        }
        let problems = super::input_limits::ceiling_problems(
            &validated.manifest().limits,
            &self.config().limits,
        );
        if !problems.is_empty() {
            return Err(EngineError::InvalidManifest(problems));
        }
        let function_sha256 = validated.manifest().function.sha256.as_str().to_owned();
        let function = self
            .offered_function(&function_sha256)
            .await?
            .map_err(|reason| {
                EngineError::InvalidManifest(vec![ManifestProblem {
                    pointer: "/function/sha256".into(),
                    reason,
                }])
            })?;
        // No rotation may run between wrapping the secret and committing it.
        let _gate = self.rotation.read().await;
        let secret = InstanceSecret::generate();
        let (_, public_key) = hpke::derive_keypair(secret.expose());
        let id = new_id();
        let manifest_sha256 = validated.sha256_hex();
        let (_, raw) = validated.into_parts();
        let row = InstanceRow {
            id: id.clone(),
            manifest_json: raw.to_string(),
            manifest_sha256: manifest_sha256.clone(),
            function_id: function.id.clone(),
            function_sha256: function.sha256.clone(),
            public_key: public_key.to_vec(),
            created_by: caller.to_owned(),
            created_at: now(),
            state: InstanceState::Open,
            round: 1,
            evaluations: 0,
            first_read_at: None,
            destroyed_at: None,
        };
        let wrapped = self.sealer()?.wrap(&id, secret.expose());
        drop(secret);
        let creator = caller.to_owned();
        let count_creator = creator.clone();
        let live = self
            .store
            .read(move |c| queries::live_instances_of(c, &count_creator))
            .await?;
        if live >= u64::from(quota) {
            return Err(EngineError::Quota(format!(
                "identity {creator} already holds {quota} live instances, its quota"
            )));
        }
        self.measurer
            .measure(super::instance_created(
                &row.id,
                &row.manifest_sha256,
                &row.public_key,
            ))
            .await?;
        let created = self
            .store
            .write(move |c| -> Result<(), EngineError> {
                if queries::live_instances_of(c, &creator)? >= u64::from(quota) {
                    return Err(EngineError::Quota(format!(
                        "identity {creator} already holds {quota} live instances, its quota"
                    )));
                }
                queries::insert_instance(c, &row)?;
                queries::put_wrapped(c, &row.id, &wrapped)?;
                Ok(())
            })
            .await;
        created?;
        tracing::info!(
            event = "instance_created",
            instance = %id,
            identity = caller,
            function = %function.id,
            "instance created"
        );
        Ok(CreatedInstance {
            id: stored(&id)?,
            public_key: hex::encode(public_key),
            hpke_suite: hpke::SUITE.to_owned(),
            manifest_sha256: stored(&manifest_sha256)?,
            function_sha256: stored(&function.sha256)?,
            state: InstanceState::Open,
            round: 1,
        })
    }

    /// Describes an instance to its parties and operators.
    pub async fn describe_instance(
        &self,
        caller: &str,
        id: &str,
    ) -> Result<InstanceDescription, EngineError> {
        let (row, manifest) = self.load_instance(id).await?;
        self.require_party(caller, id, &manifest)?;
        let key = id.to_owned();
        let fid = row.function_id.clone();
        let (inputs, approvals, function) = self
            .store
            .read(move |c| -> Result<_, StoreError> {
                Ok((
                    queries::list_inputs_without_data(c, &key)?,
                    queries::approvals(c, &key)?,
                    queries::get_function(c, &fid)?,
                ))
            })
            .await?;
        let function = function.ok_or_else(|| {
            EngineError::Internal(format!("the function of instance {id} is gone"))
        })?;
        let slots = manifest
            .slots
            .keys()
            .map(|slot| {
                let input = inputs.iter().find(|i| i.slot == slot.as_str());
                Ok(SlotStatus {
                    slot: slot.as_str().to_owned(),
                    filled: input.is_some(),
                    submitter: input.map(|i| stored(&i.submitter)).transpose()?,
                    accepted_at: input.map(|i| i.accepted_at.clone()),
                    round: input.map(|i| i.round),
                    ciphertext_sha256: input.map(|i| stored(&i.ciphertext_sha256)).transpose()?,
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let approvals: BTreeMap<String, String> = approvals.into_iter().collect();
        let lost = self.unrecoverable().contains(&row.id);
        let accepting_inputs = !lost && self.inputs_refusal(&row, &manifest, &approvals).is_none();
        let window: Window = serde_json::to_value(manifest.window)
            .and_then(serde_json::from_value)
            .map_err(|e| EngineError::Internal(format!("the window of instance {id}: {e}")))?;
        Ok(InstanceDescription {
            id: stored(&row.id)?,
            manifest: serde_json::from_str(&row.manifest_json)
                .map_err(|e| EngineError::Internal(e.to_string()))?,
            manifest_sha256: stored(&row.manifest_sha256)?,
            function: super::functions::detail(function)?,
            state: if lost {
                ReportedState::Unrecoverable
            } else {
                row.state.into()
            },
            round: row.round,
            evaluations: row.evaluations,
            window,
            accepting_inputs,
            slots,
            approvals: approvals
                .into_iter()
                .map(|(who, at)| Ok((stored(&who)?, at)))
                .collect::<Result<_, EngineError>>()?,
            public_key: hex::encode(&row.public_key),
            hpke_suite: hpke::SUITE.to_owned(),
            created_by: stored(&row.created_by)?,
            created_at: row.created_at,
        })
    }

    /// Records a party's approval of the manifest.
    pub async fn approve(&self, caller: &str, id: &str) -> Result<Approval, EngineError> {
        let (row, manifest) = self.load_instance(id).await?;
        lifecycle::approval_accepted(&manifest, caller, row.state)
            .map_err(|refusal| EngineError::refused(id, &refusal))?;
        let key = id.to_owned();
        let who = caller.to_owned();
        let at = now();
        let approvals = self
            .store
            .write(move |c| -> Result<_, StoreError> {
                queries::approve(c, &key, &who, &at)?;
                queries::approvals(c, &key)
            })
            .await?;
        tracing::info!(
            event = "approved",
            instance = id,
            identity = caller,
            "approved"
        );
        let approved: Vec<&String> = approvals.iter().map(|(i, _)| i).collect();
        let complete =
            lifecycle::approvals_complete(&manifest, approved.iter().map(|a| a.as_str()));
        Ok(Approval {
            approved: approved
                .into_iter()
                .map(|who| stored(who))
                .collect::<Result<_, _>>()?,
            complete,
            instance_id: stored(id)?,
        })
    }

    /// Usage of an instance (docs/api.md, usage), shown to its manifest's parties and operators
    /// only.
    ///
    /// - Operators see everything: `totals`, `per_identity` (the parties' figures and the
    ///   evaluations', under the pseudo-identity `evaluation`) and `evaluation`.
    /// - A party sees its own figures (`own`: what it submitted, which it knows anyway) and
    ///   the number of `evaluations` (which its instance description shows too) — never
    ///   another party's figures, nor totals it could subtract its own from.
    /// - Figures derived from an evaluation (`operations`, `wall_time_ms`, `output_bytes`,
    ///   summed over the rounds) go to operators and to parties that are result readers
    ///   (`evaluation`): for a yes/no function the output's size is the answer, so a
    ///   status-only reader must not see it.
    pub async fn usage(&self, caller: &str, id: &str) -> Result<Usage, EngineError> {
        let (_, manifest) = self.load_instance(id).await?;
        self.require_party(caller, id, &manifest)?;
        let key = id.to_owned();
        let rows = self.store.read(move |c| queries::usage(c, &key)).await?;
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        let mut per_identity: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (identity, metric, amount) in rows {
            *totals.entry(metric.clone()).or_default() += amount;
            per_identity
                .entry(identity)
                .or_default()
                .insert(metric, amount);
        }
        let mut evaluation = per_identity
            .get(EVALUATION_USAGE)
            .cloned()
            .unwrap_or_default();
        let evaluations = evaluation.remove("evaluations").unwrap_or(0);
        let operator = self.config().is_operator(caller);
        let sees_evaluation = operator || manifest.reader_role(caller) == Some(ReaderRole::Result);
        Ok(Usage {
            evaluation: sees_evaluation.then_some(evaluation),
            evaluations,
            instance_id: stored(id)?,
            own: manifest
                .is_party(caller)
                .then(|| per_identity.get(caller).cloned().unwrap_or_default()),
            per_identity: operator.then_some(per_identity),
            totals: operator.then_some(totals),
        })
    }
}

/// The pseudo-identity under which evaluation figures are counted in the usage table.
pub(crate) const EVALUATION_USAGE: &str = "evaluation";
