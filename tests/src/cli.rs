//! The `arbiter` CLI binary as a party runs it: one state directory per party (identity,
//! config, trust store), commands run as child processes, output captured.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `arbiter` binary: `$ARBITER`, or the one cargo built next to `arbiterd`.
pub fn arbiter_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ARBITER") {
        return PathBuf::from(p);
    }
    let path = crate::daemon::arbiterd_path().with_file_name("arbiter");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p arbiter-client` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// A party that uses the CLI, with its own state directory.
pub struct CliParty {
    /// Its name.
    pub name: String,
    /// Its state directory (`--state`).
    pub state: PathBuf,
    /// Its identity (SPKI SHA-256), as `arbiter identity new` printed it.
    pub id: String,
}

impl CliParty {
    /// Creates the party's identity with `arbiter identity new` under `dir/name` and a
    /// config file naming `server`.
    pub fn new(dir: &Path, name: &str, server: &str) -> Self {
        let state = dir.join(name);
        let out = crate::output(
            Command::new(arbiter_path())
                .args(["identity", "new", "--name", name, "--out"])
                .arg(state.join("identity")),
        )
        .expect("running arbiter");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        std::fs::write(
            state.join("config.toml"),
            format!(
                "server = \"{server}\"\ncert = \"identity/cert.pem\"\nkey = \"identity/key.pem\"\n"
            ),
        )
        .expect("writing the config");
        Self {
            name: name.to_owned(),
            state,
            id,
        }
    }

    /// The party's identity as loaded for in-process use.
    pub fn identity(&self) -> arbiter_client::http::PartyIdentity {
        let cert = std::fs::read(self.state.join("identity/cert.pem")).expect("cert");
        let key = std::fs::read(self.state.join("identity/key.pem")).expect("key");
        arbiter_client::http::PartyIdentity::from_pem(&cert, &key).expect("identity")
    }

    /// Runs `arbiter ARGS` with this party's state directory (blocking).
    pub fn run(&self, args: &[&str]) -> Output {
        crate::output(
            Command::new(arbiter_path())
                .args(args)
                .env("ARBITER_STATE", &self.state)
                .env_remove("ARBITER_SERVER")
                .env_remove("ARBITER_CERT")
                .env_remove("ARBITER_KEY")
                .env_remove("ARBITER_PIN_TLS_SPKI")
                .env_remove("ARBITER_CONFIG")
                .env_remove("ARBITER_POLICY"),
        )
        .expect("running arbiter")
    }

    /// Runs a command that must succeed; returns its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{} `arbiter {}` failed:\n{}{}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail; returns standard output and error together.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "{} `arbiter {}` succeeded but must fail:\n{text}",
            self.name,
            args.join(" ")
        );
        text
    }
}
