//! Image upgrades (docs/appliance.md, "Upgrades"): an operator lists the live instances
//! (`GET /v1/admin/upgrade`); authorizing the upgrade is refused while one is live; once
//! it is destroyed the authorization stands and no instance is created; a start in the
//! same platform state (an aborted upgrade) changes nothing; the first start in another
//! platform state (a platform PCR extended, as a new image's boot chain would) seals
//! afresh — a new sealing index and statement key, the same AK, the authorization gone —
//! and the daemon works fully: a new instance is created and evaluated. A forced upgrade
//! with a live instance seals afresh too, and that instance is unrecoverable until an
//! operator's epoch reset gives it up.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use arbiter_client::http::PartyIdentity;
use arbiter_tests::TestTpm;
use arbiter_tests::daemon::{Party, TestDaemon, two_party_manifest};
use hyper::StatusCode;
use serde_json::json;

const CONCAT: &str = "fn compute(inputs) { sha256(inputs.a + inputs.b) }\n";
const SPEC_OUTPUT: &str = "579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63";

/// A configuration change that makes `op_id` the operator.
fn operators(op_id: &str) -> impl Fn(&mut arbiter_daemon::config::Config) + Copy + '_ {
    move |c| c.access.operators = vec![op_id.to_owned()]
}

/// A daemon on `tpm` with its state in `state`, its operator's identity, and the operator,
/// Alice and Bob as parties.
async fn started(
    tpm: &TestTpm,
    state: &std::path::Path,
) -> (TestDaemon, String, Party, Party, Party) {
    let operator = PartyIdentity::generate("operator").unwrap();
    let op_id = operator.identity().unwrap();
    let d = TestDaemon::start(tpm, state, operators(&op_id)).await;
    let op = Party::with_identity("operator", operator, &d.url);
    let alice = Party::new("alice", &d);
    let bob = Party::new("bob", &d);
    (d, op_id, op, alice, bob)
}

