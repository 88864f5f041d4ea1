//! The measurement log and the application PCR under failure, end to end (a real daemon
//! on a private swtpm): extends the TPM refused, lost on the way, answered into the void or
//! left unsettled (through a TCP proxy in front of swtpm that injects those faults) during
//! registrations, destructions and a TLS key replacement at start; a TPM restart just
//! before a registration or an instance creation; PCR 23 extended or reset by another
//! process; and the sealing index replaced under a running daemon. Each time the log must
//! keep replaying to the PCR, and an action whose measurement failed must not happen.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arbiter_client::http::{PartyIdentity, Response};
use arbiter_measured_boot::cel::{self, EventContent, Record};
use arbiter_tests::daemon::{Party, TestDaemon, two_party_manifest};
use arbiter_tests::{TestTpm, verified_quote};
use hyper::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `TPM_CC_PCR_Extend`.
const CC_PCR_EXTEND: u32 = 0x182;
/// `TPM_CC_PCR_Read`.
const CC_PCR_READ: u32 = 0x17E;
/// `TPM_RC_LOCALITY`: what a TPM answers to an extend from a locality it does not allow.
const RC_LOCALITY: u32 = 0x907;

/// Faults the proxy injects into the next PCR_Extend commands.
#[derive(Debug, Default)]
struct Faults {
    /// Answer the next extend with `TPM_RC_LOCALITY` without passing it on.
    refuse_extend: bool,
    /// Close the connection on the next extend without passing it on.
    drop_extend: bool,
    /// Pass the next extend on, then close the connection instead of answering.
    lose_extend_answer: bool,
    /// How many extends to pass on before the fault applies.
    pass_extends: u32,
    /// After a faulted extend, close the connection on the next PCR_Read too.
    then_drop_pcr_read: bool,
    /// Set when a faulted extend arms `then_drop_pcr_read`.
    armed: bool,
    /// How many extends were faulted.
    faulted: u32,
}

/// Sets up one fault.
type Fault = fn(&mut Faults);

/// A TCP proxy in front of swtpm's command and control ports that injects [`Faults`].
struct TpmProxy {
    port: u16,
    faults: Arc<Mutex<Faults>>,
}

enum Action {
    Forward,
    Refuse,
    Drop,
    LoseAnswer,
}

impl TpmProxy {
    async fn start(upstream: u16) -> Self {
        let port = arbiter_daemon::swtpm::free_port_pair().unwrap();
        let data = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let ctrl = TcpListener::bind(("127.0.0.1", port + 1)).await.unwrap();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let f = Arc::clone(&faults);
        tokio::spawn(async move {
            while let Ok((client, _)) = data.accept().await {
                tokio::spawn(serve_commands(client, upstream, Arc::clone(&f)));
            }
        });
        tokio::spawn(async move {
            while let Ok((mut client, _)) = ctrl.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream + 1)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { port, faults }
    }

    fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    fn set(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.faults.lock().unwrap());
    }

    fn faulted(&self) -> u32 {
        self.faults.lock().unwrap().faulted
    }
}

/// Reads one TPM command or response (a 10-byte header with its size, then the rest).
async fn read_message(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 10];
    s.read_exact(&mut header).await.ok()?;
    let size = u32::from_be_bytes(header[2..6].try_into().unwrap()) as usize;
    let mut message = header.to_vec();
    message.resize(size.max(10), 0);
    s.read_exact(&mut message[10..]).await.ok()?;
    Some(message)
}

