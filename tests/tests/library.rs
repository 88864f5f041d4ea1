//! The shipped function library end to end (a real daemon on a private swtpm): listed from
//! the first request with names, descriptions, input schemas and measurements equal to the
//! files of `daemon/functions/`; `sha256-concat`'s known answer and `psi-count` on generated
//! lists, both through HPKE-encrypted inputs and a verified signed result; ids and
//! measurements stable over restarts of `arbiterd run` within one TPM startup and measured
//! again after a TPM restart, the log replaying to PCR 23 each time; a disabled function
//! absent and refused; operators' own functions beside the library.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use arbiter_client::http::PartyIdentity;
use arbiter_measured_boot::cel::{self, EventContent, Record};
use arbiter_policy::Public;
use arbiter_policy::jws::{Statement, verify_statement};
use arbiter_tests::cli::CliParty;
use arbiter_tests::daemon::{Party, TestDaemon, two_party_manifest};
use arbiter_tests::library::{self, Shipped};
use arbiter_tests::process::{DaemonProcess, DaemonSpec};
use arbiter_tests::{TestTpm, b64d, verified_quote};
use hyper::StatusCode;
use serde_json::{Value, json};

const ZERO_IDENTITY: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const KNOWN_ANSWER: &str = "579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63";

struct World {
    tpm: TestTpm,
    daemon: TestDaemon,
    operator: Party,
    alice: Party,
    bob: Party,
}

async fn world(disabled: &[&str]) -> World {
    let tpm = TestTpm::start();
    let operator = PartyIdentity::generate("operator").unwrap();
    let operator_id = operator.identity().unwrap();
    let disabled: Vec<String> = disabled.iter().map(|s| (*s).to_owned()).collect();
    let daemon = TestDaemon::start(&tpm, &tpm.path("daemon"), |c| {
        c.access.operators = vec![operator_id];
        c.library.disabled = disabled;
    })
    .await;
    World {
        operator: Party::with_identity("operator", operator, &daemon.url),
        alice: Party::new("alice", &daemon),
        bob: Party::new("bob", &daemon),
        daemon,
        tpm,
    }
}

fn nonce() -> String {
    let mut n = [0u8; 32];
    rand::fill(&mut n);
    hex::encode(n)
}

