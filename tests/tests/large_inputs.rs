//! Large inputs on a real daemon and swtpm: a list of 1,000,000 distinct strings (~40 MB)
//! goes in through the daemon's spool (by the test's own HTTP client and by `arbiter submit
//! --file` with its progress) and the spool is empty afterwards; two such lists give their
//! intersection size, and too little memory gives `memory_limit`; the slot and instance
//! limits of the manifest and the configuration refuse with 413 naming the limit, storing
//! nothing; a manifest asking more than the configuration allows is refused at creation; a
//! body that stalls is cut off, and so is one that trickles slower than the minimum rate;
//! the spool's disk budget refuses with 503 and `Retry-After`; leftovers in the spool are
//! removed at start.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use arbiter_client::http::PartyIdentity;
use arbiter_policy::hpke::{self, InputContext};
use arbiter_tests::TestTpm;
use arbiter_tests::cli::CliParty;
use arbiter_tests::daemon::{Party, TestDaemon, two_party_manifest, two_party_manifest_of};
use base64::Engine as _;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INTERSECT: &str = "fn compute(inputs) { intersection_size(inputs.a, inputs.b) }";
/// The same intersection over ordinary Rhai arrays: a Rhai value per element, so a million
/// strings need far more memory than the native list.
const INTERSECT_ARRAYS: &str =
    "fn compute(inputs) { intersection_size(to_array(inputs.a), to_array(inputs.b)) }";
const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `count` distinct strings `prefix` + the number from `first`, zero-padded to `width`, as
/// a JSON array (built as text: no value tree of a million strings).
fn list(prefix: &str, first: u64, count: u64, width: usize) -> String {
    let mut s = String::with_capacity((count as usize) * (prefix.len() + width + 3) + 2);
    s.push('[');
    for i in first..first + count {
        if i > first {
            s.push(',');
        }
        s.push('"');
        s.push_str(prefix);
        s.push_str(&format!("{i:0width$}"));
        s.push('"');
    }
    s.push(']');
    s
}

/// A list of 1,000,000 distinct strings of about 40 bytes each in JSON (~40 MB).
fn forty_megabytes() -> String {
    list("customer-account-reference-", 0, 1_000_000, 10)
}

/// The body of an input exactly as a party makes it, from the input's JSON text.
fn sealed_body(p: &Party, inst: &Value, slot: &str, json_text: &[u8]) -> Vec<u8> {
    let public_key = hex::decode(inst["public_key"].as_str().unwrap()).unwrap();
    let ctx = InputContext {
        instance_id: inst["id"].as_str().unwrap(),
        slot,
        round: 1,
        function_sha256: inst["function_sha256"].as_str().unwrap(),
        submitter: &p.id,
    };
    let plaintext = hpke::pad_json(json_text, hpke::DEFAULT_PAD_BLOCK);
    let (enc, ct) = hpke::seal(&public_key, &ctx, &plaintext).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "{{\"enc\":\"{}\",\"ciphertext\":\"{}\"}}",
        b64.encode(enc),
        b64.encode(ct)
    )
    .into_bytes()
}

async fn put_raw(
    p: &Party,
    inst: &Value,
    slot: &str,
    body: Vec<u8>,
) -> arbiter_client::http::Response {
    let path = input_path(inst, slot);
    let r = p
        .conn
        .request(Method::PUT, &path, Some(body))
        .await
        .unwrap();
    arbiter_tests::contract::check("PUT", &path, &r);
    r
}

fn input_path(inst: &Value, slot: &str) -> String {
    format!(
        "/v1/instances/{}/inputs/{slot}",
        inst["id"].as_str().unwrap()
    )
}

