//! Steady mixed load against a real `arbiterd run` for fault tests (disk faults, TPM
//! faults): three workers each drive their own instance through creation, both inputs
//! (the second starts the automatic evaluation), the result and, every other time, the
//! destruction, with a function registration and an attestation now and then. A
//! [`Ledger`] keeps what was acknowledged; every refusal must be one the fault explains
//! (the test's [`Acceptable`]); [`check_running`] and [`check_stopped`] check afterwards
//! that everything acknowledged is there and nothing half-changed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use arbiter_client::http::PartyIdentity;
use arbiter_measured_boot::cel::{self, Record};
use arbiter_policy::appraisal::AppraisalPolicy;
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::daemon::{Party, two_party_manifest};
use crate::process::{DaemonProcess, DaemonSpec};
use crate::{TestTpm, verified_quote};

/// The function every instance computes: SHA-256 of its two inputs, concatenated.
pub const CONCAT: &str = "fn compute(inputs) { sha256(inputs.a + inputs.b) }\n";
/// Workers driving load at once.
pub const WORKERS: usize = 3;
/// Bytes of each input value: a small disk fills up after a few dozen submissions.
pub const VALUE_BYTES: usize = 24 << 10;

/// Whether a refusal of `what` (`create`, `submit`, `destroy`, `register`, `attest`) with
/// this status, error code, message and `Retry-After` is one the injected fault explains:
/// `Err` says why not.
pub type Acceptable = fn(&str, StatusCode, &str, &str, bool) -> Result<(), String>;

/// The test's model of one instance, from acknowledgements only.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// The instance as created.
    pub instance: Value,
    /// Slots acknowledged.
    pub acked: Vec<&'static str>,
    /// Destruction acknowledged.
    pub destroyed: bool,
    /// Whether this instance is to be destroyed once evaluated.
    pub destroy: bool,
    /// The creation was in flight when the fault struck (see [`World::in_flight`]): the
    /// instance may be missing.
    pub uncertain: bool,
    /// Slots whose last submission was in flight when the fault struck: either.
    pub uncertain_slots: Vec<&'static str>,
    /// The destruction was in flight when the fault struck: either.
    pub uncertain_destroy: bool,
    /// Found missing after an uncertain creation: no longer checked.
    pub gone: bool,
}

impl Model {
    /// The instance id.
    pub fn id(&self) -> String {
        self.instance["id"].as_str().unwrap().to_owned()
    }
}

/// The value sent for `slot` of instance `id`.
pub fn value(id: &str, slot: &str) -> String {
    format!("{slot}-{}-{}", &id[..8], "x".repeat(VALUE_BYTES))
}

/// What the workers were told.
#[derive(Default)]
pub struct Ledger {
    /// Every instance created.
    pub instances: Vec<Model>,
    /// Function names: `true` acknowledged, `false` refused.
    pub functions: BTreeMap<String, bool>,
    /// Counts by operation and outcome (status and code).
    pub counts: BTreeMap<String, u64>,
    /// Every distinct refusal: operation, status, code, message.
    pub refusals: BTreeMap<String, String>,
    /// Function registrations in flight when the fault struck: either.
    pub uncertain_functions: std::collections::BTreeSet<String>,
    /// Outcomes of requests in flight when the fault struck, resolved by the next check:
    /// `(what, acknowledged, found)`.
    pub resolved: Vec<(String, bool, bool)>,
}

/// The parties, the ledger and the load's controls, shared by the workers and the test.
pub struct World {
    /// The operator (creates instances, registers functions).
    pub op: Party,
    /// The first party (slot `a`, destroys).
    pub alice: Party,
    /// The second party (slot `b`).
    pub bob: Party,
    /// The instances' function.
    pub function: String,
    /// What was acknowledged.
    pub ledger: Mutex<Ledger>,
    /// Set to stop the workers.
    pub stop: AtomicBool,
    /// Requests refused (reset by the test when the fault begins).
    pub refused: AtomicU32,
    /// Rounds (instance evaluated, and destroyed when chosen) completed.
    pub completed: AtomicU32,
    /// The refusals the fault explains.
    pub acceptable: Acceptable,
    /// Set by the test just before it injects a fault whose moment loses the filesystem's
    /// promises (a filesystem turned read-only may lose a write whose fsync just returned,
    /// and keep one whose fsync failed).
    pub fault_begin: AtomicBool,
    /// Set by the test once that fault has surely struck.
    pub fault_settled: AtomicBool,
}

