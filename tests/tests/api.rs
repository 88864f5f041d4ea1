//! The daemon over real HTTPS (mutual TLS) on a private swtpm: a complete two-party
//! computation, authorisation of every endpoint, bad input of every kind, hostile scripts,
//! and durability across a restart.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use arbiter_tests::TestTpm;
use arbiter_tests::daemon::{Party, TestDaemon, two_party_manifest};
use hyper::StatusCode;
use serde_json::{Value, json};

const SUM: &str = "fn compute(inputs) { inputs.a + inputs.b }";

struct World {
    _tpm: TestTpm,
    daemon: TestDaemon,
    operator: Party,
    alice: Party,
    bob: Party,
    mallory: Party,
}

async fn world() -> World {
    world_with(|_| {}).await
}

async fn world_with(configure: impl FnOnce(&mut arbiter_daemon::config::Config)) -> World {
    let tpm = TestTpm::start();
    let state = tpm.path("daemon");
    let operator = arbiter_client::http::PartyIdentity::generate("operator").unwrap();
    let operator_id = operator.identity().unwrap();
    let daemon = TestDaemon::start(&tpm, &state, |c| {
        c.access.operators = vec![operator_id.clone()];
        configure(c);
    })
    .await;
    World {
        operator: Party::with_identity("operator", operator, &daemon.url),
        alice: Party::new("alice", &daemon),
        bob: Party::new("bob", &daemon),
        mallory: Party::new("mallory", &daemon),
        daemon,
        _tpm: tpm,
    }
}

fn assert_error(r: &arbiter_client::http::Response, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json["error"]["code"], code, "{}", r.json);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        r.json
    );
}

