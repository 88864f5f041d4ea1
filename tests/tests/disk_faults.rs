//! Disk faults under load: `arbiterd run` as a real process on a real swtpm whose state
//! directory is a filesystem of its own, mounted by the test (it runs as root), while three
//! workers create instances, submit inputs (the second starts the automatic evaluation),
//! wait for results, destroy every other evaluated instance, register functions and ask
//! for attestations.
//!
//! - **Full**: a 24 MiB tmpfs, filled by a filler file to a few hundred KiB of headroom that
//!   the load then uses up. Every refusal must be 507 `disk_full` (or 503 `storage_unavailable`
//!   for the measurement log) naming the full disk; the filler is removed and, without
//!   restarting the daemon, every worker must complete again.
//! - **Read-only**: a loop-mounted ext4 image (`errors=remount-ro`) that the kernel turns
//!   read-only under load (`/sys/fs/ext4/DEV/trigger_fs_error`, as it does on an I/O error).
//!   Every refusal must be 503 `storage_unavailable` naming the read-only filesystem;
//!   attestations keep answering. The operator's recovery: stop the daemon, `e2fsck`,
//!   mount again, start it.
//!
//! After each, with the daemon stopped and again after a restart: every acknowledged input,
//! instance, function and destruction is there; nothing refused was stored;
//! `PRAGMA integrity_check` is `ok`; no instance is left `evaluating` or `destroying`; every
//! evaluated instance's signed result is the hash of the values sent; the on-disk and the
//! served measurement logs replay to PCR 23; a party's appraisal trusts the appliance.
//! Without the right to mount (not root, no loop devices) the test prints why and passes.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use arbiter_client::http::PartyIdentity;
use arbiter_measured_boot::cel::{self, Record};
use arbiter_policy::appraisal::AppraisalPolicy;
use arbiter_tests::daemon::{Party, two_party_manifest};
use arbiter_tests::process::{DaemonProcess, DaemonSpec};
use arbiter_tests::{TestTpm, verified_quote};
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Mutex;

const CONCAT: &str = "fn compute(inputs) { sha256(inputs.a + inputs.b) }\n";
const WORKERS: usize = 3;
/// Bytes of each input value: a full disk is reached after a few dozen submissions.
const VALUE_BYTES: usize = 24 << 10;

/// A filesystem mounted for the test, unmounted (lazily) on drop.
struct Mount {
    at: PathBuf,
    mounted: bool,
}

impl Mount {
    fn run(args: &[&str]) -> Result<(), String> {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .map_err(|e| format!("{}: {e}", args[0]))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// A tmpfs of `size` at `at`.
    fn tmpfs(at: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).unwrap();
        Self::run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            at.to_str().unwrap(),
        ])?;
        Ok(Self {
            at: at.to_owned(),
            mounted: true,
        })
    }

    /// An ext4 image `image` of `size`, loop-mounted at `at` with `errors=remount-ro`.
    fn ext4(image: &Path, at: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).unwrap();
        Self::run(&["truncate", "-s", size, image.to_str().unwrap()])?;
        Self::run(&["mkfs.ext4", "-q", "-F", image.to_str().unwrap()])?;
        let mut m = Self {
            at: at.to_owned(),
            mounted: false,
        };
        m.mount_ext4(image)?;
        m.mounted = true;
        Ok(m)
    }

    fn mount_ext4(&self, image: &Path) -> Result<(), String> {
        Self::run(&[
            "mount",
            "-o",
            "loop,errors=remount-ro",
            image.to_str().unwrap(),
            self.at.to_str().unwrap(),
        ])?;
        // The daemon wants its state directory to itself.
        let _ = std::fs::remove_dir(self.at.join("lost+found"));
        Ok(())
    }

    fn unmount(&mut self) {
        if self.mounted {
            Self::run(&["umount", self.at.to_str().unwrap()])
                .unwrap_or_else(|e| panic!("unmounting: {e}"));
            self.mounted = false;
        }
    }

    /// The loop device's name under `/sys/fs/ext4/` for this mount.
    fn ext4_device(&self) -> String {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let line = mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(self.at.to_str().unwrap()))
            .unwrap_or_else(|| panic!("{} is not mounted", self.at.display()));
        line.split(' ')
            .next()
            .unwrap()
            .trim_start_matches("/dev/")
            .to_owned()
    }

    fn free_bytes(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.at).unwrap();
        s.blocks_available() * s.fragment_size()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Self::run(&["umount", "-l", self.at.to_str().unwrap()]);
        }
    }
}

