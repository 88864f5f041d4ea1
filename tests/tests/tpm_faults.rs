//! A private swtpm behind the TPM proxy (`arbiter_tests::tpm_proxy`): tpm2-tools work through
//! it and a quote takes at least its discrete-TPM latency; at that speed concurrent verified
//! attestations share a few quotes; the daemon rides out `TPM_RC_RETRY` and
//! `TPM_RC_YIELDED` answered to its quotes, PCR reads, signatures and extends (a few times,
//! at random, or for good: then a clear 503, or a result withheld as unsigned, and the TPM
//! used again after); `TPM_RC_NV_RATE` on the sealing index's NV writes is waited out, and
//! when it does not end the destruction fails with a clear error, changes nothing visible
//! and completes once the TPM accepts writes again. An evaluation that starts while a slow
//! TPM command is in flight waits for it without stalling the daemon's runtime.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

use arbiter_client::http::PartyIdentity;
use arbiter_daemon::tpm::Tpm;
use arbiter_policy::appraisal::AppraisalPolicy;
use arbiter_tests::TestTpm;
use arbiter_tests::daemon::{Party, TestDaemon, two_party_instance};
use arbiter_tests::tpm_proxy::{
    Fault, LatencyTable, RC_RETRY, RC_YIELDED, TpmProxy, Trigger, command_code,
};
use hyper::StatusCode;
use serde_json::{Value, json};

const SUM: &str = "fn compute(inputs) { inputs.a + inputs.b }";

/// Runs a tpm2-tools program against `tcti`, returning its stdout and how long it took.
fn tool(tcti: &str, program: &str, args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let out = Command::new(program)
        .args(args)
        .env("TPM2TOOLS_TCTI", tcti)
        .env("TSS2_LOG", "all+NONE")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{program} {args:?} through {tcti} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), took)
}

