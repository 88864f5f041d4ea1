//! What an appraisal returns: the [`Verdict`], every [`Reason`] for a rejection with the
//! [`Check`] it comes from, and what was [`Appraised`] on the way.

use std::fmt;

use serde::Serialize;

use crate::tpm::{ClockInfo, PcrSelection, PcrValues, Public};

/// The check a [`Reason`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Check {
    /// The AK is not pinned by the policy, or is not the pinned one.
    AkPin,
    /// The AK's public area, name, PEM or attributes.
    AkKey,
    /// The quote: signature, type, qualifying data, PCR selection and digest.
    Quote,
    /// The quote binding: the leaf against the expectations, its inclusion proof.
    Binding,
    /// TPM startup: the log generation's or an earlier attestation's reset/restart
    /// counts.
    Startup,
    /// The platform PCR set.
    PlatformPcrs,
    /// A PCR value against the policy.
    Pcr,
    /// The measurement log: structure and replay against the application PCR.
    Log,
    /// The statement key: certification, name, attributes, policy.
    StatementKey,
    /// The sealing index: public area, name, attributes, policy, certification.
    Sealing,
    /// The firmware log: presence, parsing, replay against the quoted PCRs.
    FirmwareLog,
    /// Secure Boot as the firmware log shows it.
    SecureBoot,
    /// An EFI boot application not allowed by the policy.
    BootApplication,
    /// Loaded functions against the policy.
    Function,
    /// The attested instance.
    Instance,
    /// The attested instance's manifest.
    Manifest,
    /// A daemon executable digest (of any `daemon_started` record of the generation)
    /// not allowed by the policy's `executable_sha256`.
    Executable,
    /// The policy pins no reference value for the platform (no non-zero value of a
    /// platform PCR, no firmware-log rule) and does not allow that.
    ReferenceValues,
}

/// One reason an attestation is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// The failing check.
    pub check: Check,
    /// What failed, for people.
    pub detail: String,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let check = serde_json::to_value(self.check)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        write!(f, "{check}: {}", self.detail)
    }
}

/// What the appraisal established (meaningful only when the verdict is trusted; use
/// the accessors of [`Verdict`] to get the keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appraised {
    /// The AK's TPM name.
    pub ak_name: Option<Vec<u8>>,
    /// The quoted PCR values.
    pub pcrs: PcrValues,
    /// The platform PCR set from the log's `daemon_started`.
    pub platform_pcrs: Option<PcrSelection>,
    /// The log generation.
    pub log_generation: Option<u64>,
    /// The running daemon's version, from the generation's last `daemon_started`.
    pub daemon_version: Option<String>,
    /// The running daemon's executable SHA-256 as the daemon reports it, from the
    /// generation's last `daemon_started`.
    pub daemon_executable_sha256: Option<[u8; 32]>,
    /// How many times the daemon started in this log generation (its `daemon_started`
    /// records).
    pub daemon_starts: usize,
    /// The statement key.
    pub statement_key: Option<Public>,
    /// The sealing epoch the daemon reports.
    pub sealing_epoch: u64,
    /// Measurements of the functions loaded in this generation, in log order.
    pub functions: Vec<[u8; 32]>,
    /// Whether the firmware log shows Secure Boot enabled (when it was checked).
    pub secure_boot: Option<bool>,
    /// The attested instance's input-encryption public key.
    pub instance_public_key: Option<[u8; 65]>,
    /// The attested instance's manifest digest.
    pub manifest_sha256: Option<[u8; 32]>,
    /// The attested instance's function measurement, when its manifest came along.
    pub function_sha256: Option<[u8; 32]>,
    /// True when the policy pins no reference value for the platform and allows that
    /// (`allow_unpinned_platform`): a trusted verdict then says nothing about which
    /// firmware, boot loader or kernel booted. Verifiers must say so to people.
    pub unpinned_platform: bool,
}

/// The outcome of [`appraise`](super::appraise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// True only when `reasons` is empty.
    pub trusted: bool,
    /// Every reason for a rejection.
    pub reasons: Vec<Reason>,
    /// The quote's TPM clock and counts, once its signature verified: the time the
    /// verdict holds "as of".
    pub as_of: Option<ClockInfo>,
    /// Whether the quote is bound to the verifier's own nonce (online).
    pub fresh: bool,
    /// What was established.
    pub appraised: Appraised,
}

impl Verdict {
    /// The certified statement key, if the verdict is trusted.
    pub fn statement_key(&self) -> Option<&Public> {
        self.appraised
            .statement_key
            .as_ref()
            .filter(|_| self.trusted)
    }

    /// The attested instance's public key, if the verdict is trusted.
    pub fn instance_public_key(&self) -> Option<&[u8; 65]> {
        self.appraised
            .instance_public_key
            .as_ref()
            .filter(|_| self.trusted)
    }

    /// Whether some reason comes from `check`.
    pub fn failed(&self, check: Check) -> bool {
        self.reasons.iter().any(|r| r.check == check)
    }
}
