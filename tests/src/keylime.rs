//! Stock Keylime (registrar, verifier, tenant) for the fleet test: the programs installed by
//! `tests/fleet/install-keylime.sh`, run with the project's own configuration files
//! (`tests/fleet/keylime/*.conf`) from a private run directory (`KEYLIME_DIR`: databases,
//! the CA and certificates the verifier generates), on free loopback ports given to Keylime
//! as `KEYLIME_*` environment overrides. Each service runs in its own process group (the
//! verifier and registrar fork workers), killed as a whole on drop or when the test dies;
//! every service writes its log into the run directory.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;

/// The directory holding `keylime_registrar`, `keylime_verifier` and `keylime_tenant`:
/// `$ARBITER_KEYLIME_BIN`, or the venv that `tests/fleet/install-keylime.sh` creates.
pub fn bin_dir() -> PathBuf {
    let dir = match std::env::var_os("ARBITER_KEYLIME_BIN") {
        Some(d) => PathBuf::from(d),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
                });
            cache.join("arbiter-keylime/venv/bin")
        }
    };
    assert!(
        dir.join("keylime_verifier").exists(),
        "Keylime is not installed in {}: run tests/fleet/install-keylime.sh (make fleet-test does)",
        dir.display()
    );
    dir
}

/// The project's Keylime configuration files (`tests/fleet/keylime`).
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fleet/keylime")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

struct Service {
    name: &'static str,
    child: Child,
}

/// A running Keylime registrar and verifier, and the tenant that talks to them.
pub struct Keylime {
    bin: PathBuf,
    run_dir: PathBuf,
    cert_store: PathBuf,
    /// The verifier's port (HTTPS, mutual TLS).
    pub verifier_port: u16,
    /// The registrar's agent-facing port (plain HTTP).
    pub registrar_port: u16,
    /// The registrar's HTTPS port (verifier and tenant).
    pub registrar_tls_port: u16,
    services: Vec<Service>,
    extra_env: Vec<(String, String)>,
}

impl Keylime {
    /// Starts the verifier (which generates the CA and certificates in `run_dir/cv_ca`),
    /// then the registrar (which reuses them), and waits until both accept connections.
    /// `cert_store` is the tenant's `tpm_cert_store`: the issuers of the EK certificates.
    pub fn start(run_dir: &Path, cert_store: &Path) -> Self {
        Self::start_with(run_dir, cert_store, &[])
    }

    /// Like [`Keylime::start`], with more `KEYLIME_*` overrides for every program (for
    /// example `KEYLIME_VERIFIER_REVOCATIONS_ENABLED_REVOCATION_NOTIFICATIONS=[]`).
    pub fn start_with(run_dir: &Path, cert_store: &Path, extra_env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(run_dir).expect("creating the Keylime run directory");
        let mut k = Self {
            bin: bin_dir(),
            run_dir: run_dir.to_owned(),
            cert_store: cert_store.to_owned(),
            verifier_port: free_port(),
            registrar_port: free_port(),
            registrar_tls_port: free_port(),
            services: Vec::new(),
            extra_env: extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        k.spawn("verifier", "keylime_verifier");
        k.wait_port("verifier", k.verifier_port);
        k.spawn("registrar", "keylime_registrar");
        k.wait_port("registrar", k.registrar_port);
        k.wait_port("registrar", k.registrar_tls_port);
        k
    }

    /// The environment every Keylime program gets: the configuration files, the run
    /// directory and the ports.
    fn env(&self, cmd: &mut Command) {
        let conf = config_dir();
        for (component, file) in [
            ("VERIFIER", "verifier.conf"),
            ("REGISTRAR", "registrar.conf"),
            ("TENANT", "tenant.conf"),
            ("CA", "ca.conf"),
            ("LOGGING", "logging.conf"),
        ] {
            cmd.env(format!("KEYLIME_{component}_CONFIG"), conf.join(file));
        }
        cmd.env("KEYLIME_DIR", &self.run_dir)
            .env("KEYLIME_VERIFIER_PORT", self.verifier_port.to_string())
            .env(
                "KEYLIME_VERIFIER_REGISTRAR_PORT",
                self.registrar_tls_port.to_string(),
            )
            .env("KEYLIME_REGISTRAR_PORT", self.registrar_port.to_string())
            .env(
                "KEYLIME_REGISTRAR_TLS_PORT",
                self.registrar_tls_port.to_string(),
            )
            .env(
                "KEYLIME_TENANT_VERIFIER_PORT",
                self.verifier_port.to_string(),
            )
            .env(
                "KEYLIME_TENANT_REGISTRAR_PORT",
                self.registrar_tls_port.to_string(),
            )
            .env("KEYLIME_TENANT_TPM_CERT_STORE", &self.cert_store)
            // The shared-memory manager's socket: private to this run.
            .env("XDG_RUNTIME_DIR", &self.run_dir)
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.run_dir);
    }

