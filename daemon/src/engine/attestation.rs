//! Attestation (docs/protocol.md): quotes bound to each verifier's nonce and TLS channel through an
//! RFC 9162 Merkle tree, so concurrent requests arriving within a short window share one
//! TPM quote; the TPM's public parts (AK, EKs, the statement key's certification); and
//! credential activation for enrolling verifiers.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbiter_measured_boot::cel::{Base64Bytes, HexBytes, Record};
use arbiter_policy::merkle;
use arbiter_proto::Sha256Digest;
use arbiter_proto::api::{
    self as wire, ActivateCredential, Binding, BindingLeaf, EndorsementKey, QuotedPcrs, Sealing,
    Secret, StatementKey, TpmInfo, TpmKey,
};
use tokio::sync::oneshot;

use super::{Engine, EngineError};
use crate::tpm::{EkAlgorithm, Quote, TpmError};

/// The statement key certification's qualifying data: a fixed label (the key is fixedTPM;
/// the certification's freshness does not matter, its binding to the AK does).
pub const STATEMENT_KEY_CERTIFY_DATA: &[u8] = b"arbiter/v1/statement-key";

/// What a `GET /v1/tpm` answer depends on that can change while the daemon runs. The AK,
/// the EKs and the statement key are persistent or derived from the TPM's seeds, and the
/// certification's qualifying data is a fixed label, so an answer stays true until one of
/// these changes:
/// - `tpm_epoch`: the TPM layer reconnected (the TPM went away, perhaps started up) or
///   created the statement key;
/// - `generation`: the measurement log noticed a TPM startup;
/// - `as_is`: the statement key is published as it is (degraded start, fleet revocation)
///   or checked against the platform state.
///
/// A certification made before a TPM restart still certifies the same key by the same AK
/// (its clock info is older, which verifiers do not use), so this is caution, not need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TpmInfoKey {
    tpm_epoch: u64,
    generation: u64,
    as_is: bool,
}

/// The `GET /v1/tpm` answer computed last, under its [`TpmInfoKey`].
#[derive(Default)]
pub struct TpmInfoCache {
    current: Mutex<Option<(TpmInfoKey, TpmInfo)>>,
    filling: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TpmInfoCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmInfoCache").finish_non_exhaustive()
    }
}

impl TpmInfoCache {
    fn get(&self, key: &TpmInfoKey) -> Option<TpmInfo> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current
            .as_ref()
            .filter(|(k, _)| k == key)
            .map(|(_, info)| info.clone())
    }

    fn put(&self, key: TpmInfoKey, info: TpmInfo) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((key, info));
    }
}

/// One quote and everything it covers, shared by the requests of a batch: what every
/// answer of the batch carries is read and converted once, after the quote (a job on the
/// TPM thread per answer would queue the batch's answers behind the next batch's quote).
struct Batch {
    quote: Quote,
    /// The quote's PCR values as the API publishes them.
    pcrs: std::collections::BTreeMap<String, Sha256Digest>,
    /// The AK that signed the quote, as the API publishes it.
    ak: TpmKey,
    /// The firmware event log, read when the quote was made.
    firmware_log: Option<Base64Bytes>,
    generation: u64,
    records: Vec<Record>,
    /// The inclusion proof of each leaf, in the order the leaves joined.
    proofs: Vec<Vec<Sha256Digest>>,
    root: [u8; 32],
    sealing: Sealing,
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
    /// Held from taking a batch until its quote is done: one quote in flight at a time, so
    /// requests arriving while the TPM signs (200 ms on a discrete TPM) all join the next
    /// batch instead of cutting small batches that queue behind each other at the TPM.
    quoting: tokio::sync::Mutex<()>,
    /// How many of the requests the last quote served have not come back for another
    /// quote yet: set when a quote's answers go out, counted down by each arrival.
    owed: AtomicUsize,
    /// How long the last quote took (microseconds).
    last_quote_us: AtomicU64,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> Base64Bytes {
    Base64Bytes(bytes.to_vec())
}

/// A TPM key as the API publishes it.
fn tpm_key(pem: String, tpm2b_public: &[u8], name: &[u8]) -> TpmKey {
    TpmKey {
        name: HexBytes(name.to_vec()),
        public_pem: pem,
        tpm2b_public: b64(tpm2b_public),
    }
}

impl Engine {
    /// `GET /v1/attestation`: a quote whose qualifying data is the Merkle root over the
    /// binding leaves of the requests it serves, with this request's leaf and proof.
    pub async fn attest(
        self: &Arc<Self>,
        caller: &str,
        nonce_hex: &str,
        instance: Option<&str>,
    ) -> Result<wire::Attestation, EngineError> {
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
            Some(id) => Some(self.describe_instance(caller, id).await?),
            None => None,
        };
        let leaf = merkle::binding_leaf(nonce_hex, instance, &self.tls_spki);
        let (index, batch) = self.join_batch(leaf.clone()).await?;
        let proof = batch
            .proofs
            .get(index)
            .ok_or_else(|| EngineError::Internal("no inclusion proof for the leaf".into()))?
            .clone();
        let leaf: BindingLeaf = serde_json::from_slice(&leaf)
            .map_err(|e| EngineError::Internal(format!("the binding leaf: {e}")))?;
        Ok(wire::Attestation {
            ak: batch.ak.clone(),
            binding: Binding {
                leaf,
                leaf_index: index as u64,
                proof,
                root: Sha256Digest(batch.root),
                tree_size: batch.proofs.len() as u64,
            },
            firmware_log: batch.firmware_log.clone(),
            fleet_revoked: self
                .fleet_revoked()
                .map(|r| arbiter_proto::api::FleetRevoked {
                    reason: r.reason,
                    source: r.source,
                    since: r.since,
                }),
            instance: description,
            log: batch.records.clone(),
            log_generation: batch.generation,
            quote: wire::Quote {
                attest: b64(&batch.quote.attest),
                pcrs: QuotedPcrs {
                    sha256: batch.pcrs.clone(),
                },
                signature: b64(&batch.quote.signature),
            },
            sealing: batch.sealing.clone(),
        })
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
            // One of the last quote's verifiers (or a new one) is back.
            let _ = self
                .batcher
                .owed
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
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

