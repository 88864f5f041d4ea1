//! Tests of manifest parsing and validation: a complete manifest, defaults, every
//! documented refusal with its pointer, TOML conversion and the digest of the JSON as
//! submitted.

use serde_json::{Value, json};
use sha2::Digest as _;

use super::*;

const FUNCTION: &str = "579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63";

fn id(c: char) -> String {
    c.to_string().repeat(64)
}

fn full() -> Value {
    json!({
        "name": "customer overlap 2026-Q4",
        "function": { "sha256": FUNCTION },
        "parties": [
            { "name": "acme", "identity": id('a') },
            { "name": "globex", "identity": id('b') },
            { "name": "auditor", "identity": id('c') }
        ],
        "slots": {
            "customers_a": { "providers": [id('a')], "provide": "provide_once", "type": "array" },
            "customers_b": { "providers": [id('b')], "provide": "provide_each_time" }
        },
        "trigger": { "kind": "threshold", "k": 2 },
        "window": {
            "opens": "2026-10-01T00:00:00Z",
            "closes": "2026-10-31T23:59:59Z",
            "resubmission": "last"
        },
        "readers": { id('a'): "result", id('b'): "result", id('c'): "status" },
        "approval": "explicit",
        "rounds": 3,
        "destruction": { "policy": "after_first_read", "destroyers": [id('c')] },
        "limits": {
            "operations": 5_000_000,
            "memory_bytes": 67_108_864,
            "wall_time_ms": 2_000,
            "max_call_depth": 32
        },
        "seeded_rng": true
    })
}

fn minimal() -> Value {
    json!({
        "function": { "sha256": FUNCTION },
        "parties": [ { "name": "acme", "identity": id('a') } ],
        "slots": { "x": { "providers": [id('a')], "provide": "provide_once" } },
        "trigger": { "kind": "all" },
        "readers": { id('a'): "result" },
        "destruction": { "policy": "after_evaluation" }
    })
}

fn problems(value: Value) -> Vec<ManifestProblem> {
    match Manifest::from_json_value(value) {
        Ok(m) => panic!("accepted: {:?}", m.manifest()),
        Err(p) => p,
    }
}

/// Asserts that `value` is refused with exactly the problems at `pointers`, each reason
/// containing its fragment.
fn refused(value: Value, expected: &[(&str, &str)]) {
    let found = problems(value);
    let summary: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(
        found.len(),
        expected.len(),
        "expected {expected:?}, found {summary:#?}"
    );
    for (pointer, fragment) in expected {
        assert!(
            found
                .iter()
                .any(|p| p.pointer == *pointer && p.reason.contains(fragment)),
            "no problem at {pointer} mentioning {fragment:?} in {summary:#?}"
        );
    }
}

/// `value` with the member at `pointer` replaced (or added to its parent object).
fn with(mut value: Value, pointer: &str, new: Value) -> Value {
    if let Some(slot) = value.pointer_mut(pointer) {
        *slot = new;
    } else {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        value
            .pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.to_owned(), new);
    }
    value
}

fn without(mut value: Value, parent: &str, key: &str) -> Value {
    value
        .pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key)
        .unwrap();
    value
}

#[test]
fn a_complete_manifest_is_typed_as_written() {
    let v = Manifest::from_json_value(full()).unwrap();
    let m = v.manifest();
    assert_eq!(m.name.as_deref(), Some("customer overlap 2026-Q4"));
    assert_eq!(m.function.sha256.as_str(), FUNCTION);
    assert_eq!(
        m.function.sha256.to_bytes().to_vec(),
        hex::decode(FUNCTION).unwrap()
    );
    assert_eq!(m.parties.len(), 3);
    assert_eq!(m.parties[1].name, "globex");
    let a = &m.slots["customers_a"];
    assert_eq!(a.provide, Provide::ProvideOnce);
    assert_eq!(a.value_type, ValueType::Array);
    assert_eq!(m.slots["customers_b"].value_type, ValueType::Any);
    assert_eq!(m.slots["customers_b"].provide, Provide::ProvideEachTime);
    assert_eq!(m.trigger, Trigger::Threshold { k: 2 });
    assert!(m.evaluators.is_empty());
    assert_eq!(
        m.window.opens.unwrap().get(),
        time::macros::datetime!(2026-10-01 00:00:00 UTC)
    );
    assert_eq!(
        m.window.closes.unwrap().to_rfc3339(),
        "2026-10-31T23:59:59Z"
    );
    assert_eq!(m.window.resubmission, Resubmission::Last);
    assert_eq!(m.approval, Approval::Explicit);
    assert_eq!(m.rounds, 3);
    assert_eq!(m.destruction.policy, DestructionPolicy::AfterFirstRead);
    assert_eq!(m.destruction.destroyers.len(), 1);
    assert_eq!(m.limits.operations, 5_000_000);
    assert_eq!(m.limits.memory_bytes, 64 << 20);
    assert_eq!(m.limits.wall_time_ms, 2_000);
    assert_eq!(m.limits.max_call_depth, 32);
    assert_eq!(m.limits.max_string_bytes, Limits::DEFAULT_MAX_STRING_BYTES);
    assert!(m.seeded_rng);
    assert_eq!(v.raw(), &full());
}

