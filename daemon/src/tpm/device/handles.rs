//! Handles: listing what the TPM holds (`GetCapability(TPM_CAP_HANDLES)`), flushing what a
//! crashed process left, and loading (`TR_FromTPMPublic`, `ReadPublic`), creating
//! (`CreatePrimary`, `EvictControl`), flushing (`FlushContext`) and closing (`TR_Close`)
//! the persistent and transient objects the other command families use.

use arbiter_policy::Public as PolicyPublic;
use tss_esapi::{
    WrapperErrorKind,
    constants::CapabilityType,
    handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, TpmHandle},
    interface_types::{
        dynamic_handles::Persistent,
        resource_handles::{Hierarchy, Provision},
        session_handles::AuthSession,
    },
    structures::CapabilityData,
};

use super::{Device, to_policy_public};
use crate::tpm::error::{RC_HANDLE, TpmError, command, is_rc};

/// Handle ranges for `TPM2_GetCapability(TPM_CAP_HANDLES)`.
const TRANSIENT_FIRST: u32 = 0x8000_0000;
const LOADED_SESSION_FIRST: u32 = 0x0200_0000;
const SAVED_SESSION_FIRST: u32 = 0x0300_0000;
/// More handles than any TPM holds in one range (transient objects, sessions).
const MAX_HANDLES: u32 = 128;

impl Device {
    /// Flushes every transient object, loaded session and saved session in the TPM. Arbiter
    /// is the TPM's only user on an appliance, so anything there was left by a crashed
    /// process (and would exhaust swtpm's three object slots).
    pub(super) fn flush_leftovers(&mut self) -> Result<(), TpmError> {
        for first in [TRANSIENT_FIRST, LOADED_SESSION_FIRST, SAVED_SESSION_FIRST] {
            for handle in self.handles(first)? {
                let object = self
                    .ctx
                    .execute_without_session(|ctx| ctx.tr_from_tpm_public(handle))
                    .map_err(command("TR_FromTPMPublic (leftover)"))?;
                match self.ctx.flush_context(object) {
                    Ok(()) => {}
                    // tss-esapi files an object made by TR_FromTPMPublic from a policy
                    // session's handle (0x03…) as one to close, not flush: after the TPM
                    // flushed the session, its handle bookkeeping answers
                    // InvalidHandleState. The session is gone; only the wrapper objects.
                    // (A daemon killed while it held a policy session — the sealing
                    // index's — left one: the next start failed here.)
                    Err(tss_esapi::Error::WrapperError(WrapperErrorKind::InvalidHandleState))
                        if matches!(handle, TpmHandle::PolicySession(_)) => {}
                    Err(e) => return Err(command("FlushContext (leftover)")(e)),
                }
            }
        }
        Ok(())
    }

    /// Lists the handles of one `TPM_CAP_HANDLES` range: transient objects, loaded
    /// sessions or saved sessions (which the TPM reports with their session handles).
    pub(super) fn handles(&mut self, first: u32) -> Result<Vec<TpmHandle>, TpmError> {
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

    /// The number of transient objects and sessions in the TPM now, besides the policy
    /// session kept for signatures (for tests and diagnostics: it must be zero between
    /// requests).
    pub fn loaded_handles(&mut self) -> Result<usize, TpmError> {
        let mut count = 0;
        let mut kept = usize::from(self.signing_session.is_some());
        for first in [TRANSIENT_FIRST, LOADED_SESSION_FIRST, SAVED_SESSION_FIRST] {
            for handle in self.handles(first)? {
                if kept > 0 && matches!(handle, TpmHandle::PolicySession(_)) {
                    kept -= 1;
                } else {
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// Whether a persistent object exists at `handle` (without creating an ESYS object).
    pub(super) fn persistent_exists(&mut self, handle: u32) -> Result<bool, TpmError> {
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
    pub(super) fn persistent(
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
    pub(super) fn create_persistent(
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

    pub(super) fn flush(&mut self, handle: ObjectHandle) {
        // Flushing can only fail if the handle is already gone (e.g. the TPM restarted);
        // there is nothing left to clean up then.
        let _ = self.ctx.flush_context(handle);
    }

    pub(super) fn close(&mut self, handle: &mut ObjectHandle) {
        // Closing frees ESYS's memory for a persistent or NV handle; it fails only for an
        // already closed handle.
        let _ = self.ctx.tr_close(handle);
    }
}
