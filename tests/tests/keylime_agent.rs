//! Keylime's agent interface (docs/fleet.md) against real parts and no Keylime: a real
//! swtpm, the daemon's real mTLS listener, `curl` as the verifier's and tenant's HTTPS
//! client with certificates from a test Keylime CA, an in-test registrar (a real HTTP
//! server doing MakeCredential with `tpm2_makecredential` and checking the auth tag as
//! Keylime's registrar does), and quotes replayed by `tpm2_checkquote` from the exact
//! pieces Keylime receives, and a flood of quotes answered or refused with 503 while
//! parties attest. Keylime itself is exercised by `make fleet-test`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbiter_tests::cli::CliParty;
use arbiter_tests::daemon::{Party, TestDaemon};
use arbiter_tests::{TestTpm, sha256};
use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A test Keylime CA with a client certificate it issued (the verifier's and tenant's),
/// and a rogue self-signed client certificate.
struct KeylimeCa {
    dir: TempDir,
}

impl KeylimeCa {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Keylime test CA");
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("cacert.crt"), ca_cert.pem()).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut client = rcgen::CertificateParams::new(vec!["client".to_owned()]).unwrap();
        client
            .distinguished_name
            .push(rcgen::DnType::CommonName, "keylime client");
        let client_cert = client.signed_by(&client_key, &issuer).unwrap();
        std::fs::write(dir.path().join("client-cert.crt"), client_cert.pem()).unwrap();
        std::fs::write(
            dir.path().join("client-key.pem"),
            client_key.serialize_pem(),
        )
        .unwrap();
        // The verifier's server certificate, for 127.0.0.1.
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        std::fs::write(dir.path().join("server-cert.crt"), server.pem()).unwrap();
        std::fs::write(
            dir.path().join("server-key.pem"),
            server_key.serialize_pem(),
        )
        .unwrap();
        let rogue_key = rcgen::KeyPair::generate().unwrap();
        let rogue = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .unwrap()
            .self_signed(&rogue_key)
            .unwrap();
        std::fs::write(dir.path().join("rogue-cert.crt"), rogue.pem()).unwrap();
        std::fs::write(dir.path().join("rogue-key.pem"), rogue_key.serialize_pem()).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// What the in-test registrar saw.
#[derive(Default)]
struct Registry {
    registered: Option<Value>,
    key: Option<String>,
    uuid: Option<String>,
    activated: bool,
    refused_tags: u32,
}

/// The in-test registrar: `GET /version`, `POST /v2.6/agents/{uuid}` answering with a
/// MakeCredential blob (tpm2-tools, offline, to the posted EK and the posted AK's name),
/// `PUT /v2.6/agents/{uuid}/activate` checking the auth tag as Keylime's registrar does
/// (hex HMAC-SHA384 keyed with the base64 of the challenge, over the UUID).
struct Registrar {
    addr: SocketAddr,
    registry: Arc<Mutex<Registry>>,
    _dir: TempDir,
}

