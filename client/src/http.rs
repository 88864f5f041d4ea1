//! The parties' HTTPS connection to an Arbiter daemon: mutual TLS 1.3 with the party's
//! own (self-signed) certificate, no session resumption (every connection shows the
//! server's certificate, whose SPKI hash the quotes bind), and an optional pin of that
//! hash. Each request uses a fresh connection and reports the server key it saw.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

use crate::ClientError;

/// Largest response body read.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Bytes handed to the connection at a time when a body is sent (the unit of progress).
const UPLOAD_CHUNK: usize = 256 << 10;

/// Called as a request body is sent: `(bytes sent so far, total bytes)`.
pub type Progress = dyn Fn(u64, u64) + Send + Sync;

/// A request body sent as a stream of chunks of one buffer (no copy: each chunk is a
/// slice of it), reporting progress as the connection takes each chunk — it polls for the
/// next only once it has room to write, so the count follows the upload.
struct ChunkedBody {
    data: Bytes,
    sent: usize,
    progress: Option<Arc<Progress>>,
}

impl Body for ChunkedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let total = self.data.len();
        if self.sent >= total {
            return Poll::Ready(None);
        }
        let end = total.min(self.sent + UPLOAD_CHUNK);
        let piece = self.data.slice(self.sent..end);
        self.sent = end;
        if let Some(progress) = &self.progress {
            progress(end as u64, total as u64);
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.data.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.data.len() - self.sent) as u64)
    }
}

/// A party's TLS identity: a self-signed certificate and its PKCS#8 key.
pub struct PartyIdentity {
    /// The certificate (DER).
    pub cert_der: Vec<u8>,
    /// The private key (PKCS#8 DER), zeroized on drop.
    pub key_pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PartyIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyIdentity")
            .field("identity", &self.identity().unwrap_or_default())
            .finish_non_exhaustive()
    }
}

impl PartyIdentity {
    /// Generates a new ECDSA P-256 key and a self-signed certificate named `name`.
    pub fn generate(name: &str) -> Result<Self, ClientError> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| ClientError::Identity(e.to_string()))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().map_err(|e| ClientError::Identity(e.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| ClientError::Identity(e.to_string()))?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            key_pkcs8: Zeroizing::new(key.serialize_der()),
        })
    }

    /// Reads a PEM certificate and a PEM PKCS#8 key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, ClientError> {
        use rustls::pki_types::pem::PemObject;
        let cert = CertificateDer::from_pem_slice(cert_pem)
            .map_err(|e| ClientError::Identity(format!("certificate: {e}")))?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem)
            .map_err(|e| ClientError::Identity(format!("key (PKCS#8 PEM expected): {e}")))?;
        Ok(Self {
            cert_der: cert.to_vec(),
            key_pkcs8: Zeroizing::new(key.secret_pkcs8_der().to_vec()),
        })
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert_der)
    }

    /// The key as PEM (PKCS#8).
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem("PRIVATE KEY", &self.key_pkcs8))
    }

    /// The identity: hex SHA-256 of the certificate's SubjectPublicKeyInfo.
    pub fn identity(&self) -> Result<String, ClientError> {
        arbiter_policy::identity::identity_of(&self.cert_der)
            .map_err(|e| ClientError::Identity(e.to_string()))
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// An answer from the daemon.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body parsed as JSON (`null` when empty or not JSON).
    pub json: serde_json::Value,
    /// The raw body.
    pub body: Bytes,
    /// The answer's headers.
    pub headers: hyper::HeaderMap,
    /// The SPKI SHA-256 (hex) of the certificate the server presented on this connection.
    pub server_spki_sha256: String,
}

