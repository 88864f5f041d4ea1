//! Benchmark: parse + replay of every test log, and of the largest one next to
//! `tpm2_eventlog FILE` run as a process on the same file (what a verifier would otherwise
//! shell out to). No framework: a fixed number of timed iterations, printed as a table.
//!
//! `cargo bench -p arbiter-measured-boot --bench replay`. Set `ARBITER_BIN` to an `arbiter`
//! binary to also time `arbiter eventlog replay --json FILE` as a process (same process
//! overhead as the reference tool). Set `TPM2_EVENTLOG` to use another reference binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark, not library code

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arbiter_measured_boot::firmware::EventLog;

/// Median over 5 batches of the mean time per iteration in a batch.
fn per_iteration(iterations: u32, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    let mut batches: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed() / iterations
        })
        .collect();
    batches.sort();
    batches[2]
}

fn in_process(bytes: &[u8], iterations: u32) -> Duration {
    per_iteration(iterations, || {
        let log = EventLog::from_bytes(black_box(bytes)).unwrap();
        black_box(log.replay().unwrap());
    })
}

/// Time `program args.. file` as a process; `None` if it cannot run or fails on this file.
fn as_process(program: &str, args: &[&str], file: &Path, iterations: u32) -> Option<Duration> {
    let run = || {
        Command::new(program)
            .args(args)
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
    };
    run()?;
    let mut ok = true;
    let t = per_iteration(iterations / 5, || ok &= run().is_some());
    ok.then_some(t)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/eventlogs");
    let mut logs: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    logs.sort_by_key(|(_, b)| std::cmp::Reverse(b.len()));
    let reference = std::env::var("TPM2_EVENTLOG").unwrap_or_else(|_| "tpm2_eventlog".into());
    let arbiter = std::env::var("ARBITER_BIN").ok();

    println!("parse + replay, in process (median of 5 batches of 1,000):");
    for (path, bytes) in &logs {
        let t = in_process(bytes, 1000);
        let name = path.file_name().unwrap().to_string_lossy();
        println!("  {name:<58} {:>7} bytes  {:>10}", bytes.len(), us(t));
    }

    println!(
        "\nlargest log the reference handles, against `{reference} FILE` as a process (median of 5 batches of 40 runs):"
    );
    let mut compared = false;
    for (path, bytes) in &logs {
        let name = path.file_name().unwrap().to_string_lossy();
        let Some(theirs) = as_process(&reference, &[], path, 200) else {
            println!("  {name}: {reference} fails on it (crash or refusal); skipped");
            continue;
        };
        let ours = in_process(bytes, 1000);
        println!("  {name} ({} bytes)", bytes.len());
        println!(
            "    arbiter-measured-boot parse+replay, in process: {:>10}",
            us(ours)
        );
        println!(
            "    {reference} FILE, as a process:          {:>10}",
            us(theirs)
        );
        println!(
            "    ratio (tpm2_eventlog / ours):                 {:>10.0}x",
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
        if let Some(bin) = &arbiter
            && let Some(cli) = as_process(bin, &["eventlog", "replay", "--json"], path, 200)
        {
            println!(
                "    arbiter eventlog replay --json, as a process: {:>10}",
                us(cli)
            );
            println!(
                "    ratio (tpm2_eventlog / arbiter process):      {:>10.2}x",
                theirs.as_secs_f64() / cli.as_secs_f64()
            );
        }
        compared = true;
        break;
    }
    if !compared {
        println!("  {reference} is not available or fails on every log: no comparison");
    }
}
