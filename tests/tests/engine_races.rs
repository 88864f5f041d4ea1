//! The engine's races and error paths on a private swtpm, each forced deterministically:
//! an instance created or a secret read while a destruction rotates the sealing key, an
//! input withdrawn while its evaluation starts (through the engine's test-only pause
//! points, feature `failpoints`); an evaluation that cannot complete or whose evaluator
//! does not start; a stored function source or wrapping altered on disk while the daemon
//! was stopped; an input for an unrecoverable instance; an epoch reset with nothing to
//! give up.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use arbiter_client::http::{PartyIdentity, Response};
use arbiter_daemon::config::Config;
use arbiter_tests::TestTpm;
use arbiter_tests::daemon::{Party, TestDaemon, two_party_manifest};
use hyper::StatusCode;
use serde_json::{Value, json};

const SUM: &str = "fn compute(inputs) { inputs.a + inputs.b }";

/// How long a test lets a racing request run while the engine is held at a pause point:
/// with the fix it cannot complete meanwhile, so this bounds the wait, not the outcome.
const RACE_WINDOW: Duration = Duration::from_secs(3);

/// A TPM, a state directory, an operator and two parties, with a daemon running.
struct World {
    tpm: TestTpm,
    state: PathBuf,
    operator_identity: PartyIdentity,
    /// `None` only while restarting.
    daemon: Option<TestDaemon>,
    op: Party,
    alice: Party,
    bob: Party,
}

async fn start(
    tpm: &TestTpm,
    state: &Path,
    operator: &PartyIdentity,
    configure: impl FnOnce(&mut Config),
) -> TestDaemon {
    let id = operator.identity().unwrap();
    TestDaemon::start(tpm, state, |c| {
        c.access.operators = vec![id];
        configure(c);
    })
    .await
}

fn clone_identity(p: &PartyIdentity) -> PartyIdentity {
    PartyIdentity::from_pem(p.cert_pem().as_bytes(), p.key_pem().as_bytes()).unwrap()
}

async fn world_with(configure: impl FnOnce(&mut Config)) -> World {
    let tpm = TestTpm::start();
    let state = tpm.path("daemon");
    let operator_identity = PartyIdentity::generate("operator").unwrap();
    let daemon = start(&tpm, &state, &operator_identity, configure).await;
    World {
        op: Party::with_identity("operator", clone_identity(&operator_identity), &daemon.url),
        alice: Party::new("alice", &daemon),
        bob: Party::new("bob", &daemon),
        tpm,
        state,
        operator_identity,
        daemon: Some(daemon),
    }
}

async fn world() -> World {
    world_with(|_| {}).await
}

impl World {
    /// Stops the daemon, runs `edit` on its stopped state, and starts it again
    /// (`configure` adjusts the new daemon's configuration).
    async fn restart_with(
        &mut self,
        edit: impl FnOnce(&Path),
        configure: impl FnOnce(&mut Config),
    ) {
        if let Some(old) = self.daemon.take() {
            old.stop().await;
        }
        edit(&self.state);
        let new = start(&self.tpm, &self.state, &self.operator_identity, configure).await;
        let url = new.url.clone();
        self.daemon = Some(new);
        for p in [&mut self.op, &mut self.alice, &mut self.bob] {
            p.reconnect(&url);
        }
    }

    fn engine(&self) -> &arbiter_daemon::engine::Engine {
        &self.daemon.as_ref().unwrap().engine
    }

    async fn stop(mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
    }

    async fn restart(&mut self) {
        self.restart_with(|_| {}, |_| {}).await;
    }

    async fn register(&self, source: &str) -> String {
        let f = self
            .op
            .post(
                "/v1/functions",
                json!({"name": "f", "language": "rhai", "source": source}),
            )
            .await;
        assert_eq!(f.status, StatusCode::CREATED, "{}", f.json);
        f.json["sha256"].as_str().unwrap().to_owned()
    }

