//! Image upgrades (docs/appliance.md, "Upgrades"). The sealing index and the statement key
//! are bound to the platform PCRs, so the first boot of a new image (another kernel,
//! command line or root hash) finds them unusable and the daemon starts degraded: every
//! live secret is locked away, by design. An upgrade therefore drains first: an operator
//! lists what is live (`GET /v1/admin/upgrade`), destroys or finishes it, and authorizes
//! the upgrade (`POST`, refused while an instance is live unless `force`). The
//! authorization is a file in the state directory; while it stands no instance is created.
//! The next start whose platform state does not satisfy the sealing policy then seals
//! afresh ([`reprovision_if_authorized`]) — evicts the statement key, undefines the
//! sealing index, removes the authorization — and starts as on first use: a new sealing
//! key and statement key bound to the new image, named in the new `daemon_started`. A
//! start in the old state (an aborted upgrade) changes nothing.

use std::path::{Path, PathBuf};

use arbiter_proto::InstanceState;
use arbiter_proto::api::{AuthorizeUpgrade, LiveInstance, UpgradeAuthorization, UpgradeStatus};

use super::{Engine, EngineError, StartError, now};
use crate::store::{Store, StoreError, queries};
use crate::tpm::Tpm;

const FILE: &str = "upgrade-authorized.json";

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// The authorization in force in `state_dir`, if any. A file that does not parse is an
/// error: it must never be taken for an authorization, nor silently dropped.
pub(crate) fn authorization(state_dir: &Path) -> Result<Option<UpgradeAuthorization>, String> {
    let p = path(state_dir);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{} does not parse: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", p.display())),
    }
}

fn remove(state_dir: &Path) -> Result<(), String> {
    match std::fs::remove_file(path(state_dir)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", path(state_dir).display())),
    }
}

/// Every instance not destroyed, oldest first.
pub(crate) async fn live_instances(store: &Store) -> Result<Vec<LiveInstance>, StoreError> {
    store
        .read(|c| -> Result<_, StoreError> {
            Ok(queries::instances_in_states(c, &InstanceState::LIVE)?
                .into_iter()
                .map(|i| LiveInstance {
                    name: serde_json::from_str::<serde_json::Value>(&i.manifest_json)
                        .ok()
                        .and_then(|m| m.get("name").and_then(|n| n.as_str()).map(str::to_owned))
                        .unwrap_or_default(),
                    state: i.state.as_str().to_owned(),
                    created_at: i.created_at,
                    id: i.id,
                })
                .collect())
        })
        .await
}

/// What [`reprovision_if_authorized`] did.
pub(crate) enum Reprovision {
    /// No upgrade is authorized: the start stays degraded.
    NotAuthorized,
    /// Authorized, but instances are live and it was not forced: the start stays
    /// degraded, with this reason added.
    Refused(String),
    /// The old state's objects were released: start again, as on first use.
    Done,
}