impl Registrar {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Arc::new(Mutex::new(Registry::default()));
        let dir = tempfile::tempdir().unwrap();
        let (reg, work) = (Arc::clone(&registry), dir.path().to_owned());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (reg, work) = (Arc::clone(&reg), work.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (reg, work) = (Arc::clone(&reg), work.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(registrar(req, &reg, &work).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            registry,
            _dir: dir,
        }
    }

    async fn wait_activated(&self) -> Duration {
        let started = Instant::now();
        while !self.registry.lock().unwrap().activated {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the daemon did not register and activate"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }
}

fn answer(status: StatusCode, results: Value) -> Response<Full<Bytes>> {
    let body = json!({"code": status.as_u16(), "status": "test", "results": results});
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r
}

async fn registrar(
    req: Request<Incoming>,
    reg: &Mutex<Registry>,
    work: &Path,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["version"]) => answer(
            StatusCode::OK,
            json!({"current_version": "2.6", "supported_versions": ["1.0", "2.0", "2.6", "3.0"]}),
        ),
        ("POST", ["v2.6", "agents", uuid]) => {
            let v: Value = serde_json::from_slice(&body).unwrap();
            let ek = B64.decode(v["ek_tpm"].as_str().unwrap()).unwrap();
            let ak = B64.decode(v["aik_tpm"].as_str().unwrap()).unwrap();
            // The AK's name: nameAlg (SHA-256) || SHA-256(TPMT_PUBLIC).
            let name = format!("000b{}", hex::encode(sha256(&[&ak[2..]])));
            // Keylime's random_password(32): letters and digits.
            const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz";
            let challenge: String = (0..32)
                .map(|_| char::from(CHARS[usize::from(rand::random::<u8>()) % CHARS.len()]))
                .collect();
            let (ek_file, secret, out) =
                (work.join("ek.pub"), work.join("secret"), work.join("blob"));
            std::fs::write(&ek_file, &ek).unwrap();
            std::fs::write(&secret, challenge.as_bytes()).unwrap();
            let run = arbiter_tests::output(
                Command::new("tpm2_makecredential")
                    .args(["-T", "none", "-u"])
                    .arg(&ek_file)
                    .arg("-s")
                    .arg(&secret)
                    .args(["-n", &name, "-o"])
                    .arg(&out)
                    .env("TSS2_LOG", "all+NONE"),
            )
            .unwrap();
            assert!(
                run.status.success(),
                "{}",
                String::from_utf8_lossy(&run.stderr)
            );
            let mut r = reg.lock().unwrap();
            r.key = Some(B64.encode(challenge.as_bytes()));
            r.uuid = Some((*uuid).to_owned());
            r.registered = Some(v);
            answer(
                StatusCode::OK,
                json!({"blob": B64.encode(std::fs::read(&out).unwrap())}),
            )
        }
        ("PUT", ["v2.6", "agents", uuid, "activate"]) => {
            use hmac::{KeyInit as _, Mac as _};
            let v: Value = serde_json::from_slice(&body).unwrap();
            let mut r = reg.lock().unwrap();
            let key = r.key.clone().unwrap();
            let mut mac = hmac::Hmac::<sha2::Sha384>::new_from_slice(key.as_bytes()).unwrap();
            mac.update(uuid.as_bytes());
            let expected = hex::encode(mac.finalize().into_bytes());
            if v["auth_tag"].as_str() == Some(expected.as_str()) && r.uuid.as_deref() == Some(*uuid)
            {
                r.activated = true;
                answer(StatusCode::OK, json!({}))
            } else {
                r.refused_tags += 1;
                answer(StatusCode::BAD_REQUEST, json!({}))
            }
        }
        _ => answer(StatusCode::NOT_FOUND, json!({})),
    }
}

/// `curl` as Keylime's HTTPS client: trusts the agent certificate the registrar recorded
/// (as Keylime's tenant and verifier do), presents `cert`/`key`. Returns the HTTP status
/// (0 when the connection failed) and the JSON answer.
fn curl(
    agent_cert: &Path,
    cert: &Path,
    key: &Path,
    url: &str,
    post: Option<&Value>,
) -> (u16, Value) {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "20", "--cacert"])
        .arg(agent_cert)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["-w", "\n%{http_code}"]);
    if let Some(body) = post {
        c.args([
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
        ])
        .arg(body.to_string());
    }
    // Spawned outside any TPM command of the daemon in this process (see
    // `arbiter_tests::spawn`): a curl holding the daemon's swtpm connection would stall
    // the TPM until curl gives up, with the very quote it waits for.
    let out = arbiter_tests::output(c.arg(url)).expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let code = code.trim().parse().unwrap_or(0);
    if code == 0 {
        // No answer: curl's own words say why.
        return (
            0,
            Value::String(String::from_utf8_lossy(&out.stderr).into_owned()),
        );
    }
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

struct Setup {
    tpm: TestTpm,
    ca: KeylimeCa,
    state: TempDir,
    /// The operator, a CLI user.
    operator: CliParty,
}

