//! Schemathesis (PyPI) against the OpenAPI document the daemon serves, once per role: a real
//! daemon on a private swtpm, with an operator, a creator, a party (provider, evaluator,
//! result reader and destroyer), a status reader and a stranger (a client certificate the
//! daemon knows nothing of), real functions and instances in every state worth probing
//! (open awaiting approval, evaluated, destroyed), and Schemathesis sending each role's
//! generated requests with that role's client certificate over mutual TLS. Checked on every
//! answer: no 5xx other than 503, every 503 with `Retry-After` (tests/api-fuzz/hooks.py),
//! status codes, content types, headers and bodies as the document says.
//!
//! Ignored by default: it needs Schemathesis, which `make api-fuzz` installs into a cached
//! venv (tests/api-fuzz/install-schemathesis.sh) and passes as `ARBITER_SCHEMATHESIS`.
//! `ARBITER_API_FUZZ_EXAMPLES` bounds the generated cases per operation and phase (default
//! 20); `ARBITER_API_FUZZ_SEED` replays a run. docs/reliability.md has what it found.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use arbiter_client::http::PartyIdentity;
use arbiter_tests::TestTpm;
use arbiter_tests::daemon::{Party, TestDaemon};
use hyper::StatusCode;
use serde_json::{Value, json};

/// The function the fixtures' instances run.
const SOURCE: &str = "fn compute(inputs) { inputs.a + inputs.b }";

/// One role: a name and the identity Schemathesis presents.
struct Role {
    name: &'static str,
    identity: PartyIdentity,
}

/// The fixtures Schemathesis acts on: the ids it should try as path parameters.
struct Fixtures {
    instances: Vec<String>,
    functions: Vec<String>,
    slots: Vec<&'static str>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn manifest(f: &str, alice: &Party, bob: &Party, trigger: &str) -> Value {
    let mut m = json!({
        "name": "fuzz fixture",
        "function": { "sha256": f },
        "parties": [
            { "name": "alice", "identity": alice.id },
            { "name": "bob", "identity": bob.id }
        ],
        "slots": {
            "a": { "providers": [alice.id], "provide": "provide_each_time" },
            "b": { "providers": [bob.id], "provide": "provide_each_time" }
        },
        "trigger": { "kind": trigger },
        "readers": { (alice.id.clone()): "result", (bob.id.clone()): "status" },
        "rounds": 3,
        "destruction": { "policy": "on_request", "destroyers": [alice.id] }
    });
    if trigger == "explicit" {
        m["evaluators"] = json!([alice.id]);
    }
    m
}