impl World {
    /// Whether a request that started when `fault_settled` read `settled_at_start` was in
    /// flight when the fault struck (it ends now).
    pub fn in_flight(&self, settled_at_start: bool) -> bool {
        !settled_at_start && self.fault_begin.load(Ordering::SeqCst)
    }

    /// Records the outcome of `what`: `Some(json)` when acknowledged. A refusal is checked
    /// to be one the fault explains ([`World::acceptable`]).
    pub async fn outcome(
        &self,
        what: &str,
        r: Result<arbiter_client::http::Response, arbiter_client::ClientError>,
    ) -> Option<Value> {
        let r = r.unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        let key = format!("{what} {}", r.status.as_u16());
        let code = r.json["error"]["code"].as_str().unwrap_or("").to_owned();
        let mut l = self.ledger.lock().await;
        *l.counts.entry(format!("{key} {code}")).or_default() += 1;
        if r.status.is_success() {
            return Some(r.json);
        }
        let message = r.json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        l.refusals
            .entry(format!("{key} {code}"))
            .or_insert(message.clone());
        drop(l);
        let retry_after = r.headers.contains_key(hyper::header::RETRY_AFTER);
        if let Err(why) = (self.acceptable)(what, r.status, &code, &message, retry_after) {
            panic!("{what}: refused {} {code}: {message}: {why}", r.status);
        }
        self.refused.fetch_add(1, Ordering::SeqCst);
        None
    }
}