#[test]
fn defaults_fill_the_typed_manifest_but_not_the_raw_json() {
    let v = Manifest::from_json_value(minimal()).unwrap();
    let m = v.manifest();
    assert_eq!(m.name, None);
    assert_eq!(m.window, Window::default());
    assert_eq!(m.window.resubmission, Resubmission::Reject);
    assert_eq!(m.approval, Approval::Implicit);
    assert_eq!(m.rounds, 1);
    assert_eq!(m.limits, Limits::default());
    assert_eq!(m.limits.memory_bytes, 256 * 1024 * 1024);
    assert_eq!(m.limits.operations, 10_000_000);
    assert_eq!(m.limits.wall_time_ms, 10_000);
    assert!(!m.seeded_rng);
    assert_eq!(v.raw(), &minimal());
    assert!(v.raw().get("rounds").is_none());
}

#[test]
fn manifest_sha256_is_of_jcs_of_the_json_as_submitted() {
    let text = br#"{ "trigger": {"kind": "all"},
        "function": {"sha256": "579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63"},
        "parties": [{"identity": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "name": "acme"}],
        "slots": {"x": {"provide": "provide_once", "providers": ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]}},
        "readers": {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": "result"},
        "destruction": {"policy": "after_evaluation"} }"#;
    let v = Manifest::from_json_bytes(text).unwrap();
    // JCS written out by hand: keys sorted, no whitespace.
    let a = id('a');
    let jcs = format!(
        concat!(
            r#"{{"destruction":{{"policy":"after_evaluation"}},"function":{{"sha256":"{f}"}},"#,
            r#""parties":[{{"identity":"{a}","name":"acme"}}],"readers":{{"{a}":"result"}},"#,
            r#""slots":{{"x":{{"provide":"provide_once","providers":["{a}"]}}}},"trigger":{{"kind":"all"}}}}"#
        ),
        f = FUNCTION,
        a = a
    );
    let expected: [u8; 32] = sha2::Sha256::digest(jcs.as_bytes()).into();
    assert_eq!(v.sha256(), expected);
    assert_eq!(v.sha256_hex(), hex::encode(expected));
    assert_eq!(manifest_sha256(v.raw()), expected);
    // The same document in another key order and layout has the same digest ...
    assert_eq!(
        Manifest::from_json_value(minimal()).unwrap().sha256(),
        expected
    );
    // ... but spelling out a default is a different document.
    let explicit = with(minimal(), "", {
        let mut m = minimal();
        m.as_object_mut().unwrap().insert("rounds".into(), json!(1));
        m
    });
    let other = Manifest::from_json_value(explicit).unwrap();
    assert_eq!(
        other.manifest(),
        Manifest::from_json_value(minimal()).unwrap().manifest()
    );
    assert_ne!(other.sha256(), expected);
}