/// Registers the concat function, creates a two-party instance and submits Alice's input:
/// an instance left live, Bob's slot open. Returns its manifest, the instance as created and
/// its id.
async fn live_instance(
    op: &Party,
    alice: &Party,
    bob: &Party,
) -> (serde_json::Value, serde_json::Value, String) {
    let f = op
        .post(
            "/v1/functions",
            json!({"name": "concat", "language": "rhai", "source": CONCAT}),
        )
        .await;
    assert_eq!(f.status, StatusCode::CREATED, "{}", f.json);
    let m = two_party_manifest(f.json["sha256"].as_str().unwrap(), alice, bob);
    let inst = op.post("/v1/instances", json!({ "manifest": m })).await;
    assert_eq!(inst.status, StatusCode::CREATED, "{}", inst.json);
    let id = inst.json["id"].as_str().unwrap().to_owned();
    let r = alice
        .put(
            &format!("/v1/instances/{id}/inputs/a"),
            alice.encrypt_input(&inst.json, "a", 1, &json!("Now is the time")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    (m, inst.json, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorized_upgrade_seals_afresh_in_the_new_platform_state() {
    let tpm = TestTpm::start();
    let state = tpm.path("daemon");
    let (d, op_id, mut op, mut alice, mut bob) = started(&tpm, &state).await;
    let configure = operators(&op_id);
    let (m, _, id) = live_instance(&op, &alice, &bob).await;
    let before = op.get("/v1/tpm").await.json;

    // The live instance is listed, and the upgrade refused because of it.
    let s = op.get("/v1/admin/upgrade").await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.json);
    assert_eq!(s.json["live_instances"][0]["id"], id.as_str(), "{}", s.json);
    assert_eq!(s.json["live_instances"][0]["state"], "open", "{}", s.json);
    assert_eq!(s.json["live_instances"][0]["name"], "test computation");
    assert!(s.json["authorized"].is_null(), "{}", s.json);
    let refused = op.post("/v1/admin/upgrade", json!({})).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.json);
    assert_eq!(refused.json["error"]["code"], "instances_live");
    assert!(
        refused.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&id),
        "{}",
        refused.json
    );

    // Drained: destroyed, nothing live; now the authorization stands.
    let r = alice
        .post(&format!("/v1/instances/{id}/destroy"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let ok = op.post("/v1/admin/upgrade", json!({})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);
    assert_eq!(ok.json["live_instances"], json!([]));
    assert_eq!(ok.json["authorized"]["by"], op_id.as_str());
    assert_eq!(ok.json["authorized"]["forced"], false);
    // No new instance while it stands.
    let pending = op.post("/v1/instances", json!({ "manifest": m })).await;
    assert_eq!(pending.status, StatusCode::CONFLICT, "{}", pending.json);
    assert_eq!(pending.json["error"]["code"], "upgrade_pending");
    d.stop().await;

    // A start in the same platform state (the upgrade not done yet): nothing changes.
    let d = TestDaemon::start(&tpm, &state, configure).await;
    op.reconnect(&d.url);
    let same = op.get("/v1/tpm").await.json;
    assert_eq!(
        same["statement_key"]["name"],
        before["statement_key"]["name"]
    );
    assert_eq!(
        op.get("/v1/admin/upgrade").await.json["authorized"]["by"],
        op_id.as_str()
    );
    d.stop().await;

    // The new image: another boot chain measured into a platform PCR.
    tpm.tool_ok(
        "tpm2_pcrextend",
        &[&format!(
            "4:sha256={}",
            hex::encode(arbiter_tests::sha256(&[b"the next image's boot loader"]))
        )],
    );
    let d = TestDaemon::start(&tpm, &state, configure).await;
    op.reconnect(&d.url);
    alice.reconnect(&d.url);
    bob.reconnect(&d.url);
    let h = op.get("/healthz").await;
    assert_eq!(h.json["status"], "ok", "sealed afresh: {}", h.json);
    let after = op.get("/v1/tpm").await.json;
    assert_eq!(after["ak"], before["ak"], "the AK parties pinned stays");
    assert_ne!(
        after["statement_key"]["name"], before["statement_key"]["name"],
        "a statement key bound to the new platform state"
    );
    let s = op.get("/v1/admin/upgrade").await;
    assert!(s.json["authorized"].is_null(), "used up: {}", s.json);
    let (att, _) = alice
        .appraise(&arbiter_policy::appraisal::AppraisalPolicy::default())
        .await;
    assert!(att["sealing"]["unavailable"].is_null(), "{att}");

    // And it works: a new instance, both inputs, the result.
    let inst = op.post("/v1/instances", json!({ "manifest": m })).await;
    assert_eq!(inst.status, StatusCode::CREATED, "{}", inst.json);
    let id = inst.json["id"].as_str().unwrap().to_owned();
    for (p, slot, v) in [
        (&alice, "a", "Now is the time"),
        (&bob, "b", "for all good men"),
    ] {
        let r = p
            .put(
                &format!("/v1/instances/{id}/inputs/{slot}"),
                p.encrypt_input(&inst.json, slot, 1, &json!(v)),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }
    let r = alice
        .get(&format!("/v1/instances/{id}/result?wait=30"))
        .await;
    assert_eq!(r.json["output"], SPEC_OUTPUT, "{}", r.json);
    d.stop().await;
}

/// A forced upgrade while an instance is live: the new platform state seals afresh, and the
/// instance's secret — wrapped under the old sealing key — is reported unrecoverable: new
/// instances wait for an operator's epoch reset, which gives it up; then the daemon works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_upgrade_loses_the_live_instances_until_an_epoch_reset() {
    let tpm = TestTpm::start();
    let state = tpm.path("daemon");
    let (d, op_id, mut op, mut alice, mut bob) = started(&tpm, &state).await;
    let configure = operators(&op_id);
    let (m, inst, id) = live_instance(&op, &alice, &bob).await;

    let forced = op.post("/v1/admin/upgrade", json!({"force": true})).await;
    assert_eq!(forced.status, StatusCode::OK, "{}", forced.json);
    assert_eq!(forced.json["authorized"]["forced"], true);
    assert_eq!(
        forced.json["authorized"]["live_at_authorization"],
        json!([id.as_str()])
    );
    d.stop().await;

    tpm.tool_ok(
        "tpm2_pcrextend",
        &[&format!(
            "9:sha256={}",
            hex::encode(arbiter_tests::sha256(&[b"the next image's command line"]))
        )],
    );
    let d = TestDaemon::start(&tpm, &state, configure).await;
    op.reconnect(&d.url);
    alice.reconnect(&d.url);
    bob.reconnect(&d.url);
    assert_eq!(op.get("/healthz").await.json["status"], "ok");
    // The instance is listed live, but its secret does not open under the new key.
    let s = op.get("/v1/admin/upgrade").await;
    assert_eq!(s.json["live_instances"][0]["id"], id.as_str(), "{}", s.json);
    assert!(s.json["authorized"].is_null(), "{}", s.json);
    let r = bob
        .put(
            &format!("/v1/instances/{id}/inputs/b"),
            bob.encrypt_input(&inst, "b", 1, &json!("for all good men")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    assert_eq!(
        r.json["error"]["code"], "instance_unrecoverable",
        "{}",
        r.json
    );
    let refused = op.post("/v1/instances", json!({ "manifest": m })).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.json);
    assert_eq!(refused.json["error"]["code"], "epoch_reset_required");
    let reset = op.post("/v1/admin/epoch-reset", json!({})).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.json);
    assert_eq!(reset.json["unrecoverable"], json!([id.as_str()]));
    let s = op.get("/v1/admin/upgrade").await;
    assert_eq!(s.json["live_instances"], json!([]), "{}", s.json);
    let again = op.post("/v1/instances", json!({ "manifest": m })).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.json);
    d.stop().await;
}
