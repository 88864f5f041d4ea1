//! The TPM device: one `tss_esapi::Context` and every TPM command Arbiter uses.
//!
//! Only the owner thread (see `owner.rs`) holds a [`Device`]. Every transient object and
//! session created here is flushed before the method returns, success or not, because the
//! layer must work without a resource manager (swtpm offers three object slots).

use std::str::FromStr;
use std::thread;
use std::time::Duration;

use arbiter_policy::{
    Attest, EcdsaSignature, NvPublic, PcrSelection, PcrValues, PolicyDigest,
    Public as PolicyPublic, PublicKey, tpm::TPM_CC_SIGN,
};
use tss_esapi::{
    Context, TctiNameConf,
    abstraction::{AsymmetricAlgorithmSelection, ek, pcr},
    attributes::{NvIndexAttributesBuilder, SessionAttributesBuilder},
    constants::tss::TPM2_ST_HASHCHECK,
    constants::{CapabilityType, CommandCode, SessionType, tss::TPM2_RH_NULL},
    handles::{
        AuthHandle, KeyHandle, NvIndexHandle, NvIndexTpmHandle, ObjectHandle, PcrHandle,
        PersistentTpmHandle, SessionHandle, TpmHandle,
    },
    interface_types::{
        algorithm::HashingAlgorithm,
        dynamic_handles::Persistent,
        ecc::EccCurve,
        key_bits::RsaKeyBits,
        resource_handles::{Hierarchy, NvAuth, Provision},
        session_handles::{AuthSession, PolicySession},
    },
    structures::{
        CapabilityData, Data, Digest, DigestValues, EncryptedSecret, HashcheckTicket, IdObject,
        MaxNvBuffer, NvPublicBuilder, PcrSelectionListBuilder, PcrSlot, SignatureScheme,
        SymmetricDefinition,
    },
    traits::Marshall,
    tss2_esys::TPMT_TK_HASHCHECK,
};
use zeroize::Zeroizing;

use super::error::{
    RC_HANDLE, RC_NV_RATE, RC_NV_UNAVAILABLE, RC_PCR_CHANGED, RC_POLICY_FAIL, RC_RETRY, TpmError,
    command, describe, is_rc,
};
use super::{
    Certification, EkAlgorithm, EndorsementKey, KeyInfo, Quote, SealedKey, SealingIndex, TpmConfig,
    templates,
};

/// How often a quote is retried when the PCRs change between reading and quoting.
const QUOTE_ATTEMPTS: u32 = 5;
/// How often an NV write is retried on `TPM_RC_NV_RATE` / `TPM_RC_RETRY`.
const NV_WRITE_ATTEMPTS: u32 = 50;

/// Bytes per NV_Read (below every TPM's `MAX_NV_BUFFER_SIZE`).
const NV_CHUNK: usize = 512;

/// Handle ranges for `TPM2_GetCapability(TPM_CAP_HANDLES)`.
const TRANSIENT_FIRST: u32 = 0x8000_0000;
const LOADED_SESSION_FIRST: u32 = 0x0200_0000;
const SAVED_SESSION_FIRST: u32 = 0x0300_0000;
/// More handles than any TPM holds in one range (transient objects, sessions).
const MAX_HANDLES: u32 = 128;

