//! The `arbiterd` binary: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use arbiter_daemon::{eval, selftest, tpm::TpmConfig};
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
    /// Serve the HTTPS API (the daemon proper). Stops cleanly on SIGTERM or SIGINT.
    Run {
        /// Configuration file (default /etc/arbiter/arbiterd.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override any configuration key: KEY=VALUE, e.g. tpm.tcti="device:/dev/tpm0".
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Listen address (overrides `listen`).
        #[arg(long)]
        listen: Option<String>,
        /// State directory (overrides `state_dir`).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// TCTI (overrides `tpm.tcti`).
        #[arg(long)]
        tcti: Option<String>,
        /// Development mode: provision and start a private software TPM (swtpm) whose
        /// state lives in STATE_DIR/swtpm, instead of using a hardware TPM.
        #[arg(long)]
        dev_swtpm: bool,
    },
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
    /// The evaluation sandbox's child process (started by the daemon itself).
    #[command(hide = true, name = "__evaluate")]
    Evaluate {
        /// Run a sandbox self-test instead of the script (test suite only).
        #[arg(long)]
        selftest: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Evaluate { .. } = cli.command {
        // No runtime, no threads: the child sets itself up.
        return eval::child_main();
    }
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
        Cmd::Run {
            config,
            mut overrides,
            listen,
            state_dir,
            tcti,
            dev_swtpm,
        } => {
            let quote = |v: &str| format!("{v:?}");
            if let Some(l) = listen {
                overrides.push(format!("listen={}", quote(&l)));
            }
            if let Some(d) = state_dir {
                overrides.push(format!("state_dir={}", quote(&d.display().to_string())));
            }
            if let Some(t) = tcti {
                overrides.push(format!("tpm.tcti={}", quote(&t)));
            }
            let config = arbiter_daemon::config::Config::load(config.as_deref(), &overrides)?;
            runtime.block_on(arbiter_daemon::server::run_service(config, dev_swtpm))?;
        }
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
        Cmd::Evaluate { .. } => anyhow::bail!("__evaluate runs before the runtime starts"),
    }
    Ok(())
}
