//! The degraded start (docs/protocol.md): on a platform state that does not satisfy the sealing
//! index's policy (a platform PCR extended, as a changed boot chain would) the daemon starts
//! without unsealing anything, answers `/healthz` with the reason, attestation and the TPM's
//! public parts, refuses every endpoint that needs a secret with 503 and the reason, and
//! writes nothing; `arbiter attest` reports the appliance not usable; after the TPM restarts
//! into the sealed state the next start works fully, the instance and its input intact.
//! And how the service gets the firmware event log it serves with attestations: systemd's
//! `firmware-log` credential, read from `$CREDENTIALS_DIRECTORY` by `arbiterd run`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use arbiter_client::http::PartyIdentity;
use arbiter_policy::appraisal::{AppraisalPolicy, Check};
use arbiter_tests::TestTpm;
use arbiter_tests::cli::CliParty;
use arbiter_tests::daemon::{Party, TestDaemon, two_party_instance, two_party_manifest};
use arbiter_tests::process::{DaemonProcess, DaemonSpec};
use arbiter_tests::state::snapshot;
use base64::Engine as _;
use hyper::StatusCode;
use serde_json::{Value, json};

const CONCAT: &str = "fn compute(inputs) { sha256(inputs.a + inputs.b) }\n";
const SPEC_OUTPUT: &str = "579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63";

