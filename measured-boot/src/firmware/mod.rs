//! Firmware event logs: the binary `binary_bios_measurements` format of the TCG PC Client
//! Platform Firmware Profile, both crypto-agile (`Spec ID Event03`, one digest per declared
//! bank) and legacy (SHA-1 only). [`EventLog::from_bytes`] parses the framing strictly (any
//! inconsistency is an error naming the event and offset) and decodes the data of common
//! event types leniently (data that does not fit its type becomes
//! [`EventData::Malformed`], never an error: the type is not covered by the digest, so it is
//! only a hint). An event of a crypto-agile log may carry digests of only some of the
//! declared banks (never of an undeclared one); [`EventLog::replay`] computes the PCR values
//! of the complete banks and names the incomplete ones; [`Event::check_data`] says whether an
//! event's data is what its digest measured.

mod data;
mod event_type;
mod parse;
mod replay;

pub use data::{
    DevicePath, DevicePathNode, EventData, FirmwareBlob, GptData, GptHeader, GptPartition, Guid,
    ImageLoadEvent, SpecIdAlgorithm, SpecIdEvent, UefiVariableData,
};
pub use event_type::EventType;
pub use replay::{DataCheck, DataCoverage, IncompleteBank, PcrBanks};

use crate::alg::HashAlg;
use crate::error::FirmwareLogError;

/// Which of the two binary formats a log is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// TCG crypto-agile format: a `Spec ID Event03` header, then `TCG_PCR_EVENT2` records with
    /// one digest per declared bank.
    CryptoAgile,
    /// Legacy format: `TCG_PCClientPCREvent` records with a SHA-1 digest each.
    Sha1Legacy,
}

/// One digest of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDigest {
    /// The bank.
    pub alg: HashAlg,
    /// The digest, of the size the log declares for the bank.
    pub digest: Vec<u8>,
}

/// One event of a firmware log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Position in the log from 0 (the crypto-agile header event is event 0).
    pub index: usize,
    /// Byte offset where the event starts.
    pub offset: usize,
    /// The PCR the event extends (or, for `EV_NO_ACTION`, names).
    pub pcr: u32,
    /// The event type: a hint for reading the data, not covered by the digest.
    pub event_type: EventType,
    /// The digests, one per bank, in log order.
    pub digests: Vec<EventDigest>,
    /// The raw event data.
    pub data: Vec<u8>,
    /// The data decoded according to `event_type`.
    pub decoded: EventData,
}

impl Event {
    /// The digest for `alg`, if the event carries one.
    pub fn digest(&self, alg: HashAlg) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|d| d.alg == alg)
            .map(|d| d.digest.as_slice())
    }

    /// Whether the event is extended into its PCR (every type but `EV_NO_ACTION`).
    pub fn is_extended(&self) -> bool {
        self.event_type != EventType::NO_ACTION
    }
}

/// A parsed firmware event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// The binary format.
    pub format: LogFormat,
    /// The crypto-agile header, if the log has one.
    pub spec_id: Option<SpecIdEvent>,
    /// The banks the log declares, in declaration order, with digest sizes (SHA-1 alone for a
    /// legacy log). An event may carry digests of only some of them: see
    /// [`EventLog::incomplete_banks`].
    pub banks: Vec<(HashAlg, usize)>,
    /// Every event, including the header event of a crypto-agile log.
    pub events: Vec<Event>,
}

impl EventLog {
    /// Parse a log from bytes, detecting its format. A crypto-agile log starts with an
    /// `EV_NO_ACTION` event in PCR 0 whose data begins with `Spec ID Event03\0`; anything else
    /// is read as a legacy SHA-1 log.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FirmwareLogError> {
        parse::parse(bytes)
    }

    /// Replay every complete bank the log declares and name the incomplete ones: see
    /// [`PcrBanks`].
    pub fn replay(&self) -> Result<PcrBanks, crate::error::ReplayError> {
        replay::replay(self)
    }

    /// The declared banks that some extending event carries no digest for, in declaration
    /// order (without replaying: this cannot fail).
    pub fn incomplete_banks(&self) -> Vec<IncompleteBank> {
        replay::incomplete_banks(self)
    }
}
