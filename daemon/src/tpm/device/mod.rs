//! The TPM device: one `tss_esapi::Context` and every TPM command Arbiter uses, split by
//! command family as tss-esapi splits its commands: [`handles`], [`keys`], [`sessions`],
//! [`pcr`], [`nv`] and [`credentials`].
//!
//! Only the owner thread (see `owner.rs`) holds a [`Device`]. Every transient object and
//! session created here is flushed before the method returns, success or not, because the
//! layer must work without a resource manager (swtpm offers three object slots) — with
//! one exception: the policy session of the statement key's signatures stays loaded from
//! one signature to the next (starting and flushing one cost as much as the signature
//! itself), is flushed after any failure, and when the device is dropped.

mod credentials;
mod handles;
mod keys;
mod nv;
mod pcr;
mod sessions;

use std::str::FromStr;

use arbiter_policy::Public as PolicyPublic;
use tss_esapi::{Context, TctiNameConf, handles::KeyHandle, traits::Marshall};

use crate::tpm::error::{TpmError, command, describe};
use crate::tpm::{EndorsementKey, KeyInfo, TpmConfig};

/// An open TPM with the attestation key ready.
pub struct Device {
    ctx: Context,
    config: TpmConfig,
    ak: KeyHandle,
    ak_info: Option<KeyInfo>,
    /// The statement key's ESYS handle, once [`Device::ensure_statement_key`] checked it.
    statement_key: Option<KeyHandle>,
    eks: Option<Vec<EndorsementKey>>,
    /// Saved contexts (`TPM2_ContextSave`) of the EKs created for credential activation,
    /// kept for this connection: loaded per activation instead of re-created, so no
    /// transient slot stays taken between activations.
    ek_contexts: Vec<(crate::tpm::EkAlgorithm, tss_esapi::utils::TpmsContext)>,
    /// The statement key was created since the owner thread last asked.
    statement_key_created: bool,
    /// The policy session kept for the statement key's signatures (`sessions.rs`).
    signing_session: Option<tss_esapi::interface_types::session_handles::AuthSession>,
    /// Policy sessions started on this connection (diagnostics).
    policy_sessions_started: u64,
}

impl Drop for Device {
    fn drop(&mut self) {
        self.drop_signing_session();
    }
}

impl Device {
    /// Opens the TPM named by the configuration's TCTI, flushes what a crashed process may
    /// have left loaded, and makes sure the attestation key is persisted.
    pub fn open(config: &TpmConfig) -> Result<Self, TpmError> {
        config.validate()?;
        let tcti = TctiNameConf::from_str(&config.tcti).map_err(|e| TpmError::InvalidTcti {
            tcti: config.tcti.clone(),
            detail: describe(&e),
        })?;
        let ctx = Context::new(tcti).map_err(|e| TpmError::Open {
            tcti: config.tcti.clone(),
            detail: describe(&e),
        })?;
        let mut device = Self {
            ctx,
            config: config.clone(),
            ak: KeyHandle::Null,
            ak_info: None,
            statement_key: None,
            eks: None,
            ek_contexts: Vec::new(),
            statement_key_created: false,
            signing_session: None,
            policy_sessions_started: 0,
        };
        device.flush_leftovers()?;
        let (ak, ak_info) = device.ensure_attestation_key()?;
        device.ak = ak;
        device.ak_info = Some(ak_info);
        Ok(device)
    }

    /// Whether the statement key was created since the last call (and resets it).
    pub(crate) fn take_statement_key_created(&mut self) -> bool {
        std::mem::take(&mut self.statement_key_created)
    }

    /// How many policy sessions this connection started: one per signature would mean the
    /// signing session is not being kept (diagnostics and tests).
    pub fn policy_sessions_started(&self) -> u64 {
        self.policy_sessions_started
    }

    /// The configuration this device was opened with.
    pub fn config(&self) -> &TpmConfig {
        &self.config
    }
}

/// Size-prefixes a marshalled structure (TPM2B).
pub(super) fn tpm2b(body: &[u8]) -> Result<Vec<u8>, TpmError> {
    arbiter_policy::tpm::tpm2b(body, "marshalled structure").map_err(|e| TpmError::Command {
        op: "marshalling",
        detail: e.to_string(),
    })
}

/// Converts tss-esapi's public area to the policy crate's parsed form (exact TPM bytes).
pub(super) fn to_policy_public(
    public: &tss_esapi::structures::Public,
) -> Result<PolicyPublic, TpmError> {
    let bytes = public
        .marshall()
        .map_err(command("marshalling TPMT_PUBLIC"))?;
    Ok(PolicyPublic::from_tpmt(&bytes)?)
}
