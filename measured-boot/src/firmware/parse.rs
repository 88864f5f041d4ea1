//! Framing of firmware event logs: the legacy `TCG_PCClientPCREvent` and crypto-agile
//! `TCG_PCR_EVENT2` records and the `Spec ID Event03` header. Strict: sizes are checked
//! against the bytes left before anything is allocated, and every error names the event.

use super::data::{self, SpecIdEvent};
use super::{Event, EventDigest, EventLog, EventType, LogFormat};
use crate::alg::HashAlg;
use crate::error::FirmwareLogError;

const SPEC_ID_03: &[u8; 16] = b"Spec ID Event03\0";

/// A position in the input while reading one event.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    event: usize,
    start: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, field: &'static str) -> Result<&'a [u8], FirmwareLogError> {
        let available = self.buf.len() - self.pos;
        match usize::try_from(n) {
            Ok(len) if len <= available => {
                let out = &self.buf[self.pos..self.pos + len];
                self.pos += len;
                Ok(out)
            }
            _ => Err(FirmwareLogError::Truncated {
                event: self.event,
                offset: self.start,
                field,
                at: self.pos,
                needed: n,
                available,
            }),
        }
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, FirmwareLogError> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, FirmwareLogError> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn begin(&mut self, event: usize) {
        self.event = event;
        self.start = self.pos;
    }

    fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }
}

/// Read one legacy (SHA-1) event at the reader's position.
fn legacy_event(r: &mut Reader<'_>) -> Result<Event, FirmwareLogError> {
    let pcr = r.u32("pcrIndex")?;
    let event_type = EventType(r.u32("eventType")?);
    let digest = r.take(20, "digest")?.to_vec();
    let size = r.u32("eventSize")?;
    let data = r.take(u64::from(size), "event data")?.to_vec();
    let decoded = data::decode(event_type, &data);
    Ok(Event {
        index: r.event,
        offset: r.start,
        pcr,
        event_type,
        digests: vec![EventDigest {
            alg: HashAlg::Sha1,
            digest,
        }],
        data,
        decoded,
    })
}

/// Read one crypto-agile event at the reader's position. It may carry digests of any subset
/// of the declared banks (real firmware declares banks it does not log; which banks are
/// complete is the replay's concern), but never of an undeclared algorithm or one twice.
fn agile_event(r: &mut Reader<'_>, banks: &[(HashAlg, usize)]) -> Result<Event, FirmwareLogError> {
    let pcr = r.u32("pcrIndex")?;
    let event_type = EventType(r.u32("eventType")?);
    let count = r.u32("digest count")?;
    if count as usize > banks.len() {
        return Err(FirmwareLogError::TooManyDigests {
            event: r.event,
            offset: r.start,
            count,
            declared: banks.len(),
        });
    }
    let mut digests: Vec<EventDigest> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let alg_id = r.u16("digest algorithm")?;
        let Some(&(alg, size)) = banks.iter().find(|(a, _)| a.id() == alg_id) else {
            return Err(FirmwareLogError::UndeclaredAlgorithm {
                event: r.event,
                offset: r.start,
                alg_id,
            });
        };
        if digests.iter().any(|d| d.alg == alg) {
            return Err(FirmwareLogError::DuplicateDigest {
                event: r.event,
                offset: r.start,
                alg,
            });
        }
        let digest = r.take(size as u64, "digest")?.to_vec();
        digests.push(EventDigest { alg, digest });
    }
    let size = r.u32("eventSize")?;
    let data = r.take(u64::from(size), "event data")?.to_vec();
    let decoded = data::decode(event_type, &data);
    Ok(Event {
        index: r.event,
        offset: r.start,
        pcr,
        event_type,
        digests,
        data,
        decoded,
    })
}

/// The banks a Spec ID event declares, checked: at least one, no repeats, and sizes that
/// match the algorithms this crate knows.
fn banks_of(spec: &SpecIdEvent) -> Result<Vec<(HashAlg, usize)>, FirmwareLogError> {
    let bad = |reason: String| FirmwareLogError::SpecId { reason };
    if spec.algorithms.is_empty() {
        return Err(bad("declares no algorithms".into()));
    }
    let mut banks: Vec<(HashAlg, usize)> = Vec::with_capacity(spec.algorithms.len());
    for a in &spec.algorithms {
        let alg = HashAlg::from_id(a.algorithm_id);
        let size = usize::from(a.digest_size);
        if let Some(known) = alg.known_size()
            && known != size
        {
            return Err(bad(format!(
                "{alg} declared with {size}-byte digests, not {known}"
            )));
        }
        if size == 0 {
            return Err(bad(format!("{alg} declared with 0-byte digests")));
        }
        if banks.iter().any(|(b, _)| *b == alg) {
            return Err(bad(format!("{alg} declared twice")));
        }
        banks.push((alg, size));
    }
    Ok(banks)
}

/// Parse a whole log.
pub(super) fn parse(bytes: &[u8]) -> Result<EventLog, FirmwareLogError> {
    if bytes.is_empty() {
        return Err(FirmwareLogError::Empty);
    }
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        event: 0,
        start: 0,
    };
    let first = legacy_event(&mut r)?;
    let agile = first.pcr == 0
        && first.event_type == EventType::NO_ACTION
        && first.data.starts_with(SPEC_ID_03);
    let mut events = Vec::new();
    let (format, spec_id, banks) = if agile {
        let spec = match &first.decoded {
            data::EventData::SpecId(spec) => spec.clone(),
            data::EventData::Malformed(reason) => {
                return Err(FirmwareLogError::SpecId {
                    reason: reason.clone(),
                });
            }
            _ => {
                return Err(FirmwareLogError::SpecId {
                    reason: "header event not decoded as a Spec ID event".into(),
                });
            }
        };
        let banks = banks_of(&spec)?;
        (LogFormat::CryptoAgile, Some(spec), banks)
    } else {
        (LogFormat::Sha1Legacy, None, vec![(HashAlg::Sha1, 20)])
    };
    events.push(first);
    while !r.at_end() {
        r.begin(events.len());
        let event = match format {
            LogFormat::CryptoAgile => agile_event(&mut r, &banks)?,
            LogFormat::Sha1Legacy => legacy_event(&mut r)?,
        };
        events.push(event);
    }
    Ok(EventLog {
        format,
        spec_id,
        banks,
        events,
    })
}