fn spool_entries(state: &Path) -> Vec<String> {
    std::fs::read_dir(state.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A daemon on `tpm` whose one operator is a fresh identity, configured further by
/// `configure`, and that operator's client.
async fn daemon_with_operator(
    tpm: &TestTpm,
    state: &Path,
    configure: impl FnOnce(&mut arbiter_daemon::config::Config),
) -> (TestDaemon, Party) {
    let operator = PartyIdentity::generate("operator").unwrap();
    let op_id = operator.identity().unwrap();
    let d = TestDaemon::start(tpm, state, |c| {
        c.access.operators = vec![op_id];
        configure(c);
    })
    .await;
    let op = Party::with_identity("operator", operator, &d.url);
    (d, op)
}

async fn register(op: &Party, source: &str) -> String {
    let f = op
        .post(
            "/v1/functions",
            json!({"name": "f", "language": "rhai", "source": source}),
        )
        .await;
    assert!(f.status.is_success(), "{}", f.json);
    f.json["sha256"].as_str().unwrap().to_owned()
}

async fn create(op: &Party, manifest: Value) -> Value {
    let inst = op
        .post("/v1/instances", json!({ "manifest": manifest }))
        .await;
    assert_eq!(inst.status, StatusCode::CREATED, "{}", inst.json);
    inst.json
}

async fn filled(p: &Party, inst: &Value) -> Vec<bool> {
    let d = p
        .get(&format!("/v1/instances/{}", inst["id"].as_str().unwrap()))
        .await;
    d.json["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["filled"].as_bool().unwrap())
        .collect()
}

fn assert_refused(
    r: &arbiter_client::http::Response,
    status: StatusCode,
    code: &str,
    names: &[&str],
) {
    assert_eq!(r.status, status, "{}", r.json);
    assert_eq!(r.json["error"]["code"], code, "{}", r.json);
    let message = r.json["error"]["message"].as_str().unwrap();
    for n in names {
        assert!(message.contains(n), "`{n}` not in: {message}");
    }
}

/// Opens a TLS connection as `p` and sends the head of a PUT of an input with `headers`.
async fn raw_put_head(
    p: &Party,
    inst: &Value,
    slot: &str,
    headers: &str,
) -> impl AsyncReadExt + AsyncWriteExt + Unpin {
    let mut s = p.conn.connect_tls().await.unwrap();
    s.write_all(
        format!(
            "PUT {} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{headers}\r\n",
            input_path(inst, slot)
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s
}

/// The answer's head and body as text, or `None` if the peer closed first.
async fn read_answer(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<String> {
    let mut buf = vec![0u8; 16 << 10];
    let mut got = 0;
    loop {
        let n = stream.read(&mut buf[got..]).await.ok()?;
        got += n;
        let text = String::from_utf8_lossy(&buf[..got]).into_owned();
        if n == 0 || text.contains("\"error\"") && text.trim_end().ends_with('}') {
            return (got > 0).then_some(text);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lists_of_a_million_strings_are_spooled_stored_and_intersected() {
    let tpm = TestTpm::start();
    let state = tpm.path("daemon");
    let (d, op) = daemon_with_operator(&tpm, &state, |c| {
        // A debug build's evaluator takes minutes over two lists of a million strings.
        c.limits.max_wait_seconds = 1_200;
    })
    .await;
    let alice = Party::new("alice", &d);
    let bob = Party::new("bob", &d);
    let f = register(&op, INTERSECT).await;

    // ~40 MB of JSON: accepted through the spool, the spool empty afterwards.
    let big = create(&op, two_party_manifest(&f, &alice, &bob)).await;
    let text = forty_megabytes();
    assert!(text.len() > 38_000_000, "{}", text.len());
    let body = sealed_body(&alice, &big, "a", text.as_bytes());
    drop(text);
    let r = put_raw(&alice, &big, "a", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(filled(&alice, &big).await, [true, false]);
    assert!(
        spool_entries(&state).is_empty(),
        "{:?}",
        spool_entries(&state)
    );

    // Two lists of a million short strings (both under the evaluator's request cap
    // together), half of them shared: the intersection size is 500,000 within the
    // allowance, and `memory_limit` beyond it. The lists arrive as native string lists before
    // the limit is set, so the intersection itself needs only its hash table of a million
    // positions (~10 MiB) on top, within the smallest allowance a manifest may set
    // (16 MiB): the script that fails converts both lists into ordinary arrays first.
    let a = list("c", 0, 1_000_000, 7);
    let b = list("c", 500_000, 1_000_000, 7);
    let f_arrays = register(&op, INTERSECT_ARRAYS).await;
    for (function, memory, expected) in [
        (&f, 16u64 << 20, Ok(500_000)),
        (&f_arrays, 16 << 20, Err("memory_limit")),
    ] {
        let mut manifest = two_party_manifest(function, &alice, &bob);
        manifest["limits"] = json!({
            "wall_time_ms": 600_000,
            "operations": 1_000_000_000,
            "memory_bytes": memory,
            "max_array_len": 2_000_000,
        });
        let inst = create(&op, manifest).await;
        for (p, slot, value) in [(&alice, "a", &a), (&bob, "b", &b)] {
            let r = put_raw(
                p,
                &inst,
                slot,
                sealed_body(p, &inst, slot, value.as_bytes()),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        }
        let r = alice
            .get(&format!(
                "/v1/instances/{}/result?wait=1200",
                inst["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(r.json["evaluated"], true, "{}", r.json);
        match expected {
            Ok(n) => assert_eq!(r.json["output"], n, "{}", r.json),
            Err(reason) => {
                assert_eq!(r.json["succeeded"], false, "{}", r.json);
                assert_eq!(r.json["error"]["reason"], reason, "{}", r.json);
            }
        }
    }
    assert!(spool_entries(&state).is_empty());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_instance_and_config_limits_refuse_with_413_and_store_nothing() {
    let tpm = TestTpm::start();
    let state = tpm.path("daemon");
    let (d, op) = daemon_with_operator(&tpm, &state, |c| {
        c.limits.max_input_bytes = 2_000_000;
        c.limits.max_instance_input_bytes = 3_000_000;
    })
    .await;
    let alice = Party::new("alice", &d);
    let bob = Party::new("bob", &d);
    let f = register(&op, INTERSECT).await;

    // A manifest asking more than the configuration allows: refused at creation, naming
    // the field and the ceiling.
    let mut greedy = two_party_manifest(&f, &alice, &bob);
    greedy["limits"] = json!({"max_input_bytes": 2_500_000});
    let r = op
        .post("/v1/instances", json!({ "manifest": greedy }))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    let text = r.json.to_string();
    assert!(
        text.contains("/limits/max_input_bytes")
            && text.contains("[limits] max_input_bytes is 2000000"),
        "{text}"
    );

    // The manifest's limits: 100,000 bytes a slot, 150,000 together.
    let mut manifest = two_party_manifest(&f, &alice, &bob);
    manifest["limits"] = json!({"max_input_bytes": 100_000, "max_instance_input_bytes": 150_000});
    let inst = create(&op, manifest).await;
    // 130,000 bytes of JSON: over the slot's limit, refused on its declared length.
    let r = put_raw(
        &alice,
        &inst,
        "a",
        sealed_body(&alice, &inst, "a", list("x", 0, 10_000, 9).as_bytes()),
    )
    .await;
    assert_refused(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "input_too_large",
        &["slot `a`", "manifest's limits.max_input_bytes = 100000"],
    );
    assert_eq!(filled(&alice, &inst).await, [false, false]);
    // 91,000 bytes fit the slot...
    let fits = list("x", 0, 7_000, 9);
    let r = put_raw(
        &alice,
        &inst,
        "a",
        sealed_body(&alice, &inst, "a", fits.as_bytes()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // ... but two such do not fit the instance: Bob's is refused, naming the instance's
    // limit, and his slot stays empty.
    let r = put_raw(
        &bob,
        &inst,
        "b",
        sealed_body(&bob, &inst, "b", fits.as_bytes()),
    )
    .await;
    assert_refused(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "instance_inputs_too_large",
        &[
            "manifest's limits.max_instance_input_bytes = 150000",
            "other slots hold",
        ],
    );
    assert_eq!(filled(&alice, &inst).await, [true, false]);
    // Within what is left, Bob's input goes in.
    let small = list("x", 0, 3_000, 9);
    let r = put_raw(
        &bob,
        &inst,
        "b",
        sealed_body(&bob, &inst, "b", small.as_bytes()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);

    // The configuration's ceiling when the manifest says nothing: 2,600,000 bytes of JSON,
    // refused on the declared length of its (spooled-size) body.
    let plain = create(&op, two_party_manifest(&f, &alice, &bob)).await;
    let r = put_raw(
        &alice,
        &plain,
        "a",
        sealed_body(&alice, &plain, "a", list("x", 0, 200_000, 9).as_bytes()),
    )
    .await;
    assert_refused(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "input_too_large",
        &["configured [limits] max_input_bytes = 2000000"],
    );
    // A body of undeclared length (chunked) is cut off as soon as its bytes show it.
    let mut s = raw_put_head(&alice, &plain, "a", "transfer-encoding: chunked\r\n").await;
    let chunk = vec![b' '; 64 << 10];
    let mut answer = None;
    for _ in 0..100 {
        let head = format!("{:x}\r\n", chunk.len());
        if s.write_all(head.as_bytes()).await.is_err()
            || s.write_all(&chunk).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
        if let Ok(a) = tokio::time::timeout(Duration::from_millis(5), read_answer(&mut s)).await {
            answer = a;
            break;
        }
    }
    let answer = match answer {
        Some(a) => a,
        None => read_answer(&mut s).await.expect("an answer"),
    };
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("input_too_large"), "{answer}");
    assert_eq!(filled(&alice, &plain).await, [false, false]);
    assert!(
        spool_entries(&state).is_empty(),
        "{:?}",
        spool_entries(&state)
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_are_cut_off_the_spool_budget_answers_503_and_leftovers_go() {
    let tpm = TestTpm::start();
    let state = tpm.path("daemon");
    // A previous run's leftovers: removed at start.
    std::fs::create_dir_all(state.join("spool")).unwrap();
    std::fs::write(state.join("spool/input-left.body"), b"{\"enc\":").unwrap();
    let (d, op) = daemon_with_operator(&tpm, &state, |c| {
        c.limits.body_timeout_seconds = 2;
        c.limits.max_input_bytes = 2_000_000;
        c.limits.max_instance_input_bytes = 4_000_000;
        // Room for one largest body being received, not two.
        c.limits.max_spooled_bytes = 3_000_000;
    })
    .await;
    assert!(
        spool_entries(&state).is_empty(),
        "{:?}",
        spool_entries(&state)
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(state.join("spool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let alice = Party::new("alice", &d);
    let bob = Party::new("bob", &d);
    let f = register(&op, INTERSECT).await;
    let inst = create(&op, two_party_manifest(&f, &alice, &bob)).await;

    // Alice's 2 MB upload stalls after 300 KB (fast enough so far for the minimum rate):
    // it holds most of the spool's budget.
    let mut stalled = raw_put_head(&alice, &inst, "a", "content-length: 2000000\r\n").await;
    stalled.write_all(&vec![b' '; 300_000]).await.unwrap();
    stalled.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spooling = spool_entries(&state);
    assert_eq!(spooling.len(), 1, "{spooling:?}");
    let mode = std::fs::metadata(state.join("spool").join(&spooling[0]))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Bob's large upload meanwhile: 503 busy with Retry-After, before its body is read.
    let mut second = raw_put_head(&bob, &inst, "b", "content-length: 1500000\r\n").await;
    let answer = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut second))
        .await
        .expect("an answer before the body")
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 5"),
        "{answer}"
    );
    assert!(
        answer.contains("\"busy\"") && answer.contains("max_spooled_bytes"),
        "{answer}"
    );
    // The stalled body is cut off at the stall timeout, its spool file removed.
    let answer = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut stalled))
        .await
        .expect("an answer at the stall timeout")
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(
        spool_entries(&state).is_empty(),
        "{:?}",
        spool_entries(&state)
    );
    assert_eq!(filled(&alice, &inst).await, [false, false]);
    // The budget is back: a 1.3 MB input goes in through the spool.
    let r = put_raw(
        &bob,
        &inst,
        "b",
        sealed_body(&bob, &inst, "b", list("y", 0, 100_000, 9).as_bytes()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    d.stop().await;
}

/// The party's appraisal policy for a daemon on swtpm (all-zero platform PCRs, so the
/// explicit opt-out), named in its config.
fn write_policy(party: &CliParty, function_sha: &str) {
    std::fs::write(
        party.state.join("appraisal.toml"),
        format!(
            "platform_pcrs = [0, 2, 4, 7, 9]\nfunctions = [\"{function_sha}\"]\nallow_unpinned_platform = true\n[pcrs]\n0 = \"{ZERO}\"\n7 = \"{ZERO}\"\n"
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
async fn the_cli_uploads_a_forty_megabyte_file_with_progress() {
    let tpm = TestTpm::start();
    let state = tpm.path("daemon");
    let (d, op) = daemon_with_operator(&tpm, &state, |_| {}).await;
    let f = register(&op, INTERSECT).await;
    let dir = tpm.path("parties");
    let url = d.url.clone();
    let cas = [
        tpm.state.ca_root_pem.display().to_string(),
        tpm.state.ca_issuer_pem.display().to_string(),
    ];
    let (alice, bob) = tokio::task::spawn_blocking({
        let f = f.clone();
        move || {
            let alice = CliParty::new(&dir, "alice", &url);
            let bob = CliParty::new(&dir, "bob", &url);
            let mut args = vec!["enroll", "--ek-ca"];
            args.extend(cas.iter().map(String::as_str));
            alice.ok(&args);
            write_policy(&alice, &f);
            (alice, bob)
        }
    })
    .await
    .unwrap();
    let inst = create(
        &op,
        two_party_manifest_of(&f, ("alice", &alice.id), ("bob", &bob.id)),
    )
    .await;
    let id = inst["id"].as_str().unwrap().to_owned();
    let file = alice.state.join("customers.json");
    std::fs::write(&file, forty_megabytes()).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        alice.run(&[
            "submit",
            "--instance",
            &id,
            "--slot",
            "a",
            "--file",
            file.to_str().unwrap(),
            "--expect-function",
            &f,
        ])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("recomputed: matches"), "{stdout}");
    // Not a terminal: a few lines of progress, the last at 100%.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("uploading:"))
        .collect();
    assert!((2..=5).contains(&lines.len()), "{stderr}");
    assert!(lines.last().unwrap().ends_with("(100%)"), "{stderr}");
    let total: u64 = lines[0]
        .split(" / ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        total > 53_000_000,
        "the body is the ciphertext in base64: {total}"
    );
    assert_eq!(filled(&op, &inst).await, [true, false]);
    assert!(
        spool_entries(&state).is_empty(),
        "{:?}",
        spool_entries(&state)
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_minimum_rate_is_cut_off_with_408() {
    let tpm = TestTpm::start();
    let state = tpm.path("daemon");
    let (d, op) = daemon_with_operator(&tpm, &state, |c| {
        c.limits.body_timeout_seconds = 2;
        c.limits.min_body_bytes_per_second = 65_536;
    })
    .await;
    let alice = Party::new("alice", &d);
    let bob = Party::new("bob", &d);
    let f = register(&op, INTERSECT).await;
    let inst = create(&op, two_party_manifest(&f, &alice, &bob)).await;
    // A 2 MB input trickling 4 KiB every 250 ms (16 KiB/s): never silent for the stall
    // timeout, but slower than 64 KiB/s on average. Cut off once the 2 s have passed.
    let mut s = raw_put_head(&alice, &inst, "a", "content-length: 2000000\r\n").await;
    let started = std::time::Instant::now();
    let mut sent = 0usize;
    let mut answer = None;
    while started.elapsed() < Duration::from_secs(30) {
        if s.write_all(&[b' '; 4096]).await.is_err() || s.flush().await.is_err() {
            break;
        }
        sent += 4096;
        // The answer comes in one piece; waiting for it is the pause between writes.
        if let Ok(a) = tokio::time::timeout(Duration::from_millis(250), read_answer(&mut s)).await {
            answer = a;
            break;
        }
    }
    let answer = match answer {
        Some(a) => a,
        None => tokio::time::timeout(Duration::from_secs(10), read_answer(&mut s))
            .await
            .expect("an answer")
            .expect("an answer, not a reset"),
    };
    let took = started.elapsed();
    println!(
        "a trickle of 16 KiB/s: {} after {:.1} s and {sent} bytes",
        answer.lines().next().unwrap_or_default(),
        took.as_secs_f64()
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("body_too_slow") && answer.contains("65536 bytes per second"),
        "{answer}"
    );
    assert!(took < Duration::from_secs(6), "cut off after {took:?}");
    assert_eq!(filled(&alice, &inst).await, [false, false]);
    assert!(
        spool_entries(&state).is_empty(),
        "{:?}",
        spool_entries(&state)
    );
    d.stop().await;
}
