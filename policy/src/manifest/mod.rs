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

mod fields;
mod strings;
mod toml;
mod validate;

pub use fields::{
    Approval, Destruction, DestructionPolicy, FunctionRef, Limits, Party, Provide, ReaderRole,
    Resubmission, Slot, Trigger, ValueType, Window,
};
pub(crate) use strings::is_sha256_hex;
pub use strings::{Identity, Sha256Hex, SlotName, Timestamp, is_slot_name};
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
