//! TPM faults under load (`arbiter_tests::fault_load`: three workers creating instances,
//! submitting inputs, evaluating, destroying, registering functions and attesting against
//! `arbiterd run` on a real swtpm):
//!
//! - **swtpm killed and restarted**, twice: while it is gone every refusal is a 503
//!   (`tpm_unavailable` or `attestation_unavailable`) naming the TPM; once it is back the same
//!   daemon (no restart) notices the TPM startup, begins a new log generation with what is
//!   live measured again, and the load completes; the log replays to PCR 23 and a party's
//!   appraisal pinning the AK trusts the appliance. An evaluation whose result the TPM was
//!   not there to sign returns its round to `open` and is evaluated again: no result is
//!   withheld (every evaluated instance's output is checked).
//! - **PCR 23 changed by another process** (`tpm2_pcrextend`, then `tpm2_pcrreset`): every
//!   refusal is a 503 naming PCR 23; `/healthz` turns `degraded` with the reason (the
//!   background check finds it even without a request); no attestation is served. The
//!   recovery is a TPM startup (here a swtpm restart, on a machine a reboot): the same daemon
//!   measures everything live again and is trusted again.
//!
//! - **An evaluation whose signature found swtpm gone** waits for the TPM without running
//!   again: its retries probe the TPM first, so the sandbox does not re-run a round the TPM
//!   cannot sign; the round completes once swtpm is back.
//!
//! After each: every acknowledged input, instance, function and destruction is there,
//! nothing transient is left, `PRAGMA integrity_check` is `ok` and the on-disk log replays
//! to PCR 23 (with the daemon stopped), and all of it again after a restart.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arbiter_measured_boot::cel::{EventContent, Record};
use arbiter_tests::TestTpm;
use arbiter_tests::daemon::two_party_manifest;
use arbiter_tests::fault_load::{
    World, check_running, check_stopped, logged_events, report, setup, start_cast, start_workers,
    stop_workers, value, wait_for,
};
use hyper::StatusCode;
use serde_json::Value;

/// The refusals a TPM that went away explains: 503 naming the TPM.
fn tpm_refusal(
    _what: &str,
    status: StatusCode,
    code: &str,
    message: &str,
    _retry_after: bool,
) -> Result<(), String> {
    match (status, code) {
        (StatusCode::SERVICE_UNAVAILABLE, "tpm_unavailable" | "attestation_unavailable")
            if message.contains("TPM") =>
        {
            Ok(())
        }
        _ => Err("only 503 naming the TPM is expected".into()),
    }
}

/// The refusals a PCR 23 changed by another process explains: 503 naming PCR 23 (or,
/// during the TPM restart that recovers from it, naming the TPM).
fn pcr_refusal(
    _what: &str,
    status: StatusCode,
    code: &str,
    message: &str,
    _retry_after: bool,
) -> Result<(), String> {
    match (status, code) {
        (StatusCode::SERVICE_UNAVAILABLE, "tpm_unavailable" | "attestation_unavailable")
            if message.contains("PCR 23") || message.contains("TPM") =>
        {
            Ok(())
        }
        _ => Err("only 503 naming PCR 23 or the TPM is expected".into()),
    }
}

/// A reboot as the TPM sees it: an orderly `TPM2_Shutdown(CLEAR)`, then power off and
/// on (a swtpm restart), so the TPM does not count it as a possible attack.
fn reboot(tpm: &mut TestTpm) {
    tpm.tool_ok("tpm2_shutdown", &[]);
    tpm.swtpm.restart().unwrap();
}

fn nonce() -> String {
    let mut n = [0u8; 32];
    rand::fill(&mut n);
    hex::encode(n)
}

/// The attestation's log generation and records.
async fn attested(world: &World) -> (u64, Vec<Record>) {
    let att = world
        .alice
        .get(&format!("/v1/attestation?nonce={}", nonce()))
        .await;
    assert_eq!(att.status, StatusCode::OK, "{}", att.json);
    (
        att.json["log_generation"].as_u64().unwrap(),
        serde_json::from_value(att.json["log"].clone()).unwrap(),
    )
}

