//! Reference values for the platform: capturing an appraisal policy from a checked
//! attestation ([`render_capture`]), explaining each value a policy pins by the firmware
//! events that produce it ([`explain`]), and comparing a captured policy with reference
//! values published from an image's build outputs ([`ReferenceValues`], [`compare`]).
//! Everything here is pure over the evidence, the firmware log and the policy text; the
//! CLI (`arbiter policy capture|explain|compare`) does the I/O. See `docs/appraisal.md`
//! and `docs/platform.md`.

use arbiter_measured_boot::HashAlg;
use arbiter_measured_boot::firmware::{DataCheck, EventData, EventLog, EventType, Guid};

mod capture;
mod compare;
mod explain;

pub use capture::{CaptureInput, render_capture};
pub use compare::{Comparison, ReferenceValues, captured_cmdlines, compare};
pub use explain::explain;

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

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
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

#[cfg(test)]
mod tests;