#[test]
fn role_helpers() {
    let v = Manifest::from_json_value(full()).unwrap();
    let m = v.manifest();
    let (a, b, c, d) = (id('a'), id('b'), id('c'), id('d'));
    assert!(m.is_party(&a) && m.is_party(&c) && !m.is_party(&d));
    assert_eq!(m.party(&b).map(|p| p.name.as_str()), Some("globex"));
    assert_eq!(m.party_identities().count(), 3);
    assert!(m.can_provide(&a, "customers_a"));
    assert!(!m.can_provide(&a, "customers_b"));
    assert!(!m.can_provide(&a, "nope"));
    assert!(!m.can_provide(&c, "customers_a"));
    assert_eq!(m.reader_role(&a), Some(ReaderRole::Result));
    assert_eq!(m.reader_role(&c), Some(ReaderRole::Status));
    assert_eq!(m.reader_role(&d), None);
    assert!(!m.is_evaluator(&a), "threshold triggers have no evaluators");
    assert!(m.is_destroyer(&c) && !m.is_destroyer(&a));
    assert_eq!(m.automatic_trigger_count(), Some(2));
    assert!(m.slot("customers_a").is_some());

    let explicit = with(
        with(full(), "/trigger", json!({"kind": "explicit"})),
        "/destruction",
        json!({"policy": "on_request", "destroyers": [id('a'), id('b')]}),
    );
    let mut explicit = explicit;
    explicit
        .as_object_mut()
        .unwrap()
        .insert("evaluators".into(), json!([id('c')]));
    let v = Manifest::from_json_value(explicit).unwrap();
    let m = v.manifest();
    assert!(m.is_evaluator(&c) && !m.is_evaluator(&a));
    assert!(m.is_destroyer(&a) && m.is_destroyer(&b) && !m.is_destroyer(&c));
    assert_eq!(m.destruction.policy, DestructionPolicy::OnRequest);
    assert_eq!(m.automatic_trigger_count(), None);
    let all = Manifest::from_json_value(minimal()).unwrap();
    assert_eq!(all.manifest().automatic_trigger_count(), Some(1));
}

#[test]
fn threshold_above_the_slot_count_is_refused() {
    refused(
        with(full(), "/trigger/k", json!(3)),
        &[("/trigger/k", "more than the 2 slot(s)")],
    );
    refused(
        with(full(), "/trigger/k", json!(0)),
        &[("/trigger/k", "at least 1")],
    );
    refused(
        without(full(), "/trigger", "k"),
        &[("/trigger/k", "missing")],
    );
    refused(
        with(full(), "/trigger", json!({"kind": "all", "k": 1})),
        &[("/trigger/k", "unknown field")],
    );
    refused(
        with(full(), "/trigger", json!({"kind": "sometimes"})),
        &[("/trigger/kind", "not one of")],
    );
}

#[test]
fn explicit_trigger_needs_evaluators_and_others_refuse_them() {
    refused(
        with(full(), "/trigger", json!({"kind": "explicit"})),
        &[("/evaluators", "needs at least one evaluator")],
    );
    let mut empty = with(full(), "/trigger", json!({"kind": "explicit"}));
    empty
        .as_object_mut()
        .unwrap()
        .insert("evaluators".into(), json!([]));
    refused(empty, &[("/evaluators", "at least one evaluator")]);
    let mut extra = full();
    extra
        .as_object_mut()
        .unwrap()
        .insert("evaluators".into(), json!([id('a')]));
    refused(extra, &[("/evaluators", "only allowed with trigger kind")]);
    // An empty list is fine without an explicit trigger.
    let mut ok = full();
    ok.as_object_mut()
        .unwrap()
        .insert("evaluators".into(), json!([]));
    Manifest::from_json_value(ok).unwrap();
    // An evaluator who is not a party.
    let mut stranger = with(full(), "/trigger", json!({"kind": "explicit"}));
    stranger
        .as_object_mut()
        .unwrap()
        .insert("evaluators".into(), json!([id('e')]));
    refused(stranger, &[("/evaluators/0", "not one of the parties")]);
}

#[test]
fn identities_must_be_parties() {
    let d = id('d');
    let mut readers = full();
    readers["readers"][&d] = json!("result");
    refused(
        readers,
        &[(&format!("/readers/{d}"), "not one of the parties")],
    );
    refused(
        with(full(), "/slots/customers_a/providers/0", json!(d)),
        &[("/slots/customers_a/providers/0", "not one of the parties")],
    );
    refused(
        with(full(), "/destruction/destroyers/0", json!(d)),
        &[("/destruction/destroyers/0", "not one of the parties")],
    );
    refused(
        with(full(), "/slots/customers_a/providers/0", json!("ACME")),
        &[("/slots/customers_a/providers/0", "not an identity")],
    );
    refused(
        with(
            full(),
            "/slots/customers_a/providers",
            json!([id('a'), id('a')]),
        ),
        &[("/slots/customers_a/providers/1", "listed twice")],
    );
    refused(
        with(full(), "/slots/customers_a/providers", json!([])),
        &[("/slots/customers_a/providers", "at least one provider")],
    );
    let mut upper = full();
    upper["readers"] = json!({ "A".repeat(64): "result" });
    refused(
        upper,
        &[(&format!("/readers/{}", "A".repeat(64)), "not an identity")],
    );
}

