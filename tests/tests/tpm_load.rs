//! TPM load the daemon refuses cleanly (docs/operations.md): `GET /v1/tpm` is answered from
//! memory once computed (no TPM command per request), credential activations reuse the EK
//! saved on this connection, and client-driven TPM work beyond `[limits]
//! max_tpm_requests_queued` is refused with 503 `busy` and `Retry-After` — so that a flood
//! of `/v1/tpm` and activations from many clients, beside a party attesting steadily, gets
//! only 200s and 503s while every attestation succeeds and verifies. Real swtpm, real TLS,
//! the daemon's real metrics.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arbiter_client::http::PartyIdentity;
use arbiter_policy::appraisal::AppraisalPolicy;
use arbiter_tests::daemon::{Party, TestDaemon};
use arbiter_tests::{TestTpm, b64d};
use base64::Engine as _;
use hyper::StatusCode;
use serde_json::{Value, json};

/// Flood clients, each with its own identity and TLS connection.
const CLIENTS: usize = 12;
/// How long the mixed flood lasts.
const FLOOD: Duration = Duration::from_secs(4);
/// The limit under test (below the default, so that refusals happen on 2 cores).
const LIMIT: usize = 2;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// The value of one metric line (`name{labels}`), 0 when absent.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// TPM jobs run so far, by command, summed over every command.
fn tpm_jobs(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("arbiter_tpm_command_duration_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next())
        .map(|v| v.parse::<f64>().unwrap())
        .sum()
}

async fn metrics(op: &Party) -> String {
    let m = op.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    String::from_utf8_lossy(&m.body).into_owned()
}

/// A 200, or a 503 `busy` with `Retry-After`; anything else fails the test. True for 200.
fn ok_or_busy(what: &str, r: &arbiter_client::http::Response) -> bool {
    if r.status == StatusCode::OK {
        return true;
    }
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: neither 200 nor 503: {}",
        r.json
    );
    assert_eq!(r.json["error"]["code"], "busy", "{what}: {}", r.json);
    let retry: u32 = r
        .headers
        .get(hyper::header::RETRY_AFTER)
        .unwrap_or_else(|| panic!("{what}: 503 without Retry-After"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    false
}

/// A credential for `ek` and the AK named `ak_name`, made offline by tpm2-tools:
/// (`credential_blob`, `encrypted_secret`) as the API takes them.
fn credential(tpm: &TestTpm, ek: &Value, ak_name: &str) -> Value {
    let alg = ek["alg"].as_str().unwrap();
    let (blob, enc) = tpm.make_credential(&b64d(&ek["tpm2b_public"]), ak_name, SECRET);
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({"ek_alg": alg, "credential_blob": b64.encode(blob), "encrypted_secret": b64.encode(enc)})
}

/// One attestation as a party's client appraises it, under `policy`; the time it took.
async fn attest_once(party: &Party, policy: &AppraisalPolicy) -> Duration {
    let started = Instant::now();
    let (_, verdict) = party.appraise(policy).await;
    let took = started.elapsed();
    assert!(verdict.trusted, "untrusted: {:?}", verdict.reasons);
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tpm_info_and_activations_is_refused_cleanly_beside_attestations() {
    let tpm = TestTpm::start();
    let operator = PartyIdentity::generate("operator").unwrap();
    let op_id = operator.identity().unwrap();
    let daemon = TestDaemon::start(&tpm, &tpm.path("daemon"), |c| {
        c.access.operators = vec![op_id.clone()];
        c.limits.max_tpm_requests_queued = LIMIT;
    })
    .await;
    let op = Party::with_identity("operator", operator, &daemon.url);
    let clients: Arc<Vec<Party>> = Arc::new(
        (0..CLIENTS)
            .map(|i| Party::new(&format!("client{i}"), &daemon))
            .collect(),
    );

    // 1. A cold burst: every client asks `/v1/tpm` at once on a fresh daemon. The first
    // computes it (one certification, one place for TPM work); the others wait for it
    // without taking a place, and all are answered.
    let before = metrics(&op).await;
    let burst: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let clients = Arc::clone(&clients);
            tokio::spawn(async move {
                let started = Instant::now();
                let r = clients[i].get("/v1/tpm").await;
                (
                    ok_or_busy("cold GET /v1/tpm", &r),
                    started.elapsed(),
                    r.json,
                )
            })
        })
        .collect();
    let mut cold = Vec::new();
    let mut info = Value::Null;
    for t in burst {
        let (ok, took, json) = t.await.unwrap();
        if ok {
            cold.push(took);
            info = json;
        }
    }
    assert_eq!(
        cold.len(),
        CLIENTS,
        "requests waiting for the computation under way are not refused"
    );
    eprintln!(
        "cold burst of {CLIENTS}: {} answered 200, {} refused 503 busy",
        cold.len(),
        CLIENTS - cold.len()
    );
    let after_burst = metrics(&op).await;
    let certify = "arbiter_tpm_command_duration_seconds_count{command=\"certify_statement_key\"}";
    assert_eq!(
        metric(&after_burst, certify) - metric(&before, certify),
        1.0,
        "the cold burst certified the statement key once"
    );

    // 2. 1,000 warm `/v1/tpm` calls from every client: no TPM command at all.
    let warm_before = metrics(&op).await;
    let started = Instant::now();
    let warm: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let clients = Arc::clone(&clients);
            tokio::spawn(async move {
                let mut took = Vec::new();
                for _ in 0..(1000 / CLIENTS + 1) {
                    let t = Instant::now();
                    let r = clients[i].get("/v1/tpm").await;
                    assert_eq!(r.status, StatusCode::OK, "a warm /v1/tpm is never refused");
                    took.push(t.elapsed());
                }
                took
            })
        })
        .collect();
    let mut warm_took = Vec::new();
    for t in warm {
        warm_took.extend(t.await.unwrap());
    }
    let warm_wall = started.elapsed();
    let warm_after = metrics(&op).await;
    let jobs = tpm_jobs(&warm_after) - tpm_jobs(&warm_before);
    eprintln!(
        "/v1/tpm: cold {:.1} ms (fastest of the burst), warm median {:.2} ms over {} calls \
         ({:.0}/s); TPM jobs during the warm calls: {jobs}",
        cold.iter().min().unwrap().as_secs_f64() * 1e3,
        median(warm_took.clone()).as_secs_f64() * 1e3,
        warm_took.len(),
        warm_took.len() as f64 / warm_wall.as_secs_f64(),
    );
    assert_eq!(
        metric(&warm_after, certify),
        metric(&after_burst, certify),
        "warm /v1/tpm calls certify nothing"
    );
    // Only the daemon's own background work may have reached the TPM meanwhile.
    assert!(
        jobs <= 4.0,
        "{jobs} TPM jobs during {} warm /v1/tpm calls",
        warm_took.len()
    );

    // 3. Credentials for each EK, made offline against the AK's name.
    let ak_name = info["ak"]["name"].as_str().unwrap().to_owned();
    let credentials: Arc<Vec<Value>> = Arc::new(
        info["eks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ek| credential(&tpm, ek, &ak_name))
            .collect(),
    );
    assert_eq!(credentials.len(), 2);

    // A party's policy: this AK; swtpm has no firmware, so nothing pins the platform.
    let alice = Party::new("alice", &daemon);
    let mut policy = AppraisalPolicy::default();
    policy.ak.name = Some(hex::decode(&ak_name).unwrap());
    policy.allow_unpinned_platform = true;
    let quiet = attest_once(&alice, &policy).await;

    // 4. The flood: each client alternates activations (both EKs) and `/v1/tpm` for FLOOD,
    // while Alice attests steadily and verifies each answer.
    let flood_before = metrics(&op).await;
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let clients = Arc::clone(&clients);
            let credentials = Arc::clone(&credentials);
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let (mut ok, mut busy, mut n) = (0u64, 0u64, 0usize);
                let mut activation_took = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let c = &credentials[(i + n) % credentials.len()];
                    let t = Instant::now();
                    let r = clients[i]
                        .post("/v1/tpm/activate-credential", c.clone())
                        .await;
                    if ok_or_busy("POST /v1/tpm/activate-credential", &r) {
                        activation_took.push(t.elapsed());
                        assert_eq!(b64d(&r.json["secret"]), SECRET);
                        ok += 1;
                    } else {
                        busy += 1;
                    }
                    let r = clients[i].get("/v1/tpm").await;
                    if ok_or_busy("GET /v1/tpm", &r) {
                        ok += 1;
                    } else {
                        busy += 1;
                    }
                    n += 1;
                }
                (ok, busy, activation_took)
            })
        })
        .collect();
    let started = Instant::now();
    let mut attest_took = Vec::new();
    while started.elapsed() < FLOOD {
        attest_took.push(attest_once(&alice, &policy).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut busy, mut activation_took) = (0, 0, Vec::new());
    for f in flooders {
        let (o, b, a) = f.await.unwrap();
        ok += o;
        busy += b;
        activation_took.extend(a);
    }
    let flood_after = metrics(&op).await;
    let refused = "arbiter_tpm_requests_refused_total";
    let refused_count = metric(&flood_after, refused) - metric(&flood_before, refused);
    let activations = "arbiter_tpm_command_duration_seconds_count{command=\"activate_credential\"}";
    let admitted = metric(&flood_after, activations) - metric(&flood_before, activations);
    eprintln!(
        "flood of {CLIENTS} clients for {FLOOD:?} (limit {LIMIT}): {ok} answered 200, {busy} \
         refused 503 busy (metrics: {refused_count}); {admitted} activations ran, median \
         {:.1} ms; {} attestations, median {:.1} ms, slowest {:.1} ms (quiet: {:.1} ms)",
        median(activation_took.clone()).as_secs_f64() * 1e3,
        attest_took.len(),
        median(attest_took.clone()).as_secs_f64() * 1e3,
        attest_took.iter().max().unwrap().as_secs_f64() * 1e3,
        quiet.as_secs_f64() * 1e3,
    );
    assert!(
        attest_took.len() >= 5,
        "only {} attestations",
        attest_took.len()
    );
    assert!(ok > 0);
    assert_eq!(refused_count, busy as f64, "every refusal is counted");
    assert_eq!(
        metric(&flood_after, certify),
        metric(&after_burst, certify),
        "the flood's /v1/tpm calls certified nothing"
    );
    // Every credential activation left nothing loaded: no transient slot is kept.
    assert_eq!(daemon.engine.tpm().loaded_handles().await.unwrap(), 0);
    // And the daemon still attests as before.
    attest_once(&alice, &policy).await;
    daemon.stop().await;
}

