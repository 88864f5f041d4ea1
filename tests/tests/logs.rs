//! What `arbiterd run` logs, read as an operator's log collector reads it: a full two-party
//! computation against a real daemon process logging JSON lines, after which
//! - no secret and no plaintext of the run appears anywhere in its log, raw or encoded (hex,
//!   base64, a `Debug` byte list): the parties' inputs and the result, the sealing key read
//!   back from the TPM, the daemon's TLS key and the instance secret unwrapped with it, the
//!   result-at-rest key, the parties' TLS private keys;
//! - every line is one JSON object, no longer than the line bound, and the lifecycle events
//!   carry their structured fields (event, instance, identity);
//! - a refused request with a 60 KB path logs a bounded line;
//! - the metrics scraped after the run have samples in the latency and size histograms.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use arbiter_client::http::PartyIdentity;
use arbiter_daemon::keys::Sealer;
use arbiter_daemon::logging::MAX_LINE_BYTES;
use arbiter_daemon::store::queries;
use arbiter_daemon::tpm::Tpm;
use arbiter_tests::TestTpm;
use arbiter_tests::daemon::{Party, two_party_instance};
use arbiter_tests::process::{DaemonProcess, DaemonSpec};
use base64::Engine as _;
use hyper::StatusCode;
use serde_json::{Value, json};

const JOIN: &str = "fn compute(inputs) { inputs.a + \"|\" + inputs.b }\n";

/// The forms a secret could take in a log line.
fn encodings(secret: &[u8]) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let debug = format!("{:?}", &secret[..secret.len().min(12)]);
    vec![
        hex::encode(secret),
        hex::encode_upper(secret),
        b64.encode(secret),
        b64url.encode(secret),
        debug.trim_end_matches(']').to_owned(),
    ]
}

/// A PEM private key: its base64 lines and every encoding of its DER.
fn pem_forms(pem: &str) -> Vec<String> {
    let body: Vec<&str> = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.concat())
        .expect("PEM body");
    let mut forms: Vec<String> = body.iter().map(|l| (*l).to_owned()).collect();
    forms.extend(encodings(&der));
    forms
}

fn random_marker(name: &str) -> String {
    let mut b = [0u8; 12];
    rand::fill(&mut b);
    format!("{name}-plaintext-{}", hex::encode(b))
}