/// One worker: drives its own instance through creation, both inputs, the evaluation and
/// (every other one) the destruction, with a function registration and an attestation now
/// and then; a refused step is tried again after a pause.
pub async fn worker(world: Arc<World>, index: usize) {
    let mut current: Option<usize> = None;
    let mut step = 0u64;
    while !world.stop.load(Ordering::SeqCst) {
        step += 1;
        if step.is_multiple_of(7) {
            let name = format!("w{index}-{step}");
            let settled = world.fault_settled.load(Ordering::SeqCst);
            let r = world
                .op
                .conn
                .post(
                    "/v1/functions",
                    &json!({"name": name, "language": "rhai",
                            "source": format!("fn compute(i) {{ \"{name}\" }}")}),
                )
                .await;
            let acked = world.outcome("register", r).await.is_some();
            let mut l = world.ledger.lock().await;
            if world.in_flight(settled) {
                l.uncertain_functions.insert(name.clone());
            }
            l.functions.insert(name, acked);
            continue;
        }
        if step.is_multiple_of(5) {
            let mut n = [0u8; 32];
            rand::fill(&mut n);
            let r = world
                .bob
                .conn
                .get(&format!("/v1/attestation?nonce={}", hex::encode(n)))
                .await;
            if let Some(att) = world.outcome("attest", r).await {
                let (_, pcrs) = verified_quote(&att);
                let served: Vec<Record> = serde_json::from_value(att["log"].clone()).unwrap();
                cel::verify_against_pcr(&served, 23, &pcrs[&23]).unwrap();
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        }
        let Some(i) = current else {
            let manifest = two_party_manifest(&world.function, &world.alice, &world.bob);
            let settled = world.fault_settled.load(Ordering::SeqCst);
            let r = world
                .op
                .conn
                .post("/v1/instances", &json!({ "manifest": manifest }))
                .await;
            if let Some(instance) = world.outcome("create", r).await {
                let mut l = world.ledger.lock().await;
                let destroy = l.instances.len() % 2 == 0;
                l.instances.push(Model {
                    instance,
                    destroy,
                    uncertain: world.in_flight(settled),
                    ..Model::default()
                });
                current = Some(l.instances.len() - 1);
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        let m = world.ledger.lock().await.instances[i].clone();
        let id = m.id();
        if let Some((party, slot)) = [(&world.alice, "a"), (&world.bob, "b")]
            .into_iter()
            .find(|(_, s)| !m.acked.contains(s))
        {
            let body = party.encrypt_input(&m.instance, slot, 1, &json!(value(&id, slot)));
            let settled = world.fault_settled.load(Ordering::SeqCst);
            let r = party
                .conn
                .put(&format!("/v1/instances/{id}/inputs/{slot}"), &body)
                .await;
            let acked = world.outcome("submit", r).await.is_some();
            if world.in_flight(settled) {
                world.ledger.lock().await.instances[i]
                    .uncertain_slots
                    .push(slot);
            }
            if acked {
                world.ledger.lock().await.instances[i].acked.push(slot);
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        }
        let d = world.alice.get(&format!("/v1/instances/{id}")).await;
        assert_eq!(d.status, StatusCode::OK, "{}", d.json);
        *world
            .ledger
            .lock()
            .await
            .counts
            .entry(format!("seen {}", d.json["state"].as_str().unwrap()))
            .or_default() += 1;
        match d.json["state"].as_str().unwrap() {
            // A destruction refused mid-way stays `destroying` (the durable mark) and the
            // daemon may finish it on its own once the TPM is back: the party asks again,
            // as a party would, and gets the certificate either way.
            "evaluated" | "destroying" | "destroyed" if m.destroy => {
                let settled = world.fault_settled.load(Ordering::SeqCst);
                let r = world
                    .alice
                    .conn
                    .post(&format!("/v1/instances/{id}/destroy"), &json!({}))
                    .await;
                let acked = world.outcome("destroy", r).await.is_some();
                if world.in_flight(settled) {
                    world.ledger.lock().await.instances[i].uncertain_destroy = true;
                }
                if acked {
                    world.ledger.lock().await.instances[i].destroyed = true;
                    world.completed.fetch_add(1, Ordering::SeqCst);
                    current = None;
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            "evaluated" => {
                world.completed.fetch_add(1, Ordering::SeqCst);
                current = None;
            }
            // An evaluation that could not store its result reopens the instance with
            // both inputs in: a party asks for the evaluation again.
            "open" => {
                let r = world
                    .alice
                    .conn
                    .post(&format!("/v1/instances/{id}/evaluate"), &json!({}))
                    .await
                    .unwrap();
                let code = r.json["error"]["code"].as_str().unwrap_or("").to_owned();
                *world
                    .ledger
                    .lock()
                    .await
                    .counts
                    .entry(format!("evaluate {} {code}", r.status.as_u16()))
                    .or_default() += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The current generation's log file, as records.
pub fn disk_log(state_dir: &Path) -> Vec<Record> {
    let dir = state_dir.join("measurements");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let text = std::fs::read_to_string(files.pop().expect("a generation file")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a log record"))
        .collect()
}

/// PCR 23 as `tpm2_pcrread` reads it.
pub fn pcr23(tpm: &TestTpm) -> [u8; 32] {
    let out = tpm.tool_ok("tpm2_pcrread", &["sha256:23"]);
    let hex_value = out
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("23")
                .map(|r| r.trim_start_matches([' ', ':']))
        })
        .and_then(|v| v.trim().strip_prefix("0x"))
        .unwrap_or_else(|| panic!("PCR 23 in {out}"));
    hex::decode(hex_value).unwrap().try_into().unwrap()
}

/// With the daemon stopped: the store's integrity, and the on-disk log against PCR 23.
pub fn check_stopped(tpm: &TestTpm, state_dir: &Path) {
    store_integrity(state_dir);
    log_replays(tpm, state_dir)
        .unwrap_or_else(|e| panic!("the on-disk log does not replay to PCR 23: {e}"));
}

/// `PRAGMA integrity_check` of the store is `ok` (the daemon stopped).
pub fn store_integrity(state_dir: &Path) {
    use rusqlite::{Connection, OpenFlags};
    let c = Connection::open_with_flags(
        state_dir.join("arbiter.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("opening the store read-only");
    let integrity: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "PRAGMA integrity_check");
}

/// Whether the on-disk log replays to PCR 23 as `tpm2_pcrread` reads it, or is one record
/// ahead (appended and fsynced, its extend cut off: the next start extends it).
pub fn log_replays(tpm: &TestTpm, state_dir: &Path) -> Result<(), String> {
    match cel::write_ahead_state(&disk_log(state_dir), 23, &pcr23(tpm)) {
        Ok(cel::WriteAheadState::Consistent | cel::WriteAheadState::ExtendNext { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// With the daemon running: everything acknowledged is there, nothing transient, results
/// right, logs replay, a party trusts the appliance.
pub async fn check_running(world: &World, state_dir: &Path, policy: &AppraisalPolicy, when: &str) {
    let mut guard = world.ledger.lock().await;
    let l = &mut *guard;
    for m in l.instances.iter_mut().filter(|m| !m.gone) {
        let id = m.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        let d = loop {
            let d = world.alice.get(&format!("/v1/instances/{id}")).await;
            if d.status == StatusCode::NOT_FOUND && m.uncertain {
                break d;
            }
            assert_eq!(d.status, StatusCode::OK, "{when}: {id}: {}", d.json);
            let state = d.json["state"].as_str().unwrap();
            // Both inputs in but still `open`: an automatic evaluation that failed on the
            // fault (a TPM gone, a full disk) and waits for its retry with backoff.
            let retrying = state == "open"
                && d.json["slots"]
                    .as_array()
                    .is_some_and(|s| s.iter().all(|s| s["filled"] == true));
            if state != "evaluating" && state != "destroying" && !retrying {
                break d;
            }
            assert!(
                Instant::now() < deadline,
                "{when}: {id} stuck {state}{}: {}",
                if retrying {
                    " with both inputs in (the automatic trigger fired into a failed \
                     evaluation that nothing retried)"
                } else {
                    ""
                },
                d.json
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if m.uncertain {
            // In flight when the fault struck: either outcome, now known.
            m.uncertain = false;
            let found = d.status == StatusCode::OK;
            l.resolved.push((format!("create {id}"), true, found));
            if !found {
                m.gone = true;
                continue;
            }
        }
        let state = d.json["state"].as_str().unwrap();
        for slot in std::mem::take(&mut m.uncertain_slots) {
            let filled = state != "open"
                || d.json["slots"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["slot"] == slot && s["filled"] == true);
            l.resolved.push((
                format!("submit {id} {slot}"),
                m.acked.contains(&slot),
                filled,
            ));
            m.acked.retain(|a| *a != slot);
            if filled {
                m.acked.push(slot);
            }
        }
        if std::mem::take(&mut m.uncertain_destroy) {
            l.resolved
                .push((format!("destroy {id}"), m.destroyed, state == "destroyed"));
            m.destroyed = state == "destroyed";
        }
        match state {
            "open" => {
                assert!(!m.destroyed, "{when}: {id}: acknowledged destruction lost");
                assert!(
                    m.acked.len() < 2,
                    "{when}: {id}: both inputs in but not evaluated (the automatic trigger \
                     fired into a failed evaluation that nothing retried)"
                );
                for s in d.json["slots"].as_array().unwrap() {
                    let slot = s["slot"].as_str().unwrap();
                    let acked = m.acked.contains(&slot);
                    assert_eq!(
                        s["filled"] == true,
                        acked,
                        "{when}: {id}: slot {slot} filled {} but acknowledged {acked}",
                        s["filled"]
                    );
                }
            }
            "evaluated" => {
                assert!(!m.destroyed, "{when}: {id}: acknowledged destruction lost");
                assert_eq!(m.acked.len(), 2, "{when}: {id}: evaluated without both");
                let r = world.alice.get(&format!("/v1/instances/{id}/result")).await;
                assert_eq!(r.status, StatusCode::OK, "{when}: {id}: {}", r.json);
                let expected = hex::encode(crate::sha256(&[
                    value(&id, "a").as_bytes(),
                    value(&id, "b").as_bytes(),
                ]));
                assert_eq!(
                    r.json["output"],
                    expected.as_str(),
                    "{when}: {id}: {}",
                    r.json
                );
            }
            "destroyed" => {
                let c = world
                    .alice
                    .get(&format!("/v1/instances/{id}/destruction-certificate"))
                    .await;
                assert_eq!(c.status, StatusCode::OK, "{when}: {id}: {}", c.json);
                assert!(c.json["jws"].is_string(), "{}", c.json);
            }
            other => panic!("{when}: {id}: unexpected state {other}"),
        }
    }
    let r = world.op.get("/v1/functions").await;
    let listed: Vec<String> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["library"] == false)
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    for name in std::mem::take(&mut l.uncertain_functions) {
        let found = listed.contains(&name);
        let acked = l.functions.insert(name.clone(), found).unwrap_or(false);
        l.resolved.push((format!("register {name}"), acked, found));
    }
    for (name, acked) in &l.functions {
        assert_eq!(
            listed.contains(name),
            *acked,
            "{when}: function {name} listed {} but acknowledged {acked}",
            listed.contains(name)
        );
    }
    drop(guard);
    let mut n = [0u8; 32];
    rand::fill(&mut n);
    let att = world
        .alice
        .get(&format!("/v1/attestation?nonce={}", hex::encode(n)))
        .await;
    assert_eq!(att.status, StatusCode::OK, "{when}: {}", att.json);
    let (_, pcrs) = verified_quote(&att.json);
    let served: Vec<Record> = serde_json::from_value(att.json["log"].clone()).unwrap();
    cel::verify_against_pcr(&served, 23, &pcrs[&23])
        .unwrap_or_else(|e| panic!("{when}: the served log: {e}"));
    cel::verify_against_pcr(&disk_log(state_dir), 23, &pcrs[&23])
        .unwrap_or_else(|e| panic!("{when}: the on-disk log: {e}"));
    let (_, verdict) = world.bob.appraise(policy).await;
    assert!(verdict.trusted, "{when}: {verdict:?}");
    let h = world.alice.get("/healthz").await;
    assert_eq!(h.json["status"], "ok", "{when}: {}", h.json);
}

/// A daemon process on `state_dir` with one operator, the parties alice and bob, the
/// function [`CONCAT`] registered, and a policy that pins the daemon's AK.
pub struct Cast {
    /// The daemon.
    pub daemon: DaemonProcess,
    /// Its operator.
    pub op: Party,
    /// A party.
    pub alice: Party,
    /// Another party.
    pub bob: Party,
    /// The SHA-256 of [`CONCAT`] as registered.
    pub function: String,
    /// The AK-pinning policy (unpinned platform: swtpm).
    pub policy: AppraisalPolicy,
}

/// Starts a [`Cast`] on `tpm` and `state_dir`.
pub async fn start_cast(tpm: &TestTpm, state_dir: &Path) -> Cast {
    let operator = PartyIdentity::generate("operator").unwrap();
    let spec = DaemonSpec {
        state_dir: state_dir.to_owned(),
        config: format!(
            "[access]\noperators = [\"{}\"]\n",
            operator.identity().unwrap()
        ),
        tcti: Some(tpm.tcti()),
        ..DaemonSpec::default()
    };
    let daemon = tokio::task::spawn_blocking(move || DaemonProcess::start(spec))
        .await
        .unwrap();
    let url = daemon.url();
    let op = Party::with_identity("operator", operator, &url);
    let alice = Party::with_identity("alice", PartyIdentity::generate("alice").unwrap(), &url);
    let bob = Party::with_identity("bob", PartyIdentity::generate("bob").unwrap(), &url);
    let f = op
        .post(
            "/v1/functions",
            json!({"name": "concat", "language": "rhai", "source": CONCAT}),
        )
        .await;
    assert_eq!(f.status, StatusCode::CREATED, "{}", f.json);
    let (att, _) = bob.appraise(&AppraisalPolicy::default()).await;
    let mut policy = AppraisalPolicy::default();
    policy.ak.name = Some(hex::decode(att["ak"]["name"].as_str().unwrap()).unwrap());
    policy.allow_unpinned_platform = true;
    Cast {
        daemon,
        op,
        alice,
        bob,
        function: f.json["sha256"].as_str().unwrap().to_owned(),
        policy,
    }
}

/// A daemon on `state_dir`, a function, parties and a policy pinning its AK; the
/// refusals `acceptable`.
pub async fn setup(
    tpm: &TestTpm,
    state_dir: &Path,
    acceptable: Acceptable,
) -> (DaemonProcess, Arc<World>, AppraisalPolicy) {
    let cast = start_cast(tpm, state_dir).await;
    let world = Arc::new(World {
        op: cast.op,
        alice: cast.alice,
        bob: cast.bob,
        function: cast.function,
        ledger: Mutex::new(Ledger::default()),
        stop: AtomicBool::new(false),
        refused: AtomicU32::new(0),
        completed: AtomicU32::new(0),
        acceptable,
        fault_begin: AtomicBool::new(false),
        fault_settled: AtomicBool::new(false),
    });
    (cast.daemon, world, cast.policy)
}

/// Starts the workers.
pub fn start_workers(world: &Arc<World>) -> Vec<tokio::task::JoinHandle<()>> {
    world.stop.store(false, Ordering::SeqCst);
    (0..WORKERS)
        .map(|w| tokio::spawn(worker(Arc::clone(world), w)))
        .collect()
}

/// Stops the workers and waits for them (a worker's panic fails the test).
pub async fn stop_workers(world: &World, workers: Vec<tokio::task::JoinHandle<()>>) {
    world.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("a worker panicked");
    }
}

/// Waits until `pred` holds, up to `secs`; panics with `what`, the operations so far and
/// the daemon's log otherwise.
pub async fn wait_for(
    world: &World,
    daemon: &DaemonProcess,
    secs: u64,
    what: &str,
    pred: impl Fn() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !pred() {
        if Instant::now() > deadline {
            report(world, "timed out", deadline).await;
            let log = daemon.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "no {what} within {secs} s; the daemon's log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How often the daemon logged each event that tells how it handled the fault.
pub fn logged_events(daemon: &DaemonProcess) -> BTreeMap<&'static str, usize> {
    let log = daemon.log();
    [
        "evaluation_failed",
        "evaluation_abandon_failed",
        "evaluation_retry_failed",
        "measurement_marker_failed",
        "destruction failed",
        "tpm_startup",
        "measurement_diverged",
        "startup_check_failed",
    ]
    .into_iter()
    .map(|e| (e, log.matches(e).count()))
    .collect()
}

/// Prints what the load did: instances, operations by outcome, each distinct refusal.
pub async fn report(world: &World, name: &str, started: Instant) {
    let l = world.ledger.lock().await;
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();
    for m in &l.instances {
        let s = if m.destroyed {
            "destroyed"
        } else if m.acked.len() == 2 {
            "both inputs"
        } else {
            "open"
        };
        *states.entry(s).or_default() += 1;
    }
    println!(
        "{name}: {:.1} s; {} instances {states:?}; {} functions",
        started.elapsed().as_secs_f64(),
        l.instances.len(),
        l.functions.len()
    );
    println!("{name}: operations {:?}", l.counts);
    for (k, m) in &l.refusals {
        println!("{name}: refusal {k}: {m}");
    }
    if !l.resolved.is_empty() {
        let lost = l.resolved.iter().filter(|(_, a, f)| *a && !*f).count();
        let kept = l.resolved.iter().filter(|(_, a, f)| !*a && *f).count();
        println!(
            "{name}: {} requests in flight when the fault struck: {lost} acknowledged but \
             missing, {kept} refused but present: {:?}",
            l.resolved.len(),
            l.resolved
        );
    }
}
