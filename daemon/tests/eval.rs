//! The evaluation sandbox end to end: every test runs the real `arbiterd __evaluate`
//! child through [`Evaluator`], so the pipe protocol, the hardening, the seccomp filter,
//! `RLIMIT_AS` and the wall-clock kill are all exercised. The parent (this test process)
//! must come out of every hostile script unharmed.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use arbiter_daemon::eval::{
    EvalError, EvalFailure, EvalOutcome, EvalRequest, Evaluator, Limits, SelfTest,
};
use serde_json::{Value, json};
use zeroize::Zeroizing;

fn program() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_arbiterd"))
}

fn evaluator() -> Evaluator {
    Evaluator::new(program())
}

fn request(source: &str, inputs: Value, limits: Limits) -> EvalRequest {
    let inputs: BTreeMap<String, Value> = serde_json::from_value(inputs).unwrap();
    let inputs = inputs
        .into_iter()
        .map(|(slot, v)| (slot, Zeroizing::new(serde_json::to_vec(&v).unwrap())))
        .collect();
    EvalRequest {
        source: source.to_owned(),
        inputs,
        limits,
        rng_seed: None,
    }
}

async fn run(source: &str, inputs: Value, limits: Limits) -> EvalOutcome {
    evaluator()
        .evaluate(request(source, inputs, limits))
        .await
        .unwrap()
}

#[track_caller]
fn output(outcome: EvalOutcome) -> Value {
    match outcome {
        EvalOutcome::Success { output, .. } => output,
        EvalOutcome::Failed {
            reason, message, ..
        } => panic!("expected success, got {reason}: {message}"),
    }
}

#[track_caller]
fn failure(outcome: EvalOutcome) -> (EvalFailure, String) {
    match outcome {
        EvalOutcome::Failed {
            reason, message, ..
        } => (reason, message),
        EvalOutcome::Success { output, .. } => panic!("expected failure, got {output}"),
    }
}

/// Limits under which a debug build finishes the hostile scripts quickly.
fn small() -> Limits {
    Limits {
        operations: 200_000,
        max_array_len: 1_000,
        ..Limits::default()
    }
}

const SHA256_CONCAT: &str = "fn compute(inputs) { sha256(inputs.a + inputs.b) }";

#[tokio::test]
async fn sha256_of_concatenation() {
    let outcome = run(
        SHA256_CONCAT,
        json!({"a": "Now is the time", "b": "for all good men"}),
        Limits::default(),
    )
    .await;
    let usage = outcome.usage().clone();
    assert_eq!(
        output(outcome),
        json!("579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63")
    );
    assert!(usage.operations > 0);
    assert_eq!(usage.input_bytes, 35);
    assert_eq!(usage.output_bytes, 66);
    assert!(usage.peak_rss_bytes.is_some_and(|b| b > 0));
    assert!(usage.wall_time > Duration::ZERO);
}

#[tokio::test]
async fn compile_errors_and_missing_compute() {
    let (reason, message) = failure(run("fn compute(inputs) {", json!({}), small()).await);
    assert_eq!(reason, EvalFailure::Compile, "{message}");
    assert!(message.contains("does not compile"), "{message}");

    let (reason, message) = failure(run("fn helper(x) { x }", json!({}), small()).await);
    assert_eq!(reason, EvalFailure::NoComputeFunction, "{message}");
    assert!(message.contains("compute(inputs)"), "{message}");
}

#[tokio::test]
async fn runtime_error() {
    let (reason, message) = failure(
        run(
            "fn compute(inputs) { if inputs.x > 1 { throw \"too big\" } 0 }",
            json!({"x": 2}),
            small(),
        )
        .await,
    );
    assert_eq!(reason, EvalFailure::Runtime);
    assert!(message.contains("too big"), "{message}");

    let (reason, _) = failure(
        run(
            "fn compute(i) { i.x + \"s\" * 2 }",
            json!({"x": 1}),
            small(),
        )
        .await,
    );
    assert_eq!(reason, EvalFailure::Runtime);
}

#[tokio::test]
async fn infinite_loop_hits_the_operation_limit() {
    let outcome = run("fn compute(inputs) { loop { } }", json!({}), small()).await;
    let operations = outcome.usage().operations;
    let (reason, message) = failure(outcome);
    assert_eq!(reason, EvalFailure::OperationLimit, "{message}");
    assert!(message.contains("200000"), "{message}");
    assert!(operations >= 200_000, "{operations}");
}

