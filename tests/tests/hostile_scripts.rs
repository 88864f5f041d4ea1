//! Hostile scripts through the real daemon (swtpm, mutual TLS, on-disk store, the real
//! `arbiterd __evaluate` sandbox): every limit of docs/manifest.md and every way out of the
//! script the Rhai standard library might offer, each in its own instance. Each evaluation
//! must fail with its reason and a message naming the limit, leave no evaluator process
//! behind (but the one started ahead for the next evaluation, which holds no inherited
//! descriptor), and leave the daemon serving (a good evaluation and an attestation right
//! after).
//! Also: hostile evaluations at once stay bounded by `limits.max_concurrent_evaluations`,
//! the same inputs give byte-identical signed outputs (docs/sandbox.md), and a running
//! evaluation is a child of its own under seccomp, `no_new_privs`, an address-space limit,
//! no core files and an empty environment, gone once its run ends.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use arbiter_tests::TestTpm;
use arbiter_tests::daemon::{Party, TestDaemon, two_party_manifest};
use base64::Engine as _;
use hyper::StatusCode;
use serde_json::{Value, json};

/// The daemon's own children are counted in /proc: one test at a time in this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const GOOD: &str = "fn compute(inputs) { inputs.a + inputs.b }";

struct World {
    _tpm: TestTpm,
    daemon: TestDaemon,
    operator: Party,
    alice: Party,
    bob: Party,
    functions: HashMap<String, String>,
}

impl World {
    async fn start() -> Self {
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
            daemon,
            _tpm: tpm,
            functions: HashMap::new(),
        }
    }

    /// Registers `source` (once) and returns its sha256, or the refusal.
    async fn register(&mut self, source: &str) -> Result<String, Value> {
        if let Some(sha) = self.functions.get(source) {
            return Ok(sha.clone());
        }
        let r = self
            .operator
            .post(
                "/v1/functions",
                json!({"name": "f", "language": "rhai", "source": source}),
            )
            .await;
        if r.status != StatusCode::CREATED {
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
            return Err(r.json);
        }
        let sha = r.json["sha256"].as_str().unwrap().to_owned();
        self.functions.insert(source.to_owned(), sha.clone());
        Ok(sha)
    }

    /// A new two-party instance of `source` with `limits` in its manifest.
    async fn instance(&mut self, source: &str, limits: &Value) -> Value {
        let sha = self.register(source).await.expect("registered");
        let mut manifest = two_party_manifest(&sha, &self.alice, &self.bob);
        manifest["limits"] = limits.clone();
        let r = self
            .operator
            .post("/v1/instances", json!({ "manifest": manifest }))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        r.json
    }

    /// Both parties submit their inputs (which triggers the evaluation).
    async fn submit(&self, inst: &Value, a: &Value, b: &Value) {
        let id = inst["id"].as_str().unwrap();
        for (party, slot, value) in [(&self.alice, "a", a), (&self.bob, "b", b)] {
            let body = party.encrypt_input(inst, slot, 1, value);
            let r = party
                .put(&format!("/v1/instances/{id}/inputs/{slot}"), body)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        }
    }

    /// The evaluated result, waiting for it.
    async fn result(&self, inst: &Value) -> arbiter_client::http::Response {
        let id = inst["id"].as_str().unwrap();
        let r = self
            .alice
            .get(&format!("/v1/instances/{id}/result?wait=60"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["evaluated"], true, "{}", r.json);
        r
    }

    /// Runs `source` under `limits` on inputs 1 and 2 and returns the result.
    async fn evaluate(&mut self, source: &str, limits: &Value) -> arbiter_client::http::Response {
        let inst = self.instance(source, limits).await;
        self.submit(&inst, &json!(1), &json!(2)).await;
        self.result(&inst).await
    }

    /// The daemon serves on: no evaluator left behind (at most the one waiting for the
    /// next evaluation, holding nothing but its pipes), a good evaluation and an
    /// attestation succeed.
    async fn serves_on(&mut self, case: &str) {
        assert_eq!(
            evaluators(),
            Vec::<u32>::new(),
            "{case}: an evaluator process outlived its evaluation"
        );
        check_waiting(case);
        let r = self.evaluate(GOOD, &json!({})).await;
        assert_eq!(r.json["succeeded"], true, "{case}: {}", r.json);
        assert_eq!(r.json["output"], 3, "{case}: {}", r.json);
        let mut nonce = [0u8; 32];
        rand::fill(&mut nonce);
        let a = self
            .operator
            .get(&format!("/v1/attestation?nonce={}", hex::encode(nonce)))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{case}: {}", a.json);
        assert_eq!(evaluators(), Vec::<u32>::new(), "{case}");
        check_waiting(case);
    }
}

