//! Reference values for the platform: capturing an appraisal policy from a checked
//! attestation ([`render_capture`]), explaining each value a policy pins by the firmware
//! events that produce it ([`explain`]), and comparing a captured policy with reference
//! values published from an image's build outputs ([`ReferenceValues`], [`compare`]).
//! Everything here is pure over the evidence, the firmware log and the policy text; the
//! CLI (`arbiter policy capture|explain|compare`) does the I/O. See `docs/appraisal.md`
//! and `docs/platform.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use arbiter_measured_boot::HashAlg;
use arbiter_measured_boot::firmware::{DataCheck, EventData, EventLog, EventType, Guid};
use arbiter_policy::appraisal::AppraisalPolicy;
use serde::Deserialize;

use crate::ClientError;

/// `EFI_GLOBAL_VARIABLE` (8be4df61-93ca-11d2-aa0d-00e098032b8c) in on-disk byte order.
const EFI_GLOBAL_VARIABLE: Guid = Guid([
    0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c,
]);

/// The Secure Boot policy variables measured into PCR 7, in boot order.
const SECURE_BOOT_VARIABLES: [&str; 5] = ["SecureBoot", "PK", "KEK", "db", "dbx"];

/// The comment line that carries a captured kernel command line (the policy format has no
/// rule for it); [`captured_cmdlines`] reads it back.
const CMDLINE_COMMENT: &str = "# kernel_cmdline = ";

/// What a firmware log says about the boot, as a person reviews it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirmwareFacts {
    /// The last verifiable `SecureBoot` variable in PCR 7: `Some(true)` when it is 1.
    pub secure_boot: Option<bool>,
    /// The Secure Boot policy variables (`SecureBoot`, `PK`, `KEK`, `db`, `dbx`) measured
    /// in PCR 7 by `EV_EFI_VARIABLE_DRIVER_CONFIG`: name, SHA-256 digest, event index.
    pub variables: Vec<(String, String, usize)>,
    /// Every `EV_EFI_BOOT_SERVICES_APPLICATION` in PCR 4 (shim, boot loader, kernel or
    /// unified kernel image): its SHA-256 Authenticode digest and what the log says it is.
    pub boot_applications: Vec<(String, String)>,
    /// Kernel command lines the boot loader measured (GRUB's `kernel_cmdline:` in PCR 8,
    /// systemd-boot's UTF-16 command line in PCR 12 or 8), with the PCR.
    pub kernel_cmdlines: Vec<(u32, String)>,
}

/// UTF-16LE text with trailing NULs dropped, when `data` looks like it (even length, and
/// an ASCII-range character first).
fn utf16_text(data: &[u8]) -> Option<String> {
    if data.len() < 2 || !data.len().is_multiple_of(2) || data[1] != 0 {
        return None;
    }
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let end = units.iter().rposition(|&u| u != 0).map_or(0, |i| i + 1);
    String::from_utf16(&units[..end]).ok()
}

impl FirmwareFacts {
    /// Reads the facts from a parsed firmware log (SHA-256 digests only).
    pub fn of(log: &EventLog) -> Self {
        let mut facts = Self::default();
        for e in &log.events {
            let sha256 = e.digest(HashAlg::Sha256).map(hex::encode);
            match (&e.decoded, e.event_type, e.pcr) {
                (EventData::Variable(v), EventType::EFI_VARIABLE_DRIVER_CONFIG, 7)
                    if SECURE_BOOT_VARIABLES.contains(&v.name.as_str()) =>
                {
                    let verified = matches!(e.check_data(), DataCheck::Matches(_));
                    if v.name == "SecureBoot" && v.vendor == EFI_GLOBAL_VARIABLE && verified {
                        facts.secure_boot = Some(v.data == [1]);
                    }
                    if let Some(d) = sha256 {
                        facts.variables.push((v.name.clone(), d, e.index));
                    }
                }
                (_, EventType::EFI_BOOT_SERVICES_APPLICATION, 4) => {
                    if let Some(d) = sha256 {
                        facts.boot_applications.push((d, e.decoded.to_string()));
                    }
                }
                (_, EventType::IPL, 8 | 12) => {
                    let text = utf16_text(&e.data).or_else(|| match &e.decoded {
                        EventData::Ipl(t) => Some(t.clone()),
                        _ => None,
                    });
                    let cmdline = match text {
                        Some(t) if t.starts_with("kernel_cmdline: ") => {
                            Some(t["kernel_cmdline: ".len()..].to_owned())
                        }
                        Some(t) if utf16_text(&e.data).is_some() => Some(t),
                        _ => None,
                    };
                    if let Some(c) = cmdline {
                        let c = (e.pcr, c.trim().to_owned());
                        if !facts.kernel_cmdlines.contains(&c) {
                            facts.kernel_cmdlines.push(c);
                        }
                    }
                }
                _ => {}
            }
        }
        facts
    }
}

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

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
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