#[test]
fn parties_are_unique_and_well_formed() {
    refused(
        with(full(), "/parties/1/identity", json!(id('a'))),
        &[
            ("/parties/1/identity", "used by two parties"),
            // b is no longer a party, so its slot, its reader entry fail too.
            ("/slots/customers_b/providers/0", "not one of the parties"),
            (&format!("/readers/{}", id('b')), "not one of the parties"),
        ],
    );
    refused(
        with(full(), "/parties/2/name", json!("acme")),
        &[("/parties/2/name", "used twice")],
    );
    refused(
        with(full(), "/parties/2/name", json!("")),
        &[("/parties/2/name", "must not be empty")],
    );
    refused(
        with(full(), "/parties/2/name", json!("x".repeat(201))),
        &[("/parties/2/name", "at most 200")],
    );
    refused(
        with(minimal(), "/parties", json!([])),
        &[
            ("/parties", "at least one party"),
            ("/slots/x/providers/0", "not one of the parties"),
            (&format!("/readers/{}", id('a')), "not one of the parties"),
        ],
    );
    refused(
        with(full(), "/parties/0", json!({"name": "acme"})),
        &[
            ("/parties/0/identity", "missing"),
            ("/slots/customers_a/providers/0", "not one of the parties"),
            (&format!("/readers/{}", id('a')), "not one of the parties"),
        ],
    );
    // When `parties` is not even an array, references are not checked against it.
    refused(
        with(full(), "/parties", json!("everyone")),
        &[("/parties", "must be an array")],
    );
}

#[test]
fn floats_are_refused_anywhere_at_their_pointer() {
    refused(
        with(full(), "/limits/operations", json!(1.0)),
        &[("/limits/operations", "not an integer")],
    );
    refused(
        with(full(), "/rounds", json!(2.5)),
        &[("/rounds", "not an integer")],
    );
    // Inside a field that is itself wrong, and inside an unknown field.
    let mut v = with(full(), "/trigger/k", json!(1e2));
    v.as_object_mut()
        .unwrap()
        .insert("extra".into(), json!({"deep": [0, 0.5]}));
    refused(
        v,
        &[
            ("/trigger/k", "not an integer"),
            ("/extra/deep/1", "not an integer"),
            ("/extra", "unknown field"),
        ],
    );
    // From text: 1.0 and 1e3 are floats.
    let text = serde_json::to_string(&full())
        .unwrap()
        .replace("\"rounds\":3", "\"rounds\":3.0");
    let found = Manifest::from_json_bytes(text.as_bytes()).unwrap_err();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].pointer, "/rounds");
}

#[test]
fn integers_must_be_below_2_pow_53_and_non_negative() {
    refused(
        with(full(), "/rounds", json!(1u64 << 53)),
        &[("/rounds", "below 2^53")],
    );
    refused(
        with(full(), "/rounds", json!(-1)),
        &[("/rounds", "non-negative")],
    );
    refused(
        with(full(), "/rounds", json!(0)),
        &[("/rounds", "out of range")],
    );
    let mut ok = full();
    ok["rounds"] = json!(MAX_SAFE_INTEGER);
    Manifest::from_json_value(ok).unwrap();
    refused(
        with(full(), "/rounds", json!("3")),
        &[("/rounds", "must be an integer")],
    );
}

