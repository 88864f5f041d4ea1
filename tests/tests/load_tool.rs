//! The load tool (`arbiter-load`, docs/performance.md) run briefly against its own daemon:
//! every scenario (attestations appraised by the client, submissions acknowledged, result
//! reads whose JWS verifies) counts verified operations and no failure, the baselines and
//! the restart are measured, and the report holds the goals. A check that the tool works,
//! not a benchmark: no figure is compared with a threshold.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::Command;

use serde_json::Value;

#[test]
fn load_tool_runs_briefly_and_verifies_what_it_receives() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter-load"))
        .args([
            "--quiet",
            "--seconds",
            "1",
            "--warmup",
            "0.1",
            "--tpm-latency",
            "none",
            "--attest",
            "1,4",
            "--submit",
            "4",
            "--submit-pool",
            "256",
            "--read",
            "2",
            "--read-instances",
            "3",
            "--restart-instances",
            "20",
            "--report",
        ])
        .arg(&report)
        .env("TSS2_LOG", "all+NONE")
        .output()
        .expect("running arbiter-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "arbiter-load failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let scenarios = report["scenarios"].as_array().unwrap();
    let kinds: Vec<(&str, u64)> = scenarios
        .iter()
        .map(|s| {
            (
                s["scenario"].as_str().unwrap(),
                s["clients"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("attest", 1), ("attest", 4), ("submit", 4), ("read", 2)]
    );
    for s in scenarios {
        assert!(s["ok"].as_u64().unwrap() > 0, "nothing verified: {s}");
        assert_eq!(s["failed"], 0, "failures: {s}");
        assert!(s["p99_ms"].as_f64().unwrap() >= s["p50_ms"].as_f64().unwrap());
        assert_eq!(s["warmup_seconds"], 0.1, "{s}");
        assert!(s["p99_all_ms"].as_f64().unwrap() > 0.0, "{s}");
    }
    let b = &report["baselines"];
    for rate in [
        &b["none"]["one_quote_per_request_per_second"],
        &b["none"]["tpm2_quote_per_second"],
        &b["hpke_open_per_second"],
        &b["sqlite_full_inserts_per_second"],
    ] {
        assert!(rate.as_f64().unwrap() > 0.0, "{b}");
    }
    assert_eq!(report["restart"]["instances"], 20);
    assert!(report["restart"]["ready_ms"].as_f64().unwrap() > 0.0);
    assert!(report["start"]["idle_rss_kib"].as_u64().unwrap() > 0);
    let goals = report["goals"].as_array().unwrap();
    assert!(
        goals
            .iter()
            .any(|g| g["goal"].as_str().unwrap().contains("tpm2_quote")),
        "{goals:?}"
    );
    assert!(goals.iter().all(|g| g["met"].is_boolean()));
}
