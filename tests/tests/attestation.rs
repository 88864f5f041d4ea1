//! Attestation over HTTPS on a private swtpm: quotes verified by the policy crate and by
//! tpm2-tools, the Merkle binding to nonce and TLS channel, quote batching, the
//! measurement log against PCR 23, TPM startups and tampering, the TPM's public parts and
//! credential activation, and degraded (fail-closed) starts on a changed platform.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

use arbiter_measured_boot::cel::{self, EventContent, Record};
use arbiter_policy::{PcrValues, Public, merkle, verify_certify};
use arbiter_tests::daemon::{Party, TestDaemon};
use arbiter_tests::{TestTpm, b64d, verified_quote};
use base64::Engine as _;
use hyper::StatusCode;
use serde_json::{Value, json};

fn nonce() -> String {
    let mut n = [0u8; 32];
    rand::fill(&mut n);
    hex::encode(n)
}

/// Checks an attestation response the way an outside verifier does; returns the records.
fn verify(att: &Value, nonce_hex: &str, tls_spki: &str) -> (PcrValues, Vec<Record>) {
    let (ak, pcrs) = verified_quote(att);
    let root = hex::decode(att["binding"]["root"].as_str().unwrap()).unwrap();
    assert_eq!(hex::encode(ak.name()), att["ak"]["name"]);
    let leaf = &att["binding"]["leaf"];
    assert_eq!(leaf["nonce"], nonce_hex);
    assert_eq!(
        leaf["tls_spki_sha256"], tls_spki,
        "bound to the TLS key this connection saw"
    );
    let leaf_bytes = merkle::binding_leaf(nonce_hex, leaf["instance_id"].as_str(), tls_spki);
    let proof: Vec<[u8; 32]> = att["binding"]["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            hex::decode(p.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    merkle::verify_inclusion(
        &leaf_bytes,
        att["binding"]["leaf_index"].as_u64().unwrap(),
        att["binding"]["tree_size"].as_u64().unwrap(),
        &proof,
        &root.clone().try_into().unwrap(),
    )
    .expect("the leaf is in the quoted tree");
    let records: Vec<Record> = serde_json::from_value(att["log"].clone()).unwrap();
    cel::verify_against_pcr(&records, 23, &pcrs[&23]).expect("the log replays to PCR 23");
    (pcrs, records)
}

async fn start(
    tpm: &TestTpm,
    configure: impl FnOnce(&mut arbiter_daemon::config::Config),
) -> (TestDaemon, Party) {
    let operator = arbiter_client::http::PartyIdentity::generate("operator").unwrap();
    let operator_id = operator.identity().unwrap();
    let daemon = TestDaemon::start(tpm, &tpm.path("daemon"), |c| {
        c.access.operators = vec![operator_id.clone()];
        configure(c);
    })
    .await;
    let op = Party::with_identity("operator", operator, &daemon.url);
    (daemon, op)
}

