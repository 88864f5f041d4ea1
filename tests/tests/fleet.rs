//! The fleet test (`make fleet-test`, docs/fleet.md): three `arbiterd` on three software
//! TPMs, each with its own EK (two RSA-2048, one ECC P-384) and its `[keylime]` agent
//! interface on, continuously attested by a stock Keylime 7.14.3 registrar and verifier
//! installed from PyPI (`tests/fleet/install-keylime.sh`) and configured by the project's
//! own files (`tests/fleet/keylime`). The tenant enrols each appliance with a TPM policy on
//! platform PCR 4; after several good quote rounds each, PCR 4 is extended on one TPM from
//! outside while its daemon runs: the verifier flags that one only (`invalid_pcr_4`), its
//! daemon enters the degraded state (`/healthz`, `arbiter attest` says NOT USABLE), and
//! functions registered on the other two (PCR 23 changes) leave them attested.
//!
//! Ignored by `cargo test` (it needs Keylime installed and takes about a minute): run it
//! with `make fleet-test`. Every process is stopped on exit, pass or fail; on failure the
//! logs of every component are printed and the run directory is kept.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use arbiter_daemon::swtpm::{ProvisionedState, Swtpm};
use arbiter_tests::cli::CliParty;
use arbiter_tests::keylime::{Keylime, free_port};
use arbiter_tests::process::{DaemonProcess, DaemonSpec};
use serde_json::Value;

/// How many good quote rounds each appliance shows before and after the change.
const ROUNDS: u64 = 3;

/// One appliance: its TPM, its daemon, its operator (a CLI party) and its agent UUID.
struct Appliance {
    name: String,
    uuid: String,
    tpm: Swtpm,
    state: ProvisionedState,
    daemon: DaemonProcess,
    operator: CliParty,
    party: CliParty,
}

impl Appliance {
    /// Runs a tpm2-tools program against this appliance's TPM, from outside the daemon.
    fn tool(&self, program: &str, args: &[&str]) -> String {
        let out = std::process::Command::new(program)
            .args(args)
            .env("TPM2TOOLS_TCTI", self.tpm.tcti())
            .env("TSS2_LOG", "all+NONE")
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {program} ({e}): apt-get install -y tpm2-tools")
            });
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The current SHA-256 value of a PCR, hex.
    fn pcr(&self, index: u32, scratch: &Path) -> String {
        let file = scratch.join(format!("{}-pcr{index}.bin", self.name));
        self.tool(
            "tpm2_pcrread",
            &[&format!("sha256:{index}"), "-o", file.to_str().unwrap()],
        );
        hex::encode(std::fs::read(file).unwrap())
    }

    /// `/healthz` as the operator sees it (any authenticated client may ask; the daemon's
    /// certificate is not checked here, only its answer is read).
    fn healthz(&self) -> Value {
        let id = self.operator.state.join("identity");
        let out = std::process::Command::new("curl")
            .args(["-sSk", "--max-time", "10", "--cert"])
            .arg(id.join("cert.pem"))
            .arg("--key")
            .arg(id.join("key.pem"))
            .arg(format!("{}/healthz", self.daemon.url()))
            .output()
            .expect("running curl");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }
}

/// Everything the test started, stopped on drop in reverse order (daemons, Keylime, TPMs);
/// on a failure it prints every log and keeps the run directory.
struct Fleet {
    appliances: Vec<Appliance>,
    keylime: Option<Keylime>,
    dir: Option<tempfile::TempDir>,
}

impl Fleet {
    fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        if let Some(k) = &self.keylime {
            text.push_str(&k.logs());
        }
        for a in &self.appliances {
            text.push_str(&format!(
                "===== {} arbiterd log =====\n{}\n",
                a.name,
                a.daemon.log()
            ));
        }
        text
    }

    /// Waits up to `timeout` for `check` to return `Some`, polling every half second;
    /// panics with `what` and every log otherwise.
    fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn keylime(&self) -> &Keylime {
        self.keylime.as_ref().unwrap()
    }

    /// The verifier's view of an appliance.
    fn status(&self, a: &Appliance) -> Option<Value> {
        self.keylime().agent_status(&a.uuid)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
            if let Some(dir) = self.dir.take() {
                eprintln!("fleet test run directory kept: {}", dir.keep().display());
            }
        }
        // Daemons first (they talk to Keylime and their TPMs), then Keylime, then the TPMs.
        for a in &mut self.appliances {
            a.daemon.kill();
        }
        self.keylime = None;
        self.appliances.clear();
    }
}