/// An open TPM with the attestation key ready.
pub struct Device {
    ctx: Context,
    config: TpmConfig,
    ak: KeyHandle,
    ak_info: Option<KeyInfo>,
    /// The statement key's ESYS handle, once [`Device::ensure_statement_key`] checked it.
    statement_key: Option<KeyHandle>,
    eks: Option<Vec<EndorsementKey>>,
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
        };
        device.flush_leftovers()?;
        let (ak, ak_info) = device.ensure_attestation_key()?;
        device.ak = ak;
        device.ak_info = Some(ak_info);
        Ok(device)
    }

    /// The configuration this device was opened with.
    pub fn config(&self) -> &TpmConfig {
        &self.config
    }

    /// Flushes every transient object, loaded session and saved session in the TPM. Arbiter
    /// is the TPM's only user on an appliance, so anything there was left by a crashed
    /// process (and would exhaust swtpm's three object slots).
    fn flush_leftovers(&mut self) -> Result<(), TpmError> {
        for first in [TRANSIENT_FIRST, LOADED_SESSION_FIRST, SAVED_SESSION_FIRST] {
            for handle in self.handles(first)? {
                let object = self
                    .ctx
                    .execute_without_session(|ctx| ctx.tr_from_tpm_public(handle))
                    .map_err(command("TR_FromTPMPublic (leftover)"))?;
                self.ctx
                    .flush_context(object)
                    .map_err(command("FlushContext (leftover)"))?;
            }
        }
        Ok(())
    }

    /// Lists the handles of one `TPM_CAP_HANDLES` range: transient objects, loaded
    /// sessions or saved sessions (which the TPM reports with their session handles).
    fn handles(&mut self, first: u32) -> Result<Vec<TpmHandle>, TpmError> {
        let (data, _more) = self
            .ctx
            .execute_without_session(|ctx| {
                ctx.get_capability(CapabilityType::Handles, first, MAX_HANDLES)
            })
            .map_err(command("GetCapability(handles)"))?;
        let CapabilityData::Handles(list) = data else {
            return Err(TpmError::Command {
                op: "GetCapability(handles)",
                detail: "the TPM answered with another capability".into(),
            });
        };
        let wanted = |h: &TpmHandle| {
            let kind = u32::from(*h) >> 24;
            if first == TRANSIENT_FIRST {
                kind == 0x80
            } else {
                kind == 0x02 || kind == 0x03
            }
        };
        Ok(list.into_inner().into_iter().filter(wanted).collect())
    }

    /// The number of transient objects and loaded sessions in the TPM now (for tests and
    /// diagnostics: it must be zero between requests).
    pub fn loaded_handles(&mut self) -> Result<usize, TpmError> {
        let mut count = 0;
        for first in [TRANSIENT_FIRST, LOADED_SESSION_FIRST, SAVED_SESSION_FIRST] {
            count += self.handles(first)?.len();
        }
        Ok(count)
    }

    /// Whether a persistent object exists at `handle` (without creating an ESYS object).
    fn persistent_exists(&mut self, handle: u32) -> Result<bool, TpmError> {
        let (data, _) = self
            .ctx
            .execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, handle, 1))
            .map_err(command("GetCapability(handles)"))?;
        Ok(match data {
            CapabilityData::Handles(list) => {
                list.into_inner().first().map(|h| u32::from(*h)) == Some(handle)
            }
            _ => false,
        })
    }

    /// Reads the public area of the persistent object at `handle`, or `None` if there is
    /// none. The returned ESYS handle refers to the persistent object.
    fn persistent(
        &mut self,
        handle: u32,
    ) -> Result<Option<(KeyHandle, PolicyPublic, Vec<u8>)>, TpmError> {
        let tpm_handle = PersistentTpmHandle::new(handle).map_err(|e| {
            TpmError::Config(format!("{handle:#x} is not a persistent handle: {e}"))
        })?;
        let object = match self.ctx.execute_without_session(|ctx| {
            ctx.tr_from_tpm_public(TpmHandle::Persistent(tpm_handle))
        }) {
            Ok(object) => object,
            Err(e) if is_rc(&e, RC_HANDLE) => return Ok(None),
            Err(e) => return Err(command("ReadPublic")(e)),
        };
        let key = KeyHandle::from(object);
        let (public, name, _) = self
            .ctx
            .execute_without_session(|ctx| ctx.read_public(key))
            .map_err(command("ReadPublic"))?;
        let public = to_policy_public(&public)?;
        Ok(Some((key, public, name.value().to_vec())))
    }

    /// Creates a primary key in the endorsement hierarchy from `template` and makes it
    /// persistent at `handle`. Primary keys derive from the hierarchy seed and the
    /// template, so the same template gives the same key again.
    fn create_persistent(
        &mut self,
        template: tss_esapi::structures::Public,
        handle: u32,
    ) -> Result<(), TpmError> {
        let created = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
            })
            .map_err(command("CreatePrimary"))?;
        let transient = ObjectHandle::from(created.key_handle);
        let persistent = PersistentTpmHandle::new(handle).map_err(|e| {
            TpmError::Config(format!("{handle:#x} is not a persistent handle: {e}"))
        })?;
        let result = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.evict_control(
                    Provision::Owner,
                    transient,
                    Persistent::Persistent(persistent),
                )
            });
        self.flush(transient);
        let mut evicted = result.map_err(command("EvictControl"))?;
        self.close(&mut evicted);
        Ok(())
    }

    fn flush(&mut self, handle: ObjectHandle) {
        // Flushing can only fail if the handle is already gone (e.g. the TPM restarted);
        // there is nothing left to clean up then.
        let _ = self.ctx.flush_context(handle);
    }

    fn close(&mut self, handle: &mut ObjectHandle) {
        // Closing frees ESYS's memory for a persistent or NV handle; it fails only for an
        // already closed handle.
        let _ = self.ctx.tr_close(handle);
    }

    /// Makes sure the attestation key exists at its persistent handle with exactly the
    /// expected template, creating it on first use.
    fn ensure_attestation_key(&mut self) -> Result<(KeyHandle, KeyInfo), TpmError> {
        let handle = self.config.ak_handle;
        let template = templates::attestation_key()?;
        let expected = to_policy_public(&template)?;
        if !self.persistent_exists(handle)? {
            self.create_persistent(template, handle)?;
        }
        let (key, public, name) = self.persistent(handle)?.ok_or(TpmError::Missing {
            object: "attestation key",
            handle,
        })?;
        check_template("attestation key", handle, &expected, &public)?;
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
    fn platform_policy(&mut self) -> Result<(PolicyDigest, PcrValues), TpmError> {
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
                }
                self.persistent(handle)?.ok_or(TpmError::Missing {
                    object: "statement key",
                    handle,
                })?
            }
        };
        self.statement_key = None;
        let mut key_object = ObjectHandle::from(key);
        let checked = self.check_statement_key(handle, &expected, public, name);
        if checked.is_ok() {
            self.statement_key = Some(key);
        } else {
            self.close(&mut key_object);
        }
        checked
    }

    /// The existing statement key as it is, for a degraded daemon (SPEC §3) to publish with
    /// the TPM's public parts: like [`Device::ensure_statement_key`], but a key bound to
    /// other platform PCR values than the current ones is accepted (its template otherwise
    /// exact). Safe: the TPM itself refuses every signature until the platform is back in
    /// that state, and a verifier checks the published policy against the PCRs it appraised.
    /// Never creates a key.
    pub fn statement_key_as_is(&mut self) -> Result<KeyInfo, TpmError> {
        let handle = self.config.statement_key_handle;
        let template = templates::statement_key(&self.statement_key_policy()?)?;
        let expected = to_policy_public(&template)?;
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
        let checked =
            match self.check_statement_key(handle, &expected, public.clone(), name.clone()) {
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

    fn check_statement_key(
        &self,
        handle: u32,
        expected: &PolicyPublic,
        public: PolicyPublic,
        name: Vec<u8>,
    ) -> Result<KeyInfo, TpmError> {
        if public.auth_policy() != expected.auth_policy()
            && same_template_except_policy(expected, &public)
        {
            return Err(TpmError::PolicyNotSatisfied {
                object: "statement key",
                pcrs: self.config.platform_pcrs.clone(),
                detail: "its authPolicy is PolicyPCR over other platform PCR values".into(),
            });
        }
        check_template("statement key", handle, expected, &public)?;
        KeyInfo::new(handle, public, name)
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
        let result = self.with_policy_session(None, &selection, |ctx, session| {
            ctx.policy_command_code(session, CommandCode::Sign)
                .map_err(command("PolicyCommandCode"))?;
            let validation = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
                tag: TPM2_ST_HASHCHECK,
                hierarchy: TPM2_RH_NULL,
                digest: Default::default(),
            })
            .map_err(command("Sign"))?;
            let digest = Digest::try_from(digest.to_vec()).map_err(command("Sign"))?;
            ctx.execute_with_session(Some(AuthSession::from(session)), |ctx| {
                ctx.sign(key, digest, SignatureScheme::Null, validation)
            })
            .map_err(|e| policy_error("statement key", &selection, "Sign", e))
        });
        let signature = result?;
        let bytes = signature
            .marshall()
            .map_err(command("marshalling TPMT_SIGNATURE"))?;
        Ok(EcdsaSignature::parse(&bytes)?)
    }

    /// Starts a policy session (salted with a transient SRK when `salt` asks for parameter
    /// encryption), runs PolicyPCR over `selection` with the PCRs' current values, hands
    /// the session to `f`, and flushes it whatever happens.
    fn with_policy_session<T>(
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
        if let Some(salt) = salt {
            self.flush(ObjectHandle::from(salt));
        }
        let session = started
            .map_err(command("StartAuthSession"))?
            .ok_or(TpmError::Command {
                op: "StartAuthSession",
                detail: "the TPM returned no session".into(),
            })?;
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
            let list = selection_list(selection)?;
            self.ctx
                .execute_without_session(|ctx| ctx.policy_pcr(policy, Digest::default(), list))
                .map_err(command("PolicyPCR"))?;
            f(&mut self.ctx, policy)
        })();
        self.flush(ObjectHandle::from(SessionHandle::from(session)));
        result
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

    /// Reads the PCRs of `selection` from the SHA-256 bank (any number of them).
    pub fn pcr_read(&mut self, selection: &PcrSelection) -> Result<PcrValues, TpmError> {
        let list = selection_list(selection)?;
        let data = self
            .ctx
            .execute_without_session(|ctx| pcr::read_all(ctx, list))
            .map_err(command("PCR_Read"))?;
        let bank = data
            .pcr_bank(HashingAlgorithm::Sha256)
            .ok_or(TpmError::Command {
                op: "PCR_Read",
                detail: "the TPM returned no SHA-256 bank (is it active?)".into(),
            })?;
        let mut values = PcrValues::new();
        for (slot, digest) in bank {
            let index = u32::from(*slot).trailing_zeros() as u8;
            let value: [u8; 32] = digest.value().try_into().map_err(|_| TpmError::Command {
                op: "PCR_Read",
                detail: format!("PCR {index} is not 32 bytes long"),
            })?;
            values.insert(index, value);
        }
        if values.keys().copied().ne(selection.pcrs()) {
            return Err(TpmError::Command {
                op: "PCR_Read",
                detail: format!(
                    "asked for PCRs {:?}, the TPM returned {:?}",
                    selection.pcrs(),
                    values.keys().collect::<Vec<_>>()
                ),
            });
        }
        Ok(values)
    }

    /// Extends SHA-256 PCR `index` with `digest`: the PCR becomes SHA-256(old || digest).
    pub fn pcr_extend(&mut self, index: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
        let handle = PcrHandle::try_from(u32::from(index))
            .map_err(|_| TpmError::Config(format!("PCR {index} does not exist")))?;
        let mut values = DigestValues::new();
        values.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(digest.to_vec()).map_err(command("PCR_Extend"))?,
        );
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.pcr_extend(handle, values)
            })
            .map_err(command("PCR_Extend"))
    }

    /// Quotes `selection` with the attestation key over `qualifying_data` (at most 64
    /// bytes), returning the TPM's exact structures and the PCR values they cover. The PCRs
    /// are read before the quote and compared with its digest; on a difference (another
    /// process extended a PCR in between) it tries again, up to a few times.
    pub fn quote(
        &mut self,
        selection: &PcrSelection,
        qualifying_data: &[u8],
    ) -> Result<Quote, TpmError> {
        let ak = self.ak;
        for _ in 0..QUOTE_ATTEMPTS {
            let pcrs = self.pcr_read(selection)?;
            let data = Data::try_from(qualifying_data.to_vec()).map_err(command("Quote"))?;
            let list = selection_list(selection)?;
            let (attest, signature) = self
                .ctx
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.quote(ak, data, SignatureScheme::Null, list)
                })
                .map_err(command("Quote"))?;
            let attest = attest
                .marshall()
                .map_err(command("marshalling TPMS_ATTEST"))?;
            let signature = signature
                .marshall()
                .map_err(command("marshalling TPMT_SIGNATURE"))?;
            match arbiter_policy::verify_quote(
                &attest,
                &signature,
                &self.attestation_key()?.public,
                qualifying_data,
                &pcrs,
            ) {
                Ok(parsed) => {
                    return Ok(Quote {
                        attest,
                        signature,
                        pcrs,
                        clock: parsed.clock_info,
                    });
                }
                Err(arbiter_policy::Error::PcrDigestMismatch) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(TpmError::PcrsUnstable {
            attempts: QUOTE_ATTEMPTS,
        })
    }

    /// The TPM's clock info (reset and restart counts) from a fresh quote of the
    /// application PCR: tss-esapi 7.7 has no `TPM2_ReadClock`.
    pub fn clock(&mut self) -> Result<Attest, TpmError> {
        let selection = PcrSelection::new([self.config.application_pcr])?;
        let nonce = self.random(32)?;
        let quote = self.quote(&selection, &nonce)?;
        Ok(Attest::parse(&quote.attest)?)
    }

    /// `n` random bytes from the TPM's generator.
    pub fn random(&mut self, n: usize) -> Result<Vec<u8>, TpmError> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let want = (n - out.len()).min(32);
            let bytes = self
                .ctx
                .execute_without_session(|ctx| ctx.get_random(want))
                .map_err(command("GetRandom"))?;
            out.extend_from_slice(bytes.value());
        }
        Ok(out)
    }

    /// The sealing index's NV handle, or `None` when it is not defined.
    fn sealing_handle(&mut self) -> Result<Option<NvIndexHandle>, TpmError> {
        let index = self.config.sealing_nv_index;
        let tpm_handle = NvIndexTpmHandle::new(index)
            .map_err(|e| TpmError::Config(format!("{index:#x} is not an NV index: {e}")))?;
        match self
            .ctx
            .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::NvIndex(tpm_handle)))
        {
            Ok(object) => Ok(Some(NvIndexHandle::from(object))),
            Err(e) if is_rc(&e, RC_HANDLE) => Ok(None),
            Err(e) => Err(command("NV_ReadPublic")(e)),
        }
    }

    /// Reads the sealing index's public area as the TPM reports it, checks that our
    /// marshalling gives the name the TPM reports, and checks it against SPEC §3's exact
    /// area for the current platform PCRs (`WRITTEN` included). `Ok(None)` if undefined.
    pub fn sealing_index(&mut self) -> Result<Option<SealingIndex>, TpmError> {
        let Some(handle) = self.sealing_handle()? else {
            return Ok(None);
        };
        let checked = self.check_sealing_public(handle, NvUse::Describe);
        let mut object = ObjectHandle::from(handle);
        self.close(&mut object);
        checked.map(Some)
    }

    /// The sealing index's public area as [`Device::sealing_index`] checks it, except that
    /// its PolicyPCR digest may be over other platform PCR values than the current ones:
    /// what a degraded daemon (SPEC §3) publishes, so verifiers see what the secrets are
    /// sealed to. `Ok(None)` if undefined.
    pub fn sealing_index_as_is(&mut self) -> Result<Option<SealingIndex>, TpmError> {
        let Some(handle) = self.sealing_handle()? else {
            return Ok(None);
        };
        let checked = self.check_sealing_public(handle, NvUse::DescribeAsIs);
        let mut object = ObjectHandle::from(handle);
        self.close(&mut object);
        checked.map(Some)
    }

    /// The sealing index's handle, its public area checked for `purpose` (SPEC §3: before
    /// each use). ESYS keeps the name read here and the salted session binds it into the
    /// command's HMAC, so an index replaced between this check and the command is refused
    /// by the TPM.
    fn checked_sealing_handle(&mut self, purpose: NvUse) -> Result<NvIndexHandle, TpmError> {
        let handle = self.sealing_handle()?.ok_or(TpmError::Missing {
            object: "sealing index",
            handle: self.config.sealing_nv_index,
        })?;
        if let Err(e) = self.check_sealing_public(handle, purpose) {
            let mut object = ObjectHandle::from(handle);
            self.close(&mut object);
            return Err(e);
        }
        Ok(handle)
    }

    /// Reads the public area of the sealing index at `handle` and checks it: our
    /// marshalling gives the name the TPM reports, and the area is SPEC §3's for the current
    /// platform PCRs — `WRITTEN`, or not yet written where `purpose` allows it. Before a
    /// read or write, an area that differs only in its PolicyPCR digest means the platform
    /// changed: [`TpmError::PolicyNotSatisfied`].
    fn check_sealing_public(
        &mut self,
        handle: NvIndexHandle,
        purpose: NvUse,
    ) -> Result<SealingIndex, TpmError> {
        let (public, name) = self
            .ctx
            .execute_without_session(|ctx| ctx.nv_read_public(handle))
            .map_err(command("NV_ReadPublic"))?;
        let nv_public = to_policy_nv_public(&public)?;
        let index = self.config.sealing_nv_index;
        let unexpected = |reason: String| TpmError::UnexpectedObject {
            object: "sealing index",
            handle: index,
            reason: match purpose.op() {
                Some(op) => format!("{reason} (checked before {op}; refusing to use it)"),
                None => reason,
            },
        };
        if nv_public.name() != name.value() {
            return Err(unexpected(format!(
                "its marshalled public area hashes to name {} but the TPM reports {}",
                hex::encode(nv_public.name()),
                hex::encode(name.value())
            )));
        }
        let (policy, _) = self.platform_policy()?;
        let written = templates::sealing_index(index, &policy, true);
        let unwritten = templates::sealing_index(index, &policy, false);
        let written_any_policy = NvPublic {
            auth_policy: nv_public.auth_policy.clone(),
            ..written.clone()
        };
        let (accepted, expected) = match purpose {
            NvUse::Describe => (nv_public == written || nv_public == unwritten, &written),
            NvUse::DescribeAsIs => (nv_public == written_any_policy, &written),
            NvUse::Read | NvUse::Write => (nv_public == written, &written),
            NvUse::FirstWrite => (nv_public == unwritten, &unwritten),
        };
        if !accepted {
            let reason = nv_difference(expected, &nv_public, &self.config.platform_pcrs);
            let only_policy = NvPublic {
                auth_policy: expected.auth_policy.clone(),
                ..nv_public.clone()
            } == *expected;
            return Err(match purpose.op() {
                Some(_) if only_policy => TpmError::PolicyNotSatisfied {
                    object: "sealing index",
                    pcrs: self.config.platform_pcrs.clone(),
                    detail: reason,
                },
                _ => unexpected(reason),
            });
        }
        Ok(SealingIndex {
            tpm2b_public: nv_public.to_tpm2b(),
            name: nv_public.name(),
            nv_public,
        })
    }

    /// Defines the sealing index (owner authorisation) with SPEC §3's public area for the
    /// current platform PCRs, and writes `initial` into it so it reads back `WRITTEN`.
    pub fn define_sealing_index(&mut self, initial: &SealedKey) -> Result<SealingIndex, TpmError> {
        let index = self.config.sealing_nv_index;
        if self.sealing_handle()?.is_some() {
            return Err(TpmError::UnexpectedObject {
                object: "sealing index",
                handle: index,
                reason: "an index is already defined there; refusing to overwrite it".into(),
            });
        }
        let (policy, _) = self.platform_policy()?;
        let attributes = NvIndexAttributesBuilder::new()
            .with_policy_read(true)
            .with_policy_write(true)
            .with_no_da(true)
            .build()
            .map_err(command("NV_DefineSpace"))?;
        let public = NvPublicBuilder::new()
            .with_nv_index(NvIndexTpmHandle::new(index).map_err(command("NV_DefineSpace"))?)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(attributes)
            .with_index_auth_policy(
                Digest::try_from(policy.as_bytes().to_vec()).map_err(command("NV_DefineSpace"))?,
            )
            .with_data_area_size(usize::from(templates::SEALING_DATA_SIZE))
            .build()
            .map_err(command("NV_DefineSpace"))?;
        let mut handle = ObjectHandle::from(
            self.ctx
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.nv_define_space(Provision::Owner, None, public)
                })
                .map_err(command("NV_DefineSpace"))?,
        );
        self.close(&mut handle);
        self.write_sealing(initial, NvUse::FirstWrite)?;
        self.sealing_index()?.ok_or(TpmError::Missing {
            object: "sealing index",
            handle: index,
        })
    }

    /// Reads `key || epoch` from the sealing index in a salted policy session with response
    /// encryption, so the key never crosses the bus in clear. Refused with
    /// [`TpmError::PolicyNotSatisfied`] when the platform PCRs changed.
    pub fn read_sealing_key(&mut self) -> Result<SealedKey, TpmError> {
        let handle = self.checked_sealing_handle(NvUse::Read)?;
        let selection = self.config.platform_selection()?;
        let result = self.with_policy_session(
            Some(ParameterEncryption::Response),
            &selection,
            |ctx, session| {
                ctx.execute_with_session(Some(AuthSession::from(session)), |ctx| {
                    ctx.nv_read(
                        NvAuth::NvIndex(handle),
                        handle,
                        templates::SEALING_DATA_SIZE,
                        0,
                    )
                })
                .map_err(|e| policy_error("sealing index", &selection, "NV_Read", e))
            },
        );
        let mut object = ObjectHandle::from(handle);
        self.close(&mut object);
        let data = Zeroizing::new(result?.value().to_vec());
        SealedKey::from_bytes(&data).ok_or(TpmError::Command {
            op: "NV_Read",
            detail: format!("the sealing index returned {} bytes, not 40", data.len()),
        })
    }

    /// Writes `key || epoch` into the sealing index in a salted policy session with command
    /// encryption, retrying while the TPM reports NV rate limiting: a rotation, so the
    /// index must be SPEC §3's, already written.
    pub fn write_sealing_key(&mut self, sealed: &SealedKey) -> Result<(), TpmError> {
        self.write_sealing(sealed, NvUse::Write)
    }

    fn write_sealing(&mut self, sealed: &SealedKey, purpose: NvUse) -> Result<(), TpmError> {
        let selection = self.config.platform_selection()?;
        for attempt in 0..NV_WRITE_ATTEMPTS {
            let handle = self.checked_sealing_handle(purpose)?;
            let result = self.with_policy_session(
                Some(ParameterEncryption::Command),
                &selection,
                |ctx, session| {
                    let data = MaxNvBuffer::try_from(sealed.to_bytes().to_vec())
                        .map_err(command("NV_Write"))?;
                    Ok(
                        ctx.execute_with_session(Some(AuthSession::from(session)), |ctx| {
                            ctx.nv_write(NvAuth::NvIndex(handle), handle, data, 0)
                        }),
                    )
                },
            );
            let mut object = ObjectHandle::from(handle);
            self.close(&mut object);
            match result? {
                Ok(()) => return Ok(()),
                Err(e)
                    if (is_rc(&e, RC_NV_RATE)
                        || is_rc(&e, RC_RETRY)
                        || is_rc(&e, RC_NV_UNAVAILABLE))
                        && attempt + 1 < NV_WRITE_ATTEMPTS =>
                {
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(policy_error("sealing index", &selection, "NV_Write", e)),
            }
        }
        Err(TpmError::Command {
            op: "NV_Write",
            detail: "the TPM kept reporting NV rate limiting".into(),
        })
    }

    /// Deletes the sealing index (owner authorisation). Everything wrapped under its key
    /// becomes unrecoverable: this is the TPM owner's availability lever (SPEC §10).
    pub fn undefine_sealing_index(&mut self) -> Result<(), TpmError> {
        let index = self.config.sealing_nv_index;
        let handle = self.sealing_handle()?.ok_or(TpmError::Missing {
            object: "sealing index",
            handle: index,
        })?;
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.nv_undefine_space(Provision::Owner, handle)
            })
            .map_err(command("NV_UndefineSpace"))
    }

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
        let ek = self.create_ek(selection)?;
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

    /// Creates the EK of the TCG default template for `selection` (a password session:
    /// the endorsement hierarchy's auth is empty on an appliance; tss-esapi's helper uses a
    /// one-shot HMAC session whose stale tracking breaks later commands).
    fn create_ek(
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

    /// Reads a whole NV index with its own (empty) auth value, or `None` if it is absent.
    fn read_nv_if_present(&mut self, index: u32) -> Result<Option<Vec<u8>>, TpmError> {
        let tpm_handle = NvIndexTpmHandle::new(index)
            .map_err(|e| TpmError::Config(format!("{index:#x} is not an NV index: {e}")))?;
        let object = match self
            .ctx
            .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::NvIndex(tpm_handle)))
        {
            Ok(object) => object,
            Err(e) if is_rc(&e, RC_HANDLE) => return Ok(None),
            Err(e) => return Err(command("NV_ReadPublic")(e)),
        };
        let handle = NvIndexHandle::from(object);
        let result = (|| {
            let (public, _) = self
                .ctx
                .execute_without_session(|ctx| ctx.nv_read_public(handle))
                .map_err(command("NV_ReadPublic"))?;
            let size = public.data_size();
            let mut out = Vec::with_capacity(size);
            while out.len() < size {
                let chunk = (size - out.len()).min(NV_CHUNK);
                let offset = u16::try_from(out.len()).map_err(|_| TpmError::Command {
                    op: "NV_Read",
                    detail: "index larger than 64 KiB".into(),
                })?;
                let data = self
                    .ctx
                    .execute_with_session(Some(AuthSession::Password), |ctx| {
                        ctx.nv_read(NvAuth::NvIndex(handle), handle, chunk as u16, offset)
                    })
                    .map_err(command("NV_Read"))?;
                out.extend_from_slice(data.value());
            }
            Ok(out)
        })();
        let mut object = ObjectHandle::from(handle);
        self.close(&mut object);
        result.map(Some)
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

