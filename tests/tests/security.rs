//! Security properties of the daemon as a whole, on a private swtpm over real mutual TLS:
//!
//! - **Identity confusion**: every route of the router (the table is checked against
//!   `arbiter_daemon::api::routes::endpoints()`, so a new route must be added here) called by
//!   every role — party (slot provider), status reader, result reader, evaluator, destroyer,
//!   creator, operator, stranger — on one real instance; the roles allowed get their
//!   success status, every other gets 403 `forbidden`, and a refused call changes nothing.
//! - **Replayed nonces**: an attestation answer replayed to a verifier who asked with its own
//!   fresh nonce is refused by the client's appraisal; the same nonce twice gives two
//!   different quotes.
//! - **Transport**: a TLS 1.2-only client (rustls, with a client certificate) and a TLS 1.3
//!   client without a certificate get no HTTP answer at all.
//! - **Refusals before a body is read** reach a client still sending it (the fault
//!   Schemathesis found: the refusal was lost to a reset connection), and a body that goes
//!   on after its refusal is cut off: a refused caller's after 1 MiB or 5 s, an admitted
//!   caller's oversized body after 256 MiB.
//! - **TPM resources**: mixed TPM work through the daemon (attestations, `/v1/tpm`,
//!   function registrations, evaluations whose results are signed) leaves no transient
//!   object and no session in the TPM, checked by the daemon and by `tpm2_getcap` while it
//!   runs and after it stops. `ARBITER_TPM_OPS` sets the count (default 1,000, about 30 s
//!   in a debug build; `make reliability` runs 10,000).
//!
//! - **Scripts probing the host**: files, `/proc`, the network (a listener nothing may
//!   reach), the environment and commands, by every name a scripting library might offer
//!   them under, directly, through function pointers and as modules: refused at
//!   registration or failed when run, and nothing connected. (hostile_scripts.rs covers
//!   the clock, randomness, `eval` and the resource limits.)
//!
//! Not repeated here: slow and oversized bodies are hostile_clients.rs and large_inputs.rs.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use arbiter_client::http::PartyIdentity;
use arbiter_daemon::api::routes::{Route, endpoints};
use arbiter_tests::TestTpm;
use arbiter_tests::daemon::{Party, TestDaemon};
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SOURCE: &str = "fn compute(inputs) { inputs.a * 2 }";

/// The roles of the identity-confusion table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Party,
    StatusReader,
    ResultReader,
    Evaluator,
    Destroyer,
    Creator,
    Operator,
    Stranger,
}

use Role::*;

const ALL: [Role; 8] = [
    Party,
    StatusReader,
    ResultReader,
    Evaluator,
    Destroyer,
    Creator,
    Operator,
    Stranger,
];
/// Every party of the instance.
const PARTIES: [Role; 5] = [Party, StatusReader, ResultReader, Evaluator, Destroyer];

struct World {
    tpm: TestTpm,
    daemon: TestDaemon,
    parties: Vec<(Role, Party)>,
}

impl World {
    async fn start(configure: impl FnOnce(&mut arbiter_daemon::config::Config)) -> Self {
        let tpm = TestTpm::start();
        let ids: Vec<(Role, PartyIdentity)> = ALL
            .iter()
            .map(|r| (*r, PartyIdentity::generate(&format!("{r:?}")).unwrap()))
            .collect();
        let id_of = |r: Role| {
            ids.iter()
                .find(|(x, _)| *x == r)
                .unwrap()
                .1
                .identity()
                .unwrap()
        };
        let (operator, creator) = (id_of(Operator), id_of(Creator));
        let daemon = TestDaemon::start(&tpm, &tpm.path("daemon"), |c| {
            c.access.operators = vec![operator];
            c.access.creators = vec![arbiter_daemon::config::Creator {
                identity: creator,
                max_live_instances: 100,
            }];
            configure(c);
        })
        .await;
        let parties = ids
            .into_iter()
            .map(|(r, i)| (r, Party::with_identity(&format!("{r:?}"), i, &daemon.url)))
            .collect();
        Self {
            tpm,
            daemon,
            parties,
        }
    }

    fn as_(&self, r: Role) -> &Party {
        &self.parties.iter().find(|(x, _)| *x == r).unwrap().1
    }

