//! Replay of a firmware log into PCR values, bank by bank, and the check of each event's data
//! against its digests. Replay follows the TPM: every event but `EV_NO_ACTION` extends its
//! PCR with its digest (`PCR = H(PCR || digest)`); PCR 0 starts at the locality a
//! `StartupLocality` event names (0…03 after a locality-3 startup), everything else at zero.
//!
//! A crypto-agile log may declare banks that some of its events carry no digest for (real
//! firmware declares sha1, sha256, sha384 and sha512 and logs sha1 and sha256 only). Such a
//! bank is **incomplete**: the TPM extended something into it that the log does not say, so
//! no value of it can be computed. Only **complete** banks (every extending event carries
//! them) are replayed into values; incomplete ones are named, with the first event lacking
//! them, and have no values at all — not even for the PCRs whose events all carry them.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value, json};

use super::data::{EventData, variable};
use super::{Event, EventLog, EventType};
use crate::alg::HashAlg;
use crate::error::ReplayError;

/// A bank the log declares that at least one extending event carries no digest for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteBank {
    /// The bank.
    pub alg: HashAlg,
    /// Index of the first extending event without a digest of this bank.
    pub first_event: usize,
    /// The PCR that event extends.
    pub first_pcr: u32,
    /// How many extending events lack a digest of this bank.
    pub lacking: usize,
    /// How many events extend a PCR (every event but `EV_NO_ACTION`).
    pub extending: usize,
}

impl fmt::Display for IncompleteBank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{alg}: incomplete (event {event}, PCR {pcr}, has no {alg} digest; \
             {lacking} of {extending} events lack it)",
            alg = self.alg,
            event = self.first_event,
            pcr = self.first_pcr,
            lacking = self.lacking,
            extending = self.extending,
        )
    }
}

/// The PCR values a replay computes, per bank and per PCR. Only PCRs that some event
/// extended (or that a StartupLocality event set) appear, as in `tpm2_eventlog`'s output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrBanks {
    /// bank → PCR index → value, for the **complete** banks this crate can compute: every
    /// extending event carries a digest of them.
    pub banks: BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>>,
    /// Declared banks some extending event carries no digest for, in declaration order. They
    /// have no values (see the module documentation).
    pub incomplete: Vec<IncompleteBank>,
    /// Banks the log declares that this crate cannot compute (e.g. SM3): parsed, not replayed.
    pub unsupported: Vec<HashAlg>,
}

impl PcrBanks {
    /// The value of one PCR in one complete bank, if the log touched it. `None` for an
    /// incomplete or unsupported bank.
    pub fn get(&self, alg: HashAlg, pcr: u32) -> Option<&[u8]> {
        self.banks.get(&alg)?.get(&pcr).map(Vec::as_slice)
    }

    /// Why `alg` is incomplete, if the log declares it and some extending event lacks it.
    pub fn incomplete(&self, alg: HashAlg) -> Option<&IncompleteBank> {
        self.incomplete.iter().find(|b| b.alg == alg)
    }

    /// `{"pcrs": {"<bank>": {"<pcr>": "<hex>"}}}`: the shape `tpm2_eventlog`-derived reference
    /// files use, so that outside tools can diff the two; complete banks only. When some bank
    /// is incomplete, an `"incomplete"` member names each with the first event lacking it:
    /// `{"<bank>": {"first_event": 1, "pcr": 4, "events_lacking": 3, "events": 3}}`.
    pub fn to_json(&self) -> Value {
        let mut banks = Map::new();
        for (alg, pcrs) in &self.banks {
            let m: Map<String, Value> = pcrs
                .iter()
                .map(|(i, v)| (i.to_string(), Value::String(hex::encode(v))))
                .collect();
            banks.insert(alg.name(), Value::Object(m));
        }
        let mut out = json!({ "pcrs": banks });
        if !self.incomplete.is_empty() {
            let incomplete: Map<String, Value> = self
                .incomplete
                .iter()
                .map(|b| {
                    (
                        b.alg.name(),
                        json!({
                            "first_event": b.first_event,
                            "pcr": b.first_pcr,
                            "events_lacking": b.lacking,
                            "events": b.extending,
                        }),
                    )
                })
                .collect();
            out["incomplete"] = Value::Object(incomplete);
        }
        out
    }
}

/// The declared banks some extending event carries no digest for, in declaration order.
pub(super) fn incomplete_banks(log: &EventLog) -> Vec<IncompleteBank> {
    let extending: Vec<&Event> = log.events.iter().filter(|e| e.is_extended()).collect();
    log.banks
        .iter()
        .filter_map(|&(alg, _)| {
            let mut lacking = extending.iter().filter(|e| e.digest(alg).is_none());
            let first = lacking.next()?;
            Some(IncompleteBank {
                alg,
                first_event: first.index,
                first_pcr: first.pcr,
                lacking: 1 + lacking.count(),
                extending: extending.len(),
            })
        })
        .collect()
}

