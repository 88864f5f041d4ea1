//! Destruction certificates that commit to every input an instance ever accepted (docs/api.md:
//! a Merkle root over all rounds' inputs, each party given only its own leaves
//! with inclusion proofs), who sees which usage figures (docs/api.md, usage), manifests with
//! duplicate JSON keys refused at the API, and `arbiter identity new` writing its key
//! 0600 from the start — on a private swtpm with the real daemon over mutual TLS.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use arbiter_policy::Public;
use arbiter_policy::jws::{InputInclusion, Statement, VerifyInclusion, verify_statement};
use arbiter_tests::TestTpm;
use arbiter_tests::daemon::{Party, TestDaemon, two_party_manifest};
use base64::Engine as _;
use hyper::StatusCode;
use serde_json::{Value, json};

const SUM: &str = "fn compute(inputs) { inputs.a + inputs.b }";

struct World {
    _tpm: TestTpm,
    _daemon: TestDaemon,
    operator: Party,
    alice: Party,
    bob: Party,
    carol: Party,
    mallory: Party,
}

async fn world() -> World {
    let tpm = TestTpm::start();
    let state = tpm.path("daemon");
    let operator = arbiter_client::http::PartyIdentity::generate("operator").unwrap();
    let operator_id = operator.identity().unwrap();
    let daemon = TestDaemon::start(&tpm, &state, |c| {
        c.access.operators = vec![operator_id.clone()];
    })
    .await;
    World {
        operator: Party::with_identity("operator", operator, &daemon.url),
        alice: Party::new("alice", &daemon),
        bob: Party::new("bob", &daemon),
        carol: Party::new("carol", &daemon),
        mallory: Party::new("mallory", &daemon),
        _daemon: daemon,
        _tpm: tpm,
    }
}

async fn function(w: &World) -> String {
    let f = w
        .operator
        .post(
            "/v1/functions",
            json!({"name": "sum", "language": "rhai", "source": SUM}),
        )
        .await;
    assert_eq!(f.status, StatusCode::CREATED, "{}", f.json);
    f.json["sha256"].as_str().unwrap().to_owned()
}

async fn create(w: &World, manifest: Value) -> Value {
    let inst = w
        .operator
        .post("/v1/instances", json!({ "manifest": manifest }))
        .await;
    assert_eq!(inst.status, StatusCode::CREATED, "{}", inst.json);
    inst.json
}

fn path(inst: &Value, rest: &str) -> String {
    format!("/v1/instances/{}{rest}", inst["id"].as_str().unwrap())
}

/// Submits `value` to `slot` in `round`; returns the receipt's `ciphertext_sha256`.
async fn submit(p: &Party, inst: &Value, slot: &str, round: u64, value: Value) -> String {
    let r = p
        .put(
            &path(inst, &format!("/inputs/{slot}")),
            p.encrypt_input(inst, slot, round, &value),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["round"], round);
    r.json["ciphertext_sha256"].as_str().unwrap().to_owned()
}

