//! The `arbiterd` binary: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use arbiter_daemon::{selftest, tpm::TpmConfig};
use clap::{Parser, Subcommand};

/// Arbiter: an attested trusted third party for multi-party computation.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Exercise the TPM once: keys, sealing index, extend, quote, each verified in software
    /// and the quote by tpm2_checkquote.
    TpmSelftest {
        /// The TPM to use (device:/dev/tpmrm0, tabrmd, swtpm:host=127.0.0.1,port=2321).
        #[arg(long, default_value = "device:/dev/tpmrm0")]
        tcti: String,
        /// Start and provision a private software TPM (swtpm) instead.
        #[arg(long)]
        dev_swtpm: bool,
        /// Where to write the quote files for tpm2_checkquote.
        #[arg(long, default_value = "arbiter-selftest")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arbiterd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Cmd::TpmSelftest {
            tcti,
            dev_swtpm,
            out,
        } => runtime.block_on(selftest::run(
            selftest::Options {
                config: TpmConfig::with_tcti(tcti),
                dev_swtpm,
                out_dir: out,
            },
            &mut std::io::stdout(),
        ))?,
    }
    Ok(())
}
