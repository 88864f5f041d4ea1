//! Appraisal: a party's decision whether to trust an attestation. [`appraise`] takes the
//! evidence bundle ([`Evidence`]), the party's own [`AppraisalPolicy`] (TOML: the pinned
//! AK, PCR values, firmware-log rules, functions, manifest, daemon executables) and what
//! it expects of this exchange ([`Expectations`]: its nonce, the TLS key it saw, the
//! instance) and returns a [`Verdict`] that lists **every** reason for a rejection, not
//! just the first.
//!
//! Freshness comes from the verifier's own nonce, online. Without a nonce (an offline
//! bundle) the verdict is "as of" the quote's TPM clock and reset/restart counts: the TPM
//! clock counts powered-on time, not wall time, so it orders attestations of one TPM but
//! does not date them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use arbiter_measured_boot::HashAlg;
use arbiter_measured_boot::cel::{self, DaemonStarted, EventContent, Record};
use arbiter_measured_boot::firmware::{DataCheck, EventData, EventLog, EventType, Guid};
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey as _;
use serde::{Deserialize, Serialize};

use crate::evidence::{
    Evidence, check_same_startup, require_ak, require_sealing_index, require_statement_key, select,
};
use crate::manifest::{Manifest, manifest_sha256};
use crate::tpm::hash::sha256;
use crate::tpm::{Attest, Attested, ClockInfo, NvPublic, PcrSelection, PcrValues, Public};
use crate::{Error, verify_certify, verify_nv_certify, verify_quote};

/// The default application PCR (SPEC §2).
pub const DEFAULT_APPLICATION_PCR: u8 = 23;

/// PCRs a platform set must include unless the policy allows weak sets (SPEC §2:
/// firmware, boot loader, Secure Boot policy, kernel as measured by the boot loader).
pub const REQUIRED_PLATFORM_PCRS: [u8; 4] = [0, 2, 4, 7];

/// `EFI_GLOBAL_VARIABLE` (8be4df61-93ca-11d2-aa0d-00e098032b8c) in on-disk byte order.
const EFI_GLOBAL_VARIABLE: Guid = Guid([
    0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c,
]);

/// How the verifier pins the attestation key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PinnedAk {
    /// The AK's TPM name (`nameAlg || digest`).
    pub name: Option<Vec<u8>>,
    /// The AK's public key.
    pub public_key: Option<VerifyingKey>,
}

/// Rules about the firmware event log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FirmwareRules {
    /// Require a measured `SecureBoot` variable equal to 1 in PCR 7.
    pub secure_boot: bool,
    /// When set, every EFI boot application (`EV_EFI_BOOT_SERVICES_APPLICATION`, PCR 4)
    /// must have one of these SHA-256 Authenticode digests.
    pub boot_applications: Option<BTreeSet<[u8; 32]>>,
}

/// A verifier's appraisal policy. Read it from TOML with
/// [`AppraisalPolicy::from_toml`]; see `docs/appraisal.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppraisalPolicy {
    /// The pinned attestation key; an unpinned AK is never trusted.
    pub ak: PinnedAk,
    /// The application PCR (default 23).
    pub application_pcr: u8,
    /// When set, the daemon's platform PCR set must be exactly this.
    pub platform_pcrs: Option<PcrSelection>,
    /// Accept a platform set lacking any of PCRs 0, 2, 4, 7.
    pub allow_weak_platform_pcrs: bool,
    /// Allowed values per PCR (one value: required).
    pub pcrs: BTreeMap<u8, BTreeSet<[u8; 32]>>,
    /// Firmware-log rules; when set, a firmware log is required.
    pub firmware: Option<FirmwareRules>,
    /// Function measurements that must be loaded; an attested instance's function must be
    /// one of them (when the list is not empty).
    pub functions: BTreeSet<[u8; 32]>,
    /// Refuse a daemon that has loaded any function not in `functions`.
    pub only_listed_functions: bool,
    /// The manifest digest an attested instance must have.
    pub manifest_sha256: Option<[u8; 32]>,
    /// When set, every `daemon_started` record of the generation must report one of these
    /// executable digests (each of those daemons could read the sealed secrets). The
    /// daemon reports its digest itself: this proves something only where the pinned
    /// platform state pins the image that holds the daemon.
    pub executable_sha256: Option<BTreeSet<[u8; 32]>>,
    /// Trust a platform the policy pins no reference value for (no non-zero value of a
    /// platform PCR, no firmware-log rule): for development on a TPM with no firmware
    /// (swtpm). A trusted verdict then says so ([`Appraised::unpinned_platform`]).
    pub allow_unpinned_platform: bool,
}

impl Default for AppraisalPolicy {
    fn default() -> Self {
        Self {
            ak: PinnedAk::default(),
            application_pcr: DEFAULT_APPLICATION_PCR,
            platform_pcrs: None,
            allow_weak_platform_pcrs: false,
            pcrs: BTreeMap::new(),
            firmware: None,
            functions: BTreeSet::new(),
            only_listed_functions: false,
            manifest_sha256: None,
            executable_sha256: None,
            allow_unpinned_platform: false,
        }
    }
}

impl AppraisalPolicy {
    /// The platform PCRs of `platform` (every PCR when `None`) that the policy pins to
    /// values none of which is all-zero. An all-zero value is what a PCR holds when
    /// nothing measured into it (a TPM with no firmware): allowing it pins nothing.
    pub fn pinned_platform_pcrs(&self, platform: Option<&PcrSelection>) -> Vec<u8> {
        self.pcrs
            .iter()
            .filter(|(index, _)| platform.is_none_or(|s| s.contains(**index)))
            .filter(|(_, allowed)| !allowed.is_empty() && !allowed.contains(&[0u8; 32]))
            .map(|(index, _)| *index)
            .collect()
    }

