//! Reading and writing the measurement log's two encodings: JSON Lines on disk (one record per
//! `\n`-terminated line, as the daemon appends and fsyncs them) and a JSON array (as the
//! attestation endpoint serves them). The JSON Lines reader keeps every complete record and
//! reports a torn last line instead of hiding it.

use super::types::Record;
use crate::error::CelError;

/// Why the last line of a JSON Lines log is not a complete record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TornReason {
    /// The line has no terminating `\n`: the append was cut short (even if what is there
    /// happens to parse, the record was never completely written, so it was never extended).
    NoNewline,
    /// The line does not parse as a record.
    Unparseable(String),
}

/// A torn last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornRecord {
    /// 0-based line number (= the position the record would have had).
    pub line: usize,
    /// Byte offset where the line starts; truncating the file here removes it.
    pub offset: usize,
    /// Its length in bytes, including a `\n` if it has one.
    pub len: usize,
    /// What is wrong with it.
    pub reason: TornReason,
}

/// The outcome of reading a JSON Lines log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogRead {
    /// Every complete record, in order.
    pub records: Vec<Record>,
    /// The last line, if it is not a complete record.
    pub torn: Option<TornRecord>,
}

/// Read a JSON Lines measurement log. Every line but the last must be a record (else
/// [`CelError::CorruptLine`]); the last one is a record if it parses and ends in `\n`, and is
/// reported in [`LogRead::torn`] otherwise. Empty input is an empty log.
pub fn read_jsonl(bytes: &[u8]) -> Result<LogRead, CelError> {
    let mut out = LogRead::default();
    let mut offset = 0;
    let mut line = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let (body, len, terminated) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], i + 1, true),
            None => (rest, rest.len(), false),
        };
        let is_last = offset + len == bytes.len();
        let parsed = serde_json::from_slice::<Record>(body).map_err(|e| e.to_string());
        match (parsed, terminated, is_last) {
            (Ok(record), true, _) => out.records.push(record),
            (Ok(_), false, _) => {
                out.torn = Some(TornRecord {
                    line,
                    offset,
                    len,
                    reason: TornReason::NoNewline,
                });
            }
            (Err(reason), _, true) => {
                let reason = TornReason::Unparseable(reason);
                out.torn = Some(TornRecord {
                    line,
                    offset,
                    len,
                    reason,
                });
            }
            (Err(reason), _, false) => {
                return Err(CelError::CorruptLine {
                    line,
                    offset,
                    reason,
                });
            }
        }
        offset += len;
        line += 1;
    }
    Ok(out)
}

/// One record as a JSON Lines line: RFC 8785 canonical JSON followed by `\n`.
pub fn to_jsonl_line(record: &Record) -> Result<Vec<u8>, CelError> {
    let mut line = serde_jcs::to_vec(record).map_err(|e| CelError::Canonical {
        reason: e.to_string(),
    })?;
    line.push(b'\n');
    Ok(line)
}

/// Parse a JSON array of records.
pub fn parse_json_array(bytes: &[u8]) -> Result<Vec<Record>, CelError> {
    serde_json::from_slice(bytes).map_err(|e| CelError::BadArray {
        reason: e.to_string(),
    })
}

/// Records as a JSON array (RFC 8785 canonical).
pub fn to_json_array(records: &[Record]) -> Result<Vec<u8>, CelError> {
    serde_jcs::to_vec(records).map_err(|e| CelError::Canonical {
        reason: e.to_string(),
    })
}
