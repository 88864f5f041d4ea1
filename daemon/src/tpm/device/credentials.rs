//! Credentials: `TPM2_ActivateCredential`, which proves to an enrolling verifier that the AK
//! lives in the same TPM as an EK.

use tss_esapi::{
    abstraction::AsymmetricAlgorithmSelection,
    constants::SessionType,
    handles::{AuthHandle, KeyHandle, ObjectHandle, SessionHandle},
    interface_types::{
        algorithm::HashingAlgorithm,
        ecc::EccCurve,
        key_bits::RsaKeyBits,
        session_handles::{AuthSession, PolicySession},
    },
    structures::{EncryptedSecret, IdObject, SymmetricDefinition},
};
use zeroize::Zeroizing;

use super::Device;
use crate::tpm::EkAlgorithm;
use crate::tpm::error::{TpmError, command};

impl Device {
    /// `TPM2_ActivateCredential`: proves to an enrolling verifier that the AK lives in the
    /// same TPM as the EK of `alg`. The blob and secret come from MakeCredential with that
    /// EK and the AK's name, as size-prefixed `TPM2B_ID_OBJECT` and
    /// `TPM2B_ENCRYPTED_SECRET`. Returns the credential.
    pub fn activate_credential(
        &mut self,
        alg: EkAlgorithm,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let blob = IdObject::try_from(strip_tpm2b("credential_blob", credential_blob)?)
            .map_err(command("ActivateCredential (credential_blob)"))?;
        let secret = EncryptedSecret::try_from(strip_tpm2b("encrypted_secret", encrypted_secret)?)
            .map_err(command("ActivateCredential (encrypted_secret)"))?;
        let selection = match alg {
            EkAlgorithm::Rsa2048 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            EkAlgorithm::EccNistP384 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP384),
        };
        let ak = self.ak;
        let ek = self.load_ek(alg, selection)?;
        // The EK templates' policy is PolicySecret(TPM_RH_ENDORSEMENT), in the EK's name
        // algorithm: SHA-256 for RSA-2048 (L-1), SHA-384 for P-384 (H-3).
        let hash = match alg {
            EkAlgorithm::Rsa2048 => HashingAlgorithm::Sha256,
            EkAlgorithm::EccNistP384 => HashingAlgorithm::Sha384,
        };
        if alg == EkAlgorithm::EccNistP384 {
            // High-range templates (H-3) set userWithAuth: the EK's empty auth value works.
            let result = self
                .ctx
                .execute_with_sessions(
                    (
                        Some(AuthSession::Password),
                        Some(AuthSession::Password),
                        None,
                    ),
                    |ctx| ctx.activate_credential(ak, ek, blob, secret),
                )
                .map_err(command("ActivateCredential"));
            self.flush(ObjectHandle::from(ek));
            return Ok(Zeroizing::new(result?.value().to_vec()));
        }
        let session = self
            .ctx
            .execute_without_session(|ctx| {
                ctx.start_auth_session(
                    None,
                    None,
                    None,
                    SessionType::Policy,
                    SymmetricDefinition::Null,
                    hash,
                )
            })
            .map_err(command("StartAuthSession"));
        let session = match session {
            Ok(Some(s)) => s,
            Ok(None) | Err(_) => {
                self.flush(ObjectHandle::from(ek));
                return Err(TpmError::Command {
                    op: "StartAuthSession",
                    detail: "no policy session for the EK".into(),
                });
            }
        };
        let result = (|| {
            let policy = PolicySession::try_from(session).map_err(command("StartAuthSession"))?;
            self.ctx
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.policy_secret(
                        policy,
                        AuthHandle::Endorsement,
                        Default::default(),
                        Default::default(),
                        Default::default(),
                        None,
                    )
                })
                .map_err(command("PolicySecret(endorsement)"))?;
            self.ctx
                .execute_with_sessions((Some(AuthSession::Password), Some(session), None), |ctx| {
                    ctx.activate_credential(ak, ek, blob, secret)
                })
                .map_err(command("ActivateCredential"))
        })();
        self.flush(ObjectHandle::from(SessionHandle::from(session)));
        self.flush(ObjectHandle::from(ek));
        Ok(Zeroizing::new(result?.value().to_vec()))
    }
}

impl Device {
    /// The EK of `alg` loaded in a transient slot (the caller flushes it): from its context
    /// saved on this connection when there is one, else created (`TPM2_CreatePrimary`,
    /// seconds on a discrete TPM) and its context saved for the next activation. A saved
    /// context that no longer loads (the TPM started up since) is dropped and the EK
    /// created again; one that still loads is the same key, since an EK is derived from the
    /// endorsement seed and its template alone.
    fn load_ek(
        &mut self,
        alg: EkAlgorithm,
        selection: AsymmetricAlgorithmSelection,
    ) -> Result<KeyHandle, TpmError> {
        if let Some(i) = self.ek_contexts.iter().position(|(a, _)| *a == alg) {
            let saved = self.ek_contexts[i].1.clone();
            match self
                .ctx
                .execute_without_session(|ctx| ctx.context_load(saved))
            {
                Ok(handle) => return Ok(KeyHandle::from(handle)),
                Err(e) => {
                    tracing::debug!(
                        ek = alg.as_str(),
                        error = ?e,
                        "the EK's saved context no longer loads; creating the EK again"
                    );
                    self.ek_contexts.remove(i);
                }
            }
        }
        let ek = self.create_ek(selection)?;
        match self
            .ctx
            .execute_without_session(|ctx| ctx.context_save(ObjectHandle::from(ek)))
        {
            Ok(saved) => self.ek_contexts.push((alg, saved)),
            // Not fatal: the next activation creates the EK again.
            Err(e) => {
                tracing::debug!(ek = alg.as_str(), error = ?e, "ContextSave of the EK failed")
            }
        }
        Ok(ek)
    }
}

/// The body of a size-prefixed TPM2B, refusing a wrong size.
fn strip_tpm2b(what: &'static str, bytes: &[u8]) -> Result<Vec<u8>, TpmError> {
    arbiter_policy::tpm::tpm2b_body(bytes, what)
        .map(<[u8]>::to_vec)
        .map_err(|e| TpmError::Command {
            op: "ActivateCredential",
            detail: e.to_string(),
        })
}