#[test]
fn unknown_fields_are_refused_everywhere() {
    let mut v = full();
    v.as_object_mut()
        .unwrap()
        .insert("colour".into(), json!("red"));
    v["slots"]["customers_a"]["optional"] = json!(true);
    v["window"]["timezone"] = json!("CET");
    v["destruction"]["when"] = json!("soon");
    v["limits"]["cpus"] = json!(2);
    v["parties"][0]["email"] = json!("x@example.com");
    v["function"]["name"] = json!("f");
    refused(
        v,
        &[
            ("/colour", "unknown field"),
            ("/slots/customers_a/optional", "unknown field"),
            ("/window/timezone", "unknown field"),
            ("/destruction/when", "unknown field"),
            ("/limits/cpus", "unknown field"),
            ("/parties/0/email", "unknown field"),
            ("/function/name", "unknown field"),
        ],
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let mut v = full();
    v["trigger"]["k"] = json!(7);
    v["readers"][id('e')] = json!("result");
    v["readers"][id('a')] = json!("everything");
    v["function"]["sha256"] = json!("abc");
    v["slots"]["Bad-Name"] =
        json!({"providers": [id('a')], "provide": "sometimes", "type": "date"});
    v["window"]["closes"] = json!("2026-09-01T00:00:00Z");
    v["approval"] = json!("maybe");
    v["seeded_rng"] = json!("yes");
    v["name"] = json!(42);
    refused(
        v,
        &[
            ("/trigger/k", "more than the 3 slot(s)"),
            (&format!("/readers/{}", id('e')), "not one of the parties"),
            (
                &format!("/readers/{}", id('a')),
                "not one of: result, status",
            ),
            ("/function/sha256", "not a SHA-256"),
            ("/slots/Bad-Name", "does not match"),
            ("/slots/Bad-Name/provide", "not one of"),
            ("/slots/Bad-Name/type", "not one of"),
            ("/window/closes", "must be after opens"),
            ("/approval", "not one of"),
            ("/seeded_rng", "must be a boolean"),
            ("/name", "must be a string"),
        ],
    );
}

#[test]
fn required_fields() {
    for field in [
        "function",
        "parties",
        "slots",
        "trigger",
        "readers",
        "destruction",
    ] {
        let v = without(minimal(), "", field);
        let found = problems(v);
        assert!(
            found
                .iter()
                .any(|p| p.pointer == format!("/{field}") && p.reason.contains("missing")),
            "{field}: {found:?}"
        );
    }
    refused(
        with(minimal(), "/slots", json!({})),
        &[("/slots", "at least one slot")],
    );
    refused(
        with(minimal(), "/readers", json!({})),
        &[("/readers", "at least one reader")],
    );
    refused(
        without(minimal(), "/slots/x", "provide"),
        &[("/slots/x/provide", "missing")],
    );
}

#[test]
fn slot_names_and_pointer_escaping() {
    let mut v = minimal();
    v["slots"]["a/b~c"] = json!({"providers": [id('a')], "provide": "provide_once"});
    v["slots"]["9lives"] = json!({"providers": [id('a')], "provide": "provide_once"});
    v["slots"]["x".repeat(65)] = json!({"providers": [id('a')], "provide": "provide_once"});
    v["slots"]["y".repeat(64)] = json!({"providers": [id('a')], "provide": "provide_once"});
    refused(
        v,
        &[
            ("/slots/a~1b~0c", "does not match"),
            ("/slots/9lives", "does not match"),
            (&format!("/slots/{}", "x".repeat(65)), "does not match"),
        ],
    );
    assert!(is_slot_name("a") && is_slot_name("customers_a") && is_slot_name("a_1"));
    assert!(!is_slot_name("") && !is_slot_name("_a") && !is_slot_name("aB"));
}

#[test]
fn timestamps_must_be_rfc3339_utc_with_z() {
    for bad in [
        "2026-10-01T00:00:00+01:00",
        "2026-10-01T00:00:00+00:00",
        "2026-10-01 00:00:00Z",
        "2026-10-01",
        "2026-13-01T00:00:00Z",
        "yesterday",
    ] {
        refused(
            with(full(), "/window/opens", json!(bad)),
            &[("/window/opens", "")],
        );
    }
    let ok = with(full(), "/window/opens", json!("2026-10-01T00:00:00.250Z"));
    let v = Manifest::from_json_value(ok).unwrap();
    assert_eq!(
        v.manifest().window.opens.unwrap().get(),
        time::macros::datetime!(2026-10-01 00:00:00.25 UTC)
    );
    refused(
        with(full(), "/window/closes", json!("2026-10-01T00:00:00Z")),
        &[("/window/closes", "must be after opens")],
    );
    // A window with only one end, or none, is fine.
    Manifest::from_json_value(without(full(), "/window", "opens")).unwrap();
    Manifest::from_json_value(with(full(), "/window", json!({}))).unwrap();
}

#[test]
fn destruction_policies() {
    let at = with(
        full(),
        "/destruction",
        json!({"policy": "at", "at": "2026-12-01T00:00:00Z"}),
    );
    let v = Manifest::from_json_value(at).unwrap();
    assert_eq!(
        v.manifest().destruction.policy,
        DestructionPolicy::At(Timestamp::parse("2026-12-01T00:00:00Z").unwrap())
    );
    assert!(v.manifest().destruction.destroyers.is_empty());
    refused(
        with(full(), "/destruction", json!({"policy": "at"})),
        &[("/destruction/at", "required with policy \"at\"")],
    );
    refused(
        with(
            full(),
            "/destruction",
            json!({"policy": "after_evaluation", "at": "2026-12-01T00:00:00Z"}),
        ),
        &[("/destruction/at", "only allowed with policy \"at\"")],
    );
    refused(
        with(
            full(),
            "/destruction",
            json!({"policy": "at", "at": "noon"}),
        ),
        &[("/destruction/at", "RFC 3339")],
    );
    refused(
        with(full(), "/destruction", json!({"policy": "on_request"})),
        &[("/destruction/destroyers", "needs at least one destroyer")],
    );
    refused(
        with(
            full(),
            "/destruction",
            json!({"policy": "on_request", "destroyers": []}),
        ),
        &[("/destruction/destroyers", "needs at least one destroyer")],
    );
    refused(
        with(full(), "/destruction", json!({"policy": "never"})),
        &[("/destruction/policy", "not one of")],
    );
}

#[test]
fn limits_are_bounded() {
    let cases = [
        ("/limits/operations", json!(0), "out of range"),
        (
            "/limits/operations",
            json!(1_000_000_001u64),
            "out of range",
        ),
        (
            "/limits/memory_bytes",
            json!((16u64 << 20) - 1),
            "out of range",
        ),
        (
            "/limits/memory_bytes",
            json!((4u64 << 30) + 1),
            "out of range",
        ),
        ("/limits/wall_time_ms", json!(600_001), "out of range"),
        ("/limits/max_call_depth", json!(0), "out of range"),
        ("/limits/max_array_len", json!("many"), "must be an integer"),
    ];
    for (pointer, value, fragment) in cases {
        refused(with(full(), pointer, value.clone()), &[(pointer, fragment)]);
    }
    let edges = with(
        with(full(), "/limits/memory_bytes", json!(4u64 << 30)),
        "/limits/operations",
        json!(1_000_000_000u64),
    );
    let v = Manifest::from_json_value(edges).unwrap();
    assert_eq!(v.manifest().limits.memory_bytes, 4 << 30);
}

#[test]
fn malformed_json_and_duplicate_keys_give_one_problem_at_the_root() {
    for text in [
        &b"{"[..],
        b"",
        b"[1, 2",
        b"{\"a\": 1} trailing",
        b"\xff\xfe",
    ] {
        let found = Manifest::from_json_bytes(text).unwrap_err();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pointer, "");
        assert!(found[0].reason.starts_with("malformed JSON"), "{found:?}");
    }
    let text =
        serde_json::to_string(&minimal())
            .unwrap()
            .replacen('{', "{\"rounds\":2,\"rounds\":1,", 1);
    let found = Manifest::from_json_bytes(text.as_bytes()).unwrap_err();
    assert_eq!(found.len(), 1);
    assert!(
        found[0].reason.contains("duplicate key \"rounds\""),
        "{found:?}"
    );
    // Not an object at all.
    refused(json!([1, 2]), &[("", "must be a JSON object")]);
    refused(json!(null), &[("", "must be a JSON object")]);
}

