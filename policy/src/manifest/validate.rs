//! The checks behind [`Manifest::from_json_value`](super::Manifest::from_json_value): a
//! walk over the submitted JSON that records every problem with its JSON pointer instead
//! of stopping at the first, so a party fixing a manifest sees everything at once. Typed
//! parsing runs only after this walk found nothing.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use super::{Limits, ManifestProblem, Timestamp, is_sha256_hex, is_slot_name};

/// The largest integer a manifest may hold: 2^53 − 1, so every JSON implementation
/// (including those that read numbers as IEEE doubles) reads the same value.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The most parties a manifest may name. Every party costs the daemon work on each
/// request of the instance (access checks, approvals, usage), so the count is bounded.
pub const MAX_PARTIES: usize = 64;
/// The most input slots a manifest may declare.
pub const MAX_SLOTS: usize = 64;
/// The most result and status readers a manifest may name.
pub const MAX_READERS: usize = 64;

/// Longest manifest `name` and party name, in characters.
const MAX_NAME_CHARS: usize = 200;

/// Appends `key` to `parent` as a JSON pointer reference token (RFC 6901: `~` → `~0`,
/// `/` → `~1`).
pub(crate) fn pointer(parent: &str, key: &str) -> String {
    let mut out = String::with_capacity(parent.len() + key.len() + 1);
    out.push_str(parent);
    out.push('/');
    for c in key.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

fn index(parent: &str, i: usize) -> String {
    format!("{parent}/{i}")
}

/// Every problem of `value` as a manifest; empty when it is valid.
pub(super) fn check(value: &Value) -> Vec<ManifestProblem> {
    let mut c = Checker::default();
    c.numbers("", value);
    c.manifest(value);
    c.problems
}

/// A short name of a JSON value's type, for messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[derive(Default)]
struct Checker {
    problems: Vec<ManifestProblem>,
}

impl Checker {
    fn problem(&mut self, pointer: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(ManifestProblem::new(pointer, reason));
    }

    /// Refuses every float and every integer of magnitude ≥ 2^53, anywhere.
    fn numbers(&mut self, at: &str, v: &Value) {
        match v {
            Value::Number(n) => {
                if n.is_f64() {
                    self.problem(
                        at,
                        format!("{n} is not an integer: manifest numbers are integers (no fraction or exponent)"),
                    );
                } else if n.as_u64().is_some_and(|u| u > MAX_SAFE_INTEGER)
                    || n.as_i64()
                        .is_some_and(|i| i.unsigned_abs() > MAX_SAFE_INTEGER)
                {
                    self.problem(
                        at,
                        format!("{n} is too large: manifest integers are below 2^53"),
                    );
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.numbers(&index(at, i), item);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    self.numbers(&pointer(at, k), item);
                }
            }
            Value::Null | Value::Bool(_) | Value::String(_) => {}
        }
    }

    /// `v` as an object whose keys are all in `known`; unknown keys are problems.
    fn object<'v>(
        &mut self,
        at: &str,
        v: &'v Value,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = v else {
            self.problem(at, format!("must be an object, not {}", type_name(v)));
            return None;
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                self.problem(
                    pointer(at, key),
                    format!("unknown field (expected one of: {})", known.join(", ")),
                );
            }
        }
        Some(map)
    }

    /// The field `key` of `map`, reporting it missing when `required`.
    fn field<'v>(
        &mut self,
        at: &str,
        map: &'v Map<String, Value>,
        key: &str,
        required: bool,
    ) -> Option<&'v Value> {
        let found = map.get(key);
        if found.is_none() && required {
            self.problem(pointer(at, key), "required field is missing");
        }
        found
    }

    fn string<'v>(&mut self, at: &str, v: &'v Value) -> Option<&'v str> {
        match v {
            Value::String(s) => Some(s),
            other => {
                self.problem(at, format!("must be a string, not {}", type_name(other)));
                None
            }
        }
    }

    /// `v` as one of `allowed` strings.
    fn choice<'v>(&mut self, at: &str, v: &'v Value, allowed: &[&str]) -> Option<&'v str> {
        let s = self.string(at, v)?;
        if allowed.contains(&s) {
            Some(s)
        } else {
            self.problem(at, format!("{s:?} is not one of: {}", allowed.join(", ")));
            None
        }
    }

    /// `v` as a non-negative integer (floats and out-of-range integers were already
    /// reported by [`Checker::numbers`]).
    fn uint(&mut self, at: &str, v: &Value) -> Option<u64> {
        match v {
            Value::Number(n) if n.is_f64() => None,
            Value::Number(n) => match n.as_u64() {
                Some(u) if u <= MAX_SAFE_INTEGER => Some(u),
                Some(_) => None,
                None => {
                    self.problem(at, format!("must be a non-negative integer, not {n}"));
                    None
                }
            },
            other => {
                self.problem(at, format!("must be an integer, not {}", type_name(other)));
                None
            }
        }
    }

    fn bounded(&mut self, at: &str, v: &Value, min: u64, max: u64) -> Option<u64> {
        let n = self.uint(at, v)?;
        if n < min || n > max {
            self.problem(at, format!("{n} is out of range {min}..={max}"));
            return None;
        }
        Some(n)
    }

    fn timestamp(&mut self, at: &str, v: &Value) -> Option<Timestamp> {
        let s = self.string(at, v)?;
        match Timestamp::parse(s) {
            Ok(t) => Some(t),
            Err(reason) => {
                self.problem(at, reason);
                None
            }
        }
    }

    fn text(&mut self, at: &str, v: &Value, min_chars: usize) -> Option<String> {
        let s = self.string(at, v)?;
        let chars = s.chars().count();
        if chars < min_chars {
            self.problem(at, "must not be empty");
            return None;
        }
        if chars > MAX_NAME_CHARS {
            self.problem(
                at,
                format!("is {chars} characters long, at most {MAX_NAME_CHARS} allowed"),
            );
            return None;
        }
        if s.chars().any(char::is_control) {
            self.problem(at, "must not contain control characters");
            return None;
        }
        Some(s.to_owned())
    }

    /// An identity that must be one of the parties' (when the parties are known).
    fn identity_ref(
        &mut self,
        at: &str,
        v: &Value,
        parties: Option<&HashSet<String>>,
    ) -> Option<String> {
        let s = self.string(at, v)?;
        self.identity_text(at, s, parties)
    }

    fn identity_text(
        &mut self,
        at: &str,
        s: &str,
        parties: Option<&HashSet<String>>,
    ) -> Option<String> {
        if !is_sha256_hex(s) {
            self.problem(
                at,
                format!("{s:?} is not an identity (64 lowercase hex characters: SHA-256 of a certificate's SubjectPublicKeyInfo)"),
            );
            return None;
        }
        if let Some(parties) = parties
            && !parties.contains(s)
        {
            self.problem(at, format!("{s} is not one of the parties' identities"));
            return None;
        }
        Some(s.to_owned())
    }

    /// An array of distinct party identities; returns how many valid ones it holds.
    fn identity_list(
        &mut self,
        at: &str,
        v: &Value,
        parties: Option<&HashSet<String>>,
    ) -> Option<usize> {
        let Value::Array(items) = v else {
            self.problem(
                at,
                format!("must be an array of identities, not {}", type_name(v)),
            );
            return None;
        };
        let mut seen = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let here = index(at, i);
            if let Some(id) = self.identity_ref(&here, item, parties)
                && !seen.insert(id.clone())
            {
                self.problem(here, format!("{id} is listed twice"));
            }
        }
        Some(items.len())
    }

    fn manifest(&mut self, v: &Value) {
        const FIELDS: &[&str] = &[
            "name",
            "function",
            "parties",
            "slots",
            "trigger",
            "evaluators",
            "window",
            "readers",
            "approval",
            "rounds",
            "destruction",
            "limits",
            "seeded_rng",
        ];
        let Value::Object(_) = v else {
            self.problem(
                "",
                format!("a manifest must be a JSON object, not {}", type_name(v)),
            );
            return;
        };
        let Some(root) = self.object("", v, FIELDS) else {
            return;
        };

        if let Some(name) = self.field("", root, "name", false) {
            self.text("/name", name, 0);
        }

        if let Some(function) = self.field("", root, "function", true)
            && let Some(map) = self.object("/function", function, &["sha256"])
            && let Some(sha) = self.field("/function", map, "sha256", true)
            && let Some(s) = self.string("/function/sha256", sha)
            && !is_sha256_hex(s)
        {
            self.problem(
                "/function/sha256",
                format!("{s:?} is not a SHA-256 digest (64 lowercase hex characters)"),
            );
        }

        let parties = self
            .field("", root, "parties", true)
            .and_then(|p| self.parties(p));
        let parties = parties.as_ref();

        let slot_count = self
            .field("", root, "slots", true)
            .and_then(|s| self.slots(s, parties));

        let explicit = self
            .field("", root, "trigger", true)
            .and_then(|t| self.trigger(t, slot_count));

        match (self.field("", root, "evaluators", false), explicit) {
            (Some(e), Some(true)) => {
                if self.identity_list("/evaluators", e, parties) == Some(0) {
                    self.problem(
                        "/evaluators",
                        "an explicit trigger needs at least one evaluator",
                    );
                }
            }
            (None, Some(true)) => self.problem(
                "/evaluators",
                "required field is missing: an explicit trigger needs at least one evaluator",
            ),
            (Some(e), _) => {
                if let Some(n) = self.identity_list("/evaluators", e, parties)
                    && n > 0
                    && explicit == Some(false)
                {
                    self.problem(
                        "/evaluators",
                        "evaluators are only allowed with trigger kind \"explicit\"",
                    );
                }
            }
            (None, _) => {}
        }

        if let Some(window) = self.field("", root, "window", false) {
            self.window(window);
        }

        if let Some(readers) = self.field("", root, "readers", true) {
            self.readers(readers, parties);
        }

        if let Some(approval) = self.field("", root, "approval", false) {
            self.choice("/approval", approval, &["implicit", "explicit"]);
        }

        if let Some(rounds) = self.field("", root, "rounds", false) {
            self.bounded("/rounds", rounds, 1, MAX_SAFE_INTEGER);
        }

        if let Some(destruction) = self.field("", root, "destruction", true) {
            self.destruction(destruction, parties);
        }

        if let Some(limits) = self.field("", root, "limits", false) {
            self.limits(limits);
        }

        if let Some(rng) = self.field("", root, "seeded_rng", false)
            && !rng.is_boolean()
        {
            self.problem(
                "/seeded_rng",
                format!("must be a boolean, not {}", type_name(rng)),
            );
        }
    }

    /// Checks `parties`; returns the set of valid identities, or `None` when the field is
    /// not even an array (then identity references are not checked against it).
    fn parties(&mut self, v: &Value) -> Option<HashSet<String>> {
        let Value::Array(items) = v else {
            self.problem(
                "/parties",
                format!("must be an array of parties, not {}", type_name(v)),
            );
            return None;
        };
        if items.is_empty() {
            self.problem("/parties", "at least one party is required");
        }
        if items.len() > MAX_PARTIES {
            self.problem(
                "/parties",
                format!("{} parties; at most {MAX_PARTIES} are allowed", items.len()),
            );
            return None;
        }
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let at = index("/parties", i);
            let Some(map) = self.object(&at, item, &["name", "identity"]) else {
                continue;
            };
            if let Some(name) = self.field(&at, map, "name", true)
                && let Some(name) = self.text(&pointer(&at, "name"), name, 1)
                && !names.insert(name.clone())
            {
                self.problem(
                    pointer(&at, "name"),
                    format!("party name {name:?} is used twice"),
                );
            }
            if let Some(id) = self.field(&at, map, "identity", true)
                && let Some(id) = self.identity_ref(&pointer(&at, "identity"), id, None)
                && !ids.insert(id.clone())
            {
                self.problem(
                    pointer(&at, "identity"),
                    format!("identity {id} is used by two parties"),
                );
            }
        }
        Some(ids)
    }

    /// Checks `slots`; returns the number of slots when it is an object.
    fn slots(&mut self, v: &Value, parties: Option<&HashSet<String>>) -> Option<usize> {
        let Value::Object(map) = v else {
            self.problem(
                "/slots",
                format!("must be an object of slots, not {}", type_name(v)),
            );
            return None;
        };
        if map.is_empty() {
            self.problem("/slots", "at least one slot is required");
        }
        if map.len() > MAX_SLOTS {
            self.problem(
                "/slots",
                format!("{} slots; at most {MAX_SLOTS} are allowed", map.len()),
            );
            return None;
        }
        for (name, slot) in map {
            let at = pointer("/slots", name);
            if !is_slot_name(name) {
                self.problem(
                    &at,
                    format!("slot name {name:?} does not match ^[a-z][a-z0-9_]{{0,63}}$"),
                );
            }
            let Some(fields) = self.object(&at, slot, &["providers", "provide", "type"]) else {
                continue;
            };
            if let Some(providers) = self.field(&at, fields, "providers", true)
                && self.identity_list(&pointer(&at, "providers"), providers, parties) == Some(0)
            {
                self.problem(
                    pointer(&at, "providers"),
                    "at least one provider is required",
                );
            }
            if let Some(provide) = self.field(&at, fields, "provide", true) {
                self.choice(
                    &pointer(&at, "provide"),
                    provide,
                    &["provide_once", "provide_each_time"],
                );
            }
            if let Some(ty) = self.field(&at, fields, "type", false) {
                self.choice(
                    &pointer(&at, "type"),
                    ty,
                    &[
                        "any", "string", "integer", "number", "boolean", "array", "object",
                    ],
                );
            }
        }
        Some(map.len())
    }

    /// Checks `trigger`; returns whether it is `explicit` (when its kind is known).
    fn trigger(&mut self, v: &Value, slot_count: Option<usize>) -> Option<bool> {
        let Value::Object(map) = v else {
            self.problem(
                "/trigger",
                format!("must be an object with a \"kind\", not {}", type_name(v)),
            );
            return None;
        };
        let kind = self
            .field("/trigger", map, "kind", true)
            .and_then(|k| self.choice("/trigger/kind", k, &["all", "threshold", "explicit"]));
        let known: &[&str] = match kind {
            Some("threshold") | None => &["kind", "k"],
            Some(_) => &["kind"],
        };
        self.object("/trigger", v, known);
        let kind = kind?;
        if kind == "threshold"
            && let Some(k) = self.field("/trigger", map, "k", true)
            && let Some(k) = self.uint("/trigger/k", k)
        {
            if k == 0 {
                self.problem("/trigger/k", "threshold k must be at least 1");
            } else if let Some(n) = slot_count
                && usize::try_from(k).map_or(true, |k| k > n)
            {
                self.problem(
                    "/trigger/k",
                    format!("threshold k = {k} is more than the {n} slot(s)"),
                );
            }
        }
        Some(kind == "explicit")
    }

    fn window(&mut self, v: &Value) {
        let Some(map) = self.object("/window", v, &["opens", "closes", "resubmission"]) else {
            return;
        };
        let opens = self
            .field("/window", map, "opens", false)
            .and_then(|t| self.timestamp("/window/opens", t));
        let closes = self
            .field("/window", map, "closes", false)
            .and_then(|t| self.timestamp("/window/closes", t));
        if let (Some(opens), Some(closes)) = (opens, closes)
            && closes <= opens
        {
            self.problem(
                "/window/closes",
                format!("closes ({closes}) must be after opens ({opens})"),
            );
        }
        if let Some(r) = self.field("/window", map, "resubmission", false) {
            self.choice("/window/resubmission", r, &["first", "last", "reject"]);
        }
    }

    fn readers(&mut self, v: &Value, parties: Option<&HashSet<String>>) {
        let Value::Object(map) = v else {
            self.problem(
                "/readers",
                format!(
                    "must be an object mapping identities to \"result\" or \"status\", not {}",
                    type_name(v)
                ),
            );
            return;
        };
        if map.is_empty() {
            self.problem("/readers", "at least one reader is required");
        }
        if map.len() > MAX_READERS {
            self.problem(
                "/readers",
                format!("{} readers; at most {MAX_READERS} are allowed", map.len()),
            );
            return;
        }
        for (id, role) in map {
            let at = pointer("/readers", id);
            self.identity_text(&at, id, parties);
            self.choice(&at, role, &["result", "status"]);
        }
    }

    fn destruction(&mut self, v: &Value, parties: Option<&HashSet<String>>) {
        let Some(map) = self.object("/destruction", v, &["policy", "at", "destroyers"]) else {
            return;
        };
        let policy = self
            .field("/destruction", map, "policy", true)
            .and_then(|p| {
                self.choice(
                    "/destruction/policy",
                    p,
                    &["after_evaluation", "after_first_read", "at", "on_request"],
                )
            });
        match (map.get("at"), policy) {
            (Some(at), Some("at")) => {
                self.timestamp("/destruction/at", at);
            }
            (None, Some("at")) => {
                self.problem("/destruction/at", "required with policy \"at\"");
            }
            (Some(at), Some(_)) => {
                self.timestamp("/destruction/at", at);
                self.problem("/destruction/at", "only allowed with policy \"at\"");
            }
            (Some(at), None) => {
                self.timestamp("/destruction/at", at);
            }
            (None, _) => {}
        }
        let destroyers = map
            .get("destroyers")
            .and_then(|d| self.identity_list("/destruction/destroyers", d, parties));
        if policy == Some("on_request") && destroyers.unwrap_or(0) == 0 {
            let at = "/destruction/destroyers";
            if map.contains_key("destroyers") {
                if destroyers == Some(0) {
                    self.problem(at, "policy \"on_request\" needs at least one destroyer");
                }
            } else {
                self.problem(
                    at,
                    "required field is missing: policy \"on_request\" needs at least one destroyer",
                );
            }
        }
    }

    fn limits(&mut self, v: &Value) {
        const FIELDS: &[(&str, u64, u64)] = &[
            ("operations", 1, Limits::MAX_OPERATIONS),
            (
                "memory_bytes",
                Limits::MIN_MEMORY_BYTES,
                Limits::MAX_MEMORY_BYTES,
            ),
            ("wall_time_ms", 1, Limits::MAX_WALL_TIME_MS),
            ("max_string_bytes", 1, Limits::MAX_MAX_STRING_BYTES),
            ("max_array_len", 1, Limits::MAX_MAX_COLLECTION_LEN),
            ("max_map_len", 1, Limits::MAX_MAX_COLLECTION_LEN),
            ("max_call_depth", 1, Limits::MAX_MAX_CALL_DEPTH),
            ("max_input_bytes", 1, Limits::MAX_MAX_INPUT_BYTES),
            (
                "max_instance_input_bytes",
                1,
                Limits::MAX_MAX_INSTANCE_INPUT_BYTES,
            ),
        ];
        let names: Vec<&str> = FIELDS.iter().map(|(n, _, _)| *n).collect();
        let Some(map) = self.object("/limits", v, &names) else {
            return;
        };
        let mut bounded = BTreeMap::new();
        for (name, min, max) in FIELDS {
            if let Some(n) = map.get(*name)
                && let Some(n) = self.bounded(&pointer("/limits", name), n, *min, *max)
            {
                bounded.insert(*name, n);
            }
        }
        if let (Some(slot), Some(instance)) = (
            bounded.get("max_input_bytes"),
            bounded.get("max_instance_input_bytes"),
        ) && slot > instance
        {
            self.problem(
                "/limits/max_input_bytes",
                format!(
                    "{slot} is more than max_instance_input_bytes ({instance}): one slot's input \
                     could never fill it"
                ),
            );
        }
    }
}