    fn manifest(&self, f: &str) -> Value {
        let id = |r| self.as_(r).id.clone();
        json!({
            "name": "identity confusion",
            "function": { "sha256": f },
            "parties": PARTIES.iter().map(|r| json!({"name": format!("{r:?}"), "identity": id(*r)})).collect::<Vec<_>>(),
            "slots": { "a": { "providers": [id(Party)], "provide": "provide_each_time" } },
            "trigger": { "kind": "explicit" },
            "evaluators": [id(Evaluator)],
            "readers": { (id(ResultReader)): "result", (id(StatusReader)): "status" },
            "rounds": 5,
            "destruction": { "policy": "on_request", "destroyers": [id(Destroyer)] }
        })
    }
}

/// One row: a route, the roles allowed and their status; every other role gets 403.
struct Row {
    route: Route,
    allowed: &'static [Role],
    ok: StatusCode,
}

fn row(route: Route, allowed: &'static [Role], ok: u16) -> Row {
    Row {
        route,
        allowed,
        ok: StatusCode::from_u16(ok).unwrap(),
    }
}

/// The table, in the order the calls are made (state moves forward: input, evaluation,
/// withdrawal, destruction).
fn table() -> Vec<Row> {
    const ANY: &[Role] = &ALL;
    const OPS: &[Role] = &[Operator];
    const PARTIES_OPS: &[Role] = &[
        Party,
        StatusReader,
        ResultReader,
        Evaluator,
        Destroyer,
        Operator,
    ];
    vec![
        row(Route::Healthz, ANY, 200),
        row(Route::OpenApi, ANY, 200),
        // With `&instance=`: the instance's description is for its parties and operators.
        row(Route::Attestation, PARTIES_OPS, 200),
        row(Route::TpmInfo, ANY, 200),
        row(Route::ListFunctions, ANY, 200),
        row(Route::GetFunction, ANY, 200),
        // Any caller may ask for a credential activation; this body is not one.
        row(Route::ActivateCredential, ANY, 400),
        row(Route::Metrics, OPS, 200),
        row(Route::FleetRevocation, OPS, 200),
        row(Route::ClearFleetRevocation, OPS, 200),
        row(Route::RegisterFunction, OPS, 201),
        row(Route::CreateInstance, &[Creator, Operator], 201),
        row(Route::GetInstance, PARTIES_OPS, 200),
        row(Route::Usage, PARTIES_OPS, 200),
        row(Route::Approve, &PARTIES, 200),
        row(Route::PutInput, &[Party], 200),
        row(Route::Evaluate, &[Evaluator], 202),
        row(Route::GetResult, &[ResultReader, StatusReader], 200),
        row(Route::DeleteInput, &[Party], 200),
        row(Route::Destroy, &[Destroyer], 200),
        row(Route::DestructionCertificate, PARTIES_OPS, 200),
        // Allowed, and refused for what it is: nothing here is unrecoverable.
        row(Route::EpochReset, OPS, 409),
        row(Route::UpgradeStatus, OPS, 200),
        // Allowed, and refused for what it is: the instance is live.
        row(Route::AuthorizeUpgrade, OPS, 409),
        row(Route::WithdrawUpgrade, OPS, 200),
    ]
}

