//! A real `arbiterd` for end-to-end tests: the engine started in-process on a private
//! swtpm with its own state directory, serving HTTPS on a free loopback port, evaluating in
//! the real `arbiterd` binary; and parties with their own identities and connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arbiter_client::http::{Connection, PartyIdentity, Response};
use arbiter_daemon::config::Config;
use arbiter_daemon::engine::Engine;
use arbiter_policy::hpke::{self, InputContext};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::TestTpm;
use crate::process::{DaemonProcess, DaemonSpec};

/// The `arbiterd` binary that evaluations re-execute: `$ARBITERD`, or the one cargo built
/// beside this program (a binary of this crate, e.g. `arbiter-load`) or beside its
/// directory (a test binary in `deps/`; `cargo test --workspace` builds it).
pub fn arbiterd_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ARBITERD") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    if let Some(beside) = exe.parent().map(|d| d.join("arbiterd"))
        && beside.exists()
    {
        return beside;
    }
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join("arbiterd");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p arbiter-daemon` (make test does)",
        path.display()
    );
    path
}

/// A running daemon.
pub struct TestDaemon {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The engine, for inspection.
    pub engine: Arc<Engine>,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// The Keylime agent listener's address and agent UUID, when `[keylime]` is enabled.
    pub keylime: Option<(std::net::SocketAddr, String)>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestDaemon {
    /// Starts a daemon on `tpm` with state in `state_dir`; `configure` adjusts the config
    /// (operators, creators, limits) before start.
    pub async fn start(
        tpm: &TestTpm,
        state_dir: &Path,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        Self::try_start(tpm, state_dir, configure)
            .await
            .unwrap_or_else(|e| panic!("starting arbiterd: {e}"))
    }

    /// Like [`TestDaemon::start`], returning the start error.
    pub async fn try_start(
        tpm: &TestTpm,
        state_dir: &Path,
        configure: impl FnOnce(&mut Config),
    ) -> Result<Self, arbiter_daemon::engine::StartError> {
        let mut config = Config {
            state_dir: state_dir.to_owned(),
            evaluator: Some(arbiterd_path()),
            listen: "127.0.0.1:0".parse().expect("address"),
            ..Config::default()
        };
        config.tpm.tcti = tpm.tcti();
        configure(&mut config);
        let listener = TcpListener::bind(config.listen)
            .await
            .expect("binding a loopback port");
        let url = format!("https://{}", listener.local_addr().expect("bound address"));
        let daemon = arbiter_daemon::server::Daemon::start(config, listener).await?;
        let engine = Arc::clone(daemon.engine());
        let keylime = daemon
            .keylime()
            .map(|a| (a.local_addr(), a.uuid().to_owned()));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            daemon
                .serve(async {
                    let _ = stopped.await;
                })
                .await
                .expect("serving");
        });
        Ok(Self {
            url,
            engine,
            state_dir: state_dir.to_owned(),
            keylime,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Stops serving and waits for the drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// A party: an identity and its connection to a daemon.
pub struct Party {
    /// Its name (for manifests and messages).
    pub name: String,
    /// Its identity (SPKI hash).
    pub id: String,
    /// Its key and certificate.
    pub identity: PartyIdentity,
    /// Its connection.
    pub conn: Connection,
}

impl Party {
    /// Fetches `/v1/tpm` and `/v1/attestation` (with a fresh nonce) and appraises them as a
    /// party's client does, under `policy`: the attestation's JSON and the verdict.
    pub async fn appraise(
        &self,
        policy: &arbiter_policy::appraisal::AppraisalPolicy,
    ) -> (Value, arbiter_policy::appraisal::Verdict) {
        use arbiter_client::verify::{Answer, appraise_answers, fresh_nonce};
        let tpm = self.get("/v1/tpm").await;
        assert!(tpm.status.is_success(), "{}", tpm.json);
        let n = fresh_nonce();
        let att = self.get(&format!("/v1/attestation?nonce={n}")).await;
        assert!(att.status.is_success(), "{}", att.json);
        let (verdict, _) = appraise_answers(
            &Answer {
                json: &tpm.json,
                tls_spki_sha256: &tpm.server_spki_sha256,
            },
            &Answer {
                json: &att.json,
                tls_spki_sha256: &att.server_spki_sha256,
            },
            &n,
            None,
            policy,
        )
        .expect("appraising the answers");
        (att.json, verdict)
    }

    /// A new party with a fresh self-signed identity, connected to `daemon`.
    pub fn new(name: &str, daemon: &TestDaemon) -> Self {
        let identity = PartyIdentity::generate(name).expect("generating an identity");
        Self::with_identity(name, identity, &daemon.url)
    }

    /// A party with a given identity connected to `url`.
    pub fn with_identity(name: &str, identity: PartyIdentity, url: &str) -> Self {
        let id = identity.identity().expect("identity");
        let conn = Connection::new(url, &identity, None).expect("connection");
        Self {
            name: name.into(),
            id,
            identity,
            conn,
        }
    }

    /// The same identity connected to another daemon URL (after a restart).
    pub fn reconnect(&mut self, url: &str) {
        self.conn = Connection::new(url, &self.identity, None).expect("connection");
    }

    /// GET; the answer is checked against the API document.
    pub async fn get(&self, path: &str) -> Response {
        let r = self.conn.get(path).await.expect("request");
        crate::contract::check("GET", path, &r);
        r
    }

    /// POST JSON; the answer is checked against the API document.
    pub async fn post(&self, path: &str, body: Value) -> Response {
        let r = self.conn.post(path, &body).await.expect("request");
        crate::contract::check("POST", path, &r);
        r
    }

    /// PUT JSON; the answer is checked against the API document.
    pub async fn put(&self, path: &str, body: Value) -> Response {
        let r = self.conn.put(path, &body).await.expect("request");
        crate::contract::check("PUT", path, &r);
        r
    }

    /// DELETE; the answer is checked against the API document.
    pub async fn delete(&self, path: &str) -> Response {
        let r = self.conn.delete(path).await.expect("request");
        crate::contract::check("DELETE", path, &r);
        r
    }

    /// Encrypts `value` for `slot` of an instance exactly as a party does (HPKE per
    /// docs/protocol.md, padded), returning the request body.
    pub fn encrypt_input(&self, instance: &Value, slot: &str, round: u64, value: &Value) -> Value {
        self.encrypt_input_as(instance, slot, round, &self.id, value)
    }

    /// Submits `value` for `slot` of `instance`, round 1, encrypted as a party does.
    pub async fn submit(&self, instance: &Value, slot: &str, value: &Value) -> Response {
        let id = instance["id"].as_str().expect("id");
        self.put(
            &format!("/v1/instances/{id}/inputs/{slot}"),
            self.encrypt_input(instance, slot, 1, value),
        )
        .await
    }

    /// Like [`Party::encrypt_input`], but binding another submitter identity (to test
    /// replays).
    pub fn encrypt_input_as(
        &self,
        instance: &Value,
        slot: &str,
        round: u64,
        submitter: &str,
        value: &Value,
    ) -> Value {
        let public_key =
            hex::decode(instance["public_key"].as_str().expect("public_key")).expect("hex");
        let ctx = InputContext {
            instance_id: instance["id"].as_str().expect("id"),
            slot,
            round,
            function_sha256: instance["function_sha256"]
                .as_str()
                .expect("function_sha256"),
            submitter,
        };
        let plaintext = hpke::pad_json(value.to_string().as_bytes(), hpke::DEFAULT_PAD_BLOCK);
        let (enc, ct) = hpke::seal(&public_key, &ctx, &plaintext).expect("sealing");
        let b64 = base64::engine::general_purpose::STANDARD;
        json!({ "enc": b64.encode(enc), "ciphertext": b64.encode(ct) })
    }
}

/// Registers the Rhai function `source` as `name` (by `operator`) and creates an
/// instance of it with [`two_party_manifest`]; returns the instance as created.
pub async fn two_party_instance(
    operator: &Party,
    first: &Party,
    second: &Party,
    name: &str,
    source: &str,
) -> Value {
    let f = operator
        .post(
            "/v1/functions",
            json!({"name": name, "language": "rhai", "source": source}),
        )
        .await;
    assert_eq!(f.status, hyper::StatusCode::CREATED, "{}", f.json);
    let m = two_party_manifest(f.json["sha256"].as_str().expect("sha256"), first, second);
    let inst = operator
        .post("/v1/instances", json!({ "manifest": m }))
        .await;
    assert_eq!(inst.status, hyper::StatusCode::CREATED, "{}", inst.json);
    inst.json
}

/// A two-party manifest: `a` from the first party, `b` from the second, both read the
/// result, automatic trigger on all slots.
pub fn two_party_manifest(function_sha256: &str, first: &Party, second: &Party) -> Value {
    two_party_manifest_of(
        function_sha256,
        (&first.name, &first.id),
        (&second.name, &second.id),
    )
}

/// [`two_party_manifest`] for parties given as `(name, identity)` (e.g. CLI parties); the
/// first party destroys on request.
pub fn two_party_manifest_of(
    function_sha256: &str,
    (first_name, first): (&str, &str),
    (second_name, second): (&str, &str),
) -> Value {
    json!({
        "name": "test computation",
        "function": { "sha256": function_sha256 },
        "parties": [
            { "name": first_name, "identity": first },
            { "name": second_name, "identity": second }
        ],
        "slots": {
            "a": { "providers": [first], "provide": "provide_once" },
            "b": { "providers": [second], "provide": "provide_once" }
        },
        "trigger": { "kind": "all" },
        "readers": { first: "result", second: "result" },
        "destruction": { "policy": "on_request", "destroyers": [first] }
    })
}

/// `arbiterd run` as a child process for crash tests (failpoints abort the process): a
/// [`DaemonProcess`] with the operator in its configuration and `ARBITER_FAILPOINT` set.
pub struct ProcessDaemon {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    process: DaemonProcess,
}

impl ProcessDaemon {
    /// Starts `arbiterd run` on `tpm` with `state_dir`, the given operator, and
    /// `ARBITER_FAILPOINT=failpoint` when given; waits for `READY=1`.
    pub async fn start(
        tpm: &TestTpm,
        state_dir: &Path,
        operator: &PartyIdentity,
        failpoint: Option<&str>,
    ) -> Self {
        let spec = DaemonSpec {
            state_dir: state_dir.to_owned(),
            config: format!(
                "[access]\noperators = [\"{}\"]\n",
                operator.identity().expect("identity")
            ),
            tcti: Some(tpm.tcti()),
            env: failpoint
                .map(|f| vec![("ARBITER_FAILPOINT".to_owned(), f.to_owned())])
                .unwrap_or_default(),
            ..DaemonSpec::default()
        };
        let process = tokio::task::spawn_blocking(move || DaemonProcess::start(spec))
            .await
            .expect("starting arbiterd");
        Self {
            url: process.url(),
            process,
        }
    }

    /// Waits for the process to exit by itself (a failpoint) and returns whether it was
    /// killed by a signal (abort).
    pub async fn wait_crash(mut self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        tokio::task::spawn_blocking(move || {
            self.process
                .wait_exit(std::time::Duration::from_secs(30))
                .is_some_and(|status| status.signal().is_some())
        })
        .await
        .expect("waiting for arbiterd")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid().expect("arbiterd runs")
    }

    /// Stops the process (SIGKILL: as a crash).
    pub fn kill(mut self) {
        self.process.kill();
    }
}
