//! Errors of the TPM layer, and the classification of raw TSS response codes.
//!
//! Messages name the operation and the TPM's response code (`{:#x}`) but never key
//! material or sealed data.

use tss_esapi::constants::response_code::Tss2ResponseCode;

/// A failure of the TPM layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// The TCTI string from the configuration is not valid.
    #[error(
        "invalid TCTI \"{tcti}\": {detail} (examples: device:/dev/tpmrm0, tabrmd, \
         swtpm:host=127.0.0.1,port=2321)"
    )]
    InvalidTcti {
        /// The configured TCTI.
        tcti: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The TPM could not be opened.
    #[error(
        "cannot open the TPM through TCTI \"{tcti}\": {detail}. Check that the TPM is \
         present and that this user may open it (try --tcti device:/dev/tpmrm0 for a \
         hardware TPM, or swtpm:host=127.0.0.1,port=PORT for a software TPM)"
    )]
    Open {
        /// The configured TCTI.
        tcti: String,
        /// The TSS's error.
        detail: String,
    },
    /// The connection to the TPM broke during a command; the layer reopens it on the next
    /// request.
    #[error(
        "the TPM stopped answering during {op}: {detail}; the connection is reopened on the \
         next request"
    )]
    Unreachable {
        /// The command being run.
        op: &'static str,
        /// The TSS's error.
        detail: String,
    },
    /// Too many client requests already wait for or use the TPM
    /// (`[limits] max_tpm_requests_queued`): this one was refused before reaching it.
    #[error(
        "the TPM is busy: {limit} client requests already wait for it or use it; retry shortly"
    )]
    Busy {
        /// The configured limit.
        limit: usize,
    },
    /// A TPM command failed.
    #[error("TPM command {op} failed: {detail}")]
    Command {
        /// The command.
        op: &'static str,
        /// The TSS's error, with its response code.
        detail: String,
    },
    /// The platform PCRs no longer hold the values an object's policy was bound to.
    #[error(
        "the platform state does not satisfy the policy of the {object}: platform PCRs \
         {pcrs:?} differ from the values it is bound to (TPM: {detail})"
    )]
    PolicyNotSatisfied {
        /// The object whose policy failed.
        object: &'static str,
        /// The platform PCR selection of that policy.
        pcrs: Vec<u8>,
        /// The TSS's error.
        detail: String,
    },
    /// An object or NV index at our handle is not the one Arbiter expects.
    #[error("the {object} at handle {handle:#010x} is not the expected one: {reason}")]
    UnexpectedObject {
        /// What we looked for.
        object: &'static str,
        /// The TPM handle.
        handle: u32,
        /// The differences found.
        reason: String,
    },
    /// An object or NV index does not exist yet.
    #[error("there is no {object} at handle {handle:#010x}")]
    Missing {
        /// What we looked for.
        object: &'static str,
        /// The TPM handle.
        handle: u32,
    },
    /// Other software kept extending quoted PCRs between our read and our quote.
    #[error(
        "the quoted PCRs changed between reading and quoting {attempts} times in a row; \
         other software is extending them continuously"
    )]
    PcrsUnstable {
        /// How many times we tried.
        attempts: u32,
    },
    /// Evidence the TPM produced does not verify (a TPM or layer defect).
    #[error("evidence produced by the TPM does not verify: {0}")]
    Evidence(#[from] arbiter_policy::Error),
    /// The layer's configuration is invalid.
    #[error("invalid TPM configuration: {0}")]
    Config(String),
    /// The owner thread is gone (the daemon is shutting down).
    #[error("the TPM owner thread has stopped")]
    Stopped,
}

