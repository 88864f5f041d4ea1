//! Replay of the measurement log and its verification against a PCR value: the check every
//! verifier runs, and the write-ahead rule the daemon applies at start (docs/protocol.md).

use std::collections::BTreeMap;

use super::types::Record;
use crate::alg::sha256_extend;
use crate::error::VerifyError;

/// The SHA-256 PCR value that replaying `records` from all-zero gives. Uses each record's
/// digest as recorded, whether or not it matches the content.
pub fn replay(records: &[Record]) -> [u8; 32] {
    records
        .iter()
        .fold([0u8; 32], |pcr, r| sha256_extend(&pcr, &r.digest.0))
}

/// Replay per PCR index, for logs that name more than one PCR.
pub fn replay_by_pcr(records: &[Record]) -> BTreeMap<u32, [u8; 32]> {
    let mut out = BTreeMap::new();
    for r in records {
        let pcr = out.entry(r.pcr).or_insert([0u8; 32]);
        *pcr = sha256_extend(pcr, &r.digest.0);
    }
    out
}

/// What the daemon should do at start, given its log and the PCR (docs/protocol.md, write-ahead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAheadState {
    /// The whole log replays to the PCR.
    Consistent,
    /// All records but the last replay to the PCR: the last was written and fsynced but not
    /// extended. Extend record `index` with its digest, then finish or undo its action.
    ///
    /// With a one-record log and an all-zero PCR this is also what a fresh TPM startup looks
    /// like: the caller decides between the two with the reset and restart counts before
    /// acting on this answer.
    ExtendNext {
        /// Position of the record to extend (the last one).
        index: usize,
    },
}

/// Check that each record's position, PCR and digest are right; the first failure wins.
fn check_records(records: &[Record], pcr_index: u32) -> Result<(), VerifyError> {
    for (index, r) in records.iter().enumerate() {
        if r.recnum != index as u64 {
            return Err(VerifyError::RecnumOutOfSequence {
                index,
                recnum: r.recnum,
            });
        }
        if r.pcr != pcr_index {
            return Err(VerifyError::WrongPcr {
                index,
                pcr: r.pcr,
                expected: pcr_index,
            });
        }
        if !r.digest_matches() {
            return Err(VerifyError::DigestMismatch {
                index,
                recnum: r.recnum,
                event: r.content.event_name(),
            });
        }
    }
    Ok(())
}

/// The largest `k` such that records `0..k` replay to `pcr_value`, if any.
fn matching_prefix(records: &[Record], pcr_value: &[u8; 32]) -> Option<usize> {
    let mut pcr = [0u8; 32];
    let mut found = (pcr == *pcr_value).then_some(0);
    for (i, r) in records.iter().enumerate() {
        pcr = sha256_extend(&pcr, &r.digest.0);
        if pcr == *pcr_value {
            found = Some(i + 1);
        }
    }
    found
}

/// Verify a log against the value of PCR `pcr_index`: every record is in sequence, names the
/// PCR and carries the digest of its content, and the whole log replays to the value.
///
/// Errors, in this order: the first bad record; [`VerifyError::PcrAllZero`] for a non-empty
/// log; [`VerifyError::PrefixOnly`] when only records `0..k` replay to the value;
/// [`VerifyError::NoPrefixMatches`] otherwise.
pub fn verify_against_pcr(
    records: &[Record],
    pcr_index: u32,
    pcr_value: &[u8; 32],
) -> Result<(), VerifyError> {
    check_records(records, pcr_index)?;
    let total = records.len();
    match matching_prefix(records, pcr_value) {
        Some(k) if k == total => Ok(()),
        _ if *pcr_value == [0u8; 32] => Err(VerifyError::PcrAllZero { total }),
        Some(matched) => Err(VerifyError::PrefixOnly { matched, total }),
        None => Err(VerifyError::NoPrefixMatches { total }),
    }
}

/// The write-ahead rule as a pure function: [`WriteAheadState::Consistent`] if the log
/// replays to the PCR, [`WriteAheadState::ExtendNext`] if all but its last record do, and
/// otherwise the error [`verify_against_pcr`] gives.
pub fn write_ahead_state(
    records: &[Record],
    pcr_index: u32,
    pcr_value: &[u8; 32],
) -> Result<WriteAheadState, VerifyError> {
    check_records(records, pcr_index)?;
    let total = records.len();
    match matching_prefix(records, pcr_value) {
        Some(k) if k == total => Ok(WriteAheadState::Consistent),
        Some(k) if k + 1 == total => Ok(WriteAheadState::ExtendNext { index: k }),
        _ if *pcr_value == [0u8; 32] => Err(VerifyError::PcrAllZero { total }),
        Some(matched) => Err(VerifyError::PrefixOnly { matched, total }),
        None => Err(VerifyError::NoPrefixMatches { total }),
    }
}
