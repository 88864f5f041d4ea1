//! The daemon's measurement log (docs/protocol.md): TCG Canonical Event Log records in JSON form,
//! one per extend of the application PCR, with typed Arbiter content.
//!
//! A record's digest is the function's measurement itself for `function_loaded` (so a party
//! can compare it with `sha256sum` of the source it reviewed) and `sha256(JCS(content))`
//! (RFC 8785) for every other event. The daemon builds records with [`Record::new`], which
//! computes the digest; a verifier reads them with [`read_jsonl`] or [`parse_json_array`] and
//! checks them with [`verify_against_pcr`]; the daemon's start-up check is
//! [`write_ahead_state`].
//!
//! Parsing is strict so that a record's content re-serialises to exactly the canonical JSON
//! that was hashed: unknown fields are refused, hex must be lowercase, base64 canonical, and
//! integers below 2^53 (the range RFC 8785 numbers represent exactly).

mod lookup;
mod reader;
mod types;
mod verify;

pub use lookup::{find_instance_created, instance_destroyed};
pub use reader::{
    LogRead, TornReason, TornRecord, parse_json_array, read_jsonl, to_json_array, to_jsonl_line,
};
pub use types::{
    Base64Bytes, DaemonStarted, EpochReset, EventContent, FunctionLoaded, HexBytes, Id,
    InstanceCreated, InstanceDestroyed, Record, Sha256Digest, TlsKeyReplaced,
};
pub use verify::{WriteAheadState, replay, replay_by_pcr, verify_against_pcr, write_ahead_state};

/// The largest integer RFC 8785 (I-JSON numbers, IEEE 754 doubles) represents exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
