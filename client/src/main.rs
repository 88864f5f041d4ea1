//! `arbiter`: the parties' command-line tool. Parses the command line and hands it to
//! [`cli::run`]; errors are printed with their causes and exit with status 1.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(
        args,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    ) {
        Ok(()) => ExitCode::SUCCESS,
        // `arbiter eventlog show FILE | head`: the reader went away; nothing to report.
        Err(e)
            if e.root_cause()
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("arbiter: {e:#}");
            ExitCode::FAILURE
        }
    }
}
