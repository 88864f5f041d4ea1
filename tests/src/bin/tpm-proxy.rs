//! `tpm-proxy`: the slow-TPM emulator and fault injector of `arbiter_tests::tpm_proxy` as a
//! program, so that any TPM client (`tpm2_quote`, another attestation agent, `arbiterd`) can
//! be pointed at it with `swtpm:host=HOST,port=PORT`.
//!
//! ```text
//! tpm-proxy --upstream 127.0.0.1:2321 --listen 127.0.0.1:2421 --latency default \
//!           --fault Quote=RETRYx3 --fault NV_Write=NV_RATE@0.1 --seed 7
//! ```

use std::net::SocketAddr;

use anyhow::Context as _;
use arbiter_tests::tpm_proxy::{Fault, LatencyTable, TpmProxy};
use clap::Parser;

/// A proxy in front of swtpm's TCP command port (and the control port after it) that
/// delays answers like a discrete TPM and injects TPM error codes.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// swtpm's command port (`--server type=tcp,port=P`); the control port must be P+1.
    #[arg(long)]
    upstream: SocketAddr,
    /// Where to listen for commands; the control port is the next one.
    #[arg(long)]
    listen: SocketAddr,
    /// `default` (a discrete TPM's latencies), `none`, or a file of `COMMAND MILLISECONDS`
    /// lines.
    #[arg(long, default_value = "default")]
    latency: String,
    /// `CMD=RC` (always), `CMD=RCxK` (the first K times) or `CMD=RC@p` (probability p), for
    /// example `Quote=RETRYx3`; repeatable.
    #[arg(long)]
    fault: Vec<Fault>,
    /// Seed for probabilistic faults.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let latency = match args.latency.as_str() {
        "default" => LatencyTable::discrete(),
        "none" => LatencyTable::none(),
        file => LatencyTable::parse(
            &std::fs::read_to_string(file)
                .with_context(|| format!("reading the latency table {file}"))?,
        )
        .with_context(|| format!("the latency table {file}"))?,
    };
    let _proxy = TpmProxy::start_on(args.listen, args.upstream, latency, args.fault, args.seed)
        .await
        .with_context(|| format!("listening on {} and the port after it", args.listen))?;
    eprintln!(
        "tpm-proxy: TCTI swtpm:host={},port={} -> {}",
        args.listen.ip(),
        args.listen.port(),
        args.upstream
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
