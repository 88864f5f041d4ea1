//! The appliance's life, run as an operator runs it: `arbiterd run` as a real process on a
//! TPM that keeps running (an swtpm the test owns), restarted with SIGTERM, SIGKILL and
//! SIGTERM while an instance holds an accepted input — after which parties still trust it
//! with `arbiter attest`, the other input goes in, the signed result verifies and a new
//! instance computes; the development mode, whose swtpm
//! belongs to the daemon (a restart there is a TPM restart, and SIGKILL leaves no swtpm);
//! a start refused by the log check writes nothing.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use arbiter_client::http::PartyIdentity;
use arbiter_tests::TestTpm;
use arbiter_tests::cli::CliParty;
use arbiter_tests::daemon::{Party, TestDaemon, two_party_manifest, two_party_manifest_of};
use arbiter_tests::process::{DaemonProcess, DaemonSpec, swtpm_pids_serving};
use arbiter_tests::state::{changes, copy_dir, snapshot};
use hyper::StatusCode;
use serde_json::{Value, json};

const CONCAT: &str = "fn compute(inputs) { sha256(inputs.a + inputs.b) }\n";
const SPEC_OUTPUT: &str = "579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63";
const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn operator_config(operator: &str) -> String {
    format!("[access]\noperators = [\"{operator}\"]\n")
}

fn write_policy(party: &CliParty, function_sha: &str) {
    std::fs::write(
        party.state.join("appraisal.toml"),
        format!(
            "platform_pcrs = [0, 2, 4, 7, 9]\nfunctions = [\"{function_sha}\"]\n# swtpm has no firmware: every platform PCR is zero, so nothing pins the boot.\nallow_unpinned_platform = true\n[pcrs]\n0 = \"{ZERO}\"\n7 = \"{ZERO}\"\n"
        ),
    )
    .unwrap();
    let cfg = party.state.join("config.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("policy = \"appraisal.toml\"\n");
    std::fs::write(cfg, text).unwrap();
}

fn manifest(f: &str, alice: &CliParty, bob: &CliParty) -> Value {
    two_party_manifest_of(f, ("alice", &alice.id), ("bob", &bob.id))
}

fn create_instance(operator: &CliParty, owner: &CliParty, m: &Value, name: &str) -> String {
    let path = owner.state.join(name);
    std::fs::write(&path, m.to_string()).unwrap();
    let id = operator
        .ok(&["instance", "create", path.to_str().unwrap(), "--quiet"])
        .trim()
        .to_owned();
    assert_eq!(id.len(), 32, "{id}");
    id
}

/// The `daemon_started` records of the current generation, by `arbiter attest --json`'s
/// view of the daemon's log.
fn attest_json(party: &CliParty, instance: Option<&str>) -> Value {
    let mut args = vec!["attest", "--json"];
    if let Some(i) = instance {
        args.extend(["--instance", i]);
    }
    serde_json::from_str(&party.ok(&args)).unwrap()
}

