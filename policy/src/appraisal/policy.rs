//! The party's appraisal policy: [`AppraisalPolicy`] and its parts ([`PinnedAk`],
//! [`FirmwareRules`]) as the checks use them, and their TOML form with its validation
//! ([`AppraisalPolicy::from_toml`]).

use std::collections::{BTreeMap, BTreeSet};

use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;

use crate::Error;
use crate::appraisal::DEFAULT_APPLICATION_PCR;
use crate::tpm::PcrSelection;

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
    /// (swtpm). A trusted verdict then says so ([`Appraised::unpinned_platform`](super::Appraised::unpinned_platform)).
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