/// The test's model of one instance, from acknowledgements only.
#[derive(Debug, Clone, Default)]
struct Model {
    instance: Value,
    /// Slots acknowledged.
    acked: Vec<&'static str>,
    /// Destruction acknowledged.
    destroyed: bool,
    /// Whether this instance is to be destroyed once evaluated.
    destroy: bool,
}

impl Model {
    fn id(&self) -> String {
        self.instance["id"].as_str().unwrap().to_owned()
    }
}

fn value(id: &str, slot: &str) -> String {
    format!("{slot}-{}-{}", &id[..8], "x".repeat(VALUE_BYTES))
}

#[derive(Default)]
struct Ledger {
    instances: Vec<Model>,
    /// Function names: `true` acknowledged, `false` refused.
    functions: BTreeMap<String, bool>,
    /// Counts by operation and outcome (status and code).
    counts: BTreeMap<String, u64>,
    /// Every distinct refusal: operation, status, code, message.
    refusals: BTreeMap<String, String>,
}

struct World {
    op: Party,
    alice: Party,
    bob: Party,
    function: String,
    ledger: Mutex<Ledger>,
    stop: AtomicBool,
    /// Requests refused since the fault began.
    refused: AtomicU32,
    /// Rounds (instance evaluated, and destroyed when chosen) completed.
    completed: AtomicU32,
}

impl World {
    /// Records the outcome of `what`: `Some(json)` when acknowledged. A refusal is checked
    /// to be one of the storage refusals the fault may cause.
    async fn outcome(
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
        let storage = matches!(
            (r.status, code.as_str()),
            (StatusCode::INSUFFICIENT_STORAGE, "disk_full")
                | (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
        );
        assert!(
            storage,
            "{what}: refused {} {code}: {message} (only storage refusals are expected)",
            r.status
        );
        assert!(
            message.contains("disk is full") || message.contains("read-only"),
            "{what}: the refusal does not name the problem: {message}"
        );
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(
                r.headers.contains_key(hyper::header::RETRY_AFTER),
                "{what}: 503 without Retry-After"
            );
        }
        self.refused.fetch_add(1, Ordering::SeqCst);
        None
    }
}

