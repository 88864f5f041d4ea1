//! The library's functions (daemon/functions/*.rhai) end to end: shipped with a real
//! daemon on a private swtpm, inputs HPKE-encrypted by the parties as clients do, the
//! signed result verified under the TPM statement key and its output checked against
//! values computed here independently (statistics in Rust, Shamir shares made with
//! vsss-rs and ciphertexts opened with the `aes-gcm-siv` crate). Window and resubmission
//! rules of a tally, rounds of keyed messages, and bad inputs failing the evaluation with
//! a message naming the slot.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use aes_gcm_siv::Aes256GcmSiv;
use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use arbiter_policy::Public;
use arbiter_policy::jws::{Statement, verify_statement};
use arbiter_tests::TestTpm;
use arbiter_tests::daemon::{Party, TestDaemon};
use base64::Engine as _;
use hyper::StatusCode;
use serde_json::{Value, json};

/// The sha256 of library function `name`, as the daemon lists it in `GET /v1/functions`
/// from its first request on (shipped, registered and measured at start), checked against
/// the sha256 of the file in daemon/functions/ as a party checks a published measurement.
async fn library_function(caller: &Party, name: &str) -> String {
    let source = match name {
        "mean" => include_str!("../../daemon/functions/mean.rhai"),
        "median" => include_str!("../../daemon/functions/median.rhai"),
        "mode" => include_str!("../../daemon/functions/mode.rhai"),
        "stddev" => include_str!("../../daemon/functions/stddev.rhai"),
        "equal" => include_str!("../../daemon/functions/equal.rhai"),
        "psi" => include_str!("../../daemon/functions/psi.rhai"),
        "tally" => include_str!("../../daemon/functions/tally.rhai"),
        "credential-check" => include_str!("../../daemon/functions/credential-check.rhai"),
        "shamir-encrypt" => include_str!("../../daemon/functions/shamir-encrypt.rhai"),
        "keyed-messages" => include_str!("../../daemon/functions/keyed-messages.rhai"),
        other => panic!("no library function {other}"),
    };
    let r = caller.get("/v1/functions").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let listed = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name && f["library"] == true)
        .unwrap_or_else(|| panic!("{name} is not listed as a library function: {}", r.json));
    let sha256 = listed["sha256"].as_str().unwrap().to_owned();
    assert_eq!(
        sha256,
        hex::encode(arbiter_tests::sha256(&[source.as_bytes()]))
    );
    sha256
}

struct World {
    _tpm: TestTpm,
    _daemon: TestDaemon,
    operator: Party,
    parties: Vec<Party>,
}

/// A daemon with an operator and `n` parties named p0, p1, ...
async fn world(n: usize) -> World {
    let tpm = TestTpm::start();
    let state = tpm.path("daemon");
    let operator = arbiter_client::http::PartyIdentity::generate("operator").unwrap();
    let operator_id = operator.identity().unwrap();
    let daemon = TestDaemon::start(&tpm, &state, |c| {
        c.access.operators = vec![operator_id.clone()];
    })
    .await;
    World {
        operator: Party::with_identity("operator", operator, &daemon.url),
        parties: (0..n)
            .map(|i| Party::new(&format!("p{i}"), &daemon))
            .collect(),
        _daemon: daemon,
        _tpm: tpm,
    }
}

/// A manifest for `function` among all of `w`'s parties: each `(slot, party index)`
/// provided once by that party, evaluated when all are filled, every party a result
/// reader, the first party destroying on request.
fn manifest(w: &World, function: &str, slots: &[(&str, usize)]) -> Value {
    let parties: Vec<Value> = w
        .parties
        .iter()
        .map(|p| json!({"name": p.name, "identity": p.id}))
        .collect();
    let slot_specs: serde_json::Map<String, Value> = slots
        .iter()
        .map(|(slot, i)| {
            (
                (*slot).to_owned(),
                json!({"providers": [w.parties[*i].id], "provide": "provide_once"}),
            )
        })
        .collect();
    let readers: serde_json::Map<String, Value> = w
        .parties
        .iter()
        .map(|p| (p.id.clone(), json!("result")))
        .collect();
    json!({
        "name": "library function test",
        "function": { "sha256": function },
        "parties": parties,
        "slots": slot_specs,
        "trigger": { "kind": "all" },
        "readers": readers,
        "destruction": { "policy": "on_request", "destroyers": [w.parties[0].id] }
    })
}

