//! The `arbiter` command line: its argument grammar (clap) and the dispatch to one module per
//! command group. Every command that talks to a daemon takes `--server`, `--cert`, `--key`,
//! `--pin-tls-spki`, `--state` and `--config`, with defaults from the environment and the
//! config file (see `arbiter_client::config`).

mod eventlog;
mod party;
mod policy;

use std::io::Write;
use std::path::PathBuf;

use arbiter_client::config::Overrides;
use clap::{Args, Parser, Subcommand};

/// Arbiter: check and use an attested trusted-third-party appliance.
///
/// A party enrols the appliance's attestation key once (`enroll`), then checks every
/// attestation against its own appraisal policy (`attest`), submits inputs only after a
/// trusted attestation (`submit`), and verifies signed results and destruction
/// certificates (`result`, `verify-destruction`). Exit status: 0 when every check passed,
/// 1 otherwise.
#[derive(Debug, Parser)]
#[command(name = "arbiter", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Connection and identity options (each also from the environment and the config file).
#[derive(Debug, Args)]
struct Global {
    /// The daemon, https://HOST:PORT [env ARBITER_SERVER; default https://127.0.0.1:8443].
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// This party's certificate (PEM) [env ARBITER_CERT; default STATE/identity/cert.pem].
    #[arg(long, global = true, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// This party's key (PKCS#8 PEM) [env ARBITER_KEY; default STATE/identity/key.pem].
    #[arg(long, global = true, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Refuse a daemon whose TLS certificate's SPKI SHA-256 is not HEX [env
    /// ARBITER_PIN_TLS_SPKI].
    #[arg(long, global = true, value_name = "HEX")]
    pin_tls_spki: Option<String>,
    /// The local state directory: trust store, receipts, saved certificates [env
    /// ARBITER_STATE; default ~/.config/arbiter].
    #[arg(long, global = true, value_name = "DIR")]
    state: Option<PathBuf>,
    /// The config file [env ARBITER_CONFIG; default STATE/config.toml].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Trust an appliance although the appraisal policy pins no reference value for its
    /// platform (no non-zero platform PCR value, no firmware-log rule): for development on
    /// a TPM with no firmware (swtpm) only. Every trusted verdict then prints a WARNING.
    /// The policy key `allow_unpinned_platform = true` does the same.
    #[arg(long, global = true)]
    allow_unpinned_platform: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// This party's identity: a key and self-signed client certificate.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Check that the daemon answers; prints the identity it sees for you.
    Health,
    /// Enrol the appliance: check each EK certificate against your CA certificates, the
    /// EK against the TCG template, activate a credential for the AK with it (proving the
    /// AK lives in that TPM), check the AK and the statement key's certification, and pin
    /// the AK in the local trust store.
    Enroll {
        /// CA certificates (PEM or DER; root and intermediates) the EK certificates must
        /// chain to.
        #[arg(long = "ek-ca", value_name = "FILE", required = true, num_args = 1..)]
        ek_ca: Vec<PathBuf>,
    },
    /// Attest the daemon: a fresh nonce, the quote checked and appraised against your
    /// policy; prints the verdict with every reason. Exits 1 when not trusted.
    Attest {
        /// Ask about this instance too (its key, manifest and function).
        #[arg(long, value_name = "ID")]
        instance: Option<String>,
        /// The appraisal policy (TOML, docs/appraisal.md) [env ARBITER_POLICY].
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Functions: list them, register one, or show one with its source (measurement
    /// checked).
    #[command(subcommand)]
    Function(FunctionCommand),
    /// List the functions the daemon offers (as `arbiter function list`): the shipped
    /// library and the registered ones, with their measurements.
    Functions {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Instances: create from a manifest, show, approve, evaluate.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Image upgrades (operators; docs/appliance.md): list the live instances, authorize
    /// the upgraded image's first start to seal afresh, or withdraw that.
    #[command(subcommand)]
    Upgrade(UpgradeCommand),
    /// Attest, then encrypt an input to the attested instance key (HPKE, docs/protocol.md) and
    /// submit it to the attested TLS key only; checks the receipt.
    Submit {
        /// The instance.
        #[arg(long, value_name = "ID")]
        instance: String,
        /// The slot.
        #[arg(long, value_name = "SLOT")]
        slot: String,
        /// The input as JSON text.
        #[arg(
            long,
            value_name = "JSON",
            conflicts_with = "file",
            required_unless_present = "file"
        )]
        value: Option<String>,
        /// A file holding the input as JSON (read once, never parsed into a copy).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// The function measurement you reviewed; the input is refused (here and by the
        /// daemon) for any other.
        #[arg(long, value_name = "SHA256")]
        expect_function: String,
        /// No upload progress on stderr.
        #[arg(long)]
        quiet: bool,
        /// The appraisal policy [env ARBITER_POLICY].
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Read an instance's result and verify its signature, its instance and that your
    /// inputs are listed.
    Result {
        /// The instance.
        id: String,
        /// Wait for the result (long polling, up to 300 s).
        #[arg(long)]
        wait: bool,
        /// The appraisal policy [env ARBITER_POLICY].
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Print the verified statement as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Destroy an instance now (the manifest's destroyers) and verify the certificate.
    Destroy {
        /// The instance.
        id: String,
        /// The appraisal policy [env ARBITER_POLICY].
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Verify an instance's certificate of destruction: signature, each of your receipts
    /// included under its signed inputs root, and the `instance_destroyed` record in a
    /// freshly quoted (or the saved) log.
    VerifyDestruction {
        /// The instance.
        id: String,
        /// The appraisal policy [env ARBITER_POLICY].
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Write an offline verification bundle for an instance: EK certificates, AK, a fresh
    /// trusted attestation with its logs and sealing index, the manifest, the function
    /// source, and the signed result and certificate of destruction where they exist.
    Bundle {
        /// The instance.
        id: String,
        /// Where to write the bundle (JSON).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The appraisal policy [env ARBITER_POLICY].
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Verify a bundle with no network; the verdict holds "as of" the TPM clock of its
    /// quote. Exits 1 unless every check passed.
    VerifyBundle {
        /// The bundle file.
        file: PathBuf,
        /// The appraisal policy (must pin the AK, or the AK enrolled for the bundle's
        /// server in the trust store is used) [env ARBITER_POLICY].
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Also check each EK certificate against these CA certificates.
        #[arg(long = "ek-ca", value_name = "FILE", num_args = 1..)]
        ek_ca: Vec<PathBuf>,
    },
    /// Inspect and replay event logs: firmware logs (`binary_bios_measurements`) or the
    /// daemon's measurement log (CEL-JSON, as JSON Lines or a JSON array).
    #[command(subcommand)]
    Eventlog(EventlogCommand),
    /// The fleet revocation (operators; docs/fleet.md): show it, or clear it once the
    /// appliance was checked.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Reference values: capture a policy from the appliance, explain what it pins,
    /// compare it with values built from the image (docs/appraisal.md).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Take a fresh attestation (checked like `attest`, the AK as enrolled) and write an
    /// appraisal policy with its platform PCR values and, from the firmware log when
    /// served, Secure Boot, the boot applications and the kernel command line, for a
    /// person to review. Nothing volatile is pinned: the same state, the same file.
    Capture {
        /// Where to write the policy (TOML).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Also save the firmware log served with the attestation (for `explain --log`).
        #[arg(long, value_name = "FILE")]
        log_out: Option<PathBuf>,
    },
    /// For each value a policy pins, the firmware events that produce it (with --log), or
    /// say that it cannot be explained without the log.
    Explain {
        /// The policy (TOML).
        file: PathBuf,
        /// The firmware event log (binary_bios_measurements).
        #[arg(long, value_name = "FIRMWARE_LOG")]
        log: Option<PathBuf>,
    },
    /// Check a captured policy against reference values computed from the image's build
    /// outputs; one line per value, exit status 1 on any mismatch.
    Compare {
        /// The captured policy (TOML).
        file: PathBuf,
        /// The reference values (TOML, docs/appraisal.md).
        #[arg(long, value_name = "REF.toml")]
        reference: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// Show whether Keylime's verifier revoked the appliance, why and since when.
    Status,
    /// Clear the revocation: the appliance accepts inputs and evaluations again.
    ClearRevocation,
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Create a P-256 key and a self-signed certificate in DIR (cert.pem, key.pem) and
    /// print the identity (SPKI SHA-256) to put in manifests.
    New {
        /// Where to write cert.pem and key.pem.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The certificate's common name.
        #[arg(long, default_value = "arbiter party")]
        name: String,
    },
    /// Print the identity of the configured certificate.
    Show,
}

#[derive(Debug, Subcommand)]
enum FunctionCommand {
    /// List the functions the daemon offers: name, sha256, id, library or registered.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Register a Rhai function (operators and function registrars); checks that the
    /// measurement is sha256 of the file.
    Register {
        /// The source file.
        file: PathBuf,
        /// Its name (default: the file name without extension).
        #[arg(long)]
        name: Option<String>,
    },
    /// Print a function's source and check its sha256 locally.
    Show {
        /// The function id.
        id: String,
        /// Print the function as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UpgradeCommand {
    /// List the live instances (their secrets are sealed to this boot chain) and the
    /// authorization in force.
    Status {
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Authorize the next start in another platform state (the upgraded image) to seal
    /// afresh; no instance is created until then. Refused while any instance is live.
    Authorize {
        /// Authorize even while instances are live: their inputs become unrecoverable.
        #[arg(long)]
        force: bool,
    },
    /// Withdraw the upgrade authorization.
    Withdraw,
}

#[derive(Debug, Subcommand)]
enum InstanceCommand {
    /// Create an instance from a manifest (JSON or TOML), validated here first.
    Create {
        /// The manifest file.
        manifest: PathBuf,
        /// Print only the instance id.
        #[arg(long)]
        quiet: bool,
    },
    /// Describe an instance (parties and operators); the manifest digest is checked.
    Show {
        /// The instance.
        id: String,
    },
    /// Approve an instance's manifest (explicit approval).
    Approve {
        /// The instance.
        id: String,
    },
    /// Evaluate now (explicit trigger; the manifest's evaluators).
    Evaluate {
        /// The instance.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum EventlogCommand {
    /// Replay a log and print the PCR values it gives. A firmware log's banks that some event
    /// carries no digest for are listed as incomplete, without values.
    Replay {
        /// The log file.
        file: PathBuf,
        /// Print `{"pcrs": {"<bank>": {"<pcr>": "<hex>"}}}`, plus `"incomplete": {"<bank>":
        /// {"first_event", "pcr", "events_lacking", "events"}}` when some bank is.
        #[arg(long)]
        json: bool,
    },
    /// List a log's events readably, with whether each event's data matches its digest.
    Show {
        /// The log file.
        file: PathBuf,
    },
}

impl Global {
    fn overrides(&self, policy: Option<PathBuf>) -> Overrides {
        Overrides {
            server: self.server.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            pin_tls_spki: self.pin_tls_spki.clone(),
            state: self.state.clone(),
            config: self.config.clone(),
            policy,
            allow_unpinned_platform: self.allow_unpinned_platform,
        }
    }
}

/// Run one command, writing results to `out` and warnings to `err`.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Eventlog(EventlogCommand::Replay { file, json }) => {
            eventlog::replay(&file, json, out, err)
        }
        Command::Eventlog(EventlogCommand::Show { file }) => eventlog::show(&file, out, err),
        Command::Policy(PolicyCommand::Capture { out: file, log_out }) => {
            policy::capture(g.overrides(None), &file, log_out.as_deref(), out)
        }
        Command::Policy(PolicyCommand::Explain { file, log }) => {
            policy::explain(&file, log.as_deref(), out)
        }
        Command::Policy(PolicyCommand::Compare { file, reference }) => {
            policy::compare(&file, &reference, out)
        }
        Command::Identity(IdentityCommand::New { out: dir, name }) => {
            party::identity_new(&dir, &name, out)
        }
        Command::Identity(IdentityCommand::Show) => party::identity_show(g.overrides(None), out),
        Command::Health => party::health(g.overrides(None), out),
        Command::Fleet(FleetCommand::Status) => party::fleet(g.overrides(None), false, out),
        Command::Fleet(FleetCommand::ClearRevocation) => party::fleet(g.overrides(None), true, out),
        Command::Enroll { ek_ca } => party::enroll(g.overrides(None), &ek_ca, out),
        Command::Attest {
            instance,
            policy,
            json,
        } => party::attest(g.overrides(policy), instance.as_deref(), json, out, err),
        Command::Function(FunctionCommand::List { json }) | Command::Functions { json } => {
            party::function_list(g.overrides(None), json, out)
        }
        Command::Function(FunctionCommand::Register { file, name }) => {
            party::function_register(g.overrides(None), &file, name, out)
        }
        Command::Function(FunctionCommand::Show { id, json }) => {
            party::function_show(g.overrides(None), &id, json, out)
        }
        Command::Instance(InstanceCommand::Create { manifest, quiet }) => {
            party::instance_create(g.overrides(None), &manifest, quiet, out)
        }
        Command::Upgrade(UpgradeCommand::Status { json }) => {
            party::upgrade_status(g.overrides(None), json, out)
        }
        Command::Upgrade(UpgradeCommand::Authorize { force }) => {
            party::upgrade_authorize(g.overrides(None), force, out)
        }
        Command::Upgrade(UpgradeCommand::Withdraw) => {
            party::upgrade_withdraw(g.overrides(None), out)
        }
        Command::Instance(InstanceCommand::Show { id }) => {
            party::instance_show(g.overrides(None), &id, out)
        }
        Command::Instance(InstanceCommand::Approve { id }) => {
            party::instance_approve(g.overrides(None), &id, out)
        }
        Command::Instance(InstanceCommand::Evaluate { id }) => {
            party::instance_evaluate(g.overrides(None), &id, out)
        }
        Command::Submit {
            instance,
            slot,
            value,
            file,
            expect_function,
            quiet,
            policy,
        } => party::submit(
            g.overrides(policy),
            party::SubmitArgs {
                instance: &instance,
                slot: &slot,
                value,
                file,
                expect_function: &expect_function,
                quiet,
            },
            out,
        ),
        Command::Bundle {
            id,
            out: file,
            policy,
        } => party::bundle(g.overrides(policy), &id, &file, out, err),
        Command::VerifyBundle {
            file,
            policy,
            ek_ca,
        } => party::verify_bundle(g.overrides(policy), &file, &ek_ca, out, err),
        Command::Result {
            id,
            wait,
            policy,
            json,
        } => party::result(g.overrides(policy), &id, wait, json, out, err),
        Command::Destroy { id, policy } => party::destroy(g.overrides(policy), &id, out, err),
        Command::VerifyDestruction { id, policy } => {
            party::verify_destruction(g.overrides(policy), &id, out, err)
        }
    }
}