async fn register(w: &World, source: &str) -> Value {
    let r = w
        .operator
        .post(
            "/v1/functions",
            json!({"name": "f", "language": "rhai", "source": source}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    r.json
}

async fn create(w: &World, manifest: Value) -> Value {
    let r = w
        .operator
        .post("/v1/instances", json!({ "manifest": manifest }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    r.json
}

async fn two_party_instance(w: &World, source: &str) -> Value {
    let f = register(w, source).await;
    create(
        w,
        two_party_manifest(f["sha256"].as_str().unwrap(), &w.alice, &w.bob),
    )
    .await
}

fn input_path(inst: &Value, slot: &str) -> String {
    format!(
        "/v1/instances/{}/inputs/{slot}",
        inst["id"].as_str().unwrap()
    )
}

#[tokio::test]
async fn a_complete_two_party_computation() {
    let w = world().await;
    let f = register(&w, SUM).await;
    assert_eq!(
        f["sha256"],
        hex::encode(arbiter_tests::sha256(&[SUM.as_bytes()])),
        "the measurement is sha256 of the source exactly as uploaded"
    );
    let inst = create(
        &w,
        two_party_manifest(f["sha256"].as_str().unwrap(), &w.alice, &w.bob),
    )
    .await;
    assert_eq!(inst["state"], "open");
    assert_eq!(inst["round"], 1);
    assert_eq!(inst["public_key"].as_str().unwrap().len(), 130);
    assert_eq!(inst["hpke_suite"], arbiter_policy::hpke::SUITE);

    let id = inst["id"].as_str().unwrap();
    let ra = w
        .alice
        .put(
            &input_path(&inst, "a"),
            w.alice.encrypt_input(&inst, "a", 1, &json!(1234567)),
        )
        .await;
    assert_eq!(ra.status, StatusCode::OK, "{}", ra.json);
    assert_eq!(ra.json["round"], 1);
    // Parties see which slots are filled, never the values.
    let d = w.bob.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.json["slots"][0]["filled"], true);
    assert_eq!(d.json["slots"][0]["submitter"], w.alice.id);
    assert_eq!(d.json["slots"][1]["filled"], false);
    assert!(
        !d.body.windows(7).any(|w| w == b"1234567"),
        "the value must not appear"
    );

    let rb = w
        .bob
        .put(
            &input_path(&inst, "b"),
            w.bob.encrypt_input(&inst, "b", 1, &json!(7654321)),
        )
        .await;
    assert_eq!(rb.status, StatusCode::OK, "{}", rb.json);

    let r = w
        .alice
        .get(&format!("/v1/instances/{id}/result?wait=30"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["evaluated"], true, "{}", r.json);
    assert_eq!(r.json["succeeded"], true, "{}", r.json);
    assert_eq!(r.json["output"], 8888888);
    let inputs = r.json["inputs"].as_array().unwrap();
    assert!(
        inputs
            .iter()
            .any(|i| i["ciphertext_sha256"] == ra.json["ciphertext_sha256"])
    );
    assert!(
        inputs
            .iter()
            .any(|i| i["ciphertext_sha256"] == rb.json["ciphertext_sha256"])
    );
    let r = w.bob.get(&format!("/v1/instances/{id}/result")).await;
    assert_eq!(r.json["output"], 8888888);
    let d = w.alice.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(d.json["state"], "evaluated");
    assert_eq!(d.json["accepting_inputs"], false);

    let usage = w.operator.get(&format!("/v1/instances/{id}/usage")).await;
    assert_eq!(usage.status, StatusCode::OK);
    assert_eq!(usage.json["totals"]["inputs_submitted"], 2);
    assert!(usage.json["per_identity"][&w.alice.id].is_object());
    let usage = w.alice.get(&format!("/v1/instances/{id}/usage")).await;
    assert!(
        usage.json.get("per_identity").is_none(),
        "per-party figures are for operators"
    );
}

#[tokio::test]
async fn unauthorised_identities_are_refused_and_change_nothing() {
    let w = world().await;
    let inst = two_party_instance(&w, SUM).await;
    let id = inst["id"].as_str().unwrap();
    let m = &w.mallory;
    // Registration and creation need roles.
    assert_error(
        &m.post(
            "/v1/functions",
            json!({"name": "x", "language": "rhai", "source": SUM}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // The shipped library and the operator's one function: mallory's registered nothing.
    let f = w.operator.get("/v1/functions").await;
    assert_eq!(
        f.json.as_array().unwrap().len(),
        arbiter_tests::library::shipped().len() + 1
    );
    assert_error(
        &m.post("/v1/instances", json!({"manifest": inst})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // Instance endpoints are for its parties.
    assert_error(
        &m.get(&format!("/v1/instances/{id}")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &m.get(&format!("/v1/instances/{id}/usage")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &m.get(&format!("/v1/instances/{id}/result")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &m.post(&format!("/v1/instances/{id}/approve"), json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &m.post(&format!("/v1/instances/{id}/evaluate"), json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(&m.get("/metrics").await, StatusCode::FORBIDDEN, "forbidden");
    // Mallory cannot fill a slot, even with a well-formed ciphertext for it.
    let body = m.encrypt_input(&inst, "a", 1, &json!(1));
    assert_error(
        &m.put(&input_path(&inst, "a"), body).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &m.delete(&input_path(&inst, "a")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // Bob cannot fill Alice's slot.
    let body = w.bob.encrypt_input(&inst, "a", 1, &json!(1));
    assert_error(
        &w.bob.put(&input_path(&inst, "a"), body).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let d = w.alice.get(&format!("/v1/instances/{id}")).await;
    assert!(
        d.json["slots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["filled"] == false)
    );
    // Operators see the instance.
    assert_eq!(
        w.operator.get(&format!("/v1/instances/{id}")).await.status,
        StatusCode::OK
    );
    let metrics = w.operator.get("/metrics").await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("arbiter_requests_refused_total"));
}

#[tokio::test]
async fn bad_inputs_are_refused_with_clear_errors() {
    // Input bodies are bounded by the input limits (here the configured slot ceiling),
    // not by max_body_bytes (tests/tests/large_inputs.rs covers them in full).
    let w = world_with(|c| {
        c.limits.max_body_bytes = 64 << 10;
        c.limits.max_input_bytes = 48 << 10;
    })
    .await;
    let inst = two_party_instance(&w, SUM).await;
    let id = inst["id"].as_str().unwrap();
    let path = input_path(&inst, "a");
    let a = &w.alice;

    // Tampered ciphertext.
    let mut body = a.encrypt_input(&inst, "a", 1, &json!(5));
    let mut ct = base64_decode(&body["ciphertext"]);
    ct[3] ^= 1;
    body["ciphertext"] = json!(base64_encode(&ct));
    assert_error(
        &a.put(&path, body).await,
        StatusCode::BAD_REQUEST,
        "decryption_failed",
    );
    // Encrypted for another slot, another round, or as another submitter (a replay of
    // someone else's ciphertext).
    let other_slot = a.encrypt_input(&inst, "b", 1, &json!(5));
    assert_error(
        &a.put(&path, other_slot).await,
        StatusCode::BAD_REQUEST,
        "decryption_failed",
    );
    let other_round = a.encrypt_input(&inst, "a", 2, &json!(5));
    assert_error(
        &a.put(&path, other_round).await,
        StatusCode::BAD_REQUEST,
        "decryption_failed",
    );
    let bobs = w.bob.encrypt_input(&inst, "b", 1, &json!(5));
    let replay = a.put(&input_path(&inst, "b"), bobs.clone()).await;
    assert_error(&replay, StatusCode::FORBIDDEN, "forbidden");
    let as_bob = a.encrypt_input_as(&inst, "a", 1, &w.bob.id, &json!(5));
    assert_error(
        &a.put(&path, as_bob).await,
        StatusCode::BAD_REQUEST,
        "decryption_failed",
    );
    // Another instance's ciphertext.
    let other = two_party_instance(&w, "fn compute(inputs) { 1 }").await;
    let foreign = a.encrypt_input(&other, "a", 1, &json!(5));
    assert_error(
        &a.put(&path, foreign).await,
        StatusCode::BAD_REQUEST,
        "decryption_failed",
    );
    // Unknown slot, unknown instance, malformed id.
    let body = a.encrypt_input(&inst, "zz", 1, &json!(5));
    assert_error(
        &a.put(&input_path(&inst, "zz"), body).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &a.get(&format!("/v1/instances/{}", "0".repeat(32))).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &a.get("/v1/instances/nope").await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );
    // Malformed JSON, unknown fields, bad base64, oversized body.
    let r = a
        .conn
        .request(hyper::Method::PUT, &path, Some(b"{not json".to_vec()))
        .await
        .unwrap();
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json");
    assert_error(
        &a.put(&path, json!({"enc": "x", "ciphertext": "y", "extra": 1}))
            .await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );
    assert_error(
        &a.put(&path, json!({"enc": "!!", "ciphertext": "AA=="}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_base64",
    );
    let huge = json!({"enc": "A".repeat(100_000), "ciphertext": "AA=="});
    assert_error(
        &a.put(&path, huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "input_too_large",
    );
    // A mismatching function condition: refused and not stored.
    let mut cond = a.encrypt_input(&inst, "a", 1, &json!(5));
    cond["expect_function_sha256"] = json!("0".repeat(64));
    assert_error(
        &a.put(&path, cond).await,
        StatusCode::CONFLICT,
        "function_mismatch",
    );
    // Nothing was stored by any of that.
    let d = a.get(&format!("/v1/instances/{id}")).await;
    assert!(
        d.json["slots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["filled"] == false),
        "{}",
        d.json
    );

    // A good input, then a second one under `reject`.
    let mut good = a.encrypt_input(&inst, "a", 1, &json!(5));
    good["expect_function_sha256"] = inst["function_sha256"].clone();
    assert_eq!(a.put(&path, good).await.status, StatusCode::OK);
    let again = a.encrypt_input(&inst, "a", 1, &json!(6));
    assert_error(
        &a.put(&path, again).await,
        StatusCode::CONFLICT,
        "already_submitted",
    );
    // Withdrawal, then resubmission works.
    assert_eq!(a.delete(&path).await.status, StatusCode::OK);
    let again = a.encrypt_input(&inst, "a", 1, &json!(6));
    assert_eq!(a.put(&path, again).await.status, StatusCode::OK);
    // Unknown endpoints and methods.
    assert_error(
        &a.get("/v1/nothing").await,
        StatusCode::NOT_FOUND,
        "no_such_endpoint",
    );
    assert_error(
        &a.delete("/v1/functions").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn method_not_allowed_lists_the_allowed_methods() {
    let w = world().await;
    let r = w.alice.delete("/v1/functions").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.headers
            .get(hyper::header::ALLOW)
            .map(|v| v.to_str().unwrap()),
        Some("GET, POST")
    );
    let r = w
        .alice
        .put(&format!("/v1/instances/{}", "0".repeat(32)), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.headers
            .get(hyper::header::ALLOW)
            .map(|v| v.to_str().unwrap()),
        Some("GET")
    );
}

#[tokio::test]
async fn manifests_are_validated_with_pointers() {
    let w = world().await;
    let f = register(&w, SUM).await;
    let mut m = two_party_manifest(f["sha256"].as_str().unwrap(), &w.alice, &w.bob);
    m["trigger"] = json!({"kind": "threshold", "k": 5});
    m["readers"][&w.mallory.id] = json!("result");
    m["rounds"] = json!(1.5);
    let r = w
        .operator
        .post("/v1/instances", json!({ "manifest": m }))
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_manifest");
    let pointers: Vec<&str> = r.json["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pointer"].as_str().unwrap())
        .collect();
    assert!(pointers.contains(&"/rounds"), "{pointers:?}");
    // A manifest naming an unregistered function.
    let m = two_party_manifest(&"1".repeat(64), &w.alice, &w.bob);
    let r = w
        .operator
        .post("/v1/instances", json!({ "manifest": m }))
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_manifest");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/function/sha256")
    );
}

#[tokio::test]
async fn hostile_scripts_are_stopped_and_the_daemon_keeps_serving() {
    let w = world().await;
    for (source, reason) in [
        ("fn compute(inputs) { loop { } }", "operation_limit"),
        (
            "fn f(x) { f(x + 1) } fn compute(inputs) { f(0) }",
            "call_depth_limit",
        ),
        (
            "fn compute(inputs) { let s = \"x\"; loop { s += s; } }",
            "size_limit",
        ),
    ] {
        let inst = two_party_instance(&w, source).await;
        let id = inst["id"].as_str().unwrap();
        for (p, slot) in [(&w.alice, "a"), (&w.bob, "b")] {
            let body = p.encrypt_input(&inst, slot, 1, &json!(1));
            assert_eq!(
                p.put(&input_path(&inst, slot), body).await.status,
                StatusCode::OK
            );
        }
        let r = w
            .alice
            .get(&format!("/v1/instances/{id}/result?wait=60"))
            .await;
        assert_eq!(r.json["evaluated"], true, "{}", r.json);
        assert_eq!(r.json["succeeded"], false, "{}", r.json);
        assert_eq!(r.json["error"]["reason"], reason, "{source}: {}", r.json);
        assert_eq!(w.alice.get("/healthz").await.status, StatusCode::OK);
    }
    // A script that does not compile is refused at registration.
    let r = w
        .operator
        .post(
            "/v1/functions",
            json!({"name": "bad", "language": "rhai", "source": "fn compute( {"}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_script");
}

#[tokio::test]
async fn explicit_trigger_rounds_and_status_readers() {
    let w = world().await;
    let f = register(&w, "fn compute(inputs) { inputs.key + inputs.msg }").await;
    let manifest = json!({
        "function": { "sha256": f["sha256"] },
        "parties": [
            { "name": "alice", "identity": w.alice.id },
            { "name": "bob", "identity": w.bob.id }
        ],
        "slots": {
            "key": { "providers": [w.alice.id], "provide": "provide_once" },
            "msg": { "providers": [w.bob.id], "provide": "provide_each_time" }
        },
        "trigger": { "kind": "explicit" },
        "evaluators": [w.alice.id],
        "readers": { (w.alice.id.clone()): "result", (w.bob.id.clone()): "status" },
        "rounds": 2,
        "approval": "explicit",
        "destruction": { "policy": "on_request", "destroyers": [w.alice.id] }
    });
    let inst = create(&w, manifest).await;
    let id = inst["id"].as_str().unwrap();
    // Explicit approval: inputs wait for every party.
    let body = w.alice.encrypt_input(&inst, "key", 1, &json!(100));
    assert_error(
        &w.alice.put(&input_path(&inst, "key"), body.clone()).await,
        StatusCode::CONFLICT,
        "awaiting_approval",
    );
    assert_eq!(
        w.alice
            .post(&format!("/v1/instances/{id}/approve"), json!({}))
            .await
            .status,
        StatusCode::OK
    );
    let r = w
        .bob
        .post(&format!("/v1/instances/{id}/approve"), json!({}))
        .await;
    assert_eq!(r.json["complete"], true);
    assert_eq!(
        w.alice.put(&input_path(&inst, "key"), body).await.status,
        StatusCode::OK
    );
    // Evaluation needs every slot, and an evaluator.
    assert_error(
        &w.alice
            .post(&format!("/v1/instances/{id}/evaluate"), json!({}))
            .await,
        StatusCode::CONFLICT,
        "slots_missing",
    );
    let body = w.bob.encrypt_input(&inst, "msg", 1, &json!(1));
    assert_eq!(
        w.bob.put(&input_path(&inst, "msg"), body).await.status,
        StatusCode::OK
    );
    assert_error(
        &w.bob
            .post(&format!("/v1/instances/{id}/evaluate"), json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(
        w.alice
            .post(&format!("/v1/instances/{id}/evaluate"), json!({}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let r = w
        .alice
        .get(&format!("/v1/instances/{id}/result?round=1&wait=30"))
        .await;
    assert_eq!(r.json["output"], 101, "{}", r.json);
    // Bob reads status only.
    let s = w
        .bob
        .get(&format!("/v1/instances/{id}/result?round=1"))
        .await;
    assert_eq!(s.json["evaluated"], true);
    assert!(s.json.get("output").is_none(), "{}", s.json);
    // Round 2: the key persists, the message must be provided again.
    let d = w.alice.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(d.json["round"], 2);
    let slots = d.json["slots"].as_array().unwrap();
    assert_eq!(
        slots.iter().find(|s| s["slot"] == "key").unwrap()["filled"],
        true
    );
    assert_eq!(
        slots.iter().find(|s| s["slot"] == "msg").unwrap()["filled"],
        false
    );
    let body = w.bob.encrypt_input(&inst, "msg", 2, &json!(2));
    assert_eq!(
        w.bob.put(&input_path(&inst, "msg"), body).await.status,
        StatusCode::OK
    );
    assert_eq!(
        w.alice
            .post(&format!("/v1/instances/{id}/evaluate"), json!({}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let r = w
        .alice
        .get(&format!("/v1/instances/{id}/result?round=2&wait=30"))
        .await;
    assert_eq!(r.json["output"], 102, "{}", r.json);
    // After the last round no more inputs.
    let body = w.bob.encrypt_input(&inst, "msg", 3, &json!(3));
    assert_error(
        &w.bob.put(&input_path(&inst, "msg"), body).await,
        StatusCode::CONFLICT,
        "closed",
    );
}

#[tokio::test]
async fn a_restart_keeps_every_acknowledged_input() {
    let tpm = TestTpm::start();
    let state = tpm.path("daemon");
    let operator = arbiter_client::http::PartyIdentity::generate("operator").unwrap();
    let operator_id = operator.identity().unwrap();
    let daemon = TestDaemon::start(&tpm, &state, |c| {
        c.access.operators = vec![operator_id.clone()]
    })
    .await;
    let w = World {
        operator: Party::with_identity("operator", operator, &daemon.url),
        alice: Party::new("alice", &daemon),
        bob: Party::new("bob", &daemon),
        mallory: Party::new("mallory", &daemon),
        daemon,
        _tpm: tpm,
    };
    let inst = two_party_instance(&w, SUM).await;
    let id = inst["id"].as_str().unwrap().to_owned();
    let body = w.alice.encrypt_input(&inst, "a", 1, &json!(40));
    let receipt = w.alice.put(&input_path(&inst, "a"), body).await;
    assert_eq!(receipt.status, StatusCode::OK);
    let tls_before = receipt.server_spki_sha256.clone();

    let World {
        daemon,
        _tpm: tpm,
        operator,
        mut alice,
        mut bob,
        ..
    } = w;
    daemon.stop().await;
    let daemon = TestDaemon::start(&tpm, &state, |c| {
        c.access.operators = vec![operator_id.clone()]
    })
    .await;
    alice.reconnect(&daemon.url);
    bob.reconnect(&daemon.url);
    let d = alice.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.json);
    assert_eq!(
        d.server_spki_sha256, tls_before,
        "the TLS key survives restarts"
    );
    let a = d.json["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slot"] == "a")
        .unwrap()
        .clone();
    assert_eq!(a["ciphertext_sha256"], receipt.json["ciphertext_sha256"]);
    let body = bob.encrypt_input(&inst, "b", 1, &json!(2));
    assert_eq!(
        bob.put(&input_path(&inst, "b"), body).await.status,
        StatusCode::OK
    );
    let r = alice
        .get(&format!("/v1/instances/{id}/result?wait=30"))
        .await;
    assert_eq!(r.json["output"], 42, "{}", r.json);
    drop(operator);
    daemon.stop().await;
}

#[tokio::test]
async fn openapi_document_is_served() {
    let w = world().await;
    let r = w.alice.get("/v1/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["openapi"], "3.0.3");
    assert!(r.json["paths"]["/v1/instances/{id}/inputs/{slot}"]["put"].is_object());
    assert_eq!(r.json, arbiter_daemon::api::routes::openapi());
}

fn base64_decode(v: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn inputs_outside_the_window_are_refused() {
    let w = world().await;
    let f = register(&w, SUM).await;
    let fmt = |t: time::OffsetDateTime| {
        t.replace_nanosecond(0)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let now = time::OffsetDateTime::now_utc();
    // Not yet open.
    let mut m = two_party_manifest(f["sha256"].as_str().unwrap(), &w.alice, &w.bob);
    m["window"] = json!({"opens": fmt(now + time::Duration::hours(1))});
    let later = create(&w, m).await;
    let body = w.alice.encrypt_input(&later, "a", 1, &json!(1));
    assert_error(
        &w.alice.put(&input_path(&later, "a"), body).await,
        StatusCode::CONFLICT,
        "window_not_open",
    );
    // Closing in two seconds: accepted now, refused after.
    let mut m = two_party_manifest(f["sha256"].as_str().unwrap(), &w.alice, &w.bob);
    m["window"] = json!({"closes": fmt(now + time::Duration::seconds(3))});
    let soon = create(&w, m).await;
    let body = w.alice.encrypt_input(&soon, "a", 1, &json!(1));
    assert_eq!(
        w.alice.put(&input_path(&soon, "a"), body).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let body = w.bob.encrypt_input(&soon, "b", 1, &json!(1));
    assert_error(
        &w.bob.put(&input_path(&soon, "b"), body).await,
        StatusCode::CONFLICT,
        "window_closed",
    );
    // A window that closed already is refused at creation.
    let mut m = two_party_manifest(f["sha256"].as_str().unwrap(), &w.alice, &w.bob);
    m["window"] = json!({"closes": fmt(now - time::Duration::hours(1))});
    let r = w
        .operator
        .post("/v1/instances", json!({ "manifest": m }))
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_manifest");
}
