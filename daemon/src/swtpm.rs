//! A private software TPM (swtpm) for development mode, demos and tests.
//!
//! Owns the swtpm processes this program starts: provisioning a TPM state with EK
//! certificates from a private local CA (`swtpm_setup`), and running `swtpm socket` on its
//! own free TCP port pair and state directory, killed when the [`Swtpm`] is dropped.
//! tss-esapi 7.7 cannot reach swtpm over its unix socket, hence TCP on loopback.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a software TPM could not be provisioned or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwtpmError {
    /// A program of the swtpm packages is not installed.
    #[error(
        "`{program}` was not found: install the software TPM with \
         `apt-get install -y swtpm swtpm-tools`"
    )]
    NotInstalled {
        /// The missing program.
        program: &'static str,
    },
    /// A program ran but failed.
    #[error("`{program}` failed ({status}): {output}")]
    Failed {
        /// The program that failed.
        program: &'static str,
        /// Its exit status.
        status: String,
        /// The tail of its output.
        output: String,
    },
    /// swtpm did not accept connections in time.
    #[error("swtpm on port {port} did not start within {seconds} s; its log: {log}")]
    NotReady {
        /// The TPM command port.
        port: u16,
        /// How long we waited.
        seconds: u64,
        /// The tail of swtpm's log.
        log: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SwtpmError {
    let what = what.into();
    move |source| SwtpmError::Io { what, source }
}

fn run(program: &'static str, cmd: &mut Command) -> Result<(), SwtpmError> {
    // What `Command::output` does, with the spawn kept from inheriting a TPM connection.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = crate::tpm::spawn_without_tpm(|| cmd.spawn())
        .and_then(Child::wait_with_output)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                SwtpmError::NotInstalled { program }
            } else {
                SwtpmError::Io {
                    what: format!("running {program}"),
                    source: e,
                }
            }
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Err(SwtpmError::Failed {
        program,
        status: out.status.to_string(),
        output: tail(&text, 2000),
    })
}

fn tail(text: &str, max: usize) -> String {
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].trim().to_owned()
}

/// A provisioned TPM state: a directory holding swtpm's state file, and the private local
/// CA that signed its EK and platform certificates.
#[derive(Debug, Clone)]
pub struct ProvisionedState {
    /// The directory passed to `swtpm --tpmstate dir=`.
    pub state_dir: PathBuf,
    /// The local CA's root certificate (PEM), the trust anchor of the EK certificates.
    pub ca_root_pem: PathBuf,
    /// The local CA's intermediate (issuer) certificate (PEM).
    pub ca_issuer_pem: PathBuf,
}

impl ProvisionedState {
    /// Provisions a new TPM state under `dir` (created if missing): an RSA-2048 and an
    /// ECC P-384 EK with certificates in NV, a platform certificate, only the SHA-256 PCR
    /// bank active. Takes about two seconds on two cores.
    pub fn provision(dir: &Path) -> Result<Self, SwtpmError> {
        let state_dir = dir.join("state");
        let ca_dir = dir.join("ca");
        let certs_dir = dir.join("ek-certs");
        for d in [&state_dir, &ca_dir, &certs_dir] {
            fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        let setup_conf = dir.join("swtpm_setup.conf");
        let localca_conf = dir.join("swtpm-localca.conf");
        let localca_options = dir.join("swtpm-localca.options");
        let write = |path: &Path, text: String| {
            fs::write(path, text).map_err(io_err(format!("writing {}", path.display())))
        };
        write(
            &setup_conf,
            format!(
                "create_certs_tool = /usr/bin/swtpm_localca\n\
                 create_certs_tool_config = {}\n\
                 create_certs_tool_options = {}\n\
                 active_pcr_banks = sha256\n",
                localca_conf.display(),
                localca_options.display()
            ),
        )?;
        write(
            &localca_conf,
            format!(
                "statedir = {ca}\nsigningkey = {ca}/signkey.pem\n\
                 issuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
                ca = ca_dir.display()
            ),
        )?;
        write(
            &localca_options,
            "--platform-manufacturer Arbiter\n--platform-version 2.1\n--platform-model swtpm\n"
                .to_owned(),
        )?;
        run(
            "swtpm_setup",
            Command::new("swtpm_setup")
                .arg("--tpm2")
                .arg("--tpmstate")
                .arg(&state_dir)
                .arg("--config")
                .arg(&setup_conf)
                .args([
                    "--create-ek-cert",
                    "--create-platform-cert",
                    "--ecc",
                    "--lock-nvram",
                    "--overwrite",
                ])
                .arg("--write-ek-cert-files")
                .arg(&certs_dir),
        )?;
        Ok(Self {
            state_dir,
            ca_root_pem: ca_dir.join("swtpm-localca-rootca-cert.pem"),
            ca_issuer_pem: ca_dir.join("issuercert.pem"),
        })
    }

    /// Copies this state (TPM state and CA certificates) into `dir`, so several TPMs can
    /// start from one provisioning. The copies share the EK, as clones of one chip would.
    pub fn copy_to(&self, dir: &Path) -> Result<Self, SwtpmError> {
        let state_dir = dir.join("state");
        let ca_dir = dir.join("ca");
        for d in [&state_dir, &ca_dir] {
            fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        copy_files(&self.state_dir, &state_dir)?;
        let root = ca_dir.join("swtpm-localca-rootca-cert.pem");
        let issuer = ca_dir.join("issuercert.pem");
        fs::copy(&self.ca_root_pem, &root).map_err(io_err("copying the CA root"))?;
        fs::copy(&self.ca_issuer_pem, &issuer).map_err(io_err("copying the CA issuer"))?;
        Ok(Self {
            state_dir,
            ca_root_pem: root,
            ca_issuer_pem: issuer,
        })
    }
}

fn copy_files(from: &Path, to: &Path) -> Result<(), SwtpmError> {
    let entries = fs::read_dir(from).map_err(io_err(format!("reading {}", from.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(format!("reading {}", from.display())))?;
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            fs::copy(entry.path(), to.join(entry.file_name()))
                .map_err(io_err(format!("copying {}", entry.path().display())))?;
        }
    }
    Ok(())
}

/// Finds a free TCP port P on loopback whose neighbour P+1 is free too (swtpm's control
/// port must be the command port plus one).
///
/// Candidates are drawn below Linux's ephemeral range (32768 and up): the swtpm TCTI opens
/// one connection per command, and the thousands of client ports it leaves in TIME_WAIT
/// would make adjacent free pairs rare inside that range.
pub fn free_port_pair() -> Result<u16, SwtpmError> {
    for _ in 0..256 {
        let port = rand::random_range(20_000u16..32_000);
        let bind = |p: u16| TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p));
        if let (Ok(_a), Ok(_b)) = (bind(port), bind(port + 1)) {
            return Ok(port);
        }
    }
    Err(SwtpmError::Io {
        what: "finding two adjacent free loopback ports".into(),
        source: io::Error::new(
            io::ErrorKind::AddrInUse,
            "no free port pair in 20000..32000",
        ),
    })
}

