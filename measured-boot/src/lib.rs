//! Measured boot for Arbiter: the library that both the daemon and every verifier use to turn
//! event logs into PCR values and back. Pure Rust over bytes: no TPM, no file or network I/O.
//!
//! - [`firmware`]: firmware event logs (`binary_bios_measurements`, crypto-agile or legacy
//!   SHA-1), typed event data, per-bank replay, and a check of each event's data against its
//!   digest (the event type is never trusted: it is not covered by the digest).
//! - [`cel`]: the daemon's measurement log (docs/protocol.md): typed CEL-JSON records, the digest
//!   rule, a JSON Lines reader that reports a torn last record, replay, verification against a PCR
//!   and the write-ahead rule.
//! - [`LogFile`]: sniff which of the two a file holds.
#![forbid(unsafe_code)]

pub mod alg;
pub mod cel;
pub mod error;
pub mod firmware;

pub use alg::HashAlg;
pub use error::{CelError, Error, FirmwareLogError, ReplayError, VerifyError};

/// A log file of either kind, as the CLI accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFile {
    /// A binary firmware event log.
    Firmware(firmware::EventLog),
    /// A measurement log read from JSON Lines (possibly with a torn last line).
    CelLines(cel::LogRead),
    /// A measurement log read from a JSON array.
    CelArray(Vec<cel::Record>),
}

impl LogFile {
    /// Parse `bytes`: a JSON array if the first non-blank byte is `[`, JSON Lines if it is
    /// `{`, a binary firmware log otherwise (whose first byte, the low byte of PCR index 0, is
    /// 0x00).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => Ok(Self::CelArray(cel::parse_json_array(bytes)?)),
            Some(b'{') => Ok(Self::CelLines(cel::read_jsonl(bytes)?)),
            _ => Ok(Self::Firmware(firmware::EventLog::from_bytes(bytes)?)),
        }
    }
}
