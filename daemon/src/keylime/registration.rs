//! Registration with Keylime's registrar (agent API 2.x): negotiate the version
//! (`GET /version`, the highest 2.x both sides know), `POST /v{ver}/agents/{uuid}` with the
//! AK (`aik_tpm`, TPM2B_PUBLIC), the configured EK (`ek_tpm`, and `ekcert` when the TPM
//! holds one), the listener's certificate (`mtls_cert`) and the contact address; answer
//! the returned MakeCredential blob with the TPM's ActivateCredential, then
//! `PUT /v{ver}/agents/{uuid}/activate` with the auth tag the registrar checks:
//! hex HMAC-SHA384 keyed with base64(credential), over the UUID. Retried in the background
//! while the registrar is unreachable; never holds up the daemon's readiness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};
use hyper::Method;
use serde_json::{Value, json};

use super::Agent;
use super::http::Client;

/// The first retry delay; doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// The header of tpm2-tools' MakeCredential output (`0xBADCC0DE`, version 1).
const CREDENTIAL_HEADER: [u8; 8] = [0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1];

/// Registers until it succeeds or the engine stops.
pub async fn run(agent: Arc<Agent>) {
    let mut delay = FIRST_RETRY;
    let engine = Arc::clone(&agent.engine);
    loop {
        let started = Instant::now();
        match register(&agent).await {
            Ok(version) => {
                tracing::info!(
                    event = "keylime_registered",
                    agent_uuid = %agent.uuid,
                    api_version = %version,
                    duration_ms = started.elapsed().as_secs_f64() * 1e3,
                    "registered and activated with the Keylime registrar"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(
                    event = "keylime_registration_failed",
                    error = %crate::logging::clip(&e),
                    retry_s = delay.as_secs(),
                    "registering with the Keylime registrar failed; retrying"
                );
            }
        }
        tokio::select! {
            () = engine.stopped() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_RETRY);
    }
}

/// The registrar and verifier API versions this daemon speaks to: the 2.x line of
/// Keylime 7.14 (registration and the agent status are the same across it).
pub const SERVER_API_VERSIONS: [&str; 7] = ["2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6"];

/// The highest version in a `/version` answer (`supported_versions`, or the older
/// `current_version` alone) that is also in [`SERVER_API_VERSIONS`].
pub fn highest_v2(answer: &Value) -> Option<String> {
    let results = answer.get("results")?;
    let listed: Vec<&str> = match results.get("supported_versions").and_then(Value::as_array) {
        Some(list) => list.iter().filter_map(Value::as_str).collect(),
        None => results
            .get("current_version")
            .and_then(Value::as_str)
            .into_iter()
            .collect(),
    };
    listed
        .into_iter()
        .filter(|v| SERVER_API_VERSIONS.contains(v))
        .filter_map(|v| {
            let (_, minor) = v.split_once('.')?;
            minor.parse::<u32>().ok().map(|m| (m, v))
        })
        .max_by_key(|(m, _)| *m)
        .map(|(_, v)| v.to_owned())
}

/// The auth tag the registrar expects: hex HMAC-SHA384, keyed with the base64 text of the
/// credential, over the agent UUID (Keylime's `crypto.do_hmac(key.encode(), agent_id)`).
pub fn auth_tag(credential: &[u8], uuid: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD.encode(credential);
    // HMAC accepts keys of any length.
    let mut mac = hmac::Hmac::<sha2::Sha384>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(uuid.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Splits tpm2-tools' MakeCredential output into the size-prefixed `TPM2B_ID_OBJECT` and
/// `TPM2B_ENCRYPTED_SECRET`.
pub fn split_credential_blob(blob: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let rest = blob
        .strip_prefix(&CREDENTIAL_HEADER[..])
        .ok_or("the challenge does not start with tpm2-tools' header 0xBADCC0DE, version 1")?;
    let take = |b: &[u8], what: &str| -> Result<(Vec<u8>, usize), String> {
        let size = b
            .get(..2)
            .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
            .ok_or(format!("the challenge ends before its {what}"))?;
        let whole = b
            .get(..2 + size)
            .ok_or(format!("the challenge's {what} is cut short"))?;
        Ok((whole.to_vec(), 2 + size))
    };
    let (id_object, used) = take(rest, "credential blob")?;
    let (secret, used2) = take(&rest[used..], "encrypted secret")?;
    if used + used2 != rest.len() {
        return Err("the challenge has bytes after its encrypted secret".into());
    }
    Ok((id_object, secret))
}

async fn register(agent: &Agent) -> Result<String, String> {
    let section = &agent.section;
    let endpoint = section.registrar_endpoint().map_err(|e| e.to_string())?;
    let client = Client::new(endpoint, section.registrar_ca.as_deref(), None)?;
    let (status, answer) = client.request(Method::GET, "/version", None).await?;
    let version = if status == 200 {
        highest_v2(&answer).ok_or_else(|| {
            format!(
                "the registrar offers no API version this daemon speaks ({}): {}",
                SERVER_API_VERSIONS.join(", "),
                answer
                    .pointer("/results/supported_versions")
                    .unwrap_or(&Value::Null)
            )
        })?
    } else {
        return Err(format!("the registrar's GET /version answered {status}"));
    };
    let tpm = agent.engine.tpm();
    let ak = tpm.attestation_key().await.map_err(|e| e.to_string())?;
    let ek = tpm
        .endorsement_keys()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|k| k.alg == agent.ek)
        .ok_or_else(|| format!("the TPM has no {} EK", agent.ek.as_str()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (ip, port) = section.contact(agent.bound);
    let body = json!({
        "ek_tpm": b64.encode(&ek.tpm2b_public),
        "ekcert": ek.cert_der.as_ref().map(|c| b64.encode(c)),
        "aik_tpm": b64.encode(&ak.tpm2b_public),
        "mtls_cert": agent.tls.leaf_pem(),
        "ip": ip.to_string(),
        "port": port,
    });
    let path = format!("/v{version}/agents/{}", agent.uuid);
    let (status, answer) = client.request(Method::POST, &path, Some(&body)).await?;
    if status != 200 {
        return Err(format!(
            "the registrar refused the registration ({status}): {}",
            answer
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
        ));
    }
    let blob = answer
        .pointer("/results/blob")
        .and_then(Value::as_str)
        .ok_or("the registrar's answer has no results.blob")?;
    let blob = b64
        .decode(blob)
        .map_err(|e| format!("the registrar's blob is not base64: {e}"))?;
    let (id_object, secret) = split_credential_blob(&blob)?;
    let credential = tpm
        .activate_credential(agent.ek, id_object, secret)
        .await
        .map_err(|e| format!("ActivateCredential: {e}"))?;
    let tag = auth_tag(&credential, &agent.uuid);
    let (status, answer) = client
        .request(
            Method::PUT,
            &format!("{path}/activate"),
            Some(&json!({"auth_tag": tag})),
        )
        .await?;
    if status != 200 {
        return Err(format!(
            "the registrar refused the activation ({status}): {}",
            answer
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
        ));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_2x() {
        let a = json!({"results": {"current_version": "2.6", "supported_versions": ["1.0", "2.0", "2.6", "2.10", "3.0"]}});
        // 2.10 is not one this daemon knows.
        assert_eq!(highest_v2(&a).as_deref(), Some("2.6"));
        let b = json!({"results": {"current_version": "2.1"}});
        assert_eq!(highest_v2(&b).as_deref(), Some("2.1"));
        assert_eq!(
            highest_v2(&json!({"results": {"supported_versions": ["3.0"]}})),
            None
        );
    }

    #[test]
    fn auth_tag_is_keylime_do_hmac() {
        // python3 -c 'import hmac,hashlib,base64;k=base64.b64encode(b"A"*32);
        //   print(hmac.new(k,b"agent",hashlib.sha384).hexdigest())'
        let tag = auth_tag(&[b'A'; 32], "agent");
        assert_eq!(tag.len(), 96);
        assert_eq!(tag, PY_TAG);
    }
    const PY_TAG: &str = "f436de8e53d9b749154ad267d2cc0021b415308e716a147f7d98cef966bb454206c58ab08ffe08c3cc2aff289c5605da";

    #[test]
    fn splits_blobs() {
        let mut blob = CREDENTIAL_HEADER.to_vec();
        blob.extend_from_slice(&[0, 2, 9, 9, 0, 1, 7]);
        let (a, b) = split_credential_blob(&blob).unwrap();
        assert_eq!(a, vec![0, 2, 9, 9]);
        assert_eq!(b, vec![0, 1, 7]);
        assert!(split_credential_blob(&blob[1..]).is_err());
        blob.push(0);
        assert!(split_credential_blob(&blob).is_err());
    }
}
