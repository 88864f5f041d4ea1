//! TLS for the API: TLS 1.3 only, mutual authentication where a client is identified by
//! the SHA-256 of its certificate's SubjectPublicKeyInfo (docs/protocol.md, identities) —
//! self-signed client
//! certificates are accepted, and the handshake still proves possession of the key. The
//! daemon's own certificate is generated on first start unless configured.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use zeroize::Zeroizing;

/// A TLS setup failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate or key could not be generated.
    #[error("generating the TLS certificate: {0}")]
    Generate(String),
    /// A configured certificate or key file is unusable.
    #[error("TLS {what}: {reason}")]
    Material {
        /// Which file.
        what: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The daemon's TLS identity: certificate chain (DER) and PKCS#8 private key (zeroized).
pub struct TlsIdentity {
    /// The certificate chain, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The PKCS#8 DER private key.
    pub key_pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Generates a self-signed ECDSA P-256 certificate for `localhost` and the loopback
    /// addresses (clients pin its SPKI hash; the names matter little).
    pub fn generate() -> Result<Self, TlsError> {
        let names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok(Self {
            chain: vec![certified.cert.der().to_vec()],
            key_pkcs8: Zeroizing::new(certified.signing_key.serialize_der()),
        })
    }

    /// Reads an operator-provided PEM chain and PEM PKCS#8 key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| TlsError::Material {
                what: p.display().to_string(),
                reason: e.to_string(),
            })
        };
        let cert_pem = read(cert)?;
        let key_pem = Zeroizing::new(read(key)?);
        use rustls::pki_types::pem::PemObject;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Material {
                what: cert.display().to_string(),
                reason: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::Material {
                what: cert.display().to_string(),
                reason: "no certificate in the file".into(),
            });
        }
        let key_der =
            PrivatePkcs8KeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Material {
                what: key.display().to_string(),
                reason: format!("expected a PKCS#8 PEM key: {e}"),
            })?;
        Ok(Self {
            chain,
            key_pkcs8: Zeroizing::new(key_der.secret_pkcs8_der().to_vec()),
        })
    }

    /// The SHA-256 of the leaf's SubjectPublicKeyInfo, hex (what quotes bind, docs/protocol.md).
    pub fn spki_sha256_hex(&self) -> Result<String, TlsError> {
        let leaf = self.chain.first().ok_or_else(|| TlsError::Material {
            what: "certificate".into(),
            reason: "empty chain".into(),
        })?;
        arbiter_policy::identity::identity_of(leaf).map_err(|e| TlsError::Material {
            what: "certificate".into(),
            reason: e.to_string(),
        })
    }

    /// The leaf certificate as PEM.
    pub fn leaf_pem(&self) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(self.chain.first().map(Vec::as_slice).unwrap_or_default());
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }

    /// A rustls server configuration: TLS 1.3 only, client certificates required.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = Arc::new(AnyClientKey {
            algorithms: provider.signature_verification_algorithms,
        });
        let chain = self
            .chain
            .iter()
            .map(|c| CertificateDer::from(c.clone()))
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.to_vec()));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        // No resumption: every connection presents and proves its certificate afresh, and
        // clients see the server certificate they attest against.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Accepts any client certificate that parses, and verifies the handshake signature with
/// its key: the identity is the key, not a CA's word.
#[derive(Debug)]
struct AnyClientKey {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientKey {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        arbiter_policy::identity::spki_sha256(end_entity)
            .map(|_| ClientCertVerified::assertion())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))
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