impl Setup {
    fn new() -> Self {
        let tpm = TestTpm::start();
        let operator = CliParty::new(&tpm.path("parties"), "operator", "https://127.0.0.1:1");
        Self {
            tpm,
            ca: KeylimeCa::new(),
            state: tempfile::tempdir().unwrap(),
            operator,
        }
    }

    /// Points the operator's CLI at `d`.
    fn cli_for(&self, d: &TestDaemon) -> &CliParty {
        std::fs::write(
            self.operator.state.join("config.toml"),
            format!(
                "server = \"{}\"\ncert = \"identity/cert.pem\"\nkey = \"identity/key.pem\"\n",
                d.url
            ),
        )
        .unwrap();
        &self.operator
    }

    async fn daemon(&self, registrar: SocketAddr, firmware_log: Option<&Path>) -> TestDaemon {
        self.daemon_with(registrar, firmware_log, |_| {}).await
    }

    async fn daemon_with(
        &self,
        registrar: SocketAddr,
        firmware_log: Option<&Path>,
        extra: impl FnOnce(&mut arbiter_daemon::config::Config),
    ) -> TestDaemon {
        let op = self.operator.id.clone();
        let ca = self.ca.path("cacert.crt");
        let log = firmware_log.map(Path::to_owned);
        TestDaemon::start(&self.tpm, self.state.path(), move |c| {
            c.access.operators = vec![op];
            c.keylime.enabled = true;
            c.keylime.listen = "127.0.0.1:0".parse().unwrap();
            c.keylime.ca_certificate = Some(ca);
            c.keylime.registrar = Some(format!("http://{registrar}"));
            if let Some(log) = log {
                c.attestation.firmware_log = log;
            }
            extra(c);
        })
        .await
    }

    fn operator_party(&self, d: &TestDaemon) -> Party {
        Party::with_identity("operator", self.operator.identity(), &d.url)
    }

    fn agent_cert(&self) -> PathBuf {
        self.state.path().join("keylime").join("agent-cert.pem")
    }

    fn client(&self, d: &TestDaemon, path: &str, post: Option<&Value>) -> (u16, Value) {
        let (addr, _) = d.keylime.clone().unwrap();
        curl(
            &self.agent_cert(),
            &self.ca.path("client-cert.crt"),
            &self.ca.path("client-key.pem"),
            &format!("https://{addr}{path}"),
            post,
        )
    }
}

/// Replays a Keylime quote with tpm2_checkquote: the AK PEM, TPMS_ATTEST, TPMT_SIGNATURE
/// and the PCR values file exactly as served; returns the PCR values it printed.
fn checkquote(tpm: &TestTpm, ak_pem: &str, quote: &str, nonce: &str) -> String {
    let parts: Vec<&str> = quote
        .strip_prefix('r')
        .expect("quote starts with r")
        .split(':')
        .collect();
    assert_eq!(parts.len(), 3, "{quote}");
    let write = |name: &str, bytes: &[u8]| {
        let p = tpm.path(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let ak = write("k-ak.pem", ak_pem.as_bytes());
    let msg = write("k-attest.bin", &B64.decode(parts[0]).unwrap());
    let sig = write("k-sig.bin", &B64.decode(parts[1]).unwrap());
    let pcrs = write("k-pcrs.bin", &B64.decode(parts[2]).unwrap());
    tpm.tool_ok(
        "tpm2_checkquote",
        &[
            "-u",
            &ak,
            "-m",
            &msg,
            "-s",
            &sig,
            "-f",
            &pcrs,
            "-g",
            "sha256",
            "-q",
            &hex::encode(nonce.as_bytes()),
        ],
    )
    .to_lowercase()
}

/// The PCR indices tpm2_checkquote printed.
fn pcr_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.trim().split_once(":"))
        .map(|(k, v)| (k.trim(), v))
        .filter(|(k, _)| k.chars().all(|c| c.is_ascii_digit()) && !k.is_empty())
        .map(|(k, _)| k)
        .collect()
}

