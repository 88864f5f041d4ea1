//! Explaining a policy: each value it pins, by the firmware events that produce it
//! ([`explain`]).

use arbiter_measured_boot::HashAlg;
use arbiter_measured_boot::firmware::EventLog;
use arbiter_policy::appraisal::AppraisalPolicy;

use super::{FirmwareFacts, one_line, pcr_role};

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