fn faults(rc: u32, commands: &[&str], k: u32) -> Vec<Fault> {
    commands
        .iter()
        .map(|c| Fault {
            command: command_code(c).unwrap(),
            rc,
            trigger: Trigger::First(k),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm2_tools_work_through_the_proxy_and_a_quote_takes_its_latency() {
    let sw = TestTpm::start();
    let tpm = Tpm::open(sw.config()).expect("opening the TPM");
    tpm.ensure_statement_key().await.expect("the AK");
    let ak = format!("{:#x}", tpm.config().ak_handle);
    drop(tpm);
    let proxy = TpmProxy::start(sw.swtpm.port(), LatencyTable::discrete(), vec![]).await;
    let table = LatencyTable::discrete();
    let quote_latency = table.commands[&command_code("Quote").unwrap()];

    let direct_pcrs = tool(&sw.tcti(), "tpm2_pcrread", &["sha256:0,16,23"]).0;
    let (proxied_pcrs, pcrread) = tool(&proxy.tcti(), "tpm2_pcrread", &["sha256:0,16,23"]);
    assert_eq!(proxied_pcrs, direct_pcrs, "the same PCRs through the proxy");
    assert!(proxy.forwarded(command_code("PCR_Read").unwrap()) >= 1);

    let (msg, sig) = (sw.path("q.msg"), sw.path("q.sig"));
    let (msg, sig) = (msg.display().to_string(), sig.display().to_string());
    let quote = |tcti: &str| {
        tool(
            tcti,
            "tpm2_quote",
            &[
                "-c",
                &ak,
                "-l",
                "sha256:0,23",
                "-q",
                "abcd",
                "-m",
                &msg,
                "-s",
                &sig,
                "-g",
                "sha256",
            ],
        )
        .1
    };
    let direct = quote(&sw.tcti());
    let proxied = quote(&proxy.tcti());
    println!(
        "tpm2_pcrread through the proxy: {pcrread:?}; tpm2_quote direct: {direct:?}, \
         through the discrete-TPM table: {proxied:?}"
    );
    assert_eq!(proxy.forwarded(command_code("Quote").unwrap()), 1);
    assert!(
        proxied >= quote_latency,
        "a quote through the proxy took {proxied:?}, less than the table's {quote_latency:?}"
    );
    assert!(
        proxied >= direct + quote_latency / 2,
        "the proxy added its latency: {proxied:?} against {direct:?} direct"
    );
}

/// A daemon on `tcti`, its operator and two parties.
async fn daemon(tpm: &TestTpm, tcti: String) -> (TestDaemon, Party, Party, Party) {
    let operator = PartyIdentity::generate("operator").unwrap();
    let id = operator.identity().unwrap();
    let d = TestDaemon::start(tpm, &tpm.path("daemon"), |c| {
        c.access.operators = vec![id.clone()];
        c.tpm.tcti = tcti;
    })
    .await;
    let op = Party::with_identity("operator", operator, &d.url);
    let alice = Party::new("alice", &d);
    let bob = Party::new("bob", &d);
    (d, op, alice, bob)
}

/// Registers `name`, creates an instance of it, gives both inputs (`a`, `b`).
async fn filled_instance(op: &Party, alice: &Party, bob: &Party, name: &str) -> Value {
    let inst = two_party_instance(op, alice, bob, name, SUM).await;
    for (p, slot, v) in [(alice, "a", 1), (bob, "b", 41)] {
        let r = p.submit(&inst, slot, &json!(v)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }
    inst
}

/// The instance's result, once there (within 30 s).
async fn result(p: &Party, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = p.get(&format!("/v1/instances/{id}/result")).await;
        if r.status == StatusCode::OK && r.json["evaluated"] == true {
            return r.json;
        }
        assert!(
            Instant::now() < deadline,
            "no result: {} {}",
            r.status,
            r.json
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A party's policy pinning the daemon's AK as it is now (swtpm has no firmware to pin).
async fn trusting(p: &Party) -> AppraisalPolicy {
    let (att, _) = p.appraise(&AppraisalPolicy::default()).await;
    let mut policy = AppraisalPolicy::default();
    policy.ak.name = Some(hex::decode(att["ak"]["name"].as_str().unwrap()).unwrap());
    policy.allow_unpinned_platform = true;
    policy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_yielded_are_ridden_out() {
    const K: u32 = 7;
    for (rc, name) in [(RC_RETRY, "RETRY"), (RC_YIELDED, "YIELDED")] {
        let tpm = TestTpm::start();
        let proxy = TpmProxy::start(tpm.swtpm.port(), LatencyTable::none(), vec![]).await;
        let (_d, op, alice, bob) = daemon(&tpm, proxy.tcti()).await;
        // Each of these answered with the code the first K times it is sent: registering a
        // function and creating an instance extend PCR 23, an attestation quotes, an
        // evaluation signs its result. ESYS resubmits at once up to 5 times in all; K = 7
        // needs the daemon's own pause and second round too.
        let commands = ["PCR_Extend", "Quote", "Sign"];
        proxy.set_faults(faults(rc, &commands, K));

        let inst = filled_instance(&op, &alice, &bob, &format!("sum-{name}")).await;
        let id = inst["id"].as_str().unwrap();
        let policy = trusting(&alice).await;
        let (_, verdict) = alice.appraise(&policy).await;
        assert!(verdict.trusted, "TPM_RC_{name}: {verdict:?}");
        // Both inputs in: it evaluates by itself.
        let r = result(&alice, id).await;
        assert_eq!(r["output"], json!(42), "TPM_RC_{name}: {r}");
        for c in commands {
            let code = command_code(c).unwrap();
            println!(
                "TPM_RC_{name} on {c}: injected {}, passed on {}",
                proxy.injected(code),
                proxy.forwarded(code)
            );
            assert_eq!(proxy.injected(code), u64::from(K), "TPM_RC_{name} on {c}");
            assert!(proxy.forwarded(code) >= 1, "{c} got through in the end");
        }
        // And a party still trusts it afterwards.
        let (_, verdict) = alice.appraise(&policy).await;
        assert!(verdict.trusted, "TPM_RC_{name}: {verdict:?}");
    }
}

/// Found by a test that hung: an evaluation's child was spawned on a runtime worker,
/// which then waited (the spawn gate) for the TPM command in flight; when that command's
/// I/O needs the same runtime, as it does through this in-process proxy, nothing moved
/// again. With one runtime worker the overlap below hung every time; a hardware TPM's slow
/// quote only stalled that worker for the quote's length. The spawn now waits on a
/// blocking thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_evaluation_starting_during_a_slow_tpm_command_waits_off_the_runtime() {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = std::sync::Arc::clone(&done);
    // A hung runtime runs no timer: only a thread of its own can end the test.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        if !watchdog.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("the daemon's runtime stalled: no result within 120 s");
            std::process::abort();
        }
    });
    let tpm = TestTpm::start();
    let proxy = TpmProxy::start(tpm.swtpm.port(), LatencyTable::none(), vec![]).await;
    let (_d, op, alice, bob) = daemon(&tpm, proxy.tcti()).await;
    let inst = two_party_instance(&op, &alice, &bob, "sum", SUM).await;
    let id = inst["id"].as_str().unwrap().to_owned();
    let a = alice.submit(&inst, "a", &json!(1)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);

    // A quote that takes 1.5 s is in flight when the second input starts the daemon's
    // first evaluation, which has no warm child and so spawns one.
    let quote = command_code("Quote").unwrap();
    let quotes_before = proxy.forwarded(quote);
    proxy.set_latency(LatencyTable::parse("Quote 1500").unwrap());
    let attesting = alice.conn.clone();
    let attestation = tokio::spawn(async move {
        let n = arbiter_client::verify::fresh_nonce();
        attesting
            .get(&format!("/v1/attestation?nonce={n}"))
            .await
            .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.forwarded(quote) == quotes_before {
        assert!(
            Instant::now() < deadline,
            "the quote never reached the proxy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = bob.submit(&inst, "b", &json!(41)).await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.json);
    let r = result(&alice, &id).await;
    assert_eq!(r["output"], json!(42), "{r}");
    let att = attestation.await.unwrap();
    assert_eq!(att.status, StatusCode::OK, "{}", att.json);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_that_stays_busy_is_waited_for_then_refused_clearly_and_used_again_after() {
    let tpm = TestTpm::start();
    let proxy = TpmProxy::start(tpm.swtpm.port(), LatencyTable::none(), vec![]).await;
    let (_d, op, alice, bob) = daemon(&tpm, proxy.tcti()).await;
    let policy = trusting(&alice).await;
    let quote = command_code("Quote").unwrap();
    // ESYS resubmits at once up to 5 times; the daemon then pauses and sends it again (4
    // more rounds): 20 answers of TPM_RC_RETRY in a row are still ridden out.
    proxy.set_faults(faults(RC_RETRY, &["Quote"], 20));
    let started = Instant::now();
    let (_, verdict) = alice.appraise(&policy).await;
    println!(
        "Quote=RETRYx20: trusted {} after {:?}",
        verdict.trusted,
        started.elapsed()
    );
    assert!(verdict.trusted, "{verdict:?}");
    assert_eq!(proxy.injected(quote), 20);

    // A TPM that never stops answering TPM_RC_RETRY: a clear 503, nothing stuck.
    proxy.set_faults(faults(RC_RETRY, &["Quote"], 1_000));
    let n = arbiter_client::verify::fresh_nonce();
    let started = Instant::now();
    let r = alice.get(&format!("/v1/attestation?nonce={n}")).await;
    println!(
        "Quote=RETRY always: {} after {:?}: {}",
        r.status,
        started.elapsed(),
        r.json
    );
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Quote") && message.contains("0x922"),
        "{message}"
    );

    // The same for the signature on a result: the evaluation's output is withheld (never
    // served unsigned) with the reason, and the TPM is used again afterwards.
    proxy.set_faults(faults(RC_YIELDED, &["Sign"], 1_000));
    let inst = filled_instance(&op, &alice, &bob, "sum").await;
    let id = inst["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(proxy.injected(command_code("Sign").unwrap()) >= 25);
    proxy.set_faults(vec![]);
    let (_, verdict) = alice.appraise(&policy).await;
    assert!(verdict.trusted, "{verdict:?}");
    let r = result(&alice, id).await;
    assert_eq!(r["output"], Value::Null, "{r}");
    assert_eq!(r["error"]["reason"], "unsigned", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Sign") && message.contains("0x908"),
        "{message}"
    );
}

/// The sealing epoch an attestation reports.
async fn epoch(p: &Party) -> u64 {
    let n = arbiter_client::verify::fresh_nonce();
    let att = p.get(&format!("/v1/attestation?nonce={n}")).await;
    assert_eq!(att.status, StatusCode::OK, "{}", att.json);
    att.json["sealing"]["epoch"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nv_rate_on_the_sealing_write_is_waited_out_or_refused_changing_nothing() {
    let tpm = TestTpm::start();
    let proxy = TpmProxy::start(tpm.swtpm.port(), LatencyTable::none(), vec![]).await;
    let (_d, op, alice, bob) = daemon(&tpm, proxy.tcti()).await;
    let nv_write = command_code("NV_Write").unwrap();
    let kept = filled_instance(&op, &alice, &bob, "kept").await;
    let kept_id = kept["id"].as_str().unwrap();
    let kept_result = result(&alice, kept_id).await;
    let first = filled_instance(&op, &alice, &bob, "first").await;
    let second = filled_instance(&op, &alice, &bob, "second").await;
    assert_eq!(epoch(&alice).await, 0);

    // Rate-limited for the first three writes: the rotation waits it out.
    proxy.set_faults(vec!["NV_Write=NV_RATEx3".parse::<Fault>().unwrap()]);
    let started = Instant::now();
    let r = alice
        .post(
            &format!("/v1/instances/{}/destroy", first["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    println!(
        "NV_Write=NV_RATEx3: destroy {} after {:?}",
        r.status,
        started.elapsed()
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(proxy.injected(nv_write), 3);
    assert_eq!(epoch(&alice).await, 1);

    // Rate-limited for good: the destruction fails with the reason.
    proxy.set_faults(vec!["NV_Write=NV_RATE".parse::<Fault>().unwrap()]);
    let second_id = second["id"].as_str().unwrap();
    let started = Instant::now();
    let r = alice
        .post(&format!("/v1/instances/{second_id}/destroy"), json!({}))
        .await;
    println!(
        "NV_Write=NV_RATE always: destroy {} after {:?}: {}",
        r.status,
        started.elapsed(),
        r.json
    );
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
    assert_eq!(r.json["error"]["code"], "tpm_unavailable", "{}", r.json);
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("NV_Write") && message.contains("0x920"),
        "{message}"
    );
    // Nothing moved: the sealing epoch is the old one, the other instance's result is
    // as it was, and the instance stays marked for destruction (durable, so a restart or
    // the next request resumes it), not half-destroyed.
    assert_eq!(epoch(&alice).await, 1);
    assert_eq!(result(&alice, kept_id).await, kept_result);
    let s = alice.get(&format!("/v1/instances/{second_id}")).await;
    assert_eq!(s.json["state"], "destroying", "{}", s.json);

    // Once the TPM takes writes again the destruction completes.
    proxy.set_faults(vec![]);
    let r = alice
        .post(&format!("/v1/instances/{second_id}/destroy"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(r.json["jws"].is_string(), "{}", r.json);
    assert_eq!(epoch(&alice).await, 2);
    let s = alice.get(&format!("/v1/instances/{second_id}")).await;
    assert_eq!(s.json["state"], "destroyed", "{}", s.json);
    assert_eq!(result(&alice, kept_id).await, kept_result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_answers_at_random_cost_nothing_but_time() {
    let tpm = TestTpm::start();
    let proxy = TpmProxy::start(tpm.swtpm.port(), LatencyTable::none(), vec![]).await;
    let (_d, _op, alice, _bob) = daemon(&tpm, proxy.tcti()).await;
    let policy = trusting(&alice).await;
    // A third of the quotes answered TPM_RC_RETRY, a third of the PCR reads that precede
    // them TPM_RC_YIELDED (the proxy's generator is seeded: the same run each time).
    proxy.set_faults(vec![
        "Quote=RETRY@0.33".parse().unwrap(),
        "PCR_Read=YIELDED@0.33".parse().unwrap(),
    ]);
    for _ in 0..20 {
        let (_, verdict) = alice.appraise(&policy).await;
        assert!(verdict.trusted, "{verdict:?}");
    }
    let (quote, read) = (
        command_code("Quote").unwrap(),
        command_code("PCR_Read").unwrap(),
    );
    println!(
        "20 attestations: Quote injected {} / passed {}, PCR_Read injected {} / passed {}",
        proxy.injected(quote),
        proxy.forwarded(quote),
        proxy.injected(read),
        proxy.forwarded(read)
    );
    assert!(proxy.injected(quote) > 0 && proxy.injected(read) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_discrete_tpm_speed_concurrent_attestations_share_quotes() {
    let tpm = TestTpm::start();
    let proxy = TpmProxy::start(tpm.swtpm.port(), LatencyTable::none(), vec![]).await;
    let (d, _op, alice, _bob) = daemon(&tpm, proxy.tcti()).await;
    let policy = trusting(&alice).await;
    proxy.set_latency(LatencyTable::discrete());
    let quote = command_code("Quote").unwrap();
    let quote_latency = LatencyTable::discrete().commands[&quote];

    let started = Instant::now();
    let (_, verdict) = alice.appraise(&policy).await;
    let one = started.elapsed();
    assert!(verdict.trusted, "{verdict:?}");
    assert!(one >= quote_latency, "one attestation took {one:?}");

    const CLIENTS: usize = 16;
    let parties: Vec<Party> = (0..CLIENTS)
        .map(|i| Party::new(&format!("verifier{i}"), &d))
        .collect();
    let quotes_before = proxy.forwarded(quote);
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for p in parties {
        let policy = policy.clone();
        set.spawn(async move {
            let started = Instant::now();
            let (_, verdict) = p.appraise(&policy).await;
            (verdict.trusted, started.elapsed())
        });
    }
    let mut latencies = Vec::new();
    while let Some(r) = set.join_next().await {
        let (trusted, took) = r.unwrap();
        assert!(trusted);
        latencies.push(took);
    }
    let wall = started.elapsed();
    latencies.sort();
    let quotes = proxy.forwarded(quote) - quotes_before;
    println!(
        "discrete table: one attestation {one:?}; {CLIENTS} at once: {wall:?} in all, \
         {quotes} quotes, median {:?}, slowest {:?}",
        latencies[CLIENTS / 2],
        latencies[CLIENTS - 1]
    );
    // One quote per request would take CLIENTS quote times at least; batched, a few.
    assert!(
        quotes < CLIENTS as u64 / 2,
        "{quotes} quotes for {CLIENTS} attestations"
    );
    assert!(wall < quote_latency * (CLIENTS as u32) / 2, "{wall:?}");
}