fn text(r: &arbiter_client::http::Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

async fn statement_key(p: &Party) -> Public {
    let r = p.get("/v1/tpm").await;
    let der = base64::engine::general_purpose::STANDARD
        .decode(r.json["statement_key"]["tpm2b_public"].as_str().unwrap())
        .unwrap();
    Public::from_tpm2b(&der).unwrap()
}

/// A `provide_each_time` instance over two rounds, with a resubmission and a withdrawal:
/// the certificate counts every input ever accepted, each party gets exactly its own
/// leaves (never the other's) and they verify under the signed root.
#[tokio::test]
async fn the_certificate_covers_every_input_of_every_round() {
    let w = world().await;
    let f = function(&w).await;
    let mut manifest = two_party_manifest(&f, &w.alice, &w.bob);
    manifest["slots"]["a"]["provide"] = json!("provide_each_time");
    manifest["slots"]["b"]["provide"] = json!("provide_each_time");
    manifest["rounds"] = json!(2);
    manifest["window"] = json!({"resubmission": "last"});
    let inst = create(&w, manifest).await;

    // Round 1: Alice changes her mind (a resubmission), withdraws, and submits again.
    let mut alice_cts = vec![submit(&w.alice, &inst, "a", 1, json!(1)).await];
    alice_cts.push(submit(&w.alice, &inst, "a", 1, json!(2)).await);
    let r = w.alice.delete(&path(&inst, "/inputs/a")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    alice_cts.push(submit(&w.alice, &inst, "a", 1, json!(3)).await);
    let mut bob_cts = vec![submit(&w.bob, &inst, "b", 1, json!(10)).await];
    let r = w.alice.get(&path(&inst, "/result?wait=30&round=1")).await;
    assert_eq!(r.json["output"], 13, "{}", r.json);
    // The round's inputs are deleted: the description shows empty slots.
    let d = w.alice.get(&path(&inst, "")).await;
    assert_eq!(d.json["round"], 2, "{}", d.json);
    assert!(
        d.json["slots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["filled"] == false),
        "{}",
        d.json
    );
    // Round 2.
    alice_cts.push(submit(&w.alice, &inst, "a", 2, json!(4)).await);
    bob_cts.push(submit(&w.bob, &inst, "b", 2, json!(20)).await);
    let r = w.bob.get(&path(&inst, "/result?wait=30&round=2")).await;
    assert_eq!(r.json["output"], 24, "{}", r.json);

    let destroyed = w.alice.post(&path(&inst, "/destroy"), json!({})).await;
    assert_eq!(destroyed.status, StatusCode::OK, "{}", destroyed.json);
    let key = statement_key(&w.alice).await;
    let jws = destroyed.json["jws"].as_str().unwrap();
    let Statement::Destruction(cert) = verify_statement(jws, &key).unwrap() else {
        panic!("not a destruction certificate")
    };
    // 4 of Alice's (one superseded, one withdrawn), 2 of Bob's, all deleted by now.
    assert_eq!(cert.inputs_count, 6);
    assert_eq!(destroyed.json["payload"]["inputs_count"], 6);
    assert!(destroyed.json["payload"].get("inputs").is_none());

    let own = |r: &arbiter_client::http::Response| -> Vec<InputInclusion> {
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["jws"], jws);
        serde_json::from_value(r.json["inputs"].clone()).unwrap()
    };
    // Alice's answer (the destroy call's, and the certificate endpoint's, alike).
    let alice_leaves = own(&destroyed);
    assert_eq!(
        alice_leaves,
        own(&w.alice.get(&path(&inst, "/destruction-certificate")).await)
    );
    let bob_leaves = own(&w.bob.get(&path(&inst, "/destruction-certificate")).await);
    for (leaves, party, cts, rounds) in [
        (&alice_leaves, &w.alice, &alice_cts, [1, 1, 1, 2].as_slice()),
        (&bob_leaves, &w.bob, &bob_cts, [1, 2].as_slice()),
    ] {
        // Exactly this party's inputs, in acceptance order, each included under the root.
        let got: Vec<&str> = leaves
            .iter()
            .map(|l| l.leaf.ciphertext_sha256.as_str())
            .collect();
        assert_eq!(got, cts.iter().map(String::as_str).collect::<Vec<_>>());
        for (leaf, round) in leaves.iter().zip(rounds) {
            assert_eq!(leaf.leaf.submitter, party.id);
            assert_eq!(leaf.leaf.round, *round);
            leaf.verify(&cert).unwrap();
        }
    }
    // The leaf indices interleave as the inputs were accepted.
    let indices: Vec<u64> = alice_leaves.iter().map(|l| l.leaf_index).collect();
    assert_eq!(indices, [0, 1, 2, 4]);
    let indices: Vec<u64> = bob_leaves.iter().map(|l| l.leaf_index).collect();
    assert_eq!(indices, [3, 5]);
    // Bob's answer says nothing of Alice's inputs (her changed vote included).
    let text = w
        .bob
        .get(&path(&inst, "/destruction-certificate"))
        .await
        .json
        .to_string();
    for ct in &alice_cts {
        assert!(!text.contains(ct.as_str()), "Alice's input leaked to Bob");
    }
    // A leaf proven with another party's proof fails.
    let mut forged = bob_leaves[0].clone();
    forged.leaf = alice_leaves[0].leaf.clone();
    assert!(forged.verify(&cert).is_err());
    // An operator reads the certificate, with no leaves of its own; outsiders are refused.
    let op = w
        .operator
        .get(&path(&inst, "/destruction-certificate"))
        .await;
    assert!(own(&op).is_empty());
    let r = w
        .mallory
        .get(&path(&inst, "/destruction-certificate"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// Usage: parties and operators only; per-party figures and totals for operators only;
/// evaluation figures for result readers and operators only.
#[tokio::test]
async fn usage_figures_go_only_to_those_allowed_to_see_them() {
    let w = world().await;
    let f = function(&w).await;
    let mut manifest = two_party_manifest(&f, &w.alice, &w.bob);
    // Alice reads the result, Bob only the status, Carol is a party with no reader role.
    manifest["parties"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "carol", "identity": w.carol.id}));
    manifest["readers"] = json!({ (w.alice.id.clone()): "result", (w.bob.id.clone()): "status" });
    let inst = create(&w, manifest).await;
    submit(&w.alice, &inst, "a", 1, json!(1)).await;
    submit(&w.bob, &inst, "b", 1, json!(2)).await;
    let r = w.alice.get(&path(&inst, "/result?wait=30")).await;
    assert_eq!(r.json["output"], 3, "{}", r.json);

    let usage_path = path(&inst, "/usage");
    let usage = async |p: &Party| p.get(&usage_path).await;
    // Operators: everything.
    let op = usage(&w.operator).await;
    assert_eq!(op.status, StatusCode::OK, "{}", op.json);
    assert_eq!(op.json["totals"]["inputs_submitted"], 2, "{}", op.json);
    assert_eq!(op.json["per_identity"][&w.alice.id]["inputs_submitted"], 1);
    assert_eq!(op.json["per_identity"][&w.bob.id]["inputs_submitted"], 1);
    assert_eq!(op.json["evaluations"], 1);
    assert_eq!(op.json["evaluation"]["output_bytes"], 1, "{}", op.json);
    assert!(op.json["evaluation"]["operations"].as_u64().unwrap() > 0);
    assert!(op.json["evaluation"]["wall_time_ms"].is_u64());

    let evaluation_figures = ["output_bytes", "operations", "wall_time_ms"];
    let alice_bytes = op.json["per_identity"][&w.alice.id]["input_bytes"].clone();
    let bob_bytes = op.json["per_identity"][&w.bob.id]["input_bytes"].clone();
    // The result reader: its own figures and the evaluation's; nobody else's, no totals.
    let a = usage(&w.alice).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["own"]["inputs_submitted"], 1, "{}", a.json);
    assert_eq!(a.json["own"]["input_bytes"], alice_bytes);
    assert_eq!(a.json["evaluations"], 1);
    assert_eq!(a.json["evaluation"], op.json["evaluation"]);
    for hidden in ["totals", "per_identity"] {
        assert!(a.json.get(hidden).is_none(), "{hidden}: {}", a.json);
    }
    assert!(!text(&a).contains(&w.bob.id), "{}", a.json);
    // The status-only reader: its own figures and that an evaluation happened, nothing
    // derived from it (for a yes/no function the output's size is the answer).
    let b = usage(&w.bob).await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.json);
    assert_eq!(b.json["own"]["inputs_submitted"], 1, "{}", b.json);
    assert_eq!(b.json["own"]["input_bytes"], bob_bytes);
    assert_eq!(b.json["evaluations"], 1);
    for hidden in ["totals", "per_identity", "evaluation"] {
        assert!(b.json.get(hidden).is_none(), "{hidden}: {}", b.json);
    }
    for figure in evaluation_figures {
        assert!(!text(&b).contains(figure), "{figure}: {}", b.json);
    }
    assert!(!text(&b).contains(&w.alice.id), "{}", b.json);
    // A party with no reader role and no inputs: no figures of anyone's.
    let c = usage(&w.carol).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.json);
    assert_eq!(c.json["own"], json!({}), "{}", c.json);
    for hidden in ["totals", "per_identity", "evaluation"] {
        assert!(c.json.get(hidden).is_none(), "{hidden}: {}", c.json);
    }
    // Not a party: refused, as for the description.
    for outsider in [&w.mallory] {
        assert_eq!(usage(outsider).await.status, StatusCode::FORBIDDEN);
        assert_eq!(
            outsider.get(&path(&inst, "")).await.status,
            StatusCode::FORBIDDEN
        );
    }
}