/// Live `arbiterd __evaluate` children of this process (the in-process daemon's) that
/// have started an evaluation (under their seccomp filter, mode 2). The one child started ahead of the next evaluation, blocked
/// reading its request, is [`waiting_evaluators`]'s.
fn evaluators() -> Vec<u32> {
    all_evaluators()
        .into_iter()
        .filter(|&pid| !is_waiting(pid))
        .collect()
}

/// Children started ahead of an evaluation, still starting or waiting for their
/// request: no seccomp filter yet.
fn waiting_evaluators() -> Vec<u32> {
    all_evaluators()
        .into_iter()
        .filter(|&pid| is_waiting(pid))
        .collect()
}

fn is_waiting(pid: u32) -> bool {
    // An evaluating child turns its filter on within milliseconds of reading its request.
    proc_status(pid, "Seccomp:").as_deref() == Some("0")
}

/// At most one child waits for the next evaluation, and it holds no descriptor but its
/// stdin, stdout and stderr: nothing the daemon had open (the TPM's socket) is inherited.
fn check_waiting(case: &str) {
    let waiting = waiting_evaluators();
    assert!(
        waiting.len() <= 1,
        "{case}: {} children wait",
        waiting.len()
    );
    for pid in waiting {
        // It closes what it inherited first thing in main: give a just-started one a
        // moment.
        let started = std::time::Instant::now();
        loop {
            let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            fds.sort();
            if fds.is_empty() || fds == ["0", "1", "2"] {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{case}: the waiting evaluator {pid} holds descriptors {fds:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Every live `arbiterd __evaluate` child of this process.
fn all_evaluators() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let parent = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .map(str::trim);
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if parent == Some(me.as_str()) && cmdline.windows(10).any(|w| w == b"__evaluate") {
            found.push(pid);
        }
    }
    found
}

/// What a case must produce.
enum Expect {
    /// The evaluation fails with this reason and a message containing every fragment.
    Fails(&'static str, &'static [&'static str]),
    /// Registration refuses the source (`invalid_script`) with these fragments.
    Refused(&'static [&'static str]),
    /// The evaluation succeeds with this output.
    Output(Value),
}

struct Case {
    name: &'static str,
    source: String,
    limits: Value,
    expect: Expect,
}

fn case(name: &'static str, source: &str, limits: Value, expect: Expect) -> Case {
    Case {
        name,
        source: source.to_owned(),
        limits,
        expect,
    }
}

/// A 1 MiB string built by doubling.
const MIB_STRING: &str = "let s = \"x\"; while s.len() < 1048576 { s += s; }";

async fn run_cases(w: &mut World, cases: Vec<Case>) {
    for c in cases {
        match &c.expect {
            Expect::Refused(fragments) => {
                let refusal = w
                    .register(&c.source)
                    .await
                    .expect_err(&format!("{}: registered", c.name));
                assert_eq!(refusal["error"]["code"], "invalid_script", "{}", c.name);
                let message = refusal["error"]["message"].as_str().unwrap();
                for f in *fragments {
                    assert!(message.contains(f), "{}: {message}", c.name);
                }
            }
            Expect::Fails(reason, fragments) => {
                let r = w.evaluate(&c.source, &c.limits).await;
                assert_eq!(r.json["succeeded"], false, "{}: {}", c.name, r.json);
                assert_eq!(r.json["error"]["reason"], *reason, "{}: {}", c.name, r.json);
                let message = r.json["error"]["message"].as_str().unwrap();
                for f in *fragments {
                    assert!(message.contains(f), "{}: {message}", c.name);
                }
                // The failure is signed too (with a null output).
                assert!(r.json["jws"].is_string(), "{}: {}", c.name, r.json);
                assert_eq!(r.json["payload"]["output"], Value::Null, "{}", c.name);
                println!("{:<40} {reason:<18} {message}", c.name);
            }
            Expect::Output(want) => {
                let r = w.evaluate(&c.source, &c.limits).await;
                assert_eq!(r.json["succeeded"], true, "{}: {}", c.name, r.json);
                assert_eq!(&r.json["output"], want, "{}", c.name);
                println!("{:<40} succeeded          {}", c.name, r.json["output"]);
            }
        }
        w.serves_on(c.name).await;
    }
}

#[tokio::test]
async fn limits_stop_hostile_scripts_and_the_daemon_serves_on() {
    let _serial = SERIAL.lock().await;
    let mut w = World::start().await;
    let deep_parens = format!(
        "fn compute(inputs) {{ {}1{} }}",
        "(".repeat(100),
        ")".repeat(100)
    );
    let cases = vec![
        case(
            "infinite loop, operation limit",
            "fn compute(inputs) { loop { } }",
            json!({"operations": 100000}),
            Expect::Fails("operation_limit", &["operation limit of 100000 operations"]),
        ),
        case(
            "infinite loop, wall clock",
            "fn compute(inputs) { let n = 0; loop { n += 1; } }",
            json!({"operations": 1_000_000_000, "wall_time_ms": 1500}),
            Expect::Fails("timeout", &["wall-clock limit of 1500 ms", "killed"]),
        ),
        case(
            "recursion bomb",
            "fn f(n) { f(n + 1) } fn compute(inputs) { f(0) }",
            json!({"max_call_depth": 16}),
            Expect::Fails("call_depth_limit", &["call depth limit of 16"]),
        ),
        case(
            "recursion bomb at the largest depth",
            "fn g(n) { 1 + g(n + 1) } fn compute(inputs) { g(0) }",
            json!({"max_call_depth": 1024}),
            Expect::Fails("call_depth_limit", &["call depth limit of 1024"]),
        ),
        case(
            "string growth",
            "fn compute(inputs) { let s = \"x\"; loop { s += s; } }",
            json!({"max_string_bytes": 1000}),
            Expect::Fails("size_limit", &["Length of string", "strings 1000 bytes"]),
        ),
        case(
            "array growth",
            "fn compute(inputs) { let a = []; loop { a.push(1); } }",
            json!({"max_array_len": 1000}),
            Expect::Fails(
                "size_limit",
                &["Size of array", "arrays and blobs 1000 elements"],
            ),
        ),
        case(
            "map growth by +=",
            "fn compute(inputs) { let m = #{}; let n = 0; \
             loop { m += #{}; m[`k${n}`] = n; n += 1; } }",
            json!({"max_map_len": 1000}),
            Expect::Fails("size_limit", &["Size of object map", "maps 1000 entries"]),
        ),
        case(
            "map growth by m[key] = v, returned",
            "fn compute(inputs) { let m = #{}; let n = 0; \
             while n < 2000 { m[`k${n}`] = n; n += 1; } m }",
            json!({"max_map_len": 1000}),
            Expect::Fails("size_limit", &["a map of 2000", "limit of 1000"]),
        ),
        case(
            "map growth by m[key] = v, unbounded",
            "fn compute(inputs) { let m = #{}; let n = 0; \
             loop { m[`k${n}`] = n; n += 1; } }",
            json!({"max_map_len": 1000, "memory_bytes": 16_777_216,
                   "operations": 1_000_000_000, "wall_time_ms": 30000}),
            Expect::Fails("memory_limit", &["memory limit of 16777216 bytes"]),
        ),
        case(
            "deep expression nesting (compile time)",
            &deep_parens,
            json!({}),
            Expect::Refused(&["does not compile"]),
        ),
        case(
            "deep array nesting, returned",
            "fn compute(inputs) { let a = []; for n in 0..200 { a = [a]; } a }",
            json!({}),
            Expect::Fails("bad_output", &["nested deeper than 100 levels"]),
        ),
        case(
            "deep map nesting, returned",
            "fn compute(inputs) { let m = #{}; for n in 0..200 { m = #{inner: m}; } m }",
            json!({}),
            Expect::Fails("bad_output", &["nested deeper than 100 levels"]),
        ),
        case(
            "deep array nesting, kept",
            "fn compute(inputs) { let a = []; for n in 0..100000 { a = [a]; } 0 }",
            json!({"max_array_len": 1000}),
            Expect::Fails(
                "size_limit",
                &["Size of array", "arrays and blobs 1000 elements"],
            ),
        ),
        case(
            "missing function",
            "fn compute(inputs) { no_such_function(inputs.a) }",
            json!({}),
            Expect::Fails("runtime", &["Function not found", "no_such_function"]),
        ),
        case(
            "enormous output",
            &format!(
                "fn compute(inputs) {{ {MIB_STRING} let a = []; \
                 for n in 0..20 {{ a.push(s); }} a }}"
            ),
            json!({"max_string_bytes": 67_108_864}),
            Expect::Fails("bad_output", &["bytes of JSON", "limit of 16777216"]),
        ),
        case(
            "memory exhaustion",
            &format!(
                "fn compute(inputs) {{ {MIB_STRING} let a = []; loop {{ a.push(s + \"y\"); }} }}"
            ),
            json!({"memory_bytes": 16_777_216, "max_string_bytes": 1_073_741_824,
                   "max_array_len": 100_000_000}),
            Expect::Fails("memory_limit", &["memory limit of 16777216 bytes"]),
        ),
        case(
            "integer beyond 2^53",
            "fn compute(inputs) { [9007199254740993] }",
            json!({}),
            Expect::Fails("bad_output", &["9007199254740993", "2^53"]),
        ),
    ];
    run_cases(&mut w, cases).await;
    w.daemon.stop().await;
}

#[tokio::test]
async fn scripts_cannot_reach_the_host() {
    let _serial = SERIAL.lock().await;
    let mut w = World::start().await;
    let cases = vec![
        case(
            "clock",
            "fn compute(inputs) { timestamp() }",
            json!({}),
            Expect::Fails("runtime", &["Function not found", "timestamp"]),
        ),
        case(
            "clock through a function pointer",
            "fn compute(inputs) { Fn(\"timestamp\").call() }",
            json!({}),
            Expect::Fails("runtime", &["Function not found", "timestamp"]),
        ),
        case(
            "sleep",
            "fn compute(inputs) { sleep(5) }",
            json!({}),
            Expect::Fails("runtime", &["sleep: scripts have no clock"]),
        ),
        case(
            "sleep (float) through a function pointer",
            "fn compute(inputs) { Fn(\"sleep\").call(0.5) }",
            json!({}),
            Expect::Fails("runtime", &["sleep: scripts have no clock"]),
        ),
        case(
            "eval",
            "fn compute(inputs) { eval(\"40 + 2\") }",
            json!({}),
            Expect::Refused(&["does not compile", "eval"]),
        ),
        case(
            "eval through a function pointer",
            "fn compute(inputs) { Fn(\"ev\" + \"al\").call(\"40 + 2\") }",
            json!({}),
            Expect::Fails("runtime", &["eval"]),
        ),
        case(
            "import",
            "import \"fs\" as fs; fn compute(inputs) { 1 }",
            json!({}),
            Expect::Refused(&["does not compile", "import"]),
        ),
        case(
            "random without a seeded RNG",
            "fn compute(inputs) { random_int(1, 6) }",
            json!({}),
            Expect::Fails("runtime", &["random_int", "no seeded RNG"]),
        ),
        case(
            "random float without a seeded RNG",
            "fn compute(inputs) { random_float() }",
            json!({}),
            Expect::Fails("runtime", &["random_float", "no seeded RNG"]),
        ),
        case(
            "print and debug go nowhere",
            "fn compute(inputs) { print(\"leak\"); debug(inputs); 7 }",
            json!({}),
            Expect::Output(json!(7)),
        ),
        case(
            "exit is an early return, not a process exit",
            "fn compute(inputs) { exit(42); 0 }",
            json!({}),
            Expect::Output(json!(42)),
        ),
    ];
    run_cases(&mut w, cases).await;
    w.daemon.stop().await;
}

#[tokio::test]
async fn hostile_evaluations_at_once_do_not_starve_the_daemon() {
    let _serial = SERIAL.lock().await;
    let mut w = World::start().await;
    let max = w.daemon.engine.config().limits.max_concurrent_evaluations;
    let spin = "fn compute(inputs) { let n = 0; loop { n += 1; } }";
    let limits = json!({"operations": 1_000_000_000, "wall_time_ms": 3000});
    let mut instances = Vec::new();
    for _ in 0..(max * 2) {
        instances.push(w.instance(spin, &limits).await);
    }
    for inst in &instances {
        w.submit(inst, &json!(1), &json!(2)).await;
    }
    // While they run (or queue), the daemon answers, and never runs more than `max`.
    let mut most = 0;
    let mut served_while_busy = false;
    for _ in 0..20 {
        let running = evaluators().len();
        most = most.max(running);
        let h = w.alice.get("/healthz").await;
        assert_eq!(h.status, StatusCode::OK);
        if running > 0 {
            let mut nonce = [0u8; 32];
            rand::fill(&mut nonce);
            let a = w
                .operator
                .get(&format!("/v1/attestation?nonce={}", hex::encode(nonce)))
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.json);
            served_while_busy |= !evaluators().is_empty();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        served_while_busy,
        "no attestation was served during an evaluation"
    );
    assert!(most <= max, "{most} evaluators ran at once, limit {max}");
    println!(
        "at most {most} of {} evaluations ran at once (limit {max})",
        max * 2
    );
    for inst in &instances {
        let r = w.result(inst).await;
        assert_eq!(r.json["error"]["reason"], "timeout", "{}", r.json);
    }
    w.serves_on("after concurrent hostile evaluations").await;
    w.daemon.stop().await;
}

/// The value of `key` in `/proc/PID/status`, if the process is still there.
fn proc_status(pid: u32, key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
}

#[tokio::test]
async fn an_evaluation_runs_in_its_own_sandboxed_child_that_exits_after_it() {
    let _serial = SERIAL.lock().await;
    let mut w = World::start().await;
    let spin = "fn compute(inputs) { let n = 0; loop { n += 1; } }";
    let limits =
        json!({"operations": 1_000_000_000, "wall_time_ms": 3000, "memory_bytes": 33_554_432});
    let mut seen = Vec::new();
    for _ in 0..2 {
        let inst = w.instance(spin, &limits).await;
        w.submit(&inst, &json!(1), &json!(2)).await;
        // The child, once its filter is on (it reads its request and builds the engine
        // first).
        let started = std::time::Instant::now();
        let pid = loop {
            let found = evaluators()
                .into_iter()
                .find(|p| proc_status(*p, "Seccomp:").as_deref() == Some("2"));
            if let Some(pid) = found {
                break pid;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no evaluator under seccomp (mode 2, filter) appeared"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(proc_status(pid, "NoNewPrivs:").as_deref(), Some("1"));
        let limits_text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let address_space = limits_text
            .lines()
            .find(|l| l.starts_with("Max address space"))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            !address_space.contains("unlimited"),
            "the evaluator has no address-space limit: {address_space}"
        );
        let core = limits_text
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap();
        assert!(
            core.split_whitespace().filter(|w| *w == "0").count() >= 2,
            "{core}"
        );
        // Its environment is empty but for the allocator's tunables.
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let names: Vec<String> = environ
            .split(|b| *b == 0)
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        // (glibc's tunable parser cuts the variable at each `:` in place, so the block
        // shows the second tunable as an entry of its own.)
        assert_eq!(
            names.join(":"),
            "GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.hugetlb=1"
        );
        println!("evaluator {pid}: seccomp mode 2, no_new_privs, {address_space}");
        // The run ends (its wall-clock limit) and so does the child.
        let r = w.result(&inst).await;
        assert_eq!(r.json["error"]["reason"], "timeout", "{}", r.json);
        assert!(
            !evaluators().contains(&pid),
            "evaluator {pid} outlived its evaluation"
        );
        seen.push(pid);
    }
    assert_ne!(seen[0], seen[1], "each evaluation has a child of its own");
    w.serves_on("after sandboxed evaluations").await;
    w.daemon.stop().await;
}

/// The bytes of the `output` member inside a JWS's payload (JCS text, as signed).
fn signed_output_bytes(jws: &str) -> Vec<u8> {
    let payload_b64 = jws.split('.').nth(1).expect("compact JWS");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload_b64)
        .unwrap();
    let key = b"\"output\":";
    let at = payload
        .windows(key.len())
        .position(|w| w == key)
        .expect("output in the payload")
        + key.len();
    let mut values = serde_json::Deserializer::from_slice(&payload[at..]).into_iter::<Value>();
    values.next().expect("a value").expect("JSON");
    payload[at..at + values.byte_offset()].to_vec()
}

#[tokio::test]
async fn the_same_inputs_give_byte_identical_signed_outputs() {
    let _serial = SERIAL.lock().await;
    let mut w = World::start().await;
    let floats = "fn compute(inputs) { [0.1 + 0.2, 1e21, 1e-7, -0.0, 2.0, 1.5e300 * 1.0e8, \
                  5e-324, 1e20, 1e16, 123456789.125, -1.0 / 3.0, inputs.a.x] }";
    let maps = "fn compute(inputs) { let m = #{}; \
                for k in [\"zeta\", \"alpha\", \"Mu\", \"beta\", \"10\", \"9\"] { m[k] = k.len(); } \
                #{z: m, a: inputs.a, b: inputs.b, nested: #{y: [#{d: 1, c: 2}], x: ()}} }";
    let stats = "fn compute(inputs) { #{common: intersection(inputs.a.set, inputs.b.set), \
                 size: intersection_size(inputs.a.set, inputs.b.set), \
                 mean: mean(inputs.a.xs), median: median(inputs.b.xs), \
                 mode: mode(inputs.a.xs), stddev: stddev(inputs.a.xs + inputs.b.xs)} }";
    let a = json!({"x": 0.1, "set": ["q", "p", 3, "r", "p"], "xs": [1, 3, 3, 0.5, 1e-3]});
    let b = json!({"z": 1, "y": [1, 2], "set": ["r", 3, "p", "s"], "xs": [2, 4, 8, 16]});
    let cases: [(&str, &str, &str); 3] = [
        (
            "floats",
            floats,
            // JCS (RFC 8785): ECMAScript number forms; -0 is 0, 2.0 is 2.
            "[0.30000000000000004,1e+21,1e-7,0,2,1.5e+308,5e-324,100000000000000000000,\
             10000000000000000,123456789.125,-0.3333333333333333,0.1]",
        ),
        (
            "maps",
            maps,
            // Keys sorted by UTF-16 code units at every level; inputs' keys too.
            "{\"a\":{\"set\":[\"q\",\"p\",3,\"r\",\"p\"],\"x\":0.1,\"xs\":[1,3,3,0.5,0.001]},\
             \"b\":{\"set\":[\"r\",3,\"p\",\"s\"],\"xs\":[2,4,8,16],\"y\":[1,2],\"z\":1},\
             \"nested\":{\"x\":null,\"y\":[{\"c\":2,\"d\":1}]},\
             \"z\":{\"10\":2,\"9\":1,\"Mu\":2,\"alpha\":5,\"beta\":4,\"zeta\":4}}",
        ),
        (
            "statistics",
            stats,
            // The median 6.0 is signed as 6; intersection keeps the first array's order.
            "{\"common\":[\"p\",3,\"r\"],\"mean\":1.5002,\"median\":6,\"mode\":3,\
             \"size\":3,\"stddev\":4.749171478099634}",
        ),
    ];
    for (name, source, pinned) in cases {
        let mut seen = BTreeSet::new();
        let mut served = BTreeSet::new();
        for _ in 0..2 {
            let inst = w.instance(source, &json!({})).await;
            w.submit(&inst, &a, &b).await;
            let r = w.result(&inst).await;
            assert_eq!(r.json["succeeded"], true, "{name}: {}", r.json);
            let bytes = signed_output_bytes(r.json["jws"].as_str().unwrap());
            // What is served equals what is signed, value for value.
            let signed: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(r.json["output"], signed, "{name}");
            served.insert(r.json["output"].to_string());
            seen.insert(bytes);
        }
        assert_eq!(
            seen.len(),
            1,
            "{name}: two instances signed different outputs"
        );
        assert_eq!(
            served.len(),
            1,
            "{name}: two instances served different outputs"
        );
        let text = String::from_utf8(seen.pop_first().unwrap()).unwrap();
        println!("{name}: {text}");
        assert_eq!(text, pinned, "{name}");
    }
    w.daemon.stop().await;
}
