//! Replay of a firmware log into PCR values, bank by bank, and the check of each event's data
//! against its digests. Replay follows the TPM: every event but `EV_NO_ACTION` extends its
//! PCR with its digest (`PCR = H(PCR || digest)`); PCR 0 starts at the locality a
//! `StartupLocality` event names (0…03 after a locality-3 startup), everything else at zero.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::data::{EventData, variable};
use super::{Event, EventLog, EventType};
use crate::alg::HashAlg;
use crate::error::ReplayError;

/// The PCR values a replay computes, per bank and per PCR. Only PCRs that some event
/// extended (or that a StartupLocality event set) appear, as in `tpm2_eventlog`'s output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrBanks {
    /// bank → PCR index → value.
    pub banks: BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>>,
    /// Banks the log declares that this crate cannot compute (e.g. SM3): parsed, not replayed.
    pub unsupported: Vec<HashAlg>,
}

impl PcrBanks {
    /// The value of one PCR in one bank, if the log touched it.
    pub fn get(&self, alg: HashAlg, pcr: u32) -> Option<&[u8]> {
        self.banks.get(&alg)?.get(&pcr).map(Vec::as_slice)
    }

    /// `{"pcrs": {"<bank>": {"<pcr>": "<hex>"}}}`: the shape `tpm2_eventlog`-derived reference
    /// files use, so that outside tools can diff the two.
    pub fn to_json(&self) -> Value {
        let mut banks = Map::new();
        for (alg, pcrs) in &self.banks {
            let m: Map<String, Value> = pcrs
                .iter()
                .map(|(i, v)| (i.to_string(), Value::String(hex::encode(v))))
                .collect();
            banks.insert(alg.name(), Value::Object(m));
        }
        json!({ "pcrs": banks })
    }
}

pub(super) fn replay(log: &EventLog) -> Result<PcrBanks, ReplayError> {
    let (supported, unsupported): (Vec<_>, Vec<_>) = log
        .banks
        .iter()
        .copied()
        .partition(|(alg, _)| alg.is_supported());
    let mut out = PcrBanks {
        banks: supported
            .iter()
            .map(|(alg, _)| (*alg, BTreeMap::new()))
            .collect(),
        unsupported: unsupported.into_iter().map(|(alg, _)| alg).collect(),
    };
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
                for (alg, size) in &supported {
                    let pcrs = out.banks.entry(*alg).or_default();
                    if pcrs.contains_key(&0) {
                        return Err(ReplayError::LateStartupLocality { event: event.index });
                    }
                    let mut initial = vec![0u8; *size];
                    if let Some(last) = initial.last_mut() {
                        *last = locality;
                    }
                    pcrs.insert(0, initial);
                }
            }
            continue;
        }
        for (alg, size) in &supported {
            let digest = event.digest(*alg).ok_or(ReplayError::MissingDigest {
                event: event.index,
                pcr: event.pcr,
                alg: *alg,
            })?;
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
