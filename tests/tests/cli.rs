//! The parties' CLI (`arbiter`) end to end against a real daemon on a private swtpm:
//! the whole flow (identities, enrolment with credential activation, attestation under an
//! appraisal policy, encrypted submissions, the signed result, destruction and its
//! certificate, checked again from the saved log after a TPM startup; an offline bundle and
//! its tampered copies); refusals with the right reason (an EK certificate from another CA,
//! an unpinned AK, a pinned TLS key that is not the daemon's, a submission expecting
//! another function, and tampered evidence: a forged quote, a wrong nonce, a swapped TLS
//! key, a log with an extra function, an unexpected function, a statement key whose policy
//! is not the appraised state, a firmware log that does not replay to the platform PCRs);
//! no trust without reference values (all-zero pins refused, the explicit opt-out and its
//! warning); policy capture (twice → the same file; with a real machine's firmware log
//! replayed into the TPM: the boot chain pinned and trusted), explain and compare with
//! matching and mismatching reference values; an input sealed by an independent HPKE
//! implementation (Python's pyhpke); `--help` on every command.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use arbiter_client::verify::{Answer, appraise_answers, fresh_nonce};
use arbiter_policy::appraisal::{AppraisalPolicy, Check};
use arbiter_tests::TestTpm;
use arbiter_tests::cli::{CliParty, arbiter_path};
use arbiter_tests::daemon::{Party, TestDaemon, two_party_manifest, two_party_manifest_of};
use base64::Engine as _;
use hyper::StatusCode;
use serde_json::{Value, json};

const CONCAT: &str = "fn compute(inputs) { sha256(inputs.a + inputs.b) }\n";
const SPEC_OUTPUT: &str = "579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63";
const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Runs a blocking closure (a CLI child process) off the runtime's worker.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

struct Setup {
    tpm: TestTpm,
    daemon: TestDaemon,
    operator: CliParty,
}

async fn setup() -> Setup {
    let tpm = TestTpm::start();
    let dir = tpm.path("parties");
    // The operator's identity is made by the CLI before the daemon starts: its id goes in
    // the daemon's config.
    let op_dir = dir.clone();
    let operator =
        blocking(move || CliParty::new(&op_dir, "operator", "https://placeholder:1")).await;
    let operator_id = operator.id.clone();
    let daemon = TestDaemon::start(&tpm, &tpm.path("daemon"), |c| {
        c.access.operators = vec![operator_id];
    })
    .await;
    std::fs::write(
        operator.state.join("config.toml"),
        format!(
            "server = \"{}\"\ncert = \"identity/cert.pem\"\nkey = \"identity/key.pem\"\n",
            daemon.url
        ),
    )
    .unwrap();
    Setup {
        tpm,
        daemon,
        operator,
    }
}

fn cas_of(tpm: &TestTpm) -> Vec<String> {
    vec![
        tpm.state.ca_root_pem.display().to_string(),
        tpm.state.ca_issuer_pem.display().to_string(),
    ]
}

/// The party's policy for a daemon on swtpm: all-zero platform PCRs (no firmware), so it
/// opts out of reference values explicitly (`allow_unpinned_platform`).
fn write_policy(party: &CliParty, function_sha: &str, extra: &str) {
    write_policy_text(
        party,
        &format!(
            "# swtpm has no firmware: every platform PCR is zero, so nothing pins the boot.\nallow_unpinned_platform = true\n{extra}"
        ),
        function_sha,
    );
}