#[test]
fn typed_values_and_serialisation_round_trip() {
    let v = Manifest::from_json_value(full()).unwrap();
    let again = serde_json::to_value(v.manifest()).unwrap();
    let reparsed = Manifest::from_json_value(again.clone()).unwrap();
    assert_eq!(reparsed.manifest(), v.manifest());
    // Serialisation writes the same shape (with defaults filled in).
    assert_eq!(again["trigger"], json!({"kind": "threshold", "k": 2}));
    assert_eq!(
        again["destruction"],
        json!({"policy": "after_first_read", "destroyers": [id('c')]})
    );
    assert_eq!(again["window"]["opens"], json!("2026-10-01T00:00:00Z"));
    assert_eq!(again["slots"]["customers_b"]["type"], json!("any"));
    // Serde refuses what validation refuses, for the typed-only path.
    assert!(
        serde_json::from_value::<Manifest>(with(full(), "/destruction", json!({"policy": "at"})))
            .is_err()
    );
    assert!(
        serde_json::from_value::<Manifest>(with(full(), "/readers", json!({"x": "result"})))
            .is_err()
    );
    let mut unknown = full();
    unknown["trigger"]["extra"] = json!(1);
    assert!(serde_json::from_value::<Manifest>(unknown).is_err());
    assert!(Identity::try_from("ab".repeat(32)).is_ok());
    assert!("zz".parse::<Identity>().is_err());
    assert!(SlotName::try_from("Nope".to_owned()).is_err());
    // Value types.
    assert!(ValueType::Integer.accepts(&json!(-3)) && !ValueType::Integer.accepts(&json!(1.5)));
    assert!(ValueType::Number.accepts(&json!(1.5)) && !ValueType::Number.accepts(&json!("1")));
    assert!(ValueType::Object.accepts(&json!({})) && !ValueType::Array.accepts(&json!({})));
    assert!(ValueType::Any.accepts(&json!(null)) && ValueType::Boolean.accepts(&json!(false)));
    assert!(ValueType::String.accepts(&json!("s")));
}