#[tokio::test]
async fn a_quote_verifies_in_software_and_with_tpm2_checkquote() {
    let tpm = TestTpm::start();
    let (daemon, op) = start(&tpm, |_| {}).await;
    let source = "fn compute(inputs) { 1 }";
    let f = op
        .post(
            "/v1/functions",
            json!({"name": "one", "language": "rhai", "source": source}),
        )
        .await;
    assert_eq!(f.status, StatusCode::CREATED);
    let n = nonce();
    let r = op.get(&format!("/v1/attestation?nonce={n}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let (pcrs, records) = verify(&r.json, &n, &r.server_spki_sha256);
    assert_eq!(r.server_spki_sha256, daemon.engine.tls_spki_sha256());
    // The function's measurement is in the log as sha256 of its source.
    let loaded = records.iter().find_map(|rec| match &rec.content {
        EventContent::FunctionLoaded(f) if f.name == "one" => Some((rec.digest.0, f.sha256.0)),
        _ => None,
    });
    let digest = arbiter_tests::sha256(&[source.as_bytes()]);
    assert_eq!(loaded, Some((digest, digest)));
    assert!(matches!(records[0].content, EventContent::DaemonStarted(_)));
    // tpm2_pcrread agrees with the quoted and replayed PCR 23.
    let out = tpm.tool_ok("tpm2_pcrread", &["sha256:23"]);
    assert!(
        out.to_lowercase().contains(&hex::encode(pcrs[&23])),
        "{out}"
    );

    // tpm2_checkquote on the raw structures, with the Merkle root as qualifying data.
    let write = |name: &str, bytes: &[u8]| {
        let p = tpm.path(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let ak = write(
        "ak.pem",
        r.json["ak"]["public_pem"].as_str().unwrap().as_bytes(),
    );
    let msg = write("attest.bin", &b64d(&r.json["quote"]["attest"]));
    let sig = write("sig.bin", &b64d(&r.json["quote"]["signature"]));
    let values: Vec<u8> = pcrs.values().flatten().copied().collect();
    let pcr_file = write("pcrs.bin", &values);
    let list = format!(
        "sha256:{}",
        pcrs.keys().map(u8::to_string).collect::<Vec<_>>().join(",")
    );
    let root = r.json["binding"]["root"].as_str().unwrap().to_owned();
    tpm.tool_ok(
        "tpm2_checkquote",
        &[
            "-u", &ak, "-m", &msg, "-s", &sig, "-f", &pcr_file, "-l", &list, "-g", "sha256", "-q",
            &root,
        ],
    );

    // The sealing index published is docs/protocol.md's and the one recorded in daemon_started.
    let nv = arbiter_policy::NvPublic::from_tpm2b(&b64d(&r.json["sealing"]["nv_public"])).unwrap();
    assert_eq!(hex::encode(nv.name()), r.json["sealing"]["name"]);
    let platform: BTreeMap<u8, [u8; 32]> = pcrs
        .iter()
        .filter(|(k, _)| **k != 23)
        .map(|(k, v)| (*k, *v))
        .collect();
    let sel = arbiter_policy::PcrSelection::new(platform.keys().copied()).unwrap();
    let policy = arbiter_policy::PolicyDigest::new()
        .pcr(&sel, &platform)
        .unwrap();
    assert_eq!(nv.auth_policy, policy.as_bytes());
    let EventContent::DaemonStarted(started) = &records[0].content else {
        panic!()
    };
    assert_eq!(
        started.sealing_nv_public.0,
        b64d(&r.json["sealing"]["nv_public"])
    );

    // Bad nonces are refused.
    let bad = op.get("/v1/attestation?nonce=abcd").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json["error"]["code"], "invalid_nonce");
    daemon.stop().await;
}

#[tokio::test]
async fn concurrent_requests_share_quotes_and_each_proof_verifies() {
    let tpm = TestTpm::start();
    let (daemon, op) = start(&tpm, |c| c.attestation.batch_min_leaves = 64).await;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let conn = op.conn.clone();
        tasks.push(tokio::spawn(async move {
            let n = nonce();
            let r = conn
                .get(&format!("/v1/attestation?nonce={n}"))
                .await
                .unwrap();
            (n, r)
        }));
    }
    let mut roots = std::collections::BTreeSet::new();
    for t in tasks {
        let (n, r) = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        verify(&r.json, &n, &r.server_spki_sha256);
        roots.insert(r.json["binding"]["root"].as_str().unwrap().to_owned());
    }
    assert!(roots.len() < 64, "64 requests took {} quotes", roots.len());
    assert_eq!(
        roots.len(),
        1,
        "the test setting holds one batch for all 64"
    );
    daemon.stop().await;
}

/// Runs `client/tools/tpm2-check-attestation.sh`, the README's recipe for an outside
/// verifier with tpm2-tools, on one answer; returns whether it passed, and its stderr.
fn check_with_tpm2_tools(tpm: &TestTpm, answer: &Value, nonce: &str, spki: &str) -> (bool, String) {
    let dir = tpm.path(&format!("tpm2-check-{}", &nonce[..8]));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("answer.json");
    std::fs::write(&file, serde_json::to_vec(answer).unwrap()).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../client/tools/tpm2-check-attestation.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .arg(&file)
        .arg(nonce)
        .arg(dir.join("files"))
        .arg(spki)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_readme_tpm2_tools_recipe_verifies_every_answer_of_a_batch_and_refuses_forgeries() {
    let tpm = TestTpm::start();
    // Five requests in one quote: proofs of every shape an odd tree has.
    let (daemon, op) = start(&tpm, |c| c.attestation.batch_min_leaves = 5).await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let conn = op.conn.clone();
        tasks.push(tokio::spawn(async move {
            let n = nonce();
            let r = conn
                .get(&format!("/v1/attestation?nonce={n}"))
                .await
                .unwrap();
            (n, r)
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        let (n, r) = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["binding"]["tree_size"], 5);
        let (ok, log) = check_with_tpm2_tools(&tpm, &r.json, &n, &r.server_spki_sha256);
        assert!(ok, "the recipe refused a genuine answer: {log}");
        assert!(log.contains("tpm2_checkquote verified"), "{log}");
        answers.push((n, r));
    }
    let (n, r) = &answers[0];
    // Another verifier's nonce, another TLS key, a changed PCR value, a forged root.
    let (ok, log) = check_with_tpm2_tools(&tpm, &r.json, &nonce(), &r.server_spki_sha256);
    assert!(!ok && log.contains("not ours"), "{log}");
    let (ok, log) = check_with_tpm2_tools(&tpm, &r.json, n, &"ab".repeat(32));
    assert!(!ok && log.contains("TLS key"), "{log}");
    let mut changed = r.json.clone();
    changed["quote"]["pcrs"]["sha256"]["23"] = json!("00".repeat(32));
    assert!(!check_with_tpm2_tools(&tpm, &changed, n, &r.server_spki_sha256).0);
    let mut forged = r.json.clone();
    forged["binding"]["root"] = json!("11".repeat(32));
    let (ok, log) = check_with_tpm2_tools(&tpm, &forged, n, &r.server_spki_sha256);
    assert!(!ok && log.contains("not included"), "{log}");
    daemon.stop().await;
}

#[tokio::test]
async fn tpm_info_certification_and_credential_activation() {
    let tpm = TestTpm::start();
    let (daemon, op) = start(&tpm, |_| {}).await;
    let r = op.get("/v1/tpm").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let ak = Public::from_tpm2b(&b64d(&r.json["ak"]["tpm2b_public"])).unwrap();
    let sk = Public::from_tpm2b(&b64d(&r.json["statement_key"]["tpm2b_public"])).unwrap();
    verify_certify(
        &b64d(&r.json["statement_key"]["attest"]),
        &b64d(&r.json["statement_key"]["signature"]),
        &ak,
        &sk,
        &b64d(&r.json["statement_key"]["qualifying_data"]),
    )
    .expect("the statement key's certification verifies");
    let eks = r.json["eks"].as_array().unwrap();
    assert_eq!(eks.len(), 2);
    assert_eq!(eks[0]["alg"], "rsa2048");
    assert_eq!(eks[1]["alg"], "ecc_nist_p384");

    // MakeCredential with tpm2-tools (offline, the EK's public area and the AK's name),
    // then the daemon's ActivateCredential gives the secret back.
    for ek in eks {
        let name = r.json["ak"]["name"].as_str().unwrap();
        let (blob, enc) = tpm.make_credential(
            &b64d(&ek["tpm2b_public"]),
            name,
            b"0123456789abcdef0123456789abcdef",
        );
        let (blob, enc) = (blob.as_slice(), enc.as_slice());
        let b64 = base64::engine::general_purpose::STANDARD;
        let a = op
            .post(
                "/v1/tpm/activate-credential",
                json!({"ek_alg": ek["alg"], "credential_blob": b64.encode(blob), "encrypted_secret": b64.encode(enc)}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{} {}", ek["alg"], a.json);
        assert_eq!(b64d(&a.json["secret"]), b"0123456789abcdef0123456789abcdef");
        // A tampered blob is refused.
        let mut bad = blob.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let a = op
            .post(
                "/v1/tpm/activate-credential",
                json!({"ek_alg": ek["alg"], "credential_blob": b64.encode(&bad), "encrypted_secret": b64.encode(enc)}),
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json);
    }
    daemon.stop().await;
}

#[tokio::test]
async fn a_tpm_restart_under_the_daemon_starts_a_new_generation() {
    let mut tpm = TestTpm::start();
    let (daemon, op) = start(&tpm, |_| {}).await;
    op.post(
        "/v1/functions",
        json!({"name": "one", "language": "rhai", "source": "fn compute(i) { 1 }"}),
    )
    .await;
    let n = nonce();
    let before = op.get(&format!("/v1/attestation?nonce={n}")).await;
    let (_, records) = verify(&before.json, &n, &before.server_spki_sha256);
    let generation = before.json["log_generation"].as_u64().unwrap();
    // `/v1/tpm` is answered from memory: the second call certifies nothing.
    let certified = async || {
        let m = op.get("/metrics").await;
        String::from_utf8_lossy(&m.body)
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "arbiter_tpm_command_duration_seconds_count{command=\"certify_statement_key\"} ",
                )
                .map(|v| v.parse::<u64>().unwrap())
            })
            .unwrap_or(0)
    };
    let info = op.get("/v1/tpm").await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.json);
    assert_eq!(op.get("/v1/tpm").await.json, info.json);
    assert_eq!(certified().await, 1);

    tpm.swtpm.restart().unwrap();
    let n = nonce();
    let after = op.get(&format!("/v1/attestation?nonce={n}")).await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.json);
    // The TPM startup (a new generation) makes `/v1/tpm` certify again, once: the same
    // keys, a fresh certification.
    let again = op.get("/v1/tpm").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.json);
    assert_eq!(again.json["ak"], info.json["ak"]);
    assert_eq!(
        again.json["statement_key"]["name"],
        info.json["statement_key"]["name"]
    );
    op.get("/v1/tpm").await;
    assert_eq!(certified().await, 2);
    let (_, fresh) = verify(&after.json, &n, &after.server_spki_sha256);
    assert_eq!(
        after.json["log_generation"].as_u64().unwrap(),
        generation + 1
    );
    assert!(matches!(fresh[0].content, EventContent::DaemonStarted(_)));
    // What was live is measured again.
    let functions = |rs: &[Record]| {
        rs.iter()
            .filter(|r| matches!(r.content, EventContent::FunctionLoaded(_)))
            .count()
    };
    assert_eq!(functions(&fresh), functions(&records));
    daemon.stop().await;
}

