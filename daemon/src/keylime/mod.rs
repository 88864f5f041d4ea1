//! Keylime's agent interface (pull model, agent API 2.x), off by default (`[keylime]`):
//! the daemon registers its attestation key and an EK with Keylime's registrar, answers
//! the verifier's and tenant's quote requests on a separate mutual-TLS listener, keeps
//! PCR 16 bound to its agent key, and turns the verifier's verdict that this appliance
//! failed into the fleet revocation state (docs/fleet.md).
//!
//! - [`config`]: the `[keylime]` section;
//! - [`identity`]: the agent UUID and the listener's certificate, kept in the state dir;
//! - [`quote`]: Keylime's quote, PCR-values and mask formats, the PCR 16 binding;
//! - `listener`: the mTLS listener and its routes;
//! - `registration`: registering with the registrar and activating;
//! - `http`: the small HTTP(S) client used towards the registrar and the verifier;
//! - [`revocation`]: the persisted revocation state and messages; `revocation_watch`: the
//!   verifier-status poll.

pub mod config;
pub(crate) mod http;
pub mod identity;
pub(crate) mod listener;
pub mod quote;
pub(crate) mod registration;
pub mod revocation;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::engine::Engine;
use crate::tls::TlsIdentity;
use crate::tpm::EkAlgorithm;

/// The agent API versions this daemon serves, as Keylime's own agent (rust-keylime)
/// offers them; the last is the one reported as `supported_version`.
pub const AGENT_API_VERSIONS: [&str; 5] = ["2.1", "2.2", "2.3", "2.4", "2.5"];

/// The running agent interface: what the listener, registration and watcher share.
pub struct Agent {
    engine: Arc<Engine>,
    section: config::KeylimeSection,
    uuid: String,
    ek: EkAlgorithm,
    tls: TlsIdentity,
    /// The agent key's public key, PEM (SubjectPublicKeyInfo): served as `pubkey` and
    /// bound into PCR 16.
    pubkey_pem: String,
    bound: SocketAddr,
    /// At most this many Keylime quotes wait for the TPM at once.
    quoting: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("uuid", &self.uuid)
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

/// How many Keylime quote requests may queue for the TPM at once; more are answered 503.
const MAX_QUEUED_QUOTES: usize = 4;

impl Agent {
    /// Prepares the agent interface of a started engine: the UUID, the listener's
    /// identity, the listener bound. Fails with a reason naming the file or setting.
    pub async fn prepare(engine: Arc<Engine>) -> Result<(Arc<Self>, TcpListener), String> {
        let config = engine.config();
        let section = config.keylime.clone();
        let ek = section.ek_algorithm().map_err(|e| e.to_string())?;
        let ak = engine
            .tpm()
            .attestation_key()
            .await
            .map_err(|e| format!("reading the attestation key: {e}"))?;
        let uuid = identity::agent_uuid(&config.state_dir, section.uuid.as_deref(), &ak.name)?;
        let tls = identity::agent_tls(&config.state_dir)?;
        let pubkey_pem = spki_pem(&tls)?;
        let listener = TcpListener::bind(section.listen)
            .await
            .map_err(|e| format!("cannot listen on keylime.listen {}: {e}", section.listen))?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("keylime listener address: {e}"))?;
        Ok((
            Arc::new(Self {
                engine,
                section,
                uuid,
                ek,
                tls,
                pubkey_pem,
                bound,
                quoting: tokio::sync::Semaphore::new(MAX_QUEUED_QUOTES),
            }),
            listener,
        ))
    }

    /// Serves the listener and runs registration and the verifier watcher in the
    /// background until the engine stops.
    pub fn spawn(self: &Arc<Self>, listener: TcpListener) -> Result<(), String> {
        let config = listener::server_config(&self.tls, self.section.ca_certificate.as_deref())?;
        tracing::info!(
            event = "keylime_listening",
            address = %self.bound,
            agent_uuid = %self.uuid,
            "Keylime agent interface on https://{}",
            self.bound
        );
        tokio::spawn(listener::serve(Arc::clone(self), listener, config));
        tokio::spawn(registration::run(Arc::clone(self)));
        if self.section.verifier.is_some() {
            tokio::spawn(revocation_watch::run(Arc::clone(self)));
        }
        Ok(())
    }

    /// The agent UUID.
    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// The listener's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.bound
    }

    /// The public key bound into PCR 16 (PEM).
    pub fn pubkey_pem(&self) -> &str {
        &self.pubkey_pem
    }
}

mod revocation_watch;

/// The PEM SubjectPublicKeyInfo of a TLS identity's leaf.
fn spki_pem(tls: &TlsIdentity) -> Result<String, String> {
    use base64::Engine as _;
    use x509_cert::der::{Decode as _, Encode as _};
    let leaf = tls
        .chain
        .first()
        .ok_or("the agent certificate chain is empty")?;
    let cert = x509_cert::Certificate::from_der(leaf)
        .map_err(|e| format!("the agent certificate does not parse: {e}"))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| format!("the agent certificate's key: {e}"))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    Ok(pem)
}
