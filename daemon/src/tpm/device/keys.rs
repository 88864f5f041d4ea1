//! Keys: the attestation key, the PCR-bound statement key (creation, template checks,
//! `Certify`, `Sign`) and the endorsement keys with their certificates.

use arbiter_policy::{
    EcdsaSignature, PcrValues, PolicyDigest, Public as PolicyPublic, PublicKey, tpm::TPM_CC_SIGN,
};
use tss_esapi::{
    abstraction::{AsymmetricAlgorithmSelection, ek},
    constants::tss::TPM2_ST_HASHCHECK,
    constants::{CommandCode, tss::TPM2_RH_NULL},
    handles::{KeyHandle, ObjectHandle, PersistentTpmHandle},
    interface_types::{
        dynamic_handles::Persistent,
        ecc::EccCurve,
        key_bits::RsaKeyBits,
        resource_handles::{Hierarchy, Provision},
        session_handles::AuthSession,
    },
    structures::{Data, Digest, HashcheckTicket, SignatureScheme},
    traits::Marshall,
    tss2_esys::TPMT_TK_HASHCHECK,
};

use super::{Device, sessions::policy_error, to_policy_public, tpm2b};
use crate::tpm::error::{TpmError, command, retry_busy};
use crate::tpm::{Certification, EkAlgorithm, EndorsementKey, KeyInfo, templates};

impl Device {
    /// Makes sure the attestation key exists at its persistent handle with exactly the
    /// expected template, creating it on first use.
    pub(super) fn ensure_attestation_key(&mut self) -> Result<(KeyHandle, KeyInfo), TpmError> {
        let handle = self.config.ak_handle;
        let template = templates::attestation_key()?;
        let expected = to_policy_public(&template)?;
        let legacy = to_policy_public(&templates::attestation_key_da_protected()?)?;
        if !self.persistent_exists(handle)? {
            self.create_persistent(template, handle)?;
        }
        let (key, public, name) = self.persistent(handle)?.ok_or(TpmError::Missing {
            object: "attestation key",
            handle,
        })?;
        check_template_or_legacy("attestation key", handle, &expected, &legacy, &public)?;
        Ok((key, KeyInfo::new(handle, public, name)?))
    }

    /// The attestation key.
    pub fn attestation_key(&self) -> Result<&KeyInfo, TpmError> {
        self.ak_info.as_ref().ok_or(TpmError::Missing {
            object: "attestation key",
            handle: self.config.ak_handle,
        })
    }

    /// The policy digest for objects sealed to the platform PCRs' current values.
    pub(super) fn platform_policy(&mut self) -> Result<(PolicyDigest, PcrValues), TpmError> {
        let selection = self.config.platform_selection()?;
        let values = self.pcr_read(&selection)?;
        let digest = PolicyDigest::new().pcr(&selection, &values)?;
        Ok((digest, values))
    }

    /// The statement key's expected `authPolicy` for the current platform PCR values.
    pub fn statement_key_policy(&mut self) -> Result<PolicyDigest, TpmError> {
        Ok(self.platform_policy()?.0.command_code(TPM_CC_SIGN))
    }

    /// Makes sure the statement key exists, bound to the current platform state, creating it
    /// on first use. An existing key bound to other PCR values is refused: the platform
    /// changed since it was created.
    pub fn ensure_statement_key(&mut self) -> Result<KeyInfo, TpmError> {
        let handle = self.config.statement_key_handle;
        let policy = self.statement_key_policy()?;
        let template = templates::statement_key(&policy)?;
        let expected = to_policy_public(&template)?;
        let legacy = to_policy_public(&templates::statement_key_da_protected(&policy)?)?;
        // One ESYS object per TPM object: two ESYS handles for the same persistent key,
        // one of them closed, break later commands on the other (tss-esapi 7.7).
        let (key, public, name) = match self.statement_key {
            Some(key) => {
                let (public, name, _) = self
                    .ctx
                    .execute_without_session(|ctx| ctx.read_public(key))
                    .map_err(command("ReadPublic"))?;
                (key, to_policy_public(&public)?, name.value().to_vec())
            }
            None => {
                if !self.persistent_exists(handle)? {
                    self.create_persistent(template, handle)?;
                    self.statement_key_created = true;
                }
                self.persistent(handle)?.ok_or(TpmError::Missing {
                    object: "statement key",
                    handle,
                })?
            }
        };
        self.statement_key = None;
        let mut key_object = ObjectHandle::from(key);
        let checked = self.check_statement_key(handle, &expected, &legacy, public, name);
        if checked.is_ok() {
            self.statement_key = Some(key);
        } else {
            self.close(&mut key_object);
        }
        checked
    }

