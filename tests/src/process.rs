//! `arbiterd run` as an operator runs it: a real process with its own configuration file,
//! state directory and (optionally) open-file limit, on a TPM that outlives it, stopped with
//! SIGTERM or killed with SIGKILL and started again. Readiness is systemd's: the test listens
//! on its own `NOTIFY_SOCKET` and waits for `READY=1`, as the service manager would, and keeps
//! the `STATUS=` lines the daemon sends there.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::daemon::arbiterd_path;

/// How `arbiterd run` is started.
#[derive(Debug, Clone, Default)]
pub struct DaemonSpec {
    /// `--state-dir`.
    pub state_dir: PathBuf,
    /// The configuration file's text (TOML).
    pub config: String,
    /// `--tcti`, or `None` with `dev_swtpm`.
    pub tcti: Option<String>,
    /// `--dev-swtpm`: the daemon's own software TPM.
    pub dev_swtpm: bool,
    /// The open-file limit to run under (`prlimit --nofile=N:N`), e.g. systemd's 1,024.
    pub nofile: Option<u64>,
    /// The locked-memory limit to run under (`prlimit --memlock=N:N`), without
    /// `CAP_IPC_LOCK` (dropped by `setpriv` when running as root, so that the limit holds).
    pub memlock: Option<u64>,
    /// Extra environment (e.g. `ARBITER_FAILPOINT`).
    pub env: Vec<(String, String)>,
    /// `CREDENTIALS_DIRECTORY`, as systemd sets it for a unit with credentials.
    pub credentials_directory: Option<PathBuf>,
}

/// A running (or stopped) `arbiterd` process; SIGKILLed on drop.
pub struct DaemonProcess {
    spec: DaemonSpec,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    notify: PathBuf,
    /// The notify socket of the current run, kept to read what comes after `READY=1`.
    socket: Option<UnixDatagram>,
    /// Every `STATUS=` value received, in order (all runs).
    statuses: Vec<String>,
    /// How the last run that did not become ready ended.
    exited: Option<ExitStatus>,
}

/// A start that failed: how the process exited and what it wrote.
#[derive(Debug)]
pub struct Refused {
    /// The exit status (`code()` is the sysexits code).
    pub status: ExitStatus,
    /// Everything the daemon wrote to stderr.
    pub log: String,
}

