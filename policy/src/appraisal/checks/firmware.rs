//! The firmware event log: replayed against the quoted platform PCRs and held to the
//! policy's firmware rules (Secure Boot, boot applications).

use std::collections::BTreeSet;

use arbiter_measured_boot::HashAlg;
use arbiter_measured_boot::firmware::{DataCheck, EventData, EventLog, EventType, Guid};

use super::Appraisal;
use crate::appraisal::Check;
use crate::tpm::{PcrSelection, PcrValues};

impl<'a> Appraisal<'a> {
    /// The firmware log against the quoted platform PCRs and the policy's rules.
    pub(super) fn firmware(&mut self, platform: Option<&(PcrSelection, PcrValues)>) {
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
}

/// `EFI_GLOBAL_VARIABLE` (8be4df61-93ca-11d2-aa0d-00e098032b8c) in on-disk byte order.
const EFI_GLOBAL_VARIABLE: Guid = Guid([
    0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c,
]);

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