pub(super) fn replay(log: &EventLog) -> Result<PcrBanks, ReplayError> {
    let incomplete = incomplete_banks(log);
    let unsupported: Vec<HashAlg> = log
        .banks
        .iter()
        .map(|(alg, _)| *alg)
        .filter(|alg| !alg.is_supported())
        .collect();
    let replayed: Vec<(HashAlg, usize)> = log
        .banks
        .iter()
        .copied()
        .filter(|(alg, _)| alg.is_supported() && !incomplete.iter().any(|b| b.alg == *alg))
        .collect();
    let mut out = PcrBanks {
        banks: replayed
            .iter()
            .map(|(alg, _)| (*alg, BTreeMap::new()))
            .collect(),
        incomplete,
        unsupported,
    };
    // Whether PCR 0 was extended or set: a StartupLocality must come before either, whatever
    // banks are replayed.
    let mut pcr0_touched = false;
    for event in &log.events {
        if !event.is_extended() {
            if let EventData::StartupLocality(locality) = event.decoded
                && event.pcr == 0
            {
                if !matches!(locality, 0 | 3 | 4) {
                    return Err(ReplayError::InvalidStartupLocality {
                        event: event.index,
                        locality,
                    });
                }
                if pcr0_touched {
                    return Err(ReplayError::LateStartupLocality { event: event.index });
                }
                pcr0_touched = true;
                for (alg, size) in &replayed {
                    let mut initial = vec![0u8; *size];
                    if let Some(last) = initial.last_mut() {
                        *last = locality;
                    }
                    out.banks.entry(*alg).or_default().insert(0, initial);
                }
            }
            continue;
        }
        pcr0_touched |= event.pcr == 0;
        for (alg, size) in &replayed {
            // Every extending event carries a digest of a complete bank: `incomplete_banks`
            // put any bank one lacks aside.
            let Some(digest) = event.digest(*alg) else {
                continue;
            };
            let pcr = out
                .banks
                .entry(*alg)
                .or_default()
                .entry(event.pcr)
                .or_insert_with(|| vec![0u8; *size]);
            alg.extend(pcr, digest);
        }
    }
    Ok(out)
}

/// What part of an event's data its digests cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataCoverage {
    /// The digest is the hash of the whole event data.
    Whole,
    /// The digest is the hash of the data without its trailing NUL (boot loaders logging C
    /// strings).
    WithoutTrailingNul,
    /// The digest is the hash of the text after this label (GRUB logs `grub_cmd: X` and
    /// `kernel_cmdline: X` with the digest of `X`); the label itself is not covered.
    TextAfterLabel(&'static str),
    /// The digest is the hash of the variable's value only, not the whole
    /// `UEFI_VARIABLE_DATA` (what many firmwares do for `EV_EFI_VARIABLE_BOOT`).
    VariableValue,
}

/// Whether an event's data is what its digests measured. The event type is not covered by
/// any digest, so a verifier should rely only on data for which this says `Matches`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataCheck {
    /// Every digest this crate can compute equals the hash of the data (or the part named).
    Matches(DataCoverage),
    /// The event's type says its digest is the hash of its data, and it is not (for the first
    /// bank named): the data is not what was measured.
    Mismatch(HashAlg),
    /// The digest is of something the log does not contain (a PE image, a firmware volume, a
    /// file a boot loader read), or of an algorithm this crate does not compute: the data is an
    /// unverifiable claim.
    NotCheckable,
    /// `EV_NO_ACTION`: not extended, so there is nothing to check.
    NotExtended,
}

impl Event {
    /// Check the data against the digests (see [`DataCheck`]). This hashes the data once per
    /// bank and candidate coverage; it is not done during parsing or replay.
    pub fn check_data(&self) -> DataCheck {
        if !self.is_extended() {
            return DataCheck::NotExtended;
        }
        let mut candidates: Vec<(DataCoverage, &[u8])> = vec![(DataCoverage::Whole, &self.data)];
        if self.event_type == EventType::IPL {
            let text = self.data.strip_suffix(&[0]).unwrap_or(&self.data);
            if text.len() != self.data.len() {
                candidates.push((DataCoverage::WithoutTrailingNul, text));
            }
            for label in IPL_LABELS {
                if let Some(rest) = text.strip_prefix(label.as_bytes()) {
                    candidates.push((DataCoverage::TextAfterLabel(label), rest));
                }
            }
        }
        if matches!(
            self.event_type,
            EventType::EFI_VARIABLE_BOOT | EventType::EFI_VARIABLE_BOOT2
        ) && let Ok((v, at)) = variable(&self.data)
        {
            candidates.push((
                DataCoverage::VariableValue,
                &self.data[at..at + v.data.len()],
            ));
        }
        let computable: Vec<_> = self
            .digests
            .iter()
            .filter(|d| d.alg.is_supported())
            .collect();
        if computable.is_empty() {
            return DataCheck::NotCheckable;
        }
        let mut first_mismatch = None;
        for (coverage, bytes) in candidates {
            let mismatch = computable
                .iter()
                .find(|d| d.alg.hash(&[bytes]).is_none_or(|h| h != d.digest))
                .map(|d| d.alg);
            match mismatch {
                None => return DataCheck::Matches(coverage),
                Some(alg) => {
                    first_mismatch.get_or_insert(alg);
                }
            }
        }
        match first_mismatch {
            Some(alg) if digest_is_of_data(self.event_type) => DataCheck::Mismatch(alg),
            _ => DataCheck::NotCheckable,
        }
    }
}

/// Labels GRUB puts before the text it measures in `EV_IPL` events (PCR 8).
const IPL_LABELS: [&str; 3] = ["grub_cmd: ", "kernel_cmdline: ", "module_cmdline: "];

/// Event types whose digest the PC Client Platform Firmware Profile defines as the hash of
/// the event data (or part of it).
fn digest_is_of_data(t: EventType) -> bool {
    matches!(
        t,
        EventType::SEPARATOR
            | EventType::ACTION
            | EventType::EFI_ACTION
            | EventType::OMIT_BOOT_DEVICE_EVENTS
            | EventType::S_CRTM_VERSION
            | EventType::EFI_VARIABLE_DRIVER_CONFIG
            | EventType::EFI_VARIABLE_BOOT
            | EventType::EFI_VARIABLE_BOOT2
            | EventType::EFI_VARIABLE_AUTHORITY
            | EventType::EFI_GPT_EVENT
    )
}
