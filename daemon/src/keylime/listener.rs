//! The agent listener: HTTPS with mutual TLS where only clients whose certificates chain to
//! Keylime's CA get through the handshake, bounded like the API's listener (a fixed number
//! of connections, a share per address, deadlines on the handshake and each request, a
//! small body limit, a bounded queue of quotes for the TPM), and its routes:
//! `GET /version`, `GET /v2.x/quotes/identity`, `GET /v2.x/quotes/integrity`,
//! `POST /v2.x/notifications/revocation` and `POST /webhook/revocation`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::quote::{self, DATA_PCR};
use super::revocation::Notification;
use super::{AGENT_API_VERSIONS, Agent};
use crate::admission::{AcceptBackoff, Admission};
use crate::tls::{TlsError, TlsIdentity};

/// Connections the agent listener serves at once (Keylime's verifier and tenant open a
/// few); they come out of the descriptors the API's cap leaves in reserve.
pub const MAX_CONNECTIONS: usize = 16;
/// Connections per client address.
pub const MAX_CONNECTIONS_PER_IP: usize = 8;
/// The largest request body (a revocation message).
const MAX_BODY: usize = 64 << 10;
/// How long a quote request waits for its turn at the TPM before a 503.
const QUOTE_QUEUE_WAIT: Duration = Duration::from_secs(10);

type Body = Full<Bytes>;

/// The listener's rustls configuration: the agent certificate, clients verified against
/// Keylime's CA (`ca_file`, PEM).
pub fn server_config(
    tls: &TlsIdentity,
    ca_file: Option<&Path>,
) -> Result<Arc<ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let ca_file = ca_file.ok_or("keylime.ca_certificate is not set")?;
    let pem = std::fs::read(ca_file)
        .map_err(|e| format!("keylime.ca_certificate {}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| format!("keylime.ca_certificate {}: {e}", ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("keylime.ca_certificate {}: {e}", ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "keylime.ca_certificate {}: no certificate in the file",
            ca_file.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .map_err(|e| format!("keylime.ca_certificate: {e}"))?;
    let chain = tls
        .chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(tls.key_pkcs8.to_vec()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::from(e).to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::from(e).to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves until the engine stops.
pub async fn serve(agent: Arc<Agent>, listener: TcpListener, config: Arc<ServerConfig>) {
    let limits = agent.engine.config().limits.clone();
    let handshake_timeout = Duration::from_secs(limits.handshake_timeout_seconds);
    let idle_timeout = Duration::from_secs(limits.idle_timeout_seconds);
    let admission = Admission::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP);
    let acceptor = TlsAcceptor::from(config);
    let mut backoff = AcceptBackoff::default();
    let engine = Arc::clone(&agent.engine);
    let stopped = engine.stopped();
    tokio::pin!(stopped);
    loop {
        let slot = tokio::select! {
            () = &mut stopped => break,
            slot = admission.slot() => slot,
        };
        let accepted = tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => {
                backoff.succeeded();
                a
            }
            Err(e) => {
                let delay = backoff.failed();
                tracing::warn!(event = "keylime_accept_failed", error = %e, "accepting a Keylime connection failed; retrying");
                drop(slot);
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        // Small answers, written as they are ready (see the API listener).
        let _ = tcp.set_nodelay(true);
        let Some(admitted) = admission.admit(slot, peer.ip()) else {
            engine.note_rejected_connection(&peer.to_string());
            continue;
        };
        let acceptor = acceptor.clone();
        let agent = Arc::clone(&agent);
        tokio::spawn(async move {
            let _admitted = admitted;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    agent.engine.note_rejected_handshake(
                        &format!("keylime listener, {peer}"),
                        &e.to_string(),
                    );
                    return;
                }
                Err(_) => return,
            };
            let service = service_fn(move |req| {
                let agent = Arc::clone(&agent);
                async move { Ok::<_, std::convert::Infallible>(handle(&agent, req).await) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(idle_timeout)
                .max_buf_size(16 << 10);
            let _ = tokio::time::timeout(
                idle_timeout.saturating_mul(4).max(Duration::from_secs(60)),
                builder.serve_connection(TokioIo::new(tls), service),
            )
            .await;
        });
    }
}

/// Keylime's response envelope: `{"code", "status", "results"}`.
fn reply(code: StatusCode, status: &str, results: Value) -> Response<Body> {
    let body = json!({"code": code.as_u16(), "status": status, "results": results});
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn bad_request(status: &str) -> Response<Body> {
    reply(StatusCode::BAD_REQUEST, status, json!({}))
}

/// The query parameters of a request (percent-decoding is not needed for Keylime's
/// alphanumeric values; anything else is refused by the checks of each parameter).
fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

async fn handle(agent: &Agent, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let method = req.method().clone();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (method, segments.as_slice()) {
        (Method::GET, ["version"]) => reply(
            StatusCode::OK,
            "Success",
            json!({
                "supported_version": AGENT_API_VERSIONS[AGENT_API_VERSIONS.len() - 1],
                "supported_versions": AGENT_API_VERSIONS,
            }),
        ),
        (Method::POST, ["webhook", "revocation"]) => revocation(agent, req, "webhook").await,
        (method, [version, rest @ ..]) => {
            let Some(v) = version.strip_prefix('v') else {
                return reply(StatusCode::NOT_FOUND, "Not Found", json!({}));
            };
            if !AGENT_API_VERSIONS.contains(&v) {
                return bad_request(&format!("API version not supported: {v}"));
            }
            match (method, rest) {
                (Method::GET, ["quotes", "identity"]) => {
                    let q = query(&req);
                    quote_reply(agent, &q, None).await
                }
                (Method::GET, ["quotes", "integrity"]) => {
                    let q = query(&req);
                    let Some(mask) = q.iter().find(|(k, _)| k == "mask").map(|(_, v)| v.as_str())
                    else {
                        return bad_request("mask is required");
                    };
                    match quote::parse_mask(mask) {
                        Ok(sel) => quote_reply(agent, &q, Some(sel)).await,
                        Err(e) => bad_request(&e),
                    }
                }
                (Method::POST, ["notifications", "revocation"]) => {
                    revocation(agent, req, "notification").await
                }
                _ => reply(StatusCode::NOT_FOUND, "Not Found", json!({})),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, "Not Found", json!({})),
    }
}

/// A valid Keylime nonce: 1 to 64 ASCII letters and digits (it becomes the quote's
/// qualifying data verbatim).
fn nonce_of(q: &[(String, String)]) -> Result<Vec<u8>, String> {
    let nonce = q
        .iter()
        .find(|(k, _)| k == "nonce")
        .map(|(_, v)| v.as_str())
        .ok_or("nonce is required")?;
    if nonce.is_empty() || nonce.len() > 64 || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("nonce must be 1 to 64 letters and digits".into());
    }
    Ok(nonce.as_bytes().to_vec())
}

/// The quote for `quotes/identity` (mask `None`: PCR 16 only) or `quotes/integrity`.
async fn quote_reply(
    agent: &Agent,
    q: &[(String, String)],
    mask: Option<arbiter_policy::PcrSelection>,
) -> Response<Body> {
    let nonce = match nonce_of(q) {
        Ok(n) => n,
        Err(e) => return bad_request(&e),
    };
    let integrity = mask.is_some();
    let mask = mask.unwrap_or_default();
    let selection = match quote::with_data_pcr(&mask) {
        Ok(s) => s,
        Err(e) => return bad_request(&e),
    };
    // A quote per request is client-driven TPM work: bounded with the API's
    // (`[limits] max_tpm_requests_queued`), so the daemon's own TPM work never waits behind
    // a flood of them.
    let Ok(_permit) = agent.engine.tpm().admit_request() else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "the TPM is busy; try again",
            json!({}),
        );
    };
    let Ok(_turn) = tokio::time::timeout(QUOTE_QUEUE_WAIT, agent.quoting.acquire()).await else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "the TPM is busy; try again",
            json!({}),
        );
    };
    let digest = quote::data_digest(&agent.pubkey_pem);
    let (quote, rebound) = match agent
        .engine
        .tpm()
        .quote_bound(selection, nonce, DATA_PCR, digest)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(event = "keylime_quote_failed", error = %e, "a Keylime quote failed");
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("quote failed: {e}"),
                json!({}),
            );
        }
    };
    if rebound {
        tracing::info!(
            event = "keylime_pcr16_bound",
            "PCR 16 reset and extended with the hash of the agent key (first quote of this TPM startup)"
        );
    }
    let mut results = json!({
        "quote": quote::quote_string(&quote.attest, &quote.signature, &quote.pcrs),
        "hash_alg": "sha256",
        "enc_alg": enc_alg(agent),
        "sign_alg": "ecdsa",
        "boottime": boottime(),
    });
    let partial = q.iter().any(|(k, v)| k == "partial" && v == "1");
    if !integrity || !partial {
        results["pubkey"] = Value::String(agent.pubkey_pem.clone());
    }
    if integrity
        && mask.pcrs().contains(&0)
        && let Some(log) = agent.engine.firmware_log()
    {
        results["mb_measurement_list"] =
            Value::String(base64::engine::general_purpose::STANDARD.encode(log));
    }
    reply(StatusCode::OK, "Success", results)
}

