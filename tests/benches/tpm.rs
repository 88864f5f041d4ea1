//! Operations per second of the TPM layer on a private swtpm: extend, quote, statement-key
//! sign and sealing-index read, next to `tpm2_quote` run as a process in a loop on the same
//! swtpm (the tool a user would reach for), as ratios against that baseline.
//!
//! Run: `cargo bench -p arbiter-tests --bench tpm` (`ARBITER_BENCH_SECONDS` sets the time
//! per measurement, default 2).

// A benchmark binary: any failure aborts the run with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use arbiter_daemon::tpm::{SealedKey, Tpm};
use arbiter_tests::{TestTpm, sha256};

fn seconds() -> Duration {
    let s = std::env::var("ARBITER_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(s)
}

/// Runs `op` repeatedly for the measurement time and returns operations per second.
async fn rate<F, Fut>(mut op: F) -> f64
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let budget = seconds();
    // Warm up.
    for i in 0..5 {
        op(i).await;
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        op(n).await;
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let sw = TestTpm::start();
    let tpm = Tpm::open(sw.config()).expect("opening the TPM");
    tpm.ensure_statement_key().await.expect("statement key");
    tpm.define_sealing_index(SealedKey::generate(0))
        .await
        .expect("sealing index");
    let ak_handle = format!("{:#x}", tpm.config().ak_handle);
    let selection = tpm.config().quote_selection().expect("selection");
    let list = format!(
        "sha256:{}",
        selection
            .pcrs()
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );

    let msg = sw.path("q.msg").display().to_string();
    let sig = sw.path("q.sig").display().to_string();
    let baseline = rate(|i| {
        let nonce = hex::encode(sha256(&[&i.to_be_bytes()]));
        let out = sw.tool(
            "tpm2_quote",
            &[
                "-c", &ak_handle, "-l", &list, "-q", &nonce, "-m", &msg, "-s", &sig, "-g", "sha256",
            ],
        );
        assert!(
            out.status.success(),
            "tpm2_quote failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        async {}
    })
    .await;

    let extend = rate(|i| {
        let tpm = tpm.clone();
        async move {
            tpm.pcr_extend(23, sha256(&[&i.to_be_bytes()]))
                .await
                .expect("extend");
        }
    })
    .await;
    let quote = rate(|i| {
        let tpm = tpm.clone();
        let selection = selection.clone();
        async move {
            tpm.quote(selection, sha256(&[&i.to_be_bytes()]).to_vec())
                .await
                .expect("quote");
        }
    })
    .await;
    let sign = rate(|i| {
        let tpm = tpm.clone();
        async move {
            tpm.sign(sha256(&[&i.to_be_bytes()])).await.expect("sign");
        }
    })
    .await;
    let nv_read = rate(|_| {
        let tpm = tpm.clone();
        async move {
            tpm.read_sealing_key().await.expect("read");
        }
    })
    .await;

    println!(
        "TPM layer on swtpm (TCP, loopback), {:?} per measurement",
        seconds()
    );
    println!("{:<44} {:>10} {:>12}", "operation", "ops/s", "x tpm2_quote");
    let rows = [
        ("tpm2_quote as a process (baseline)", baseline),
        ("PCR_Extend (sha256)", extend),
        ("quote: PCR_Read + Quote + verify (6 PCRs)", quote),
        ("statement-key sign (policy session)", sign),
        ("sealing-index read (salted, encrypted)", nv_read),
    ];
    for (name, ops) in rows {
        println!("{name:<44} {ops:>10.1} {:>12.1}", ops / baseline);
    }
}