    /// The existing statement key as it is, for a degraded daemon (docs/protocol.md) to publish with
    /// the TPM's public parts: like [`Device::ensure_statement_key`], but a key bound to
    /// other platform PCR values than the current ones is accepted (its template otherwise
    /// exact). Safe: the TPM itself refuses every signature until the platform is back in
    /// that state, and a verifier checks the published policy against the PCRs it appraised.
    /// Never creates a key.
    pub fn statement_key_as_is(&mut self) -> Result<KeyInfo, TpmError> {
        let handle = self.config.statement_key_handle;
        let policy = self.statement_key_policy()?;
        let expected = to_policy_public(&templates::statement_key(&policy)?)?;
        let legacy = to_policy_public(&templates::statement_key_da_protected(&policy)?)?;
        let (key, public, name) = match self.statement_key {
            Some(key) => {
                let (public, name, _) = self
                    .ctx
                    .execute_without_session(|ctx| ctx.read_public(key))
                    .map_err(command("ReadPublic"))?;
                (key, to_policy_public(&public)?, name.value().to_vec())
            }
            None => self.persistent(handle)?.ok_or(TpmError::Missing {
                object: "statement key",
                handle,
            })?,
        };
        self.statement_key = None;
        let mut key_object = ObjectHandle::from(key);
        let checked = match self.check_statement_key(
            handle,
            &expected,
            &legacy,
            public.clone(),
            name.clone(),
        ) {
            Err(TpmError::PolicyNotSatisfied { .. }) => KeyInfo::new(handle, public, name),
            other => other,
        };
        if checked.is_ok() {
            self.statement_key = Some(key);
        } else {
            self.close(&mut key_object);
        }
        checked
    }

    /// Checks the statement key against `expected` (or `legacy`, the same template without
    /// noDA); one that differs only in its PolicyPCR values is `PolicyNotSatisfied`.
    fn check_statement_key(
        &self,
        handle: u32,
        expected: &PolicyPublic,
        legacy: &PolicyPublic,
        public: PolicyPublic,
        name: Vec<u8>,
    ) -> Result<KeyInfo, TpmError> {
        if public.auth_policy() != expected.auth_policy()
            && (same_template_except_policy(expected, &public)
                || same_template_except_policy(legacy, &public))
        {
            return Err(TpmError::PolicyNotSatisfied {
                object: "statement key",
                pcrs: self.config.platform_pcrs.clone(),
                detail: "its authPolicy is PolicyPCR over other platform PCR values".into(),
            });
        }
        check_template_or_legacy("statement key", handle, expected, legacy, &public)?;
        KeyInfo::new(handle, public, name)
    }

