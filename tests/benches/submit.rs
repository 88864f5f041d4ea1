//! Input submissions per second over HTTPS against a daemon on swtpm: one at a time (the
//! baseline) and 32 in flight at once, where the store's group commit lets one fsync
//! acknowledge many inputs. Prints both rates and their ratio.
//!
//! Run: `cargo bench -p arbiter-tests --bench submit` (`ARBITER_BENCH_INPUTS`, default 256).

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::time::Instant;

use arbiter_client::http::PartyIdentity;
use arbiter_tests::TestTpm;
use arbiter_tests::daemon::{Party, TestDaemon};
use serde_json::{Value, json};

async fn instance(op: &Party, party: &Party, slots: usize, sha: &str) -> Value {
    let slot_map: serde_json::Map<String, Value> = (0..slots)
        .map(|i| {
            (
                format!("s{i}"),
                json!({"providers": [party.id], "provide": "provide_once"}),
            )
        })
        .collect();
    let manifest = json!({
        "function": {"sha256": sha},
        "parties": [{"name": "p", "identity": party.id}],
        "slots": slot_map,
        "trigger": {"kind": "explicit"},
        "evaluators": [party.id],
        "readers": {(party.id.clone()): "result"},
        "destruction": {"policy": "on_request", "destroyers": [party.id]}
    });
    let r = op
        .post("/v1/instances", json!({"manifest": manifest}))
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.json);
    r.json
}

/// The most slots a manifest may have.
const SLOTS_PER_INSTANCE: usize = 64;

/// `n` encrypted inputs, one per slot of as many instances as they need, each with the
/// path it is submitted to.
async fn encrypted_inputs(op: &Party, party: &Party, n: usize, sha: &str) -> Vec<(String, Value)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let slots = (n - out.len()).min(SLOTS_PER_INSTANCE);
        let inst = instance(op, party, slots, sha).await;
        let id = inst["id"].as_str().unwrap();
        for i in 0..slots {
            let slot = format!("s{i}");
            let body = party.encrypt_input(&inst, &slot, 1, &json!(i));
            out.push((format!("/v1/instances/{id}/inputs/{slot}"), body));
        }
    }
    out
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("ARBITER_BENCH_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let tpm = TestTpm::start();
    let operator = PartyIdentity::generate("operator").unwrap();
    let op_id = operator.identity().unwrap();
    let daemon = TestDaemon::start(&tpm, &tpm.path("daemon"), |c| {
        c.access.operators = vec![op_id.clone()];
    })
    .await;
    let op = Party::with_identity("operator", operator, &daemon.url);
    let party = Party::new("p", &daemon);
    let f = op
        .post(
            "/v1/functions",
            json!({"name": "n", "language": "rhai", "source": "fn compute(i) { 0 }"}),
        )
        .await;
    let sha = f.json["sha256"].as_str().unwrap().to_owned();

    // Baseline: one submission at a time.
    let bodies = encrypted_inputs(&op, &party, n, &sha).await;
    let start = Instant::now();
    for (path, body) in &bodies {
        let r = party.conn.put(path, body).await.unwrap();
        assert!(r.status.is_success(), "{}", r.json);
    }
    let sequential = n as f64 / start.elapsed().as_secs_f64();

    // 32 in flight at once.
    let bodies = encrypted_inputs(&op, &party, n, &sha).await;
    let start = Instant::now();
    let mut rest = bodies;
    while !rest.is_empty() {
        let chunk: Vec<(String, Value)> = rest.drain(..rest.len().min(32)).collect();
        let mut tasks = Vec::new();
        for (path, body) in chunk {
            let conn = party.conn.clone();
            tasks.push(tokio::spawn(async move {
                conn.put(&path, &body).await.unwrap()
            }));
        }
        for t in tasks {
            let r = t.await.unwrap();
            assert!(r.status.is_success(), "{}", r.json);
        }
    }
    let concurrent = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "input submissions over HTTPS (mutual TLS, HPKE open, SQLite synchronous=FULL), {n} inputs"
    );
    println!("{:<36} {:>10} {:>10}", "mode", "inputs/s", "x baseline");
    println!(
        "{:<36} {:>10.1} {:>10.2}",
        "one at a time (baseline)", sequential, 1.0
    );
    println!(
        "{:<36} {:>10.1} {:>10.2}",
        "32 in flight (group commit)",
        concurrent,
        concurrent / sequential
    );
    daemon.stop().await;
}
