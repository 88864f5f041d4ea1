//! Capturing an appraisal policy from a checked attestation: what a capture records
//! ([`CaptureInput`]) and the commented policy TOML it renders ([`render_capture`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use arbiter_measured_boot::firmware::EventLog;

use super::{CMDLINE_COMMENT, FirmwareFacts, one_line, pcr_role, toml_string};
use crate::ClientError;

/// What a capture records: only values that stay the same while the platform and the
/// daemon's state do (no nonce, clock, counts, log generation or application PCR).
#[derive(Debug, Clone, Default)]
pub struct CaptureInput {
    /// The daemon captured, for the header comment.
    pub server: String,
    /// The AK's TPM name (hex), pinned at enrolment.
    pub ak_name: Option<String>,
    /// The daemon's platform PCR set (`daemon_started`).
    pub platform_pcrs: Vec<u8>,
    /// The quoted SHA-256 values of the platform PCRs.
    pub pcrs: BTreeMap<u8, [u8; 32]>,
    /// The firmware log served with the attestation, parsed.
    pub firmware_log: Option<EventLog>,
    /// The executable digests of every `daemon_started` of the generation.
    pub executables: BTreeSet<[u8; 32]>,
    /// The functions loaded in the generation.
    pub functions: BTreeSet<[u8; 32]>,
}

impl CaptureInput {
    /// What a trusted attestation of `server` shows: its platform set and values, the
    /// firmware log it carried, the executables and functions of its log generation.
    ///
    /// # Errors
    /// `NotTrusted` unless the verdict is trusted; `Protocol` when the evidence or the
    /// firmware log does not parse.
    pub fn of(server: &str, a: &crate::verify::Attestation) -> Result<Self, ClientError> {
        a.require_trusted()?;
        let ap = &a.verdict.appraised;
        let evidence = arbiter_policy::evidence::Evidence::from_value(a.evidence.clone())
            .map_err(|e| ClientError::Protocol(format!("attestation evidence: {e}")))?;
        let firmware_log = evidence
            .firmware_log
            .as_ref()
            .map(|b| EventLog::from_bytes(&b.0))
            .transpose()
            .map_err(|e| ClientError::Protocol(format!("firmware log: {e}")))?;
        let platform_pcrs = ap
            .platform_pcrs
            .as_ref()
            .map(|s| s.pcrs())
            .unwrap_or_default();
        let pcrs = platform_pcrs
            .iter()
            .filter_map(|i| ap.pcrs.get(i).map(|v| (*i, *v)))
            .collect();
        let executables = evidence
            .log
            .iter()
            .filter_map(|r| match &r.content {
                arbiter_measured_boot::cel::EventContent::DaemonStarted(d) => {
                    Some(d.executable_sha256.0)
                }
                _ => None,
            })
            .collect();
        Ok(Self {
            server: server.to_owned(),
            ak_name: ap.ak_name.as_ref().map(hex::encode),
            platform_pcrs,
            pcrs,
            firmware_log,
            executables,
            functions: ap.functions.iter().copied().collect(),
        })
    }
}

