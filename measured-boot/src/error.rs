//! The crate's one public error type, [`Error`], and the families of failure nested in it.
//! Every error says where it happened: the event index and byte offset in a firmware log, the
//! line and byte offset in a measurement-log file, or the record index in a log being verified.

use crate::alg::HashAlg;

/// Any failure of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A firmware event log could not be parsed.
    #[error("firmware event log: {0}")]
    FirmwareLog(#[from] FirmwareLogError),
    /// A parsed firmware event log could not be replayed.
    #[error("firmware event log replay: {0}")]
    Replay(#[from] ReplayError),
    /// A measurement log (CEL-JSON) could not be read or built.
    #[error("measurement log: {0}")]
    Cel(#[from] CelError),
    /// A measurement log does not match a PCR value.
    #[error("measurement log verification: {0}")]
    Verify(#[from] VerifyError),
}

/// Why a firmware event log (`binary_bios_measurements`) could not be parsed. The event
/// index counts from 0 and includes the leading Spec ID event, as `tpm2_eventlog` numbers them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FirmwareLogError {
    /// The input is empty.
    #[error("the log is empty")]
    Empty,
    /// The log ends inside an event.
    #[error(
        "event {event} at offset {offset}: truncated in {field} \
         (needs {needed} bytes at offset {at}, {available} left)"
    )]
    Truncated {
        /// Index of the event.
        event: usize,
        /// Byte offset where the event starts.
        offset: usize,
        /// The field being read.
        field: &'static str,
        /// Byte offset of the field.
        at: usize,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the input.
        available: usize,
    },
    /// The `Spec ID Event03` header is malformed.
    #[error("Spec ID event: {reason}")]
    SpecId {
        /// What is wrong.
        reason: String,
    },
    /// An event carries a digest of an algorithm the Spec ID event did not declare, so its
    /// size (and everything after it) is unknown.
    #[error("event {event} at offset {offset}: digest of undeclared algorithm {alg_id:#06x}")]
    UndeclaredAlgorithm {
        /// Index of the event.
        event: usize,
        /// Byte offset where the event starts.
        offset: usize,
        /// The `TPM_ALG_ID` found.
        alg_id: u16,
    },
    /// An event carries two digests of one algorithm.
    #[error("event {event} at offset {offset}: two {alg} digests")]
    DuplicateDigest {
        /// Index of the event.
        event: usize,
        /// Byte offset where the event starts.
        offset: usize,
        /// The repeated algorithm.
        alg: HashAlg,
    },
    /// An event claims more digests than the log declares banks.
    #[error("event {event} at offset {offset}: {count} digests but {declared} banks declared")]
    TooManyDigests {
        /// Index of the event.
        event: usize,
        /// Byte offset where the event starts.
        offset: usize,
        /// The digest count in the event.
        count: u32,
        /// The number of banks the Spec ID event declares.
        declared: usize,
    },
}

/// Why a parsed firmware log could not be replayed into PCR values. (A bank some events carry
/// no digest for is not an error: it is reported incomplete, see `firmware::PcrBanks`.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// A StartupLocality event came after PCR 0 was already extended, or twice.
    #[error("event {event}: StartupLocality after PCR 0 was already extended or set")]
    LateStartupLocality {
        /// Index of the event.
        event: usize,
    },
    /// A StartupLocality event names a locality a TPM cannot start from (only 0, 3 and 4).
    #[error("event {event}: StartupLocality {locality} is not 0, 3 or 4")]
    InvalidStartupLocality {
        /// Index of the event.
        event: usize,
        /// The locality found.
        locality: u8,
    },
}

/// Why a measurement log (CEL-JSON records, as JSON Lines or a JSON array) could not be read,
/// or a record could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CelError {
    /// A line before the last one is not a valid record: the file is corrupt, not torn.
    #[error("line {line} (offset {offset}): not a valid record: {reason}")]
    CorruptLine {
        /// 0-based line number (= the record's position).
        line: usize,
        /// Byte offset where the line starts.
        offset: usize,
        /// The parser's message.
        reason: String,
    },
    /// A JSON array of records did not parse.
    #[error("not a JSON array of records: {reason}")]
    BadArray {
        /// The parser's message.
        reason: String,
    },
    /// A record's content holds an integer that RFC 8785 (I-JSON) cannot represent exactly.
    #[error("field {field} = {value} is above 2^53 - 1, which JCS cannot represent exactly")]
    IntegerTooLarge {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// Canonicalising the content (RFC 8785) failed.
    #[error("canonical JSON: {reason}")]
    Canonical {
        /// The serializer's message.
        reason: String,
    },
}

/// Why a measurement log does not verify against a PCR value. Records are counted by their
/// position in the log, from 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A record's digest is not the digest of its content.
    #[error("record {index} (recnum {recnum}, {event}): digest does not match its content")]
    DigestMismatch {
        /// Position of the record.
        index: usize,
        /// Its `recnum`.
        recnum: u64,
        /// Its event type.
        event: &'static str,
    },
    /// A record's `recnum` is not its position in the log.
    #[error("record {index}: recnum is {recnum}, expected {index}")]
    RecnumOutOfSequence {
        /// Position of the record.
        index: usize,
        /// Its `recnum`.
        recnum: u64,
    },
    /// A record names another PCR than the one verified.
    #[error("record {index}: PCR {pcr}, expected PCR {expected}")]
    WrongPcr {
        /// Position of the record.
        index: usize,
        /// The PCR the record names.
        pcr: u32,
        /// The PCR being verified.
        expected: u32,
    },
    /// The PCR equals the replay of only the first `matched` records: the log has records
    /// the PCR never saw (or lost ones it did).
    #[error(
        "the PCR equals the replay of records 0..{matched} only, but the log has {total} records"
    )]
    PrefixOnly {
        /// How many records replay to the PCR.
        matched: usize,
        /// How many records the log has.
        total: usize,
    },
    /// No prefix of the log, not even the empty one, replays to the PCR.
    #[error("no prefix of the {total}-record log replays to the PCR")]
    NoPrefixMatches {
        /// How many records the log has.
        total: usize,
    },
    /// The PCR is all-zero (never extended since a TPM startup, or reset) but the log is not
    /// empty.
    #[error("the PCR is all-zero but the log has {total} records")]
    PcrAllZero {
        /// How many records the log has.
        total: usize,
    },
}