    async fn instance(&self) -> Value {
        let sha = self.register(SUM).await;
        let r = self
            .op
            .post(
                "/v1/instances",
                json!({ "manifest": two_party_manifest(&sha, &self.alice, &self.bob) }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        r.json
    }

    async fn submit(&self, who: &Party, inst: &Value, slot: &str, value: i64) -> Response {
        who.put(
            &path(inst, &format!("/inputs/{slot}")),
            who.encrypt_input(inst, slot, 1, &json!(value)),
        )
        .await
    }

    async fn result(&self, inst: &Value) -> Value {
        let r = self.alice.get(&path(inst, "/result?wait=30")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        r.json
    }

    async fn state_of(&self, inst: &Value) -> Value {
        self.alice.get(&path(inst, "")).await.json
    }
}

fn path(inst: &Value, rest: &str) -> String {
    format!("/v1/instances/{}{rest}", inst["id"].as_str().unwrap())
}

fn id(inst: &Value) -> String {
    inst["id"].as_str().unwrap().to_owned()
}

/// The daemon's store, opened as an attacker with disk access (or a faulty disk) would.
fn database(state: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(state.join("arbiter.db")).unwrap()
}

/// Flips the first byte of a BLOB column in the rows `filter` selects.
fn flip_first_byte(state: &Path, table: &str, column: &str, filter: &str, arg: &str) {
    let db = database(state);
    let mut blob: Vec<u8> = db
        .query_row(
            &format!("SELECT {column} FROM {table} WHERE {filter}"),
            [arg],
            |r| r.get(0),
        )
        .unwrap();
    blob[0] ^= 0x01;
    let changed = db
        .execute(
            &format!("UPDATE {table} SET {column} = ?2 WHERE {filter}"),
            rusqlite::params![arg, blob],
        )
        .unwrap();
    assert!(changed >= 1);
}

/// Waits for `future` at most `RACE_WINDOW`; `None` if it did not complete meanwhile.
async fn within_window<T>(future: &mut tokio::task::JoinHandle<T>) -> Option<T> {
    tokio::time::timeout(RACE_WINDOW, future)
        .await
        .ok()
        .map(|r| r.unwrap())
}

#[tokio::test]
async fn an_instance_created_while_a_destruction_rotates_keeps_its_secret() {
    let mut w = world().await;
    let doomed = w.instance().await;
    let sha = w.register(SUM).await;

    // Hold the destruction right after it read the wrappings it will carry over.
    let mut pause = w.engine().pause_at("destruction-wrappings-read");
    let conn = w.alice.conn.clone();
    let destroy_path = path(&doomed, "/destroy");
    let destroy = tokio::spawn(async move { conn.post(&destroy_path, &json!({})).await.unwrap() });
    tokio::time::timeout(Duration::from_secs(30), pause.reached())
        .await
        .expect("the destruction reaches its rotation");

    // Meanwhile an instance is created.
    let conn = w.op.conn.clone();
    let manifest = two_party_manifest(&sha, &w.alice, &w.bob);
    let mut create = tokio::spawn(async move {
        conn.post("/v1/instances", &json!({ "manifest": manifest }))
            .await
            .unwrap()
    });
    let created_during_rotation = within_window(&mut create).await;
    pause.release();
    let destroyed = destroy.await.unwrap();
    assert_eq!(destroyed.status, StatusCode::OK, "{}", destroyed.json);
    let waited = created_during_rotation.is_none();
    let created = match created_during_rotation {
        Some(created) => created,
        None => create.await.unwrap(),
    };
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let inst = created.json;

    // Its secret opens now, and after a restart.
    let r = w.submit(&w.alice, &inst, "a", 40).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    w.restart().await;
    assert!(w.engine().unrecoverable().is_empty());
    let r = w.submit(&w.bob, &inst, "b", 2).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(w.result(&inst).await["output"], 42);
    assert!(waited, "instance creation must wait for the rotation");
    w.stop().await;
}

#[tokio::test]
async fn a_secret_read_while_a_destruction_rotates_opens() {
    let w = world().await;
    let kept = w.instance().await;
    let doomed = w.instance().await;

    // Hold an input's submission right after it read the sealing epoch.
    let mut pause = w.engine().pause_at("secret-epoch-read");
    let conn = w.alice.conn.clone();
    let (input_path, body) = (
        path(&kept, "/inputs/a"),
        w.alice.encrypt_input(&kept, "a", 1, &json!(40)),
    );
    let submit = tokio::spawn(async move { conn.put(&input_path, &body).await.unwrap() });
    tokio::time::timeout(Duration::from_secs(30), pause.reached())
        .await
        .expect("the submission reads the instance secret");

    // Meanwhile another instance is destroyed (the sealing key rotates).
    let conn = w.alice.conn.clone();
    let destroy_path = path(&doomed, "/destroy");
    let mut destroy =
        tokio::spawn(async move { conn.post(&destroy_path, &json!({})).await.unwrap() });
    let destroyed_meanwhile = within_window(&mut destroy).await;
    pause.release();
    let submitted = submit.await.unwrap();
    assert_eq!(submitted.status, StatusCode::OK, "{}", submitted.json);
    let waited = destroyed_meanwhile.is_none();
    let destroyed = match destroyed_meanwhile {
        Some(destroyed) => destroyed,
        None => destroy.await.unwrap(),
    };
    assert_eq!(destroyed.status, StatusCode::OK, "{}", destroyed.json);
    assert!(waited, "the rotation must wait for a secret being read");
    let r = w.submit(&w.bob, &kept, "b", 2).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(w.result(&kept).await["output"], 42);
    w.stop().await;
}

#[tokio::test]
async fn an_evaluation_that_cannot_complete_returns_the_instance_to_open() {
    let mut w = world().await;
    let inst = w.instance().await;
    assert_eq!(
        w.submit(&w.alice, &inst, "a", 40).await.status,
        StatusCode::OK
    );
    // A stored input damaged on disk: the evaluation cannot open it.
    let instance_id = id(&inst);
    w.restart_with(
        |state| {
            flip_first_byte(
                state,
                "inputs",
                "ciphertext",
                "instance_id = ?1 AND slot = 'a'",
                &instance_id,
            )
        },
        |_| {},
    )
    .await;

    let mut pause = w.engine().pause_at("evaluation-abandoned");
    assert_eq!(w.submit(&w.bob, &inst, "b", 2).await.status, StatusCode::OK);
    if tokio::time::timeout(Duration::from_secs(30), pause.reached())
        .await
        .is_err()
    {
        panic!(
            "the failed evaluation was not abandoned; the instance: {}",
            w.state_of(&inst).await
        );
    }
    pause.release();
    let d = w.state_of(&inst).await;
    assert_eq!(d["state"], "open", "{d}");
    assert_eq!(d["round"], 1, "{d}");
    assert_eq!(d["evaluations"], 0, "{d}");
    let r = w.alice.get(&path(&inst, "/result")).await;
    assert_eq!(r.json["evaluated"], false, "{}", r.json);

    // Open again, it recovers: the owner replaces the damaged input and it evaluates.
    let r = w.alice.delete(&path(&inst, "/inputs/a")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        w.submit(&w.alice, &inst, "a", 40).await.status,
        StatusCode::OK
    );
    assert_eq!(w.result(&inst).await["output"], 42);
    w.stop().await;
}

#[tokio::test]
async fn an_input_for_an_unrecoverable_instance_is_a_clear_conflict() {
    let mut w = world().await;
    let inst = w.instance().await;
    let other = w.instance().await;
    assert_eq!(
        w.submit(&w.alice, &inst, "a", 40).await.status,
        StatusCode::OK
    );
    // As in a restored old copy: no wrapping of its secret at the current epoch.
    let instance_id = id(&inst);
    w.restart_with(
        |state| {
            let n = database(state)
                .execute(
                    "DELETE FROM wrapped_secrets WHERE owner = ?1",
                    [&instance_id],
                )
                .unwrap();
            assert_eq!(n, 1);
        },
        |_| {},
    )
    .await;
    assert_eq!(w.engine().unrecoverable(), vec![instance_id.clone()]);

    let r = w.submit(&w.bob, &inst, "b", 2).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    assert_eq!(
        r.json["error"]["code"], "instance_unrecoverable",
        "{}",
        r.json
    );
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains(&instance_id), "{message}");
    assert!(message.contains("epoch reset"), "{message}");
    // The others are untouched.
    assert_eq!(
        w.submit(&w.alice, &other, "a", 40).await.status,
        StatusCode::OK
    );
    assert_eq!(
        w.submit(&w.bob, &other, "b", 2).await.status,
        StatusCode::OK
    );
    assert_eq!(w.result(&other).await["output"], 42);
    w.stop().await;
}

#[tokio::test]
async fn an_input_withdrawn_while_its_evaluation_starts_is_not_reported_withdrawn() {
    let w = world().await;
    let inst = w.instance().await;
    let a = w.submit(&w.alice, &inst, "a", 40).await;
    assert_eq!(a.status, StatusCode::OK);

    // Hold the withdrawal after its checks, before it deletes.
    let mut pause = w.engine().pause_at("withdraw-checked");
    let conn = w.alice.conn.clone();
    let withdraw_path = path(&inst, "/inputs/a");
    let withdraw = tokio::spawn(async move { conn.delete(&withdraw_path).await.unwrap() });
    tokio::time::timeout(Duration::from_secs(30), pause.reached())
        .await
        .expect("the withdrawal passes its checks");
    // Meanwhile the last input arrives and the evaluation runs with alice's input.
    assert_eq!(w.submit(&w.bob, &inst, "b", 2).await.status, StatusCode::OK);
    let result = w.result(&inst).await;
    assert_eq!(result["output"], 42, "{result}");
    assert!(
        result["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["ciphertext_sha256"] == a.json["ciphertext_sha256"])
    );
    pause.release();
    let withdrawn = withdraw.await.unwrap();
    assert_eq!(withdrawn.status, StatusCode::CONFLICT, "{}", withdrawn.json);
    let d = w.state_of(&inst).await;
    let slot_a = d["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slot"] == "a")
        .unwrap()
        .clone();
    assert_eq!(slot_a["filled"], true, "{d}");
    w.stop().await;
}

#[tokio::test]
async fn an_evaluator_that_does_not_start_leaves_the_round_unused() {
    let mut w = world_with(|c| c.evaluator = Some(PathBuf::from("/nonexistent/arbiterd"))).await;
    let h = w.alice.get("/healthz").await;
    assert_eq!(h.json["status"], "ok", "{}", h.json);
    let inst = w.instance().await;
    assert_eq!(
        w.submit(&w.alice, &inst, "a", 40).await.status,
        StatusCode::OK
    );
    assert_eq!(w.submit(&w.bob, &inst, "b", 2).await.status, StatusCode::OK);

    // The daemon says it is degraded, and why.
    let mut health = Value::Null;
    for _ in 0..300 {
        health = w.alice.get("/healthz").await.json;
        if health["status"] == "degraded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health["status"], "degraded", "{health}");
    let reasons = health["degraded"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r.as_str().unwrap().contains("/nonexistent/arbiterd")),
        "{health}"
    );
    // Nothing was stored and the round is not used up.
    let r = w.alice.get(&path(&inst, "/result")).await;
    assert_eq!(r.json["evaluated"], false, "{}", r.json);
    let d = w.state_of(&inst).await;
    assert_eq!(d["state"], "open", "{d}");
    assert_eq!(d["round"], 1, "{d}");
    assert_eq!(d["evaluations"], 0, "{d}");

    // Restarted with a working evaluator, the daemon evaluates it by itself.
    w.restart_with(|_| {}, |_| {}).await;
    assert_eq!(w.result(&inst).await["output"], 42);
    let h = w.alice.get("/healthz").await;
    assert_eq!(h.json["status"], "ok", "{}", h.json);
    w.stop().await;
}

#[tokio::test]
async fn a_function_source_altered_on_disk_is_not_run() {
    let mut w = world().await;
    let inst = w.instance().await;
    assert_eq!(
        w.submit(&w.alice, &inst, "a", 40).await.status,
        StatusCode::OK
    );
    let sha = inst["function_sha256"].as_str().unwrap().to_owned();
    w.restart_with(
        |state| {
            let n = database(state)
                .execute(
                    "UPDATE functions SET source = ?1 WHERE sha256 = ?2",
                    rusqlite::params![b"fn compute(inputs) { 666 }".to_vec(), sha],
                )
                .unwrap();
            assert_eq!(n, 1);
        },
        |_| {},
    )
    .await;
    assert_eq!(w.submit(&w.bob, &inst, "b", 2).await.status, StatusCode::OK);
    let r = w.result(&inst).await;
    assert_eq!(r["evaluated"], true, "{r}");
    assert_eq!(r["succeeded"], false, "{r}");
    assert_eq!(r["output"], Value::Null, "{r}");
    assert_eq!(r["error"]["reason"], "function_tampered", "{r}");
    w.stop().await;
}

#[tokio::test]
async fn an_epoch_reset_with_nothing_unrecoverable_is_refused() {
    let w = world().await;
    let inst = w.instance().await;
    let r = w.op.post("/v1/admin/epoch-reset", json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    assert_eq!(
        r.json["error"]["code"], "nothing_unrecoverable",
        "{}",
        r.json
    );
    // The sealing key did not move: the attested epoch is still 0.
    let mut n = [0u8; 16];
    rand::fill(&mut n);
    let att = w
        .alice
        .get(&format!("/v1/attestation?nonce={}", hex::encode(n)))
        .await;
    assert_eq!(att.json["sealing"]["epoch"], 0, "{}", att.json["sealing"]);
    assert_eq!(
        w.submit(&w.alice, &inst, "a", 40).await.status,
        StatusCode::OK
    );
    w.stop().await;
}

#[tokio::test]
async fn a_wrapping_that_does_not_open_is_reported_at_start() {
    let mut w = world().await;
    let broken = w.instance().await;
    let doomed = w.instance().await;
    let kept = w.instance().await;
    let broken_id = id(&broken);
    w.restart_with(
        |state| {
            flip_first_byte(
                state,
                "wrapped_secrets",
                "ciphertext",
                "owner = ?1",
                &broken_id,
            )
        },
        |_| {},
    )
    .await;
    assert_eq!(w.engine().unrecoverable(), vec![broken_id.clone()]);
    assert_eq!(w.state_of(&broken).await["state"], "unrecoverable");
    assert_eq!(w.state_of(&kept).await["state"], "open");

    // Another instance's destruction still rotates the key.
    let r = w.alice.post(&path(&doomed, "/destroy"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(w.state_of(&doomed).await["state"], "destroyed");
    // The others keep working, across a restart too.
    assert_eq!(
        w.submit(&w.alice, &kept, "a", 40).await.status,
        StatusCode::OK
    );
    w.restart().await;
    assert_eq!(w.engine().unrecoverable(), vec![broken_id]);
    assert_eq!(w.submit(&w.bob, &kept, "b", 2).await.status, StatusCode::OK);
    assert_eq!(w.result(&kept).await["output"], 42);
    w.stop().await;
}