    /// Whether the policy has a firmware-log rule that constrains the boot
    /// (`secure_boot = true` or a non-empty `boot_applications` list). An empty
    /// `[firmware]` table only asks for the log to replay: it pins nothing.
    pub fn has_firmware_rule(&self) -> bool {
        self.firmware.as_ref().is_some_and(|f| {
            f.secure_boot || f.boot_applications.as_ref().is_some_and(|a| !a.is_empty())
        })
    }

    /// Whether the policy pins reference values for the platform `platform` (every PCR
    /// when `None`): a non-zero value of one of its PCRs, or a firmware-log rule.
    pub fn pins_platform(&self, platform: Option<&PcrSelection>) -> bool {
        !self.pinned_platform_pcrs(platform).is_empty() || self.has_firmware_rule()
    }
}

/// The TOML form of [`AppraisalPolicy`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    ak_name: Option<String>,
    ak_public_pem: Option<String>,
    application_pcr: Option<u8>,
    platform_pcrs: Option<Vec<u8>>,
    #[serde(default)]
    allow_weak_platform_pcrs: bool,
    #[serde(default)]
    pcrs: BTreeMap<String, RawPcrRule>,
    firmware: Option<RawFirmware>,
    #[serde(default)]
    functions: Vec<String>,
    #[serde(default)]
    only_listed_functions: bool,
    manifest_sha256: Option<String>,
    executable_sha256: Option<Vec<String>>,
    #[serde(default)]
    allow_unpinned_platform: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawPcrRule {
    One(String),
    Any(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFirmware {
    #[serde(default)]
    secure_boot: bool,
    boot_applications: Option<Vec<String>>,
}

fn policy_error(reason: impl Into<String>) -> Error {
    Error::AppraisalPolicy {
        reason: reason.into(),
    }
}

fn digest32(what: &str, text: &str) -> Result<[u8; 32], Error> {
    if !crate::manifest::is_sha256_hex(text) {
        return Err(policy_error(format!(
            "{what}: {text:?} is not 64 lowercase hex characters"
        )));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|e| policy_error(format!("{what}: {e}")))?;
    Ok(out)
}

fn pcr_index(what: &str, index: u8) -> Result<u8, Error> {
    if index > 23 {
        return Err(policy_error(format!("{what}: PCR {index} is not 0..=23")));
    }
    Ok(index)
}

impl AppraisalPolicy {
    /// Reads a policy from TOML (see `docs/appraisal.md`).
    ///
    /// # Errors
    /// `AppraisalPolicy` for malformed TOML, unknown keys, bad hex, PCR indices above 23,
    /// an unreadable PEM key, an empty `executable_sha256` list.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let raw: RawPolicy = ::toml::from_str(text).map_err(|e| policy_error(e.message()))?;
        let name = raw
            .ak_name
            .map(|n| {
                hex::decode(&n)
                    .ok()
                    .filter(|b| b.len() == 34 && n.bytes().all(|c| !c.is_ascii_uppercase()))
                    .ok_or_else(|| {
                        policy_error(format!(
                            "ak_name: {n:?} is not a SHA-256 TPM name (68 lowercase hex characters)"
                        ))
                    })
            })
            .transpose()?;
        let public_key = raw
            .ak_public_pem
            .map(|pem| {
                VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| {
                    policy_error(format!("ak_public_pem: not a P-256 public key: {e}"))
                })
            })
            .transpose()?;
        let application_pcr = pcr_index(
            "application_pcr",
            raw.application_pcr.unwrap_or(DEFAULT_APPLICATION_PCR),
        )?;
        let platform_pcrs = raw
            .platform_pcrs
            .map(|p| PcrSelection::new(p).map_err(|e| policy_error(format!("platform_pcrs: {e}"))))
            .transpose()?;
        let mut pcrs = BTreeMap::new();
        for (key, rule) in raw.pcrs {
            let index: u8 = key
                .parse()
                .map_err(|_| policy_error(format!("pcrs: {key:?} is not a PCR index")))?;
            let what = format!("pcrs.{index}");
            let index = pcr_index(&what, index)?;
            let values = match rule {
                RawPcrRule::One(v) => vec![v],
                RawPcrRule::Any(vs) => vs,
            };
            if values.is_empty() {
                return Err(policy_error(format!(
                    "{what}: an empty list allows nothing"
                )));
            }
            let set = values
                .iter()
                .map(|v| digest32(&what, v))
                .collect::<Result<BTreeSet<_>, _>>()?;
            pcrs.insert(index, set);
        }
        let firmware = raw
            .firmware
            .map(|f| {
                let boot_applications = f
                    .boot_applications
                    .map(|apps| {
                        apps.iter()
                            .map(|a| digest32("firmware.boot_applications", a))
                            .collect::<Result<BTreeSet<_>, _>>()
                    })
                    .transpose()?;
                Ok::<_, Error>(FirmwareRules {
                    secure_boot: f.secure_boot,
                    boot_applications,
                })
            })
            .transpose()?;
        let functions = raw
            .functions
            .iter()
            .map(|f| digest32("functions", f))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let manifest_sha256 = raw
            .manifest_sha256
            .map(|m| digest32("manifest_sha256", &m))
            .transpose()?;
        let executable_sha256 = raw
            .executable_sha256
            .map(|list| {
                if list.is_empty() {
                    return Err(policy_error(
                        "executable_sha256: an empty list allows nothing",
                    ));
                }
                list.iter()
                    .map(|d| digest32("executable_sha256", d))
                    .collect::<Result<BTreeSet<_>, _>>()
            })
            .transpose()?;
        Ok(Self {
            ak: PinnedAk { name, public_key },
            application_pcr,
            platform_pcrs,
            allow_weak_platform_pcrs: raw.allow_weak_platform_pcrs,
            pcrs,
            firmware,
            functions,
            only_listed_functions: raw.only_listed_functions,
            manifest_sha256,
            executable_sha256,
            allow_unpinned_platform: raw.allow_unpinned_platform,
        })
    }
}

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