/// Calls `route` as `p` on instance `inst` (function `f`).
async fn call(
    w: &World,
    route: Route,
    p: &Party,
    inst: &Value,
    f: &Value,
) -> arbiter_client::http::Response {
    let id = inst["id"].as_str().unwrap();
    let nonce = hex::encode(arbiter_tests::sha256(&[p.id.as_bytes(), b"nonce"]));
    match route {
        Route::Healthz => p.get("/healthz").await,
        Route::OpenApi => p.get("/v1/openapi.json").await,
        Route::Attestation => {
            p.get(&format!("/v1/attestation?nonce={nonce}&instance={id}"))
                .await
        }
        Route::TpmInfo => p.get("/v1/tpm").await,
        Route::ListFunctions => p.get("/v1/functions").await,
        Route::GetFunction => p.get(&format!("/v1/functions/{}", f["id"].as_str().unwrap())).await,
        Route::ActivateCredential => {
            p.post(
                "/v1/tpm/activate-credential",
                json!({"ek_alg": "rsa2048", "credential_blob": "AAA=", "encrypted_secret": "AAA="}),
            )
            .await
        }
        Route::Metrics => p.get("/metrics").await,
        Route::FleetRevocation => p.get("/v1/fleet/revocation").await,
        Route::ClearFleetRevocation => p.delete("/v1/fleet/revocation").await,
        Route::RegisterFunction => {
            p.post(
                "/v1/functions",
                json!({"name": "g", "language": "rhai", "source": format!("fn compute(inputs) {{ {} }}", p.name.len())}),
            )
            .await
        }
        Route::CreateInstance => {
            p.post(
                "/v1/instances",
                json!({"manifest": w.manifest(f["sha256"].as_str().unwrap())}),
            )
            .await
        }
        Route::GetInstance => p.get(&format!("/v1/instances/{id}")).await,
        Route::Usage => p.get(&format!("/v1/instances/{id}/usage")).await,
        Route::Approve => {
            p.post(&format!("/v1/instances/{id}/approve"), json!({}))
                .await
        }
        Route::PutInput => {
            let body = p.encrypt_input(inst, "a", 1, &json!(21));
            p.put(&format!("/v1/instances/{id}/inputs/a"), body).await
        }
        Route::Evaluate => {
            p.post(&format!("/v1/instances/{id}/evaluate"), json!({}))
                .await
        }
        Route::GetResult => {
            p.get(&format!("/v1/instances/{id}/result?round=1&wait=20"))
                .await
        }
        Route::DeleteInput => p.delete(&format!("/v1/instances/{id}/inputs/a")).await,
        Route::Destroy => {
            p.post(&format!("/v1/instances/{id}/destroy"), json!({}))
                .await
        }
        Route::DestructionCertificate => {
            p.get(&format!("/v1/instances/{id}/destruction-certificate"))
                .await
        }
        Route::EpochReset => p.post("/v1/admin/epoch-reset", json!({})).await,
        Route::UpgradeStatus => p.get("/v1/admin/upgrade").await,
        Route::AuthorizeUpgrade => p.post("/v1/admin/upgrade", json!({})).await,
        Route::WithdrawUpgrade => p.delete("/v1/admin/upgrade").await,
    }
}