/// PCR 16 as Keylime expects it: SHA-256(0^32 || SHA-256(pubkey)).
fn expected_pcr16(pubkey: &str) -> String {
    hex::encode(sha256(&[&[0u8; 32], &sha256(&[pubkey.as_bytes()])]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_and_serves_quotes_keylime_checks() {
    let mut s = Setup::new();
    let registrar = Registrar::start().await;
    let log = s.tpm.path("firmware-log.bin");
    std::fs::write(&log, b"a firmware event log stand-in").unwrap();
    let started = Instant::now();
    let d = s.daemon(registrar.addr, Some(&log)).await;
    let took = registrar.wait_activated().await;
    eprintln!(
        "registration: activated {:.0} ms after the daemon started (start took {:.0} ms)",
        took.as_secs_f64() * 1e3,
        (started.elapsed() - took).as_secs_f64() * 1e3
    );
    let (uuid, registered) = {
        let r = registrar.registry.lock().unwrap();
        (r.uuid.clone().unwrap(), r.registered.clone().unwrap())
    };
    assert_eq!(uuid, d.keylime.clone().unwrap().1);
    assert_eq!(registrar.registry.lock().unwrap().refused_tags, 0);
    // What was registered: the daemon's AK, the RSA EK with its certificate, the
    // listener's certificate, the contact address.
    let op = s.operator_party(&d);
    let tpm_info = op.get("/v1/tpm").await.json;
    assert_eq!(registered["aik_tpm"], tpm_info["ak"]["tpm2b_public"]);
    assert_eq!(registered["ek_tpm"], tpm_info["eks"][0]["tpm2b_public"]);
    assert!(registered["ekcert"].is_string());
    assert_eq!(
        registered["mtls_cert"].as_str().unwrap(),
        std::fs::read_to_string(s.agent_cert()).unwrap()
    );
    assert_eq!(registered["ip"], "127.0.0.1");
    assert_eq!(registered["port"], d.keylime.clone().unwrap().0.port());
    let ak_pem = tpm_info["ak"]["public_pem"].as_str().unwrap().to_owned();

    let (status, v) = s.client(&d, "/version", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"]["supported_version"], "2.5");

    // The tenant's identity quote: PCR 16 bound to `pubkey`.
    let (status, v) = s.client(&d, "/v2.5/quotes/identity?nonce=Abc123xyz0Abc123xyz0", None);
    assert_eq!(status, 200, "{v}");
    let r = &v["results"];
    assert_eq!(
        (
            r["hash_alg"].as_str(),
            r["enc_alg"].as_str(),
            r["sign_alg"].as_str()
        ),
        (Some("sha256"), Some("rsa2048"), Some("ecdsa"))
    );
    assert!(r["boottime"].as_u64().unwrap() > 0);
    let pubkey = r["pubkey"].as_str().unwrap().to_owned();
    let out = checkquote(
        &s.tpm,
        &ak_pem,
        r["quote"].as_str().unwrap(),
        "Abc123xyz0Abc123xyz0",
    );
    assert!(out.contains(&expected_pcr16(&pubkey)), "{out}");
    assert_eq!(
        pcr_lines(&out),
        vec!["16"],
        "only PCR 16 in an identity quote: {out}"
    );

    // The verifier's integrity quote: exactly the mask (PCRs 0 and 4) plus PCR 16, the
    // firmware log because PCR 0 is asked for, no pubkey with partial=1.
    let (status, v) = s.client(
        &d,
        "/v2.5/quotes/integrity?nonce=n0nce1&mask=0x11&partial=1&ima_ml_entry=0",
        None,
    );
    assert_eq!(status, 200, "{v}");
    let r = &v["results"];
    assert!(r.get("pubkey").is_none(), "{r}");
    assert_eq!(
        B64.decode(r["mb_measurement_list"].as_str().unwrap())
            .unwrap(),
        b"a firmware event log stand-in"
    );
    let out = checkquote(&s.tpm, &ak_pem, r["quote"].as_str().unwrap(), "n0nce1");
    assert!(out.contains(&expected_pcr16(&pubkey)), "{out}");
    assert_eq!(pcr_lines(&out), vec!["0", "4", "16"], "{out}");
    // Without PCR 0: no firmware log; with partial=0: the pubkey.
    let (_, v) = s.client(
        &d,
        "/v2.5/quotes/integrity?nonce=n0nce2&mask=0x800000&partial=0&ima_ml_entry=0",
        None,
    );
    assert!(v["results"].get("mb_measurement_list").is_none());
    assert_eq!(v["results"]["pubkey"].as_str(), Some(pubkey.as_str()));
    // A wrong nonce does not verify.
    let bad = s.tpm.tool(
        "tpm2_checkquote",
        &[
            "-u",
            &s.tpm.path("k-ak.pem").display().to_string(),
            "-m",
            &s.tpm.path("k-attest.bin").display().to_string(),
            "-s",
            &s.tpm.path("k-sig.bin").display().to_string(),
            "-g",
            "sha256",
            "-q",
            &hex::encode("other"),
        ],
    );
    assert!(!bad.status.success());

    // Bad requests: unknown version, no nonce, a mask beyond PCR 23.
    assert_eq!(s.client(&d, "/v9.9/quotes/identity?nonce=a", None).0, 400);
    assert_eq!(s.client(&d, "/v2.5/quotes/identity", None).0, 400);
    assert_eq!(
        s.client(&d, "/v2.5/quotes/integrity?nonce=a&mask=0x1000000", None)
            .0,
        400
    );

    // Speed of one integrity quote (mask of 5 PCRs), a few runs.
    let mut times = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        let (status, _) = s.client(
            &d,
            &format!("/v2.5/quotes/integrity?nonce=speed{i}&mask=0x295&partial=1&ima_ml_entry=0"),
            None,
        );
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(status, 200);
    }
    eprintln!("quotes/integrity through curl (new process and TLS handshake each): {times:.1?} ms");
    // The TPM's share: the owner thread's job (PCR 16 check, PCR read, quote, check).
    let metrics = op.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    let of = |suffix: &str| -> f64 {
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "arbiter_tpm_command_duration_seconds_{suffix}{{command=\"quote_bound\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no quote_bound {suffix} in the metrics"))
    };
    eprintln!(
        "quote_bound TPM job: {} runs, mean {:.2} ms",
        of("count"),
        of("sum") / of("count") * 1e3
    );

    // A TPM restart resets PCR 16; the next quote binds it again.
    s.tpm.swtpm.restart().unwrap();
    let (status, v) = s.client(&d, "/v2.5/quotes/identity?nonce=afterrestart", None);
    assert_eq!(status, 200, "{v}");
    let out = checkquote(
        &s.tpm,
        &ak_pem,
        v["results"]["quote"].as_str().unwrap(),
        "afterrestart",
    );
    assert!(out.contains(&expected_pcr16(&pubkey)), "{out}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_of_the_keylime_ca_get_in() {
    let s = Setup::new();
    let registrar = Registrar::start().await;
    let d = s.daemon(registrar.addr, None).await;
    let (addr, _) = d.keylime.clone().unwrap();
    let url = format!("https://{addr}/version");
    let (status, _) = curl(
        &s.agent_cert(),
        &s.ca.path("client-cert.crt"),
        &s.ca.path("client-key.pem"),
        &url,
        None,
    );
    assert_eq!(status, 200);
    let (status, _) = curl(
        &s.agent_cert(),
        &s.ca.path("rogue-cert.crt"),
        &s.ca.path("rogue-key.pem"),
        &url,
        None,
    );
    assert_eq!(
        status, 0,
        "a certificate not from the Keylime CA must be refused"
    );
    let out = arbiter_tests::output(
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
            ])
            .arg(s.agent_cert())
            .arg(&url),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "000",
        "no client certificate must be refused"
    );
    d.stop().await;
}

