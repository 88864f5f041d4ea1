//! Appraisal: a party's decision whether to trust an attestation. [`appraise`] takes the
//! evidence bundle ([`Evidence`](crate::evidence::Evidence)), the party's own
//! [`AppraisalPolicy`] (TOML: the pinned AK, PCR values, firmware-log rules, functions,
//! manifest, daemon executables) and what it expects of this exchange ([`Expectations`]:
//! its nonce, the TLS key it saw, the instance) and returns a [`Verdict`] that lists
//! **every** reason for a rejection, not just the first.
//!
//! Freshness comes from the verifier's own nonce, online. Without a nonce (an offline
//! bundle) the verdict is "as of" the quote's TPM clock and reset/restart counts: the TPM
//! clock counts powered-on time, not wall time, so it orders attestations of one TPM but
//! does not date them.
//!
//! The policy and its TOML form live in `policy`, the verdict and its reasons in
//! `verdict`, and the checks, one file per concern, in `checks`.

mod checks;
mod policy;
mod verdict;

pub use checks::appraise;
pub use policy::{AppraisalPolicy, FirmwareRules, PinnedAk};
pub use verdict::{Appraised, Check, Reason, Verdict};

use crate::tpm::ClockInfo;

/// The default application PCR (docs/protocol.md).
pub const DEFAULT_APPLICATION_PCR: u8 = 23;

/// PCRs a platform set must include unless the policy allows weak sets (docs/protocol.md:
/// firmware, boot loader, Secure Boot policy, kernel as measured by the boot loader).
pub const REQUIRED_PLATFORM_PCRS: [u8; 4] = [0, 2, 4, 7];

/// What the verifier expects of this exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// The nonce it sent, hex. `None` for an offline bundle: the verdict is then not
    /// fresh, only "as of" the TPM clock.
    pub nonce: Option<String>,
    /// SHA-256 of the SubjectPublicKeyInfo of the TLS certificate it saw, hex.
    pub tls_spki_sha256: Option<String>,
    /// The instance it asked about. Online (with a nonce), `None` means it asked about no
    /// instance and the leaf must say so.
    pub instance_id: Option<String>,
    /// The clock info of an earlier attestation by the same AK that this one must share
    /// a TPM startup with.
    pub same_startup_as: Option<ClockInfo>,
}

#[cfg(test)]
mod tests;