/// The outcome of [`appraise`].
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

struct Appraisal<'a> {
    evidence: &'a Evidence,
    policy: &'a AppraisalPolicy,
    expect: &'a Expectations,
    reasons: Vec<Reason>,
    appraised: Appraised,
    as_of: Option<ClockInfo>,
}

impl<'a> Appraisal<'a> {
    fn fail(&mut self, check: Check, detail: impl Into<String>) {
        self.reasons.push(Reason {
            check,
            detail: detail.into(),
        });
    }

    /// The AK: parses, matches its published name and PEM, has SPEC §2's attributes, and
    /// is the pinned one.
    fn ak(&mut self) -> Option<Public> {
        let e = &self.evidence.ak;
        let ak = match Public::from_tpm2b(&e.tpm2b_public.0) {
            Ok(ak) => ak,
            Err(err) => {
                self.fail(Check::AkKey, format!("AK TPM2B_PUBLIC: {err}"));
                self.fail(
                    Check::AkPin,
                    "the AK cannot be compared with the pinned one",
                );
                return None;
            }
        };
        let name = ak.name();
        self.appraised.ak_name = Some(name.clone());
        if name != e.name.0 {
            self.fail(
                Check::AkKey,
                format!(
                    "the AK's name is {}, not the {} published with it",
                    hex::encode(&name),
                    hex::encode(&e.name.0)
                ),
            );
        }
        if let Err(err) = require_ak(&ak) {
            self.fail(Check::AkKey, err.to_string());
        }
        let key = ak.p256_verifying_key();
        match (&key, VerifyingKey::from_public_key_pem(e.public_pem.trim())) {
            (Ok(k), Ok(pem)) if *k == pem => {}
            (Ok(_), Ok(_)) => self.fail(
                Check::AkKey,
                "the published AK PEM is not the key of its TPM2B_PUBLIC",
            ),
            (_, Err(err)) => self.fail(Check::AkKey, format!("AK PEM: {err}")),
            (Err(err), _) => self.fail(Check::AkKey, format!("AK key: {err}")),
        }
        let pin = &self.policy.ak;
        if pin.name.is_none() && pin.public_key.is_none() {
            self.fail(
                Check::AkPin,
                "the policy pins no AK (ak_name or ak_public_pem): enrol the AK first",
            );
        }
        if let Some(pinned) = &pin.name
            && *pinned != name
        {
            self.fail(
                Check::AkPin,
                format!(
                    "AK name {} is not the pinned {}",
                    hex::encode(&name),
                    hex::encode(pinned)
                ),
            );
        }
        if let Some(pinned) = &pin.public_key
            && key.as_ref().ok() != Some(pinned)
        {
            self.fail(Check::AkPin, "the AK is not the pinned public key");
        }
        Some(ak)
    }

    /// The binding leaf against the expectations, and its inclusion under the root.
    fn binding(&mut self) -> bool {
        let b = &self.evidence.binding;
        let x = self.expect;
        let mut fresh = true;
        match &x.nonce {
            Some(nonce) if *nonce != b.leaf.nonce => {
                self.fail(
                    Check::Binding,
                    format!(
                        "the quote is bound to nonce {}, not ours ({nonce}): replayed or for another request",
                        b.leaf.nonce
                    ),
                );
                fresh = false;
            }
            Some(_) => {}
            None => fresh = false,
        }
        if let Some(spki) = &x.tls_spki_sha256
            && *spki != b.leaf.tls_spki_sha256
        {
            self.fail(
                Check::Binding,
                format!(
                    "the quote is bound to TLS key {}, not the one this connection used ({spki})",
                    b.leaf.tls_spki_sha256
                ),
            );
        }
        if (x.nonce.is_some() || x.instance_id.is_some()) && b.leaf.instance_id != x.instance_id {
            self.fail(
                Check::Binding,
                format!(
                    "the quote is bound to instance {:?}, not {:?}",
                    b.leaf.instance_id, x.instance_id
                ),
            );
        }
        let evidence_instance = self.evidence.instance.as_ref().map(|i| &i.instance_id);
        if b.leaf.instance_id.as_ref() != evidence_instance {
            self.fail(
                Check::Binding,
                format!(
                    "the leaf names instance {:?} but the evidence describes {:?}",
                    b.leaf.instance_id, evidence_instance
                ),
            );
        }
        if let Err(err) = b.verify() {
            self.fail(Check::Binding, err.to_string());
            fresh = false;
        }
        fresh
    }