/// One worker: drives its own instance through creation, both inputs, the evaluation and
/// (every other one) the destruction, with a function registration and an attestation now
/// and then; a refused step is tried again after a pause.
async fn worker(world: Arc<World>, index: usize) {
    let mut current: Option<usize> = None;
    let mut step = 0u64;
    while !world.stop.load(Ordering::SeqCst) {
        step += 1;
        if step.is_multiple_of(7) {
            let name = format!("w{index}-{step}");
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
            world.ledger.lock().await.functions.insert(name, acked);
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
            let att = world.outcome("attest", r).await;
            let att = att.expect("attestations need no disk");
            let (_, pcrs) = verified_quote(&att);
            let served: Vec<Record> = serde_json::from_value(att["log"].clone()).unwrap();
            cel::verify_against_pcr(&served, 23, &pcrs[&23]).unwrap();
            continue;
        }
        let Some(i) = current else {
            let manifest = two_party_manifest(&world.function, &world.alice, &world.bob);
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
            let r = party
                .conn
                .put(&format!("/v1/instances/{id}/inputs/{slot}"), &body)
                .await;
            if world.outcome("submit", r).await.is_some() {
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
            "evaluated" if m.destroy => {
                let r = world
                    .alice
                    .conn
                    .post(&format!("/v1/instances/{id}/destroy"), &json!({}))
                    .await;
                if world.outcome("destroy", r).await.is_some() {
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
fn disk_log(state_dir: &Path) -> Vec<Record> {
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
fn pcr23(tpm: &TestTpm) -> [u8; 32] {
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
fn check_stopped(tpm: &TestTpm, state_dir: &Path) {
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
    drop(c);
    cel::verify_against_pcr(&disk_log(state_dir), 23, &pcr23(tpm))
        .unwrap_or_else(|e| panic!("the on-disk log does not replay to PCR 23: {e}"));
}

/// With the daemon running: everything acknowledged is there, nothing transient, results
/// right, logs replay, a party trusts the appliance.
async fn check_running(world: &World, state_dir: &Path, policy: &AppraisalPolicy, when: &str) {
    let l = world.ledger.lock().await;
    for m in &l.instances {
        let id = m.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        let d = loop {
            let d = world.alice.get(&format!("/v1/instances/{id}")).await;
            assert_eq!(d.status, StatusCode::OK, "{when}: {id}: {}", d.json);
            let state = d.json["state"].as_str().unwrap();
            if state != "evaluating" && state != "destroying" {
                break d;
            }
            assert!(
                Instant::now() < deadline,
                "{when}: {id} stuck {state}: {}",
                d.json
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let state = d.json["state"].as_str().unwrap();
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
                let expected = hex::encode(arbiter_tests::sha256(&[
                    value(&id, "a").as_bytes(),
                    value(&id, "b").as_bytes(),
                ]));
                assert_eq!(r.json["output"], expected.as_str(), "{when}: {id}");
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
    for (name, acked) in &l.functions {
        assert_eq!(
            listed.contains(name),
            *acked,
            "{when}: function {name} listed {} but acknowledged {acked}",
            listed.contains(name)
        );
    }
    drop(l);
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

/// A daemon on `state_dir`, a function, parties and a policy pinning its AK.
async fn setup(tpm: &TestTpm, state_dir: &Path) -> (DaemonProcess, Arc<World>, AppraisalPolicy) {
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
    let world = Arc::new(World {
        op,
        alice,
        bob,
        function: f.json["sha256"].as_str().unwrap().to_owned(),
        ledger: Mutex::new(Ledger::default()),
        stop: AtomicBool::new(false),
        refused: AtomicU32::new(0),
        completed: AtomicU32::new(0),
    });
    (daemon, world, policy)
}

fn start_workers(world: &Arc<World>) -> Vec<tokio::task::JoinHandle<()>> {
    world.stop.store(false, Ordering::SeqCst);
    (0..WORKERS)
        .map(|w| tokio::spawn(worker(Arc::clone(world), w)))
        .collect()
}

async fn stop_workers(world: &World, workers: Vec<tokio::task::JoinHandle<()>>) {
    world.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("a worker panicked");
    }
}

/// Waits until `pred` holds, up to `secs`; panics with `what`, the operations so far and
/// the daemon's log otherwise.
async fn wait_for(
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
fn logged_events(daemon: &DaemonProcess) -> BTreeMap<&'static str, usize> {
    let log = daemon.log();
    [
        "evaluation_failed",
        "evaluation_abandon_failed",
        "evaluation_retry_failed",
        "measurement_marker_failed",
        "destruction failed",
    ]
    .into_iter()
    .map(|e| (e, log.matches(e).count()))
    .collect()
}

async fn report(world: &World, name: &str, started: Instant) {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disk_filling_up_under_load_refuses_cleanly_and_recovers_when_space_returns() {
    let started = Instant::now();
    let tpm = TestTpm::start();
    let state_dir = tpm.path("daemon");
    let mut mount = match Mount::tmpfs(&state_dir, "24m") {
        Ok(m) => m,
        Err(e) => {
            println!("SKIPPED: cannot mount a tmpfs for the state directory: {e}");
            return;
        }
    };
    let (mut daemon, world, policy) = setup(&tpm, &state_dir).await;
    let workers = start_workers(&world);
    wait_for(
        &world,
        &daemon,
        20,
        "two rounds completed before the fault",
        || world.completed.load(Ordering::SeqCst) >= 2,
    )
    .await;

    // Fill the disk to a small headroom; the load uses it up.
    let filler = state_dir.join("filler");
    let free = mount.free_bytes();
    let headroom = 384 << 10;
    std::fs::write(&filler, vec![0u8; (free - headroom) as usize]).unwrap();
    world.refused.store(0, Ordering::SeqCst);
    wait_for(
        &world,
        &daemon,
        30,
        "refusals once the disk filled up",
        || world.refused.load(Ordering::SeqCst) >= 20,
    )
    .await;
    let full_at = world.completed.load(Ordering::SeqCst);
    println!(
        "disk full: {} refusals, free {} bytes",
        world.refused.load(Ordering::SeqCst),
        mount.free_bytes()
    );

    // Space returns: the same daemon completes rounds again.
    std::fs::remove_file(&filler).unwrap();
    wait_for(
        &world,
        &daemon,
        30,
        "rounds completed after space returned",
        || world.completed.load(Ordering::SeqCst) >= full_at + 6,
    )
    .await;
    stop_workers(&world, workers).await;
    check_running(&world, &state_dir, &policy, "space returned, no restart").await;

    // And across a restart.
    assert!(daemon.terminate().success(), "{}", daemon.log());
    check_stopped(&tpm, &state_dir);
    let mut daemon = tokio::task::spawn_blocking(move || {
        daemon.restart();
        daemon
    })
    .await
    .unwrap();
    check_running(&world, &state_dir, &policy, "after a restart").await;
    report(&world, "disk full", started).await;
    println!("disk full: daemon log events {:?}", logged_events(&daemon));
    daemon.kill();
    mount.unmount();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_state_directory_turned_read_only_under_load_refuses_cleanly_and_recovers() {
    let started = Instant::now();
    let tpm = TestTpm::start();
    let state_dir = tpm.path("daemon");
    let image = tpm.path("state.ext4");
    let mut mount = match Mount::ext4(&image, &state_dir, "64M") {
        Ok(m) => m,
        Err(e) => {
            println!("SKIPPED: cannot loop-mount an ext4 image for the state directory: {e}");
            return;
        }
    };
    let (mut daemon, world, policy) = setup(&tpm, &state_dir).await;
    let workers = start_workers(&world);
    wait_for(
        &world,
        &daemon,
        20,
        "two rounds completed before the fault",
        || world.completed.load(Ordering::SeqCst) >= 2,
    )
    .await;

    // The kernel finds an error and turns the filesystem read-only.
    let device = mount.ext4_device();
    std::fs::write(
        format!("/sys/fs/ext4/{device}/trigger_fs_error"),
        "arbiter disk fault test\n",
    )
    .unwrap();
    world.refused.store(0, Ordering::SeqCst);
    wait_for(
        &world,
        &daemon,
        30,
        "refusals once the filesystem turned read-only",
        || world.refused.load(Ordering::SeqCst) >= 20,
    )
    .await;
    stop_workers(&world, workers).await;

    // Recovery: stop the daemon, check and mount the filesystem again, start the daemon.
    let status = daemon.terminate();
    println!("read-only: the daemon stopped with {status}");
    mount.unmount();
    let fsck = Command::new("e2fsck")
        .args(["-f", "-y", image.to_str().unwrap()])
        .output()
        .unwrap();
    println!(
        "read-only: e2fsck exited {:?}",
        fsck.status.code() // 1: errors corrected (the recorded error), 0: clean
    );
    mount.mount_ext4(&image).unwrap();
    mount.mounted = true;
    check_stopped(&tpm, &state_dir);
    let mut daemon = tokio::task::spawn_blocking(move || {
        daemon.restart();
        daemon
    })
    .await
    .unwrap();
    check_running(
        &world,
        &state_dir,
        &policy,
        "after the remount and a restart",
    )
    .await;
    // The load completes again.
    let workers = start_workers(&world);
    let at = world.completed.load(Ordering::SeqCst);
    wait_for(
        &world,
        &daemon,
        30,
        "rounds completed after the remount",
        || world.completed.load(Ordering::SeqCst) >= at + 4,
    )
    .await;
    stop_workers(&world, workers).await;
    check_running(&world, &state_dir, &policy, "after the load resumed").await;
    report(&world, "read-only", started).await;
    println!("read-only: daemon log events {:?}", logged_events(&daemon));
    daemon.kill();
    mount.unmount();
}
