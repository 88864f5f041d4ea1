//! The `arbiter` command line: its argument grammar (clap) and the dispatch to one module per
//! command group.

mod eventlog;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Arbiter: check and use an attested trusted-third-party appliance.
#[derive(Debug, Parser)]
#[command(name = "arbiter", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect and replay event logs: firmware logs (`binary_bios_measurements`) or the
    /// daemon's measurement log (CEL-JSON, as JSON Lines or a JSON array).
    #[command(subcommand)]
    Eventlog(EventlogCommand),
}

#[derive(Debug, Subcommand)]
enum EventlogCommand {
    /// Replay a log and print the PCR values it gives.
    Replay {
        /// The log file.
        file: PathBuf,
        /// Print `{"pcrs": {"<bank>": {"<pcr>": "<hex>"}}}`.
        #[arg(long)]
        json: bool,
    },
    /// List a log's events readably, with whether each event's data matches its digest.
    Show {
        /// The log file.
        file: PathBuf,
    },
}

/// Run one command, writing results to `out` and warnings to `err`.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Eventlog(EventlogCommand::Replay { file, json }) => {
            eventlog::replay(&file, json, out, err)
        }
        Command::Eventlog(EventlogCommand::Show { file }) => eventlog::show(&file, out, err),
    }
}
