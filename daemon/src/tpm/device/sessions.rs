//! Sessions: policy sessions (PolicyPCR, optionally salted for parameter encryption), the TPM's
//! own policy digest, and the mapping of policy failures to
//! [`TpmError::PolicyNotSatisfied`].

use arbiter_policy::PcrSelection;
use tss_esapi::{
    Context,
    attributes::SessionAttributesBuilder,
    constants::{CommandCode, SessionType},
    handles::{ObjectHandle, SessionHandle},
    interface_types::{
        algorithm::HashingAlgorithm,
        resource_handles::Hierarchy,
        session_handles::{AuthSession, PolicySession},
    },
    structures::{Digest, SymmetricDefinition},
};

use super::{Device, pcr::selection_list};
use crate::tpm::error::{RC_PCR_CHANGED, RC_POLICY_FAIL, TpmError, command, describe, is_rc};
use crate::tpm::templates;

impl Device {
    /// Starts a policy session (salted with a transient SRK when `salt` asks for parameter
    /// encryption), runs PolicyPCR over `selection` with the PCRs' current values, hands
    /// the session to `f`, and flushes it whatever happens.
    pub(super) fn with_policy_session<T>(
        &mut self,
        encryption: Option<ParameterEncryption>,
        selection: &PcrSelection,
        f: impl FnOnce(&mut Context, PolicySession) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        let salt = match encryption {
            Some(_) => {
                let template = templates::salt_key()?;
                let created = self
                    .ctx
                    .execute_with_session(Some(AuthSession::Password), |ctx| {
                        ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
                    })
                    .map_err(command("CreatePrimary (salt key)"))?;
                Some(created.key_handle)
            }
            None => None,
        };
        let symmetric = match encryption {
            Some(_) => SymmetricDefinition::AES_128_CFB,
            None => SymmetricDefinition::Null,
        };
        let started = self.start_policy_session(salt, symmetric);
        if let Some(salt) = salt {
            self.flush(ObjectHandle::from(salt));
        }
        let session = started?;
        let result = (|| {
            let policy = PolicySession::try_from(session).map_err(command("StartAuthSession"))?;
            if let Some(direction) = encryption {
                let builder = SessionAttributesBuilder::new().with_continue_session(true);
                let builder = match direction {
                    ParameterEncryption::Command => builder.with_decrypt(true),
                    ParameterEncryption::Response => builder.with_encrypt(true),
                };
                let (attributes, mask) = builder.build();
                self.ctx
                    .tr_sess_set_attributes(session, attributes, mask)
                    .map_err(command("TR_SetSessionAttributes"))?;
            }
            self.policy_pcr_then(policy, selection, f)
        })();
        self.flush(ObjectHandle::from(SessionHandle::from(session)));
        result
    }

    /// `TPM2_StartAuthSession` of a policy session (SHA-256), salted with `salt` if given.
    fn start_policy_session(
        &mut self,
        salt: Option<tss_esapi::handles::KeyHandle>,
        symmetric: SymmetricDefinition,
    ) -> Result<AuthSession, TpmError> {
        let started = self.ctx.execute_without_session(|ctx| {
            ctx.start_auth_session(
                salt,
                None,
                None,
                SessionType::Policy,
                symmetric,
                HashingAlgorithm::Sha256,
            )
        });
        let session = started
            .map_err(command("StartAuthSession"))?
            .ok_or(TpmError::Command {
                op: "StartAuthSession",
                detail: "the TPM returned no session".into(),
            })?;
        self.policy_sessions_started += 1;
        Ok(session)
    }

    /// Runs `f` in the policy session kept for signatures, after PolicyPCR over
    /// `selection`. The session stays loaded: a command it authorises, when it succeeds,
    /// resets its policy (TPM 2.0 Part 1, policy sessions with `continueSession`), so the
    /// next signature starts from an empty policy again without a new session. After any
    /// failure the session is flushed (its policy may hold half a run) and, when it was
    /// a kept one, `f` runs once more in a new session: a session the TPM lost meanwhile
    /// (flushed from outside, a restart the connection survived) costs no signature.
    /// Neither a lost connection nor an unsatisfied policy is tried again.
    pub(super) fn with_signing_session<T>(
        &mut self,
        selection: &PcrSelection,
        mut f: impl FnMut(&mut Context, PolicySession) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        let kept = self.signing_session.is_some();
        match self.signing_session_run(selection, &mut f) {
            // Not after a lost connection (the next job reopens it) nor a policy the
            // platform no longer satisfies (a new session would not either).
            Err(e)
                if kept
                    && !e.is_connection_lost()
                    && !matches!(e, TpmError::PolicyNotSatisfied { .. }) =>
            {
                self.signing_session_run(selection, &mut f)
            }
            done => done,
        }
    }