fn nonce() -> String {
    let mut n = [0u8; 16];
    rand::fill(&mut n);
    hex::encode(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_platform_state_starts_degraded_touches_nothing_and_recovers() {
    let mut tpm = TestTpm::start();
    let operator = PartyIdentity::generate("operator").unwrap();
    let op_id = operator.identity().unwrap();
    let state = tpm.path("daemon");
    let configure =
        |c: &mut arbiter_daemon::config::Config| c.access.operators = vec![op_id.clone()];

    // A working daemon: a function, an instance, Alice's input.
    let d = TestDaemon::start(&tpm, &state, configure).await;
    let mut op = Party::with_identity("operator", operator, &d.url);
    let mut alice = Party::new("alice", &d);
    let mut bob = Party::new("bob", &d);
    let inst = two_party_instance(&op, &alice, &bob, "concat", CONCAT).await;
    let id = inst["id"].as_str().unwrap().to_owned();
    let r = alice.submit(&inst, "a", &json!("Now is the time")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);

    // A party's policy: this AK, PCR 0 as it is now. It trusts the healthy daemon.
    let (healthy, verdict) = alice.appraise(&AppraisalPolicy::default()).await;
    let ak_name = hex::decode(healthy["ak"]["name"].as_str().unwrap()).unwrap();
    let pcr0: [u8; 32] = hex::decode(healthy["quote"]["pcrs"]["sha256"]["0"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let mut policy = AppraisalPolicy::default();
    policy.ak.name = Some(ak_name.clone());
    policy.pcrs.insert(0, [pcr0].into());
    // swtpm has no firmware: PCR 0 is all-zero, which pins nothing by itself; the value is
    // still checked (the `pcr` check), which is what this test needs.
    policy.allow_unpinned_platform = true;
    let (_, verdict_pinned) = alice.appraise(&policy).await;
    assert!(
        verdict_pinned.trusted,
        "the pinned policy trusts the healthy daemon: {:?} (unpinned: {:?})",
        verdict_pinned.reasons, verdict.reasons
    );
    d.stop().await;

    // Another firmware: PCR 0 no longer holds the value the sealing index is bound to.
    tpm.tool_ok(
        "tpm2_pcrextend",
        &[&format!(
            "0:sha256={}",
            hex::encode(arbiter_tests::sha256(&[b"another firmware"]))
        )],
    );
    let before = snapshot(&state);
    let d = TestDaemon::start(&tpm, &state, configure).await;
    op.reconnect(&d.url);
    alice.reconnect(&d.url);
    bob.reconnect(&d.url);

    // /healthz names the reason.
    let h = alice.get("/healthz").await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.json);
    assert_eq!(h.json["status"], "degraded", "{}", h.json);
    let reasons = h.json["degraded"].as_array().unwrap();
    let reason = reasons
        .iter()
        .filter_map(Value::as_str)
        .find(|r| r.starts_with("sealing: unavailable:"))
        .unwrap_or_else(|| panic!("no sealing reason in {}", h.json))
        .to_owned();
    assert!(
        reason.contains("platform PCRs") && reason.contains("sealed"),
        "{reason}"
    );
    assert_eq!(d.engine.sealing_unavailable(), Some(reason.as_str()));

    // Attestation and the TPM's public parts answer; the party's appraisal refuses the
    // changed PCR 0 and the sealing index whose policy the quoted PCRs do not satisfy.
    let (att, verdict) = alice.appraise(&policy).await;
    assert!(!verdict.trusted);
    assert!(
        verdict.reasons.iter().any(|r| r.check == Check::Pcr),
        "{:?}",
        verdict.reasons
    );
    assert!(
        verdict.reasons.iter().any(|r| r.check == Check::Sealing),
        "{:?}",
        verdict.reasons
    );
    assert_eq!(att["sealing"]["unavailable"], reason.as_str(), "{att}");
    assert_ne!(
        att["quote"]["pcrs"]["sha256"]["0"],
        healthy["quote"]["pcrs"]["sha256"]["0"]
    );
    // The log served is the stored one, without a new daemon_started: nothing measured.
    assert_eq!(
        att["log"], healthy["log"],
        "a degraded start measures nothing"
    );

    // Every endpoint that needs a secret (or would write) refuses with 503 and the reason.
    let refusals = [
        op.post(
            "/v1/instances",
            json!({ "manifest": two_party_manifest(inst["function_sha256"].as_str().unwrap(), &alice, &bob) }),
        )
        .await,
        bob.submit(&inst, "b", &json!("for all good men")).await,
        alice.delete(&format!("/v1/instances/{id}/inputs/a")).await,
        alice
            .post(&format!("/v1/instances/{id}/evaluate"), json!({}))
            .await,
        alice.get(&format!("/v1/instances/{id}/result")).await,
        alice
            .post(&format!("/v1/instances/{id}/destroy"), json!({}))
            .await,
        op.post("/v1/admin/epoch-reset", json!({})).await,
        op.post(
            "/v1/functions",
            json!({"name": "other", "language": "rhai", "source": "fn compute(inputs) { 1 }\n"}),
        )
        .await,
    ];
    for r in &refusals {
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
        assert_eq!(r.json["error"]["code"], "sealing_unavailable", "{}", r.json);
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(&reason), "{message}");
    }

    // The CLI reports the appliance not usable, with the reason.
    let cli = CliParty::new(&tpm.path("parties"), "carol", &d.url);
    std::fs::write(
        cli.state.join("appraisal.toml"),
        format!(
            "ak_name = \"{}\"\n[pcrs]\n0 = \"{}\"\n",
            hex::encode(&ak_name),
            hex::encode(pcr0)
        ),
    )
    .unwrap();
    let cfg = cli.state.join("config.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("policy = \"appraisal.toml\"\n");
    std::fs::write(&cfg, text).unwrap();
    let out = cli.fails(&["attest"]);
    assert!(
        out.contains("NOT USABLE") && out.contains("sealing: unavailable"),
        "{out}"
    );
    d.stop().await;

    // Nothing was written: no TLS key, no log record, no row.
    let after = snapshot(&state);
    let changed: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(changed.is_empty(), "a degraded start changed {changed:?}");

    // The TPM restarts (PCRs back to the sealed state): the next start works fully, the
    // instance and Alice's input intact.
    tpm.swtpm.restart().unwrap();
    let d = TestDaemon::start(&tpm, &state, configure).await;
    alice.reconnect(&d.url);
    bob.reconnect(&d.url);
    let h = alice.get("/healthz").await;
    assert_eq!(h.json["status"], "ok", "{}", h.json);
    let (_, verdict) = alice.appraise(&policy).await;
    assert!(verdict.trusted, "{:?}", verdict.reasons);
    let shown = alice.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(shown.json["state"], "open", "{}", shown.json);
    assert_eq!(shown.json["slots"][0]["filled"], true, "{}", shown.json);
    let r = bob.submit(&inst, "b", &json!("for all good men")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = alice
        .get(&format!("/v1/instances/{id}/result?wait=30"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["succeeded"], true, "{}", r.json);
    assert_eq!(r.json["output"], SPEC_OUTPUT, "{}", r.json);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_into_another_boot_chain_attests_an_empty_generation_held_in_memory() {
    let mut tpm = TestTpm::start();
    let state = tpm.path("daemon");
    let d = TestDaemon::start(&tpm, &state, |_| {}).await;
    let alice = Party::new("alice", &d);
    let healthy = alice
        .get(&format!("/v1/attestation?nonce={}", nonce()))
        .await;
    assert_eq!(healthy.status, StatusCode::OK, "{}", healthy.json);
    let generation = healthy.json["log_generation"].as_u64().unwrap();
    d.stop().await;

    // A reboot (a TPM startup: PCR 23 all-zero, new counts) into another firmware.
    tpm.swtpm.restart().unwrap();
    tpm.tool_ok(
        "tpm2_pcrextend",
        &[&format!(
            "0:sha256={}",
            hex::encode(arbiter_tests::sha256(&[b"another firmware"]))
        )],
    );
    let before = snapshot(&state);
    let d = TestDaemon::start(&tpm, &state, |_| {}).await;
    let mut alice = alice;
    alice.reconnect(&d.url);
    let h = alice.get("/healthz").await;
    assert_eq!(h.json["status"], "degraded", "{}", h.json);
    // The quote still replays: the new generation is empty (nothing is re-measured while
    // degraded) and PCR 23 all-zero; the sealing index is published as it is.
    let att = alice
        .get(&format!("/v1/attestation?nonce={}", nonce()))
        .await;
    assert_eq!(att.status, StatusCode::OK, "{}", att.json);
    assert_eq!(att.json["log_generation"], generation + 1, "{}", att.json);
    assert_eq!(att.json["log"], json!([]), "{}", att.json);
    assert_eq!(att.json["quote"]["pcrs"]["sha256"]["23"], "00".repeat(32));
    assert_eq!(att.json["sealing"]["name"], healthy.json["sealing"]["name"]);
    assert!(
        att.json["sealing"]["unavailable"]
            .as_str()
            .unwrap()
            .starts_with("sealing: unavailable:"),
        "{}",
        att.json
    );
    d.stop().await;
    let after = snapshot(&state);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "no file created (no new generation written)"
    );
    assert!(
        before == after,
        "a degraded start after a reboot changed the state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_serves_the_firmware_log_systemd_passes_as_a_credential() {
    let tpm = TestTpm::start();
    let credentials = tpm.path("credentials");
    std::fs::create_dir_all(&credentials).unwrap();
    // Any bytes: the daemon serves the log as it is (verifiers parse it).
    let log = b"\x00\x00\x00\x00\x03\x00\x00\x00a firmware event log".to_vec();
    std::fs::write(credentials.join("firmware-log"), &log).unwrap();
    let mut daemon = DaemonProcess::start(DaemonSpec {
        state_dir: tpm.path("daemon"),
        tcti: Some(tpm.tcti()),
        credentials_directory: Some(credentials.clone()),
        ..DaemonSpec::default()
    });
    let party = Party::with_identity(
        "alice",
        PartyIdentity::generate("alice").unwrap(),
        &daemon.url(),
    );
    let att = party
        .get(&format!("/v1/attestation?nonce={}", nonce()))
        .await;
    assert_eq!(att.status, StatusCode::OK, "{}", att.json);
    let served = base64::engine::general_purpose::STANDARD
        .decode(att.json["firmware_log"].as_str().expect("a firmware log"))
        .unwrap();
    assert_eq!(served, log, "the credential's bytes, whole");

    // The unit's fallback where the host has no log: none served.
    daemon.terminate();
    std::fs::write(credentials.join("firmware-log"), b"absent").unwrap();
    daemon.restart();
    let att = party
        .get(&format!("/v1/attestation?nonce={}", nonce()))
        .await;
    assert_eq!(att.status, StatusCode::OK, "{}", att.json);
    assert_eq!(att.json["firmware_log"], Value::Null, "{}", att.json);
}
