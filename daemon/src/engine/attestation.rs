//! Attestation (docs/protocol.md): quotes bound to each verifier's nonce and TLS channel through an
//! RFC 9162 Merkle tree, so concurrent requests arriving within a short window share one
//! TPM quote; the TPM's public parts (AK, EKs, the statement key's certification); and
//! credential activation for enrolling verifiers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbiter_measured_boot::cel::Record;
use arbiter_policy::merkle;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{Engine, EngineError};
use crate::tpm::{EkAlgorithm, Quote};

/// The statement key certification's qualifying data: a fixed label (the key is fixedTPM;
/// the certification's freshness does not matter, its binding to the AK does).
pub const STATEMENT_KEY_CERTIFY_DATA: &[u8] = b"arbiter/v1/statement-key";

/// One quote and everything it covers, shared by the requests of a batch.
struct Batch {
    quote: Quote,
    generation: u64,
    records: Vec<Record>,
    leaves: Vec<Vec<u8>>,
    root: [u8; 32],
    sealing: Value,
}

type Waiter = oneshot::Sender<Result<Arc<Batch>, String>>;

/// Requests waiting for the next quote.
#[derive(Default)]
struct Pending {
    leaves: Vec<Vec<u8>>,
    waiters: Vec<Waiter>,
}

/// Collects concurrent attestation requests into one quote.
#[derive(Default)]
pub struct Batcher {
    pending: Mutex<Option<Pending>>,
    arrived: tokio::sync::Notify,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Engine {
    /// `GET /v1/attestation`: a quote whose qualifying data is the Merkle root over the
    /// binding leaves of the requests it serves, with this request's leaf and proof.
    pub async fn attest(
        self: &Arc<Self>,
        caller: &str,
        nonce_hex: &str,
        instance: Option<&str>,
    ) -> Result<Value, EngineError> {
        let nonce = hex::decode(nonce_hex).map_err(|_| {
            EngineError::bad(
                "invalid_nonce",
                "`nonce` is lowercase hex of 16 to 64 bytes",
            )
        })?;
        if !(16..=64).contains(&nonce.len()) || nonce_hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(EngineError::bad(
                "invalid_nonce",
                "`nonce` is lowercase hex of 16 to 64 bytes",
            ));
        }
        let description = match instance {
            Some(id) => Some(
                serde_json::to_value(self.describe_instance(caller, id).await?).unwrap_or_default(),
            ),
            None => None,
        };
        let leaf = merkle::binding_leaf(nonce_hex, instance, &self.tls_spki);
        let (index, batch) = self.join_batch(leaf.clone()).await?;
        let proof = merkle::inclusion_proof(&batch.leaves, index)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        let ak = self.tpm.attestation_key().await?;
        let pcrs: serde_json::Map<String, Value> = batch
            .quote
            .pcrs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(hex::encode(v))))
            .collect();
        // Read at each attestation (the kernel's file can grow on some platforms); the unit's
        // fallback credential where the host has no log is no log.
        let firmware_log = std::fs::read(&self.firmware_log)
            .ok()
            .and_then(crate::config::firmware_log_content)
            .map(|b| b64(&b));
        Ok(json!({
            "quote": {
                "attest": b64(&batch.quote.attest),
                "signature": b64(&batch.quote.signature),
                "pcrs": { "sha256": pcrs },
            },
            "ak": {
                "public_pem": ak.public_pem()?,
                "tpm2b_public": b64(&ak.tpm2b_public),
                "name": hex::encode(&ak.name),
            },
            "binding": {
                "leaf": serde_json::from_slice::<Value>(&leaf).unwrap_or_default(),
                "leaf_index": index,
                "tree_size": batch.leaves.len(),
                "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
                "root": hex::encode(batch.root),
            },
            "sealing": batch.sealing,
            "log_generation": batch.generation,
            "log": batch.records,
            "firmware_log": firmware_log,
            "instance": description,
        }))
    }

    /// Adds a leaf to the pending batch (starting one if needed) and waits for its quote.
    async fn join_batch(
        self: &Arc<Self>,
        leaf: Vec<u8>,
    ) -> Result<(usize, Arc<Batch>), EngineError> {
        let (tx, rx) = oneshot::channel();
        let (index, start) = {
            let mut pending = self
                .batcher
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let start = pending.is_none();
            let batch = pending.get_or_insert_with(Pending::default);
            batch.leaves.push(leaf);
            batch.waiters.push(tx);
            (batch.leaves.len() - 1, start)
        };
        self.batcher.arrived.notify_one();
        if start {
            let engine = Arc::clone(self);
            tokio::spawn(async move { engine.flush_batch().await });
        }
        let batch = rx
            .await
            .map_err(|_| EngineError::Internal("the attestation batch was dropped".into()))?
            .map_err(|e| EngineError::Unavailable(format!("no attestation: {e}")))?;
        Ok((index, batch))
    }

    /// Waits out the batch window (and, in tests, the minimum batch size), then quotes once
    /// for every waiting request.
    async fn flush_batch(self: Arc<Self>) {
        let window = Duration::from_millis(self.config().attestation.batch_window_ms);
        let min = self.config().attestation.batch_min_leaves.max(1);
        tokio::time::sleep(window).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let count = self
                .batcher
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map_or(0, |p| p.leaves.len());
            if count >= min || tokio::time::Instant::now() >= deadline {
                break;
            }
            let _ = tokio::time::timeout_at(deadline, self.batcher.arrived.notified()).await;
        }
        let Some(pending) = self
            .batcher
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let result = self
            .quote_batch(pending.leaves)
            .await
            .map(Arc::new)
            .map_err(|e| e.to_string());
        for waiter in pending.waiters {
            // A waiter whose request was cancelled is gone; the others still get the quote.
            let _ = waiter.send(result.clone());
        }
    }

    async fn quote_batch(&self, leaves: Vec<Vec<u8>>) -> Result<Batch, EngineError> {
        self.metrics.quote_batch(leaves.len());
        let root = merkle::root(&leaves);
        let selection = self.config().tpm_config().quote_selection()?;
        let (quote, generation, records) = self.measurer.quote(selection, root.to_vec()).await?;
        let index = if self.sealing_unavailable.is_some() {
            self.tpm.sealing_index_as_is().await?
        } else {
            self.tpm.sealing_index().await?
        };
        let index =
            index.ok_or_else(|| EngineError::Internal("the sealing index is gone".into()))?;
        let mut sealing = json!({
            "nv_public": b64(&index.tpm2b_public),
            "name": hex::encode(&index.name),
            "epoch": self.sealer().map_or(self.last_epoch, |s| s.epoch()),
        });
        if let Some(reason) = &self.sealing_unavailable {
            // Degraded (docs/protocol.md): the index is not readable in this platform state.
            // Unsigned,
            // like the rest of this object beside the quote, and only ever a reason to refuse.
            sealing["unavailable"] = json!(reason);
        }
        Ok(Batch {
            quote,
            generation,
            records,
            leaves,
            root,
            sealing,
        })
    }

    /// `GET /v1/tpm`: the AK, each EK with its certificate, and the statement key with its
    /// certification by the AK.
    pub async fn tpm_info(&self) -> Result<Value, EngineError> {
        let ak = self.tpm.attestation_key().await?;
        let eks = self.tpm.endorsement_keys().await?;
        let (key, cert) = if self.sealing_unavailable.is_some() {
            // Degraded: the key is bound to the sealed platform state, not this one; it is
            // published as it is (the TPM refuses its signatures here).
            self.tpm
                .certify_statement_key_as_is(STATEMENT_KEY_CERTIFY_DATA.to_vec())
                .await?
        } else {
            let key = self.tpm.ensure_statement_key().await?;
            let cert = self
                .tpm
                .certify_statement_key(STATEMENT_KEY_CERTIFY_DATA.to_vec())
                .await?;
            (key, cert)
        };
        Ok(json!({
            "ak": {
                "public_pem": ak.public_pem()?,
                "tpm2b_public": b64(&ak.tpm2b_public),
                "name": hex::encode(&ak.name),
            },
            "eks": eks.iter().map(|ek| json!({
                "alg": ek.alg.as_str(),
                "tpm2b_public": b64(&ek.tpm2b_public),
                "cert_der": ek.cert_der.as_deref().map(b64),
            })).collect::<Vec<_>>(),
            "statement_key": {
                "attest": b64(&cert.attest),
                "signature": b64(&cert.signature),
                "qualifying_data": b64(STATEMENT_KEY_CERTIFY_DATA),
                "public_pem": key.public_pem()?,
                "tpm2b_public": b64(&key.tpm2b_public),
                "name": hex::encode(&key.name),
            },
        }))
    }

    /// `POST /v1/tpm/activate-credential`.
    pub async fn activate_credential(&self, request: Value) -> Result<Value, EngineError> {
        let field = |name: &str| -> Result<Vec<u8>, EngineError> {
            let text = request.get(name).and_then(Value::as_str).ok_or_else(|| {
                EngineError::bad("missing_field", format!("`{name}` (base64) is required"))
            })?;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| EngineError::bad("invalid_base64", format!("`{name}`: {e}")))
        };
        let alg = match request.get("ek_alg").and_then(Value::as_str) {
            Some("rsa2048") => EkAlgorithm::Rsa2048,
            Some("ecc_nist_p384") => EkAlgorithm::EccNistP384,
            _ => {
                return Err(EngineError::bad(
                    "invalid_ek_alg",
                    "`ek_alg` is `rsa2048` or `ecc_nist_p384`",
                ));
            }
        };
        let secret = self
            .tpm
            .activate_credential(alg, field("credential_blob")?, field("encrypted_secret")?)
            .await
            .map_err(|e| {
                EngineError::bad(
                    "activation_failed",
                    format!("ActivateCredential refused the credential: {e}"),
                )
            })?;
        Ok(json!({ "secret": b64(&secret) }))
    }
}