    /// The quote, with the Merkle root as qualifying data.
    fn quote(&mut self, ak: Option<&Public>) -> bool {
        let q = &self.evidence.quote;
        let pcrs = q.pcr_values();
        self.appraised.pcrs = pcrs.clone();
        let Some(ak) = ak else {
            self.fail(Check::Quote, "not verified: no usable AK");
            return false;
        };
        match verify_quote(
            &q.attest.0,
            &q.signature.0,
            ak,
            &self.evidence.binding.root.0,
            &pcrs,
        ) {
            Ok(attest) => {
                self.as_of = Some(attest.clock_info);
                if let Some(earlier) = &self.expect.same_startup_as
                    && let Err(err) = check_same_startup(earlier, &attest.clock_info)
                {
                    self.fail(Check::Startup, err.to_string());
                }
                true
            }
            Err(Error::QualifyingDataMismatch) => {
                self.fail(
                    Check::Quote,
                    "the quote's qualifying data is not the binding's Merkle root",
                );
                false
            }
            Err(err) => {
                self.fail(Check::Quote, err.to_string());
                false
            }
        }
    }

    /// The measurement log: structure, replay to the application PCR, its
    /// `daemon_started` records against each other and the quote's TPM startup. The
    /// first record opens the generation; every later start of the daemon agrees with it
    /// on everything but its `version` and `executable_sha256`. Returns the first, and
    /// reports the running daemon by the last.
    fn log(&mut self) -> Option<&'a DaemonStarted> {
        let evidence: &'a Evidence = self.evidence;
        let log = &evidence.log;
        let pcr = self.policy.application_pcr;
        match self.appraised.pcrs.get(&pcr) {
            None => self.fail(
                Check::Log,
                format!("the application PCR {pcr} is not quoted"),
            ),
            Some(value) => {
                if let Err(err) = cel::verify_against_pcr(log, u32::from(pcr), value) {
                    self.fail(
                        Check::Log,
                        format!("the measurement log does not replay to PCR {pcr}: {err}"),
                    );
                }
            }
        }
        let starts = daemon_starts(log);
        let ds = match log.first().map(|r| &r.content) {
            Some(EventContent::DaemonStarted(ds)) => Some(ds),
            Some(other) => {
                self.fail(
                    Check::Log,
                    format!(
                        "the log's first record is {}, not daemon_started",
                        other.event_name()
                    ),
                );
                None
            }
            None => {
                self.fail(Check::Log, "the measurement log is empty");
                None
            }
        };
        let clock = self.as_of;
        if let Some(first) = ds {
            for start in starts.iter().skip(1) {
                // With a verified quote every record's counts are checked against it
                // below; without one, against the first record.
                self.agrees_with_first(first, start, clock.is_none());
            }
        }
        if let Some(clock) = clock {
            for start in &starts {
                let later = &start.content;
                if later.reset_count == clock.reset_count
                    && later.restart_count == clock.restart_count
                {
                    continue;
                }
                let detail = if start.index == 0 {
                    format!(
                        "the log generation started at TPM reset/restart {}/{}, the quote is from {}/{}: a stale or restored log",
                        later.reset_count,
                        later.restart_count,
                        clock.reset_count,
                        clock.restart_count
                    )
                } else {
                    format!(
                        "{start} names TPM reset/restart {}/{}, the quote is from {}/{}: a daemon start from another TPM startup",
                        later.reset_count,
                        later.restart_count,
                        clock.reset_count,
                        clock.restart_count
                    )
                };
                self.fail(Check::Startup, detail);
            }
        }
        if let (Some(ds), Some(reported)) = (ds, self.evidence.log_generation)
            && ds.generation != reported
        {
            self.fail(
                Check::Log,
                format!(
                    "the log is generation {}, the daemon reports generation {reported}",
                    ds.generation
                ),
            );
        }
        self.appraised.log_generation = ds.map(|d| d.generation);
        if let Some(last) = starts.last() {
            self.appraised.daemon_version = Some(last.content.version.clone());
            self.appraised.daemon_executable_sha256 = Some(last.content.executable_sha256.0);
        }
        self.appraised.daemon_starts = starts.len();
        ds
    }

    /// A later `daemon_started` against the generation's first: one reason per field
    /// that differs (`version` and `executable_sha256` may; the counts are compared only
    /// when `counts`).
    fn agrees_with_first(&mut self, first: &DaemonStarted, start: &DaemonStart<'_>, counts: bool) {
        let later = start.content;
        let mut differs = |field: &str, theirs: String, ours: String| {
            self.fail(
                Check::Log,
                format!("{start} has {field} {theirs}, the log's first daemon_started has {ours}"),
            );
        };
        if later.generation != first.generation {
            differs(
                "generation",
                later.generation.to_string(),
                first.generation.to_string(),
            );
        }
        if counts && later.reset_count != first.reset_count {
            differs(
                "reset_count",
                later.reset_count.to_string(),
                first.reset_count.to_string(),
            );
        }
        if counts && later.restart_count != first.restart_count {
            differs(
                "restart_count",
                later.restart_count.to_string(),
                first.restart_count.to_string(),
            );
        }
        if later.platform_pcrs != first.platform_pcrs {
            differs(
                "platform_pcrs",
                format!("{:?}", later.platform_pcrs),
                format!("{:?}", first.platform_pcrs),
            );
        }
        if later.sealing_nv_public != first.sealing_nv_public {
            differs(
                "sealing_nv_public",
                format!(
                    "with SHA-256 {}",
                    hex::encode(sha256(&[&later.sealing_nv_public.0]))
                ),
                format!(
                    "with SHA-256 {}",
                    hex::encode(sha256(&[&first.sealing_nv_public.0]))
                ),
            );
        }
        if later.sealing_nv_name != first.sealing_nv_name {
            differs(
                "sealing_nv_name",
                hex::encode(&later.sealing_nv_name.0),
                hex::encode(&first.sealing_nv_name.0),
            );
        }
        if later.statement_key_name != first.statement_key_name {
            differs(
                "statement_key_name",
                hex::encode(&later.statement_key_name.0),
                hex::encode(&first.statement_key_name.0),
            );
        }
        if later.boot_id != first.boot_id {
            differs(
                "boot_id",
                format!("{:?}", later.boot_id),
                format!("{:?}", first.boot_id),
            );
        }
    }

    /// Every daemon start of the generation against the policy's executable digests:
    /// each of those daemons could read the sealed secrets.
    fn executable(&mut self) {
        let policy: &'a AppraisalPolicy = self.policy;
        let Some(allowed) = &policy.executable_sha256 else {
            return;
        };
        let evidence: &'a Evidence = self.evidence;
        let starts = daemon_starts(&evidence.log);
        if starts.is_empty() {
            self.fail(
                Check::Executable,
                "the policy pins executable_sha256 but the log has no daemon_started record",
            );
        }
        for start in &starts {
            let digest = &start.content.executable_sha256;
            if !allowed.contains(&digest.0) {
                self.fail(
                    Check::Executable,
                    format!(
                        "daemon_started record {} (recnum {}, version {:?}) reports executable {digest}, which the policy does not allow",
                        start.index, start.recnum, start.content.version
                    ),
                );
            }
        }
    }

    /// The platform PCR set (from `daemon_started`) and the quoted values of it.
    fn platform(&mut self, ds: Option<&DaemonStarted>) -> Option<(PcrSelection, PcrValues)> {
        let ds = ds?;
        let indices: Result<Vec<u8>, _> =
            ds.platform_pcrs.iter().map(|&p| u8::try_from(p)).collect();
        let selection = match indices.map(PcrSelection::new) {
            Ok(Ok(s)) => s,
            _ => {
                self.fail(
                    Check::PlatformPcrs,
                    format!("invalid platform PCR set {:?}", ds.platform_pcrs),
                );
                return None;
            }
        };
        self.appraised.platform_pcrs = Some(selection.clone());
        let mut ok = true;
        if let Some(required) = &self.policy.platform_pcrs
            && *required != selection
        {
            self.fail(
                Check::PlatformPcrs,
                format!(
                    "the platform PCR set is {:?}, the policy requires {:?}",
                    selection.pcrs(),
                    required.pcrs()
                ),
            );
        } else if self.policy.platform_pcrs.is_none() && !self.policy.allow_weak_platform_pcrs {
            let missing: Vec<u8> = REQUIRED_PLATFORM_PCRS
                .into_iter()
                .filter(|p| !selection.contains(*p))
                .collect();
            if !missing.is_empty() {
                self.fail(
                    Check::PlatformPcrs,
                    format!(
                        "the platform PCR set {:?} lacks {missing:?} (a weak set; the policy does not allow it)",
                        selection.pcrs()
                    ),
                );
            }
        }
        if selection.contains(self.policy.application_pcr) {
            self.fail(
                Check::PlatformPcrs,
                "the platform PCR set contains the application PCR",
            );
        }
        let unquoted: Vec<u8> = selection
            .pcrs()
            .into_iter()
            .filter(|p| !self.appraised.pcrs.contains_key(p))
            .collect();
        if !unquoted.is_empty() {
            self.fail(
                Check::PlatformPcrs,
                format!("platform PCRs {unquoted:?} are not quoted"),
            );
            ok = false;
        }
        ok.then(|| {
            let values = select(&self.appraised.pcrs, &selection);
            (selection, values)
        })
    }

    /// Reference values: the policy must pin some platform PCR to a non-zero value or have
    /// a firmware-log rule, or else explicitly allow an unpinned platform.
    fn reference_values(&mut self) {
        let platform = self
            .appraised
            .platform_pcrs
            .clone()
            .or_else(|| self.policy.platform_pcrs.clone());
        if self.policy.pins_platform(platform.as_ref()) {
            return;
        }
        if self.policy.allow_unpinned_platform {
            self.appraised.unpinned_platform = true;
            return;
        }
        let set = platform.map_or_else(
            || "the platform PCRs".to_owned(),
            |s| format!("{:?}", s.pcrs()),
        );
        let zeros: Vec<u8> = self
            .policy
            .pcrs
            .iter()
            .filter(|(_, allowed)| allowed.contains(&[0u8; 32]))
            .map(|(index, _)| *index)
            .collect();
        let zeros = if zeros.is_empty() {
            String::new()
        } else {
            format!(
                " (PCRs {zeros:?} allow all zeros, the value of a PCR nothing was measured into: no pin)"
            )
        };
        self.fail(
            Check::ReferenceValues,
            format!(
                "the policy pins no reference value for the platform: no non-zero value for any of {set} in [pcrs]{zeros} and no firmware-log rule ([firmware] secure_boot or boot_applications), so any firmware, boot loader and kernel would pass; pin them (`arbiter policy capture`) or, for a TPM with no firmware such as swtpm, allow it explicitly (allow_unpinned_platform = true or --allow-unpinned-platform)"
            ),
        );
    }

    /// The policy's PCR values.
    fn pcr_policy(&mut self) {
        for (index, allowed) in &self.policy.pcrs {
            match self.appraised.pcrs.get(index) {
                None => self.fail(
                    Check::Pcr,
                    format!("PCR {index} is required by the policy but not quoted"),
                ),
                Some(v) if !allowed.contains(v) => self.fail(
                    Check::Pcr,
                    format!(
                        "PCR {index} is {}, which the policy does not allow",
                        hex::encode(v)
                    ),
                ),
                Some(_) => {}
            }
        }
    }

    /// The statement key: certified by the AK, named in `daemon_started`, with SPEC §3's
    /// attributes and policy over the appraised platform values.
    fn statement_key(
        &mut self,
        ak: Option<&Public>,
        ds: Option<&DaemonStarted>,
        platform: Option<&(PcrSelection, PcrValues)>,
    ) {
        let Some(e) = &self.evidence.statement_key else {
            self.fail(
                Check::StatementKey,
                "the evidence carries no statement key certification (GET /v1/tpm)",
            );
            return;
        };
        let key = match Public::from_tpm2b(&e.tpm2b_public.0) {
            Ok(k) => k,
            Err(err) => {
                self.fail(Check::StatementKey, format!("TPM2B_PUBLIC: {err}"));
                return;
            }
        };
        let name = key.name();
        if let Some(reported) = &e.name
            && reported.0 != name
        {
            self.fail(
                Check::StatementKey,
                format!(
                    "its name is {}, not the {} reported",
                    hex::encode(&name),
                    hex::encode(&reported.0)
                ),
            );
        }
        if let Some(ds) = ds
            && ds.statement_key_name.0 != name
        {
            self.fail(
                Check::StatementKey,
                format!(
                    "its name {} is not the statement_key_name {} measured in daemon_started",
                    hex::encode(&name),
                    hex::encode(&ds.statement_key_name.0)
                ),
            );
        }
        match ak {
            Some(ak) => {
                let extra = Attest::parse(&e.attest.0).map(|a| a.extra_data);
                let result = extra.and_then(|extra| {
                    verify_certify(&e.attest.0, &e.signature.0, ak, &key, &extra)
                });
                if let Err(err) = result {
                    self.fail(
                        Check::StatementKey,
                        format!("its certification by the AK does not hold: {err}"),
                    );
                }
            }
            None => self.fail(
                Check::StatementKey,
                "its certification cannot be checked without a usable AK",
            ),
        }
        match platform {
            Some((selection, values)) => {
                if let Err(err) = require_statement_key(&key, selection, values) {
                    self.fail(Check::StatementKey, err.to_string());
                }
            }
            None => self.fail(
                Check::StatementKey,
                "its policy cannot be checked without the quoted platform PCRs",
            ),
        }
        self.appraised.statement_key = Some(key);
    }

    /// The sealing index: its public area as recorded in `daemon_started` and returned,
    /// its name, SPEC §3's exact attributes and policy, and its NV certification where
    /// present.
    fn sealing(
        &mut self,
        ak: Option<&Public>,
        ds: Option<&DaemonStarted>,
        platform: Option<&(PcrSelection, PcrValues)>,
    ) {
        let e = &self.evidence.sealing;
        self.appraised.sealing_epoch = e.epoch;
        let nv = match NvPublic::from_tpm2b(&e.nv_public.0) {
            Ok(nv) => nv,
            Err(err) => {
                self.fail(Check::Sealing, format!("TPM2B_NV_PUBLIC: {err}"));
                return;
            }
        };
        let name = nv.name();
        if name != e.name.0 {
            self.fail(
                Check::Sealing,
                format!(
                    "the index's name is {}, not the {} reported",
                    hex::encode(&name),
                    hex::encode(&e.name.0)
                ),
            );
        }
        if let Some(ds) = ds {
            if ds.sealing_nv_public.0 != e.nv_public.0 {
                self.fail(
                    Check::Sealing,
                    "the public area differs from the one measured in daemon_started",
                );
            }
            if ds.sealing_nv_name.0 != name {
                self.fail(
                    Check::Sealing,
                    "the name differs from the one measured in daemon_started",
                );
            }
        }
        match platform {
            Some((selection, values)) => {
                if let Err(err) = require_sealing_index(&nv, selection, values) {
                    self.fail(Check::Sealing, err.to_string());
                }
            }
            None => self.fail(
                Check::Sealing,
                "its policy cannot be checked without the quoted platform PCRs",
            ),
        }
        if let Some(cert) = &e.certify {
            let Some(ak) = ak else {
                self.fail(
                    Check::Sealing,
                    "its certification cannot be checked without a usable AK",
                );
                return;
            };
            let result = Attest::parse(&cert.attest.0).and_then(|a| {
                verify_nv_certify(&cert.attest.0, &cert.signature.0, ak, &nv, &a.extra_data)
            });
            match result {
                Ok(attest) => {
                    if let Attested::Nv { contents, .. } = &attest.attested
                        && !contents.is_empty()
                    {
                        self.fail(
                            Check::Sealing,
                            "the NV certification reveals the index's contents",
                        );
                    }
                }
                Err(err) => self.fail(
                    Check::Sealing,
                    format!("its NV certification does not hold: {err}"),
                ),
            }
        }
    }

    /// The firmware log against the quoted platform PCRs and the policy's rules.
    fn firmware(&mut self, platform: Option<&(PcrSelection, PcrValues)>) {
        let Some(rules) = self.policy.firmware.clone() else {
            return;
        };
        let Some(bytes) = &self.evidence.firmware_log else {
            self.fail(
                Check::FirmwareLog,
                "the policy has firmware rules but the evidence carries no firmware log",
            );
            return;
        };
        let log = match EventLog::from_bytes(&bytes.0) {
            Ok(log) => log,
            Err(err) => {
                self.fail(Check::FirmwareLog, format!("does not parse: {err}"));
                return;
            }
        };
        let banks = match log.replay() {
            Ok(b) => b,
            Err(err) => {
                self.fail(Check::FirmwareLog, format!("does not replay: {err}"));
                return;
            }
        };
        // Only a complete bank is appraised: an incomplete one has no values (the TPM
        // extended digests the log does not give). The SHA-256 bank is the quoted one; SHA-1
        // is never a fallback.
        if let Some(incomplete) = banks.incomplete(HashAlg::Sha256) {
            self.fail(
                Check::FirmwareLog,
                format!(
                    "{incomplete}; only complete banks are appraised, and no other bank \
                     (not SHA-1) stands in for the quoted SHA-256 bank"
                ),
            );
            return;
        }
        if !banks.banks.contains_key(&HashAlg::Sha256) {
            self.fail(Check::FirmwareLog, "the log has no SHA-256 bank");
            return;
        }
        // Every quoted platform PCR (and PCRs 4 and 7, which the rules read) must be what
        // the log replays to; a PCR the log never touched must be all-zero.
        let mut consistent = BTreeSet::new();
        let mut wanted: BTreeSet<u8> = platform
            .map(|(s, _)| s.pcrs().into_iter().collect())
            .unwrap_or_default();
        if rules.secure_boot {
            wanted.insert(7);
        }
        if rules.boot_applications.is_some() {
            wanted.insert(4);
        }
        for pcr in wanted {
            let Some(quoted) = self.appraised.pcrs.get(&pcr) else {
                self.fail(
                    Check::FirmwareLog,
                    format!("PCR {pcr} is not quoted, so the log cannot be checked against it"),
                );
                continue;
            };
            match banks.get(HashAlg::Sha256, u32::from(pcr)) {
                Some(replayed) if replayed == quoted.as_slice() => {
                    consistent.insert(pcr);
                }
                Some(replayed) => self.fail(
                    Check::FirmwareLog,
                    format!(
                        "replaying the firmware log gives PCR {pcr} = {}, the quote shows {}",
                        hex::encode(replayed),
                        hex::encode(quoted)
                    ),
                ),
                None if *quoted == [0u8; 32] => {
                    consistent.insert(pcr);
                }
                None => self.fail(
                    Check::FirmwareLog,
                    format!("PCR {pcr} is extended but the firmware log has no event for it"),
                ),
            }
        }
        if rules.secure_boot {
            let enabled = secure_boot_state(&log);
            self.appraised.secure_boot = enabled;
            match enabled {
                Some(true) if consistent.contains(&7) => {}
                Some(true) => self.fail(
                    Check::SecureBoot,
                    "the SecureBoot variable is 1 but PCR 7 does not match the log",
                ),
                Some(false) => self.fail(Check::SecureBoot, "Secure Boot is disabled"),
                None => self.fail(
                    Check::SecureBoot,
                    "no verifiable SecureBoot variable is measured in PCR 7",
                ),
            }
        }
        if let Some(allowed) = &rules.boot_applications {
            if !consistent.contains(&4) {
                self.fail(
                    Check::BootApplication,
                    "PCR 4 does not match the log, so the boot applications are unknown",
                );
            }
            for event in log
                .events
                .iter()
                .filter(|e| e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION && e.pcr == 4)
            {
                match event.digest(HashAlg::Sha256) {
                    Some(d) if d.len() == 32 && allowed.iter().any(|a| a.as_slice() == d) => {}
                    Some(d) => self.fail(
                        Check::BootApplication,
                        format!(
                            "boot application {} (event {}) is not allowed",
                            hex::encode(d),
                            event.index
                        ),
                    ),
                    None => self.fail(
                        Check::BootApplication,
                        format!(
                            "boot application event {} has no SHA-256 digest",
                            event.index
                        ),
                    ),
                }
            }
        }
    }

    /// Functions loaded in this generation against the policy.
    fn functions(&mut self) {
        let loaded: Vec<[u8; 32]> = self
            .evidence
            .log
            .iter()
            .filter_map(|r| match &r.content {
                EventContent::FunctionLoaded(f) => Some(f.sha256.0),
                _ => None,
            })
            .collect();
        for f in &self.policy.functions {
            if !loaded.contains(f) {
                self.fail(
                    Check::Function,
                    format!("function {} is not loaded", hex::encode(f)),
                );
            }
        }
        if self.policy.only_listed_functions {
            for f in &loaded {
                if !self.policy.functions.contains(f) {
                    self.fail(
                        Check::Function,
                        format!(
                            "function {} is loaded but not in the policy",
                            hex::encode(f)
                        ),
                    );
                }
            }
        }
        self.appraised.functions = loaded;
    }

    /// The attested instance: created in this generation and not destroyed, its public key
    /// and manifest digest as measured, its manifest valid and its function loaded.
    fn instance(&mut self) {
        let Some(inst) = &self.evidence.instance else {
            if let Some(id) = &self.expect.instance_id {
                self.fail(
                    Check::Instance,
                    format!("instance {id} was asked about but the evidence describes none"),
                );
            }
            if self.policy.manifest_sha256.is_some() {
                self.fail(
                    Check::Instance,
                    "the policy pins a manifest but no instance was attested",
                );
            }
            return;
        };
        if let Some(id) = &self.expect.instance_id
            && *id != inst.instance_id
        {
            self.fail(
                Check::Instance,
                format!(
                    "the evidence describes instance {}, not {id}",
                    inst.instance_id
                ),
            );
        }
        let mut created = None;
        let mut destroyed = false;
        for record in &self.evidence.log {
            match &record.content {
                EventContent::InstanceCreated(c)
                    if c.instance_id.to_string() == inst.instance_id =>
                {
                    created = Some(c.clone());
                }
                EventContent::InstanceDestroyed(d)
                    if d.instance_id.to_string() == inst.instance_id =>
                {
                    destroyed = true;
                }
                _ => {}
            }
        }
        let Some(created) = created else {
            self.fail(
                Check::Instance,
                format!(
                    "instance {} has no instance_created record in this log generation",
                    inst.instance_id
                ),
            );
            return;
        };
        if destroyed {
            self.fail(
                Check::Instance,
                format!("instance {} has been destroyed", inst.instance_id),
            );
        }
        match <[u8; 65]>::try_from(inst.public_key.0.as_slice()) {
            Ok(pk) if sha256(&[&pk]) == created.public_key_sha256.0 && pk[0] == 0x04 => {
                self.appraised.instance_public_key = Some(pk);
            }
            Ok(_) => self.fail(
                Check::Instance,
                "the instance's public key is not the one measured in instance_created",
            ),
            Err(_) => self.fail(
                Check::Instance,
                format!(
                    "the instance's public key has {} bytes, not 65",
                    inst.public_key.0.len()
                ),
            ),
        }
        let measured = created.manifest_sha256.0;
        self.appraised.manifest_sha256 = Some(measured);
        if inst.manifest_sha256.0 != measured {
            self.fail(
                Check::Manifest,
                "the manifest digest returned differs from the one measured in instance_created",
            );
        }
        if let Some(pinned) = &self.policy.manifest_sha256
            && *pinned != measured
        {
            self.fail(
                Check::Manifest,
                format!(
                    "the instance's manifest is {}, the policy requires {}",
                    hex::encode(measured),
                    hex::encode(pinned)
                ),
            );
        }
        if let Some(raw) = &inst.manifest {
            if manifest_sha256(raw) != measured {
                self.fail(
                    Check::Manifest,
                    "the manifest returned does not hash to the measured manifest_sha256",
                );
            }
            match Manifest::from_json_value(raw.clone()) {
                Ok(valid) => {
                    let function = valid.manifest().function.sha256.to_bytes();
                    self.appraised.function_sha256 = Some(function);
                    if !self.appraised.functions.contains(&function) {
                        self.fail(
                            Check::Function,
                            format!(
                                "the instance's function {} is not loaded",
                                hex::encode(function)
                            ),
                        );
                    }
                    if !self.policy.functions.is_empty()
                        && !self.policy.functions.contains(&function)
                    {
                        self.fail(
                            Check::Function,
                            format!(
                                "the instance's function {} is not one the policy allows",
                                hex::encode(function)
                            ),
                        );
                    }
                }
                Err(problems) => {
                    for p in problems {
                        self.fail(Check::Manifest, format!("invalid manifest: {p}"));
                    }
                }
            }
        }
    }
}