    /// Starts a service as its own process group, led by a small shell that kills the whole
    /// group (the service and its forked workers) with SIGKILL when it gets SIGTERM: from
    /// [`Drop`], or from the kernel when the thread that started it dies in any way
    /// (`setpriv --pdeathsig`), so an interrupted or killed test leaves nothing running.
    /// Keylime's programs themselves ignore SIGTERM for many seconds.
    fn spawn(&mut self, name: &'static str, program: &str) {
        let log = std::fs::File::create(self.log_path(name)).expect("creating a Keylime log");
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "TERM", "--", "bash", "-c"])
            .arg("trap 'kill -KILL 0' TERM; \"$@\" & wait")
            .arg(format!("keylime-{name}"))
            .arg(self.bin.join(program));
        self.env(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .process_group(0);
        let child = crate::spawn(&mut cmd).unwrap_or_else(|e| panic!("starting {program}: {e}"));
        self.services.push(Service { name, child });
    }

    fn wait_port(&mut self, name: &str, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            for s in &mut self.services {
                if let Ok(Some(status)) = s.child.try_wait() {
                    panic!(
                        "keylime {} exited ({status}):\n{}",
                        s.name,
                        std::fs::read_to_string(self.run_dir.join(format!("{}.log", s.name)))
                            .unwrap_or_default()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "keylime {name} is not listening on {port} after 60 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The log file of a service (`verifier`, `registrar`, `tenant`).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.log"))
    }

    /// Every log of the run, one after the other, for a failure message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for name in ["verifier", "registrar", "tenant"] {
            let body = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
            text.push_str(&format!("===== keylime {name} log =====\n{body}\n"));
        }
        text
    }

    /// Keylime's CA certificate: the verifier's and tenant's client certificates chain to
    /// it, so the daemons trust it on their agent listeners.
    pub fn ca_certificate(&self) -> PathBuf {
        self.run_dir.join("cv_ca/cacert.crt")
    }

    /// The verifier's client certificate (chained to the CA), which the daemons also use
    /// to ask the verifier for their own status.
    pub fn client_certificate(&self) -> PathBuf {
        self.run_dir.join("cv_ca/client-cert.crt")
    }

    /// Its private key.
    pub fn client_key(&self) -> PathBuf {
        self.run_dir.join("cv_ca/client-private.pem")
    }

    /// The registrar's agent-facing URL.
    pub fn registrar_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.registrar_port)
    }

    /// The verifier's URL.
    pub fn verifier_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.verifier_port)
    }

    /// Runs `keylime_tenant ARGS`; its output is appended to the tenant log too.
    pub fn tenant(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(self.bin.join("keylime_tenant"));
        self.env(&mut cmd);
        let out = crate::output(cmd.args(args)).expect("running keylime_tenant");
        use std::io::Write as _;
        if let Ok(mut log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path("tenant"))
        {
            let _ = writeln!(
                log,
                "$ keylime_tenant {}\n{}{}({})",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                out.status
            );
        }
        out
    }

    /// GET on the verifier's REST API (API version 2.x) with the client certificate, as an
    /// operator's tooling would; the JSON answer (`{"code", "status", "results"}`).
    pub fn verifier_get(&self, path: &str) -> Value {
        self.https_get(self.verifier_port, path)
    }

    /// GET on the registrar's HTTPS API (API version 2.x), like [`Keylime::verifier_get`].
    pub fn registrar_get(&self, path: &str) -> Value {
        self.https_get(self.registrar_tls_port, path)
    }

    fn https_get(&self, port: u16, path: &str) -> Value {
        let out = crate::output(
            Command::new("curl")
                .args(["-sS", "--max-time", "10", "--cert"])
                .arg(self.client_certificate())
                .arg("--key")
                .arg(self.client_key())
                .arg("--cacert")
                .arg(self.ca_certificate())
                .arg(format!("https://127.0.0.1:{port}{path}")),
        )
        .expect("running curl: install it with `apt-get install -y curl`");
        assert!(
            out.status.success(),
            "GET {path} on port {port} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "the answer to {path} on port {port} is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The verifier's view of one agent (`results` of `GET /v2.x/agents/{uuid}`), or `None`
    /// when it does not know it.
    pub fn agent_status(&self, uuid: &str) -> Option<Value> {
        let v = self.verifier_get(&format!("/v2.6/agents/{uuid}"));
        (v["code"] == 200).then(|| v["results"].clone())
    }
}

impl Drop for Keylime {
    fn drop(&mut self) {
        // SIGTERM to each group's leading shell, which kills its whole group; SIGKILL to the
        // group as well for whatever is left after two seconds.
        for s in &self.services {
            let _ = killpg(Pid::from_raw(s.child.id() as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for s in &mut self.services {
            while Instant::now() < deadline && matches!(s.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = killpg(Pid::from_raw(s.child.id() as i32), Signal::SIGKILL);
            let _ = s.child.wait();
        }
    }
}