/// The log's JSON lines with `event == name`.
fn events<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_logs_structured_bounded_lines_without_any_secret() {
    let tpm = TestTpm::start();
    let operator = PartyIdentity::generate("operator").unwrap();
    let operator_id = operator.identity().unwrap();
    let state_dir = tpm.path("daemon");
    let spec = DaemonSpec {
        state_dir: state_dir.clone(),
        config: format!(
            "[access]\noperators = [\"{operator_id}\"]\n\n[log]\nformat = \"json\"\nlevel = \"debug\"\n"
        ),
        tcti: Some(tpm.tcti()),
        ..DaemonSpec::default()
    };
    let mut daemon = tokio::task::spawn_blocking(move || DaemonProcess::start(spec))
        .await
        .unwrap();
    let url = daemon.url();
    let alice_identity = PartyIdentity::generate("alice").unwrap();
    let bob_identity = PartyIdentity::generate("bob").unwrap();
    let mut secrets: Vec<String> = Vec::new();
    for identity in [&operator, &alice_identity, &bob_identity] {
        secrets.extend(pem_forms(&identity.key_pem()));
    }
    let op = Party::with_identity("operator", operator, &url);
    let alice = Party::with_identity("alice", alice_identity, &url);
    let bob = Party::with_identity("bob", bob_identity, &url);

    // The computation: both plaintexts, and the result joining them.
    let (a, b) = (random_marker("alice"), random_marker("bob"));
    let inst = two_party_instance(&op, &alice, &bob, "join", JOIN).await;
    let id = inst["id"].as_str().unwrap().to_owned();
    for (p, slot, value) in [(&alice, "a", &a), (&bob, "b", &b)] {
        let r = p.submit(&inst, slot, &json!(value)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }
    let result = alice
        .get(&format!("/v1/instances/{id}/result?wait=30"))
        .await;
    assert_eq!(result.status, StatusCode::OK, "{}", result.json);
    let output = format!("{a}|{b}");
    assert_eq!(result.json["output"], output, "{}", result.json);
    secrets.extend([a.clone(), b.clone(), output]);
    for plaintext in [&a, &b] {
        secrets.extend(encodings(plaintext.as_bytes()));
    }
    let nonce = hex::encode([7u8; 32]);
    let attested = alice.get(&format!("/v1/attestation?nonce={nonce}")).await;
    assert_eq!(attested.status, StatusCode::OK, "{}", attested.json);

    // A refused request with a 60 KB path.
    let long_path = format!("/{}", "x".repeat(60_000));
    let refused = bob.get(&long_path).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);

    // The metrics: counters under their names, and histograms with samples.
    let scraped = op.get("/metrics").await;
    assert_eq!(scraped.status, StatusCode::OK);
    let metrics = String::from_utf8_lossy(&scraped.body).into_owned();
    let count = |prefix: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    for (series, least) in [
        (
            "arbiter_http_request_duration_seconds_count{route=\"PutInput\",status=\"200\"}",
            2,
        ),
        (
            "arbiter_tpm_command_duration_seconds_count{command=\"quote\"}",
            1,
        ),
        (
            "arbiter_tpm_command_duration_seconds_count{command=\"sign\"}",
            1,
        ),
        ("arbiter_quote_batch_size_count", 1),
        (
            "arbiter_evaluation_duration_seconds_count{outcome=\"succeeded\"}",
            1,
        ),
        ("arbiter_store_commit_writes_count", 3),
        ("arbiter_requests_ok_total", 6),
        ("arbiter_inputs_accepted_total", 2),
    ] {
        assert!(count(series) >= least, "{series} < {least}:\n{metrics}");
    }
    assert!(metrics.contains("arbiter_tpm_queue_depth "), "{metrics}");

    // Stopped: the log is complete, and the TPM is free to read the sealing key back.
    let status = tokio::task::spawn_blocking(move || {
        let status = daemon.terminate();
        (status, daemon)
    })
    .await
    .unwrap();
    let (status, daemon) = status;
    assert!(status.success(), "{status:?}");
    let log = daemon.log();

    let tpm_layer = Tpm::open(tpm.config()).unwrap();
    let sealed = tpm_layer.read_sealing_key().await.unwrap();
    secrets.extend(encodings(sealed.key()));
    let sealer = Sealer::new(sealed);
    let db = rusqlite::Connection::open(state_dir.join("arbiter.db")).unwrap();
    let wrapped_tls = queries::get_wrapped(&db, "tls", sealer.epoch())
        .unwrap()
        .expect("the TLS key is stored wrapped");
    secrets.extend(encodings(&sealer.unwrap("tls", &wrapped_tls).unwrap()));
    let wrapped_instance = queries::get_wrapped(&db, &id, sealer.epoch())
        .unwrap()
        .expect("the instance secret is stored wrapped");
    let instance_secret = sealer.unwrap_instance(&id, &wrapped_instance).unwrap();
    secrets.extend(encodings(instance_secret.expose()));
    secrets.extend(encodings(
        &arbiter_policy::hpke::result_at_rest_key(instance_secret.expose())[..],
    ));

    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret or plaintext appears in the log: {secret}"
        );
    }

    // Every line is a bounded JSON object.
    let mut lines = Vec::new();
    for line in log.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.len() <= MAX_LINE_BYTES + 64,
            "a log line of {} bytes",
            line.len()
        );
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        lines.push(value);
    }
    let refusal = events(&lines, "request_refused")
        .into_iter()
        .find(|l| {
            l["request"]
                .as_str()
                .is_some_and(|r| r.starts_with("GET /xxx"))
        })
        .expect("the long request's refusal is logged");
    assert!(refusal.to_string().len() < 1024, "{refusal}");
    assert_eq!(refusal["identity"], bob.id);

    // The lifecycle events, with who and what.
    let created = events(&lines, "instance_created");
    assert!(
        created
            .iter()
            .any(|l| l["instance"] == id.as_str() && l["identity"] == operator_id.as_str()),
        "{created:?}"
    );
    for party in [&alice, &bob] {
        assert!(
            events(&lines, "input_accepted")
                .iter()
                .any(|l| l["instance"] == id.as_str() && l["identity"] == party.id.as_str()),
            "no input_accepted of {} for {id}",
            party.name
        );
    }
    let evaluated = events(&lines, "evaluated");
    assert!(
        evaluated.iter().any(|l| l["instance"] == id.as_str()
            && l["succeeded"] == true
            && l["duration_ms"].as_f64().is_some()),
        "{evaluated:?}"
    );
    assert!(
        events(&lines, "request")
            .iter()
            .any(|l| l["route"] == "PutInput" && l["identity"] == alice.id.as_str()),
        "requests are logged at debug with route and identity"
    );
    assert!(
        lines.iter().any(|l| l["tpm_command"] == "quote"),
        "TPM commands are logged at debug"
    );
    assert!(!events(&lines, "serving").is_empty());
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
}
