//! The manifest (docs/manifest.md): what the parties of one instance agreed to — the function by
//! measurement, who the parties are, who may provide which input, when evaluation
//! happens, who reads the result, and when everything is destroyed.
//!
//! A manifest arrives as JSON (the CLI also converts TOML, [`Manifest::toml_to_json`]).
//! [`Manifest::from_json_bytes`] and [`Manifest::from_json_value`] check it completely and
//! return either a [`ValidatedManifest`] — the typed [`Manifest`], the JSON exactly as
//! submitted and its `manifest_sha256` — or every problem found, each naming its field
//! by JSON pointer (RFC 6901) and saying why.
//!
//! # The JSON shape
//!
//! ```json
//! {
//!   "name": "customer overlap 2026-Q4",
//!   "function": { "sha256": "<64 lowercase hex: the function's measurement>" },
//!   "parties": [ { "name": "acme", "identity": "<64 lowercase hex>" } ],
//!   "slots": {
//!     "customers_a": {
//!       "providers": ["<identity>"],
//!       "provide": "provide_once",
//!       "type": "array"
//!     }
//!   },
//!   "trigger": { "kind": "threshold", "k": 2 },
//!   "evaluators": [],
//!   "window": { "opens": "2026-10-01T00:00:00Z", "closes": "2026-10-31T00:00:00Z",
//!               "resubmission": "reject" },
//!   "readers": { "<identity>": "result" },
//!   "approval": "implicit",
//!   "rounds": 1,
//!   "destruction": { "policy": "after_first_read", "destroyers": ["<identity>"] },
//!   "limits": { "operations": 10000000, "memory_bytes": 268435456, "wall_time_ms": 10000 },
//!   "seeded_rng": false
//! }
//! ```
//!
//! - `name` (optional): free text, at most 200 characters.
//! - `function.sha256`: the function's measurement, `sha256(source bytes)`.
//! - `parties`: at least one; names (1–200 characters) and identities (docs/protocol.md,
//!   identities: SHA-256 of the party's TLS client certificate SubjectPublicKeyInfo, 64 lowercase hex) unique.
//! - `slots`: at least one; names match `^[a-z][a-z0-9_]{0,63}$`; each has a non-empty
//!   list of distinct `providers`, `provide` (`provide_once` | `provide_each_time`) and an
//!   optional `type` (`any` (default) | `string` | `integer` | `number` | `boolean` |
//!   `array` | `object`).
//! - `trigger`: `{"kind":"all"}`, `{"kind":"threshold","k":k}` with 1 ≤ k ≤ number of
//!   slots, or `{"kind":"explicit"}`.
//! - `evaluators`: required and non-empty when the trigger is `explicit`, empty or absent
//!   otherwise.
//! - `window` (optional): `opens` and `closes` (optional RFC 3339 timestamps in UTC ending
//!   in `Z`, `closes` after `opens`), `resubmission` (`first` | `last` | `reject`, default
//!   `reject`).
//! - `readers`: at least one; identity → `result` | `status`.
//! - `approval`: `implicit` (default) | `explicit`.
//! - `rounds`: integer ≥ 1, the maximum number of evaluation rounds (default 1).
//! - `destruction`: `policy` (`after_evaluation` | `after_first_read` | `at` |
//!   `on_request`); `at` (a timestamp) is required with, and only allowed with, policy
//!   `at`; `destroyers` (distinct identities) are required non-empty with `on_request` and
//!   optional otherwise — a destroyer may always ask for early destruction.
//! - `limits` (optional; see [`Limits`] for defaults and bounds): `operations`,
//!   `memory_bytes`, `wall_time_ms`, `max_string_bytes`, `max_array_len`, `max_map_len`,
//!   `max_call_depth`.
//! - `seeded_rng` (optional, default `false`): grants the script a deterministic RNG
//!   seeded per instance.
//!
//! Every identity used (providers, evaluators, readers, destroyers) must be one of the
//! parties' identities. Numbers must be integers below 2^53: a float anywhere (also
//! `1.0` or `1e3`) is refused at its pointer. Unknown fields are refused, and so are
//! duplicate keys in the JSON text.
//!
//! `manifest_sha256` is `sha256(JCS(manifest))` of the JSON *as submitted* (docs/protocol.md, the
//! manifest digest), not
//! of any re-serialised form: defaults are not filled in and key order does not matter.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