#[tokio::test]
async fn a_reset_of_pcr_23_by_another_process_is_detected() {
    let tpm = TestTpm::start();
    let (daemon, op) = start(&tpm, |_| {}).await;
    tpm.tool_ok("tpm2_pcrreset", &["23"]);
    let r = op.get(&format!("/v1/attestation?nonce={}", nonce())).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PCR 23"),
        "{}",
        r.json
    );
    daemon.stop().await;
    // And a restart refuses: an all-zero PCR without a TPM startup.
    let err = TestDaemon::try_start(&tpm, &tpm.path("daemon"), |_| {})
        .await
        .err()
        .expect("must refuse");
    let text = err.to_string();
    assert!(
        text.contains("all-zero") && text.contains("PCR 23"),
        "{text}"
    );
}

#[tokio::test]
async fn a_changed_platform_pcr_starts_the_daemon_degraded() {
    let tpm = TestTpm::start();
    let (daemon, _op) = start(&tpm, |_| {}).await;
    daemon.stop().await;
    tpm.tool_ok(
        "tpm2_pcrextend",
        &[&format!(
            "9:sha256={}",
            hex::encode(arbiter_tests::sha256(&[b"another kernel"]))
        )],
    );
    // Fails closed without going dark (docs/protocol.md): it starts, unseals nothing and says why.
    let daemon = TestDaemon::try_start(&tpm, &tpm.path("daemon"), |_| {})
        .await
        .expect("a changed platform starts degraded");
    let reason = daemon
        .engine
        .sealing_unavailable()
        .expect("degraded")
        .to_owned();
    assert!(
        reason.contains("platform") && reason.contains("[0, 2, 4, 7, 9]"),
        "{reason}"
    );
    assert_eq!(daemon.engine.degraded(), vec![reason]);
    daemon.stop().await;
}