/// Writes the party's policy with `extra` keys and names it in its config.
fn write_policy_text(party: &CliParty, extra: &str, function_sha: &str) {
    std::fs::write(
        party.state.join("appraisal.toml"),
        format!(
            "platform_pcrs = [0, 2, 4, 7, 9]\nfunctions = [\"{function_sha}\"]\n{extra}\n[pcrs]\n0 = \"{ZERO}\"\n7 = \"{ZERO}\"\n"
        ),
    )
    .unwrap();
    let cfg = party.state.join("config.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    if !text.contains("policy") {
        text.push_str("policy = \"appraisal.toml\"\n");
        std::fs::write(cfg, text).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_through_the_cli() {
    let s = setup().await;
    let dir = s.tpm.path("parties");
    let url = s.daemon.url.clone();
    let cas = cas_of(&s.tpm);
    let source = s.tpm.path("concat.rhai");
    std::fs::write(&source, CONCAT).unwrap();
    let function_sha = hex::encode(arbiter_tests::sha256(&[CONCAT.as_bytes()]));
    let operator = s.operator;
    let f = function_sha.clone();
    let (operator, alice, bob, instance) = blocking(move || {
        let alice = CliParty::new(&dir, "alice", &url);
        let bob = CliParty::new(&dir, "bob", &url);
        let out = operator.ok(&["function", "register", source.to_str().unwrap()]);
        assert!(out.contains(&f), "{out}");
        let fid = out.split_whitespace().nth(2).unwrap().to_owned();
        let shown = alice.ok(&["function", "show", &fid]);
        assert!(
            shown.contains("matches") && shown.contains("sha256(inputs.a + inputs.b)"),
            "{shown}"
        );

        // Before enrolment nothing is trusted: the AK is not pinned.
        write_policy(&alice, &f, "");
        let refused = alice.fails(&["attest"]);
        assert!(
            refused.contains("ak_pin") && refused.contains("enrol"),
            "{refused}"
        );

        for p in [&alice, &bob] {
            let mut args = vec!["enroll", "--ek-ca"];
            args.extend(cas.iter().map(String::as_str));
            let out = p.ok(&args);
            assert!(
                out.contains("EK rsa2048: certificate chain")
                    && out.contains("credential activated"),
                "{out}"
            );
            assert!(
                out.contains("EK ecc_nist_p384: certificate chain") && !out.contains("refused"),
                "both EKs (RSA-2048 L-1, ECC P-384 H-3) activate a credential: {out}"
            );
            assert!(out.contains("pinned"), "{out}");
            write_policy(p, &f, "");
        }
        // Without the opt-out, all-zero PCR pins are no reference values: refused, with
        // the reason; the flag trusts it, saying so out loud.
        write_policy_text(&alice, "", &f);
        let refused = alice.fails(&["attest"]);
        assert!(
            refused.contains("reference_values: the policy pins no reference value")
                && refused.contains("allow all zeros"),
            "{refused}"
        );
        let out = alice.ok(&["attest", "--allow-unpinned-platform"]);
        assert!(
            out.starts_with("TRUSTED") && out.contains("WARNING: trusted WITHOUT reference values"),
            "{out}"
        );
        write_policy(&alice, &f, "");
        // A pinned TLS key that is not the daemon's: the handshake is refused.
        let wrong = "ab".repeat(32);
        let refused = alice.fails(&["--pin-tls-spki", &wrong, "attest"]);
        assert!(refused.contains("is not the pinned key"), "{refused}");
        let verdict: Value = serde_json::from_str(&alice.ok(&["attest", "--json"])).unwrap();
        assert_eq!(verdict["trusted"], true, "{verdict}");
        assert_eq!(verdict["appraised"]["unpinned_platform"], true, "{verdict}");
        assert!(
            verdict["warnings"][0]
                .as_str()
                .unwrap()
                .starts_with("WARNING"),
            "{verdict}"
        );
        assert_eq!(verdict["fresh"], true);
        assert!(
            verdict["appraised"]["functions"]
                .as_array()
                .unwrap()
                .contains(&json!(f))
        );

        let manifest = two_party_manifest_of(&f, ("alice", &alice.id), ("bob", &bob.id));
        let mpath = alice.state.join("manifest.json");
        std::fs::write(&mpath, manifest.to_string()).unwrap();
        let instance = operator
            .ok(&["instance", "create", mpath.to_str().unwrap(), "--quiet"])
            .trim()
            .to_owned();
        assert_eq!(instance.len(), 32, "{instance}");
        let shown: Value = serde_json::from_str(&bob.ok(&["instance", "show", &instance])).unwrap();
        assert_eq!(shown["state"], "open");
        let out = bob.ok(&["attest", "--instance", &instance]);
        assert!(
            out.starts_with("TRUSTED") && out.contains(&format!("instance runs:  {f}")),
            "{out}"
        );

        // A submission expecting another function is refused before anything is sent.
        let refused = bob.fails(&[
            "submit",
            "--instance",
            &instance,
            "--slot",
            "b",
            "--value",
            "\"x\"",
            "--expect-function",
            ZERO,
        ]);
        assert!(
            refused.contains("not the expected") && refused.contains("nothing was sent"),
            "{refused}"
        );
        // Bob may not fill Alice's slot.
        let refused = bob.fails(&[
            "submit",
            "--instance",
            &instance,
            "--slot",
            "a",
            "--value",
            "\"x\"",
            "--expect-function",
            &f,
        ]);
        assert!(refused.contains("does not let"), "{refused}");

        let out = alice.ok(&[
            "submit",
            "--instance",
            &instance,
            "--slot",
            "a",
            "--value",
            "\"Now is the time\"",
            "--expect-function",
            &f,
        ]);
        assert!(out.contains("recomputed: matches"), "{out}");
        let input = bob.state.join("b.json");
        std::fs::write(&input, "\"for all good men\"").unwrap();
        bob.ok(&[
            "submit",
            "--instance",
            &instance,
            "--slot",
            "b",
            "--file",
            input.to_str().unwrap(),
            "--expect-function",
            &f,
        ]);
        (operator, alice, bob, instance)
    })
    .await;

    let result = {
        let (alice, instance) = (alice, instance.clone());
        let (alice, out) = blocking(move || {
            let out = alice.ok(&["result", &instance, "--wait", "--json"]);
            (alice, out)
        })
        .await;
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["verified"], true);
        assert_eq!(v["statement"]["output"], SPEC_OUTPUT, "{v}");
        assert_eq!(v["statement"]["function_sha256"], function_sha);
        assert_eq!(v["statement"]["inputs"].as_array().unwrap().len(), 2);
        alice
    };
    let alice = result;
    let inst = instance.clone();
    let cas2 = cas_of(&s.tpm);
    let bob = blocking(move || {
        let out = bob.ok(&["result", &inst]);
        assert!(
            out.contains(SPEC_OUTPUT) && out.contains("1 of ours checked"),
            "{out}"
        );
        // Only the manifest's destroyers destroy.
        let refused = bob.fails(&["destroy", &inst]);
        assert!(refused.contains("forbidden"), "{refused}");
        let out = alice.ok(&["destroy", &inst]);
        assert!(
            out.contains("destroyed at") && out.contains("fresh attested log"),
            "{out}"
        );
        let out = bob.ok(&["verify-destruction", &inst]);
        assert!(
            out.contains("inputs destroyed: 2 (1 of ours checked by receipt)"),
            "{out}"
        );
        // The operator reads the certificate too (after enrolling), with no receipts of its
        // own to find.
        let mut args = vec!["enroll", "--ek-ca"];
        args.extend(cas2.iter().map(String::as_str));
        operator.ok(&args);
        // It has no policy file: it opts out of reference values on the command line
        // (swtpm has no firmware), and the warning says so.
        let refused = operator.fails(&["verify-destruction", &inst]);
        assert!(refused.contains("reference_values"), "{refused}");
        let run = operator.run(&["--allow-unpinned-platform", "verify-destruction", &inst]);
        let out = String::from_utf8_lossy(&run.stdout);
        let warning = String::from_utf8_lossy(&run.stderr);
        assert!(
            run.status.success() && out.contains("0 of ours"),
            "{out}{warning}"
        );
        assert!(
            warning.contains("WARNING: trusted WITHOUT reference values"),
            "{warning}"
        );

        // An offline bundle: verified with no daemon needed; tampering is refused.
        let file = bob.state.join("bundle.json");
        let out = bob.ok(&["bundle", &inst, "--out", file.to_str().unwrap()]);
        assert!(
            out.contains("result: yes, certificate of destruction: yes"),
            "{out}"
        );
        let mut args = vec!["verify-bundle", file.to_str().unwrap(), "--ek-ca"];
        args.extend(cas2.iter().map(String::as_str));
        let out = bob.ok(&args);
        assert!(
            out.contains("VERIFIED as of TPM clock") && out.contains(SPEC_OUTPUT),
            "{out}"
        );
        let bundle: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let tampered = bob.state.join("tampered.json");
        let mut t = bundle.clone();
        t["function"]["source"] = json!("fn compute(inputs) { inputs }");
        std::fs::write(&tampered, t.to_string()).unwrap();
        let out = bob.fails(&["verify-bundle", tampered.to_str().unwrap()]);
        assert!(out.contains("function source"), "{out}");
        let mut t = bundle.clone();
        let jws = t["result"].as_str().unwrap().to_owned();
        let (head, sig) = jws.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        t["result"] = json!(format!("{head}.{flipped}{}", &sig[1..]));
        std::fs::write(&tampered, t.to_string()).unwrap();
        let out = bob.fails(&["verify-bundle", tampered.to_str().unwrap()]);
        assert!(out.contains("the result's signature"), "{out}");
        let mut t = bundle;
        t["evidence"]["quote"]["pcrs"]["sha256"]["9"] = json!("11".repeat(32));
        std::fs::write(&tampered, t.to_string()).unwrap();
        let out = bob.fails(&["verify-bundle", tampered.to_str().unwrap()]);
        assert!(
            out.contains("NOT trusted") && out.contains("quote"),
            "{out}"
        );
        bob
    })
    .await;

    // After a TPM startup the daemon begins a new log generation: the certificate's
    // instance_destroyed record is checked in the attested log saved with it.
    let mut tpm = s.tpm;
    tpm.swtpm.restart().unwrap();
    let out = blocking(move || {
        // The first attestation after the restart starts the new generation.
        bob.ok(&["attest"]);
        bob.ok(&["verify-destruction", &instance])
    })
    .await;
    assert!(out.contains("(saved attested log)"), "{out}");
    s.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_refuses_an_ek_certificate_from_another_ca() {
    let s = setup().await;
    let dir = s.tpm.path("parties");
    let url = s.daemon.url.clone();
    // Another CA, with the same name as the swtpm's root, so only the signature tells.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "swtpm-localca");
    let key = rcgen::KeyPair::generate().unwrap();
    let other = params.self_signed(&key).unwrap();
    let other_pem = s.tpm.path("other-ca.pem");
    std::fs::write(&other_pem, other.pem()).unwrap();
    let root = s.tpm.state.ca_root_pem.display().to_string();
    blocking(move || {
        let alice = CliParty::new(&dir, "alice", &url);
        let out = alice.fails(&["enroll", "--ek-ca", other_pem.to_str().unwrap()]);
        assert!(out.contains("no EK passed"), "{out}");
        assert!(
            out.contains("does not verify with its issuer's key"),
            "{out}"
        );
        // Only the root, without the intermediate: no path.
        let out = alice.fails(&["enroll", "--ek-ca", &root]);
        assert!(out.contains("another CA"), "{out}");
        // Nothing was pinned.
        let out = alice.fails(&["attest"]);
        assert!(out.contains("ak_pin"), "{out}");
    })
    .await;
    s.daemon.stop().await;
}

/// The daemon's answers to `/v1/tpm` and to an attestation with our nonce.
async fn answers(p: &Party, nonce: &str) -> (Value, String, Value, String) {
    let tpm = p.get("/v1/tpm").await;
    assert_eq!(tpm.status, StatusCode::OK);
    let att = p.get(&format!("/v1/attestation?nonce={nonce}")).await;
    assert_eq!(att.status, StatusCode::OK, "{}", att.json);
    (
        tpm.json,
        tpm.server_spki_sha256,
        att.json,
        att.server_spki_sha256,
    )
}

fn policy_for(tpm: &Value, extra: &str) -> AppraisalPolicy {
    AppraisalPolicy::from_toml(&format!(
        "ak_name = \"{}\"\nplatform_pcrs = [0, 2, 4, 7, 9]\nallow_unpinned_platform = true\n{extra}",
        tpm["ak"]["name"].as_str().unwrap()
    ))
    .unwrap()
}

fn reasons(v: &arbiter_policy::appraisal::Verdict) -> String {
    v.reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn tampered_evidence_is_refused_with_the_right_reason() {
    let s = setup().await;
    let p = Party::with_identity(
        "verifier",
        arbiter_client::http::PartyIdentity::generate("verifier").unwrap(),
        &s.daemon.url,
    );
    let op = Party::with_identity("operator", s.operator.identity(), &s.daemon.url);
    let r = op
        .post(
            "/v1/functions",
            json!({"name": "f", "language": "rhai", "source": "fn compute(i) { 1 }"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let f = r.json["sha256"].as_str().unwrap().to_owned();
    let nonce = fresh_nonce();
    let (tpm, tpm_tls, att, att_tls) = answers(&p, &nonce).await;
    let policy = policy_for(&tpm, &format!("functions = [\"{f}\"]\n"));
    let appraise = |tpm: &Value, att: &Value, nonce: &str, tls: &str, policy: &AppraisalPolicy| {
        appraise_answers(
            &Answer {
                json: tpm,
                tls_spki_sha256: &tpm_tls,
            },
            &Answer {
                json: att,
                tls_spki_sha256: tls,
            },
            nonce,
            None,
            policy,
        )
        .unwrap()
        .0
    };
    let good = appraise(&tpm, &att, &nonce, &att_tls, &policy);
    assert!(good.trusted, "{}", reasons(&good));

    // A wrong nonce: the quote answers another request (or is replayed).
    let v = appraise(&tpm, &att, &fresh_nonce(), &att_tls, &policy);
    assert!(!v.trusted && v.failed(Check::Binding), "{}", reasons(&v));
    assert!(reasons(&v).contains("nonce"), "{}", reasons(&v));

    // A forged quote: one bit of the signature changed.
    let mut forged = att.clone();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut sig = b64
        .decode(att["quote"]["signature"].as_str().unwrap())
        .unwrap();
    let last = sig.len() - 1;
    sig[last] ^= 1;
    forged["quote"]["signature"] = json!(b64.encode(&sig));
    let v = appraise(&tpm, &forged, &nonce, &att_tls, &policy);
    assert!(!v.trusted && v.failed(Check::Quote), "{}", reasons(&v));

    // A swapped TLS key: the connection presented another key than the quote binds.
    let v = appraise(&tpm, &att, &nonce, &"ab".repeat(32), &policy);
    assert!(!v.trusted && v.failed(Check::Binding), "{}", reasons(&v));
    assert!(reasons(&v).contains("TLS key"), "{}", reasons(&v));

    // A log with an extra function: it no longer replays to the quoted PCR 23.
    let mut extra = att.clone();
    let log = extra["log"].as_array_mut().unwrap();
    let mut record = log.last().unwrap().clone();
    let fake = hex::encode(arbiter_tests::sha256(&[b"fn compute(i) { steal(i) }"]));
    record["recnum"] = json!(log.len());
    record["digests"] = json!([{"hashAlg": "sha256", "digest": fake}]);
    record["content"] = json!({"event": "function_loaded", "function_id": "0".repeat(32), "name": "extra", "sha256": fake});
    log.push(record);
    let v = appraise(&tpm, &extra, &nonce, &att_tls, &policy);
    assert!(!v.trusted && v.failed(Check::Log), "{}", reasons(&v));

    // An unexpected function measurement: the policy lists only another one.
    let strict = policy_for(
        &tpm,
        &format!("functions = [\"{ZERO}\"]\nonly_listed_functions = true\n"),
    );
    let v = appraise(&tpm, &att, &nonce, &att_tls, &strict);
    assert!(!v.trusted && v.failed(Check::Function), "{}", reasons(&v));
    assert!(reasons(&v).contains(&f), "{}", reasons(&v));

    // A statement key with another policy: the same AK (the same endorsement seed: a
    // copy of the same TPM) certified a statement key made on a platform whose PCR 9
    // differs; its PolicyPCR is not over the values appraised here.
    let other = TestTpm::start();
    other.tool_ok(
        "tpm2_pcrextend",
        &[&format!(
            "9:sha256={}",
            hex::encode(arbiter_tests::sha256(&[b"another kernel"]))
        )],
    );
    let other_daemon = TestDaemon::start(&other, &other.path("daemon"), |_| {}).await;
    let q = Party::new("verifier", &other_daemon);
    let other_tpm = q.get("/v1/tpm").await.json;
    other_daemon.stop().await;
    assert_eq!(other_tpm["ak"]["name"], tpm["ak"]["name"], "the same AK");
    assert_ne!(
        other_tpm["statement_key"]["name"],
        tpm["statement_key"]["name"]
    );
    let v = appraise(&other_tpm, &att, &nonce, &att_tls, &policy);
    assert!(
        !v.trusted && v.failed(Check::StatementKey),
        "{}",
        reasons(&v)
    );
    assert!(
        reasons(&v).to_lowercase().contains("policy"),
        "{}",
        reasons(&v)
    );
    assert!(
        !reasons(&v).contains("certification"),
        "the certification itself holds: {}",
        reasons(&v)
    );
    s.daemon.stop().await;
}

#[tokio::test]
async fn a_firmware_log_that_does_not_replay_to_the_platform_pcrs_is_refused() {
    // A real machine's firmware log served by a daemon on a software TPM whose platform
    // PCRs were never extended by that firmware.
    let tpm = TestTpm::start();
    let log = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../measured-boot/testdata/eventlogs/crypto_agile_eventlog.bin");
    let daemon = TestDaemon::start(&tpm, &tpm.path("daemon"), |c| {
        c.attestation.firmware_log = log;
    })
    .await;
    let p = Party::new("verifier", &daemon);
    let nonce = fresh_nonce();
    let (tpm_json, tpm_tls, att, att_tls) = answers(&p, &nonce).await;
    assert!(att["firmware_log"].is_string());
    // The policy has no firmware rules: the log is still replayed because it is there.
    let policy = policy_for(&tpm_json, "");
    let (v, _) = appraise_answers(
        &Answer {
            json: &tpm_json,
            tls_spki_sha256: &tpm_tls,
        },
        &Answer {
            json: &att,
            tls_spki_sha256: &att_tls,
        },
        &nonce,
        None,
        &policy,
    )
    .unwrap();
    assert!(
        !v.trusted && v.failed(Check::FirmwareLog),
        "{}",
        reasons(&v)
    );
    assert!(
        reasons(&v).contains("replaying the firmware log"),
        "{}",
        reasons(&v)
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_policy_is_stable_explained_and_compared_with_reference_values() {
    // A platform with something measured: "a kernel" extended into PCR 9 before the
    // daemon starts (and seals to it), as a boot loader would.
    let tpm = TestTpm::start();
    let kernel = arbiter_tests::sha256(&[b"a kernel"]);
    tpm.tool_ok(
        "tpm2_pcrextend",
        &[&format!("9:sha256={}", hex::encode(kernel))],
    );
    // The reference value computed independently: PCR 9 = SHA-256(0^32 || digest).
    let pcr9 = hex::encode(arbiter_tests::sha256(&[&[0u8; 32], &kernel]));
    let daemon = TestDaemon::start(&tpm, &tpm.path("daemon"), |_| {}).await;
    let dir = tpm.path("parties");
    let url = daemon.url.clone();
    let cas = cas_of(&tpm);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../measured-boot/testdata/eventlogs/crypto_agile_eventlog.bin");
    blocking(move || {
        let alice = CliParty::new(&dir, "alice", &url);
        let mut args = vec!["enroll", "--ek-ca"];
        args.extend(cas.iter().map(String::as_str));
        alice.ok(&args);
        let first = alice.state.join("captured.toml");
        let second = alice.state.join("again.toml");
        let out = alice.ok(&["policy", "capture", "--out", first.to_str().unwrap()]);
        assert!(out.contains("REVIEW IT") && out.contains("1 pinned to a non-zero value"), "{out}");
        assert!(out.contains("no firmware log served"), "{out}");
        alice.ok(&["policy", "capture", "--out", second.to_str().unwrap()]);
        let text = std::fs::read_to_string(&first).unwrap();
        assert_eq!(text, std::fs::read_to_string(&second).unwrap(), "the same state, the same file");
        assert!(text.contains("platform_pcrs = [0, 2, 4, 7, 9]"), "{text}");
        assert!(text.contains(&format!("9 = \"{pcr9}\"")), "{text}");
        assert!(text.contains("executable_sha256 = [\""), "{text}");
        assert!(!text.contains("\n23 = "), "the application PCR is volatile: {text}");

        // The captured policy pins a real value: trusted with no opt-out and no warning.
        let out = alice.ok(&["attest", "--policy", first.to_str().unwrap()]);
        assert!(out.starts_with("TRUSTED") && !out.contains("WARNING"), "{out}");

        // Explained: without the firmware log a PCR value cannot be; with a log that is
        // not this boot's, its events are listed and the replay does not match.
        let out = alice.ok(&["policy", "explain", first.to_str().unwrap()]);
        assert!(out.contains("PCR 9 (files the boot loader read"), "{out}");
        assert_eq!(out.matches("cannot be explained without the firmware log").count(), 5, "{out}");
        assert!(out.contains("executable_sha256") && out.contains("reported by the daemon"), "{out}");
        let out = alice.ok(&["policy", "explain", first.to_str().unwrap(), "--log", fixture.to_str().unwrap()]);
        assert!(out.contains("EV_EFI_VARIABLE_DRIVER_CONFIG") && out.contains("NOT the pinned value"), "{out}");

        // Compared with reference values built from the image.
        let exe = text
            .lines()
            .find_map(|l| l.strip_prefix("executable_sha256 = [\""))
            .map(|l| l[..64].to_owned())
            .unwrap();
        let reference = alice.state.join("reference.toml");
        std::fs::write(
            &reference,
            format!("image = \"test image\"\nexecutable_sha256 = [\"{exe}\"]\n[pcrs]\n9 = \"{pcr9}\"\n"),
        )
        .unwrap();
        let out = alice.ok(&["policy", "compare", first.to_str().unwrap(), "--reference", reference.to_str().unwrap()]);
        assert!(out.contains("MATCH    pcrs.9") && out.contains("MATCH    executable_sha256"), "{out}");
        assert!(out.contains("every reference value matches (2)"), "{out}");
        let other = hex::encode(arbiter_tests::sha256(&[&[0u8; 32], &arbiter_tests::sha256(&[b"another kernel"])]));
        std::fs::write(
            &reference,
            format!("executable_sha256 = [\"{exe}\"]\nkernel_cmdline = \"ro quiet\"\n[pcrs]\n9 = \"{other}\"\n"),
        )
        .unwrap();
        let out = alice.fails(&["policy", "compare", first.to_str().unwrap(), "--reference", reference.to_str().unwrap()]);
        assert!(out.contains("MISMATCH pcrs.9") && out.contains(&other), "{out}");
        assert!(out.contains("MISMATCH kernel_cmdline") && out.contains("MATCH    executable_sha256"), "{out}");
        assert!(out.contains("2 of 3 reference value(s) do not match"), "{out}");
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_with_a_firmware_log_pins_the_boot_chain_and_explains_it() {
    // A real machine's boot (a GCE Shielded VM: shim, GRUB, Secure Boot off) replayed into
    // the software TPM's PCRs before the daemon starts, and its log served by the daemon.
    let log_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../measured-boot/testdata/eventlogs/coreos_36_shielded_vm_no_secure_boot_eventlog.bin",
    );
    let log =
        arbiter_measured_boot::firmware::EventLog::from_bytes(&std::fs::read(&log_path).unwrap())
            .unwrap();
    let tpm = TestTpm::start();
    for e in log.events.iter().filter(|e| e.is_extended() && e.pcr < 16) {
        let d = e.digest(arbiter_measured_boot::HashAlg::Sha256).unwrap();
        tpm.tool_ok(
            "tpm2_pcrextend",
            &[&format!("{}:sha256={}", e.pcr, hex::encode(d))],
        );
    }
    let served = log_path.clone();
    let daemon = TestDaemon::start(&tpm, &tpm.path("daemon"), |c| {
        c.attestation.firmware_log = served;
    })
    .await;
    let dir = tpm.path("parties");
    let url = daemon.url.clone();
    let cas = cas_of(&tpm);
    blocking(move || {
        let alice = CliParty::new(&dir, "alice", &url);
        let mut args = vec!["enroll", "--ek-ca"];
        args.extend(cas.iter().map(String::as_str));
        alice.ok(&args);
        let policy = alice.state.join("captured.toml");
        let saved = alice.state.join("fw.bin");
        let out = alice.ok(&[
            "policy",
            "capture",
            "--out",
            policy.to_str().unwrap(),
            "--log-out",
            saved.to_str().unwrap(),
        ]);
        assert!(
            out.contains("5 pinned to a non-zero value") && out.contains("firmware log saved"),
            "{out}"
        );
        assert_eq!(
            std::fs::read(&saved).unwrap(),
            std::fs::read(&log_path).unwrap()
        );
        let text = std::fs::read_to_string(&policy).unwrap();
        for expected in [
            "secure_boot = false",
            "Secure Boot is DISABLED",
            "shimx64.efi",
            "grubx64.efi",
            "#   dbx        sha256 ",
            "# kernel_cmdline = \"(hd0,gpt3)/ostree/",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
        // The captured policy is trusted as it is (the boot chain pinned, no warning).
        let out = alice.ok(&["attest", "--policy", policy.to_str().unwrap()]);
        assert!(
            out.starts_with("TRUSTED") && !out.contains("WARNING"),
            "{out}"
        );
        // Every pinned PCR is explained by the saved log's events, which replay to it.
        let out = alice.ok(&[
            "policy",
            "explain",
            policy.to_str().unwrap(),
            "--log",
            saved.to_str().unwrap(),
        ]);
        assert_eq!(out.matches(": matches the pin").count(), 5, "{out}");
        assert!(
            out.contains("EV_EFI_BOOT_SERVICES_APPLICATION") && out.contains("loaded (PCR 4)"),
            "{out}"
        );
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_sealed_by_pyhpke_is_accepted_and_evaluated() {
    let s = setup().await;
    let alice = Party::new("alice", &s.daemon);
    let bob = Party::new("bob", &s.daemon);
    let op = Party::with_identity("operator", s.operator.identity(), &s.daemon.url);
    let source = "fn compute(inputs) { inputs.a + inputs.b }";
    let f = op
        .post(
            "/v1/functions",
            json!({"name": "sum", "language": "rhai", "source": source}),
        )
        .await;
    assert_eq!(f.status, StatusCode::CREATED, "{}", f.json);
    let fsha = f.json["sha256"].as_str().unwrap();
    let inst = op
        .post(
            "/v1/instances",
            json!({"manifest": two_party_manifest(fsha, &alice, &bob)}),
        )
        .await;
    assert_eq!(inst.status, StatusCode::CREATED, "{}", inst.json);
    let inst = inst.json;
    let id = inst["id"].as_str().unwrap();
    // Alice seals with pyhpke, given only the public key and docs/protocol.md's info.
    let info = arbiter_policy::hpke::input_info(&arbiter_policy::hpke::InputContext {
        instance_id: id,
        slot: "a",
        round: 1,
        function_sha256: fsha,
        submitter: &alice.id,
    });
    let body = seal_with_pyhpke(
        inst["public_key"].as_str().unwrap(),
        &info,
        b"40",
        s.tpm.dir(),
    );
    let r = alice
        .put(&format!("/v1/instances/{id}/inputs/a"), body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = bob
        .put(
            &format!("/v1/instances/{id}/inputs/b"),
            bob.encrypt_input(&inst, "b", 1, &json!(2)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let res = alice
        .get(&format!("/v1/instances/{id}/result?wait=30"))
        .await;
    assert_eq!(res.json["output"], 42, "{}", res.json);
    s.daemon.stop().await;
}

/// Seals `plaintext` with Python's pyhpke (RFC 9180, P-256/HKDF-SHA256/AES-256-GCM) and
/// returns the input request body.
fn seal_with_pyhpke(public_key_hex: &str, info: &[u8], plaintext: &[u8], dir: &Path) -> Value {
    let script = r#"
import base64, json, sys
from pyhpke import AEADId, CipherSuite, KDFId, KEMId
suite = CipherSuite.new(KEMId.DHKEM_P256_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)
pk = suite.kem.deserialize_public_key(bytes.fromhex(sys.argv[1]))
enc, sender = suite.create_sender_context(pk, info=bytes.fromhex(sys.argv[2]))
ct = sender.seal(open(sys.argv[3], 'rb').read(), aad=b"")
print(json.dumps({"enc": base64.b64encode(enc).decode(), "ciphertext": base64.b64encode(ct).decode()}))
"#;
    let pt = dir.join("plaintext.json");
    std::fs::write(&pt, plaintext).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(public_key_hex)
        .arg(hex::encode(info))
        .arg(&pt)
        .output()
        .expect("python3 (make deps installs pyhpke)");
    assert!(
        out.status.success(),
        "pyhpke failed (make deps installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_command_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["identity"],
        &["identity", "new"],
        &["identity", "show"],
        &["health"],
        &["enroll"],
        &["attest"],
        &["function"],
        &["function", "register"],
        &["function", "show"],
        &["instance"],
        &["instance", "create"],
        &["instance", "show"],
        &["instance", "approve"],
        &["instance", "evaluate"],
        &["submit"],
        &["result"],
        &["destroy"],
        &["verify-destruction"],
        &["bundle"],
        &["verify-bundle"],
        &["eventlog"],
        &["eventlog", "replay"],
        &["eventlog", "show"],
        &["policy"],
        &["policy", "capture"],
        &["policy", "explain"],
        &["policy", "compare"],
    ];
    for c in commands {
        let out = std::process::Command::new(arbiter_path())
            .args(*c)
            .arg("--help")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Usage: arbiter"),
            "{c:?}: {text}"
        );
        if !c.is_empty() {
            assert!(
                text.contains("--server"),
                "{c:?} lacks the connection options: {text}"
            );
        }
    }
}