    /// Waits out the batch window (and, in tests, the minimum batch size) and the quote in
    /// flight, then quotes once for every waiting request.
    async fn flush_batch(self: Arc<Self>) {
        let window = Duration::from_millis(self.config().attestation.batch_window_ms);
        let min = self.config().attestation.batch_min_leaves.max(1);
        tokio::time::sleep(window).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let count = self.pending_leaves();
            if count >= min || tokio::time::Instant::now() >= deadline {
                break;
            }
            let _ = tokio::time::timeout_at(deadline, self.batcher.arrived.notified()).await;
        }
        // Wait for the quote in flight, if any: until it is done this batch keeps growing.
        let _quoting = self.batcher.quoting.lock().await;
        // On a slow TPM, the verifiers the last quote served are being answered now and
        // will come back for another quote: cut only once they are back (or one quote time
        // has passed), so that a steady crowd rides every quote together instead of
        // splitting into groups that ride alternate ones, each waiting two quote times.
        let last_quote = Duration::from_micros(self.batcher.last_quote_us.load(Ordering::Relaxed));
        let drain = tokio::time::Instant::now();
        if last_quote > window {
            let cap = drain + last_quote;
            while self.batcher.owed.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < cap
            {
                let _ = tokio::time::timeout_at(cap, self.batcher.arrived.notified()).await;
            }
        }
        tracing::debug!(
            event = "attestation_batch_cut",
            leaves = self.pending_leaves(),
            not_back = self.batcher.owed.load(Ordering::Relaxed),
            waited_ms = drain.elapsed().as_secs_f64() * 1e3,
            last_quote_ms = last_quote.as_secs_f64() * 1e3,
            "attestation batch cut"
        );
        let Some(pending) = self
            .batcher
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let served = pending.leaves.len();
        let started = std::time::Instant::now();
        let result = self
            .quote_batch(pending.leaves)
            .await
            .map(Arc::new)
            .map_err(|e| e.to_string());
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.batcher.last_quote_us.store(took, Ordering::Relaxed);
        self.batcher.owed.store(served, Ordering::Relaxed);
        for waiter in pending.waiters {
            // A waiter whose request was cancelled is gone; the others still get the quote.
            let _ = waiter.send(result.clone());
        }
    }