/// An attestation checked as a verifier does (quote over the PCRs served, the log replaying
/// to PCR 23): the generation and its records.
async fn attest(p: &Party) -> (u64, Vec<Record>) {
    let n = nonce();
    let r = p.get(&format!("/v1/attestation?nonce={n}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let (_, pcrs) = verified_quote(&r.json);
    let records: Vec<Record> = serde_json::from_value(r.json["log"].clone()).unwrap();
    cel::verify_against_pcr(&records, 23, &pcrs[&23]).expect("the log replays to PCR 23");
    (r.json["log_generation"].as_u64().unwrap(), records)
}

/// The `(name, sha256)` of each `function_loaded` record.
fn loaded(records: &[Record]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = records
        .iter()
        .filter_map(|r| match &r.content {
            EventContent::FunctionLoaded(f) => Some((f.name.clone(), hex::encode(f.sha256.0))),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn expected_loaded(shipped: &[Shipped]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = shipped
        .iter()
        .map(|f| (f.name.clone(), f.sha256.clone()))
        .collect();
    out.sort();
    out
}

async fn statement_key(p: &Party) -> Public {
    let r = p.get("/v1/tpm").await;
    Public::from_tpm2b(&b64d(&r.json["statement_key"]["tpm2b_public"])).unwrap()
}

/// Creates a two-party instance of `sha256`, submits `a` and `b` encrypted, and returns the
/// signed result's output once its JWS verified under the TPM's statement key.
async fn compute(w: &World, sha256: &str, a: Value, b: Value) -> Value {
    let r = w
        .operator
        .post(
            "/v1/instances",
            json!({"manifest": two_party_manifest(sha256, &w.alice, &w.bob)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let inst = r.json;
    let id = inst["id"].as_str().unwrap();
    assert_eq!(inst["function_sha256"], sha256);
    for (party, slot, value) in [(&w.alice, "a", a), (&w.bob, "b", b)] {
        let r = party
            .put(
                &format!("/v1/instances/{id}/inputs/{slot}"),
                party.encrypt_input(&inst, slot, 1, &value),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }
    let r = w
        .alice
        .get(&format!("/v1/instances/{id}/result?wait=30"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["succeeded"], true, "{}", r.json);
    let key = statement_key(&w.bob).await;
    let Statement::Result(s) = verify_statement(r.json["jws"].as_str().unwrap(), &key).unwrap()
    else {
        panic!("not a result statement")
    };
    assert_eq!(s.instance_id, id);
    assert_eq!(s.function_sha256, sha256);
    assert_eq!(
        s.output, r.json["output"],
        "the signed output is the one served"
    );
    s.output
}

/// The library functions listed, by name.
fn library_entries(list: &Value) -> Vec<&Value> {
    let mut out: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["library"] == true)
        .collect();
    out.sort_by_key(|f| f["name"].as_str().unwrap().to_owned());
    out
}

#[tokio::test]
async fn the_library_is_listed_from_the_first_request_and_computes() {
    let w = world(&[]).await;
    let shipped = library::shipped();
    assert!(shipped.iter().any(|f| f.name == "sha256-concat"));
    assert!(shipped.iter().any(|f| f.name == "psi-count"));

    // The very first request of a fresh daemon lists every library function.
    let r = w.alice.get("/v1/functions").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let listed = library_entries(&r.json);
    assert_eq!(listed.len(), shipped.len(), "{}", r.json);
    assert_eq!(
        r.json.as_array().unwrap().len(),
        shipped.len(),
        "{}",
        r.json
    );
    for (f, s) in listed.iter().zip(&shipped) {
        assert_eq!(f["name"], s.name.as_str());
        assert_eq!(f["sha256"], s.sha256.as_str(), "sha256 of the file's bytes");
        assert_eq!(f["id"], s.id.as_str(), "the documented id");
        assert_eq!(f["description"], s.metadata["description"]);
        assert_eq!(f["input_schema"], s.metadata["input_schema"]);
        // The source as served is the file, byte for byte.
        let d = w.bob.get(&format!("/v1/functions/{}", s.id)).await;
        assert_eq!(d.status, StatusCode::OK, "{}", d.json);
        assert_eq!(d.json["source"], s.source.as_str());
        assert_eq!(d.json["registered_by"], ZERO_IDENTITY);
        assert_eq!(d.json["library"], true);
        assert_eq!(d.json["language"], "rhai");
    }
    // Each measured exactly once in this generation.
    let (_, records) = attest(&w.alice).await;
    assert_eq!(loaded(&records), expected_loaded(&shipped));

    // sha256-concat's known answer, end to end.
    let concat = library::get("sha256-concat");
    let out = compute(
        &w,
        &concat.sha256,
        json!("Now is the time"),
        json!("for all good men"),
    )
    .await;
    assert_eq!(out, KNOWN_ANSWER);

    // psi-count on two generated lists with a known overlap (and a duplicate, counted once).
    let list = |from: usize, to: usize| -> Vec<String> {
        (from..to)
            .map(|i| format!("customer{i}@example.com"))
            .collect()
    };
    let a = list(0, 700);
    let mut b = list(450, 1000);
    b.push("customer500@example.com".into());
    let psi = library::get("psi-count");
    let out = compute(&w, &psi.sha256, json!(a), json!(b)).await;
    assert_eq!(out, json!({"intersection_size": 250}));

    // Operators still register their own functions, with or without metadata, beside the
    // library.
    let own = "fn compute(inputs) { inputs.a + inputs.b }";
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let r = w
        .operator
        .post(
            "/v1/functions",
            json!({"name": "sum", "language": "rhai", "source": own,
                   "description": "a + b", "input_schema": schema}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["library"], false);
    assert_eq!(r.json["description"], "a + b");
    assert_eq!(r.json["input_schema"], schema);
    let mine = r.json["id"].as_str().unwrap().to_owned();
    let d = w.alice.get(&format!("/v1/functions/{mine}")).await;
    assert_eq!(d.json["registered_by"], w.operator.id.as_str());
    let r = w.alice.get("/v1/functions").await;
    assert_eq!(r.json.as_array().unwrap().len(), shipped.len() + 1);
    assert_eq!(library_entries(&r.json).len(), shipped.len());
    let out = compute(
        &w,
        &hex::encode(arbiter_tests::sha256(&[own.as_bytes()])),
        json!(2),
        json!(3),
    )
    .await;
    assert_eq!(out, 5);
    // A schema that is not one is refused, naming the field, and registers nothing.
    let r = w
        .operator
        .post(
            "/v1/functions",
            json!({"name": "bad", "language": "rhai", "source": own,
                   "input_schema": {"type": "no-such-type"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(
        r.json["error"]["code"], "invalid_input_schema",
        "{}",
        r.json
    );
    let r = w.alice.get("/v1/functions").await;
    assert_eq!(r.json.as_array().unwrap().len(), shipped.len() + 1);
    let (_, records) = attest(&w.alice).await;
    assert_eq!(loaded(&records).len(), shipped.len() + 1);
    w.daemon.stop().await;
    drop(w.tpm);
}

#[tokio::test]
async fn a_disabled_library_function_is_absent_and_refused() {
    let w = world(&["psi-count"]).await;
    let psi = library::get("psi-count");
    let shipped = library::shipped();
    let r = w.alice.get("/v1/functions").await;
    let names: Vec<&str> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"psi-count"), "{names:?}");
    assert!(names.contains(&"sha256-concat"), "{names:?}");
    assert_eq!(names.len(), shipped.len() - 1);
    let d = w.alice.get(&format!("/v1/functions/{}", psi.id)).await;
    assert_eq!(
        d.status,
        StatusCode::NOT_FOUND,
        "never registered: {}",
        d.json
    );
    // Not measured either.
    let (_, records) = attest(&w.alice).await;
    let enabled: Vec<Shipped> = shipped
        .iter()
        .filter(|f| f.name != "psi-count")
        .cloned()
        .collect();
    assert_eq!(loaded(&records), expected_loaded(&enabled));
    // An instance naming it is refused, and nothing is created.
    let r = w
        .operator
        .post(
            "/v1/instances",
            json!({"manifest": two_party_manifest(&psi.sha256, &w.alice, &w.bob)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(r.json["error"]["code"], "invalid_manifest", "{}", r.json);
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&psi.sha256)
            && message.contains("`psi-count`")
            && message.contains("disabled"),
        "the refusal names the function and why: {message}"
    );
    // An operator may still register the same script as their own: then it is offered.
    let r = w
        .operator
        .post(
            "/v1/functions",
            json!({"name": "my psi", "language": "rhai", "source": psi.source}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["sha256"], psi.sha256.as_str());
    assert_eq!(r.json["library"], false);
    let out = compute(&w, &psi.sha256, json!(["x", "y"]), json!(["y", "z"])).await;
    assert_eq!(out, json!({"intersection_size": 1}));
    w.daemon.stop().await;
}

#[tokio::test]
async fn an_unknown_name_in_library_disabled_is_refused_at_start() {
    let tpm = TestTpm::start();
    let e = TestDaemon::try_start(&tpm, &tpm.path("daemon"), |c| {
        c.library.disabled = vec!["psi-count".into(), "no-such-function".into()];
    })
    .await
    .err()
    .expect("the start is refused")
    .to_string();
    assert!(e.contains("`no-such-function`"), "{e}");
    assert!(e.contains("library.disabled"), "{e}");
    assert!(
        !tpm.path("daemon").join("measurements").exists(),
        "nothing was measured"
    );
}

/// The current generation's log file of a state directory, and its events.
fn generation_events(state: &Path) -> (String, Vec<Record>) {
    let dir = state.join("measurements");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let last = files.pop().unwrap();
    let read = cel::read_jsonl(&std::fs::read(&last).unwrap()).unwrap();
    (
        last.file_name().unwrap().to_string_lossy().into_owned(),
        read.records,
    )
}

fn listed_library(list: &Value) -> Vec<(String, String, String)> {
    library_entries(list)
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["id"].as_str().unwrap().to_owned(),
                f["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_measured_once_per_log_generation_over_restarts() {
    let mut tpm = TestTpm::start();
    let operator = PartyIdentity::generate("operator").unwrap();
    let spec = DaemonSpec {
        state_dir: tpm.path("daemon"),
        config: format!(
            "[access]\noperators = [\"{}\"]\n",
            operator.identity().unwrap()
        ),
        tcti: Some(tpm.tcti()),
        ..DaemonSpec::default()
    };
    let mut daemon = tokio::task::spawn_blocking(move || DaemonProcess::start(spec))
        .await
        .unwrap();
    let op = Party::with_identity("operator", operator, &daemon.url());
    let shipped = library::shipped();
    let expected: Vec<(String, String, String)> = shipped
        .iter()
        .map(|f| (f.name.clone(), f.id.clone(), f.sha256.clone()))
        .collect();
    let first = listed_library(&op.get("/v1/functions").await.json);
    assert_eq!(first, expected);
    // The parties' CLI lists the same (`arbiter functions`, `arbiter function list`).
    let alice = CliParty::new(&tpm.path("parties"), "alice", &daemon.url());
    let listed: Value = serde_json::from_str(&alice.ok(&["functions", "--json"])).unwrap();
    assert_eq!(listed_library(&listed), expected);
    let text = alice.ok(&["function", "list"]);
    for f in &shipped {
        let line = format!("{}  {}  {}  library", f.name, f.sha256, f.id);
        assert!(text.contains(&line), "{line} in:\n{text}");
    }
    let (file, records) = generation_events(&tpm.path("daemon"));
    assert_eq!(loaded(&records), expected_loaded(&shipped));
    let (generation, _) = attest(&op).await;

    // Restarts within one TPM startup: SIGTERM, SIGKILL; same ids, no new measurement.
    daemon = tokio::task::spawn_blocking(move || {
        assert!(daemon.terminate().success(), "{}", daemon.log());
        daemon.restart();
        daemon.kill();
        daemon.restart();
        daemon
    })
    .await
    .unwrap();
    let op = Party::with_identity("operator", op.identity, &daemon.url());
    assert_eq!(
        listed_library(&op.get("/v1/functions").await.json),
        expected
    );
    let (same_file, records) = generation_events(&tpm.path("daemon"));
    assert_eq!(same_file, file, "one generation");
    assert_eq!(
        loaded(&records),
        expected_loaded(&shipped),
        "not measured again on a restart"
    );
    let starts = records
        .iter()
        .filter(|r| matches!(r.content, EventContent::DaemonStarted(_)))
        .count();
    assert_eq!(starts, 3);
    assert_eq!(attest(&op).await.0, generation);

    // A TPM restart under a stopped daemon: the next start opens a new generation that
    // measures the library again, once.
    daemon = tokio::task::spawn_blocking(move || {
        assert!(daemon.terminate().success(), "{}", daemon.log());
        daemon
    })
    .await
    .unwrap();
    tpm.swtpm.restart().unwrap();
    daemon = tokio::task::spawn_blocking(move || {
        daemon.restart();
        daemon
    })
    .await
    .unwrap();
    let op = Party::with_identity("operator", op.identity, &daemon.url());
    assert_eq!(
        listed_library(&op.get("/v1/functions").await.json),
        expected
    );
    let (new_file, records) = generation_events(&tpm.path("daemon"));
    assert_ne!(new_file, file, "a new generation");
    assert_eq!(loaded(&records), expected_loaded(&shipped));
    let (new_generation, served) = attest(&op).await;
    assert_eq!(new_generation, generation + 1);
    assert_eq!(loaded(&served), expected_loaded(&shipped));
    assert!(daemon.terminate().success());
}