#[tokio::test]
async fn infinite_loop_is_killed_at_the_wall_clock_deadline() {
    let limits = Limits {
        operations: u64::MAX,
        wall_time: Duration::from_millis(1500),
        ..Limits::default()
    };
    let started = Instant::now();
    let (reason, message) = failure(
        run(
            "fn compute(i) { let n = 0; loop { n += 1; } }",
            json!({}),
            limits,
        )
        .await,
    );
    let elapsed = started.elapsed();
    assert_eq!(reason, EvalFailure::Timeout, "{message}");
    assert!(message.contains("1500 ms"), "{message}");
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn recursion_bomb_hits_the_call_depth_limit() {
    let (reason, message) = failure(
        run(
            "fn bomb(n) { bomb(n + 1) + bomb(n + 1) } fn compute(i) { bomb(0) }",
            json!({}),
            small(),
        )
        .await,
    );
    assert_eq!(reason, EvalFailure::CallDepthLimit, "{message}");
    assert!(message.contains("64"), "{message}");

    // A much deeper allowance still ends in Rhai's limit, not a stack overflow.
    let deep = Limits {
        max_call_depth: 2_000,
        ..small()
    };
    let (reason, message) = failure(
        run(
            "fn f(n) { f(n + 1) } fn compute(i) { f(0) }",
            json!({}),
            deep,
        )
        .await,
    );
    assert_eq!(reason, EvalFailure::CallDepthLimit, "{message}");
}

#[tokio::test]
async fn recursion_past_the_evaluator_stack_is_contained() {
    // An allowance far beyond what the (capped) worker stack holds: the child overflows
    // its stack, dies, and the parent reports it as a call-depth failure.
    let limits = Limits {
        operations: u64::MAX,
        max_call_depth: 10_000_000,
        wall_time: Duration::from_secs(60),
        ..Limits::default()
    };
    let (reason, message) = failure(
        run(
            "fn f(n) { f(n + 1) } fn compute(i) { f(0) }",
            json!({}),
            limits,
        )
        .await,
    );
    assert_eq!(reason, EvalFailure::CallDepthLimit, "{message}");
    assert!(message.contains("stack"), "{message}");
}

#[tokio::test]
async fn unbounded_growth_hits_the_size_limits() {
    let (reason, message) = failure(
        run(
            "fn compute(i) { let s = \"x\"; loop { s += s; } }",
            json!({}),
            small(),
        )
        .await,
    );
    assert_eq!(reason, EvalFailure::SizeLimit, "{message}");

    let (reason, message) = failure(
        run(
            "fn compute(i) { let a = []; loop { a.push(\"more\"); } }",
            json!({}),
            small(),
        )
        .await,
    );
    assert_eq!(reason, EvalFailure::SizeLimit, "{message}");
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_limit() {
    // Rhai's own size limits out of the way: only RLIMIT_AS stops the string.
    let limits = Limits {
        operations: u64::MAX,
        memory_bytes: 64 << 20,
        max_string_bytes: usize::MAX,
        max_array_len: usize::MAX,
        max_map_len: usize::MAX,
        ..Limits::default()
    };
    let (reason, message) = failure(
        run(
            "fn compute(i) { let s = \"x\"; loop { s += s; } }",
            json!({}),
            limits,
        )
        .await,
    );
    assert_eq!(reason, EvalFailure::MemoryLimit, "{message}");
    assert!(message.contains(&(64u64 << 20).to_string()), "{message}");
}

#[tokio::test]
async fn no_io_no_eval_no_import() {
    for source in [
        "fn compute(i) { eval(\"40 + 2\") }",
        "import \"std\" as s; fn compute(i) { 1 }",
    ] {
        let (reason, message) = failure(run(source, json!({}), small()).await);
        assert_eq!(reason, EvalFailure::Compile, "{source}: {message}");
    }
    for source in [
        "fn compute(i) { timestamp() }",
        "fn compute(i) { open(\"/etc/passwd\") }",
        "fn compute(i) { sleep(1) }",
        "fn compute(i) { random_int(1, 6) }",
    ] {
        let (reason, message) = failure(run(source, json!({}), small()).await);
        assert_eq!(reason, EvalFailure::Runtime, "{source}: {message}");
    }
}

#[tokio::test]
async fn seccomp_kills_a_forbidden_system_call() {
    let evaluator = Evaluator::with_selftest(program(), SelfTest::Seccomp);
    let outcome = evaluator
        .evaluate(request(SHA256_CONCAT, json!({}), small()))
        .await
        .unwrap();
    let (reason, message) = failure(outcome);
    assert_eq!(reason, EvalFailure::Crashed, "{message}");
    assert!(
        message.contains("forbidden system call (seccomp)"),
        "{message}"
    );
}

#[tokio::test]
async fn outputs_that_are_not_json_are_refused() {
    let (reason, message) =
        failure(run("fn compute(i) { Fn(\"compute\") }", json!({}), small()).await);
    assert_eq!(reason, EvalFailure::BadOutput, "{message}");
}

#[tokio::test]
async fn seeded_rng_is_deterministic() {
    let source =
        "fn compute(i) { [random_int(1, 1000000), random_int(1, 1000000), random_float()] }";
    let mut outputs = Vec::new();
    for seed in [[1u8; 32], [1u8; 32], [2u8; 32]] {
        let mut req = request(source, json!({}), small());
        req.rng_seed = Some(seed);
        outputs.push(output(evaluator().evaluate(req).await.unwrap()));
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_ne!(outputs[0], outputs[2]);
}

#[tokio::test]
async fn helpers_work_in_the_child() {
    let source = r#"
        fn compute(inputs) {
            let key = shamir_combine([inputs.alice, inputs.bob]);
            #{
                overlap: intersection_size(inputs.list_a, inputs.list_b),
                mean: mean(inputs.scores),
                sealed: aes_gcm_encrypt(key, "000000000000000000000000", "hello"),
                opened: aes_gcm_decrypt(key, "000000000000000000000000",
                            aes_gcm_encrypt(key, "000000000000000000000000", "hello")),
            }
        }
    "#;
    // A 2-of-3 split of 16 zero bytes: f(x) = 0 + c·x with c = 0x01 per byte gives
    // share x = (x, x, ..., x).
    let alice = format!("01{}", "01".repeat(16));
    let bob = format!("02{}", "02".repeat(16));
    let out = output(
        run(
            source,
            json!({"alice": alice, "bob": bob, "list_a": ["a", "b", "c"], "list_b": ["c", "a"],
                   "scores": [1, 2, 3, 4]}),
            Limits::default(),
        )
        .await,
    );
    assert_eq!(out["overlap"], json!(2));
    assert_eq!(out["mean"], json!(2.5));
    assert_eq!(out["opened"], json!("hello"));
    // AES-128-GCM under the all-zero key and nonce.
    assert_eq!(out["sealed"].as_str().unwrap().len(), 2 * (5 + 16), "{out}");
}

#[tokio::test]
async fn large_lists_decode_in_parts_to_what_the_whole_text_gives() {
    // Each input over 1 MiB and alone in its evaluation: the child decodes it on a
    // thread of its own and, on a machine with cores to spare, cuts it into parts.
    let numbers: Vec<Value> = (0..150_000u32)
        .map(|i| {
            if i % 3 == 0 {
                json!(i)
            } else {
                json!((f64::from(i) + 0.5) / -8.0)
            }
        })
        .collect();
    // Commas and quotes inside the strings, where a cut must not fall.
    let strings: Vec<Value> = (0..60_000)
        .map(|i| json!(format!("item, \"{i:030}\", x")))
        .collect();
    // Mixed kinds: not a native list, an ordinary array either way.
    let mixed: Vec<Value> = (0..200_000u32)
        .map(|i| {
            if i % 2 == 0 {
                json!(i)
            } else {
                json!(format!("{i}"))
            }
        })
        .collect();
    let limits = Limits {
        max_array_len: 1_000_000,
        ..Limits::default()
    };
    let source = "fn compute(i) { #{ x: i.x, kind: type_of(i.x), n: i.x.len(), last: i.x[-1] } }";
    for list in [numbers, strings, mixed] {
        let n = list.len();
        let last = list[n - 1].clone();
        let x = Value::Array(list);
        assert!(serde_json::to_vec(&x).unwrap().len() > 1 << 20);
        let out = output(run(source, json!({ "x": x }), limits.clone()).await);
        assert_eq!(out["kind"], "array");
        assert_eq!(out["n"], json!(n));
        assert_eq!(out["last"], last);
        assert!(out["x"] == x, "the list came back changed");
    }
}

#[tokio::test]
async fn deep_inputs_are_refused_before_the_script_runs() {
    // Beyond the decoder's own limit (128 levels), and within it but beyond the
    // evaluator's (100): each a size limit naming the slot, whether the slot is decoded
    // on the reading thread or, padded past 1 MiB, on a thread of its own.
    for (depth, pad) in [(150, 0), (120, 0), (120, 2 << 20), (150, 2 << 20)] {
        let mut text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        text.resize(text.len() + pad, b' ');
        let mut inputs = BTreeMap::new();
        inputs.insert("deep".to_owned(), Zeroizing::new(text));
        let outcome = evaluator()
            .evaluate(EvalRequest {
                source: "fn compute(i) { throw \"the script ran\" }".to_owned(),
                inputs,
                limits: Limits::default(),
                rng_seed: None,
            })
            .await
            .unwrap();
        let (reason, message) = failure(outcome);
        assert_eq!(reason, EvalFailure::SizeLimit, "{depth}: {message}");
        assert!(
            message.contains("slot `deep` is nested deeper than 100 levels"),
            "{depth}: {message}"
        );
    }
}

#[tokio::test]
async fn inputs_go_to_the_child_as_their_padded_text() {
    // As the CLI sends them: JSON padded with whitespace; the child parses them.
    let mut inputs = BTreeMap::new();
    let padded = |text: &str| {
        let mut bytes = text.as_bytes().to_vec();
        bytes.resize(256, b' ');
        Zeroizing::new(bytes)
    };
    inputs.insert("a".to_owned(), padded("\"Now is the time\""));
    inputs.insert("b".to_owned(), padded("\n\"for all good men\"\t"));
    let outcome = evaluator()
        .evaluate(EvalRequest {
            source: SHA256_CONCAT.to_owned(),
            inputs,
            limits: Limits::default(),
            rng_seed: None,
        })
        .await
        .unwrap();
    assert_eq!(outcome.usage().input_bytes, 35);
    assert_eq!(
        output(outcome),
        json!("579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63")
    );
    // Text that is not one JSON document is refused by the child before the script runs,
    // naming the slot.
    let mut inputs = BTreeMap::new();
    inputs.insert("a".to_owned(), Zeroizing::new(b"\"a\" \"b\"".to_vec()));
    let err = evaluator()
        .evaluate(EvalRequest {
            source: SHA256_CONCAT.to_owned(),
            inputs,
            limits: Limits::default(),
            rng_seed: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, EvalError::BadInput { ref slot, .. } if slot == "a"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_binary_is_a_machinery_error() {
    let evaluator = Evaluator::new(PathBuf::from("/nonexistent/arbiterd"));
    let err = evaluator
        .evaluate(request(SHA256_CONCAT, json!({}), small()))
        .await
        .unwrap_err();
    assert!(matches!(err, EvalError::Spawn { .. }), "{err}");
}

#[tokio::test]
async fn twenty_evaluations_in_a_row_leave_the_parent_unaffected() {
    let hostile = [
        "fn compute(i) { loop { } }",
        "fn f(n) { f(n + 1) } fn compute(i) { f(0) }",
        "fn compute(i) { let s = \"x\"; loop { s += s; } }",
        "fn compute(i) { throw \"no\" }",
        "fn compute(i) {",
    ];
    let inputs = json!({"a": "Now is the time", "b": "for all good men"});
    let mut successes = Duration::ZERO;
    for round in 0..20 {
        if round % 2 == 0 {
            let source = hostile[(round / 2) % hostile.len()];
            let outcome = run(source, inputs.clone(), small()).await;
            assert!(matches!(outcome, EvalOutcome::Failed { .. }), "{source}");
        } else {
            let outcome = run(SHA256_CONCAT, inputs.clone(), Limits::default()).await;
            successes += outcome.usage().wall_time;
            assert_eq!(
                output(outcome),
                json!("579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63")
            );
        }
    }
    eprintln!(
        "mean evaluation latency (spawn, sandbox, run, reap) of a trivial script: {:?}",
        successes / 10
    );
}

#[tokio::test]
async fn concurrent_evaluations_are_independent() {
    let inputs = json!({"a": "Now is the time", "b": "for all good men"});
    let evaluator = evaluator();
    let runs = (0..6).map(|n| {
        let evaluator = evaluator.clone();
        let source = if n % 2 == 0 {
            SHA256_CONCAT
        } else {
            "fn compute(i) { loop { } }"
        };
        let req = request(source, inputs.clone(), small());
        tokio::spawn(async move { evaluator.evaluate(req).await })
    });
    let mut ok = 0;
    for handle in runs.collect::<Vec<_>>() {
        match handle.await.unwrap().unwrap() {
            EvalOutcome::Success { .. } => ok += 1,
            EvalOutcome::Failed { reason, .. } => assert_eq!(reason, EvalFailure::OperationLimit),
        }
    }
    assert_eq!(ok, 3);
}