/// Renders the captured appraisal policy (TOML with comments) for a person to review.
/// The same input gives the same text, byte for byte.
pub fn render_capture(c: &CaptureInput) -> String {
    let mut t = String::new();
    let w = &mut t;
    let _ = writeln!(
        w,
        "# Appraisal policy captured by `arbiter policy capture` from {}.",
        c.server
    );
    let _ = writeln!(
        w,
        "# REVIEW EVERY VALUE before trusting it: a capture records what this appliance runs"
    );
    let _ = writeln!(
        w,
        "# now, not what it should run. Compare it with reference values built from the image"
    );
    let _ = writeln!(
        w,
        "# (`arbiter policy compare`) and see `arbiter policy explain` for each value's events."
    );
    let _ = writeln!(
        w,
        "# Not pinned: the application PCR, TPM counts and clock, the log generation, nonces."
    );
    let _ = writeln!(w);
    match &c.ak_name {
        Some(ak) => {
            let _ = writeln!(
                w,
                "# This appliance's attestation key (pinned at enrolment); drop it to use the"
            );
            let _ = writeln!(w, "# policy for every appliance built from the same image.");
            let _ = writeln!(w, "ak_name = {}", toml_string(ak));
        }
        None => {
            let _ = writeln!(w, "# No AK name: the trust store's enrolled AK is used.");
        }
    }
    let _ = writeln!(w);
    let set: Vec<String> = c.platform_pcrs.iter().map(u8::to_string).collect();
    let _ = writeln!(
        w,
        "# The daemon's platform PCR set: quoted and sealed to (docs/platform.md)."
    );
    let _ = writeln!(w, "platform_pcrs = [{}]", set.join(", "));
    let _ = writeln!(w);
    if !c.executables.is_empty() {
        let _ = writeln!(
            w,
            "# The daemon executables of this log generation (as each daemon reports its own"
        );
        let _ = writeln!(
            w,
            "# file's SHA-256): evidence only where the pinned PCRs pin the image holding it."
        );
        let list: Vec<String> = c
            .executables
            .iter()
            .map(|d| toml_string(&hex::encode(d)))
            .collect();
        let _ = writeln!(w, "executable_sha256 = [{}]", list.join(", "));
        let _ = writeln!(w);
    }
    let _ = writeln!(
        w,
        "# The functions loaded (sha256 of their sources): compare with what you reviewed."
    );
    let list: Vec<String> = c
        .functions
        .iter()
        .map(|d| toml_string(&hex::encode(d)))
        .collect();
    let _ = writeln!(w, "functions = [{}]", list.join(", "));
    let _ = writeln!(w);

    let facts = c.firmware_log.as_ref().map(FirmwareFacts::of);
    let _ = writeln!(
        w,
        "# Platform PCR values (SHA-256 bank) as quoted. An all-zero value means nothing was"
    );
    let _ = writeln!(
        w,
        "# measured into the PCR (e.g. swtpm, no firmware): it pins nothing, and a policy whose"
    );
    let _ = writeln!(
        w,
        "# only pins are all-zero is refused (reference_values) unless it allows that."
    );
    let _ = writeln!(w, "[pcrs]");
    for (index, value) in &c.pcrs {
        if *value == [0u8; 32] {
            let _ = writeln!(w, "# PCR {index}: all zero, nothing measured");
        } else if let Some(log) = &c.firmware_log {
            let n = log
                .events
                .iter()
                .filter(|e| e.is_extended() && e.pcr == u32::from(*index))
                .count();
            let _ = writeln!(
                w,
                "# PCR {index}: {}; {n} event(s) in the firmware log",
                pcr_role(*index)
            );
        } else {
            let _ = writeln!(
                w,
                "# PCR {index}: {}; no firmware log served",
                pcr_role(*index)
            );
        }
        let _ = writeln!(w, "{index} = {}", toml_string(&hex::encode(value)));
    }
    match &facts {
        None => {
            let _ = writeln!(w);
            let _ = writeln!(
                w,
                "# No firmware log was served: Secure Boot, the boot applications and the kernel"
            );
            let _ = writeln!(
                w,
                "# command line cannot be captured; the PCR values above are all there is."
            );
        }
        Some(f) => {
            let _ = writeln!(w);
            let _ = writeln!(w, "# From the firmware log (PCR 7, Secure Boot policy):");
            for (name, digest, index) in &f.variables {
                let _ = writeln!(w, "#   {name:<10} sha256 {digest} (event {index})");
            }
            if let Some(cmdlines) = (!f.kernel_cmdlines.is_empty()).then_some(&f.kernel_cmdlines) {
                let _ = writeln!(
                    w,
                    "# The kernel command line(s) the boot loader measured (no policy rule:"
                );
                let _ = writeln!(w, "# `arbiter policy compare` reads these lines):");
                for (pcr, cmd) in cmdlines {
                    let pinned = u8::try_from(*pcr).is_ok_and(|p| c.platform_pcrs.contains(&p));
                    let _ = writeln!(
                        w,
                        "# measured in PCR {pcr}{}",
                        if pinned {
                            ""
                        } else {
                            ", which is NOT in the platform set: not pinned by this policy"
                        }
                    );
                    let _ = writeln!(w, "{CMDLINE_COMMENT}{}", toml_string(cmd));
                }
            }
            let _ = writeln!(w, "[firmware]");
            match f.secure_boot {
                Some(true) => {
                    let _ = writeln!(w, "# The SecureBoot variable is 1.");
                    let _ = writeln!(w, "secure_boot = true");
                }
                Some(false) => {
                    let _ = writeln!(
                        w,
                        "# Secure Boot is DISABLED on this platform: not required here."
                    );
                    let _ = writeln!(w, "secure_boot = false");
                }
                None => {
                    let _ = writeln!(
                        w,
                        "# No verifiable SecureBoot variable is measured: not required here."
                    );
                    let _ = writeln!(w, "secure_boot = false");
                }
            }
            let _ = writeln!(
                w,
                "# EFI boot applications (PCR 4): SHA-256 Authenticode digests, in boot order."
            );
            let _ = writeln!(w, "boot_applications = [");
            let mut seen = BTreeSet::new();
            for (digest, what) in &f.boot_applications {
                if seen.insert(digest.clone()) {
                    let _ = writeln!(w, "    # {}", one_line(what));
                    let _ = writeln!(w, "    {},", toml_string(digest));
                }
            }
            let _ = writeln!(w, "]");
        }
    }
    t
}