/// A manifest with a duplicate key is refused at `POST /v1/instances`, naming the key, as
/// the policy crate's manifest parser refuses it; nothing is created.
#[tokio::test]
async fn manifests_with_duplicate_keys_are_refused() {
    let w = world().await;
    let f = function(&w).await;
    let manifest = two_party_manifest(&f, &w.alice, &w.bob);
    let text = json!({ "manifest": manifest }).to_string();
    // The same key twice, with values a first-wins and a last-wins parser read differently.
    let duplicated = text.replacen(
        "\"manifest\":{",
        "\"manifest\":{\"rounds\":2,\"rounds\":1,",
        1,
    );
    assert_ne!(duplicated, text);
    let r = w
        .operator
        .conn
        .request(
            hyper::Method::POST,
            "/v1/instances",
            Some(duplicated.into_bytes()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(r.json["error"]["code"], "malformed_json", "{}", r.json);
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("duplicate key \"rounds\""), "{message}");
    // Also deeper in the manifest.
    let nested = text.replacen(
        "\"provide\":\"provide_once\"",
        "\"provide\":\"provide_once\",\"provide\":\"provide_each_time\"",
        1,
    );
    assert_ne!(nested, text);
    let r = w
        .operator
        .conn
        .request(
            hyper::Method::POST,
            "/v1/instances",
            Some(nested.into_bytes()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate key \"provide\""),
        "{}",
        r.json
    );
    // The same text without the duplicate is accepted.
    let r = w
        .operator
        .conn
        .request(
            hyper::Method::POST,
            "/v1/instances",
            Some(text.into_bytes()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let counts = w.operator.get("/metrics").await;
    let metrics = String::from_utf8_lossy(&counts.body).into_owned();
    assert!(
        metrics
            .lines()
            .any(|l| l == "arbiter_instances{state=\"open\"} 1"),
        "exactly one instance was created:\n{metrics}"
    );
}

/// `arbiter identity new` creates `key.pem` with mode 0600 itself, whatever the umask, and
/// never writes the key through another file (before, the key went into a temporary
/// `key.tmp` created with the umask's mode, readable by all under umask 000, and was
/// chmodded only after the rename; the final mode alone cannot show that window, the
/// planted link does); it refuses to replace an existing key.
#[test]
fn identity_new_creates_the_key_0600_from_the_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("identity");
    std::fs::create_dir(&out).unwrap();
    // A planted link where a temporary file of the key would be created: the key must
    // not be written through it (nor through any file created with the umask's mode).
    let stolen = dir.path().join("stolen");
    std::os::unix::fs::symlink(&stolen, out.join("key.tmp")).unwrap();
    let run = || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 000 && exec \"$0\" identity new --name party --out \"$1\"")
            .arg(arbiter_tests::cli::arbiter_path())
            .arg(&out)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let key = out.join("key.pem");
    let meta = std::fs::symlink_metadata(&key).unwrap();
    assert!(meta.file_type().is_file(), "key.pem is not a plain file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(
        !stolen.exists(),
        "the key was written through a file created with the umask's mode"
    );
    let pem = std::fs::read(&key).unwrap();
    assert!(String::from_utf8_lossy(&pem).contains("PRIVATE KEY"));
    // The certificate is not secret: the umask applies to it.
    let cert = std::fs::metadata(out.join("cert.pem")).unwrap();
    assert_eq!(cert.permissions().mode() & 0o777, 0o666);
    // A second run refuses and leaves the key alone.
    let second = run();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("refusing to overwrite"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(std::fs::read(&key).unwrap(), pem);
}

/// Runs a blocking closure (a CLI child process) off the runtime's worker.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// The CLI checks every receipt it saved — across rounds, a resubmission included —
/// against the certificate's signed inputs root, and names a receipt that is not covered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_checks_each_receipt_against_the_signed_root() {
    use arbiter_tests::cli::CliParty;
    let tpm = TestTpm::start();
    let dir = tpm.path("parties");
    let op_dir = dir.clone();
    let operator =
        blocking(move || CliParty::new(&op_dir, "operator", "https://placeholder:1")).await;
    let operator_id = operator.id.clone();
    let daemon = TestDaemon::start(&tpm, &tpm.path("daemon"), |c| {
        c.access.operators = vec![operator_id];
    })
    .await;
    let url = daemon.url.clone();
    std::fs::write(
        operator.state.join("config.toml"),
        format!("server = \"{url}\"\ncert = \"identity/cert.pem\"\nkey = \"identity/key.pem\"\n"),
    )
    .unwrap();
    let cas = [
        tpm.state.ca_root_pem.display().to_string(),
        tpm.state.ca_issuer_pem.display().to_string(),
    ];
    let source = tpm.path("sum.rhai");
    std::fs::write(&source, SUM).unwrap();
    let f = hex::encode(arbiter_tests::sha256(&[SUM.as_bytes()]));
    blocking(move || {
        let alice = CliParty::new(&dir, "alice", &url);
        let bob = CliParty::new(&dir, "bob", &url);
        operator.ok(&["function", "register", source.to_str().unwrap()]);
        let zero = "0".repeat(64);
        for p in [&alice, &bob] {
            let mut args = vec!["enroll", "--ek-ca"];
            args.extend(cas.iter().map(String::as_str));
            p.ok(&args);
            std::fs::write(
                p.state.join("appraisal.toml"),
                format!(
                    "platform_pcrs = [0, 2, 4, 7, 9]\nfunctions = [\"{f}\"]\n# swtpm has no firmware: every platform PCR is zero, so nothing pins the boot.\nallow_unpinned_platform = true\n[pcrs]\n0 = \"{zero}\"\n7 = \"{zero}\"\n"
                ),
            )
            .unwrap();
            let cfg = p.state.join("config.toml");
            let text = std::fs::read_to_string(&cfg).unwrap() + "policy = \"appraisal.toml\"\n";
            std::fs::write(cfg, text).unwrap();
        }
        let manifest = json!({
            "function": { "sha256": f },
            "parties": [ { "name": "alice", "identity": alice.id }, { "name": "bob", "identity": bob.id } ],
            "slots": {
                "a": { "providers": [alice.id], "provide": "provide_each_time" },
                "b": { "providers": [bob.id], "provide": "provide_each_time" }
            },
            "trigger": { "kind": "all" },
            "window": { "resubmission": "last" },
            "rounds": 2,
            "readers": { (alice.id.clone()): "result", (bob.id.clone()): "result" },
            "destruction": { "policy": "on_request", "destroyers": [alice.id] }
        });
        let mpath = alice.state.join("manifest.json");
        std::fs::write(&mpath, manifest.to_string()).unwrap();
        let inst = operator
            .ok(&["instance", "create", mpath.to_str().unwrap(), "--quiet"])
            .trim()
            .to_owned();
        let submit = |p: &CliParty, slot: &str, value: &str| {
            p.ok(&["submit", "--instance", &inst, "--slot", slot, "--value", value, "--expect-function", &f]);
        };
        // Round 1, with a resubmission by Alice; round 2.
        submit(&alice, "a", "1");
        submit(&alice, "a", "2");
        submit(&bob, "b", "10");
        let out = alice.ok(&["result", &inst, "--wait", "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["statement"]["output"], 12, "{v}");
        submit(&alice, "a", "3");
        submit(&bob, "b", "20");
        let evaluated = (0..100).any(|_| {
            let shown: Value =
                serde_json::from_str(&bob.ok(&["instance", "show", &inst])).unwrap();
            if shown["state"] == "evaluated" {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            false
        });
        assert!(evaluated, "round 2 was not evaluated");

        // Every input of both rounds is under the root; each party checks all its receipts.
        let out = alice.ok(&["destroy", &inst]);
        assert!(out.contains("inputs destroyed: 5 (3 of ours checked by receipt)"), "{out}");
        assert!(out.contains("every receipt of ours is included"), "{out}");
        let out = bob.ok(&["verify-destruction", &inst]);
        assert!(out.contains("inputs destroyed: 5 (2 of ours checked by receipt)"), "{out}");

        // A receipt the certificate does not cover is reported and fails the check.
        let missing = "ee".repeat(32);
        arbiter_client::trust::TrustStore::new(&bob.state)
            .add_receipt(
                &url,
                &inst,
                arbiter_client::trust::Receipt {
                    slot: "b".into(),
                    round: 2,
                    ciphertext_sha256: missing.clone(),
                    submitter: bob.id.clone(),
                    accepted_at: "2026-12-01T00:00:00Z".into(),
                },
            )
            .unwrap();
        let out = bob.fails(&["verify-destruction", &inst]);
        assert!(
            out.contains("1 of our 3 input(s) are not covered") && out.contains(&missing),
            "{out}"
        );
    })
    .await;
    daemon.stop().await;
}