    /// Removes the persistent statement key, if present (`TPM2_EvictControl`, owner
    /// authorization).
    pub fn evict_statement_key(&mut self) -> Result<(), TpmError> {
        let handle = self.config.statement_key_handle;
        if let Some(key) = self.statement_key.take() {
            self.close(&mut ObjectHandle::from(key));
        }
        let Some((key, _, _)) = self.persistent(handle)? else {
            return Ok(());
        };
        let persistent = PersistentTpmHandle::new(handle).map_err(|e| {
            TpmError::Config(format!("{handle:#x} is not a persistent handle: {e}"))
        })?;
        let object = ObjectHandle::from(key);
        let result = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.evict_control(Provision::Owner, object, Persistent::Persistent(persistent))
            });
        match result {
            Ok(mut gone) => {
                self.close(&mut gone);
                Ok(())
            }
            Err(e) => {
                let mut object = object;
                self.close(&mut object);
                Err(command("EvictControl")(e))
            }
        }
    }

    /// The statement key, checked by [`Device::ensure_statement_key`] on this connection.
    fn statement_key_handle(&mut self) -> Result<KeyHandle, TpmError> {
        match self.statement_key {
            Some(key) => Ok(key),
            None => {
                self.ensure_statement_key()?;
                self.statement_key.ok_or(TpmError::Missing {
                    object: "statement key",
                    handle: self.config.statement_key_handle,
                })
            }
        }
    }

    /// Certifies the statement key with the attestation key (`TPM2_Certify`), binding
    /// `qualifying_data`.
    pub fn certify_statement_key(
        &mut self,
        qualifying_data: &[u8],
    ) -> Result<Certification, TpmError> {
        let key = self.statement_key_handle()?;
        let ak = self.ak;
        let data = Data::try_from(qualifying_data.to_vec()).map_err(command("Certify"))?;
        // The certified key is authorised in its ADMIN role (adminWithPolicy clear, empty
        // auth value), the AK in its USER role (userWithAuth): two password sessions.
        let result = self.ctx.execute_with_sessions(
            (
                Some(AuthSession::Password),
                Some(AuthSession::Password),
                None,
            ),
            |ctx| ctx.certify(ObjectHandle::from(key), ak, data, SignatureScheme::Null),
        );
        let (attest, signature) = result.map_err(command("Certify"))?;
        Ok(Certification {
            attest: attest
                .marshall()
                .map_err(command("marshalling TPMS_ATTEST"))?,
            signature: signature
                .marshall()
                .map_err(command("marshalling TPMT_SIGNATURE"))?,
        })
    }

    /// Signs a SHA-256 digest with the statement key through its policy session
    /// (PolicyPCR over the platform set, then PolicyCommandCode(Sign)). Refused with
    /// [`TpmError::PolicyNotSatisfied`] when the platform PCRs changed.
    pub fn sign(&mut self, digest: &[u8; 32]) -> Result<EcdsaSignature, TpmError> {
        let key = self.statement_key_handle()?;
        let selection = self.config.platform_selection()?;
        let result = self.with_signing_session(&selection, |ctx, session| {
            ctx.policy_command_code(session, CommandCode::Sign)
                .map_err(command("PolicyCommandCode"))?;
            let validation = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
                tag: TPM2_ST_HASHCHECK,
                hierarchy: TPM2_RH_NULL,
                digest: Default::default(),
            })
            .map_err(command("Sign"))?;
            let digest = Digest::try_from(digest.to_vec()).map_err(command("Sign"))?;
            retry_busy(|| {
                ctx.execute_with_session(Some(AuthSession::from(session)), |ctx| {
                    ctx.sign(
                        key,
                        digest.clone(),
                        SignatureScheme::Null,
                        validation.clone(),
                    )
                })
            })
            .map_err(|e| policy_error("statement key", &selection, "Sign", e))
        });
        let signature = result?;
        let bytes = signature
            .marshall()
            .map_err(command("marshalling TPMT_SIGNATURE"))?;
        Ok(EcdsaSignature::parse(&bytes)?)
    }

    /// Creates the EK of the TCG default template for `selection` (a password session:
    /// the endorsement hierarchy's auth is empty on an appliance; tss-esapi's helper uses a
    /// one-shot HMAC session whose stale tracking breaks later commands).
    pub(super) fn create_ek(
        &mut self,
        selection: AsymmetricAlgorithmSelection,
    ) -> Result<KeyHandle, TpmError> {
        let template = ek::create_ek_public_from_default_template_2(selection, None)
            .map_err(command("EK template"))?;
        Ok(self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
            })
            .map_err(command("CreatePrimary (EK)"))?
            .key_handle)
    }

    /// Each endorsement key whose certificate is in NV (RSA-2048 at 0x01c00002, ECC P-384
    /// at 0x01c00016), with its public area from the TCG default template; an RSA-2048 EK
    /// without certificate when the TPM has none. Cached per connection.
    pub fn endorsement_keys(&mut self) -> Result<Vec<EndorsementKey>, TpmError> {
        if let Some(eks) = &self.eks {
            return Ok(eks.clone());
        }
        let mut eks = Vec::new();
        for alg in [EkAlgorithm::Rsa2048, EkAlgorithm::EccNistP384] {
            let selection = match alg {
                EkAlgorithm::Rsa2048 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
                EkAlgorithm::EccNistP384 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP384),
            };
            let cert = self.read_nv_if_present(alg.certificate_index())?;
            if cert.is_none() && (alg != EkAlgorithm::Rsa2048 || !eks.is_empty()) {
                continue;
            }
            let key = self.create_ek(selection)?;
            let read = self.ctx.execute_without_session(|ctx| ctx.read_public(key));
            self.flush(ObjectHandle::from(key));
            let (public, _, _) = read.map_err(command("ReadPublic (EK)"))?;
            let tpmt = public
                .marshall()
                .map_err(command("marshalling TPMT_PUBLIC"))?;
            eks.push(EndorsementKey {
                alg,
                tpm2b_public: tpm2b(&tpmt)?,
                cert_der: cert,
            });
        }
        self.eks = Some(eks.clone());
        Ok(eks)
    }
}