/// What the sealing index is about to be used for, and so which public area is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NvUse {
    /// Reporting it (start, attestations): written or not yet written.
    Describe,
    /// Reporting it while degraded: written, bound by PolicyPCR to any platform PCR
    /// values (the sealed state, not the current one); nothing is read from it.
    DescribeAsIs,
    /// NV_Read of the key: written.
    Read,
    /// NV_Write of a rotation: written.
    Write,
    /// The first NV_Write right after defining it: not yet written.
    FirstWrite,
}

impl NvUse {
    /// The command the check comes before, if any.
    fn op(self) -> Option<&'static str> {
        match self {
            Self::Describe | Self::DescribeAsIs => None,
            Self::Read => Some("NV_Read"),
            Self::Write | Self::FirstWrite => Some("NV_Write"),
        }
    }
}

/// Which direction a salted session encrypts.
#[derive(Debug, Clone, Copy)]
enum ParameterEncryption {
    /// The command's first parameter (TPMA_SESSION decrypt), e.g. NV_Write's data.
    Command,
    /// The response's first parameter (TPMA_SESSION encrypt), e.g. NV_Read's data.
    Response,
}

/// Maps a policy-authorised command's failure: policy failures become
/// [`TpmError::PolicyNotSatisfied`].
fn policy_error(
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

/// A tss-esapi PCR selection list for the SHA-256 bank.
fn selection_list(
    selection: &PcrSelection,
) -> Result<tss_esapi::structures::PcrSelectionList, TpmError> {
    let slots = selection
        .pcrs()
        .into_iter()
        .map(|i| PcrSlot::try_from(1u32 << i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(command("building a PCR selection"))?;
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(command("building a PCR selection"))
}

/// The body of a size-prefixed TPM2B, refusing a wrong size.
fn strip_tpm2b(what: &'static str, bytes: &[u8]) -> Result<Vec<u8>, TpmError> {
    let (size, body) = bytes.split_at_checked(2).ok_or(TpmError::Command {
        op: "ActivateCredential",
        detail: format!("{what} is shorter than its size prefix"),
    })?;
    if usize::from(u16::from_be_bytes([size[0], size[1]])) != body.len() {
        return Err(TpmError::Command {
            op: "ActivateCredential",
            detail: format!("{what}'s size prefix does not match its length"),
        });
    }
    Ok(body.to_vec())
}

/// Size-prefixes a marshalled structure (TPM2B).
fn tpm2b(body: &[u8]) -> Result<Vec<u8>, TpmError> {
    let size = u16::try_from(body.len()).map_err(|_| TpmError::Command {
        op: "marshalling",
        detail: "structure larger than 64 KiB".into(),
    })?;
    let mut out = size.to_be_bytes().to_vec();
    out.extend_from_slice(body);
    Ok(out)
}

/// Converts tss-esapi's public area to the policy crate's parsed form (exact TPM bytes).
fn to_policy_public(public: &tss_esapi::structures::Public) -> Result<PolicyPublic, TpmError> {
    let bytes = public
        .marshall()
        .map_err(command("marshalling TPMT_PUBLIC"))?;
    Ok(PolicyPublic::from_tpmt(&bytes)?)
}

/// Converts tss-esapi's NV public area to the policy crate's form. tss-esapi 7.7 cannot
/// marshal `TPMS_NV_PUBLIC`; the policy crate does, and the caller checks the result
/// against the name the TPM reports.
fn to_policy_nv_public(public: &tss_esapi::structures::NvPublic) -> Result<NvPublic, TpmError> {
    Ok(NvPublic {
        index: u32::from(public.nv_index()),
        name_alg: u16::from(public.name_algorithm()),
        attributes: arbiter_policy::NvAttributes(
            u32::try_from(public.attributes()).map_err(command("NV_ReadPublic"))?,
        ),
        auth_policy: public.authorization_policy().value().to_vec(),
        data_size: u16::try_from(public.data_size()).map_err(|_| TpmError::Command {
            op: "NV_ReadPublic",
            detail: "data size above 64 KiB".into(),
        })?,
    })
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

/// Names the differences between the expected and the actual sealing index.
fn nv_difference(expected: &NvPublic, actual: &NvPublic, pcrs: &[u8]) -> String {
    let mut reasons = Vec::new();
    if expected.name_alg != actual.name_alg {
        reasons.push(format!(
            "nameAlg {:#06x} instead of {:#06x}",
            actual.name_alg, expected.name_alg
        ));
    }
    if expected.attributes != actual.attributes {
        reasons.push(format!(
            "attributes {:?} instead of {:?}",
            actual.attributes, expected.attributes
        ));
    }
    if expected.auth_policy != actual.auth_policy {
        reasons.push(format!(
            "authPolicy {} is not PolicyPCR over the current values of PCRs {pcrs:?} ({})",
            hex::encode(&actual.auth_policy),
            hex::encode(&expected.auth_policy)
        ));
    }
    if expected.data_size != actual.data_size {
        reasons.push(format!(
            "data size {} instead of {}",
            actual.data_size, expected.data_size
        ));
    }
    reasons.join("; ")
}
