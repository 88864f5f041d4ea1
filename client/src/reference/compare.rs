//! Comparing a captured policy with reference values published from an image's build
//! outputs ([`ReferenceValues`], [`compare`]).

use std::collections::{BTreeMap, BTreeSet};

use arbiter_policy::appraisal::AppraisalPolicy;
use serde::Deserialize;

use super::{CMDLINE_COMMENT, toml_string};
use crate::ClientError;

/// Reference values an operator publishes from an image's build outputs (TOML; see
/// `docs/appraisal.md`): computed from the files, not read from a running appliance.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReferenceValues {
    /// Free text naming the image and build.
    #[serde(default)]
    pub image: Option<String>,
    /// SHA-256 Authenticode digests of every EFI binary the firmware loads (shim, boot
    /// loader, kernel or UKI), as `sbsign`/`pesign`/`osslsigncode` compute them.
    #[serde(default)]
    pub boot_applications: Option<Vec<String>>,
    /// The kernel command line built into the image (UKI `.cmdline`, boot entry).
    #[serde(default)]
    pub kernel_cmdline: Option<String>,
    /// Whether the image requires Secure Boot.
    #[serde(default)]
    pub secure_boot: Option<bool>,
    /// SHA-256 of the `arbiterd` executable(s) in the image.
    #[serde(default)]
    pub executable_sha256: Option<Vec<String>>,
    /// Function measurements the image's operators publish.
    #[serde(default)]
    pub functions: Option<Vec<String>>,
    /// PCR values precomputed from the build (e.g. PCR 4 from the boot chain's digests).
    #[serde(default)]
    pub pcrs: BTreeMap<String, String>,
}

impl ReferenceValues {
    /// Reads reference values from TOML.
    ///
    /// # Errors
    /// `Config` for malformed TOML, unknown keys, or digests that are not 64 lowercase
    /// hex characters.
    pub fn from_toml(text: &str) -> Result<Self, ClientError> {
        let r: Self = toml::from_str(text)
            .map_err(|e| ClientError::Config(format!("reference values: {}", e.message())))?;
        let digests = r
            .boot_applications
            .iter()
            .flatten()
            .chain(r.executable_sha256.iter().flatten())
            .chain(r.functions.iter().flatten())
            .chain(r.pcrs.values());
        for d in digests {
            if !arbiter_policy::identity::is_identity(d) {
                return Err(ClientError::Config(format!(
                    "reference values: {d:?} is not 64 lowercase hex characters"
                )));
            }
        }
        for k in r.pcrs.keys() {
            if !k.parse::<u8>().is_ok_and(|i| i <= 23) {
                return Err(ClientError::Config(format!(
                    "reference values: pcrs.{k} is not a PCR index 0..=23"
                )));
            }
        }
        Ok(r)
    }
}

/// One comparison of a captured value with a reference value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// What was compared (`pcrs.4`, `boot_applications`, `kernel_cmdline`, …).
    pub what: String,
    /// Whether it matched.
    pub matches: bool,
    /// For people: the values.
    pub detail: String,
}

/// The kernel command lines a captured policy carries as comments (see
/// [`render_capture`](super::render_capture)).
pub fn captured_cmdlines(policy_text: &str) -> Vec<String> {
    policy_text
        .lines()
        .filter_map(|l| l.strip_prefix(CMDLINE_COMMENT))
        .filter_map(|v| {
            toml::from_str::<BTreeMap<String, String>>(&format!("v = {v}"))
                .ok()
                .and_then(|m| m.get("v").cloned())
        })
        .collect()
}

pub(super) fn set_of<'a>(it: impl IntoIterator<Item = &'a [u8; 32]>) -> BTreeSet<String> {
    it.into_iter().map(hex::encode).collect()
}

/// Compares a captured policy (parsed, with its text for the command-line comments) with
/// reference values: one [`Comparison`] per reference value given.
pub fn compare(
    policy: &AppraisalPolicy,
    policy_text: &str,
    reference: &ReferenceValues,
) -> Vec<Comparison> {
    let mut out = Vec::new();
    let mut set_compare = |what: &str, captured: BTreeSet<String>, wanted: &[String]| {
        let wanted: BTreeSet<String> = wanted.iter().cloned().collect();
        let missing: Vec<&String> = wanted.difference(&captured).collect();
        let extra: Vec<&String> = captured.difference(&wanted).collect();
        let matches = missing.is_empty() && extra.is_empty();
        let detail = if matches {
            format!("{} value(s), the same", wanted.len())
        } else {
            let fmt = |v: Vec<&String>| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
            format!(
                "in the reference but not captured: [{}]; captured but not in the reference: [{}]",
                fmt(missing),
                fmt(extra)
            )
        };
        out.push(Comparison {
            what: what.to_owned(),
            matches,
            detail,
        });
    };
    if let Some(apps) = &reference.boot_applications {
        let captured = policy
            .firmware
            .as_ref()
            .and_then(|f| f.boot_applications.as_ref())
            .map(set_of)
            .unwrap_or_default();
        set_compare("boot_applications", captured, apps);
    }
    if let Some(exes) = &reference.executable_sha256 {
        let captured = policy
            .executable_sha256
            .as_ref()
            .map(set_of)
            .unwrap_or_default();
        set_compare("executable_sha256", captured, exes);
    }
    if let Some(functions) = &reference.functions {
        set_compare("functions", set_of(&policy.functions), functions);
    }
    if let Some(sb) = reference.secure_boot {
        let captured = policy.firmware.as_ref().is_some_and(|f| f.secure_boot);
        out.push(Comparison {
            what: "secure_boot".to_owned(),
            matches: captured == sb,
            detail: format!("captured {captured}, reference {sb}"),
        });
    }
    if let Some(cmd) = &reference.kernel_cmdline {
        let captured = captured_cmdlines(policy_text);
        let matches = !captured.is_empty() && captured.iter().all(|c| c == cmd.trim());
        let detail = if captured.is_empty() {
            "no kernel command line was captured (no firmware log, or none measured)".to_owned()
        } else {
            format!(
                "captured {}, reference {}",
                captured
                    .iter()
                    .map(|c| toml_string(c))
                    .collect::<Vec<_>>()
                    .join(" and "),
                toml_string(cmd)
            )
        };
        out.push(Comparison {
            what: "kernel_cmdline".to_owned(),
            matches,
            detail,
        });
    }
    for (index, value) in &reference.pcrs {
        let captured = index
            .parse::<u8>()
            .ok()
            .and_then(|i| policy.pcrs.get(&i))
            .map(set_of)
            .unwrap_or_default();
        let matches = captured.len() == 1 && captured.contains(value);
        let detail = if captured.is_empty() {
            format!("not captured; reference {value}")
        } else {
            format!(
                "captured {}, reference {value}",
                captured.into_iter().collect::<Vec<_>>().join(" or ")
            )
        };
        out.push(Comparison {
            what: format!("pcrs.{index}"),
            matches,
            detail,
        });
    }
    out
}
