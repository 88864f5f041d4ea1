//! The `arbiterd` binary: parses the command line and hands over to the library.

mod exit;

use std::path::PathBuf;
use std::process::ExitCode;

use arbiter_daemon::config::{Config, ConfigError, LogFormat, LogSection};
use arbiter_daemon::{eval, logging, selftest, tpm::TpmConfig};
use clap::{Args, Parser, Subcommand};

/// Arbiter: an attested trusted third party for multi-party computation.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Where the configuration comes from: the same for `run` and `check-config`.
#[derive(Args, Clone)]
struct ConfigArgs {
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
}

impl ConfigArgs {
    /// Loads and validates the configuration with the overrides, the flags last.
    fn load(&self) -> Result<Config, ConfigError> {
        let mut overrides = self.overrides.clone();
        let quote = |v: &str| format!("{v:?}");
        if let Some(l) = &self.listen {
            overrides.push(format!("listen={}", quote(l)));
        }
        if let Some(d) = &self.state_dir {
            overrides.push(format!("state_dir={}", quote(&d.display().to_string())));
        }
        if let Some(t) = &self.tcti {
            overrides.push(format!("tpm.tcti={}", quote(t)));
        }
        Config::load(self.config.as_deref(), &overrides)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the HTTPS API (the daemon proper). Stops cleanly on SIGTERM or SIGINT; on
    /// SIGHUP re-reads the configuration and applies the `[access]` lists and the
    /// per-request `[limits]`, or keeps it all and says why.
    /// Exits with a sysexits(3) code on failure: 78 configuration, 69 TPM unavailable,
    /// 74 state directory or store, 75 another daemon holds the state directory, 70 other.
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// Development mode: provision and start a private software TPM (swtpm) whose
        /// state lives in STATE_DIR/swtpm, instead of using a hardware TPM.
        #[arg(long)]
        dev_swtpm: bool,
        /// Log format (overrides `log.format`): auto, journald, human or json.
        #[arg(long, value_name = "FORMAT")]
        log_format: Option<String>,
    },
    /// Load and validate the configuration as `run` would, print the effective
    /// configuration (TOML) and exit 0; or print the problem and exit 78 (EX_CONFIG).
    CheckConfig {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List the instances of the store that are not destroyed (their inputs are still
    /// held): one line each, `ID STATE CREATED_AT`, oldest first; nothing when none is live
    /// or there is no store. Reads the state directory only (no TPM, no daemon needed; run
    /// it as the state directory's owner). Exits 74 (EX_IOERR) when the store cannot be
    /// read, so a script never takes an unreadable store for an empty one.
    LiveInstances {
        #[command(flatten)]
        config: ConfigArgs,
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
        Err(e) => exit::report(&e),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Cmd::Run {
            mut config,
            dev_swtpm,
            log_format,
        } => {
            if let Some(format) = log_format {
                config.overrides.push(format!("log.format={format:?}"));
            }
            let loaded = config.load()?;
            let destination = logging::init(&loaded.log)?;
            tracing::debug!(?destination, "logging initialised");
            let reload = Box::new(move || config.load());
            runtime.block_on(arbiter_daemon::server::run_service(
                loaded, dev_swtpm, reload,
            ))?;
        }
        Cmd::CheckConfig { config } => {
            let config = config.load()?;
            print!("{}", toml::to_string(&config)?);
        }
        Cmd::LiveInstances { config } => {
            let config = config.load()?;
            let dir = &config.state_dir;
            match arbiter_daemon::store::offline::live_instances(dir)
                .map_err(|e| anyhow::Error::new(arbiter_daemon::engine::StartError::Store(e)))?
            {
                None => eprintln!("arbiterd: no store in {}", dir.display()),
                Some(live) => {
                    for i in &live {
                        println!("{} {} {}", i.id, i.state, i.created_at);
                    }
                    eprintln!(
                        "arbiterd: {} live instance(s) in {}",
                        live.len(),
                        dir.display()
                    );
                }
            }
        }
        Cmd::TpmSelftest {
            tcti,
            dev_swtpm,
            out,
        } => {
            // The self-test reports on stdout; the library's events go to stderr as lines.
            logging::init(&LogSection {
                format: LogFormat::Human,
                ..LogSection::default()
            })?;
            runtime.block_on(selftest::run(
                selftest::Options {
                    config: TpmConfig::with_tcti(tcti),
                    dev_swtpm,
                    out_dir: out,
                },
                &mut std::io::stdout(),
            ))?;
        }
        Cmd::Evaluate { .. } => anyhow::bail!("__evaluate runs before the runtime starts"),
    }
    Ok(())
}