/// Whether this process runs as root (the effective uid of `/proc/self/status`).
fn effective_uid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl DaemonProcess {
    /// Starts the daemon on a free loopback port and waits for `READY=1`; panics with the
    /// daemon's log if it does not get there.
    pub fn start(spec: DaemonSpec) -> Self {
        let mut d = Self {
            port: free_port(),
            log: spec.state_dir.with_extension("log"),
            notify: spec.state_dir.with_extension("notify"),
            spec,
            child: None,
            socket: None,
            statuses: Vec::new(),
            exited: None,
        };
        if let Err(e) = d.launch() {
            panic!("arbiterd did not become ready: {e}");
        }
        d
    }

    /// Starts another daemon with the same spec and port, expecting it to fail: returns
    /// its log (everything it wrote) once it exited.
    pub fn start_expecting_failure(spec: DaemonSpec) -> String {
        Self::start_expecting_exit(spec).log
    }

    /// Starts a daemon expecting it to exit before `READY=1`: its exit status and log.
    pub fn start_expecting_exit(spec: DaemonSpec) -> Refused {
        let mut d = Self {
            port: free_port(),
            log: spec.state_dir.with_extension("second.log"),
            notify: spec.state_dir.with_extension("second.notify"),
            spec,
            child: None,
            socket: None,
            statuses: Vec::new(),
            exited: None,
        };
        match d.launch() {
            Ok(()) => panic!("arbiterd started but must be refused"),
            Err(e) => Refused {
                status: d
                    .exited
                    .unwrap_or_else(|| panic!("arbiterd did not exit: {e}")),
                log: d.log(),
            },
        }
    }

    /// Every `STATUS=` value the daemon sent so far (all runs), in order.
    pub fn statuses(&mut self) -> Vec<String> {
        if let Some(socket) = &self.socket {
            let mut buf = [0u8; 4096];
            socket
                .set_nonblocking(true)
                .expect("non-blocking notify socket");
            while let Ok(n) = socket.recv(&mut buf) {
                record_statuses(&mut self.statuses, &buf[..n]);
            }
            socket
                .set_nonblocking(false)
                .expect("blocking notify socket");
        }
        self.statuses.clone()
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The listening port (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the daemon wrote to stderr so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn launch(&mut self) -> Result<(), String> {
        let config_path = self.spec.state_dir.with_extension("toml");
        std::fs::write(&config_path, &self.spec.config).expect("writing the daemon config");
        let _ = std::fs::remove_file(&self.notify);
        let notify = UnixDatagram::bind(&self.notify).expect("binding NOTIFY_SOCKET");
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("socket timeout");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("daemon log file");
        // Wrappers that set what the daemon runs under, outermost first.
        let mut wrappers: Vec<String> = Vec::new();
        if let Some(n) = self.spec.memlock {
            // Root holds CAP_IPC_LOCK, which ignores the limit: drop it (setpriv needs
            // CAP_SETPCAP, which root has). Others never hold it.
            if effective_uid_is_root() {
                wrappers.extend(
                    [
                        "setpriv",
                        "--inh-caps=-ipc_lock",
                        "--bounding-set=-ipc_lock",
                        "--",
                    ]
                    .map(String::from),
                );
            }
            wrappers.push("prlimit".into());
            wrappers.push(format!("--memlock={n}:{n}"));
            wrappers.push("--".into());
        }
        if let Some(n) = self.spec.nofile {
            wrappers.push("prlimit".into());
            wrappers.push(format!("--nofile={n}:{n}"));
            wrappers.push("--".into());
        }
        let mut command = match wrappers.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(arbiterd_path());
                c
            }
            None => Command::new(arbiterd_path()),
        };
        command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--state-dir")
            .arg(&self.spec.state_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port));
        if let Some(tcti) = &self.spec.tcti {
            command.arg("--tcti").arg(tcti);
        }
        if self.spec.dev_swtpm {
            command.arg("--dev-swtpm");
        }
        match &self.spec.credentials_directory {
            Some(dir) => command.env("CREDENTIALS_DIRECTORY", dir),
            None => command.env_remove("CREDENTIALS_DIRECTORY"),
        };
        command
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .env("NOTIFY_SOCKET", &self.notify)
            .env("TSS2_LOG", "all+NONE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let child = crate::spawn(&mut command).expect("starting arbiterd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = notify.recv(&mut buf) {
                record_statuses(&mut self.statuses, &buf[..n]);
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
                {
                    self.socket = Some(notify);
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                self.exited = Some(status);
                // What it sent before exiting (its last STATUS= says why).
                notify
                    .set_nonblocking(true)
                    .expect("non-blocking notify socket");
                while let Ok(n) = notify.recv(&mut buf) {
                    record_statuses(&mut self.statuses, &buf[..n]);
                }
                return Err(format!("arbiterd exited ({status}):\n{}", self.log()));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("no READY=1 within 60 s:\n{}", self.log()));
            }
        }
    }

    /// Stops the daemon with SIGTERM (as `systemctl stop` does) and waits for it.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the daemon is running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("waiting for arbiterd") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "arbiterd did not stop within 30 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the daemon to exit by itself (a failpoint aborts it).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the daemon with SIGKILL (a crash, the watchdog, the OOM killer).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped daemon again on the same port and waits for `READY=1`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon first");
        if let Err(e) = self.launch() {
            panic!("arbiterd did not become ready again: {e}");
        }
    }
}

/// Appends the `STATUS=` values of one notification datagram.
fn record_statuses(statuses: &mut Vec<String>, datagram: &[u8]) {
    statuses.extend(
        String::from_utf8_lossy(datagram)
            .lines()
            .filter_map(|l| l.strip_prefix("STATUS="))
            .map(str::to_owned),
    );
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Process ids of running `swtpm` processes serving the state directory `dir`.
pub fn swtpm_pids_serving(dir: &Path) -> Vec<u32> {
    let needle = format!("dir={}", dir.display());
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // A zombie has an empty command line: it no longer serves anything.
        if args.first().is_some_and(|a| a.ends_with("swtpm")) && args.contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}
