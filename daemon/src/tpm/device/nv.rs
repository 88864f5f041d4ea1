//! NV: the sealing index (define, check its public area, read, write with retries, undefine)
//! and whole-index reads of other NV indices (EK certificates).

use std::thread;
use std::time::Duration;

use arbiter_policy::NvPublic;
use tss_esapi::{
    attributes::NvIndexAttributesBuilder,
    handles::{NvIndexHandle, NvIndexTpmHandle, ObjectHandle, TpmHandle},
    interface_types::{
        algorithm::HashingAlgorithm,
        resource_handles::{NvAuth, Provision},
        session_handles::AuthSession,
    },
    structures::{Digest, MaxNvBuffer, NvPublicBuilder},
};
use zeroize::Zeroizing;

use super::{Device, sessions::ParameterEncryption, sessions::policy_error};
use crate::tpm::error::{
    RC_HANDLE, RC_NV_RATE, RC_NV_UNAVAILABLE, RC_RETRY, TpmError, command, is_rc,
};
use crate::tpm::{SealedKey, SealingIndex, templates};

/// How often an NV write is retried on `TPM_RC_NV_RATE` / `TPM_RC_RETRY`.
const NV_WRITE_ATTEMPTS: u32 = 50;

/// Bytes per NV_Read (below every TPM's `MAX_NV_BUFFER_SIZE`).
const NV_CHUNK: usize = 512;

impl Device {
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
    /// marshalling gives the name the TPM reports, and checks it against docs/protocol.md's exact
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
    /// what a degraded daemon (docs/protocol.md) publishes, so verifiers see what the secrets are
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

    /// The sealing index's handle, its public area checked for `purpose` (docs/protocol.md: before
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
    /// marshalling gives the name the TPM reports, and the area is docs/protocol.md's for the current
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

    /// Defines the sealing index (owner authorisation) with docs/protocol.md's public area for the
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
    /// index must be docs/protocol.md's, already written.
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
    /// becomes unrecoverable: this is the TPM owner's availability lever (docs/threat-model.md).
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

    /// Reads a whole NV index with its own (empty) auth value, or `None` if it is absent.
    pub(super) fn read_nv_if_present(&mut self, index: u32) -> Result<Option<Vec<u8>>, TpmError> {
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
