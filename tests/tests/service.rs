//! `arbiterd` as the service manager and the operator see it: `check-config` validates a
//! configuration exactly as `run` loads it, and a failed start exits with the sysexits(3) code
//! of its cause — 78 for the configuration, 69 for a TPM that cannot be opened, 75 for a state
//! directory another daemon holds. The steps of a start reach the service manager as `STATUS=`
//! lines (what `systemctl status` shows), a degraded start with its reason. SIGHUP applies a
//! new `[access]` list at once and keeps the configuration in force when the file is invalid
//! or changes what needs a restart.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

use arbiter_client::http::PartyIdentity;
use arbiter_tests::TestTpm;
use arbiter_tests::daemon::{Party, arbiterd_path};
use arbiter_tests::process::{DaemonProcess, DaemonSpec};
use hyper::StatusCode;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

const EX_UNAVAILABLE: i32 = 69;
const EX_TEMPFAIL: i32 = 75;
const EX_CONFIG: i32 = 78;

fn operator_config(operator: &str) -> String {
    format!("[access]\noperators = [\"{operator}\"]\n")
}

#[test]
fn check_config_prints_the_effective_configuration_or_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("arbiterd.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:7443\"\n[limits]\nmax_connections = 64\n",
    )
    .unwrap();
    let out = Command::new(arbiterd_path())
        .args(["check-config", "--config"])
        .arg(&file)
        .args(["--set", "state_dir=\"/srv/arbiter\"", "--tcti", "tabrmd"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The effective configuration: the file, the overrides and every default, as TOML that
    // loads back to the same thing.
    let effective: toml::Table = toml::from_str(&stdout).unwrap();
    assert_eq!(effective["listen"].as_str(), Some("127.0.0.1:7443"));
    assert_eq!(effective["state_dir"].as_str(), Some("/srv/arbiter"));
    assert_eq!(effective["tpm"]["tcti"].as_str(), Some("tabrmd"));
    assert_eq!(
        effective["limits"]["max_connections"].as_integer(),
        Some(64)
    );
    assert_eq!(effective["tpm"]["application_pcr"].as_integer(), Some(23));
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, stdout.as_bytes()).unwrap();
    let again = Command::new(arbiterd_path())
        .args(["check-config", "--config"])
        .arg(&printed)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stdout), stdout);

    // A problem: the key named, exit 78, nothing on stdout.
    std::fs::write(&file, "[access]\noperators = \"not a list\"\n").unwrap();
    let out = Command::new(arbiterd_path())
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{stderr}");
    assert!(
        stderr.contains("invalid configuration") && stderr.contains("operators"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_bad_configuration_exits_78_with_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let refused = DaemonProcess::start_expecting_exit(DaemonSpec {
        state_dir: dir.path().join("daemon"),
        config: "[limits]\nmax_body_bytes = \"big\"\n".into(),
        tcti: Some("swtpm:host=127.0.0.1,port=1".into()),
        ..DaemonSpec::default()
    });
    assert_eq!(refused.status.code(), Some(EX_CONFIG), "{}", refused.log);
    assert!(
        refused.log.contains("invalid configuration") && refused.log.contains("max_body_bytes"),
        "{}",
        refused.log
    );
}

#[test]
fn a_tpm_that_cannot_be_opened_exits_69() {
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let refused = DaemonProcess::start_expecting_exit(DaemonSpec {
        state_dir: dir.path().join("daemon"),
        config: String::new(),
        tcti: Some(format!("swtpm:host=127.0.0.1,port={port}")),
        ..DaemonSpec::default()
    });
    assert_eq!(
        refused.status.code(),
        Some(EX_UNAVAILABLE),
        "{}",
        refused.log
    );
    assert!(
        refused.log.contains("cannot open the TPM"),
        "{}",
        refused.log
    );
}

#[test]
fn a_second_daemon_on_a_locked_state_directory_exits_75() {
    let tpm = TestTpm::start();
    let operator = PartyIdentity::generate("operator").unwrap();
    let spec = DaemonSpec {
        state_dir: tpm.path("daemon"),
        config: operator_config(&operator.identity().unwrap()),
        tcti: Some(tpm.tcti()),
        ..DaemonSpec::default()
    };
    let mut first = DaemonProcess::start(spec.clone());
    let refused = DaemonProcess::start_expecting_exit(spec);
    assert_eq!(refused.status.code(), Some(EX_TEMPFAIL), "{}", refused.log);
    assert!(
        refused
            .log
            .contains("another arbiterd is running on the state directory")
            && refused
                .log
                .contains(&format!("pid {}", first.pid().unwrap())),
        "{}",
        refused.log
    );
    // The first daemon was not disturbed.
    assert!(first.terminate().success(), "{}", first.log());
}

#[test]
fn the_start_reports_its_steps_as_status_lines_and_a_degraded_start_says_why() {
    let tpm = TestTpm::start();
    let operator = PartyIdentity::generate("operator").unwrap();
    let mut daemon = DaemonProcess::start(DaemonSpec {
        state_dir: tpm.path("daemon"),
        config: operator_config(&operator.identity().unwrap()),
        tcti: Some(tpm.tcti()),
        ..DaemonSpec::default()
    });
    let serving = format!("serving on https://127.0.0.1:{}", daemon.port());
    assert_eq!(
        daemon.statuses(),
        [
            format!("opening the TPM ({})", tpm.tcti()),
            "checking the measurement log against PCR 23".into(),
            "registering the function library".into(),
            serving.clone(),
        ]
    );
    assert!(daemon.terminate().success(), "{}", daemon.log());

    // Another firmware: the sealing index no longer opens, the start is degraded.
    tpm.tool_ok(
        "tpm2_pcrextend",
        &[&format!(
            "0:sha256={}",
            hex::encode(arbiter_tests::sha256(&[b"another firmware"]))
        )],
    );
    daemon.restart();
    let statuses = daemon.statuses();
    let last = statuses.last().unwrap();
    assert!(
        last.starts_with("degraded: ") && last.ends_with(&format!("; {serving}")),
        "{statuses:?}"
    );
    assert!(last.contains("PCR"), "the reason names the PCRs: {last}");
    assert!(daemon.terminate().success(), "{}", daemon.log());
}

/// Waits for a `STATUS=` line containing `needle` and returns it.
fn wait_status(daemon: &mut DaemonProcess, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(line) = daemon
            .statuses()
            .into_iter()
            .rev()
            .find(|s| s.contains(needle))
        {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no STATUS= with {needle:?}: {:?}\n{}",
            daemon.statuses(),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_applies_new_operators_and_keeps_the_configuration_on_a_change_needing_a_restart() {
    let tpm = TestTpm::start();
    let alice = PartyIdentity::generate("alice").unwrap();
    let bob = PartyIdentity::generate("bob").unwrap();
    let (alice_id, bob_id) = (alice.identity().unwrap(), bob.identity().unwrap());
    let state_dir = tpm.path("daemon");
    let config_file = state_dir.with_extension("toml");
    let mut daemon = DaemonProcess::start(DaemonSpec {
        state_dir: state_dir.clone(),
        config: operator_config(&alice_id),
        tcti: Some(tpm.tcti()),
        ..DaemonSpec::default()
    });
    let pid = Pid::from_raw(i32::try_from(daemon.pid().unwrap()).unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bob = Party::with_identity("bob", bob, &daemon.url());
    let register = |name: &str| {
        runtime.block_on(bob.post(
            "/v1/functions",
            json!({"name": name, "language": "rhai", "source": "fn compute(inputs) { 1 }\n"}),
        ))
    };
    let r = register("before");
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);

    // Bob becomes an operator: SIGHUP, as `systemctl reload` sends.
    let both = format!("[access]\noperators = [\"{alice_id}\", \"{bob_id}\"]\n");
    std::fs::write(&config_file, &both).unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    let line = wait_status(&mut daemon, "reloaded");
    assert!(
        line.contains("reloaded: access.operators changed"),
        "{line}"
    );
    assert!(line.starts_with("serving on https://"), "{line}");
    let r = register("after");
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);

    // A change that needs a restart, with Bob removed: refused whole, Bob still operator.
    std::fs::write(
        &config_file,
        format!(
            "{}\n[tpm]\napplication_pcr = 16\n",
            operator_config(&alice_id)
        ),
    )
    .unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    let line = wait_status(&mut daemon, "tpm.application_pcr");
    assert!(
        line.contains(
            "reload refused, configuration kept: tpm.application_pcr cannot change without a restart"
        ),
        "{line}"
    );
    let r = register("still");
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);

    // An invalid file: refused with the problem, nothing changed.
    std::fs::write(&config_file, "[access]\noperators = 5\n").unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    let line = wait_status(&mut daemon, "invalid configuration");
    assert!(
        line.contains("reload refused, configuration kept"),
        "{line}"
    );
    let r = register("again");
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert!(daemon.log().contains("reloaded: access.operators changed"));
    assert!(daemon.terminate().success(), "{}", daemon.log());
}

#[test]
fn a_daemon_that_cannot_lock_its_memory_refuses_to_start() {
    // Without CAP_IPC_LOCK and with a 64 KiB memlock limit, `mlockall` fails (ENOMEM):
    // the start stops, naming the two ways out, before anything is opened.
    let tpm = TestTpm::start();
    let operator = PartyIdentity::generate("operator").unwrap();
    let spec = DaemonSpec {
        state_dir: tpm.path("daemon"),
        config: operator_config(&operator.identity().unwrap()),
        tcti: Some(tpm.tcti()),
        memlock: Some(64 << 10),
        ..DaemonSpec::default()
    };
    let refused = DaemonProcess::start_expecting_exit(spec.clone());
    assert!(!refused.status.success(), "{}", refused.log);
    assert!(
        refused.log.contains("cannot lock memory")
            && refused.log.contains("LimitMEMLOCK=infinity")
            && refused.log.contains("danger.allow_unlocked_memory"),
        "{}",
        refused.log
    );
    assert!(
        !tpm.path("daemon").join("arbiter.db").exists(),
        "a refused start created the store"
    );
    // Allowed explicitly, the same start goes ahead and says that memory is not locked.
    let mut allowed = DaemonProcess::start(DaemonSpec {
        config: format!("{}[danger]\nallow_unlocked_memory = true\n", spec.config),
        ..spec
    });
    let log = allowed.log();
    assert!(log.contains("memory is not locked"), "{log}");
    assert!(allowed.terminate().success(), "{}", allowed.log());
}
