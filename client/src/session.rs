//! One party talking to one daemon: its settings, identity, connection (mutual TLS, no
//! session resumption, optional SPKI pin) and trust store, and the request helper that
//! turns the daemon's error documents into [`ClientError::Server`].

use arbiter_proto::api::ErrorBody;
use hyper::Method;
use serde_json::Value;

use crate::ClientError;
use crate::config::Settings;
use crate::http::{Connection, PartyIdentity, Response};
use crate::trust::TrustStore;

/// A party's session with a daemon.
#[derive(Debug)]
pub struct Session {
    /// The resolved settings.
    pub settings: Settings,
    /// The party's identity.
    pub identity: PartyIdentity,
    /// The connection factory (pinned when the settings pin a TLS key).
    pub conn: Connection,
    /// The local trust store.
    pub trust: TrustStore,
}

/// Reads the party's identity from the settings' certificate and key files.
///
/// # Errors
/// `File` when a file cannot be read, `Identity` when it does not parse.
pub fn load_identity(settings: &Settings) -> Result<PartyIdentity, ClientError> {
    let cert = std::fs::read(&settings.cert).map_err(|e| {
        ClientError::Identity(format!(
            "{}: {e} (create one with `arbiter identity new --out DIR`)",
            settings.cert.display()
        ))
    })?;
    let key = std::fs::read(&settings.key)
        .map_err(|e| ClientError::Identity(format!("{}: {e}", settings.key.display())))?;
    PartyIdentity::from_pem(&cert, &key)
}

impl Session {
    /// Opens a session with the identity and pin of `settings`.
    ///
    /// # Errors
    /// As [`load_identity`]; `Usage` for a bad server URL.
    pub fn open(settings: Settings) -> Result<Self, ClientError> {
        let identity = load_identity(&settings)?;
        let conn = Connection::new(&settings.server, &identity, settings.pin_tls_spki.clone())?;
        let trust = TrustStore::new(&settings.state);
        Ok(Self {
            settings,
            identity,
            conn,
            trust,
        })
    }

    /// This party's identity (SPKI SHA-256, hex).
    pub fn id(&self) -> Result<String, ClientError> {
        self.identity.identity()
    }

    /// A connection to the same server that refuses any TLS key but `spki` (hex).
    pub fn pinned_to(&self, spki: &str) -> Result<Connection, ClientError> {
        Connection::new(&self.settings.server, &self.identity, Some(spki.to_owned()))
    }

    /// Sends a request and returns the answer when it is a success; an error document
    /// becomes [`ClientError::Server`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, ClientError> {
        call_on(&self.conn, method, path, body).await
    }

    /// GET `path`, success only.
    pub async fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.call(Method::GET, path, None).await
    }

    /// POST `body` to `path`, success only.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Response, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }
}

/// Sends a request on `conn`; an answer that is not a success becomes
/// [`ClientError::Server`].
///
/// # Errors
/// Transport errors; `Server` for an error answer.
pub async fn call_on(
    conn: &Connection,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, ClientError> {
    let r = conn
        .request(method, path, body.map(|b| b.to_string().into_bytes()))
        .await?;
    success_or_error(r)
}

/// The answer when it is a success; an error document becomes [`ClientError::Server`].
///
/// # Errors
/// `Server` for an error answer.
pub fn success_or_error(r: Response) -> Result<Response, ClientError> {
    if r.status.is_success() {
        return Ok(r);
    }
    let status = r.status.as_u16();
    Err(
        match arbiter_proto::api::parse_answer::<ErrorBody>("an error answer", &r.body) {
            Ok(ErrorBody { error }) => ClientError::Server {
                status,
                code: error.code,
                message: error.message,
                problems: error
                    .problems
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| format!("{}: {}", p.pointer, p.reason))
                    .collect(),
            },
            // Not the API's error document (a proxy's page?): shown as it came.
            Err(_) => ClientError::Server {
                status,
                code: "unknown".into(),
                message: String::from_utf8_lossy(&r.body).into_owned(),
                problems: Vec::new(),
            },
        },
    )
}