/// At a start whose platform state does not satisfy the sealing policy: when an operator
/// authorized an upgrade (and, unless forced, nothing is live), releases the TPM objects
/// bound to the old state so that the start can begin afresh.
pub(crate) async fn reprovision_if_authorized(
    state_dir: &Path,
    store: &Store,
    tpm: &Tpm,
) -> Result<Reprovision, StartError> {
    let Some(auth) = authorization(state_dir).map_err(StartError::Other)? else {
        return Ok(Reprovision::NotAuthorized);
    };
    let live = live_instances(store).await?;
    if !live.is_empty() && !auth.forced {
        // Created after the authorization was checked: keep their secrets (boot the old
        // image again to finish them).
        return Ok(Reprovision::Refused(format!(
            "an upgrade was authorized by {} at {}, but {} instance(s) are live ({}): \
             not sealing afresh; boot the previous image, finish or destroy them and \
             authorize again",
            auth.by,
            auth.at,
            live.len(),
            live.iter()
                .map(|i| i.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    // Statement key first: a crash after it leaves the index bound to the old state, so
    // the next start comes here again; the authorization goes last.
    tpm.evict_statement_key().await?;
    tpm.undefine_sealing_index().await?;
    remove(state_dir).map_err(StartError::Other)?;
    tracing::warn!(
        event = "sealing_reprovisioned",
        authorized_by = %auth.by,
        authorized_at = %auth.at,
        forced = auth.forced,
        live = live.len(),
        "the platform state changed after an authorized upgrade: the sealing index and the \
         statement key bound to the previous boot chain were released; sealing afresh"
    );
    Ok(Reprovision::Done)
}

impl Engine {
    fn require_operator(&self, caller: &str) -> Result<(), EngineError> {
        if self.config().is_operator(caller) {
            Ok(())
        } else {
            Err(EngineError::Forbidden(format!(
                "identity {caller} is not an operator"
            )))
        }
    }

    /// `GET /v1/admin/upgrade` (operators): the live instances and the authorization.
    pub async fn upgrade_status(&self, caller: &str) -> Result<UpgradeStatus, EngineError> {
        self.require_operator(caller)?;
        Ok(UpgradeStatus {
            live_instances: live_instances(&self.store).await?,
            authorized: authorization(&self.config().state_dir).map_err(EngineError::Internal)?,
        })
    }

    /// `POST /v1/admin/upgrade` (operators): authorizes the next start in another platform
    /// state to seal afresh. Refused (409 `instances_live`) while an instance is live,
    /// unless forced.
    pub async fn authorize_upgrade(
        &self,
        caller: &str,
        request: AuthorizeUpgrade,
    ) -> Result<UpgradeStatus, EngineError> {
        self.require_operator(caller)?;
        let live = live_instances(&self.store).await?;
        if !live.is_empty() && !request.force {
            return Err(EngineError::conflict(
                "instances_live",
                format!(
                    "{} instance(s) are live ({}); an image with other measured values would \
                     lock their inputs away: finish and destroy them first, or force",
                    live.len(),
                    live.iter()
                        .map(|i| format!("{} {:?} {}", i.id, i.name, i.state))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let auth = UpgradeAuthorization {
            by: caller.to_owned(),
            at: now(),
            forced: request.force,
            live_at_authorization: live.iter().map(|i| i.id.clone()).collect(),
        };
        let bytes =
            serde_json::to_vec_pretty(&auth).map_err(|e| EngineError::Internal(e.to_string()))?;
        crate::keylime::identity::write_private(&path(&self.config().state_dir), &bytes)
            .map_err(EngineError::Internal)?;
        tracing::warn!(
            event = "upgrade_authorized",
            identity = caller,
            forced = request.force,
            live = live.len(),
            "upgrade authorized: no new instances; the next start in another platform state \
             seals afresh"
        );
        Ok(UpgradeStatus {
            live_instances: live,
            authorized: Some(auth),
        })
    }

    /// `DELETE /v1/admin/upgrade` (operators): withdraws the authorization.
    pub async fn withdraw_upgrade(&self, caller: &str) -> Result<UpgradeStatus, EngineError> {
        self.require_operator(caller)?;
        let state_dir = &self.config().state_dir;
        let withdrawn = authorization(state_dir).map_err(EngineError::Internal)?;
        remove(state_dir).map_err(EngineError::Internal)?;
        if withdrawn.is_some() {
            tracing::warn!(
                event = "upgrade_withdrawn",
                identity = caller,
                "upgrade authorization withdrawn"
            );
        }
        Ok(UpgradeStatus {
            live_instances: live_instances(&self.store).await?,
            authorized: withdrawn,
        })
    }

    /// Refuses an instance creation while an upgrade is authorized (409 `upgrade_pending`).
    pub(crate) fn refuse_while_upgrading(&self) -> Result<(), EngineError> {
        match authorization(&self.config().state_dir).map_err(EngineError::Internal)? {
            None => Ok(()),
            Some(a) => Err(EngineError::conflict(
                "upgrade_pending",
                format!(
                    "an upgrade was authorized by {} at {}: no new instances until it is done \
                     or withdrawn (DELETE /v1/admin/upgrade)",
                    a.by, a.at
                ),
            )),
        }
    }
}