mod toml;
mod validate;

pub use validate::{MAX_PARTIES, MAX_READERS, MAX_SAFE_INTEGER, MAX_SLOTS};

/// One problem with a manifest: the field, as a JSON pointer (RFC 6901) into the
/// submitted document (`""` for the whole document), and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ManifestProblem {
    /// JSON pointer to the offending field, e.g. `/slots/customers_a/providers/0`.
    pub pointer: String,
    /// Why it was refused.
    pub reason: String,
}

impl ManifestProblem {
    pub(crate) fn new(pointer: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "(document): {}", self.reason)
        } else {
            write!(f, "{}: {}", self.pointer, self.reason)
        }
    }
}

/// Defines a string newtype that can only hold values `$check` accepts; it
/// (de)serialises as a plain JSON string.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:path, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                if $check(&value) {
                    Ok(Self(value))
                } else {
                    Err(format!("not {}: {value:?}", $what))
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(value: &str) -> Result<Self, String> {
                Self::try_from(value.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

/// Whether `s` is 64 lowercase hex characters (a SHA-256 digest in the hex of docs/protocol.md,
/// encodings).
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` is a slot name: `^[a-z][a-z0-9_]{0,63}$`.
pub fn is_slot_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && s.len() <= 64
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

checked_string!(
    /// An identity (docs/protocol.md, identities): lowercase hex of the SHA-256 of a TLS client
    /// certificate's SubjectPublicKeyInfo, 64 characters.
    Identity,
    is_sha256_hex,
    "an identity (64 lowercase hex characters)"
);

checked_string!(
    /// A SHA-256 digest as 64 lowercase hex characters (e.g. a function measurement).
    Sha256Hex,
    is_sha256_hex,
    "a SHA-256 digest (64 lowercase hex characters)"
);

checked_string!(
    /// A slot name: `^[a-z][a-z0-9_]{0,63}$`.
    SlotName,
    is_slot_name,
    "a slot name ([a-z][a-z0-9_]{0,63})"
);

impl Sha256Hex {
    /// The digest's 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        // The constructor admits only 64 hex characters, so this cannot fail; should it,
        // the all-zero digest matches no real measurement.
        if hex::decode_to_slice(&self.0, &mut out).is_err() {
            out = [0u8; 32];
        }
        out
    }
}

/// A point in time from a manifest: RFC 3339, UTC, written with `Z` (docs/protocol.md, encodings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Parses an RFC 3339 timestamp that ends in `Z`.
    ///
    /// # Errors
    /// A message saying why the text is not such a timestamp.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.ends_with('Z') || text.as_bytes().get(10) != Some(&b'T') {
            return Err(format!(
                "timestamp {text:?} must be RFC 3339 in UTC, like 2026-10-01T00:00:00Z (with 'T' and ending in 'Z')"
            ));
        }
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map(Self)
            .map_err(|e| format!("timestamp {text:?} is not RFC 3339: {e}"))
    }

    /// The time as a `time::OffsetDateTime` (offset UTC).
    pub fn get(&self) -> OffsetDateTime {
        self.0
    }

    /// A timestamp from an `OffsetDateTime`, converted to UTC.
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        Self(at.to_offset(time::UtcOffset::UTC))
    }

    /// RFC 3339 text with `Z`, e.g. `2026-10-01T00:00:00Z`.
    pub fn to_rfc3339(&self) -> String {
        // Formatting a UTC time with a four-digit year as RFC 3339 cannot fail; years
        // outside 0..=9999 do not parse in the first place.
        self.0
            .to_offset(time::UtcOffset::UTC)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }
}

impl TryFrom<String> for Timestamp {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<Timestamp> for String {
    fn from(value: Timestamp) -> String {
        value.to_rfc3339()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// The function the parties agreed to, by measurement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionRef {
    /// `sha256(source bytes exactly as uploaded)`.
    pub sha256: Sha256Hex,
}

/// A party: a display name and the identity it authenticates with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    /// A name for people (unique within the manifest).
    pub name: String,
    /// The party's identity (unique within the manifest).
    pub identity: Identity,
}

/// Whether a slot's input is provided once for all rounds or anew for every round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provide {
    /// Provided once; persists across rounds until the instance is destroyed.
    ProvideOnce,
    /// Provided for each round; deleted after every round.
    ProvideEachTime,
}

/// The JSON type a slot's (decrypted, JSON-decoded) input must have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// Any JSON value.
    #[default]
    Any,
    /// A JSON string.
    String,
    /// A JSON number without fraction or exponent that fits an `i64` or `u64`.
    Integer,
    /// Any JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
}

impl ValueType {
    /// Whether a value of `kind` (from [`crate::jcs::raw_kind`], which inspects JSON text
    /// without parsing it into a value) has this type; the same answer as
    /// [`ValueType::accepts`] gives for the parsed value.
    pub fn accepts_kind(self, kind: crate::jcs::RawKind) -> bool {
        use crate::jcs::RawKind;
        match self {
            Self::Any => true,
            Self::String => kind == RawKind::String,
            Self::Integer => kind == RawKind::Integer,
            Self::Number => matches!(kind, RawKind::Integer | RawKind::Number),
            Self::Boolean => kind == RawKind::Boolean,
            Self::Array => kind == RawKind::Array,
            Self::Object => kind == RawKind::Object,
        }
    }

    /// Whether `value` has this type.
    pub fn accepts(self, value: &serde_json::Value) -> bool {
        use serde_json::Value;
        match self {
            Self::Any => true,
            Self::String => value.is_string(),
            Self::Integer => value.is_i64() || value.is_u64(),
            Self::Number => value.is_number(),
            Self::Boolean => value.is_boolean(),
            Self::Array => value.is_array(),
            Self::Object => matches!(value, Value::Object(_)),
        }
    }
}

/// An input slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    /// The identities allowed to provide this input (non-empty, distinct, all parties).
    pub providers: Vec<Identity>,
    /// Once for all rounds, or each round.
    pub provide: Provide,
    /// The JSON type the input must have (default `any`).
    #[serde(default, rename = "type")]
    pub value_type: ValueType,
}

/// When evaluation happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// Automatically once every slot is filled.
    All,
    /// Automatically once `k` slots are filled (1 ≤ k ≤ number of slots).
    Threshold {
        /// Number of filled slots that triggers evaluation.
        k: u64,
    },
    /// On a call by one of the manifest's `evaluators`.
    Explicit,
}

/// What happens when a provider submits again to a slot it already filled in a round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resubmission {
    /// The first submission stays; later ones are refused.
    First,
    /// The last submission replaces earlier ones.
    Last,
    /// A second submission is an error (the default).
    #[default]
    Reject,
}

/// When inputs are accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Inputs are refused before this time (none: from creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens: Option<Timestamp>,
    /// Inputs are refused from this time on (none: until destruction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes: Option<Timestamp>,
    /// How a second submission to the same slot is treated.
    #[serde(default)]
    pub resubmission: Resubmission,
}

/// What a reader may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReaderRole {
    /// The signed result, output included.
    Result,
    /// Only that evaluation happened, and when.
    Status,
}

/// Whether providing an input approves the manifest, or every party must approve first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// Providing an input approves (the default).
    #[default]
    Implicit,
    /// Every party must approve before any input is accepted.
    Explicit,
}

/// When an instance is destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestructionPolicy {
    /// Right after the (last) evaluation.
    AfterEvaluation,
    /// After the result is first read.
    AfterFirstRead,
    /// At a deadline.
    At(Timestamp),
    /// When one of the `destroyers` asks.
    OnRequest,
}

/// The destruction policy and who may ask for destruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawDestruction", into = "RawDestruction")]
pub struct Destruction {
    /// When the instance is destroyed.
    pub policy: DestructionPolicy,
    /// Identities that may ask for (early) destruction; non-empty with `OnRequest`.
    pub destroyers: Vec<Identity>,
}

/// The JSON form of [`Destruction`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestruction {
    policy: RawDestructionPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    destroyers: Vec<Identity>,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawDestructionPolicy {
    AfterEvaluation,
    AfterFirstRead,
    At,
    OnRequest,
}

impl TryFrom<RawDestruction> for Destruction {
    type Error = String;
    fn try_from(raw: RawDestruction) -> Result<Self, String> {
        let policy = match (raw.policy, raw.at) {
            (RawDestructionPolicy::At, Some(at)) => DestructionPolicy::At(at),
            (RawDestructionPolicy::At, None) => {
                return Err("policy \"at\" requires \"at\"".to_owned());
            }
            (_, Some(_)) => return Err("\"at\" is only allowed with policy \"at\"".to_owned()),
            (RawDestructionPolicy::AfterEvaluation, None) => DestructionPolicy::AfterEvaluation,
            (RawDestructionPolicy::AfterFirstRead, None) => DestructionPolicy::AfterFirstRead,
            (RawDestructionPolicy::OnRequest, None) => DestructionPolicy::OnRequest,
        };
        if policy == DestructionPolicy::OnRequest && raw.destroyers.is_empty() {
            return Err("policy \"on_request\" requires destroyers".to_owned());
        }
        Ok(Self {
            policy,
            destroyers: raw.destroyers,
        })
    }
}

impl From<Destruction> for RawDestruction {
    fn from(d: Destruction) -> Self {
        let (policy, at) = match d.policy {
            DestructionPolicy::AfterEvaluation => (RawDestructionPolicy::AfterEvaluation, None),
            DestructionPolicy::AfterFirstRead => (RawDestructionPolicy::AfterFirstRead, None),
            DestructionPolicy::At(at) => (RawDestructionPolicy::At, Some(at)),
            DestructionPolicy::OnRequest => (RawDestructionPolicy::OnRequest, None),
        };
        Self {
            policy,
            at,
            destroyers: d.destroyers,
        }
    }
}

/// Resource limits of one evaluation (docs/manifest.md, limits). Every field is optional in JSON;
/// the defaults and bounds are the `DEFAULT_*`, `MIN_*` and `MAX_*` constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Rhai operations (default 10,000,000; 1..=1,000,000,000).
    pub operations: u64,
    /// Address-space limit of the evaluation process in bytes (default 256 MiB;
    /// 16 MiB..=4 GiB).
    pub memory_bytes: u64,
    /// Wall-clock deadline in milliseconds (default 10,000; 1..=600,000).
    pub wall_time_ms: u64,
    /// Longest string a script may build, in bytes (default 16 MiB; 1..=1 GiB).
    pub max_string_bytes: u64,
    /// Longest array a script may build (default 1,000,000; 1..=100,000,000).
    pub max_array_len: u64,
    /// Largest map (object) a script may build (default 1,000,000; 1..=100,000,000).
    pub max_map_len: u64,
    /// Deepest function-call nesting (default 64; 1..=1,024).
    pub max_call_depth: u64,
}

impl Limits {
    /// Default `operations`.
    pub const DEFAULT_OPERATIONS: u64 = 10_000_000;
    /// Largest `operations`.
    pub const MAX_OPERATIONS: u64 = 1_000_000_000;
    /// Default `memory_bytes` (256 MiB).
    pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;
    /// Smallest `memory_bytes` (16 MiB).
    pub const MIN_MEMORY_BYTES: u64 = 16 << 20;
    /// Largest `memory_bytes` (4 GiB).
    pub const MAX_MEMORY_BYTES: u64 = 4 << 30;
    /// Default `wall_time_ms`.
    pub const DEFAULT_WALL_TIME_MS: u64 = 10_000;
    /// Largest `wall_time_ms`.
    pub const MAX_WALL_TIME_MS: u64 = 600_000;
    /// Default `max_string_bytes` (16 MiB).
    pub const DEFAULT_MAX_STRING_BYTES: u64 = 16 << 20;
    /// Largest `max_string_bytes` (1 GiB).
    pub const MAX_MAX_STRING_BYTES: u64 = 1 << 30;
    /// Default `max_array_len` and `max_map_len`.
    pub const DEFAULT_MAX_COLLECTION_LEN: u64 = 1_000_000;
    /// Largest `max_array_len` and `max_map_len`.
    pub const MAX_MAX_COLLECTION_LEN: u64 = 100_000_000;
    /// Default `max_call_depth`.
    pub const DEFAULT_MAX_CALL_DEPTH: u64 = 64;
    /// Largest `max_call_depth`.
    pub const MAX_MAX_CALL_DEPTH: u64 = 1_024;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            operations: Self::DEFAULT_OPERATIONS,
            memory_bytes: Self::DEFAULT_MEMORY_BYTES,
            wall_time_ms: Self::DEFAULT_WALL_TIME_MS,
            max_string_bytes: Self::DEFAULT_MAX_STRING_BYTES,
            max_array_len: Self::DEFAULT_MAX_COLLECTION_LEN,
            max_map_len: Self::DEFAULT_MAX_COLLECTION_LEN,
            max_call_depth: Self::DEFAULT_MAX_CALL_DEPTH,
        }
    }
}

fn one() -> u64 {
    1
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A manifest (docs/manifest.md), typed. Only [`Manifest::from_json_value`] and
/// [`Manifest::from_json_bytes`] produce checked values: a `Manifest` built or
/// deserialised by other means has not been validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Free text, at most 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The function, by measurement.
    pub function: FunctionRef,
    /// The parties.
    pub parties: Vec<Party>,
    /// Input slots by name.
    pub slots: BTreeMap<SlotName, Slot>,
    /// When evaluation happens.
    pub trigger: Trigger,
    /// Who may trigger an `explicit` evaluation (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluators: Vec<Identity>,
    /// When inputs are accepted.
    #[serde(default)]
    pub window: Window,
    /// Who reads what.
    pub readers: BTreeMap<Identity, ReaderRole>,
    /// Implicit or explicit approval.
    #[serde(default)]
    pub approval: Approval,
    /// Maximum number of evaluation rounds (≥ 1).
    #[serde(default = "one")]
    pub rounds: u64,
    /// When the instance is destroyed, and by whom it may be.
    pub destruction: Destruction,
    /// Resource limits of an evaluation.
    #[serde(default)]
    pub limits: Limits,
    /// Whether the script gets a deterministic RNG seeded per instance.
    #[serde(default, skip_serializing_if = "is_false")]
    pub seeded_rng: bool,
}

/// A manifest that passed every check: the typed manifest, the JSON exactly as
/// submitted and its `manifest_sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedManifest {
    manifest: Manifest,
    raw: serde_json::Value,
    sha256: [u8; 32],
}

impl ValidatedManifest {
    /// The typed manifest (defaults filled in).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The JSON exactly as submitted (no defaults filled in), to store and return
    /// unchanged.
    pub fn raw(&self) -> &serde_json::Value {
        &self.raw
    }

    /// `sha256(JCS(raw))`.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// Lowercase hex of [`ValidatedManifest::sha256`].
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The typed manifest and the raw JSON.
    pub fn into_parts(self) -> (Manifest, serde_json::Value) {
        (self.manifest, self.raw)
    }
}

/// `sha256(JCS(raw))` (RFC 8785): the manifest digest of docs/manifest.md, of the JSON exactly as
/// submitted.
pub fn manifest_sha256(raw: &serde_json::Value) -> [u8; 32] {
    crate::tpm::hash::sha256(&[&crate::jcs::to_vec(raw)])
}

impl Manifest {
    /// Checks a manifest given as a JSON value and returns it validated, or every
    /// problem found.
    ///
    /// # Errors
    /// Every [`ManifestProblem`], each with its JSON pointer and reason.
    pub fn from_json_value(
        value: serde_json::Value,
    ) -> Result<ValidatedManifest, Vec<ManifestProblem>> {
        let problems = validate::check(&value);
        if !problems.is_empty() {
            return Err(problems);
        }
        let manifest: Manifest = serde_json::from_value(value.clone())
            .map_err(|e| vec![ManifestProblem::new("", format!("invalid manifest: {e}"))])?;
        let sha256 = manifest_sha256(&value);
        Ok(ValidatedManifest {
            manifest,
            raw: value,
            sha256,
        })
    }

    /// Parses JSON text (refusing duplicate keys) and checks it as
    /// [`Manifest::from_json_value`] does.
    ///
    /// # Errors
    /// Malformed JSON, or JSON with a duplicate key, gives one problem at pointer `""`;
    /// otherwise as [`Manifest::from_json_value`].
    pub fn from_json_bytes(bytes: &[u8]) -> Result<ValidatedManifest, Vec<ManifestProblem>> {
        let value = crate::jcs::parse_strict(bytes)
            .map_err(|e| vec![ManifestProblem::new("", format!("malformed JSON: {e}"))])?;
        Self::from_json_value(value)
    }

    /// Converts a TOML manifest to its JSON form: tables become objects, arrays arrays,
    /// strings, integers and booleans themselves, and datetimes RFC 3339 strings (which
    /// validation then requires to be UTC with `Z`). TOML floats are refused.
    ///
    /// # Errors
    /// Malformed TOML (one problem at `""`), floats and local dates or times (at their
    /// pointers).
    pub fn toml_to_json(text: &str) -> Result<serde_json::Value, Vec<ManifestProblem>> {
        toml::to_json(text)
    }

    /// Whether `id` is one of the parties' identities.
    pub fn is_party(&self, id: &str) -> bool {
        self.parties.iter().any(|p| p.identity == id)
    }

    /// The party with identity `id`.
    pub fn party(&self, id: &str) -> Option<&Party> {
        self.parties.iter().find(|p| p.identity == id)
    }

    /// The parties' identities, in manifest order.
    pub fn party_identities(&self) -> impl Iterator<Item = &Identity> {
        self.parties.iter().map(|p| &p.identity)
    }

    /// The slot named `slot`.
    pub fn slot(&self, slot: &str) -> Option<&Slot> {
        self.slots.get(slot)
    }

    /// Whether `id` may provide the input of `slot` (false for an unknown slot).
    pub fn can_provide(&self, id: &str, slot: &str) -> bool {
        self.slots
            .get(slot)
            .is_some_and(|s| s.providers.iter().any(|p| p == id))
    }

    /// What `id` may read of the result, if anything.
    pub fn reader_role(&self, id: &str) -> Option<ReaderRole> {
        self.readers.get(id).copied()
    }

    /// Whether `id` may trigger an evaluation: the trigger is `explicit` and `id` is one
    /// of the evaluators.
    pub fn is_evaluator(&self, id: &str) -> bool {
        self.trigger == Trigger::Explicit && self.evaluators.iter().any(|e| e == id)
    }

    /// Whether `id` may ask for destruction.
    pub fn is_destroyer(&self, id: &str) -> bool {
        self.destruction.destroyers.iter().any(|d| d == id)
    }

    /// Number of filled slots that triggers evaluation automatically, or `None` for an
    /// `explicit` trigger (evaluated on an evaluator's call, docs/manifest.md).
    pub fn automatic_trigger_count(&self) -> Option<usize> {
        match self.trigger {
            Trigger::All => Some(self.slots.len()),
            Trigger::Threshold { k } => Some(usize::try_from(k).unwrap_or(usize::MAX)),
            Trigger::Explicit => None,
        }
    }

    /// Checks the manifest's times against the current time `now` (the daemon's clock):
    /// refuses a window that has already closed and a destruction deadline that has
    /// passed. Pure validation does not look at a clock; the daemon calls this when it
    /// creates an instance.
    pub fn check_times(&self, now: OffsetDateTime) -> Vec<ManifestProblem> {
        let mut problems = Vec::new();
        if let Some(closes) = self.window.closes
            && closes.get() <= now
        {
            problems.push(ManifestProblem::new(
                "/window/closes",
                format!("the input window closed at {closes}, before now"),
            ));
        }
        if let DestructionPolicy::At(at) = self.destruction.policy
            && at.get() <= now
        {
            problems.push(ManifestProblem::new(
                "/destruction/at",
                format!("the destruction deadline {at} has passed"),
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests;