/// `s` on one line (device paths and boot-loader strings may hold anything).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// What a platform PCR measures on a UEFI PC (TCG PC Client Platform Firmware Profile).
pub fn pcr_role(index: u8) -> &'static str {
    match index {
        0 => "firmware code (SRTM, BIOS/UEFI, embedded option ROMs)",
        1 => "firmware configuration (boot order, platform settings)",
        2 => "option ROMs and UEFI drivers from plug-in devices",
        3 => "option ROM configuration",
        4 => "boot manager and EFI applications loaded (shim, boot loader, kernel/UKI)",
        5 => "boot configuration (GPT, boot variables)",
        6 => "platform-specific events (resume, wake)",
        7 => "Secure Boot policy (SecureBoot, PK, KEK, db, dbx, authorities used)",
        8 => "boot loader commands and kernel command line (GRUB)",
        9 => "files the boot loader read (kernel, initrd, grub.cfg)",
        11 => "unified kernel image sections (systemd-stub)",
        12 => "kernel command line and credentials (systemd-boot)",
        14 => "shim's MOK lists",
        _ => "not assigned by the firmware profile",
    }
}

/// Explains every value `policy` pins, one line per fact: for each pinned PCR the events
/// of the firmware log `log` that extend it (index, type, description, SHA-256 digest)
/// and whether the log replays to a pinned value; the firmware rules by their events; the
/// daemon-reported values by where they come from. Without a log, says that a PCR value
/// cannot be explained.
pub fn explain(policy: &AppraisalPolicy, log: Option<&EventLog>) -> Vec<String> {
    let mut out = Vec::new();
    let replay = log.and_then(|l| l.replay().ok());
    if policy.pcrs.is_empty() {
        out.push("no PCR value is pinned ([pcrs] is empty)".to_owned());
    }
    for (index, allowed) in &policy.pcrs {
        let values: Vec<String> = allowed.iter().map(hex::encode).collect();
        out.push(format!(
            "PCR {index} ({}) pinned to {}",
            pcr_role(*index),
            values.join(" or ")
        ));
        if allowed.contains(&[0u8; 32]) {
            out.push(
                "  all zero is allowed: nothing measured into the PCR passes (no reference value)"
                    .to_owned(),
            );
        }
        let Some(log) = log else {
            out.push(
                "  cannot be explained without the firmware log (give --log FILE, e.g. from `arbiter policy capture --log-out`)"
                    .to_owned(),
            );
            continue;
        };
        let events: Vec<_> = log
            .events
            .iter()
            .filter(|e| e.is_extended() && e.pcr == u32::from(*index))
            .collect();
        if events.is_empty() {
            out.push("  the firmware log has no event for this PCR".to_owned());
        }
        for e in events {
            let digest = e
                .digest(HashAlg::Sha256)
                .map_or_else(|| "no SHA-256 digest".to_owned(), hex::encode);
            out.push(format!(
                "  event {:<4} {} {} [{}]",
                e.index,
                e.event_type,
                one_line(&e.decoded.to_string()),
                digest
            ));
        }
        let replayed = replay
            .as_ref()
            .and_then(|r| r.get(HashAlg::Sha256, u32::from(*index)))
            .map(hex::encode);
        match replayed {
            Some(v) if values.contains(&v) => {
                out.push(format!("  the log replays to {v}: matches the pin"));
            }
            Some(v) => out.push(format!(
                "  the log replays to {v}: NOT the pinned value (another boot's log?)"
            )),
            None => out.push("  the log does not replay this PCR's SHA-256 bank".to_owned()),
        }
    }
    if let Some(fw) = &policy.firmware {
        let facts = log.map(FirmwareFacts::of);
        if fw.secure_boot {
            out.push(
                "firmware.secure_boot: the SecureBoot variable measured in PCR 7 must be 1"
                    .to_owned(),
            );
            match facts.as_ref().map(|f| f.secure_boot) {
                Some(Some(on)) => out.push(format!(
                    "  this log's SecureBoot variable is {}",
                    if on {
                        "1 (enabled)"
                    } else {
                        "not 1 (disabled)"
                    }
                )),
                Some(None) => {
                    out.push("  this log measures no verifiable SecureBoot variable".to_owned())
                }
                None => out.push("  cannot be explained without the firmware log".to_owned()),
            }
        }
        for app in fw.boot_applications.iter().flatten() {
            let d = hex::encode(app);
            out.push(format!("firmware.boot_applications: {d}"));
            match &facts {
                Some(f) => {
                    let found: Vec<&String> = f
                        .boot_applications
                        .iter()
                        .filter(|(digest, _)| *digest == d)
                        .map(|(_, what)| what)
                        .collect();
                    if found.is_empty() {
                        out.push("  not loaded in this log".to_owned());
                    }
                    for what in found {
                        out.push(format!("  loaded (PCR 4): {}", one_line(what)));
                    }
                }
                None => out.push("  cannot be explained without the firmware log".to_owned()),
            }
        }
    }
    for exe in policy.executable_sha256.iter().flatten() {
        out.push(format!(
            "executable_sha256 {}: reported by the daemon (daemon_started, measurement log, PCR {}); not a firmware measurement",
            hex::encode(exe),
            policy.application_pcr
        ));
    }
    for f in &policy.functions {
        out.push(format!(
            "function {}: function_loaded in the measurement log (PCR {}); sha256 of the source",
            hex::encode(f),
            policy.application_pcr
        ));
    }
    out
}

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
/// [`render_capture`]).
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