async fn serve_commands(mut client: TcpStream, upstream: u16, faults: Arc<Mutex<Faults>>) {
    let mut server: Option<TcpStream> = None;
    while let Some(command) = read_message(&mut client).await {
        let cc = u32::from_be_bytes(command[6..10].try_into().unwrap());
        let action = {
            let mut f = faults.lock().unwrap();
            let arm = |f: &mut Faults| {
                f.faulted += 1;
                f.armed = f.then_drop_pcr_read;
                f.then_drop_pcr_read = false;
            };
            let extend_fault = f.refuse_extend || f.drop_extend || f.lose_extend_answer;
            if cc == CC_PCR_EXTEND && extend_fault && f.pass_extends > 0 {
                f.pass_extends -= 1;
                Action::Forward
            } else if cc == CC_PCR_EXTEND && f.refuse_extend {
                f.refuse_extend = false;
                arm(&mut f);
                Action::Refuse
            } else if cc == CC_PCR_EXTEND && f.drop_extend {
                f.drop_extend = false;
                arm(&mut f);
                Action::Drop
            } else if cc == CC_PCR_EXTEND && f.lose_extend_answer {
                f.lose_extend_answer = false;
                arm(&mut f);
                Action::LoseAnswer
            } else if cc == CC_PCR_READ && f.armed {
                f.armed = false;
                Action::Drop
            } else {
                Action::Forward
            }
        };
        match action {
            Action::Refuse => {
                let mut answer = vec![0x80, 0x01, 0, 0, 0, 10];
                answer.extend_from_slice(&RC_LOCALITY.to_be_bytes());
                if client.write_all(&answer).await.is_err() {
                    return;
                }
                continue;
            }
            Action::Drop => return,
            Action::Forward | Action::LoseAnswer => {}
        }
        if server.is_none() {
            server = TcpStream::connect(("127.0.0.1", upstream)).await.ok();
        }
        let Some(s) = server.as_mut() else { return };
        if s.write_all(&command).await.is_err() {
            return;
        }
        let Some(response) = read_message(s).await else {
            return;
        };
        if matches!(action, Action::LoseAnswer) || client.write_all(&response).await.is_err() {
            return;
        }
    }
}

fn nonce() -> String {
    let mut n = [0u8; 32];
    rand::fill(&mut n);
    hex::encode(n)
}