/// A running `swtpm socket` process serving one TPM state on loopback TCP; killed on drop.
#[derive(Debug)]
pub struct Swtpm {
    child: Option<Child>,
    port: u16,
    state_dir: PathBuf,
    log: PathBuf,
    tied: bool,
}

impl Swtpm {
    /// Starts swtpm on `state_dir` with a fresh free port pair, and waits until it accepts
    /// connections. The TPM is started (`TPM2_Startup(CLEAR)`) by swtpm itself.
    pub fn start(state_dir: &Path) -> Result<Self, SwtpmError> {
        Self::start_any_port(state_dir, false)
    }

    /// Like [`Swtpm::start`], but swtpm is also killed when the calling thread's process
    /// dies in any way, `kill -9` included (`setpriv --pdeathsig KILL`): the development
    /// mode's TPM belongs to the daemon and must not outlive it. The parent-death signal
    /// follows the *thread* that started swtpm, so call this from a thread that lives as
    /// long as the daemon (`arbiterd run` calls it on the main thread).
    pub fn start_tied(state_dir: &Path) -> Result<Self, SwtpmError> {
        Self::start_any_port(state_dir, true)
    }

    fn start_any_port(state_dir: &Path, tied: bool) -> Result<Self, SwtpmError> {
        let mut last = None;
        for _ in 0..5 {
            let port = free_port_pair()?;
            match Self::launch(state_dir, port, tied) {
                Ok(tpm) => return Ok(tpm),
                // Another process may have taken the port in between: try another one.
                Err(e @ SwtpmError::NotReady { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(SwtpmError::NotReady {
            port: 0,
            seconds: 0,
            log: String::new(),
        }))
    }

    /// Starts swtpm on `state_dir` serving TCP port `port` (control port `port + 1`).
    pub fn start_on(state_dir: &Path, port: u16) -> Result<Self, SwtpmError> {
        Self::launch(state_dir, port, false)
    }

    fn launch(state_dir: &Path, port: u16, tied: bool) -> Result<Self, SwtpmError> {
        let log = state_dir.join("swtpm.log");
        let mut command = if tied {
            let mut c = Command::new("setpriv");
            c.args(["--pdeathsig", "KILL", "--", "swtpm"]);
            c
        } else {
            Command::new("swtpm")
        };
        command
            .arg("socket")
            .arg("--tpm2")
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .arg("--tpmstate")
            .arg(format!("dir={}", state_dir.display()))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .arg("--log")
            .arg(format!("file={},level=1", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // A swtpm started while a TPM command of this process is in flight (another
        // in-process daemon's) would hold that connection for its whole life.
        let child = crate::tpm::spawn_without_tpm(|| command.spawn()).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                SwtpmError::NotInstalled {
                    program: if tied { "setpriv" } else { "swtpm" },
                }
            } else {
                SwtpmError::Io {
                    what: "starting swtpm".into(),
                    source: e,
                }
            }
        })?;
        let mut tpm = Self {
            child: Some(child),
            port,
            state_dir: state_dir.to_owned(),
            log,
            tied,
        };
        tpm.wait_ready(Duration::from_secs(10))?;
        Ok(tpm)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), SwtpmError> {
        let deadline = Instant::now() + timeout;
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port);
        loop {
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(_))) | None => true,
                Some(Ok(None)) => false,
                Some(Err(e)) => return Err(io_err("waiting for swtpm")(e)),
            };
            if !exited
                && TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            if exited || Instant::now() > deadline {
                self.kill();
                return Err(SwtpmError::NotReady {
                    port: self.port,
                    seconds: timeout.as_secs(),
                    log: tail(&fs::read_to_string(&self.log).unwrap_or_default(), 2000),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The TCTI string that reaches this TPM.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The TPM command port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The state directory this swtpm serves.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Whether the swtpm process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Kills the process (as a crash or power loss would) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Killing an already exited child fails harmlessly; wait reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills swtpm and starts it again on the same state and port: a TPM restart, so PCRs
    /// reset, transient objects vanish and the reset count grows; persistent objects and NV
    /// stay.
    pub fn restart(&mut self) -> Result<(), SwtpmError> {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        // The kernel may keep the old listening socket a moment; retry until it binds.
        loop {
            match Self::launch(&self.state_dir, self.port, self.tied) {
                Ok(mut fresh) => {
                    self.child = fresh.child.take();
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.kill();
    }
}