/// The AK name a CLI party pinned at enrolment (its trust store, `trust.json`).
fn pinned_ak_name(party: &CliParty) -> String {
    let trust: Value =
        serde_json::from_slice(&std::fs::read(party.state.join("trust.json")).unwrap()).unwrap();
    fn find(v: &Value) -> Option<String> {
        match v {
            Value::Object(m) => m
                .get("ak_name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| m.values().find_map(find)),
            _ => None,
        }
    }
    find(&trust).unwrap_or_else(|| panic!("no pinned AK in {trust}"))
}

fn pcr4_policy(pcr4: &str) -> String {
    serde_json::json!({ "4": [pcr4] }).to_string()
}

/// How the flagged appliance's daemon is to learn of its revocation.
#[derive(Clone, Copy, PartialEq)]
enum RevocationPath {
    /// The verifier's `agent` notifier on (tests/fleet/keylime/verifier.conf) and the
    /// daemons polling too, as docs/fleet.md recommends: the healthy agents get a
    /// notification naming the flagged one and must ignore it; the flagged one learns it
    /// by whichever comes first (in 7.14.3 the notifier reaches the failed agent too).
    Notification,
    /// No notifier: the daemon learns it only by polling the verifier for its own status.
    Polling,
}

#[test]
#[ignore = "needs stock Keylime (tests/fleet/install-keylime.sh): run `make fleet-test`"]
fn three_appliances_one_flagged_learns_it_from_keylimes_notification() {
    fleet_scenario(RevocationPath::Notification);
}

#[test]
#[ignore = "needs stock Keylime (tests/fleet/install-keylime.sh): run `make fleet-test`"]
fn three_appliances_one_flagged_learns_it_by_polling_the_verifier() {
    fleet_scenario(RevocationPath::Polling);
}

/// Three appliances attested by Keylime, one flagged after a platform change and degraded,
/// the others unaffected (the module's description), with the revocation reaching the
/// flagged daemon by `path`.
fn fleet_scenario(path: RevocationPath) {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("arbiter-fleet-")
        .tempdir()
        .unwrap();
    let mut fleet = Fleet {
        appliances: Vec::new(),
        keylime: None,
        dir: Some(dir),
    };
    let run = fleet.dir().to_owned();

    // Three TPMs, each provisioned on its own (own EKs, own local CA). The tenant's TPM
    // certificate store holds each local CA's issuer: Keylime checks that an EK certificate
    // is signed by a certificate in the store (one level, not a chain to a root).
    let store = run.join("tpm_cert_store");
    std::fs::create_dir_all(&store).unwrap();
    let mut tpms = Vec::new();
    for i in 1..=3 {
        let state = ProvisionedState::provision(&run.join(format!("tpm{i}")))
            .unwrap_or_else(|e| panic!("provisioning TPM {i}: {e}"));
        std::fs::copy(
            &state.ca_issuer_pem,
            store.join(format!("tpm{i}-issuer.pem")),
        )
        .unwrap();
        std::fs::copy(&state.ca_root_pem, store.join(format!("tpm{i}-root.pem"))).unwrap();
        // Tied: killed by the kernel too if this test dies without unwinding.
        let tpm = Swtpm::start_tied(&state.state_dir).unwrap_or_else(|e| panic!("swtpm {i}: {e}"));
        tpms.push((tpm, state));
    }

    let no_notifier = [(
        "KEYLIME_VERIFIER_REVOCATIONS_ENABLED_REVOCATION_NOTIFICATIONS",
        "[]",
    )];
    let keylime = Keylime::start_with(
        &run.join("keylime"),
        &store,
        if path == RevocationPath::Polling {
            &no_notifier
        } else {
            &[]
        },
    );
    eprintln!(
        "fleet: Keylime registrar on {} and verifier on {} after {:?}",
        keylime.registrar_url(),
        keylime.verifier_url(),
        started.elapsed()
    );
    let (ca, registrar, verifier, cert, key) = (
        keylime.ca_certificate(),
        keylime.registrar_url(),
        keylime.verifier_url(),
        keylime.client_certificate(),
        keylime.client_key(),
    );
    // From here on a failure prints Keylime's logs too.
    fleet.keylime = Some(keylime);

    // Three daemons, their Keylime agent interfaces pointing at the registrar, trusting
    // Keylime's CA, polling the verifier for their own status.
    for (i, (tpm, state)) in tpms.into_iter().enumerate() {
        let name = format!("appliance{}", i + 1);
        let parties = run.join(format!("{name}-parties"));
        let operator = CliParty::new(&parties, "operator", "https://placeholder:1");
        let uuid = format!("a7b17e00-f1ee-4000-8000-{:012x}", i + 1);
        let ek = if i == 2 { "ecc-p384" } else { "rsa2048" };
        let config = format!(
            "[access]\noperators = [\"{op}\"]\n\n\
             [keylime]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\nuuid = \"{uuid}\"\n\
             ek = \"{ek}\"\nca_certificate = \"{ca}\"\nregistrar = \"{registrar}\"\n\
             verifier = \"{verifier}\"\nclient_certificate = \"{cert}\"\nclient_key = \"{key}\"\n\
             poll_interval_seconds = 1\n",
            op = operator.id,
            port = free_port(),
            ca = ca.display(),
            cert = cert.display(),
            key = key.display(),
        );
        let daemon = DaemonProcess::start(DaemonSpec {
            state_dir: run.join(format!("{name}-state")),
            config,
            tcti: Some(tpm.tcti()),
            ..DaemonSpec::default()
        });
        let url = daemon.url();
        std::fs::write(
            operator.state.join("config.toml"),
            format!(
                "server = \"{url}\"\ncert = \"identity/cert.pem\"\nkey = \"identity/key.pem\"\n"
            ),
        )
        .unwrap();
        let party = CliParty::new(&parties, "alice", &url);
        fleet.appliances.push(Appliance {
            name,
            uuid,
            tpm,
            state,
            daemon,
            operator,
            party,
        });
    }
    let scratch = run.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();

    // Each party enrols its appliance as usual (EK certificate, credential activation, AK),
    // with a policy that does not pin the (firmware-less) platform.
    for a in &fleet.appliances {
        let root = a.state.ca_root_pem.display().to_string();
        let issuer = a.state.ca_issuer_pem.display().to_string();
        a.party.ok(&["enroll", "--ek-ca", &root, &issuer]);
        std::fs::write(
            a.party.state.join("appraisal.toml"),
            "# swtpm has no firmware: nothing pins the boot.\nallow_unpinned_platform = true\n",
        )
        .unwrap();
        let cfg = a.party.state.join("config.toml");
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str("policy = \"appraisal.toml\"\n");
        std::fs::write(&cfg, text).unwrap();
        let out = a.party.ok(&["attest"]);
        assert!(out.starts_with("TRUSTED"), "{}: {out}", a.name);
    }

    // Registration: each daemon registered its AK and EK and activated them (the
    // registrar's credential challenge), in the background of its start. The registrar
    // answers 404 for an agent until it is activated.
    for a in &fleet.appliances {
        fleet.wait_for(
            &format!("{} registered and active", a.name),
            Duration::from_secs(60),
            || {
                let v = fleet
                    .keylime()
                    .registrar_get(&format!("/v2.6/agents/{}", a.uuid));
                (v["code"] == 200).then_some(())
            },
        );
    }
    eprintln!(
        "fleet: three appliances registered after {:?}",
        started.elapsed()
    );

    // The check the registrar does not make (docs/fleet.md): the registered AK is a
    // restricted signing key, and it is the AK the party enrolled and pinned with its own
    // client (EK certificate, credential activation, template).
    for a in &fleet.appliances {
        let reg = fleet
            .keylime()
            .registrar_get(&format!("/v2.6/agents/{}", a.uuid));
        let aik = arbiter_tests::b64d(&reg["results"]["aik_tpm"]);
        let ak = arbiter_policy::Public::from_tpm2b(&aik).expect("the registered AK parses");
        arbiter_policy::evidence::require_ak(&ak)
            .unwrap_or_else(|e| panic!("{}'s registered AK: {e}", a.name));
        assert_eq!(
            hex::encode(ak.name()),
            pinned_ak_name(&a.party),
            "{}: the registrar holds the AK the party pinned",
            a.name
        );
    }

    // Enrolment with the tenant: the registrar's AK, the agent's identity quote, then the
    // verifier with a TPM policy on platform PCR 4 (its value now).
    for a in &fleet.appliances {
        let policy = pcr4_policy(&a.pcr(4, &scratch));
        let out = fleet
            .keylime()
            .tenant(&["-c", "add", "-u", &a.uuid, "--tpm_policy", &policy]);
        assert!(
            out.status.success(),
            "keylime_tenant -c add for {} failed\n{}",
            a.name,
            fleet.logs()
        );
    }

    // All three attested continuously: several good quote rounds each.
    let counts: Vec<u64> = fleet
        .appliances
        .iter()
        .map(|a| {
            fleet.wait_for(
                &format!("{ROUNDS} good quote rounds of {}", a.name),
                Duration::from_secs(60),
                || {
                    let s = fleet.status(a)?;
                    assert_ne!(s["operational_state"], 7, "{} failed: {s}", a.name);
                    assert_ne!(s["operational_state"], 9, "{} invalid quote: {s}", a.name);
                    let n = s["attestation_count"].as_u64()?;
                    (s["operational_state"] == 3 && n >= ROUNDS).then_some(n)
                },
            )
        })
        .collect();
    eprintln!(
        "fleet: three appliances attested ({counts:?} rounds) after {:?}",
        started.elapsed()
    );

    // A platform change on appliance 1 only: PCR 4 extended from outside, the daemon runs on.
    let flagged = &fleet.appliances[0];
    flagged.tool(
        "tpm2_pcrextend",
        &[&format!(
            "4:sha256={}",
            hex::encode(arbiter_tests::sha256(&[b"another boot loader"]))
        )],
    );
    let s = fleet.wait_for(
        "the verifier to flag appliance1",
        Duration::from_secs(60),
        || {
            let s = fleet.status(flagged)?;
            (s["operational_state"] == 9 || s["operational_state"] == 7).then_some(s)
        },
    );
    assert!(
        s["last_event_id"]
            .as_str()
            .is_some_and(|e| e.contains("invalid_pcr_4")),
        "the verifier names PCR 4: {s}"
    );
    eprintln!(
        "fleet: appliance1 flagged ({}) after {:?}",
        s["last_event_id"],
        started.elapsed()
    );

    // Its daemon learns it and degrades: /healthz says why, the party's client says NOT USABLE.
    let reason = fleet.wait_for("appliance1 degraded", Duration::from_secs(30), || {
        let h = flagged.healthz();
        let reasons = h["degraded"].as_array()?;
        reasons
            .iter()
            .filter_map(Value::as_str)
            .find(|r| r.contains("revoked by the fleet verifier"))
            .map(str::to_owned)
    });
    assert_eq!(flagged.healthz()["status"], "degraded");
    let out = flagged.party.fails(&["attest"]);
    assert!(out.contains("NOT USABLE"), "{out}");
    assert!(out.contains("revoked by the fleet verifier"), "{out}");
    let how = flagged
        .daemon
        .log()
        .lines()
        .find(|l| l.contains("event=\"keylime_revoked\""))
        .and_then(|l| l.split("source=").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("?")
        .to_owned();
    eprintln!("fleet: appliance1 degraded (learnt by {how}): {reason}");
    match path {
        RevocationPath::Polling => assert_eq!(how, "\"verifier_status\"", "no notifier: polled"),
        RevocationPath::Notification => {
            // The verifier told the others too; they logged it as another agent's.
            for a in &fleet.appliances[1..] {
                fleet.wait_for(
                    &format!("{} to ignore the notification naming appliance1", a.name),
                    Duration::from_secs(30),
                    || {
                        a.daemon
                            .log()
                            .lines()
                            .any(|l| {
                                l.contains("keylime_revocation_other_agent")
                                    && l.contains(&flagged.uuid)
                            })
                            .then_some(())
                    },
                );
            }
        }
    }

    // The others: a function registered on each (PCR 23 changes), and they stay attested
    // for several more rounds; their daemons stay healthy.
    let source = scratch.join("concat.rhai");
    std::fs::write(
        &source,
        "fn compute(inputs) { sha256(inputs.a + inputs.b) }\n",
    )
    .unwrap();
    for (a, before) in fleet.appliances.iter().zip(&counts).skip(1) {
        let pcr23 = a.pcr(23, &scratch);
        a.operator
            .ok(&["function", "register", source.to_str().unwrap()]);
        assert_ne!(
            a.pcr(23, &scratch),
            pcr23,
            "registering a function extends PCR 23"
        );
        let target = before + ROUNDS;
        fleet.wait_for(
            &format!("{ROUNDS} more good rounds of {}", a.name),
            Duration::from_secs(60),
            || {
                let s = fleet.status(a)?;
                assert_eq!(
                    s["operational_state"], 3,
                    "{} must stay attested: {s}",
                    a.name
                );
                (s["attestation_count"].as_u64()? >= target).then_some(())
            },
        );
        let h = a.healthz();
        assert_eq!(h["status"], "ok", "{}: {h}", a.name);
        let out = a.party.ok(&["attest"]);
        assert!(out.starts_with("TRUSTED"), "{}: {out}", a.name);
    }
    // Appliance 1 is still flagged (the verifier does not recover by itself).
    let s = fleet.status(flagged).unwrap();
    assert_ne!(s["operational_state"], 3, "{s}");
    eprintln!("fleet: done in {:?}", started.elapsed());
}
