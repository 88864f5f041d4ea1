//! A small HTTP/1.1 client for the registrar and the verifier: one request per connection,
//! plain or TLS (the server verified against a configured CA, optionally with a client
//! certificate), JSON in and out, with deadlines and a bounded response body.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;

use super::config::Endpoint;

/// The deadline of one request, connection included.
const TIMEOUT: Duration = Duration::from_secs(15);
/// The largest response body read.
const MAX_RESPONSE: usize = 1 << 20;

/// A client towards one endpoint.
#[derive(Clone)]
pub struct Client {
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

impl Client {
    /// A client for `endpoint`; for https, `ca` (PEM) is the trust anchor and
    /// `client` (certificate PEM, key PEM) the optional client identity.
    pub fn new(
        endpoint: Endpoint,
        ca: Option<&Path>,
        client: Option<(&Path, &Path)>,
    ) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject as _;
        if !endpoint.https {
            return Ok(Self {
                endpoint,
                tls: None,
            });
        }
        let ca = ca.ok_or("an https endpoint needs a CA certificate")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&read(ca, "CA")?) {
            roots
                .add(cert.map_err(|e| format!("CA {}: {e}", ca.display()))?)
                .map_err(|e| format!("CA {}: {e}", ca.display()))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(&read(cert, "client certificate")?)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("client certificate {}: {e}", cert.display()))?;
                let key_pem = zeroize::Zeroizing::new(read(key, "client key")?);
                let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|e| format!("client key {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| format!("client certificate and key: {e}"))?
            }
        };
        Ok(Self {
            endpoint,
            tls: Some(Arc::new(config)),
        })
    }

    /// Sends `method path` with an optional JSON body; returns the status and the JSON
    /// answer (`Null` when the body is not JSON).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        tokio::time::timeout(TIMEOUT, self.request_inner(method, path, body))
            .await
            .map_err(|_| {
                format!(
                    "{} did not answer within {TIMEOUT:?}",
                    self.endpoint.authority()
                )
            })?
    }

    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let authority = self.endpoint.authority();
        let tcp = TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("connecting to {authority}: {e}"))?;
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, authority.as_str());
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(bytes)).map_err(|e| e.to_string())?;
        let response = match &self.tls {
            None => send(TokioIo::new(tcp), req).await?,
            Some(config) => {
                let name = ServerName::try_from(self.endpoint.host.clone())
                    .map_err(|e| format!("server name {}: {e}", self.endpoint.host))?;
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {authority}: {e}"))?;
                send(TokioIo::new(tls), req).await?
            }
        };
        Ok(response)
    }
}

async fn send<T>(io: TokioIo<T>, req: Request<Full<Bytes>>) -> Result<(u16, Value), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(conn);
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}
