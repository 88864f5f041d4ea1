//! Destruction on a private swtpm: certificates signed by the statement key (verified by
//! the policy crate and by an independent JOSE implementation, Python's jwcrypto), the
//! automatic policies, crash safety at every step of the rotation, and the backup test —
//! a copy of the state taken before destruction recovers nothing afterwards.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use arbiter_client::http::PartyIdentity;
use arbiter_policy::Public;
use arbiter_policy::jws::{Statement, VerifyInclusion, verify_statement};
use arbiter_tests::TestTpm;
use arbiter_tests::daemon::{Party, ProcessDaemon, TestDaemon, two_party_manifest};
use arbiter_tests::state::copy_dir;
use base64::Engine as _;
use hyper::StatusCode;
use serde_json::{Value, json};

const SUM: &str = "fn compute(inputs) { inputs.a + inputs.b }";

fn b64d(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

async fn statement_key(p: &Party) -> Public {
    let r = p.get("/v1/tpm").await;
    Public::from_tpm2b(&b64d(&r.json["statement_key"]["tpm2b_public"])).unwrap()
}

/// Verifies a compact JWS with Python's jwcrypto, a JOSE implementation the daemon does
/// not use, against the statement key's PEM.
fn verify_with_jwcrypto(jws: &str, pem: &str, dir: &Path) -> Value {
    let script = r#"
import json, sys
from jwcrypto import jwk, jws
key = jwk.JWK.from_pem(open(sys.argv[1], 'rb').read())
token = jws.JWS()
token.deserialize(open(sys.argv[2]).read().strip())
token.verify(key, alg='ES256')
print(json.dumps({"header": token.jose_header, "payload": json.loads(token.payload)}))
"#;
    let key = dir.join("statement.pem");
    let token = dir.join("token.jws");
    std::fs::write(&key, pem).unwrap();
    std::fs::write(&token, jws).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&key)
        .arg(&token)
        .output()
        .expect("python3 (make test installs jwcrypto)");
    assert!(
        out.status.success(),
        "jwcrypto refused the JWS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Setup {
    tpm: TestTpm,
    operator: PartyIdentity,
}

fn setup() -> Setup {
    Setup {
        tpm: TestTpm::start(),
        operator: PartyIdentity::generate("operator").unwrap(),
    }
}

async fn daemon(s: &Setup, state: &Path) -> TestDaemon {
    let id = s.operator.identity().unwrap();
    TestDaemon::start(&s.tpm, state, |c| c.access.operators = vec![id.clone()]).await
}

async fn filled_instance(
    op: &Party,
    alice: &Party,
    bob: &Party,
    manifest_edit: impl FnOnce(&mut Value),
) -> Value {
    let f = op
        .post(
            "/v1/functions",
            json!({"name": "sum", "language": "rhai", "source": SUM}),
        )
        .await;
    let mut manifest = two_party_manifest(f.json["sha256"].as_str().unwrap(), alice, bob);
    manifest_edit(&mut manifest);
    let inst = op
        .post("/v1/instances", json!({ "manifest": manifest }))
        .await;
    assert_eq!(inst.status, StatusCode::CREATED, "{}", inst.json);
    inst.json
}

fn path(inst: &Value, rest: &str) -> String {
    format!("/v1/instances/{}{rest}", inst["id"].as_str().unwrap())
}

#[tokio::test]
async fn destruction_yields_a_certificate_and_spares_the_others() {
    let s = setup();
    let d = daemon(&s, &s.tpm.path("daemon")).await;
    let op = Party::with_identity(
        "operator",
        PartyIdentity::from_pem(
            s.operator.cert_pem().as_bytes(),
            s.operator.key_pem().as_bytes(),
        )
        .unwrap(),
        &d.url,
    );
    let alice = Party::new("alice", &d);
    let bob = Party::new("bob", &d);
    let doomed = filled_instance(&op, &alice, &bob, |_| {}).await;
    let kept = filled_instance(&op, &alice, &bob, |_| {}).await;
    let receipt = alice
        .put(
            &path(&doomed, "/inputs/a"),
            alice.encrypt_input(&doomed, "a", 1, &json!(1)),
        )
        .await;
    assert_eq!(receipt.status, StatusCode::OK);
    alice
        .put(
            &path(&kept, "/inputs/a"),
            alice.encrypt_input(&kept, "a", 1, &json!(40)),
        )
        .await;

    // Only destroyers may destroy.
    let r = bob.post(&path(&doomed, "/destroy"), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    let r = alice.post(&path(&doomed, "/destroy"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let key = statement_key(&alice).await;
    let Statement::Destruction(cert) =
        verify_statement(r.json["jws"].as_str().unwrap(), &key).unwrap()
    else {
        panic!("not a destruction certificate")
    };
    assert_eq!(cert.instance_id, doomed["id"]);
    assert_eq!(cert.epoch_retired, 0);
    assert_eq!(cert.inputs_count, 1);
    let own: Vec<arbiter_policy::jws::InputInclusion> =
        serde_json::from_value(r.json["inputs"].clone()).unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(
        own[0].leaf.ciphertext_sha256,
        receipt.json["ciphertext_sha256"]
    );
    own[0].verify(&cert).unwrap();
    // An independent JOSE implementation agrees.
    let pem = key.public_key_pem().unwrap();
    let checked = verify_with_jwcrypto(r.json["jws"].as_str().unwrap(), &pem, s.tpm.dir());
    assert_eq!(checked["payload"]["type"], "destruction");
    assert_eq!(checked["header"]["typ"], "arbiter-destruction+jws");

    // The log has the destruction; the sealing epoch moved on.
    let mut n = [0u8; 16];
    rand::fill(&mut n);
    let att = alice
        .get(&format!("/v1/attestation?nonce={}", hex::encode(n)))
        .await;
    assert_eq!(att.json["sealing"]["epoch"], 1);
    let log = att.json["log"].as_array().unwrap();
    let rec = &log[cert.instance_destroyed_recnum as usize];
    assert_eq!(rec["content"]["event"], "instance_destroyed");
    assert_eq!(rec["content"]["instance_id"], doomed["id"]);

    // The destroyed instance takes nothing more; its certificate stays readable.
    let again = alice
        .put(
            &path(&doomed, "/inputs/a"),
            alice.encrypt_input(&doomed, "a", 1, &json!(1)),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let c = bob.get(&path(&doomed, "/destruction-certificate")).await;
    assert_eq!(c.json["jws"], r.json["jws"]);

    // The other instance still works after the rotation, also across a restart.
    d.stop().await;
    let d = daemon(&s, &s.tpm.path("daemon")).await;
    let mut alice = alice;
    let mut bob = bob;
    alice.reconnect(&d.url);
    bob.reconnect(&d.url);
    let r = bob
        .put(
            &path(&kept, "/inputs/b"),
            bob.encrypt_input(&kept, "b", 1, &json!(2)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let res = alice.get(&path(&kept, "/result?wait=30")).await;
    assert_eq!(res.json["output"], 42, "{}", res.json);
    // The result is a signed statement too, checked by jwcrypto.
    let checked = verify_with_jwcrypto(res.json["jws"].as_str().unwrap(), &pem, s.tpm.dir());
    assert_eq!(checked["payload"]["output"], 42);
    assert_eq!(checked["payload"]["type"], "result");
    d.stop().await;
}

#[tokio::test]
async fn after_evaluation_destroys_automatically() {
    let s = setup();
    let d = daemon(&s, &s.tpm.path("daemon")).await;
    let op = Party::with_identity(
        "operator",
        PartyIdentity::from_pem(
            s.operator.cert_pem().as_bytes(),
            s.operator.key_pem().as_bytes(),
        )
        .unwrap(),
        &d.url,
    );
    let alice = Party::new("alice", &d);
    let bob = Party::new("bob", &d);
    let inst = filled_instance(&op, &alice, &bob, |m| {
        m["destruction"] = json!({"policy": "after_evaluation"});
    })
    .await;
    alice
        .put(
            &path(&inst, "/inputs/a"),
            alice.encrypt_input(&inst, "a", 1, &json!(1)),
        )
        .await;
    bob.put(
        &path(&inst, "/inputs/b"),
        bob.encrypt_input(&inst, "b", 1, &json!(2)),
    )
    .await;
    let mut cert = Value::Null;
    for _ in 0..100 {
        let c = alice.get(&path(&inst, "/destruction-certificate")).await;
        if c.status == StatusCode::OK {
            cert = c.json;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(cert["jws"].is_string(), "no certificate after evaluation");
    let d2 = alice.get(&path(&inst, "")).await;
    assert_eq!(d2.json["state"], "destroyed");
    d.stop().await;
}

#[tokio::test]
async fn a_backup_taken_before_destruction_recovers_nothing() {
    let mut s = setup();
    let state = s.tpm.path("daemon");
    let copy = s.tpm.path("backup");
    let d = daemon(&s, &state).await;
    let op_id = PartyIdentity::from_pem(
        s.operator.cert_pem().as_bytes(),
        s.operator.key_pem().as_bytes(),
    )
    .unwrap();
    let mut op = Party::with_identity("operator", op_id, &d.url);
    let mut alice = Party::new("alice", &d);
    let mut bob = Party::new("bob", &d);
    let inst = filled_instance(&op, &alice, &bob, |_| {}).await;
    alice
        .put(
            &path(&inst, "/inputs/a"),
            alice.encrypt_input(&inst, "a", 1, &json!(1)),
        )
        .await;
    let tls_before = alice.get("/healthz").await.server_spki_sha256;
    d.stop().await;

    // The thief's copy of the whole state, taken before destruction.
    copy_dir(&state, &copy);

    let d = daemon(&s, &state).await;
    for p in [&mut op, &mut alice, &mut bob] {
        p.reconnect(&d.url);
    }
    assert_eq!(
        alice.post(&path(&inst, "/destroy"), json!({})).await.status,
        StatusCode::OK
    );
    d.stop().await;

    // Restore the copy; the TPM restarts on its own state (a TPM startup).
    std::fs::remove_dir_all(&state).unwrap();
    copy_dir(&copy, &state);
    s.tpm.swtpm.restart().unwrap();
    let d = daemon(&s, &state).await;
    for p in [&mut op, &mut alice, &mut bob] {
        p.reconnect(&d.url);
    }
    let lost = d.engine.unrecoverable();
    assert_eq!(
        lost,
        vec![inst["id"].as_str().unwrap().to_owned()],
        "the copy's instance is unrecoverable"
    );
    let desc = alice.get(&path(&inst, "")).await;
    assert_eq!(desc.json["state"], "unrecoverable", "{}", desc.json);
    // Its input cannot be used: evaluation fails to open it.
    let r = bob
        .put(
            &path(&inst, "/inputs/b"),
            bob.encrypt_input(&inst, "b", 1, &json!(2)),
        )
        .await;
    assert_ne!(r.status, StatusCode::OK, "{}", r.json);
    // The TLS key was replaced (its wrapping did not open) and the replacement measured.
    let h = alice.get("/healthz").await;
    assert_ne!(h.server_spki_sha256, tls_before);
    let mut n = [0u8; 16];
    rand::fill(&mut n);
    let att = alice
        .get(&format!("/v1/attestation?nonce={}", hex::encode(n)))
        .await;
    assert!(
        att.json["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["content"]["event"] == "tls_key_replaced")
    );
    // New instances wait for an operator's epoch reset.
    let f = op.get("/v1/functions").await;
    let registered = f
        .json
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["library"] == false)
        .unwrap();
    let sha = registered["sha256"].as_str().unwrap();
    let m = two_party_manifest(sha, &alice, &bob);
    let r = op
        .post("/v1/instances", json!({ "manifest": m.clone() }))
        .await;
    assert_eq!(
        r.json["error"]["code"], "epoch_reset_required",
        "{}",
        r.json
    );
    let reset = op.post("/v1/admin/epoch-reset", json!({})).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.json);
    let r = op.post("/v1/instances", json!({ "manifest": m })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    d.stop().await;
}

#[tokio::test]
async fn a_crash_after_any_step_of_destruction_recovers() {
    for failpoint in [
        "after-mark",
        "after-step-1",
        "after-step-2",
        "after-step-3",
        "after-step-4-measure",
        "after-step-4",
    ] {
        let s = setup();
        let state = s.tpm.path("daemon");
        let d = ProcessDaemon::start(&s.tpm, &state, &s.operator, Some(failpoint)).await;
        let op = Party::with_identity(
            "operator",
            PartyIdentity::from_pem(
                s.operator.cert_pem().as_bytes(),
                s.operator.key_pem().as_bytes(),
            )
            .unwrap(),
            &d.url,
        );
        let alice =
            Party::with_identity("alice", PartyIdentity::generate("alice").unwrap(), &d.url);
        let bob = Party::with_identity("bob", PartyIdentity::generate("bob").unwrap(), &d.url);
        let doomed = filled_instance(&op, &alice, &bob, |_| {}).await;
        let kept = filled_instance(&op, &alice, &bob, |_| {}).await;
        alice
            .put(
                &path(&doomed, "/inputs/a"),
                alice.encrypt_input(&doomed, "a", 1, &json!(1)),
            )
            .await;
        alice
            .put(
                &path(&kept, "/inputs/a"),
                alice.encrypt_input(&kept, "a", 1, &json!(40)),
            )
            .await;
        // The request dies with the daemon at the failpoint.
        let _ = alice
            .conn
            .post(&path(&doomed, "/destroy"), &json!({}))
            .await;
        assert!(
            d.wait_crash().await,
            "{failpoint}: the daemon did not abort (is target/debug/arbiterd built with the \
             `failpoints` feature? `cargo test --workspace` builds it so)"
        );

        let d = ProcessDaemon::start(&s.tpm, &state, &s.operator, None).await;
        let mut alice = alice;
        let mut bob = bob;
        alice.reconnect(&d.url);
        bob.reconnect(&d.url);
        // The destroyed one is gone (after `after-mark` it is resumed from the start).
        let mut cert = Value::Null;
        for _ in 0..100 {
            let c = alice.get(&path(&doomed, "/destruction-certificate")).await;
            if c.status == StatusCode::OK {
                cert = c.json;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            cert["jws"].is_string(),
            "{failpoint}: no certificate after restart"
        );
        let desc = alice.get(&path(&doomed, "")).await;
        assert_eq!(
            desc.json["state"], "destroyed",
            "{failpoint}: {}",
            desc.json
        );
        // The live one is intact and usable.
        let r = bob
            .put(
                &path(&kept, "/inputs/b"),
                bob.encrypt_input(&kept, "b", 1, &json!(2)),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{failpoint}: {}", r.json);
        let res = alice.get(&path(&kept, "/result?wait=30")).await;
        assert_eq!(res.json["output"], 42, "{failpoint}: {}", res.json);
        d.kill();
    }
}

#[tokio::test]
async fn the_daemon_process_is_hardened() {
    let s = setup();
    let d = ProcessDaemon::start(&s.tpm, &s.tpm.path("daemon"), &s.operator, None).await;
    let pid = d.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(
        core.split_whitespace().filter(|w| *w == "0").count() >= 2,
        "{core}"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let locked: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(locked > 0, "no locked memory: {status}");
    d.kill();
}