fn set_of<'a>(it: impl IntoIterator<Item = &'a [u8; 32]>) -> BTreeSet<String> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn fixture(name: &str) -> EventLog {
        let path = format!(
            "{}/../measured-boot/testdata/eventlogs/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        EventLog::from_bytes(&std::fs::read(path).unwrap()).unwrap()
    }

    /// A capture of a machine booted as a real firmware log says.
    fn captured(name: &str) -> (String, EventLog) {
        let log = fixture(name);
        let banks = log.replay().unwrap();
        let platform = vec![0u8, 2, 4, 7, 9];
        let pcrs = platform
            .iter()
            .map(|&i| {
                let v: [u8; 32] = banks
                    .get(HashAlg::Sha256, u32::from(i))
                    .map_or([0u8; 32], |v| v.try_into().unwrap());
                (i, v)
            })
            .collect();
        let input = CaptureInput {
            server: "https://appliance.example:8443".into(),
            ak_name: Some(format!("000b{}", "5a".repeat(32))),
            platform_pcrs: platform,
            pcrs,
            firmware_log: Some(log.clone()),
            executables: [[0x5e; 32]].into(),
            functions: [[0x57; 32]].into(),
        };
        (render_capture(&input), log)
    }

    #[test]
    fn a_capture_from_a_real_log_is_a_policy_with_the_boot_chain() {
        let (text, log) = captured("coreos_36_shielded_vm_no_secure_boot_eventlog.bin");
        let policy = AppraisalPolicy::from_toml(&text).unwrap();
        assert!(policy.pins_platform(None), "{text}");
        let apps = policy
            .firmware
            .as_ref()
            .unwrap()
            .boot_applications
            .as_ref()
            .unwrap();
        // shim and GRUB, the two EFI applications PCR 4 measured.
        assert_eq!(apps.len(), 2, "{text}");
        assert!(
            text.contains("shimx64.efi") && text.contains("grubx64.efi"),
            "{text}"
        );
        for name in ["SecureBoot", "PK", "KEK", "db", "dbx"] {
            assert!(text.contains(&format!("#   {name:<10} sha256 ")), "{text}");
        }
        // Secure Boot is off on this VM: not required, and said so.
        assert!(!policy.firmware.as_ref().unwrap().secure_boot);
        assert!(text.contains("Secure Boot is DISABLED"), "{text}");
        let cmdlines = captured_cmdlines(&text);
        assert_eq!(cmdlines.len(), 1, "{text}");
        // GRUB measures it into PCR 8, outside the default platform set: said so.
        assert!(
            text.contains("# measured in PCR 8, which is NOT in the platform set"),
            "{text}"
        );
        assert!(cmdlines[0].contains("ostree=/ostree/boot"), "{cmdlines:?}");
        assert_eq!(policy.executable_sha256, Some([[0x5e; 32]].into()));
        // The same input, the same text.
        assert_eq!(
            text,
            captured("coreos_36_shielded_vm_no_secure_boot_eventlog.bin").0
        );

        // Explained by the log: every event of each pinned PCR, the replay matching.
        let lines = explain(&policy, Some(&log));
        let text = lines.join("\n");
        assert!(text.contains("PCR 4 (boot manager"), "{text}");
        assert!(text.contains("EV_EFI_BOOT_SERVICES_APPLICATION"), "{text}");
        assert!(text.contains("EV_EFI_VARIABLE_DRIVER_CONFIG"), "{text}");
        assert_eq!(
            text.matches(": matches the pin").count(),
            policy.pcrs.len(),
            "{text}"
        );
        assert!(!text.contains("NOT the pinned value"), "{text}");
        assert!(
            text.contains("loaded (PCR 4):") && text.contains("shimx64.efi"),
            "{text}"
        );
        // Without the log, nothing can be explained.
        let text = explain(&policy, None).join("\n");
        assert_eq!(
            text.matches("cannot be explained without the firmware log")
                .count(),
            policy.pcrs.len() + apps.len(),
            "{text}"
        );
        // Another machine's log does not explain these values.
        let other = fixture("event-arch-linux.bin");
        let text = explain(&policy, Some(&other)).join("\n");
        assert!(text.contains("NOT the pinned value"), "{text}");
    }

    #[test]
    fn secure_boot_and_systemd_boot_command_lines_are_captured() {
        let (text, _) = captured("sb_cert_eventlog.bin");
        let policy = AppraisalPolicy::from_toml(&text).unwrap();
        assert!(policy.firmware.as_ref().unwrap().secure_boot, "{text}");
        let (text, _) = captured("event-sd-boot-fedora37.bin");
        assert_eq!(
            captured_cmdlines(&text),
            vec!["console=ttyS0 console=tty0 efi=debug".to_owned()],
            "{text}"
        );
    }

    #[test]
    fn compare_reports_each_match_and_mismatch() {
        let (text, _) = captured("coreos_36_shielded_vm_no_secure_boot_eventlog.bin");
        let policy = AppraisalPolicy::from_toml(&text).unwrap();
        let apps: Vec<String> = set_of(
            policy
                .firmware
                .as_ref()
                .unwrap()
                .boot_applications
                .as_ref()
                .unwrap(),
        )
        .into_iter()
        .collect();
        let cmdline = captured_cmdlines(&text).remove(0);
        let pcr4 = hex::encode(policy.pcrs[&4].first().unwrap());
        let reference = ReferenceValues::from_toml(&format!(
            "image = \"coreos 36\"\nboot_applications = [\"{}\", \"{}\"]\nkernel_cmdline = {}\nsecure_boot = false\nexecutable_sha256 = [\"{}\"]\n[pcrs]\n4 = \"{pcr4}\"\n",
            apps[0],
            apps[1],
            toml_string(&cmdline),
            "5e".repeat(32)
        ))
        .unwrap();
        let result = compare(&policy, &text, &reference);
        assert_eq!(result.len(), 5, "{result:?}");
        assert!(result.iter().all(|c| c.matches), "{result:?}");

        let mismatching = ReferenceValues {
            boot_applications: Some(vec![apps[0].clone(), "ab".repeat(32)]),
            kernel_cmdline: Some("root=/dev/sda1".into()),
            secure_boot: Some(true),
            pcrs: [("4".to_owned(), "cd".repeat(32))].into(),
            ..reference
        };
        let result = compare(&policy, &text, &mismatching);
        let failed: Vec<&str> = result
            .iter()
            .filter(|c| !c.matches)
            .map(|c| c.what.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "boot_applications",
                "secure_boot",
                "kernel_cmdline",
                "pcrs.4"
            ],
            "{result:?}"
        );
        let apps_detail = &result[0].detail;
        assert!(
            apps_detail.contains(&"ab".repeat(32)) && apps_detail.contains(&apps[1]),
            "{apps_detail}"
        );
        for bad in [
            "boot_applications = [\"xyz\"]",
            "colour = 1",
            "[pcrs]\n24 = \"0000000000000000000000000000000000000000000000000000000000000000\"",
        ] {
            assert!(ReferenceValues::from_toml(bad).is_err(), "{bad}");
        }
    }
}