    fn signing_session_run<T>(
        &mut self,
        selection: &PcrSelection,
        f: &mut impl FnMut(&mut Context, PolicySession) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        let session = match self.signing_session {
            Some(session) => session,
            None => {
                let session = self.start_policy_session(None, SymmetricDefinition::Null)?;
                self.signing_session = Some(session);
                let (attributes, mask) = SessionAttributesBuilder::new()
                    .with_continue_session(true)
                    .build();
                if let Err(e) = self.ctx.tr_sess_set_attributes(session, attributes, mask) {
                    self.drop_signing_session();
                    return Err(command("TR_SetSessionAttributes")(e));
                }
                session
            }
        };
        let result = PolicySession::try_from(session)
            .map_err(command("StartAuthSession"))
            .and_then(|policy| self.policy_pcr_then(policy, selection, &mut *f));
        if result.is_err() {
            self.drop_signing_session();
        }
        result
    }

    /// Runs PolicyPCR over `selection` (the PCRs' current values) in `policy`, then `f`.
    fn policy_pcr_then<T>(
        &mut self,
        policy: PolicySession,
        selection: &PcrSelection,
        f: impl FnOnce(&mut Context, PolicySession) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        let list = selection_list(selection)?;
        self.ctx
            .execute_without_session(|ctx| ctx.policy_pcr(policy, Digest::default(), list))
            .map_err(command("PolicyPCR"))?;
        f(&mut self.ctx, policy)
    }

    /// Flushes the kept signing session, if there is one.
    pub(super) fn drop_signing_session(&mut self) {
        if let Some(session) = self.signing_session.take() {
            self.flush(ObjectHandle::from(SessionHandle::from(session)));
        }
    }

    /// Runs a trial-free policy digest check: the digest a real policy session reaches after
    /// PolicyPCR over `selection` (and optionally PolicyCommandCode and PolicyAuthValue), as
    /// the TPM computes it. Used to prove the software digests equal the TPM's.
    pub fn tpm_policy_digest(
        &mut self,
        selection: &PcrSelection,
        command_code: Option<u32>,
        auth_value: bool,
    ) -> Result<Vec<u8>, TpmError> {
        self.with_policy_session(None, selection, |ctx, session| {
            if let Some(cc) = command_code {
                let cc = CommandCode::try_from(cc).map_err(command("PolicyCommandCode"))?;
                ctx.execute_without_session(|ctx| ctx.policy_command_code(session, cc))
                    .map_err(command("PolicyCommandCode"))?;
            }
            if auth_value {
                ctx.execute_without_session(|ctx| ctx.policy_auth_value(session))
                    .map_err(command("PolicyAuthValue"))?;
            }
            let digest = ctx
                .execute_without_session(|ctx| ctx.policy_get_digest(session))
                .map_err(command("PolicyGetDigest"))?;
            Ok(digest.value().to_vec())
        })
    }
}

/// Which direction a salted session encrypts.
#[derive(Debug, Clone, Copy)]
pub(super) enum ParameterEncryption {
    /// The command's first parameter (TPMA_SESSION decrypt), e.g. NV_Write's data.
    Command,
    /// The response's first parameter (TPMA_SESSION encrypt), e.g. NV_Read's data.
    Response,
}

/// Maps a policy-authorised command's failure: policy failures become
/// [`TpmError::PolicyNotSatisfied`].
pub(super) fn policy_error(
    object: &'static str,
    selection: &PcrSelection,
    op: &'static str,
    e: tss_esapi::Error,
) -> TpmError {
    if is_rc(&e, RC_POLICY_FAIL) || is_rc(&e, RC_PCR_CHANGED) {
        TpmError::PolicyNotSatisfied {
            object,
            pcrs: selection.pcrs(),
            detail: describe(&e),
        }
    } else {
        command(op)(e)
    }
}
