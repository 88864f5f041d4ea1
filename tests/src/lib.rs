//! Test support for Arbiter: a private software TPM per test.
//!
//! The first test of a test binary provisions one swtpm state with EK certificates from a
//! private local CA (`swtpm_setup`, about two seconds); every test then copies that state
//! into its own temporary directory and starts its own `swtpm` on a free TCP port pair,
//! killed when the [`TestTpm`] is dropped, so tests run in parallel without sharing a TPM.
//! Helpers run tpm2-tools against the same TPM, as an outside verifier would.
//!
//! A test process hosts in-process daemons, so every child it starts is spawned through
//! [`arbiter_daemon::tpm::spawn_without_tpm`] ([`output`], [`spawn`]): a child forked
//! while one of those daemons has a swtpm command in flight would hold that connection
//! and stall the daemon's TPM until the child exits (docs/reliability.md).

#![forbid(unsafe_code)]
// Test support: failing loudly with the reason is this crate's job.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

pub mod cli;
pub mod contract;
pub mod daemon;
pub mod fault_load;
pub mod keylime;
pub mod library;
pub mod load;
pub mod process;
pub mod state;
pub mod tpm_proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use arbiter_daemon::swtpm::{ProvisionedState, Swtpm};
use arbiter_daemon::tpm::TpmConfig;
use tempfile::TempDir;

/// The provisioned template state of this test binary.
fn template() -> &'static ProvisionedState {
    static TEMPLATE: OnceLock<ProvisionedState> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        // One directory per test binary run; removed when the next run of the same binary
        // starts, since statics are never dropped.
        let dir = std::env::temp_dir().join(format!(
            "arbiter-swtpm-template-{}",
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "tests".into())
        ));
        let _ = std::fs::remove_dir_all(&dir);
        ProvisionedState::provision(&dir)
            .unwrap_or_else(|e| panic!("cannot provision the template software TPM: {e}"))
    })
}

/// A private, provisioned swtpm for one test, killed on drop.
pub struct TestTpm {
    /// The running swtpm.
    pub swtpm: Swtpm,
    /// Its state (a copy of the template) and CA certificates.
    pub state: ProvisionedState,
    dir: TempDir,
}

impl TestTpm {
    /// Starts a fresh private TPM from the provisioned template.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("arbiter-tpm-")
            .tempdir()
            .expect("creating a temporary directory");
        let state = template()
            .copy_to(dir.path())
            .unwrap_or_else(|e| panic!("copying the template TPM state: {e}"));
        let swtpm =
            Swtpm::start(&state.state_dir).unwrap_or_else(|e| panic!("starting swtpm: {e}"));
        Self { swtpm, state, dir }
    }

    /// The TCTI that reaches this TPM.
    pub fn tcti(&self) -> String {
        self.swtpm.tcti()
    }

    /// A TPM layer configuration with default handles and PCRs for this TPM.
    pub fn config(&self) -> TpmConfig {
        TpmConfig::with_tcti(self.tcti())
    }

    /// A scratch directory that lives as long as this TPM.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a tpm2-tools program against this TPM and returns its output.
    pub fn tool(&self, program: &str, args: &[&str]) -> Output {
        output(
            Command::new(program)
                .args(args)
                .env("TPM2TOOLS_TCTI", self.tcti())
                .env("TSS2_LOG", "all+NONE"),
        )
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install it with `apt-get install -y tpm2-tools`")
        })
    }

    /// `tpm2_makecredential` offline (no TPM) for the EK whose `TPM2B_PUBLIC` is
    /// `ek_tpm2b` and the object named `name` (hex): returns the `TPM2B_ID_OBJECT` and the
    /// `TPM2B_ENCRYPTED_SECRET`, as `POST /v1/tpm/activate-credential` takes them.
    pub fn make_credential(
        &self,
        ek_tpm2b: &[u8],
        name: &str,
        secret: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        let tag = sha256(&[ek_tpm2b, name.as_bytes(), secret]);
        let tag = hex::encode(&tag[..8]);
        let ek_pub = self.path(&format!("credential-{tag}.ek"));
        let secret_file = self.path(&format!("credential-{tag}.secret"));
        let out = self.path(&format!("credential-{tag}.out"));
        std::fs::write(&ek_pub, ek_tpm2b).unwrap();
        std::fs::write(&secret_file, secret).unwrap();
        self.tool_ok(
            "tpm2_makecredential",
            &[
                "-T",
                "none",
                "-u",
                &ek_pub.display().to_string(),
                "-s",
                &secret_file.display().to_string(),
                "-n",
                name,
                "-o",
                &out.display().to_string(),
            ],
        );
        // tpm2-tools' file: magic (4), version (4), TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
        let file = std::fs::read(&out).unwrap();
        let body = &file[8..];
        let id_len = usize::from(u16::from_be_bytes([body[0], body[1]])) + 2;
        let (blob, enc) = body.split_at(id_len);
        (blob.to_vec(), enc.to_vec())
    }

    /// Runs a tpm2-tools program and panics with its output unless it succeeds.
    pub fn tool_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.tool(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// `cmd.output()` (stdin from /dev/null), spawned so that the child inherits no TPM
/// connection of a daemon running in this process.
pub fn output(cmd: &mut Command) -> std::io::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn(cmd)?.wait_with_output()
}

/// `cmd.spawn()`, so that the child inherits no TPM connection of a daemon running in this
/// process.
pub fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    arbiter_daemon::tpm::spawn_without_tpm(|| cmd.spawn())
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Decodes a JSON string of standard base64 (with padding).
pub fn b64d(v: &serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("a base64 string"))
        .expect("valid base64")
}

/// Checks the quote of an attestation answer as an outside verifier does — the AK's
/// signature over `TPMS_ATTEST`, the Merkle root as qualifying data, the PCR digest over the
/// values served — and returns the AK and those PCR values.
pub fn verified_quote(
    att: &serde_json::Value,
) -> (arbiter_policy::Public, arbiter_policy::PcrValues) {
    let ak = arbiter_policy::Public::from_tpm2b(&b64d(&att["ak"]["tpm2b_public"]))
        .expect("the AK's TPM2B_PUBLIC");
    let mut pcrs = arbiter_policy::PcrValues::new();
    for (k, v) in att["quote"]["pcrs"]["sha256"]
        .as_object()
        .expect("quoted SHA-256 PCRs")
    {
        let bytes: [u8; 32] = hex::decode(v.as_str().expect("hex"))
            .expect("hex")
            .try_into()
            .expect("32 bytes");
        pcrs.insert(k.parse().expect("a PCR index"), bytes);
    }
    let root = hex::decode(att["binding"]["root"].as_str().expect("the root")).expect("hex");
    arbiter_policy::verify_quote(
        &b64d(&att["quote"]["attest"]),
        &b64d(&att["quote"]["signature"]),
        &ak,
        &root,
        &pcrs,
    )
    .expect("the quote verifies");
    (ak, pcrs)
}