/// One `daemon_started` record of the log, where it is.
struct DaemonStart<'l> {
    /// Its index in the log.
    index: usize,
    /// Its `recnum`.
    recnum: u64,
    /// What it says.
    content: &'l DaemonStarted,
}

impl fmt::Display for DaemonStart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "daemon_started record {} (recnum {})",
            self.index, self.recnum
        )
    }
}

/// The log's `daemon_started` records, in log order.
fn daemon_starts(log: &[Record]) -> Vec<DaemonStart<'_>> {
    log.iter()
        .enumerate()
        .filter_map(|(index, r)| match &r.content {
            EventContent::DaemonStarted(content) => Some(DaemonStart {
                index,
                recnum: r.recnum,
                content,
            }),
            _ => None,
        })
        .collect()
}

/// `Some(true)` when the last verifiable `SecureBoot` variable measured in PCR 7 is 1,
/// `Some(false)` when it is anything else, `None` when none is measured verifiably.
fn secure_boot_state(log: &EventLog) -> Option<bool> {
    log.events
        .iter()
        .rev()
        .filter(|e| e.pcr == 7 && e.event_type == EventType::EFI_VARIABLE_DRIVER_CONFIG)
        .filter(|e| matches!(e.check_data(), DataCheck::Matches(_)))
        .find_map(|e| match &e.decoded {
            EventData::Variable(v) if v.vendor == EFI_GLOBAL_VARIABLE && v.name == "SecureBoot" => {
                Some(v.data == [1])
            }
            _ => None,
        })
}

/// Appraises `evidence` under `policy` with the verifier's `expect`ations, running every
/// check and listing every failure.
pub fn appraise(evidence: &Evidence, policy: &AppraisalPolicy, expect: &Expectations) -> Verdict {
    let mut a = Appraisal {
        evidence,
        policy,
        expect,
        reasons: Vec::new(),
        appraised: Appraised::default(),
        as_of: None,
    };
    let ak = a.ak();
    let bound = a.binding();
    let quoted = a.quote(ak.as_ref());
    let ds = a.log();
    a.executable();
    let platform = a.platform(ds);
    a.pcr_policy();
    a.reference_values();
    a.statement_key(ak.as_ref(), ds, platform.as_ref());
    a.sealing(ak.as_ref(), ds, platform.as_ref());
    a.firmware(platform.as_ref());
    a.functions();
    a.instance();
    Verdict {
        trusted: a.reasons.is_empty(),
        fresh: bound && quoted && expect.nonce.is_some(),
        reasons: a.reasons,
        as_of: a.as_of,
        appraised: a.appraised,
    }
}

#[cfg(test)]
mod tests;