/// The bytes of a public area before its `unique` field: type, nameAlg, attributes,
/// authPolicy and parameters — what a template fixes.
fn template_bytes(public: &PolicyPublic) -> &[u8] {
    let unique = match public.key() {
        PublicKey::Ecc { x, y, .. } => 4 + x.len() + y.len(),
        PublicKey::Rsa { modulus, .. } => 2 + modulus.len(),
    };
    let bytes = public.tpmt_bytes();
    &bytes[..bytes.len().saturating_sub(unique)]
}

fn same_template_except_policy(expected: &PolicyPublic, actual: &PolicyPublic) -> bool {
    expected.object_type() == actual.object_type()
        && expected.name_alg() == actual.name_alg()
        && expected.attributes() == actual.attributes()
}

/// Accepts `actual` when it has the `expected` template or the `legacy` one (the same
/// without noDA: a key created by an earlier release stays, so its name — which parties
/// pin for the AK — survives an upgrade); otherwise refuses it, naming what differs from
/// `expected`.
fn check_template_or_legacy(
    object: &'static str,
    handle: u32,
    expected: &PolicyPublic,
    legacy: &PolicyPublic,
    actual: &PolicyPublic,
) -> Result<(), TpmError> {
    if template_bytes(legacy) == template_bytes(actual) {
        tracing::warn!(
            event = "key_da_protected",
            object,
            handle = format_args!("{handle:#x}"),
            "the {object} at {handle:#x} was created without noDA by an earlier release: kept \
             (its name is pinned), but a power loss after its use counts as a \
             dictionary-attack failure (docs/operations.md)"
        );
        return Ok(());
    }
    check_template(object, handle, expected, actual)
}

/// Refuses an object whose template differs from the expected one, naming what differs.
fn check_template(
    object: &'static str,
    handle: u32,
    expected: &PolicyPublic,
    actual: &PolicyPublic,
) -> Result<(), TpmError> {
    if template_bytes(expected) == template_bytes(actual) {
        return Ok(());
    }
    let mut reasons = Vec::new();
    if expected.object_type() != actual.object_type() {
        reasons.push(format!(
            "type {:#06x} instead of {:#06x}",
            actual.object_type(),
            expected.object_type()
        ));
    }
    if expected.name_alg() != actual.name_alg() {
        reasons.push(format!(
            "nameAlg {:#06x} instead of {:#06x}",
            actual.name_alg(),
            expected.name_alg()
        ));
    }
    if expected.attributes() != actual.attributes() {
        reasons.push(format!(
            "attributes {:?} instead of {:?}",
            actual.attributes(),
            expected.attributes()
        ));
    }
    if expected.auth_policy() != actual.auth_policy() {
        reasons.push(format!(
            "authPolicy {} instead of {}",
            hex::encode(actual.auth_policy()),
            hex::encode(expected.auth_policy())
        ));
    }
    if reasons.is_empty() {
        reasons.push("its key parameters (curve, scheme or symmetric algorithm) differ".into());
    }
    Err(TpmError::UnexpectedObject {
        object,
        handle,
        reason: reasons.join("; "),
    })
}