fn revocation_message(agent_id: &str) -> Value {
    let inner = json!({
        "type": "revocation", "ip": "127.0.0.1", "agent_id": agent_id, "port": 9002,
        "tpm_policy": "{}", "meta_data": "{}", "event_time": "Wed Dec  2 01:00:00 2026",
        "event_id": "pcr_validation.invalid_pcr_4", "severity_label": "emergency", "context": "{}"
    });
    json!({"msg": inner.to_string(), "signature": ""})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_degrades_until_an_operator_clears_it() {
    let s = Setup::new();
    let registrar = Registrar::start().await;
    let d = s.daemon(registrar.addr, None).await;
    let uuid = d.keylime.clone().unwrap().1;
    let op = s.operator_party(&d);
    assert!(op.get("/healthz").await.json.get("degraded").is_none());

    // The agent notifier names another agent: nothing changes.
    let (status, v) = s.client(
        &d,
        "/v2.5/notifications/revocation",
        Some(&revocation_message("someone-else")),
    );
    assert_eq!(status, 200, "{v}");
    assert!(op.get("/healthz").await.json.get("degraded").is_none());
    assert_eq!(op.get("/v1/functions").await.status, StatusCode::OK);
    // Garbage is refused and changes nothing.
    let (status, _) = s.client(&d, "/webhook/revocation", Some(&json!({"msg": 5})));
    assert_eq!(status, 400);
    assert!(op.get("/healthz").await.json.get("degraded").is_none());

    // The webhook names this agent: degraded, with the reason everywhere.
    let (status, v) = s.client(&d, "/webhook/revocation", Some(&revocation_message(&uuid)));
    assert_eq!(status, 200, "{v}");
    let health = op.get("/healthz").await.json;
    assert_eq!(health["status"], "degraded");
    assert!(
        health["degraded"][0]
            .as_str()
            .unwrap()
            .contains("invalid_pcr_4"),
        "{health}"
    );
    let refused = op.get("/v1/functions").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        refused.json.to_string().contains("fleet_revoked"),
        "{}",
        refused.json
    );
    let att = op.get("/v1/attestation?nonce=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff").await;
    assert_eq!(att.status, StatusCode::OK, "{}", att.json);
    assert_eq!(att.json["fleet_revoked"]["source"], "webhook");
    // A party's CLI says NOT USABLE, with the reason.
    let cli = s.cli_for(&d);
    let ak_name = op.get("/v1/tpm").await.json["ak"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(
        cli.state.join("appraisal.toml"),
        format!("ak_name = \"{ak_name}\"\nallow_unpinned_platform = true\n"),
    )
    .unwrap();
    let out = cli.fails(&[
        "attest",
        "--policy",
        &cli.state.join("appraisal.toml").display().to_string(),
    ]);
    assert!(
        out.contains("NOT USABLE: revoked by the fleet verifier") && out.contains("invalid_pcr_4"),
        "{out}"
    );
    // Keylime can still quote a revoked appliance (the verifier keeps watching it).
    assert_eq!(
        s.client(&d, "/v2.5/quotes/identity?nonce=still", None).0,
        200
    );

    // It survives a restart.
    d.stop().await;
    let d = s.daemon(registrar.addr, None).await;
    let op = s.operator_party(&d);
    let health = op.get("/healthz").await.json;
    assert!(
        health["degraded"][0]
            .as_str()
            .unwrap()
            .contains("revoked by the fleet verifier"),
        "{health}"
    );
    let status = op.get("/v1/fleet/revocation").await.json;
    assert_eq!(status["revoked"]["source"], "webhook");

    // A party may not clear it; an operator does.
    let alice = Party::new("alice", &d);
    assert_eq!(
        alice.delete("/v1/fleet/revocation").await.status,
        StatusCode::FORBIDDEN
    );
    let cli = s.cli_for(&d);
    assert!(
        cli.ok(&["fleet", "status"])
            .contains("REVOKED by the fleet verifier")
    );
    let out = cli.ok(&["fleet", "clear-revocation"]);
    assert!(
        out.contains("cleared the revocation") && out.contains("webhook"),
        "{out}"
    );
    assert!(op.get("/healthz").await.json.get("degraded").is_none());
    assert_eq!(op.get("/v1/functions").await.status, StatusCode::OK);
    assert!(op.get("/v1/fleet/revocation").await.json["revoked"].is_null());
    d.stop().await;
}

/// A stand-in for the verifier's status endpoint: `openssl s_server -WWW` serving files
/// (`version`, `v2.6/agents/UUID`) over mutual TLS with the Keylime CA, killed on drop.
struct StatusServer {
    child: std::process::Child,
    root: TempDir,
    port: u16,
}

impl StatusServer {
    fn start(ca: &KeylimeCa) -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("version"),
            json!({"code": 200, "status": "Success", "results": {"current_version": "2.6", "supported_versions": ["2.0", "2.6", "3.0"]}}).to_string(),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = arbiter_tests::spawn(
            Command::new("openssl")
                .args(["s_server", "-quiet", "-WWW", "-accept"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("-cert")
                .arg(ca.path("server-cert.crt"))
                .arg("-key")
                .arg(ca.path("server-key.pem"))
                .arg("-CAfile")
                .arg(ca.path("cacert.crt"))
                .args(["-Verify", "2"])
                .current_dir(root.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        )
        .expect("openssl s_server");
        Self { child, root, port }
    }

    /// Sets the agent's operational state as the verifier reports it.
    fn set_state(&self, uuid: &str, state: u32, event: &str) {
        let dir = self.root.path().join("v2.6").join("agents");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(uuid),
            json!({"code": 200, "status": "Success", "results": {"operational_state": state, "last_event_id": event}}).to_string(),
        )
        .unwrap();
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_the_verifier_revokes_on_a_failed_state() {
    let s = Setup::new();
    let registrar = Registrar::start().await;
    let status = StatusServer::start(&s.ca);
    let (ca, verifier) = (
        s.ca.path("cacert.crt"),
        format!("https://127.0.0.1:{}", status.port),
    );
    let (cert, key) = (s.ca.path("client-cert.crt"), s.ca.path("client-key.pem"));
    let op_id = s.operator.id.clone();
    let d = TestDaemon::start(&s.tpm, s.state.path(), move |c| {
        c.access.operators = vec![op_id];
        c.keylime.enabled = true;
        c.keylime.listen = "127.0.0.1:0".parse().unwrap();
        c.keylime.ca_certificate = Some(ca);
        c.keylime.registrar = Some(format!("http://{}", registrar.addr));
        // The ECC P-384 EK this time.
        c.keylime.ek = "ecc-p384".into();
        c.keylime.verifier = Some(verifier);
        c.keylime.client_certificate = Some(cert);
        c.keylime.client_key = Some(key);
        c.keylime.poll_interval_seconds = 1;
    })
    .await;
    registrar.wait_activated().await;
    let registered = registrar
        .registry
        .lock()
        .unwrap()
        .registered
        .clone()
        .unwrap();
    let op = s.operator_party(&d);
    assert_eq!(
        registered["ek_tpm"],
        op.get("/v1/tpm").await.json["eks"][1]["tpm2b_public"]
    );
    let (_, v) = s.client(&d, "/v2.5/quotes/identity?nonce=ecc", None);
    assert_eq!(v["results"]["enc_alg"], "ecc384");

    let uuid = d.keylime.clone().unwrap().1;
    // Attested: polls change nothing.
    status.set_state(&uuid, 3, "");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(op.get("/healthz").await.json.get("degraded").is_none());
    // Invalid Quote: revoked within a few polls, naming the state and the event.
    status.set_state(&uuid, 9, "pcr_validation.invalid_pcr_4");
    let started = Instant::now();
    loop {
        let h = op.get("/healthz").await.json;
        if let Some(reasons) = h.get("degraded") {
            let text = reasons.to_string();
            assert!(
                text.contains("Invalid Quote") && text.contains("invalid_pcr_4"),
                "{text}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not revoked: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        op.get("/v1/fleet/revocation").await.json["revoked"]["source"],
        "verifier_status"
    );
    // Attested again, the operator clears it and it stays cleared.
    status.set_state(&uuid, 3, "");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        op.delete("/v1/fleet/revocation").await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(op.get("/healthz").await.json.get("degraded").is_none());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_bounded_and_dropped() {
    let s = Setup::new();
    let registrar = Registrar::start().await;
    let d = s
        .daemon_with(registrar.addr, None, |c| {
            c.limits.handshake_timeout_seconds = 1
        })
        .await;
    let (addr, _) = d.keylime.clone().unwrap();
    // A client that opens connections and never speaks holds at most its address's share.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        s.client(&d, "/version", None).0,
        0,
        "the ninth connection from one address is closed"
    );
    // The API's listener is not affected.
    let op = s.operator_party(&d);
    assert_eq!(op.get("/healthz").await.status, StatusCode::OK);
    // After the handshake deadline the silent ones are gone and a real client gets in.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.client(&d, "/version", None).0, 200);
    drop(silent);
    d.stop().await;
}

/// A flood of quotes with one place for client-driven TPM work: every quote is answered
/// 200 or refused 503 at once, and parties attest meanwhile. (This test used to stall: a
/// `curl` forked while the daemon's swtpm command was in flight held that connection, so
/// the TPM answered no one until curl gave up; children are now spawned outside TPM
/// commands, see `arbiter_daemon::tpm::spawn_without_tpm` and docs/reliability.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_keylime_quotes_is_answered_or_refused_and_parties_attest_on() {
    let s = Setup::new();
    let registrar = Registrar::start().await;
    // One place for client-driven TPM work, so that verifiers asking at once are refused.
    let d = s
        .daemon_with(registrar.addr, None, |c| {
            c.limits.max_tpm_requests_queued = 1;
        })
        .await;
    registrar.wait_activated().await;
    let (addr, _) = d.keylime.clone().unwrap();
    let op = s.operator_party(&d);
    // 6 clients of the Keylime CA (within the listener's share of 8 connections for one
    // address, with room for connections still closing), 5 identity quotes each, all at
    // once, while a party attests.
    let flood: Vec<_> = (0..6)
        .map(|i| {
            let (agent, cert, key) = (
                s.agent_cert(),
                s.ca.path("client-cert.crt"),
                s.ca.path("client-key.pem"),
            );
            tokio::task::spawn_blocking(move || {
                (0..5)
                    .map(|j| {
                        let url = format!("https://{addr}/v2.5/quotes/identity?nonce=flood{i}x{j}");
                        curl(&agent, &cert, &key, &url, None)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut attestations = 0;
    while !flood.iter().all(|t| t.is_finished()) {
        let a = op
            .get("/v1/attestation?nonce=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        attestations += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut ok, mut busy) = (0, 0);
    for t in flood {
        for (status, v) in t.await.unwrap() {
            match status {
                200 => {
                    assert!(v["results"]["quote"].is_string(), "{v}");
                    ok += 1;
                }
                503 => {
                    assert_eq!(v["status"], "the TPM is busy; try again", "{v}");
                    busy += 1;
                }
                other => panic!("a Keylime quote answered {other}: {v}"),
            }
        }
    }
    println!(
        "30 Keylime quotes from 6 clients at once (max_tpm_requests_queued = 1): {ok} answered \
         200, {busy} refused 503; {attestations} attestations meanwhile, all 200"
    );
    assert!(ok > 0, "no quote was served");
    assert!(attestations > 0);
    // Served again once the flood is over.
    let (status, v) = s.client(&d, "/v2.5/quotes/identity?nonce=after", None);
    assert_eq!(status, 200, "{v}");
}