impl Response {
    /// Decodes the body as the answer type of `endpoint` (e.g. `GET /v1/tpm`, named in the
    /// error): an answer that is not what the API promises is a clear error, never a
    /// default.
    ///
    /// # Errors
    /// `Protocol` naming the endpoint and what does not parse.
    pub fn answer<T: serde::de::DeserializeOwned>(&self, endpoint: &str) -> Result<T, ClientError> {
        arbiter_proto::api::parse_answer(endpoint, &self.body)
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

/// A connection factory to one daemon.
#[derive(Clone)]
pub struct Connection {
    host: String,
    port: u16,
    config: Arc<ClientConfig>,
    seen: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects as `identity` to `https://host:port`; with `pin`, refuses a server whose
    /// certificate's SPKI SHA-256 (hex) differs.
    pub fn new(
        server: &str,
        identity: &PartyIdentity,
        pin: Option<String>,
    ) -> Result<Self, ClientError> {
        let rest = server
            .strip_prefix("https://")
            .ok_or_else(|| ClientError::Usage(format!("`{server}` is not an https:// URL")))?;
        let authority = rest.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.trim_start_matches('[').trim_end_matches(']').to_owned(),
                p.parse::<u16>()
                    .map_err(|_| ClientError::Usage(format!("bad port in `{server}`")))?,
            ),
            None => (authority.to_owned(), 443),
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let seen = Arc::new(Mutex::new(None));
        let verifier = Arc::new(PinningVerifier {
            algorithms: provider.signature_verification_algorithms,
            pin,
            seen: Arc::clone(&seen),
        });
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_pkcs8.to_vec()));
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![CertificateDer::from(identity.cert_der.clone())], key)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            host,
            port,
            config: Arc::new(config),
            seen,
        })
    }

    /// Opens a new mutual-TLS connection to the daemon (for callers that speak HTTP
    /// themselves, e.g. tests that send a request piece by piece).
    pub async fn connect_tls(
        &self,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| ClientError::Connect(format!("{}:{}: {e}", self.host, self.port)))?;
        // Requests are written as a few small TLS records: without this, Nagle's algorithm
        // holds each behind the delayed ACK of the one before.
        tcp.set_nodelay(true)
            .map_err(|e| ClientError::Connect(format!("{}:{}: {e}", self.host, self.port)))?;
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| ClientError::Usage(format!("server name `{}`: {e}", self.host)))?;
        TlsConnector::from(Arc::clone(&self.config))
            .connect(name, tcp)
            .await
            .map_err(|e| ClientError::Tls(e.to_string()))
    }

    /// Sends one request on a new connection.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        self.request_with_progress(method, path, body.map(Bytes::from), None)
            .await
    }

    /// Sends one request on a new connection, its body as a stream of chunks, calling
    /// `progress` as each is taken by the connection.
    pub async fn request_with_progress(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        progress: Option<Arc<Progress>>,
    ) -> Result<Response, ClientError> {
        let tls = self.connect_tls().await?;
        let spki = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| arbiter_policy::identity::identity_of(c))
            .transpose()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .ok_or_else(|| ClientError::Tls("the server presented no certificate".into()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(async move {
            // The connection ends with the request; its own errors surface on the request.
            let _ = conn.await;
        });
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, format!("{}:{}", self.host, self.port));
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(ChunkedBody {
                data: body.unwrap_or_default(),
                sent: 0,
                progress,
            })
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Ok(Response {
            status,
            json,
            body,
            headers,
            server_spki_sha256: spki,
        })
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.request(Method::GET, path, None).await
    }

    /// POST a JSON value to `path`.
    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Response, ClientError> {
        self.request(Method::POST, path, Some(body.to_string().into_bytes()))
            .await
    }

    /// PUT a JSON value to `path`.
    pub async fn put(&self, path: &str, body: &serde_json::Value) -> Result<Response, ClientError> {
        self.request(Method::PUT, path, Some(body.to_string().into_bytes()))
            .await
    }

    /// DELETE `path`.
    pub async fn delete(&self, path: &str) -> Result<Response, ClientError> {
        self.request(Method::DELETE, path, None).await
    }

    /// The server key seen on the latest handshake.
    pub fn last_server_spki(&self) -> Option<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Accepts the server's certificate by the SPKI hash it pins (or any, when unpinned —
/// the attestation binds it), and verifies the handshake signature with its key.
#[derive(Debug)]
struct PinningVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    pin: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let spki = arbiter_policy::identity::identity_of(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(spki.clone());
        match &self.pin {
            Some(pin) if *pin != spki => Err(rustls::Error::General(format!(
                "the server's TLS key {spki} is not the pinned key {pin}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