#[test]
fn restarts_within_one_tpm_startup_keep_trust_inputs_and_computation() {
    let tpm = TestTpm::start();
    let dir = tpm.path("parties");
    let operator = CliParty::new(&dir, "operator", "https://placeholder:1");
    let mut daemon = DaemonProcess::start(DaemonSpec {
        state_dir: tpm.path("daemon"),
        config: operator_config(&operator.id),
        tcti: Some(tpm.tcti()),
        ..DaemonSpec::default()
    });
    let url = daemon.url();
    let set_server = |p: &CliParty| {
        std::fs::write(
            p.state.join("config.toml"),
            format!(
                "server = \"{url}\"\ncert = \"identity/cert.pem\"\nkey = \"identity/key.pem\"\n"
            ),
        )
        .unwrap();
    };
    set_server(&operator);
    let alice = CliParty::new(&dir, "alice", &url);
    let bob = CliParty::new(&dir, "bob", &url);
    let source = tpm.path("concat.rhai");
    std::fs::write(&source, CONCAT).unwrap();
    let f = hex::encode(arbiter_tests::sha256(&[CONCAT.as_bytes()]));
    operator.ok(&["function", "register", source.to_str().unwrap()]);
    let cas = [
        tpm.state.ca_root_pem.display().to_string(),
        tpm.state.ca_issuer_pem.display().to_string(),
    ];
    for p in [&alice, &bob] {
        let mut args = vec!["enroll", "--ek-ca"];
        args.extend(cas.iter().map(String::as_str));
        p.ok(&args);
        write_policy(p, &f);
    }
    let m = manifest(&f, &alice, &bob);
    let first = create_instance(&operator, &alice, &m, "m1.json");
    alice.ok(&[
        "submit",
        "--instance",
        &first,
        "--slot",
        "a",
        "--value",
        "\"Now is the time\"",
        "--expect-function",
        &f,
    ]);
    let before = attest_json(&bob, Some(&first));
    assert_eq!(before["trusted"], true, "{before}");

    // The life of a service: a restart, a crash, a restart — the TPM keeps running.
    assert!(
        daemon.terminate().success(),
        "SIGTERM exits cleanly:\n{}",
        daemon.log()
    );
    daemon.restart();
    daemon.kill();
    daemon.restart();
    let status = daemon.terminate();
    assert!(status.success(), "{status}:\n{}", daemon.log());
    daemon.restart();

    // Four starts, one generation: parties still trust the appliance and the instance.
    for p in [&alice, &bob] {
        let out = p.ok(&["attest", "--instance", &first]);
        assert!(out.starts_with("TRUSTED"), "{out}");
    }
    let after = attest_json(&bob, Some(&first));
    assert_eq!(after["trusted"], true, "{after}");
    assert_eq!(
        after["appraised"]["log_generation"], before["appraised"]["log_generation"],
        "a daemon restart is not a TPM startup: same generation"
    );
    let log_dir = tpm.path("daemon").join("measurements");
    let generation: Vec<_> = std::fs::read_dir(&log_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("generation-"))
        .collect();
    assert_eq!(generation.len(), 1, "one log generation");
    let text = std::fs::read_to_string(generation[0].path()).unwrap();
    let events: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["content"]["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let count = |e: &str| events.iter().filter(|x| *x == e).count();
    assert_eq!(count("daemon_started"), 4, "{events:?}");
    // The shipped library (registered at the first start) and the operator's function.
    assert_eq!(
        count("function_loaded"),
        arbiter_tests::library::shipped().len() + 1,
        "not measured again on a restart: {events:?}"
    );
    assert_eq!(count("instance_created"), 1, "{events:?}");
    assert_eq!(count("tls_key_replaced"), 0, "{events:?}");

    // The accepted input survived; the other goes in; the signed result verifies.
    bob.ok(&[
        "submit",
        "--instance",
        &first,
        "--slot",
        "b",
        "--value",
        "\"for all good men\"",
        "--expect-function",
        &f,
    ]);
    let v: Value =
        serde_json::from_str(&alice.ok(&["result", &first, "--wait", "--json"])).unwrap();
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["statement"]["output"], SPEC_OUTPUT, "{v}");
    // A new instance computes too.
    let second = create_instance(&operator, &alice, &m, "m2.json");
    alice.ok(&[
        "submit",
        "--instance",
        &second,
        "--slot",
        "a",
        "--value",
        "\"x\"",
        "--expect-function",
        &f,
    ]);
    bob.ok(&[
        "submit",
        "--instance",
        &second,
        "--slot",
        "b",
        "--value",
        "\"y\"",
        "--expect-function",
        &f,
    ]);
    let v: Value = serde_json::from_str(&bob.ok(&["result", &second, "--wait", "--json"])).unwrap();
    assert_eq!(v["verified"], true, "{v}");
    let xy = hex::encode(arbiter_tests::sha256(&[b"xy"]));
    assert_eq!(v["statement"]["output"], xy, "{v}");
    assert!(daemon.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_development_mode_a_restart_is_a_tpm_restart_and_sigkill_leaves_no_swtpm() {
    let scratch = tempfile::tempdir().unwrap();
    let operator = PartyIdentity::generate("operator").unwrap();
    let state = scratch.path().join("daemon");
    let mut daemon = tokio::task::spawn_blocking({
        let spec = DaemonSpec {
            state_dir: state.clone(),
            config: operator_config(&operator.identity().unwrap()),
            dev_swtpm: true,
            ..DaemonSpec::default()
        };
        move || DaemonProcess::start(spec)
    })
    .await
    .unwrap();
    let swtpm_state = state.join("swtpm").join("state");
    assert_eq!(
        swtpm_pids_serving(&swtpm_state).len(),
        1,
        "the daemon's own swtpm runs"
    );
    let op = Party::with_identity("operator", operator, &daemon.url());
    let r = op
        .post(
            "/v1/functions",
            json!({"name": "concat", "language": "rhai", "source": CONCAT}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let generation_of = |att: &Value| att["log"][0]["content"]["generation"].as_u64().unwrap();
    let nonce = || {
        let mut n = [0u8; 16];
        rand::fill(&mut n);
        hex::encode(n)
    };
    let att = op.get(&format!("/v1/attestation?nonce={}", nonce())).await;
    assert_eq!(generation_of(&att.json), 0, "{}", att.json);

    daemon.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !swtpm_pids_serving(&swtpm_state).is_empty() {
        assert!(
            Instant::now() < deadline,
            "SIGKILL of arbiterd left its swtpm running: {:?}",
            swtpm_pids_serving(&swtpm_state)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let daemon = tokio::task::spawn_blocking(move || {
        daemon.restart();
        daemon
    })
    .await
    .unwrap();
    // The swtpm restarted with the daemon: a TPM startup, so a new generation that
    // measures the shipped library and the registered function again, once each.
    let att = op.get(&format!("/v1/attestation?nonce={}", nonce())).await;
    assert_eq!(att.status, StatusCode::OK, "{}", att.json);
    assert_eq!(generation_of(&att.json), 1, "{}", att.json);
    let events: Vec<&str> = att.json["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["content"]["event"].as_str().unwrap())
        .collect();
    let mut expected = vec!["daemon_started"];
    expected.extend(vec![
        "function_loaded";
        arbiter_tests::library::shipped().len() + 1
    ]);
    assert_eq!(events, expected, "{}", att.json);
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_refused_by_the_log_check_writes_nothing() {
    let mut tpm = TestTpm::start();
    let operator = PartyIdentity::generate("operator").unwrap();
    let op_id = operator.identity().unwrap();
    let state = tpm.path("daemon");
    let copy = tpm.path("copy");
    let configure =
        |c: &mut arbiter_daemon::config::Config| c.access.operators = vec![op_id.clone()];
    let d = TestDaemon::start(&tpm, &state, configure).await;
    let op = Party::with_identity("operator", operator, &d.url);
    let alice = Party::new("alice", &d);
    let bob = Party::new("bob", &d);
    let f = op
        .post(
            "/v1/functions",
            json!({"name": "concat", "language": "rhai", "source": CONCAT}),
        )
        .await;
    let m = two_party_manifest(f.json["sha256"].as_str().unwrap(), &alice, &bob);
    let inst = op.post("/v1/instances", json!({ "manifest": m })).await;
    assert_eq!(inst.status, StatusCode::CREATED, "{}", inst.json);
    d.stop().await;
    copy_dir(&state, &copy);

    // The live daemon destroys the instance: the sealing key rotates, so the copy's
    // wrappings (its TLS key's too) no longer open.
    let d = TestDaemon::start(&tpm, &state, configure).await;
    let mut op = op;
    let mut alice = alice;
    op.reconnect(&d.url);
    alice.reconnect(&d.url);
    let id = inst.json["id"].as_str().unwrap();
    let r = alice
        .post(&format!("/v1/instances/{id}/destroy"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    d.stop().await;

    // The pre-destruction copy restored in the same TPM startup: refused (its log is
    // behind PCR 23), and nothing written — no new TLS key stored to be served later
    // without a `tls_key_replaced` record.
    std::fs::remove_dir_all(&state).unwrap();
    copy_dir(&copy, &state);
    let before = snapshot(&state);
    let err = TestDaemon::try_start(&tpm, &state, configure)
        .await
        .err()
        .expect("the restored copy must be refused in the same TPM startup")
        .to_string();
    assert!(err.contains("does not match PCR"), "{err}");
    let after = snapshot(&state);
    let changed = changes(&before, &after);
    assert!(changed.is_empty(), "a refused start changed:\n{changed}");

    // After the next TPM startup the copy starts with a new TLS key, measured.
    tpm.swtpm.restart().unwrap();
    let d = TestDaemon::start(&tpm, &state, configure).await;
    op.reconnect(&d.url);
    let mut n = [0u8; 16];
    rand::fill(&mut n);
    let att = op
        .get(&format!("/v1/attestation?nonce={}", hex::encode(n)))
        .await;
    assert_eq!(att.status, StatusCode::OK, "{}", att.json);
    let replaced: Vec<&Value> = att.json["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["content"]["event"] == "tls_key_replaced")
        .collect();
    assert_eq!(replaced.len(), 1, "{}", att.json);
    assert_eq!(
        replaced[0]["content"]["tls_spki_sha256"],
        att.server_spki_sha256.as_str(),
        "the TLS key served is the one measured as the replacement"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_evaluation_resumes_after_ready_not_inside_start() {
    let tpm = TestTpm::start();
    let operator = PartyIdentity::generate("operator").unwrap();
    let spec = DaemonSpec {
        state_dir: tpm.path("daemon"),
        config: operator_config(&operator.identity().unwrap()),
        tcti: Some(tpm.tcti()),
        ..DaemonSpec::default()
    };
    let mut daemon = tokio::task::spawn_blocking(move || DaemonProcess::start(spec))
        .await
        .unwrap();
    let url = daemon.url();
    let op = Party::with_identity("operator", operator, &url);
    let alice = Party::with_identity("alice", PartyIdentity::generate("alice").unwrap(), &url);
    let bob = Party::with_identity("bob", PartyIdentity::generate("bob").unwrap(), &url);
    // A function that runs until its wall-time limit: 12 s, far longer than a start.
    let spin = "fn compute(inputs) { let x = 0; loop { x += 1; } }";
    let f = op
        .post(
            "/v1/functions",
            json!({"name": "spin", "language": "rhai", "source": spin}),
        )
        .await;
    assert_eq!(f.status, StatusCode::CREATED, "{}", f.json);
    let mut m = two_party_manifest(f.json["sha256"].as_str().unwrap(), &alice, &bob);
    m["limits"] = json!({ "operations": 1_000_000_000u64, "wall_time_ms": 12_000 });
    let inst = op.post("/v1/instances", json!({ "manifest": m })).await;
    assert_eq!(inst.status, StatusCode::CREATED, "{}", inst.json);
    let id = inst.json["id"].as_str().unwrap().to_owned();
    for (p, slot) in [(&alice, "a"), (&bob, "b")] {
        let r = p
            .put(
                &format!("/v1/instances/{id}/inputs/{slot}"),
                p.encrypt_input(&inst.json, slot, 1, &json!(1)),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }
    // The second input's acknowledgement comes before the trigger starts the evaluation.
    let mut state = alice.get(&format!("/v1/instances/{id}")).await;
    for _ in 0..100 {
        if state.json["state"] != "open" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        state = alice.get(&format!("/v1/instances/{id}")).await;
    }
    assert_eq!(state.json["state"], "evaluating", "{}", state.json);

    // A crash mid-evaluation; the restart is READY while the evaluation runs again.
    daemon.kill();
    let daemon = tokio::task::spawn_blocking(move || {
        daemon.restart();
        daemon
    })
    .await
    .unwrap();
    let state = alice.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(
        state.json["state"], "evaluating",
        "READY=1 came only after the resumed evaluation: {}",
        state.json
    );
    // It ends in the background: a signed failed result at the wall-time limit.
    let result = alice
        .get(&format!("/v1/instances/{id}/result?wait=40"))
        .await;
    assert_eq!(result.status, StatusCode::OK, "{}", result.json);
    drop(daemon);
}