/// The background check (every 10 s: is the log still the PCR's replay, did the TPM start
/// up?) reads the TPM's clock with a quote of its own — a signature, about 200 ms on a
/// discrete TPM, that attestations would queue behind. While attestations keep confirming
/// the log it sends none: over a steady stream of attestations across the check's tick,
/// the daemon signs only the attestations' quotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_attestations_spare_the_background_check_its_own_quote() {
    let tpm = TestTpm::start();
    let operator = PartyIdentity::generate("operator").unwrap();
    let op_id = operator.identity().unwrap();
    let started = Instant::now();
    let daemon = TestDaemon::start(&tpm, &tpm.path("daemon"), |c| {
        c.access.operators = vec![op_id.clone()];
    })
    .await;
    let op = Party::with_identity("operator", operator, &daemon.url);
    let info = op.get("/v1/tpm").await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.json);
    let alice = Party::new("alice", &daemon);
    let mut policy = AppraisalPolicy::default();
    policy.ak.name = Some(hex::decode(info.json["ak"]["name"].as_str().unwrap()).unwrap());
    policy.allow_unpinned_platform = true;
    attest_once(&alice, &policy).await;

    let clock = "arbiter_tpm_command_duration_seconds_count{command=\"clock\"}";
    let quote = "arbiter_tpm_command_duration_seconds_count{command=\"quote\"}";
    let before = metrics(&op).await;
    // The check ticks 10 s after the engine starts: attest until well past it.
    let mut attested = 0;
    while started.elapsed() < Duration::from_secs(12) {
        attest_once(&alice, &policy).await;
        attested += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let after = metrics(&op).await;
    assert!(
        metric(&after, quote) - metric(&before, quote) >= f64::from(attested),
        "one quote per attestation here: {attested} attestations"
    );
    assert_eq!(
        metric(&after, clock),
        metric(&before, clock),
        "the background check read the clock (a quote) though attestations had just \
         confirmed the log"
    );
    daemon.stop().await;
}