/// `enc_alg`: the registered EK's algorithm in Keylime's names.
fn enc_alg(agent: &Agent) -> &'static str {
    match agent.ek {
        crate::tpm::EkAlgorithm::Rsa2048 => "rsa2048",
        crate::tpm::EkAlgorithm::EccNistP384 => "ecc384",
    }
}

/// The host's boot time, seconds since the epoch (`btime` of `/proc/stat`); 0 if unknown.
fn boottime() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0)
}

/// A pushed revocation: acted on only when it names this agent.
async fn revocation(agent: &Agent, req: Request<Incoming>, source: &'static str) -> Response<Body> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return bad_request("the body is unreadable or over 64 KiB"),
    };
    // Keylime's agent notifier sends the message form-less: the JSON as the body.
    let notification = match Notification::parse(&body) {
        Ok(n) => n,
        Err(e) => return bad_request(&format!("not a Keylime revocation message: {e}")),
    };
    if notification.agent_id != agent.uuid {
        tracing::info!(
            event = "keylime_revocation_other_agent",
            source,
            agent_id = %crate::logging::clip(&notification.agent_id),
            "a revocation naming another agent: nothing changes here"
        );
        return reply(StatusCode::OK, "Success", json!({}));
    }
    match agent
        .engine
        .fleet_revocation()
        .revoke(&notification.reason(), source)
    {
        Ok(_) => reply(StatusCode::OK, "Success", json!({})),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, &e, json!({})),
    }
}