/// Checks that the current generation (attested now) is `generation`, a fresh one:
/// `daemon_started` first, then every function offered and every instance live before the
/// attestation measured in it.
async fn assert_remeasured(world: &World, generation: u64) {
    let functions = world.op.get("/v1/functions").await;
    let offered = functions.json.as_array().unwrap().len();
    let mut live = Vec::new();
    let ids: Vec<String> = world
        .ledger
        .lock()
        .await
        .instances
        .iter()
        .map(|m| m.id())
        .collect();
    for id in ids {
        let d = world.alice.get(&format!("/v1/instances/{id}")).await;
        if d.json["state"] != "destroyed" {
            live.push(id);
        }
    }
    let (attested_generation, records) = attested(world).await;
    assert_eq!(attested_generation, generation, "one new generation");
    assert!(
        matches!(records[0].content, EventContent::DaemonStarted(_)),
        "{:?}",
        records[0]
    );
    let loaded = records
        .iter()
        .filter(|r| matches!(r.content, EventContent::FunctionLoaded(_)))
        .count();
    assert!(
        loaded >= offered,
        "{loaded} functions measured in the new generation, {offered} offered"
    );
    for id in live {
        let raw = hex::decode(&id).unwrap();
        assert!(
            records.iter().any(|r| match &r.content {
                EventContent::InstanceCreated(c) => c.instance_id.0.as_slice() == raw.as_slice(),
                _ => false,
            }),
            "live instance {id} not measured in generation {generation}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swtpm_killed_and_restarted_under_load_gives_503_then_recovers_without_a_daemon_restart() {
    let started = Instant::now();
    let mut tpm = TestTpm::start();
    let state_dir = tpm.path("daemon");
    let (mut daemon, world, policy) = setup(&tpm, &state_dir, tpm_refusal).await;
    let workers = start_workers(&world);
    wait_for(&world, &daemon, 20, "two rounds before the fault", || {
        world.completed.load(Ordering::SeqCst) >= 2
    })
    .await;
    for cycle in 1..=2 {
        let (generation, _) = attested(&world).await;
        tpm.swtpm.kill();
        let gone = Instant::now();
        world.refused.store(0, Ordering::SeqCst);
        wait_for(&world, &daemon, 20, "refusals while swtpm is gone", || {
            world.refused.load(Ordering::SeqCst) >= 10
        })
        .await;
        println!(
            "swtpm restart {cycle}: {} refusals in {:.2} s while it was gone",
            world.refused.load(Ordering::SeqCst),
            gone.elapsed().as_secs_f64()
        );
        tpm.swtpm.restart().unwrap();
        let back = Instant::now();
        let at = world.completed.load(Ordering::SeqCst);
        wait_for(&world, &daemon, 30, "rounds after swtpm came back", || {
            world.completed.load(Ordering::SeqCst) >= at + 3
        })
        .await;
        println!(
            "swtpm restart {cycle}: 3 rounds completed {:.2} s after it came back",
            back.elapsed().as_secs_f64()
        );
        assert_remeasured(&world, generation + 1).await;
    }
    stop_workers(&world, workers).await;
    check_running(&world, &state_dir, &policy, "swtpm back, no daemon restart").await;

    assert!(daemon.terminate().success(), "{}", daemon.log());
    check_stopped(&tpm, &state_dir);
    let daemon = tokio::task::spawn_blocking(move || {
        daemon.restart();
        daemon
    })
    .await
    .unwrap();
    check_running(&world, &state_dir, &policy, "after a daemon restart").await;
    report(&world, "swtpm restart", started).await;
    // Each kill is a non-orderly shutdown after the AK and the statement key (not `noDA`)
    // were used: the TPM counts it against its dictionary-attack limit.
    let da = tpm.tool_ok("tpm2_getcap", &["properties-variable"]);
    let lockout: Vec<&str> = da
        .lines()
        .filter(|l| {
            [
                "LOCKOUT_COUNTER",
                "MAX_AUTH_FAIL",
                "LOCKOUT_INTERVAL",
                "inLockout",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .map(str::trim)
        .collect();
    println!("swtpm restart: the TPM's dictionary-attack state after 2 kills: {lockout:?}");
    let withheld = count_withheld(&world).await;
    println!(
        "swtpm restart: {withheld} results withheld as unsigned; daemon log events {:?}",
        logged_events(&daemon)
    );
}

/// Results withheld as unsigned among the evaluated instances.
async fn count_withheld(world: &World) -> usize {
    let l = world.ledger.lock().await;
    let mut n = 0;
    for m in &l.instances {
        let r = world
            .alice
            .get(&format!("/v1/instances/{}/result", m.id()))
            .await;
        if r.status == StatusCode::OK && r.json["error"]["reason"] == "unsigned" {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pcr_23_changed_by_another_process_under_load_degrades_until_a_tpm_startup() {
    let started = Instant::now();
    let mut tpm = TestTpm::start();
    let state_dir = tpm.path("daemon");
    let (mut daemon, world, policy) = setup(&tpm, &state_dir, pcr_refusal).await;
    let workers = start_workers(&world);
    wait_for(&world, &daemon, 20, "two rounds before the fault", || {
        world.completed.load(Ordering::SeqCst) >= 2
    })
    .await;
    let value = hex::encode(arbiter_tests::sha256(&[b"not the daemon"]));
    let extend = format!("23:sha256={value}");
    let faults: [(&str, &str, Vec<&str>, &str); 2] = [
        (
            "extended",
            "tpm2_pcrextend",
            vec![extend.as_str()],
            "extended by another process",
        ),
        // A reset that lands between the daemon's check and its extend leaves neither
        // all-zero nor the replay: the reason then says "extended by another process?".
        ("reset", "tpm2_pcrreset", vec!["23"], "by another process"),
    ];
    for (name, program, args, why) in faults {
        let (generation, _) = attested(&world).await;
        tpm.tool_ok(program, &args);
        let changed = Instant::now();
        world.refused.store(0, Ordering::SeqCst);
        wait_for(&world, &daemon, 20, "refusals after PCR 23 changed", || {
            world.refused.load(Ordering::SeqCst) >= 5
        })
        .await;
        let h = world.alice.get("/healthz").await;
        assert_eq!(h.json["status"], "degraded", "{}", h.json);
        let reason = h.json["degraded"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .find(|r| r.starts_with("measurement: PCR 23"))
            .unwrap_or_else(|| panic!("no measurement reason in {}", h.json))
            .to_owned();
        assert!(
            reason.contains(why) && reason.contains("next TPM startup"),
            "{reason}"
        );
        let att = world
            .alice
            .get(&format!("/v1/attestation?nonce={}", nonce()))
            .await;
        assert_eq!(att.status, StatusCode::SERVICE_UNAVAILABLE, "{}", att.json);
        assert!(
            att.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("PCR 23"),
            "{}",
            att.json
        );
        println!(
            "PCR 23 {name}: {} refusals in {:.2} s; /healthz: {reason}",
            world.refused.load(Ordering::SeqCst),
            changed.elapsed().as_secs_f64()
        );

        // The recovery: a TPM startup. The same daemon measures everything again.
        reboot(&mut tpm);
        let at = world.completed.load(Ordering::SeqCst);
        wait_for(&world, &daemon, 30, "rounds after the TPM startup", || {
            world.completed.load(Ordering::SeqCst) >= at + 3
        })
        .await;
        assert_remeasured(&world, generation + 1).await;
        let h = world.alice.get("/healthz").await;
        assert_eq!(h.json["status"], "ok", "{}", h.json);
    }
    stop_workers(&world, workers).await;
    check_running(&world, &state_dir, &policy, "after the TPM startup").await;

    // Found by the background check too, with no request measuring or quoting.
    let (generation, _) = attested(&world).await;
    tpm.tool_ok("tpm2_pcrextend", &[&extend]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let h = world.alice.get("/healthz").await;
        if h.json["status"] == "degraded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the background check did not notice PCR 23 changed: {}",
            h.json
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reboot(&mut tpm);
    assert_remeasured(&world, generation + 1).await;

    assert!(daemon.terminate().success(), "{}", daemon.log());
    check_stopped(&tpm, &state_dir);
    let daemon = tokio::task::spawn_blocking(move || {
        daemon.restart();
        daemon
    })
    .await
    .unwrap();
    check_running(&world, &state_dir, &policy, "after a daemon restart").await;
    report(&world, "PCR 23", started).await;
    println!("PCR 23: daemon log events {:?}", logged_events(&daemon));
}

/// The round's second input arrives while swtpm is gone: the automatic evaluation runs,
/// its signature fails, the round returns to `open`. For the five seconds swtpm stays
/// gone the retries only probe the TPM (one abandoned evaluation in the log, not one a
/// second); once it is back the round is evaluated, signed and right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluation_that_found_the_tpm_gone_is_not_rerun_until_the_tpm_answers() {
    let mut tpm = TestTpm::start();
    let state_dir = tpm.path("daemon");
    let cast = start_cast(&tpm, &state_dir).await;
    let manifest = two_party_manifest(&cast.function, &cast.alice, &cast.bob);
    let created = cast
        .op
        .post("/v1/instances", serde_json::json!({ "manifest": manifest }))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let instance = created.json;
    let id = instance["id"].as_str().unwrap().to_owned();
    submit(&cast.alice, &instance, "a").await;
    tpm.swtpm.kill();
    // Submissions need no TPM: the second input is accepted and fires the evaluation.
    submit(&cast.bob, &instance, "b").await;
    let abandoned = |log: &str| log.matches("evaluation_abandoned").count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while abandoned(&cast.daemon.log()) == 0 {
        assert!(
            Instant::now() < deadline,
            "the evaluation did not fail on the missing TPM: {}",
            cast.daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let d = cast.alice.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(d.json["state"], "open", "{}", d.json);
    assert_eq!(
        abandoned(&cast.daemon.log()),
        1,
        "the round was evaluated again while the TPM was gone: {}",
        cast.daemon.log()
    );
    tpm.swtpm.restart().unwrap();
    let back = Instant::now();
    let deadline = back + Duration::from_secs(20);
    loop {
        let d = cast.alice.get(&format!("/v1/instances/{id}")).await;
        if d.json["state"] == "evaluated" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not evaluated after the TPM came back: {}\n{}",
            d.json,
            cast.daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "evaluated {:.2} s after swtpm was back",
        back.elapsed().as_secs_f64()
    );
    let r = cast.alice.get(&format!("/v1/instances/{id}/result")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let expected = hex::encode(arbiter_tests::sha256(&[
        value(&id, "a").as_bytes(),
        value(&id, "b").as_bytes(),
    ]));
    assert_eq!(r.json["output"], expected.as_str(), "{}", r.json);
    assert!(r.json["jws"].is_string(), "{}", r.json);
    assert_eq!(abandoned(&cast.daemon.log()), 1, "{}", cast.daemon.log());
}

/// `party` submits its value for `slot` of `instance` in round 1; it must be accepted.
async fn submit(party: &arbiter_tests::daemon::Party, instance: &Value, slot: &str) {
    let id = instance["id"].as_str().unwrap();
    let body = party.encrypt_input(instance, slot, 1, &serde_json::json!(value(id, slot)));
    let r = party
        .put(&format!("/v1/instances/{id}/inputs/{slot}"), body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
}