    /// How many requests wait for the next quote.
    fn pending_leaves(&self) -> usize {
        self.batcher
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |p| p.leaves.len())
    }

    async fn quote_batch(&self, leaves: Vec<Vec<u8>>) -> Result<Batch, EngineError> {
        self.metrics.quote_batch(leaves.len());
        let hashes: Vec<[u8; 32]> = leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
        let (root, proofs) = merkle::all_inclusion_proofs(&hashes);
        let proofs = proofs
            .into_iter()
            .map(|p| p.into_iter().map(Sha256Digest).collect())
            .collect();
        let selection = self.config().tpm_config().quote_selection()?;
        let (quote, generation, records) = self.measurer.quote(selection, root.to_vec()).await?;
        let ak = self.tpm.attestation_key().await?;
        let ak = tpm_key(ak.public_pem()?, &ak.tpm2b_public, &ak.name);
        let pcrs = quote
            .pcrs
            .iter()
            .map(|(k, v)| (k.to_string(), Sha256Digest(*v)))
            .collect();
        // Read with each quote (the kernel's file can grow on some platforms); the unit's
        // fallback credential where the host has no log is no log.
        let firmware_log = std::fs::read(&self.firmware_log)
            .ok()
            .and_then(crate::config::firmware_log_content)
            .map(|b| b64(&b));
        let index = if self.platform_as_is() {
            self.tpm.sealing_index_as_is().await?
        } else {
            self.tpm.sealing_index().await?
        };
        let index =
            index.ok_or_else(|| EngineError::Internal("the sealing index is gone".into()))?;
        let sealing = Sealing {
            epoch: self.sealer().map_or(self.last_epoch, |s| s.epoch()),
            name: HexBytes(index.name.clone()),
            nv_public: b64(&index.tpm2b_public),
            // Degraded (docs/protocol.md): the index is not readable in this platform state.
            // Unsigned, like the rest of this object beside the quote, and only ever a
            // reason to refuse.
            unavailable: self.sealing_unavailable.clone(),
        };
        Ok(Batch {
            quote,
            pcrs,
            ak,
            firmware_log,
            generation,
            records,
            proofs,
            root,
            sealing,
        })
    }

    /// Whether the sealing index and the statement key are read as they are, without their
    /// platform policy: in a degraded start, and while the fleet verifier has revoked the
    /// appliance (the platform may have changed under the running daemon, which is what
    /// the verifier saw), so that the attestation still answers and says why.
    fn platform_as_is(&self) -> bool {
        self.sealing_unavailable.is_some() || self.fleet_revoked().is_some()
    }

    /// What a cached `GET /v1/tpm` answer depends on besides the persistent keys: see
    /// [`TpmInfoCache`].
    fn tpm_info_key(&self) -> TpmInfoKey {
        TpmInfoKey {
            tpm_epoch: self.tpm.epoch(),
            generation: self.measurer.generation(),
            as_is: self.platform_as_is(),
        }
    }

    /// `GET /v1/tpm`: the AK, each EK with its certificate, and the statement key with its
    /// certification by the AK. Computed once and served from memory while its cache key
    /// (TPM connection epoch, log generation, "as is" mode) holds; computing it is
    /// client-driven TPM work, refused with
    /// [`crate::tpm::TpmError::Busy`] when too many such requests wait.
    pub async fn tpm_info(&self) -> Result<TpmInfo, EngineError> {
        let key = self.tpm_info_key();
        if let Some(info) = self.tpm_info_cache.get(&key) {
            return Ok(info);
        }
        // One computation at a time. A request that finds one under way waits for it
        // without taking a place for TPM work (it causes none) and is then answered from
        // memory; only the request that computes takes a place.
        let _filling = self.tpm_info_cache.filling.lock().await;
        let key = self.tpm_info_key();
        if let Some(info) = self.tpm_info_cache.get(&key) {
            return Ok(info);
        }
        let _permit = self.tpm.admit_request()?;
        let info = self.compute_tpm_info().await?;
        // Stored under the key read before the TPM commands: if it changed meanwhile, the
        // next request computes again.
        self.tpm_info_cache.put(key, info.clone());
        Ok(info)
    }

    async fn compute_tpm_info(&self) -> Result<TpmInfo, EngineError> {
        let ak = self.tpm.attestation_key().await?;
        let eks = self.tpm.endorsement_keys().await?;
        let (key, cert) = if self.platform_as_is() {
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
        Ok(TpmInfo {
            ak: tpm_key(ak.public_pem()?, &ak.tpm2b_public, &ak.name),
            eks: eks
                .iter()
                .map(|ek| EndorsementKey {
                    alg: match ek.alg {
                        EkAlgorithm::Rsa2048 => wire::EkAlgorithm::Rsa2048,
                        EkAlgorithm::EccNistP384 => wire::EkAlgorithm::EccNistP384,
                    },
                    cert_der: ek.cert_der.as_deref().map(b64),
                    tpm2b_public: b64(&ek.tpm2b_public),
                })
                .collect(),
            statement_key: StatementKey {
                attest: b64(&cert.attest),
                name: HexBytes(key.name.clone()),
                public_pem: key.public_pem()?,
                qualifying_data: b64(STATEMENT_KEY_CERTIFY_DATA),
                signature: b64(&cert.signature),
                tpm2b_public: b64(&key.tpm2b_public),
            },
        })
    }

    /// `POST /v1/tpm/activate-credential`.
    pub async fn activate_credential(
        &self,
        request: ActivateCredential,
    ) -> Result<Secret, EngineError> {
        let alg = match request.ek_alg {
            wire::EkAlgorithm::Rsa2048 => EkAlgorithm::Rsa2048,
            wire::EkAlgorithm::EccNistP384 => EkAlgorithm::EccNistP384,
        };
        let _permit = self.tpm.admit_request()?;
        let secret = self
            .tpm
            .activate_credential(alg, request.credential_blob.0, request.encrypted_secret.0)
            .await
            .map_err(|e| match e {
                // The TPM refused the credential (or its encoding): the client's fault.
                e @ TpmError::Command { .. } => EngineError::bad(
                    "activation_failed",
                    format!("ActivateCredential refused the credential: {e}"),
                ),
                // The TPM gone or the daemon stopping is not the credential's fault: 503.
                other => EngineError::Tpm(other),
            })?;
        Ok(Secret {
            secret: b64(&secret),
        })
    }
}