/// Gets an attestation and checks it as a verifier does: the quote verifies over the PCR
/// values served and the log replays to PCR 23. Returns the generation and the records.
async fn attest(p: &Party) -> (u64, Vec<Record>) {
    let n = nonce();
    let r = p.get(&format!("/v1/attestation?nonce={n}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let att = &r.json;
    let (_, pcrs) = verified_quote(att);
    let records: Vec<Record> = serde_json::from_value(att["log"].clone()).unwrap();
    cel::verify_against_pcr(&records, 23, &pcrs[&23]).expect("the log replays to PCR 23");
    (att["log_generation"].as_u64().unwrap(), records)
}

struct Setup {
    tpm: TestTpm,
    daemon: TestDaemon,
    op: Party,
}

/// A daemon whose operator may also create instances, on `tcti` (the test's swtpm, or a
/// proxy in front of it).
async fn start(tpm: TestTpm, tcti: Option<String>) -> Setup {
    let operator = PartyIdentity::generate("operator").unwrap();
    let operator_id = operator.identity().unwrap();
    let daemon = TestDaemon::start(&tpm, &tpm.path("daemon"), |c| {
        c.access.operators = vec![operator_id.clone()];
        if let Some(tcti) = tcti {
            c.tpm.tcti = tcti;
        }
    })
    .await;
    let op = Party::with_identity("operator", operator, &daemon.url);
    Setup { tpm, daemon, op }
}

async fn register(op: &Party, name: &str) -> Response {
    op.post(
        "/v1/functions",
        json!({"name": name, "language": "rhai", "source": format!("fn compute(i) {{ \"{name}\" }}")}),
    )
    .await
}

/// The names of the functions registered through the API (the shipped library, registered
/// at start, aside).
async fn function_names(op: &Party) -> Vec<String> {
    let r = op.get("/v1/functions").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    r.json
        .as_array()
        .expect("a list of functions")
        .iter()
        .filter(|f| f["library"] == false)
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The current generation's log file.
fn log_file(state_dir: &Path) -> PathBuf {
    let dir = state_dir.join("measurements");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files.pop().expect("a generation file")
}

/// What each record is: its event and, for functions, the name; for instances, the id.
fn describe(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| match &r.content {
            EventContent::FunctionLoaded(f) => format!("function {}", f.name),
            EventContent::InstanceCreated(i) => {
                format!("instance {}", hex::encode(i.instance_id.0))
            }
            other => other.event_name().to_owned(),
        })
        .collect()
}

/// Checks a generation: `daemon_started`, then what was live (the shipped library and the
/// registered functions, then instances, each ordered by creation second and then id, so
/// compared as sets), then `new` if given.
fn assert_generation(records: &[Record], live: &[String], new: Option<&str>) {
    let mut names = describe(records);
    assert_eq!(
        names.first().map(String::as_str),
        Some("daemon_started"),
        "{names:?}"
    );
    if let Some(new) = new {
        assert_eq!(names.last().map(String::as_str), Some(new), "{names:?}");
        names.pop();
    }
    let mut remeasured = names[1..].to_vec();
    let functions = remeasured
        .iter()
        .filter(|n| n.starts_with("function "))
        .count();
    assert!(
        remeasured[..functions]
            .iter()
            .all(|n| n.starts_with("function ")),
        "functions first: {remeasured:?}"
    );
    remeasured.sort();
    let mut live = live.to_vec();
    live.extend(arbiter_tests::library::loaded_names());
    live.sort();
    assert_eq!(
        remeasured, live,
        "everything live is re-measured, nothing else"
    );
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

fn error_message(r: &Response) -> String {
    r.json["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_extend_that_did_not_reach_the_tpm_is_undone_and_its_function_not_registered() {
    let tpm = TestTpm::start();
    let proxy = TpmProxy::start(tpm.swtpm.port()).await;
    let s = start(tpm, Some(proxy.tcti())).await;
    let file = log_file(&s.daemon.state_dir);
    assert!(register(&s.op, "kept").await.status.is_success());
    let before = std::fs::read(&file).unwrap();

    // The TPM refuses the extend; then the connection breaks on it; then it breaks on the
    // extend and on the PCR read that should tell what happened (settled on the next
    // registration).
    let faults: [(&str, Fault); 3] = [
        ("refused", |f| f.refuse_extend = true),
        ("dropped", |f| f.drop_extend = true),
        ("unknown", |f| {
            f.refuse_extend = true;
            f.then_drop_pcr_read = true;
        }),
    ];
    for (i, (name, fault)) in faults.into_iter().enumerate() {
        proxy.set(fault);
        let r = register(&s.op, name).await;
        assert_eq!(
            proxy.faulted(),
            i as u32 + 1,
            "{name}: the fault was injected"
        );
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{name}: {}",
            r.json
        );
        assert!(
            error_message(&r).contains("PCR_Extend"),
            "{name}: {}",
            r.json
        );
        assert!(
            !function_names(&s.op).await.contains(&name.to_owned()),
            "{name}: a function whose measurement failed is not registered"
        );
        if name != "unknown" {
            assert!(
                std::fs::read(&file).unwrap() == before,
                "{name}: the record was cut off the log file"
            );
        }
    }

    // The next registration settles the unknown one (it did not reach the PCR), and the
    // log replays to the PCR again — before the fix every later extend diverged.
    let r = register(&s.op, "after").await;
    assert!(r.status.is_success(), "{}", r.json);
    let (_, records) = attest(&s.op).await;
    let names = describe(&records);
    assert_eq!(
        names[names.len() - 2..],
        ["function kept".to_owned(), "function after".to_owned()],
        "{names:?}"
    );
    let on_disk = cel::read_jsonl(&std::fs::read(&file).unwrap()).unwrap();
    assert!(on_disk.torn.is_none());
    assert_eq!(
        on_disk.records, records,
        "the file holds exactly what was extended"
    );
    assert_eq!(
        sorted(function_names(&s.op).await),
        ["after".to_owned(), "kept".to_owned()]
    );
    // And the daemon starts again on that state (before the fix it refused until the next
    // TPM startup: the log no longer replayed to the PCR).
    let Setup { tpm, daemon, op } = s;
    daemon.stop().await;
    let operator_id = op.id.clone();
    let again = TestDaemon::try_start(&tpm, &tpm.path("daemon"), |c| {
        c.access.operators = vec![operator_id];
        c.tpm.tcti = proxy.tcti();
    })
    .await
    .unwrap_or_else(|e| panic!("the daemon must start again: {e}"));
    again.stop().await;
}

#[tokio::test]
async fn an_extend_whose_answer_was_lost_stands_and_its_function_is_registered() {
    let tpm = TestTpm::start();
    let proxy = TpmProxy::start(tpm.swtpm.port()).await;
    let s = start(tpm, Some(proxy.tcti())).await;
    proxy.set(|f| f.lose_extend_answer = true);
    // The extend reached the TPM, only its answer was lost: undoing the record would leave
    // the PCR ahead of the log for good, so it stands and the registration succeeds.
    let r = register(&s.op, "landed").await;
    assert_eq!(proxy.faulted(), 1, "the fault was injected");
    assert!(r.status.is_success(), "{}", r.json);
    assert_eq!(function_names(&s.op).await, ["landed".to_owned()]);
    let (_, records) = attest(&s.op).await;
    assert_eq!(
        describe(&records).last().map(String::as_str),
        Some("function landed")
    );
    // And the next extends keep replaying.
    assert!(register(&s.op, "next").await.status.is_success());
    attest(&s.op).await;
    s.daemon.stop().await;
}

#[tokio::test]
async fn a_tpm_restart_just_before_a_registration_starts_a_new_generation_first() {
    let s = start(TestTpm::start(), None).await;
    let Setup {
        mut tpm,
        daemon,
        op,
    } = s;
    let alice = Party::new("alice", &daemon);
    let bob = Party::new("bob", &daemon);
    let one = register(&op, "one").await;
    assert!(one.status.is_success(), "{}", one.json);
    let manifest = two_party_manifest(one.json["sha256"].as_str().unwrap(), &alice, &bob);
    let first = op
        .post("/v1/instances", json!({ "manifest": manifest }))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.json);
    let first_id = first.json["id"].as_str().unwrap().to_owned();
    let (generation, _) = attest(&op).await;

    // Restarted, and at once a registration: its extend must not land on the fresh PCR
    // ahead of the new generation's re-measurement (the background check runs every 10 s).
    tpm.swtpm.restart().unwrap();
    let two = register(&op, "two").await;
    assert!(two.status.is_success(), "{}", two.json);
    let (after, records) = attest(&op).await;
    assert_eq!(after, generation + 1);
    assert_generation(
        &records,
        &["function one".to_owned(), format!("instance {first_id}")],
        Some("function two"),
    );

    // The same for an instance creation.
    tpm.swtpm.restart().unwrap();
    let manifest = two_party_manifest(two.json["sha256"].as_str().unwrap(), &alice, &bob);
    let second = op
        .post("/v1/instances", json!({ "manifest": manifest }))
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.json);
    let second_id = second.json["id"].as_str().unwrap().to_owned();
    let (last, records) = attest(&op).await;
    assert_eq!(last, generation + 2);
    assert_generation(
        &records,
        &[
            "function one".to_owned(),
            "function two".to_owned(),
            format!("instance {first_id}"),
        ],
        Some(&format!("instance {second_id}")),
    );
    daemon.stop().await;
}

#[tokio::test]
async fn pcr_23_extended_by_another_process_refuses_the_next_registration() {
    let s = start(TestTpm::start(), None).await;
    assert!(register(&s.op, "before").await.status.is_success());
    let file = log_file(&s.daemon.state_dir);
    let before = std::fs::read(&file).unwrap();
    s.tpm.tool_ok(
        "tpm2_pcrextend",
        &[&format!(
            "23:sha256={}",
            hex::encode(arbiter_tests::sha256(&[b"not the daemon"]))
        )],
    );
    let r = register(&s.op, "refused").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
    let message = error_message(&r);
    assert!(
        message.contains("PCR 23") && message.contains("extended by another process"),
        "{message}"
    );
    assert!(
        std::fs::read(&file).unwrap() == before,
        "nothing was appended to the log"
    );
    assert_eq!(function_names(&s.op).await, ["before".to_owned()]);

    // The same for PCR 23 reset by another process (all-zero without a TPM startup).
    s.tpm.tool_ok("tpm2_pcrreset", &["23"]);
    let r = register(&s.op, "after reset").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
    let message = error_message(&r);
    assert!(
        message.contains("PCR 23") && message.contains("all-zero without a TPM startup"),
        "{message}"
    );
    assert!(
        std::fs::read(&file).unwrap() == before,
        "nothing was appended to the log"
    );
    assert_eq!(function_names(&s.op).await, ["before".to_owned()]);
    s.daemon.stop().await;
}

#[tokio::test]
async fn a_sealing_index_replaced_under_the_daemon_is_not_written() {
    let s = start(TestTpm::start(), None).await;
    let alice = Party::new("alice", &s.daemon);
    let bob = Party::new("bob", &s.daemon);
    let f = register(&s.op, "f").await;
    let manifest = two_party_manifest(f.json["sha256"].as_str().unwrap(), &alice, &bob);
    let inst =
        s.op.post("/v1/instances", json!({ "manifest": manifest }))
            .await;
    assert_eq!(inst.status, StatusCode::CREATED, "{}", inst.json);
    let id = inst.json["id"].as_str().unwrap();

    // Someone with owner auth replaces the index: the same PolicyPCR, but owner-readable.
    // A rotation that wrote the next key there would hand it to the owner.
    let index = format!("{:#x}", s.daemon.engine.config().tpm.sealing_nv_index);
    s.tpm.tool_ok("tpm2_nvundefine", &[&index, "-C", "o"]);
    let session = s.tpm.path("session.ctx").display().to_string();
    let policy = s.tpm.path("policy.bin").display().to_string();
    s.tpm.tool_ok("tpm2_startauthsession", &["-S", &session]);
    s.tpm.tool_ok(
        "tpm2_policypcr",
        &["-S", &session, "-l", "sha256:0,2,4,7,9", "-L", &policy],
    );
    s.tpm.tool_ok("tpm2_flushcontext", &[&session]);
    s.tpm.tool_ok(
        "tpm2_nvdefine",
        &[
            &index,
            "-C",
            "o",
            "-s",
            "40",
            "-a",
            "ownerread|ownerwrite|policywrite|policyread|no_da",
            "-L",
            &policy,
        ],
    );

    let r = alice
        .post(&format!("/v1/instances/{id}/destroy"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
    let message = error_message(&r);
    assert!(
        message.contains("sealing index") && message.contains("attributes"),
        "{message}"
    );
    // Nothing was written to the impostor, and the instance waits, still `destroying`.
    let read = s.tpm.tool("tpm2_nvread", &["-C", "o", "-s", "40", &index]);
    assert!(
        !read.status.success(),
        "the owner-readable index must not hold a key"
    );
    let described = alice.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(described.json["state"], "destroying", "{}", described.json);
    s.daemon.stop().await;
}

#[tokio::test]
async fn a_destruction_retried_after_an_unsettled_extend_names_a_record_the_log_holds() {
    let tpm = TestTpm::start();
    let proxy = TpmProxy::start(tpm.swtpm.port()).await;
    let s = start(tpm, Some(proxy.tcti())).await;
    let alice = Party::new("alice", &s.daemon);
    let bob = Party::new("bob", &s.daemon);
    let f = register(&s.op, "f").await;
    let manifest = two_party_manifest(f.json["sha256"].as_str().unwrap(), &alice, &bob);
    let inst =
        s.op.post("/v1/instances", json!({ "manifest": manifest }))
            .await;
    assert_eq!(inst.status, StatusCode::CREATED, "{}", inst.json);
    let id = inst.json["id"].as_str().unwrap();

    // The extend of `instance_destroyed` fails and the PCR read after it too: the record's
    // fate is unknown, and the destruction fails.
    proxy.set(|f| {
        f.refuse_extend = true;
        f.then_drop_pcr_read = true;
    });
    let r = alice
        .post(&format!("/v1/instances/{id}/destroy"), json!({}))
        .await;
    assert_eq!(proxy.faulted(), 1, "the fault was injected");
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);

    // The retry must not take the unsettled record for a measured one: the certificate it
    // signs names a record the attested log holds.
    let r = alice
        .post(&format!("/v1/instances/{id}/destroy"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let payload = &r.json["payload"];
    let recnum = payload["instance_destroyed_recnum"].as_u64().unwrap();
    let (generation, records) = attest(&s.op).await;
    assert_eq!(payload["log_generation"].as_u64().unwrap(), generation);
    let named = records
        .iter()
        .find(|r| r.recnum == recnum)
        .expect("the certificate's record is in the log");
    match &named.content {
        EventContent::InstanceDestroyed(d) => assert_eq!(hex::encode(d.instance_id.0), id),
        other => panic!("record {recnum} is {}", other.event_name()),
    }
    s.daemon.stop().await;
}

#[tokio::test]
async fn an_unsettled_extend_before_a_tpm_restart_is_left_out_of_the_new_generation() {
    let tpm = TestTpm::start();
    let proxy = TpmProxy::start(tpm.swtpm.port()).await;
    let Setup {
        mut tpm,
        daemon,
        op,
    } = start(tpm, Some(proxy.tcti())).await;
    assert!(register(&op, "one").await.status.is_success());
    let (generation, _) = attest(&op).await;
    proxy.set(|f| {
        f.refuse_extend = true;
        f.then_drop_pcr_read = true;
    });
    let r = register(&op, "unsettled").await;
    assert_eq!(proxy.faulted(), 1, "the fault was injected");
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);

    tpm.swtpm.restart().unwrap();
    let r = register(&op, "two").await;
    assert!(r.status.is_success(), "{}", r.json);
    let (after, records) = attest(&op).await;
    assert_eq!(after, generation + 1);
    assert_generation(&records, &["function one".to_owned()], Some("function two"));
    assert_eq!(
        sorted(function_names(&op).await),
        ["one".to_owned(), "two".to_owned()]
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_tls_key_replacement_whose_measurement_failed_is_measured_at_the_next_start() {
    let tpm = TestTpm::start();
    let proxy = TpmProxy::start(tpm.swtpm.port()).await;
    let Setup { tpm, daemon, op } = start(tpm, Some(proxy.tcti())).await;
    let database = daemon.engine.database();
    daemon.stop().await;
    // The TLS key's wrapping is gone: the next start replaces the key and measures
    // `tls_key_replaced` — its extend (the second of that start, after `daemon_started`)
    // is refused.
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
             c.execute(\"DELETE FROM wrapped_secrets WHERE owner = 'tls'\"); c.commit()",
        )
        .arg(&database)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    proxy.set(|f| {
        f.pass_extends = 1;
        f.refuse_extend = true;
    });
    let operator_id = op.id.clone();
    let configure = |c: &mut arbiter_daemon::config::Config| {
        c.access.operators = vec![operator_id.clone()];
        c.tpm.tcti = proxy.tcti();
    };
    let err = TestDaemon::try_start(&tpm, &tpm.path("daemon"), configure)
        .await
        .err()
        .expect("the start fails with the measurement");
    assert_eq!(proxy.faulted(), 1, "the fault was injected");
    assert!(err.to_string().contains("PCR_Extend"), "{err}");

    // The next start must not serve an unmeasured TLS key: it replaces it again and
    // measures that.
    let daemon = TestDaemon::try_start(&tpm, &tpm.path("daemon"), configure)
        .await
        .unwrap_or_else(|e| panic!("starting again: {e}"));
    let mut op = op;
    op.reconnect(&daemon.url);
    let served = op.get("/healthz").await.server_spki_sha256;
    let (_, records) = attest(&op).await;
    let measured: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.content {
            EventContent::TlsKeyReplaced(t) => Some(hex::encode(t.tls_spki_sha256.0)),
            _ => None,
        })
        .collect();
    assert_eq!(
        measured.last(),
        Some(&served),
        "the TLS key served is the one last measured"
    );
    daemon.stop().await;
}
