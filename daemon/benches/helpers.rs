//! The native script helpers against what a script would do without them, each pair in
//! the same run through the real sandboxed evaluator (`arbiterd __evaluate`): membership
//! (`is_member` against Rhai's `contains`, which dispatches `==` per element), the input
//! check of the statistics (`numeric_values` against a Rhai loop over every element),
//! and sealing (`aead_seal`, AES-256-GCM-SIV plus the HMAC nonce, against `aes_gcm_encrypt`
//! with a caller-chosen nonce). Prints the best wall time of each and their ratio.
//!
//! Run: `cargo bench -p arbiter-daemon --bench helpers` (`ARBITER_BENCH_N`, default
//! 20000 elements; `ARBITER_BENCH_REPS`, default 5).

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use arbiter_daemon::eval::{EvalOutcome, EvalRequest, Evaluator, Limits};
use serde_json::{Value, json};
use zeroize::Zeroizing;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The best wall time of `reps` evaluations of `source` on `inputs`; the outputs must
/// agree with `expect`.
async fn best(source: &str, inputs: &Value, expect: &Value, reps: usize) -> Duration {
    let evaluator = Evaluator::new(PathBuf::from(env!("CARGO_BIN_EXE_arbiterd")));
    let inputs: BTreeMap<String, Value> = serde_json::from_value(inputs.clone()).unwrap();
    let mut best = Duration::MAX;
    for _ in 0..reps {
        let request = EvalRequest {
            source: source.to_owned(),
            inputs: inputs
                .iter()
                .map(|(k, v)| (k.clone(), Zeroizing::new(serde_json::to_vec(v).unwrap())))
                .collect(),
            limits: Limits {
                operations: 1_000_000_000,
                wall_time: Duration::from_secs(600),
                max_string_bytes: 16 << 20,
                ..Limits::default()
            },
            rng_seed: None,
        };
        match evaluator.evaluate(request).await.unwrap() {
            EvalOutcome::Success { output, usage } => {
                assert_eq!(&output, expect, "{source}");
                best = best.min(usage.wall_time);
            }
            EvalOutcome::Failed {
                reason, message, ..
            } => panic!("{source}: {reason}: {message}"),
        }
    }
    best
}

fn report(what: &str, baseline: (&str, Duration), helper: (&str, Duration)) {
    println!(
        "{what}: {} {:.1} ms, {} {:.1} ms, speed-up x{:.2}",
        baseline.0,
        baseline.1.as_secs_f64() * 1e3,
        helper.0,
        helper.1.as_secs_f64() * 1e3,
        baseline.1.as_secs_f64() / helper.1.as_secs_f64()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n = env_or("ARBITER_BENCH_N", 20_000);
    let reps = env_or("ARBITER_BENCH_REPS", 5);
    let probes = 200;

    // Membership: `probes` lookups in a list of n strings (half of them hits).
    let list: Vec<String> = (0..n).map(|i| format!("{:064x}", i * 2)).collect();
    let wanted: Vec<String> = (0..probes)
        .map(|i| format!("{:064x}", i * n / probes))
        .collect();
    let hits = wanted.iter().filter(|w| list.contains(w)).count();
    let inputs = json!({"list": list, "wanted": wanted});
    let count = |call: &str| {
        format!(
            "fn compute(i) {{ let l = i.list; let n = 0; for w in i.wanted {{ if {call} {{ n += 1; }} }} n }}"
        )
    };
    let rhai = best(&count("l.contains(w)"), &inputs, &json!(hits), reps).await;
    let native = best(&count("is_member(l, w)"), &inputs, &json!(hits), reps).await;
    report(
        &format!("membership, {probes} lookups in {n} strings"),
        ("Rhai contains", rhai),
        ("is_member", native),
    );

    // The statistics' input check: every element a number, then the mean.
    let xs: Vec<Value> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                json!(i)
            } else {
                json!(i as f64 + 0.5)
            }
        })
        .collect();
    let inputs = json!({"a": xs, "b": 1});
    let loop_check = "fn compute(i) { let all = []; for k in i.keys() { let v = i[k]; \
        if type_of(v) == \"array\" { for x in v { let t = type_of(x); \
        if t != \"i64\" && t != \"f64\" { throw \"not a number\"; } } all += v; } \
        else { all.push(v); } } mean(all) }";
    let expect = {
        let engine_free: f64 = (0..n)
            .map(|i| if i % 2 == 0 { i as f64 } else { i as f64 + 0.5 })
            .sum::<f64>()
            + 1.0;
        json!(engine_free / (n + 1) as f64)
    };
    let rhai = best(loop_check, &inputs, &expect, reps).await;
    let native = best(
        "fn compute(i) { mean(numeric_values(i)) }",
        &inputs,
        &expect,
        reps,
    )
    .await;
    report(
        &format!("mean with the input check, {n} numbers"),
        ("Rhai loop", rhai),
        ("numeric_values", native),
    );

    // Sealing 1 MiB: the nonce-misuse-resistant path against plain AES-GCM.
    let text = "x".repeat(1 << 20);
    let key = "42".repeat(32);
    let inputs = json!({"text": text, "key": key});
    let gcm = format!(
        "fn compute(i) {{ aes_gcm_encrypt(i.key, \"{}\", i.text).len() }}",
        "00".repeat(12)
    );
    let sealed_hex_len = json!((text.len() + 16) * 2);
    let plain = best(&gcm, &inputs, &sealed_hex_len, reps).await;
    let siv = best(
        "fn compute(i) { aead_seal(i.key, i.text, \"\").len() - 24 }",
        &inputs,
        &sealed_hex_len,
        reps,
    )
    .await;
    report(
        "sealing 1 MiB",
        ("aes_gcm_encrypt", plain),
        ("aead_seal", siv),
    );
}
