//! The parts of a manifest, typed: the function, parties, slots, trigger, window, readers,
//! approval, destruction and limits, with their serde forms.

use serde::{Deserialize, Serialize};

use super::{Identity, Sha256Hex, Timestamp};

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

/// Resource limits of one evaluation (docs/manifest.md). Every field is optional in JSON; the
/// defaults and bounds are the `DEFAULT_*`, `MIN_*` and `MAX_*` constants.
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
    /// Largest input of one slot: bytes of its HPKE ciphertext as stored (optional;
    /// 1..=512 MiB; absent means the daemon's configured ceiling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_bytes: Option<u64>,
    /// Largest total of the inputs of one round, all slots together, counted as
    /// `max_input_bytes` is (optional; 1..=1 GiB; absent means the daemon's ceiling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instance_input_bytes: Option<u64>,
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
    /// Largest `max_input_bytes` (512 MiB): an input is one SQLite blob, whose length
    /// SQLite caps at 1,000,000,000 bytes.
    pub const MAX_MAX_INPUT_BYTES: u64 = 512 << 20;
    /// Largest `max_instance_input_bytes` (1 GiB).
    pub const MAX_MAX_INSTANCE_INPUT_BYTES: u64 = 1 << 30;
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
            max_input_bytes: None,
            max_instance_input_bytes: None,
        }
    }
}