const TOML: &str = r#"
name = "customer overlap 2026-Q4"
rounds = 3
approval = "explicit"
seeded_rng = true

[function]
sha256 = "579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63"

[[parties]]
name = "acme"
identity = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

[[parties]]
name = "globex"
identity = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

[[parties]]
name = "auditor"
identity = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

[slots.customers_a]
providers = ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]
provide = "provide_once"
type = "array"

[slots.customers_b]
providers = ["bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"]
provide = "provide_each_time"

[trigger]
kind = "threshold"
k = 2

[window]
opens = 2026-10-01T00:00:00Z
closes = 2026-10-31T23:59:59Z
resubmission = "last"

[readers]
aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa = "result"
bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb = "result"
cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc = "status"

[destruction]
policy = "after_first_read"
destroyers = ["cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"]

[limits]
operations = 5_000_000
memory_bytes = 67_108_864
wall_time_ms = 2_000
max_call_depth = 32
"#;

#[test]
fn toml_converts_to_the_same_json() {
    let json = Manifest::toml_to_json(TOML).unwrap();
    assert_eq!(json, full());
    assert_eq!(json["window"]["opens"], json!("2026-10-01T00:00:00Z"));
    let v = Manifest::from_json_value(json).unwrap();
    assert_eq!(
        v.sha256(),
        Manifest::from_json_value(full()).unwrap().sha256()
    );
}

#[test]
fn toml_floats_local_times_and_syntax_errors_are_refused() {
    let floats = TOML
        .replace("rounds = 3", "rounds = 3.0")
        .replace("wall_time_ms = 2_000", "wall_time_ms = 2e3");
    let found = Manifest::toml_to_json(&floats).unwrap_err();
    let pointers: Vec<&str> = found.iter().map(|p| p.pointer.as_str()).collect();
    assert_eq!(pointers, ["/limits/wall_time_ms", "/rounds"]);
    assert!(found.iter().all(|p| p.reason.contains("float")));

    let local = TOML.replace(
        "opens = 2026-10-01T00:00:00Z",
        "opens = 2026-10-01T00:00:00",
    );
    let found = Manifest::toml_to_json(&local).unwrap_err();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].pointer, "/window/opens");
    let date = TOML.replace("opens = 2026-10-01T00:00:00Z", "opens = 2026-10-01");
    assert_eq!(
        Manifest::toml_to_json(&date).unwrap_err()[0].pointer,
        "/window/opens"
    );

    // An offset other than Z converts, and validation then refuses it.
    let offset = TOML.replace(
        "opens = 2026-10-01T00:00:00Z",
        "opens = 2026-10-01T02:00:00+02:00",
    );
    let json = Manifest::toml_to_json(&offset).unwrap();
    refused(json, &[("/window/opens", "ending in 'Z'")]);

    let found = Manifest::toml_to_json("rounds = ").unwrap_err();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].pointer, "");
    assert!(found[0].reason.starts_with("malformed TOML"));
    // Duplicate keys are a TOML error.
    assert!(Manifest::toml_to_json("rounds = 1\nrounds = 2\n").is_err());
}

#[test]
fn check_times_against_the_clock() {
    let v = Manifest::from_json_value(with(
        full(),
        "/destruction",
        json!({"policy": "at", "at": "2026-12-01T00:00:00Z"}),
    ))
    .unwrap();
    let before = time::macros::datetime!(2026-09-01 00:00:00 UTC);
    assert!(v.manifest().check_times(before).is_empty());
    let during = time::macros::datetime!(2026-11-15 00:00:00 UTC);
    let found = v.manifest().check_times(during);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].pointer, "/window/closes");
    let after = time::macros::datetime!(2027-01-01 00:00:00 UTC);
    assert_eq!(v.manifest().check_times(after).len(), 2);
}

#[test]
fn problems_display_their_pointer() {
    let p = ManifestProblem::new("/rounds", "bad");
    assert_eq!(p.to_string(), "/rounds: bad");
    assert_eq!(
        ManifestProblem::new("", "bad").to_string(),
        "(document): bad"
    );
    assert_eq!(
        Timestamp::from_datetime(time::macros::datetime!(2026-10-01 02:00:00 +02:00)).to_string(),
        "2026-10-01T00:00:00Z"
    );
}