/// What a party can see of the instance, to check that a refusal changed nothing.
async fn snapshot(w: &World, id: &str) -> Value {
    let mut d = w
        .as_(Operator)
        .get(&format!("/v1/instances/{id}"))
        .await
        .json;
    // The window and clocks move on their own.
    if let Some(o) = d.as_object_mut() {
        o.retain(|k, _| ["state", "round", "slots", "accepting_inputs"].contains(&k.as_str()));
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_every_role_it_does_not_serve() {
    let w = World::start(|_| {}).await;
    let table = table();
    // Every route of the router has a row, once.
    for e in endpoints() {
        assert_eq!(
            table.iter().filter(|r| r.route == e.route).count(),
            1,
            "{:?} ({} {}) needs exactly one row",
            e.route,
            e.method,
            e.path
        );
    }
    assert_eq!(table.len(), endpoints().len());
    let f = w
        .as_(Operator)
        .post(
            "/v1/functions",
            json!({"name": "double", "language": "rhai", "source": SOURCE}),
        )
        .await
        .json;
    let inst = w
        .as_(Creator)
        .post(
            "/v1/instances",
            json!({"manifest": w.manifest(f["sha256"].as_str().unwrap())}),
        )
        .await;
    assert_eq!(inst.status, StatusCode::CREATED, "{}", inst.json);
    let inst = inst.json;
    let id = inst["id"].as_str().unwrap().to_owned();
    let mut calls = 0;
    for r in &table {
        // The refused roles first: they must find and leave the instance as it is.
        let (refused, allowed): (Vec<Role>, Vec<Role>) =
            ALL.iter().partition(|role| !r.allowed.contains(role));
        if r.route == Route::DeleteInput {
            // Round 1 was evaluated: the party fills round 2's slot, to be withdrawn.
            let p = w.as_(Party);
            let body = p.encrypt_input(&inst, "a", 2, &json!(1));
            let a = p.put(&format!("/v1/instances/{id}/inputs/a"), body).await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        }
        for role in refused {
            let before = snapshot(&w, &id).await;
            let a = call(&w, r.route, w.as_(role), &inst, &f).await;
            calls += 1;
            assert_eq!(
                (a.status, a.json["error"]["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("forbidden")),
                "{:?} as {role:?} must be refused: {}",
                r.route,
                a.json
            );
            assert_eq!(
                snapshot(&w, &id).await,
                before,
                "{:?} as {role:?} changed the instance",
                r.route
            );
        }
        for role in allowed {
            let a = call(&w, r.route, w.as_(role), &inst, &f).await;
            calls += 1;
            assert_eq!(a.status, r.ok, "{:?} as {role:?}: {}", r.route, a.json);
            if r.route == Route::Evaluate {
                // Wait for the evaluation, so that no refused call below sees it move.
                let done = w
                    .as_(ResultReader)
                    .get(&format!("/v1/instances/{id}/result?round=1&wait=30"))
                    .await;
                assert_eq!(done.json["output"], 42, "{}", done.json);
            }
            if r.route == Route::GetResult {
                // Readers of the status learn that it was evaluated, never the output.
                let sees_output = a.json.get("output").is_some();
                assert_eq!(sees_output, role == ResultReader, "{role:?}: {}", a.json);
            }
        }
    }
    println!(
        "{calls} calls over {} routes and {} roles",
        table.len(),
        ALL.len()
    );
    w.daemon.stop().await;
}

#[tokio::test]
async fn a_replayed_attestation_is_refused_by_the_verifier() {
    use arbiter_client::verify::{Answer, appraise_answers, fresh_nonce};
    let w = World::start(|_| {}).await;
    let p = w.as_(Stranger);
    let tpm = p.get("/v1/tpm").await;
    let policy = arbiter_policy::appraisal::AppraisalPolicy::from_toml(&format!(
        "ak_name = \"{}\"\nplatform_pcrs = [0, 2, 4, 7, 9]\nallow_unpinned_platform = true\n",
        tpm.json["ak"]["name"].as_str().unwrap()
    ))
    .unwrap();
    let old_nonce = fresh_nonce();
    let old = p.get(&format!("/v1/attestation?nonce={old_nonce}")).await;
    let answer =
        |att: &arbiter_client::http::Response| (att.json.clone(), att.server_spki_sha256.clone());
    let (old_json, spki) = answer(&old);
    let tpm_answer = Answer {
        json: &tpm.json,
        tls_spki_sha256: &tpm.server_spki_sha256,
    };
    // Fresh for the nonce it was asked with.
    let (genuine, _) = appraise_answers(
        &tpm_answer,
        &Answer {
            json: &old_json,
            tls_spki_sha256: &spki,
        },
        &old_nonce,
        None,
        &policy,
    )
    .expect("the genuine answer appraises");
    assert!(genuine.trusted, "{:?}", genuine.reasons);
    // Replayed to a verifier that asked with its own nonce: refused.
    let new_nonce = fresh_nonce();
    let replayed = appraise_answers(
        &tpm_answer,
        &Answer {
            json: &old_json,
            tls_spki_sha256: &spki,
        },
        &new_nonce,
        None,
        &policy,
    );
    let (verdict, _) = replayed.expect("the replayed answer is appraised");
    assert!(!verdict.trusted, "a replayed answer must not be trusted");
    let reasons: Vec<String> = verdict.reasons.iter().map(ToString::to_string).collect();
    assert!(
        reasons.len() == 1 && reasons[0].contains("replayed"),
        "the only reason is the replay: {reasons:?}"
    );
    // The same nonce twice: two different quotes (the TPM's clock moved), both bound to it.
    let again = p.get(&format!("/v1/attestation?nonce={old_nonce}")).await;
    assert_ne!(again.json["quote"]["attest"], old.json["quote"]["attest"]);
    arbiter_tests::verified_quote(&again.json);
    w.daemon.stop().await;
}

/// A rustls client configuration that trusts any server certificate, for `versions`, with
/// a client certificate when `client_auth`.
fn tls_client(
    versions: &[&'static rustls::SupportedProtocolVersion],
    client_auth: bool,
) -> Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct AnyServer(rustls::crypto::WebPkiSupportedAlgorithms);
    impl rustls::client::danger::ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(
            provider.signature_verification_algorithms,
        )));
    let mut config = if client_auth {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        builder
            .with_client_auth_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Connects with `config`, sends `GET /healthz` and returns the HTTP answer's first line,
/// or the error that stopped it.
async fn healthz_over(url: &str, config: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let addr = url.trim_start_matches("https://");
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut buf),
    )
    .await
    .map_err(|_| "no answer in 10 s".to_owned())?;
    read.map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    match text.lines().next() {
        Some(l) if l.starts_with("HTTP/") => Ok(l.to_owned()),
        _ => Err(format!("no HTTP answer ({} bytes)", buf.len())),
    }
}

#[tokio::test]
async fn tls_1_2_and_clients_without_a_certificate_get_no_answer() {
    let w = World::start(|_| {}).await;
    let url = &w.daemon.url;
    // The same client with TLS 1.3 and a certificate is answered: the refusals below are
    // about the version and the certificate, nothing else.
    let ok = healthz_over(url, tls_client(&[&rustls::version::TLS13], true)).await;
    assert_eq!(ok.as_deref(), Ok("HTTP/1.1 200 OK"), "{ok:?}");
    let tls12 = healthz_over(url, tls_client(&[&rustls::version::TLS12], true)).await;
    let e = tls12.expect_err("a TLS 1.2 client must not be answered");
    assert!(e.starts_with("handshake:"), "{e}");
    let anonymous = healthz_over(url, tls_client(&[&rustls::version::TLS13], false)).await;
    let e = anonymous.expect_err("a client without a certificate must not be answered");
    assert!(
        e.contains("CertificateRequired") || e.contains("certificate") || e.starts_with("read:"),
        "{e}"
    );
    // The daemon still serves.
    let h = w.as_(Party).get("/healthz").await;
    assert_eq!(h.status, StatusCode::OK);
    w.daemon.stop().await;
}

#[tokio::test]
async fn a_refusal_sent_before_the_body_is_read_reaches_the_client() {
    let w = World::start(|_| {}).await;
    // A creator posting a function, a stranger posting an instance, and a request to a
    // path that does not exist. As an HTTP client library does, the headers go first and
    // the body (1 KiB, then 256 KiB) in a second write; here the body follows once the
    // daemon has had time to answer, the race Schemathesis lost.
    for (role, path) in [
        (Creator, "/v1/functions"),
        (Stranger, "/v1/instances"),
        (Stranger, "/v1/nothing"),
    ] {
        for size in [1 << 10, 256 << 10] {
            let mut c = w.as_(role).conn.connect_tls().await.unwrap();
            let body = vec![b' '; size];
            c.write_all(
                format!(
                    "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            c.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            c.write_all(&body).await.expect("the body is taken");
            c.flush().await.expect("the body is taken");
            let mut head = vec![0u8; 64];
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), c.read(&mut head))
                .await
                .expect("an answer")
                .expect("the answer, not a reset");
            let line = String::from_utf8_lossy(&head[..n]).into_owned();
            let want = if path == "/v1/nothing" { "404" } else { "403" };
            assert!(
                line.starts_with(&format!("HTTP/1.1 {want}")),
                "{role:?} {path}: {line}"
            );
        }
    }
    w.daemon.stop().await;
}

/// How a body sent after a refusal ended: the refusal's status line, the body bytes the
/// client got into the connection before it closed, and how long after the headers.
struct CutOff {
    status: String,
    sent: u64,
    closed_after: std::time::Duration,
}

/// `role` posts an instance declaring a 1 GiB body, reads the refusal that comes before
/// any byte of it (403 for a stranger, 413 for a creator: over `max_body_bytes`), then
/// sends `chunk` bytes every `pause` until the daemon closes the connection (its read
/// side ends, or a write fails). Fails if it stays open 60 s or takes 400 MiB.
async fn send_after_refusal(
    w: &World,
    role: Role,
    chunk: usize,
    pause: std::time::Duration,
) -> CutOff {
    use std::time::{Duration, Instant};
    let mut c = w.as_(role).conn.connect_tls().await.unwrap();
    c.write_all(
        b"POST /v1/instances HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n",
    )
    .await
    .unwrap();
    c.flush().await.unwrap();
    let started = Instant::now();
    let mut head = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut head))
        .await
        .expect("the refusal comes before the body")
        .unwrap();
    let status = String::from_utf8_lossy(&head[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let (mut rd, mut wr) = tokio::io::split(c);
    // The rest of the answer, then the end of the connection (EOF or a reset).
    let closed = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        Instant::now()
    });
    let data = vec![b' '; chunk];
    let mut sent = 0u64;
    loop {
        if closed.is_finished() {
            break;
        }
        assert!(
            sent < 400 << 20,
            "the connection is still open after {sent} body bytes"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the connection is still open after 60 s ({sent} body bytes sent)"
        );
        match tokio::time::timeout(Duration::from_secs(5), wr.write_all(&data)).await {
            Ok(Ok(())) => sent += chunk as u64,
            Ok(Err(_)) => break,
            Err(_) => continue,
        }
        if wr.flush().await.is_err() {
            break;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    let closed_at = tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the read side ends once the daemon closed")
        .unwrap();
    CutOff {
        status,
        sent,
        closed_after: closed_at - started,
    }
}

#[tokio::test]
async fn a_huge_body_after_a_refusal_is_cut_off() {
    use arbiter_daemon::api::spool::{ADMITTED_LINGER_BYTES, LINGER_BYTES, LINGER_TIME};
    use std::time::Duration;
    let w = World::start(|_| {}).await;
    // As fast as the connection takes it: cut off once about LINGER_BYTES were read. What
    // the client got in beyond that is what the two sockets' buffers hold (a few MiB on
    // loopback), far below the 256 MiB drained before the cap was lowered.
    let fast = send_after_refusal(&w, Stranger, 64 << 10, Duration::ZERO).await;
    println!(
        "fast: {}; {} bytes sent, closed after {:.2} s",
        fast.status,
        fast.sent,
        fast.closed_after.as_secs_f64()
    );
    assert!(fast.status.starts_with("HTTP/1.1 403"), "{}", fast.status);
    assert!(
        fast.sent < 32 << 20,
        "{} bytes went in after the refusal (the cap is {LINGER_BYTES})",
        fast.sent
    );
    assert!(fast.closed_after < LINGER_TIME + Duration::from_secs(5));
    // A trickle that never pauses 2 s: cut off by time, LINGER_TIME after the refusal.
    let slow = send_after_refusal(&w, Stranger, 4 << 10, Duration::from_millis(250)).await;
    println!(
        "slow: {}; {} bytes sent, closed after {:.2} s",
        slow.status,
        slow.sent,
        slow.closed_after.as_secs_f64()
    );
    assert!(slow.status.starts_with("HTTP/1.1 403"), "{}", slow.status);
    assert!(
        slow.closed_after >= LINGER_TIME - Duration::from_millis(500)
            && slow.closed_after < LINGER_TIME + Duration::from_secs(5),
        "closed after {:?}",
        slow.closed_after
    );
    // A creator may post a body here; its oversized one (413 on the declared length) is
    // read up to ADMITTED_LINGER_BYTES, so that a client that writes a whole oversized
    // body first still reads the 413, and no further.
    let admitted = send_after_refusal(&w, Creator, 64 << 10, Duration::ZERO).await;
    println!(
        "creator: {}; {} bytes sent, closed after {:.2} s",
        admitted.status,
        admitted.sent,
        admitted.closed_after.as_secs_f64()
    );
    assert!(
        admitted.status.starts_with("HTTP/1.1 413"),
        "{}",
        admitted.status
    );
    assert!(
        admitted.sent >= ADMITTED_LINGER_BYTES
            && admitted.sent < ADMITTED_LINGER_BYTES + (32 << 20),
        "{} bytes went in after the 413 (the cap is {ADMITTED_LINGER_BYTES})",
        admitted.sent
    );
    // The daemon serves on.
    let h = w.as_(Stranger).get("/healthz").await;
    assert_eq!(h.status, StatusCode::OK);
    w.daemon.stop().await;
}

/// Transient objects and sessions in the TPM, as `tpm2_getcap` lists them; with
/// `running`, besides the one policy session a running daemon keeps for its signatures.
fn tpm_leftovers(tpm: &TestTpm, running: bool) -> String {
    let mut kept = usize::from(running);
    let mut left = String::new();
    for cap in [
        "handles-transient",
        "handles-loaded-session",
        "handles-saved-session",
    ] {
        for line in tpm.tool_ok("tpm2_getcap", &[cap]).lines() {
            if !line.contains("0x") {
                continue;
            }
            if cap == "handles-loaded-session" && kept > 0 && line.contains("0x3") {
                kept -= 1;
                continue;
            }
            left.push_str(line);
            left.push('\n');
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_tpm_work_through_the_daemon_leaks_no_object_or_session() {
    let total: usize = std::env::var("ARBITER_TPM_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let w = World::start(|_| {}).await;
    let op = w.as_(Operator);
    let alice = w.as_(Party);
    let f = op
        .post(
            "/v1/functions",
            json!({"name": "double", "language": "rhai", "source": SOURCE}),
        )
        .await
        .json;
    let single = json!({
        "function": { "sha256": f["sha256"] },
        "parties": [{ "name": "alice", "identity": alice.id }],
        "slots": { "a": { "providers": [alice.id], "provide": "provide_each_time" } },
        "trigger": { "kind": "all" },
        "readers": { (alice.id.clone()): "result" },
        "rounds": 1_000_000,
        "destruction": { "policy": "on_request", "destroyers": [alice.id] }
    });
    let inst = op.post("/v1/instances", json!({"manifest": single})).await;
    assert_eq!(inst.status, StatusCode::CREATED, "{}", inst.json);
    let inst = inst.json;
    let id = inst["id"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let mut counts = [0usize; 4];
    let mut round = 1u64;
    for i in 0..total {
        match i % 10 {
            // An evaluation: an input, the evaluation, its result signed by the TPM.
            0 => {
                let body = alice.encrypt_input(&inst, "a", round, &json!(i));
                let r = alice
                    .put(&format!("/v1/instances/{id}/inputs/a"), body)
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.json);
                let r = alice
                    .get(&format!("/v1/instances/{id}/result?round={round}&wait=30"))
                    .await;
                assert_eq!(r.json["output"], json!(i * 2), "{}", r.json);
                assert!(
                    r.json["jws"]
                        .as_str()
                        .is_some_and(|j| j.split('.').count() == 3),
                    "the result is signed (a compact JWS): {}",
                    r.json
                );
                round += 1;
                counts[3] += 1;
            }
            // A function registration: a PCR 23 extend.
            1 => {
                let r = op
                    .post(
                        "/v1/functions",
                        json!({"name": format!("f{i}"), "language": "rhai", "source": format!("fn compute(inputs) {{ {i} }}")}),
                    )
                    .await;
                assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
                counts[2] += 1;
            }
            2 | 5 | 8 => {
                let r = op.get("/v1/tpm").await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.json);
                counts[1] += 1;
            }
            _ => {
                let n = hex::encode(arbiter_tests::sha256(&[&i.to_be_bytes()]));
                let r = op.get(&format!("/v1/attestation?nonce={n}")).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.json);
                counts[0] += 1;
            }
        }
        if i % 500 == 499 {
            assert_eq!(
                w.daemon.engine.tpm().loaded_handles().await.unwrap(),
                0,
                "after {i}"
            );
            let left = tpm_leftovers(&w.tpm, true);
            assert!(
                left.is_empty(),
                "after {} operations the TPM holds: {left}",
                i + 1
            );
        }
    }
    let took = started.elapsed();
    // While the daemon runs, idle: nothing loaded.
    assert_eq!(w.daemon.engine.tpm().loaded_handles().await.unwrap(), 0);
    let left = tpm_leftovers(&w.tpm, true);
    assert!(left.is_empty(), "while running, the TPM holds: {left}");
    let World { tpm, daemon, .. } = w;
    daemon.stop().await;
    // Stopped: the kept signing session is flushed with the connection (by the TPM's
    // owner thread, as it ends).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = tpm_leftovers(&tpm, false);
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after the daemon stopped, the TPM holds: {left}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!(
        "{total} operations in {:.1} s: {} attestations, {} /v1/tpm, {} registrations, {} signed evaluations",
        took.as_secs_f64(),
        counts[0],
        counts[1],
        counts[2],
        counts[3]
    );
}

/// How a probe of the host ended.
#[derive(Debug)]
enum Probe {
    /// Refused at registration (the script does not compile).
    Refused(String),
    /// Ran and failed with this reason and message.
    Failed(String, String),
    /// Ran and returned this output.
    Output(Value),
}

/// Registers `source`, runs it in a one-party instance of `alice`'s and says how it ended.
async fn probe(w: &World, n: usize, source: &str) -> Probe {
    let op = w.as_(Operator);
    let alice = w.as_(Party);
    let f = op
        .post(
            "/v1/functions",
            json!({"name": format!("probe{n}"), "language": "rhai", "source": source}),
        )
        .await;
    if f.status != StatusCode::CREATED {
        return Probe::Refused(f.json["error"]["message"].as_str().unwrap_or("").to_owned());
    }
    let manifest = json!({
        "function": { "sha256": f.json["sha256"] },
        "parties": [{ "name": "alice", "identity": alice.id }],
        "slots": { "a": { "providers": [alice.id], "provide": "provide_once" } },
        "trigger": { "kind": "all" },
        "readers": { (alice.id.clone()): "result" },
        "destruction": { "policy": "on_request", "destroyers": [alice.id] }
    });
    let inst = op
        .post("/v1/instances", json!({"manifest": manifest}))
        .await;
    assert_eq!(inst.status, StatusCode::CREATED, "{}", inst.json);
    let id = inst.json["id"].as_str().unwrap();
    let body = alice.encrypt_input(&inst.json, "a", 1, &json!("x"));
    let r = alice
        .put(&format!("/v1/instances/{id}/inputs/a"), body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = alice
        .get(&format!("/v1/instances/{id}/result?wait=30"))
        .await;
    assert_eq!(r.json["evaluated"], true, "{}", r.json);
    if r.json["succeeded"] == true {
        Probe::Output(r.json["output"].clone())
    } else {
        Probe::Failed(
            r.json["error"]["reason"].as_str().unwrap_or("").to_owned(),
            r.json["error"]["message"].as_str().unwrap_or("").to_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_probing_the_host_find_nothing() {
    let w = World::start(|_| {}).await;
    // A listener the network probes aim at: nothing may connect to it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/");
    // What the host holds that a script must not see.
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let environ = std::fs::read("/proc/self/environ").unwrap_or_default();
    let probes: Vec<(&str, String)> = vec![
        (
            "a file",
            r#"fn compute(inputs) { open_file("/etc/passwd") }"#.into(),
        ),
        (
            "a file, read",
            r#"fn compute(inputs) { read_file("/etc/passwd") }"#.into(),
        ),
        (
            "a file through a function pointer",
            r#"fn compute(inputs) { Fn("open" + "_file").call("/etc/passwd") }"#.into(),
        ),
        (
            "a file as a module",
            r#"import "/etc/passwd" as p; fn compute(inputs) { p }"#.into(),
        ),
        (
            "/proc as a module",
            r#"import "/proc/self/environ" as e; fn compute(inputs) { e }"#.into(),
        ),
        (
            "/proc, read",
            r#"fn compute(inputs) { read_file("/proc/self/environ") }"#.into(),
        ),
        (
            "/proc/self/maps",
            r#"fn compute(inputs) { read_file("/proc/self/maps") }"#.into(),
        ),
        (
            "the network, HTTP",
            format!(r#"fn compute(inputs) {{ http_get("{url}") }}"#),
        ),
        (
            "the network, a socket",
            format!(r#"fn compute(inputs) {{ connect("127.0.0.1", {port}) }}"#),
        ),
        (
            "the network, a TCP stream",
            format!(r#"fn compute(inputs) {{ tcp_connect("127.0.0.1:{port}") }}"#),
        ),
        (
            "the environment",
            r#"fn compute(inputs) { env("HOME") }"#.into(),
        ),
        (
            "the environment, getenv",
            r#"fn compute(inputs) { getenv("PATH") }"#.into(),
        ),
        (
            "the environment, all of it",
            r#"fn compute(inputs) { env_vars() }"#.into(),
        ),
        (
            "a command",
            r#"fn compute(inputs) { system("cat /etc/passwd") }"#.into(),
        ),
        (
            "a command, exec",
            r#"fn compute(inputs) { exec("/bin/sh", ["-c", "id"]) }"#.into(),
        ),
        (
            "a command through call",
            r#"fn compute(inputs) { call("system", "id") }"#.into(),
        ),
        (
            "the script's own scope",
            r#"fn compute(inputs) { let s = this; s }"#.into(),
        ),
    ];
    let mut refused = 0;
    let mut failed = 0;
    for (n, (what, source)) in probes.iter().enumerate() {
        let outcome = probe(&w, n, source).await;
        println!("{what}: {outcome:?}");
        match &outcome {
            Probe::Refused(m) => {
                assert!(m.contains("does not compile"), "{what}: {m}");
                refused += 1;
            }
            Probe::Failed(reason, message) => {
                // Nothing there to call: the engine has no such function, binding or
                // dynamic call, and says so.
                assert!(
                    reason == "runtime"
                        && ["Function not found", "not bound", "expecting Fn"]
                            .iter()
                            .any(|m| message.contains(m)),
                    "{what}: {reason}: {message}"
                );
                failed += 1;
            }
            Probe::Output(v) => {
                // Nothing of the host in it, whatever it is.
                let text = v.to_string();
                assert!(
                    !passwd.lines().any(|l| !l.is_empty() && text.contains(l)),
                    "{what}: {text}"
                );
                assert!(
                    !environ
                        .split(|b| *b == 0)
                        .filter(|kv| kv.len() > 8)
                        .any(|kv| text.contains(&*String::from_utf8_lossy(kv))),
                    "{what}: {text}"
                );
                panic!("{what} returned {text}: a probe of the host must fail");
            }
        }
    }
    // No probe connected to the listener.
    let connected =
        tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
    assert!(
        connected.is_err(),
        "a script reached the network: {connected:?}"
    );
    println!(
        "{} probes: {refused} refused at registration, {failed} failed when run",
        probes.len()
    );
    w.daemon.stop().await;
}