/// Registers the function and creates the instances Schemathesis acts on.
async fn fixtures(operator: &Party, creator: &Party, alice: &Party, bob: &Party) -> Fixtures {
    let f = operator
        .post(
            "/v1/functions",
            json!({"name": "sum", "language": "rhai", "source": SOURCE}),
        )
        .await;
    assert_eq!(f.status, StatusCode::CREATED, "{}", f.json);
    let sha = f.json["sha256"].as_str().unwrap();
    let create = |who: &'static str, m: Value| async move {
        let p = if who == "creator" { creator } else { operator };
        let r = p.post("/v1/instances", json!({ "manifest": m })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        r.json
    };
    // Open, explicit trigger, awaiting the parties' approval.
    let mut awaiting = manifest(sha, alice, bob, "explicit");
    awaiting["approval"] = json!("explicit");
    let awaiting = create("creator", awaiting).await;
    // Evaluated once (a signed result), open for the next round.
    let evaluated = create("creator", manifest(sha, alice, bob, "all")).await;
    for (p, slot, v) in [(alice, "a", 20), (bob, "b", 22)] {
        let path = format!(
            "/v1/instances/{}/inputs/{slot}",
            evaluated["id"].as_str().unwrap()
        );
        let r = p
            .put(&path, p.encrypt_input(&evaluated, slot, 1, &json!(v)))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }
    let r = alice
        .get(&format!(
            "/v1/instances/{}/result?round=1&wait=30",
            evaluated["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.json["output"], 42, "{}", r.json);
    // Destroyed, with its certificate.
    let destroyed = create("operator", manifest(sha, alice, bob, "all")).await;
    let r = alice
        .post(
            &format!(
                "/v1/instances/{}/destroy",
                destroyed["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let library = operator.get("/v1/functions").await;
    let library_fn = library.json[0]["id"].as_str().unwrap().to_owned();
    Fixtures {
        instances: [awaiting, evaluated, destroyed]
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect(),
        functions: vec![f.json["id"].as_str().unwrap().to_owned(), library_fn],
        slots: vec!["a", "b"],
    }
}

/// The same identity again (a second holder of the key).
fn dup(identity: &PartyIdentity) -> PartyIdentity {
    PartyIdentity::from_pem(
        identity.cert_pem().as_bytes(),
        identity.key_pem().as_bytes(),
    )
    .unwrap()
}

fn toml_list<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{:?}", s.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

/// The Schemathesis configuration of one role's run.
fn config(dir: &Path, role: &Role, fx: &Fixtures, ca: &Path, examples: u32) -> PathBuf {
    let cert = dir.join(format!("{}.pem", role.name));
    let key = dir.join(format!("{}.key", role.name));
    std::fs::write(&cert, role.identity.cert_pem()).unwrap();
    std::fs::write(&key, role.identity.key_pem().as_bytes()).unwrap();
    let text = format!(
        r#"# Written by tests/tests/api_fuzz.rs for the role {role}.
workers = 1
tls-verify = {ca:?}
request-cert = {cert:?}
request-cert-key = {key:?}
request-timeout = 30
suppress-health-check = ["too_slow", "filter_too_much", "data_too_large", "large_base_example"]

[generation]
max-examples = {examples}

[phases]
stateful.enabled = false

[checks]
enabled = false
not_a_server_error = {{ enabled = true, expected-statuses = ["2xx", "3xx", "4xx", "503"] }}
status_code_conformance.enabled = true
content_type_conformance.enabled = true
response_schema_conformance.enabled = true
response_headers_conformance.enabled = true
busy_answers_say_when.enabled = true

[dictionaries.instances]
values = {instances}

[dictionaries.functions]
values = {functions}

[dictionaries.slots]
values = {slots}

[[operations]]
include-path-regex = "^/v1/instances/[{{]id[}}]/inputs/"
parameters = {{ "path.id" = {{ dictionary = "instances", probability = 0.9 }}, "path.slot" = {{ dictionary = "slots", probability = 0.8 }} }}

[[operations]]
include-path-regex = "^/v1/instances/[{{]id[}}](/[a-z-]+)?$"
parameters = {{ "path.id" = {{ dictionary = "instances", probability = 0.9 }} }}

[[operations]]
include-path = "/v1/functions/{{id}}"
parameters = {{ "path.id" = {{ dictionary = "functions", probability = 0.9 }} }}

[[operations]]
include-path = "/v1/attestation"
parameters = {{ "query.instance" = {{ dictionary = "instances", probability = 0.5 }} }}
"#,
        role = role.name,
        ca = ca.display().to_string(),
        cert = cert.display().to_string(),
        key = key.display().to_string(),
        instances = toml_list(&fx.instances),
        functions = toml_list(&fx.functions),
        slots = toml_list(&fx.slots),
    );
    let path = dir.join(format!("{}.toml", role.name));
    std::fs::write(&path, text).unwrap();
    path
}

/// Where one role's run leaves its report (a VCR cassette of every request and answer):
/// `target/api-fuzz/ROLE/`, named after the configuration file.
fn report_dir(config: &Path) -> PathBuf {
    let role = config.file_stem().unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo_root().join("target"), PathBuf::from);
    target.join("api-fuzz").join(role)
}

/// Runs Schemathesis for one role; returns whether it passed and its output.
fn schemathesis(st: &str, config: &Path, schema: &Path, url: &str, seed: &str) -> (bool, String) {
    let hooks = repo_root().join("tests/api-fuzz/hooks.py");
    let out = Command::new(st)
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(schema)
        .args(["--url", url, "--seed", seed, "--no-color"])
        // Every request and answer, to read a failure back: target/api-fuzz/ROLE/.
        .args(["--report", "vcr", "--report-dir"])
        .arg(report_dir(config))
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .current_dir(config.parent().unwrap())
        .output()
        .unwrap_or_else(|e| panic!("running {st}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Schemathesis from PyPI: run `make api-fuzz`"]
async fn schemathesis_finds_no_fault_for_any_role() {
    let st = std::env::var("ARBITER_SCHEMATHESIS")
        .expect("ARBITER_SCHEMATHESIS: the `st` program (tests/api-fuzz/install-schemathesis.sh)");
    let examples: u32 = std::env::var("ARBITER_API_FUZZ_EXAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = std::env::var("ARBITER_API_FUZZ_SEED").unwrap_or_else(|_| "1".into());
    let tpm = TestTpm::start();
    let ids: Vec<PartyIdentity> = ["operator", "creator", "alice", "bob", "stranger"]
        .iter()
        .map(|n| PartyIdentity::generate(n).unwrap())
        .collect();
    let operator_id = ids[0].identity().unwrap();
    let creator_id = ids[1].identity().unwrap();
    let daemon = TestDaemon::start(&tpm, &tpm.path("daemon"), |c| {
        c.access.operators = vec![operator_id];
        c.access.creators = vec![arbiter_daemon::config::Creator {
            identity: creator_id,
            max_live_instances: 10_000,
        }];
        // Schemathesis sends `?wait=` with any number: keep long polls short.
        c.limits.max_wait_seconds = 1;
    })
    .await;
    let party = |i: usize, name: &str| Party::with_identity(name, dup(&ids[i]), &daemon.url);
    let (operator, creator, alice, bob) = (
        party(0, "operator"),
        party(1, "creator"),
        party(2, "alice"),
        party(3, "bob"),
    );
    let fx = fixtures(&operator, &creator, &alice, &bob).await;

    let dir = tpm.path("schemathesis");
    std::fs::create_dir_all(&dir).unwrap();
    // The document as served, and the daemon's certificate as the CA to verify it with.
    let doc = operator.get("/v1/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    let schema = dir.join("openapi.json");
    std::fs::write(&schema, &doc.body).unwrap();
    let ca = dir.join("daemon-tls.pem");
    std::fs::write(&ca, daemon.engine.tls_cert_pem()).unwrap();

    // The party runs last: it may destroy the fixtures' instances.
    let roles = [
        ("stranger", 4),
        ("status-reader", 3),
        ("creator", 1),
        ("operator", 0),
        ("party", 2),
    ];
    let mut failed = Vec::new();
    for (name, i) in roles {
        let role = Role {
            name,
            identity: dup(&ids[i]),
        };
        let config = config(&dir, &role, &fx, &ca, examples);
        let (st, schema, url, seed) =
            (st.clone(), schema.clone(), daemon.url.clone(), seed.clone());
        let started = std::time::Instant::now();
        let (passed, output) =
            tokio::task::spawn_blocking(move || schemathesis(&st, &config, &schema, &url, &seed))
                .await
                .unwrap();
        println!(
            "==== schemathesis as {name}: {} in {:.0} s\n{output}",
            if passed { "passed" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        if !passed {
            failed.push(name);
        }
    }
    // What reached the daemon: answers by route and status, from its own metrics.
    let metrics = operator.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    let mut total = 0u64;
    println!("==== answers by route and status (the daemon's metrics)");
    for line in text
        .lines()
        .filter(|l| l.starts_with("arbiter_http_request_duration_seconds_count{"))
    {
        let (labels, n) = line.rsplit_once(' ').unwrap();
        total += n.parse::<u64>().unwrap_or(0);
        println!(
            "{n:>6} {}",
            &labels["arbiter_http_request_duration_seconds_count".len()..]
        );
    }
    println!("{total:>6} requests in all");
    assert!(
        !text.contains("status=\"500\""),
        "the daemon answered 500: {text}"
    );
    // The daemon still serves and attests after every role's run.
    let h = alice.get("/healthz").await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.json);
    assert_eq!(h.json["status"], "ok", "{}", h.json);
    let nonce = hex::encode([7u8; 32]);
    let att = bob.get(&format!("/v1/attestation?nonce={nonce}")).await;
    assert_eq!(att.status, StatusCode::OK, "{}", att.json);
    arbiter_tests::verified_quote(&att.json);
    assert!(
        failed.is_empty(),
        "schemathesis found faults as {failed:?} (output above; rerun with ARBITER_API_FUZZ_SEED={seed})"
    );
    daemon.stop().await;
}