#[test]
fn parties_slots_and_readers_are_bounded_and_a_huge_list_is_one_problem() {
    let hex = |i: usize| format!("{i:064x}");
    let parties: Vec<Value> = (0..60_000)
        .map(|i| json!({ "name": format!("p{i}"), "identity": hex(i) }))
        .collect();
    refused(
        with(minimal(), "/parties", Value::Array(parties)),
        &[("/parties", "60000 parties; at most 64")],
    );
    let slots: serde_json::Map<String, Value> = (0..40_000)
        .map(|i| {
            (
                format!("s{i}"),
                json!({ "providers": [id('a')], "provide": "provide_once" }),
            )
        })
        .collect();
    refused(
        with(minimal(), "/slots", Value::Object(slots)),
        &[("/slots", "40000 slots; at most 64")],
    );
    let readers: serde_json::Map<String, Value> = (0..=MAX_READERS)
        .map(|i| (hex(i), json!("status")))
        .collect();
    refused(
        with(minimal(), "/readers", Value::Object(readers)),
        &[("/readers", "65 readers; at most 64")],
    );
    // At the bounds everything is accepted.
    let parties: Vec<Value> = (0..MAX_PARTIES)
        .map(|i| json!({ "name": format!("p{i}"), "identity": hex(i + 1) }))
        .collect();
    let slots: serde_json::Map<String, Value> = (0..MAX_SLOTS)
        .map(|i| {
            (
                format!("s{i}"),
                json!({ "providers": [hex(i + 1)], "provide": "provide_once" }),
            )
        })
        .collect();
    let readers: serde_json::Map<String, Value> = (0..MAX_READERS)
        .map(|i| (hex(i + 1), json!("result")))
        .collect();
    let bounded = with(
        with(
            with(minimal(), "/parties", Value::Array(parties)),
            "/slots",
            Value::Object(slots),
        ),
        "/readers",
        Value::Object(readers),
    );
    Manifest::from_json_value(bounded).unwrap();
}

#[test]
fn slot_types_judge_json_text_as_they_judge_parsed_values() {
    use crate::jcs::raw_kind;
    let types = [
        ValueType::Any,
        ValueType::String,
        ValueType::Integer,
        ValueType::Number,
        ValueType::Boolean,
        ValueType::Array,
        ValueType::Object,
    ];
    for text in [
        "null",
        "true",
        "7",
        "-7",
        "7.5",
        "1e3",
        "-0",
        "\"s\"",
        "[1]",
        "{\"a\":1}",
    ] {
        let value: Value = serde_json::from_str(text).unwrap();
        let kind = raw_kind(text.as_bytes()).unwrap();
        for t in types {
            assert_eq!(t.accepts_kind(kind), t.accepts(&value), "{t:?} {text}");
        }
    }
}

#[test]
fn input_size_limits_are_optional_bounded_and_consistent() {
    // Absent: none asked (the daemon's ceilings apply), and the raw JSON keeps no default.
    let v = Manifest::from_json_value(full()).unwrap();
    assert_eq!(v.manifest().limits.max_input_bytes, None);
    assert_eq!(v.manifest().limits.max_instance_input_bytes, None);
    let asked = with(
        with(full(), "/limits/max_input_bytes", json!(50_000_000)),
        "/limits/max_instance_input_bytes",
        json!(100_000_000),
    );
    let v = Manifest::from_json_value(asked).unwrap();
    assert_eq!(v.manifest().limits.max_input_bytes, Some(50_000_000));
    assert_eq!(
        v.manifest().limits.max_instance_input_bytes,
        Some(100_000_000)
    );
    refused(
        with(full(), "/limits/max_input_bytes", json!(0)),
        &[("/limits/max_input_bytes", "out of range 1..=536870912")],
    );
    refused(
        with(
            full(),
            "/limits/max_instance_input_bytes",
            json!(2u64 << 30),
        ),
        &[(
            "/limits/max_instance_input_bytes",
            "out of range 1..=1073741824",
        )],
    );
    refused(
        with(
            with(full(), "/limits/max_input_bytes", json!(2_000)),
            "/limits/max_instance_input_bytes",
            json!(1_000),
        ),
        &[(
            "/limits/max_input_bytes",
            "more than max_instance_input_bytes (1000)",
        )],
    );
}