async fn create(w: &World, manifest: Value) -> Value {
    let r = w
        .operator
        .post("/v1/instances", json!({ "manifest": manifest }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    r.json
}

fn input_path(inst: &Value, slot: &str) -> String {
    format!(
        "/v1/instances/{}/inputs/{slot}",
        inst["id"].as_str().unwrap()
    )
}

/// `party` submits `value` to `slot` in `round`, HPKE-encrypted as clients do.
async fn submit_as(party: &Party, inst: &Value, slot: &str, round: u64, value: &Value) -> Value {
    party
        .put(
            &input_path(inst, slot),
            party.encrypt_input(inst, slot, round, value),
        )
        .await
        .json
}

/// Like [`submit_as`], requiring acceptance.
async fn submit(party: &Party, inst: &Value, slot: &str, round: u64, value: &Value) {
    let r = party
        .put(
            &input_path(inst, slot),
            party.encrypt_input(inst, slot, round, value),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{slot}: {}", r.json);
}

async fn statement_key(p: &Party) -> Public {
    let r = p.get("/v1/tpm").await;
    let der = base64::engine::general_purpose::STANDARD
        .decode(r.json["statement_key"]["tpm2b_public"].as_str().unwrap())
        .unwrap();
    Public::from_tpm2b(&der).unwrap()
}

/// Waits for round `round`'s result as `reader`, requires success, verifies the signed
/// result under the TPM statement key (instance, round, function, output) and returns the
/// output.
async fn signed_output(reader: &Party, inst: &Value, round: u64) -> Value {
    let id = inst["id"].as_str().unwrap();
    let r = reader
        .get(&format!("/v1/instances/{id}/result?wait=60&round={round}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["evaluated"], true, "{}", r.json);
    assert_eq!(r.json["succeeded"], true, "{}", r.json);
    let key = statement_key(reader).await;
    let Statement::Result(st) = verify_statement(r.json["jws"].as_str().unwrap(), &key)
        .expect("the result's signature verifies under the statement key")
    else {
        panic!("not a result statement")
    };
    assert_eq!(st.instance_id, id);
    assert_eq!(st.round, round);
    assert_eq!(
        st.function_sha256,
        inst["function_sha256"].as_str().unwrap()
    );
    // The statement is JCS (RFC 8785), which writes a whole float as an integer (3.0 as
    // 3): numbers compare by value, everything else exactly.
    let shown = &r.json["output"];
    let same = match (st.output.as_f64(), shown.as_f64()) {
        (Some(signed), Some(shown)) => signed == shown,
        _ => st.output == *shown,
    };
    assert!(
        same,
        "the signed output {} is the one shown {shown}",
        st.output
    );
    shown.clone()
}

/// Waits for the result as `reader` and requires a failed evaluation whose message
/// contains every one of `words`.
async fn failed(reader: &Party, inst: &Value, words: &[&str]) {
    let id = inst["id"].as_str().unwrap();
    let r = reader
        .get(&format!("/v1/instances/{id}/result?wait=60"))
        .await;
    assert_eq!(r.json["evaluated"], true, "{}", r.json);
    assert_eq!(r.json["succeeded"], false, "{}", r.json);
    assert_eq!(r.json["error"]["reason"], "runtime", "{}", r.json);
    let message = r.json["error"]["message"].as_str().unwrap();
    for word in words {
        assert!(message.contains(word), "{word:?} not in {message:?}");
    }
}

/// Opens `nonce(12) ‖ ciphertext ‖ tag` (hex) with AES-256-GCM-SIV and empty associated
/// data, as a key holder does with any RFC 8452 implementation.
fn open(key: &[u8], sealed_hex: &Value) -> String {
    let bytes = hex::decode(sealed_hex.as_str().unwrap()).unwrap();
    let (nonce, ct) = bytes.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().unwrap();
    let cipher = Aes256GcmSiv::new_from_slice(key).unwrap();
    let plain = cipher
        .decrypt(&nonce.into(), Payload { msg: ct, aad: b"" })
        .expect("the ciphertext opens under the key");
    String::from_utf8(plain).unwrap()
}

fn sha256_hex(s: &str) -> String {
    hex::encode(arbiter_tests::sha256(&[s.as_bytes()]))
}

/// mean, median, mode and stddev over a number and an array from two parties, each
/// checked against the statistic computed here; a string in a slot fails the evaluation
/// with a message naming the slot.
#[tokio::test]
async fn statistics_over_every_number_of_every_slot() {
    let w = world(2).await;
    let a = json!([4, 1.5, 10, 1, -2.25, 1]);
    let b = json!(7);
    let mut xs: Vec<f64> = a
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    xs.push(7.0);
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let stddev = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let mut sorted = xs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    let mode = sorted
        .iter()
        .copied()
        .max_by(|x, y| {
            let count = |v: f64| sorted.iter().filter(|&&s| s == v).count();
            count(*x).cmp(&count(*y)).then(y.total_cmp(x))
        })
        .unwrap();

    let expectations = [
        ("mean", mean),
        ("median", median),
        ("mode", mode),
        ("stddev", stddev),
    ];
    for (name, want) in expectations {
        let f = library_function(&w.operator, name).await;
        let inst = create(&w, manifest(&w, &f, &[("a", 0), ("b", 1)])).await;
        submit(&w.parties[0], &inst, "a", 1, &a).await;
        submit(&w.parties[1], &inst, "b", 1, &b).await;
        let out = signed_output(&w.parties[1], &inst, 1).await;
        // One formatting: the signed JCS text, where a whole float is written as an
        // integer (the mode here is 1) and any other as its shortest round-trip form.
        assert!(out.is_number(), "{name}: a number: {out}");
        if want.fract() == 0.0 {
            assert!(
                out.is_i64(),
                "{name}: a whole number is written as an integer: {out}"
            );
        }
        let got = out.as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-12 * want.abs().max(1.0),
            "{name}: {got} vs {want}"
        );
    }

    // A bad input type: the evaluation fails and says which slot.
    let f = library_function(&w.operator, "mean").await;
    let inst = create(&w, manifest(&w, &f, &[("a", 0), ("b", 1)])).await;
    submit(&w.parties[0], &inst, "a", 1, &json!([1, 2])).await;
    submit(&w.parties[1], &inst, "b", 1, &json!("seven")).await;
    failed(&w.parties[0], &inst, &["slot `b`", "string", "number"]).await;
}

/// equal: structurally equal objects (key order and 1 vs 1.0 do not matter) give true; a
/// different array order gives false.
#[tokio::test]
async fn equal_compares_structurally() {
    let w = world(3).await;
    let f = library_function(&w.operator, "equal").await;
    let slots = [("a", 0), ("b", 1), ("c", 2)];
    let same = [
        json!({"name": "x", "scores": [1, 2.5], "tags": {"k": null}}),
        json!({"tags": {"k": null}, "scores": [1.0, 2.5], "name": "x"}),
        json!({"scores": [1, 2.5], "name": "x", "tags": {"k": null}}),
    ];
    let inst = create(&w, manifest(&w, &f, &slots)).await;
    for (i, (slot, _)) in slots.iter().enumerate() {
        submit(&w.parties[i], &inst, slot, 1, &same[i]).await;
    }
    assert_eq!(
        signed_output(&w.parties[2], &inst, 1).await,
        json!({"equal": true})
    );

    let inst = create(&w, manifest(&w, &f, &slots)).await;
    let mut different = same.clone();
    different[1]["scores"] = json!([2.5, 1]);
    for (i, (slot, _)) in slots.iter().enumerate() {
        submit(&w.parties[i], &inst, slot, 1, &different[i]).await;
    }
    assert_eq!(
        signed_output(&w.parties[0], &inst, 1).await,
        json!({"equal": false})
    );
}

/// psi: the sorted intersection (each element once) and its size, against a set
/// intersection computed here; a number among the strings fails naming the slot.
#[tokio::test]
async fn psi_reveals_the_sorted_intersection() {
    let w = world(2).await;
    let f = library_function(&w.operator, "psi").await;
    let a: Vec<String> = (0..200)
        .map(|i| format!("cust-{:03}", i * 3 % 250))
        .collect();
    let b: Vec<String> = (0..150)
        .map(|i| format!("cust-{:03}", i * 5 % 300))
        .collect();
    let want: std::collections::BTreeSet<&String> = a.iter().filter(|x| b.contains(x)).collect();
    let want: Vec<&String> = want.into_iter().collect();
    assert!(!want.is_empty());

    let inst = create(&w, manifest(&w, &f, &[("a", 0), ("b", 1)])).await;
    submit(&w.parties[0], &inst, "a", 1, &json!(a)).await;
    submit(&w.parties[1], &inst, "b", 1, &json!(b)).await;
    let out = signed_output(&w.parties[0], &inst, 1).await;
    assert_eq!(out, json!({"intersection": want, "size": want.len()}));

    let inst = create(&w, manifest(&w, &f, &[("a", 0), ("b", 1)])).await;
    submit(&w.parties[0], &inst, "a", 1, &json!(["x"])).await;
    submit(&w.parties[1], &inst, "b", 1, &json!(["x", 5])).await;
    failed(&w.parties[1], &inst, &["slot \"b\"", "array of strings"]).await;
}

/// tally under the manifest's rules: an open window with resubmission `last` (a voter
/// changes their vote and only the last counts), `reject` (a second vote is refused and
/// the first counts), and a window not yet open (votes refused).
#[tokio::test]
async fn tally_counts_ballots_under_the_window_and_resubmission_rules() {
    let w = world(4).await;
    let f = library_function(&w.operator, "tally").await;
    let fmt = |t: time::OffsetDateTime| {
        t.replace_nanosecond(0)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let now = time::OffsetDateTime::now_utc();
    let voters = [("v0", 0), ("v1", 1), ("v2", 2), ("v3", 3)];
    let ballots = [
        json!("yes"),
        json!(["no", "abstain"]),
        json!("yes"),
        json!(["yes", "no"]),
    ];
    let expected = |ballots: &[Value]| {
        let mut counts = std::collections::BTreeMap::<String, u64>::new();
        for b in ballots {
            let options: Vec<Value> = b.as_array().cloned().unwrap_or_else(|| vec![b.clone()]);
            for o in options {
                *counts.entry(o.as_str().unwrap().to_owned()).or_default() += 1;
            }
        }
        json!({"counts": counts, "ballots": ballots.len()})
    };

    // Resubmission `last`, inside an open window: v0 changes "yes" to "no" before the
    // last ballot arrives.
    let mut m = manifest(&w, &f, &voters);
    m["window"] = json!({
        "opens": fmt(now - time::Duration::hours(1)),
        "closes": fmt(now + time::Duration::hours(1)),
        "resubmission": "last"
    });
    let inst = create(&w, m).await;
    for (i, (slot, _)) in voters.iter().enumerate().take(3) {
        submit(&w.parties[i], &inst, slot, 1, &ballots[i]).await;
    }
    submit(&w.parties[0], &inst, "v0", 1, &json!("no")).await;
    submit(&w.parties[3], &inst, "v3", 1, &ballots[3]).await;
    let mut counted = ballots.clone();
    counted[0] = json!("no");
    let out = signed_output(&w.parties[3], &inst, 1).await;
    assert_eq!(out, expected(&counted));
    assert_eq!(out["counts"]["no"], 3, "{out}");

    // Resubmission `reject`: v0's second vote is refused with a clear error and the
    // first one counts.
    let mut m = manifest(&w, &f, &voters);
    m["window"] = json!({"resubmission": "reject"});
    let inst = create(&w, m).await;
    submit(&w.parties[0], &inst, "v0", 1, &ballots[0]).await;
    let refused = submit_as(&w.parties[0], &inst, "v0", 1, &json!("no")).await;
    assert_eq!(refused["error"]["code"], "already_submitted", "{refused}");
    for (i, (slot, _)) in voters.iter().enumerate().skip(1) {
        submit(&w.parties[i], &inst, slot, 1, &ballots[i]).await;
    }
    assert_eq!(
        signed_output(&w.parties[0], &inst, 1).await,
        expected(&ballots)
    );

    // A window that opens later: no vote is accepted yet.
    let mut m = manifest(&w, &f, &voters);
    m["window"] = json!({"opens": fmt(now + time::Duration::hours(1))});
    let inst = create(&w, m).await;
    let early = submit_as(&w.parties[1], &inst, "v1", 1, &ballots[1]).await;
    assert_eq!(early["error"]["code"], "window_not_open", "{early}");

    // A ballot naming an option twice fails the evaluation, naming the slot.
    let inst = create(&w, manifest(&w, &f, &voters)).await;
    for (i, (slot, _)) in voters.iter().enumerate() {
        let ballot = if i == 2 {
            json!(["yes", "yes"])
        } else {
            ballots[i].clone()
        };
        submit(&w.parties[i], &inst, slot, 1, &ballot).await;
    }
    failed(&w.parties[0], &inst, &["slot \"v2\"", "more than once"]).await;
}

/// credential-check: true when sha256(credential) is on the list, false otherwise, and
/// nothing else in the output.
#[tokio::test]
async fn credential_check_answers_only_true_or_false() {
    let w = world(2).await;
    let f = library_function(&w.operator, "credential-check").await;
    let list: Vec<String> = ["hunter2", "correct horse", "letmein"]
        .iter()
        .map(|c| sha256_hex(c))
        .collect();
    for (credential, want) in [("correct horse", true), ("battery staple", false)] {
        let inst = create(&w, manifest(&w, &f, &[("credential", 0), ("list", 1)])).await;
        submit(&w.parties[0], &inst, "credential", 1, &json!(credential)).await;
        submit(&w.parties[1], &inst, "list", 1, &json!(list)).await;
        assert_eq!(signed_output(&w.parties[0], &inst, 1).await, json!(want));
    }
    // A list of plaintext credentials instead of digests is refused.
    let inst = create(&w, manifest(&w, &f, &[("credential", 0), ("list", 1)])).await;
    submit(&w.parties[0], &inst, "credential", 1, &json!("hunter2")).await;
    submit(&w.parties[1], &inst, "list", 1, &json!(["hunter2"])).await;
    failed(&w.parties[0], &inst, &["slot `list`", "sha256 digests"]).await;
}

/// shamir-encrypt: three key holders give 2-of-3 shares of a key made here with vsss-rs,
/// a fourth party a plaintext; the output opens under the key with the `aes-gcm-siv`
/// crate, and the key appears nowhere in the answer.
#[tokio::test]
async fn shamir_encrypt_keeps_the_key_inside() {
    use rand::SeedableRng;
    let w = world(4).await;
    let f = library_function(&w.operator, "shamir-encrypt").await;
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    let mut rng = rand::rngs::StdRng::from_seed(seed);
    let shares = vsss_rs::Gf256::split_bytes(2, 3, key, &mut rng).unwrap();
    let slots = [
        ("share_1", 0),
        ("share_2", 1),
        ("share_3", 2),
        ("plaintext", 3),
    ];
    let inst = create(&w, manifest(&w, &f, &slots)).await;
    for (i, share) in shares.iter().enumerate() {
        submit(
            &w.parties[i],
            &inst,
            slots[i].0,
            1,
            &json!(hex::encode(share)),
        )
        .await;
    }
    let secret = "wire 1,000,000 to account 42";
    submit(&w.parties[3], &inst, "plaintext", 1, &json!(secret)).await;
    let out = signed_output(&w.parties[1], &inst, 1).await;
    assert_eq!(out.as_object().unwrap().len(), 1, "{out}");
    assert_eq!(open(&key, &out["ciphertext"]), secret);
    assert!(!out.to_string().contains(&hex::encode(key)));

    // A share of the wrong length fails the evaluation, naming the slot.
    let inst = create(&w, manifest(&w, &f, &slots)).await;
    for (i, share) in shares.iter().enumerate() {
        let value = if i == 1 {
            json!(hex::encode(&share[..10]))
        } else {
            json!(hex::encode(share))
        };
        submit(&w.parties[i], &inst, slots[i].0, 1, &value).await;
    }
    submit(&w.parties[3], &inst, "plaintext", 1, &json!(secret)).await;
    failed(
        &w.parties[0],
        &inst,
        &["slot \"share_2\"", "66 hex characters"],
    )
    .await;
}

/// keyed-messages over four rounds: the key is provided once, a message each round; each
/// round's output opens to its message, distinct messages never share a nonce, and a
/// repeated message gives the same ciphertext (the documented price of determinism).
#[tokio::test]
async fn keyed_messages_encrypt_round_after_round() {
    let w = world(2).await;
    let f = library_function(&w.operator, "keyed-messages").await;
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    let mut m = manifest(&w, &f, &[("key", 0), ("message", 1)]);
    m["slots"]["message"]["provide"] = json!("provide_each_time");
    m["rounds"] = json!(4);
    let inst = create(&w, m).await;
    submit(&w.parties[0], &inst, "key", 1, &json!(hex::encode(key))).await;
    let messages = [
        "attack at dawn",
        "attack at dusk",
        "retreat",
        "attack at dawn",
    ];
    let mut outputs = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let round = i as u64 + 1;
        submit(&w.parties[1], &inst, "message", round, &json!(message)).await;
        let out = signed_output(&w.parties[0], &inst, round).await;
        assert_eq!(open(&key, &out["ciphertext"]), *message, "round {round}");
        outputs.push(out["ciphertext"].as_str().unwrap().to_owned());
    }
    for i in 0..3 {
        for j in i + 1..3 {
            assert_ne!(outputs[i], outputs[j]);
            assert_ne!(outputs[i][..24], outputs[j][..24], "a nonce was reused");
        }
    }
    assert_eq!(
        outputs[0], outputs[3],
        "same key and message, same ciphertext"
    );
}

/// Every library function's metadata (`<name>.json`): a description and an input schema
/// that compiles as JSON Schema 2020-12, accepts inputs of the shapes the tests above
/// submit and refuses the bad shapes the scripts refuse.
#[test]
fn metadata_describes_the_inputs() {
    let metadata = |name: &str| -> Value {
        let text = match name {
            "mean" => include_str!("../../daemon/functions/mean.json"),
            "median" => include_str!("../../daemon/functions/median.json"),
            "mode" => include_str!("../../daemon/functions/mode.json"),
            "stddev" => include_str!("../../daemon/functions/stddev.json"),
            "equal" => include_str!("../../daemon/functions/equal.json"),
            "psi" => include_str!("../../daemon/functions/psi.json"),
            "tally" => include_str!("../../daemon/functions/tally.json"),
            "credential-check" => include_str!("../../daemon/functions/credential-check.json"),
            "shamir-encrypt" => include_str!("../../daemon/functions/shamir-encrypt.json"),
            "keyed-messages" => include_str!("../../daemon/functions/keyed-messages.json"),
            other => panic!("no library function {other}"),
        };
        serde_json::from_str(text).unwrap()
    };
    let digest = sha256_hex("x");
    let share = "01".repeat(33);
    let cases: [(&str, Value, Value); 10] = [
        ("mean", json!({"a": [1, 2.5], "b": 3}), json!({"a": "3"})),
        ("median", json!({"a": [1], "b": 3}), json!({"a": [[1]]})),
        ("mode", json!({"a": 1.5}), json!({"a": null})),
        ("stddev", json!({"a": [1, 2]}), json!({"a": {"x": 1}})),
        ("equal", json!({"a": {"k": [1]}, "b": "x"}), json!({"a": 1})),
        (
            "psi",
            json!({"a": ["x"], "b": []}),
            json!({"a": ["x", 1], "b": []}),
        ),
        (
            "tally",
            json!({"v0": "yes", "v1": ["no", "maybe"]}),
            json!({"v0": ["a", "a"]}),
        ),
        (
            "credential-check",
            json!({"credential": "x", "list": [digest]}),
            json!({"credential": "x", "list": ["x"]}),
        ),
        (
            "shamir-encrypt",
            json!({"share_1": share, "share_2": share, "plaintext": "p"}),
            json!({"share_1": "01ab", "share_2": share, "plaintext": "p"}),
        ),
        (
            "keyed-messages",
            json!({"key": "ab".repeat(32), "message": "m"}),
            json!({"key": "ab", "message": "m"}),
        ),
    ];
    for (name, good, bad) in cases {
        let m = metadata(name);
        let fields: Vec<&String> = m.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["description", "input_schema"], "{name}");
        let description = m["description"].as_str().unwrap();
        assert!(
            !description.is_empty() && description.len() < 300,
            "{name}: {description}"
        );
        let schema = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&m["input_schema"])
            .unwrap_or_else(|e| panic!("{name}: the input schema does not compile: {e}"));
        assert!(schema.is_valid(&good), "{name} refuses {good}");
        assert!(!schema.is_valid(&bad), "{name} accepts {bad}");
    }
}