impl TpmError {
    /// Whether this error means the connection is unusable and must be reopened.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// The raw TSS2_RC of an error, when the TSS gave one.
///
/// tss-esapi 7.7 keeps the raw code private but prints it as `Response code value: 0x…`
/// for codes it does not decode; decode it from there.
pub(crate) fn raw_rc(e: &tss_esapi::Error) -> Option<u32> {
    let tss_esapi::Error::Tss2Error(code) = e else {
        return None;
    };
    let text = match code {
        Tss2ResponseCode::Success => return Some(0),
        Tss2ResponseCode::FormatZero(rc) => rc.to_string(),
        Tss2ResponseCode::FormatOne(rc) => rc.to_string(),
    };
    let hex = text.rsplit("0x").next()?;
    u32::from_str_radix(hex.trim(), 16).ok()
}

/// The TPM-layer response code with handle/session/parameter numbers masked off, so it can
/// be compared with the `TPM_RC_*` constants below.
pub(crate) fn base_rc(rc: u32) -> u32 {
    if rc & 0xFFFF_0000 != 0 {
        return rc;
    }
    if rc & 0x80 != 0 { rc & 0xBF } else { rc }
}

/// TSS layer codes (bits 16..23) that mean the transport or ESYS state is broken.
const TSS2_TCTI_LAYER: u32 = 10 << 16;
const TSS2_ESYS_BAD_SEQUENCE: u32 = 0x0007_0007;
const TSS2_ESYS_IO_ERROR: u32 = 0x0007_000A;
/// `TPM_RC_POLICY_FAIL`.
pub(crate) const RC_POLICY_FAIL: u32 = 0x09D;
/// `TPM_RC_PCR_CHANGED`.
pub(crate) const RC_PCR_CHANGED: u32 = 0x128;
/// `TPM_RC_HANDLE`.
pub(crate) const RC_HANDLE: u32 = 0x08B;
/// `TPM_RC_NV_RATE`.
pub(crate) const RC_NV_RATE: u32 = 0x920;
/// `TPM_RC_RETRY`.
pub(crate) const RC_RETRY: u32 = 0x922;
/// `TPM_RC_YIELDED`.
pub(crate) const RC_YIELDED: u32 = 0x908;
/// `TPM_RC_TESTING`.
pub(crate) const RC_TESTING: u32 = 0x90A;
/// `TPM_RC_NV_UNAVAILABLE`.
pub(crate) const RC_NV_UNAVAILABLE: u32 = 0x923;

/// Describes a TSS error for a message: its text and raw code.
pub(crate) fn describe(e: &tss_esapi::Error) -> String {
    match raw_rc(e) {
        Some(rc) => format!("{e} (rc {rc:#x})"),
        None => e.to_string(),
    }
}

/// Maps a TSS error of operation `op` to a [`TpmError`].
pub(crate) fn command(op: &'static str) -> impl Fn(tss_esapi::Error) -> TpmError {
    move |e| {
        let detail = describe(&e);
        match raw_rc(&e) {
            Some(rc)
                if rc & 0x00FF_0000 == TSS2_TCTI_LAYER
                    || rc == TSS2_ESYS_BAD_SEQUENCE
                    || rc == TSS2_ESYS_IO_ERROR =>
            {
                TpmError::Unreachable { op, detail }
            }
            _ => TpmError::Command { op, detail },
        }
    }
}

/// Whether a TSS error is this TPM response code (numbers masked).
pub(crate) fn is_rc(e: &tss_esapi::Error, want: u32) -> bool {
    raw_rc(e).map(base_rc) == Some(want)
}

/// Pauses between rounds of [`retry_busy`]: ESYS itself resubmits a command the TPM
/// answered with `TPM_RC_RETRY`, `TPM_RC_YIELDED` or `TPM_RC_TESTING` up to five times at
/// once; a TPM still busy after that gets these pauses (1.2 s in all) before the error.
const BUSY_BACKOFF_MS: [u64; 4] = [20, 80, 300, 800];

/// Runs one TPM command, again after a short pause while the TPM answers that it did not
/// run it and it may be sent again (`TPM_RC_RETRY`, `TPM_RC_YIELDED`, `TPM_RC_TESTING`):
/// safe for any single command, since the TPM did not execute it.
pub(crate) fn retry_busy<T>(
    mut run: impl FnMut() -> Result<T, tss_esapi::Error>,
) -> Result<T, tss_esapi::Error> {
    let mut pauses = BUSY_BACKOFF_MS.iter();
    loop {
        match run() {
            Err(e)
                if [RC_RETRY, RC_YIELDED, RC_TESTING]
                    .iter()
                    .any(|rc| is_rc(&e, *rc)) =>
            {
                let Some(ms) = pauses.next() else {
                    return Err(e);
                };
                std::thread::sleep(std::time::Duration::from_millis(*ms));
            }
            other => return other,
        }
    }
}
