//! The TPM layer: the only code in Arbiter that talks to the TPM (the only importer of
//! `tss_esapi`).
//!
//! One owner thread holds the `Context` ([`device::Device`]); the rest of the daemon uses
//! the cloneable async [`Tpm`] handle, whose requests queue on a channel and run one at a
//! time (the TPM is serial anyway, and this gives one place to batch). The layer offers PCR
//! read and extend, the attestation key and quotes, the statement key and its
//! certification and signatures, the sealing NV index, random bytes and the EKs. It opens
//! the TPM by TCTI, works with no resource manager, and reopens the connection after the
//! TPM went away.
//!
//! Work a client's request causes directly (a cold `GET /v1/tpm`, a credential activation,
//! a Keylime quote) first takes a [`RequestPermit`]: at most `[limits]
//! max_tpm_requests_queued` such requests wait for or use the TPM at once, and one more is
//! refused with [`TpmError::Busy`] at once, so the daemon's own work (extends, attestation
//! quote batches, signatures, sealing), which never takes a permit, is never behind more
//! than that many of them.
//!
//! The TSS opens TPM connections without close-on-exec, so every process the daemon starts
//! is spawned with [`spawn_without_tpm`]: never while a TPM command is in flight, or the
//! child would keep swtpm's one connection and stall the TPM until it exits.

mod device;
pub mod error;
mod owner;
mod spawn_gate;
pub mod templates;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

use arbiter_policy::{ClockInfo, EcdsaSignature, PcrSelection, PcrValues, PolicyDigest, Public};
use tokio::sync::{mpsc, oneshot};
use zeroize::{Zeroize, Zeroizing};

pub use device::Device;
pub use error::TpmError;
pub use spawn_gate::spawn_without_tpm;

use crate::metrics::TpmMetrics;

/// Where the TPM is and which handles and PCRs Arbiter uses (the configuration's `[tpm]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TpmConfig {
    /// The TCTI: `device:/dev/tpmrm0`, `tabrmd`, `swtpm:host=127.0.0.1,port=2321`, ...
    pub tcti: String,
    /// The platform PCRs (SHA-256 bank), quoted and sealed to (docs/protocol.md).
    pub platform_pcrs: Vec<u8>,
    /// The application PCR that the measurement log extends (docs/protocol.md).
    pub application_pcr: u8,
    /// Persistent handle of the attestation key.
    pub ak_handle: u32,
    /// Persistent handle of the statement key.
    pub statement_key_handle: u32,
    /// NV index of the sealing index.
    pub sealing_nv_index: u32,
}

/// Default persistent handle of the attestation key.
pub const DEFAULT_AK_HANDLE: u32 = 0x8101_8023;
/// Default persistent handle of the statement key.
pub const DEFAULT_STATEMENT_KEY_HANDLE: u32 = 0x8101_8024;
/// Default NV index of the sealing index (in the owner's range).
pub const DEFAULT_SEALING_NV_INDEX: u32 = 0x0130_0023;
/// Default platform PCRs: firmware, boot loader, Secure Boot policy, kernel and initrd.
pub const DEFAULT_PLATFORM_PCRS: [u8; 5] = [0, 2, 4, 7, 9];
/// Default application PCR.
pub const DEFAULT_APPLICATION_PCR: u8 = 23;

impl Default for TpmConfig {
    fn default() -> Self {
        Self {
            tcti: "device:/dev/tpmrm0".into(),
            platform_pcrs: DEFAULT_PLATFORM_PCRS.to_vec(),
            application_pcr: DEFAULT_APPLICATION_PCR,
            ak_handle: DEFAULT_AK_HANDLE,
            statement_key_handle: DEFAULT_STATEMENT_KEY_HANDLE,
            sealing_nv_index: DEFAULT_SEALING_NV_INDEX,
        }
    }
}

impl TpmConfig {
    /// A configuration with default handles and PCRs for the TPM at `tcti`.
    pub fn with_tcti(tcti: impl Into<String>) -> Self {
        Self {
            tcti: tcti.into(),
            ..Self::default()
        }
    }

    /// Checks the PCR choices: valid indices, the application PCR outside the platform
    /// set, and a quoted selection under 8 PCRs.
    pub fn validate(&self) -> Result<(), TpmError> {
        self.quote_selection()?;
        if self.platform_pcrs.is_empty() {
            return Err(TpmError::Config("the platform PCR set is empty".into()));
        }
        if self.platform_pcrs.contains(&self.application_pcr) {
            return Err(TpmError::Config(format!(
                "the application PCR {} is also a platform PCR",
                self.application_pcr
            )));
        }
        if self.platform_pcrs.len() + 1 >= 8 {
            return Err(TpmError::Config(format!(
                "{} platform PCRs plus the application PCR make a quoted selection of 8 or \
                 more PCRs; keep it under 8",
                self.platform_pcrs.len()
            )));
        }
        Ok(())
    }

    /// The platform PCR selection.
    pub fn platform_selection(&self) -> Result<PcrSelection, TpmError> {
        Ok(PcrSelection::new(self.platform_pcrs.iter().copied())?)
    }

    /// The quoted selection: the platform PCRs plus the application PCR.
    pub fn quote_selection(&self) -> Result<PcrSelection, TpmError> {
        Ok(PcrSelection::new(
            self.platform_pcrs
                .iter()
                .copied()
                .chain([self.application_pcr]),
        )?)
    }
}

/// A key's public parts: handle, TPM2B_PUBLIC, parsed area and TPM name.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// The persistent handle.
    pub handle: u32,
    /// `TPM2B_PUBLIC` as the TPM marshals it.
    pub tpm2b_public: Vec<u8>,
    /// The parsed public area.
    pub public: Public,
    /// The TPM name (nameAlg || digest) as the TPM reports it.
    pub name: Vec<u8>,
}

impl KeyInfo {
    fn new(handle: u32, public: Public, name: Vec<u8>) -> Result<Self, TpmError> {
        if public.name() != name {
            return Err(TpmError::UnexpectedObject {
                object: "key",
                handle,
                reason: "the TPM's name differs from the name of its public area".into(),
            });
        }
        Ok(Self {
            handle,
            tpm2b_public: public.to_tpm2b(),
            public,
            name,
        })
    }

    /// The key as a PEM SubjectPublicKeyInfo.
    pub fn public_pem(&self) -> Result<String, TpmError> {
        Ok(self.public.public_key_pem()?)
    }
}

/// A TPM quote with the PCR values it covers.
#[derive(Debug, Clone)]
pub struct Quote {
    /// The marshalled `TPMS_ATTEST`, exactly as signed.
    pub attest: Vec<u8>,
    /// The marshalled `TPMT_SIGNATURE`.
    pub signature: Vec<u8>,
    /// The quoted PCR values (SHA-256 bank), read beside the quote and matching its digest.
    pub pcrs: PcrValues,
    /// The TPM's clock info from the quote (reset and restart counts).
    pub clock: ClockInfo,
}

/// A `TPM2_Certify` of one key by the attestation key.
#[derive(Debug, Clone)]
pub struct Certification {
    /// The marshalled `TPMS_ATTEST` (type certify).
    pub attest: Vec<u8>,
    /// The marshalled `TPMT_SIGNATURE` by the AK.
    pub signature: Vec<u8>,
}

/// The sealing index's public area as read from the TPM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealingIndex {
    /// The parsed `TPMS_NV_PUBLIC`.
    pub nv_public: arbiter_policy::NvPublic,
    /// `TPM2B_NV_PUBLIC`, the bytes published to verifiers.
    pub tpm2b_public: Vec<u8>,
    /// The index's TPM name, checked against the TPM's.
    pub name: Vec<u8>,
}

/// The content of the sealing index: the key that wraps secrets at rest and its epoch.
/// Zeroized on drop; never printed.
pub struct SealedKey {
    key: Zeroizing<[u8; 32]>,
    epoch: u64,
}

impl SealedKey {
    /// A fresh random key (OS CSPRNG) for `epoch`.
    pub fn generate(epoch: u64) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::fill(&mut key[..]);
        Self { key, epoch }
    }

    /// A second copy (also zeroized on drop), for handing one to the TPM while the other
    /// stays in memory.
    pub fn duplicate(&self) -> Self {
        Self {
            key: Zeroizing::new(*self.key),
            epoch: self.epoch,
        }
    }

    /// The wrapping key.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The epoch, incremented by every rotation.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// `key || epoch (u64 big-endian)`, the index's 40 bytes.
    fn to_bytes(&self) -> Zeroizing<[u8; 40]> {
        let mut out = Zeroizing::new([0u8; 40]);
        out[..32].copy_from_slice(&self.key[..]);
        out[32..].copy_from_slice(&self.epoch.to_be_bytes());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 40 {
            return None;
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&bytes[..32]);
        let mut epoch = [0u8; 8];
        epoch.copy_from_slice(&bytes[32..]);
        Some(Self {
            key,
            epoch: u64::from_be_bytes(epoch),
        })
    }
}

impl std::fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedKey")
            .field("key", &"<redacted>")
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl Drop for SealedKey {
    fn drop(&mut self) {
        self.epoch.zeroize();
    }
}

/// The algorithm of an endorsement key (the TCG EK credential profile's templates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EkAlgorithm {
    /// RSA-2048, template L-1 (SHA-256, AES-128-CFB).
    Rsa2048,
    /// ECC NIST P-384, template H-3 (SHA-384, AES-256-CFB).
    EccNistP384,
}

impl EkAlgorithm {
    /// The TCG NV index of this EK's certificate.
    pub fn certificate_index(self) -> u32 {
        match self {
            Self::Rsa2048 => 0x01c0_0002,
            Self::EccNistP384 => 0x01c0_0016,
        }
    }

    /// The name used in the API (docs/protocol.md): `rsa2048` or `ecc_nist_p384`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rsa2048 => "rsa2048",
            Self::EccNistP384 => "ecc_nist_p384",
        }
    }
}

/// An endorsement key's public area and certificate.
#[derive(Debug, Clone)]
pub struct EndorsementKey {
    /// Its algorithm.
    pub alg: EkAlgorithm,
    /// `TPM2B_PUBLIC` of the EK created from the TCG default template.
    pub tpm2b_public: Vec<u8>,
    /// The EK certificate (DER) from its TCG NV index, when present.
    pub cert_der: Option<Vec<u8>>,
}

type Job = Box<dyn FnOnce(&mut owner::Slot) + Send>;

/// Default of `[limits] max_tpm_requests_queued`.
pub const DEFAULT_MAX_TPM_REQUESTS: usize = 4;

/// The cloneable async handle to the TPM owner thread.
#[derive(Clone, Debug)]
pub struct Tpm {
    jobs: mpsc::UnboundedSender<Job>,
    config: TpmConfig,
    metrics: TpmMetrics,
    requests: Arc<Requests>,
    epoch: Arc<AtomicU64>,
}

/// The admission of request-driven TPM work: how many requests hold a permit, and how many
/// may.
#[derive(Debug)]
struct Requests {
    admitted: AtomicUsize,
    limit: AtomicUsize,
}

/// A client request's turn at the TPM (see [`Tpm::admit_request`]); released on drop.
#[derive(Debug)]
pub struct RequestPermit {
    requests: Arc<Requests>,
}

impl Drop for RequestPermit {
    fn drop(&mut self) {
        self.requests.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Tpm {
    /// Opens the TPM (failing with an actionable message when it cannot), makes sure the
    /// attestation key exists, and starts the owner thread.
    pub fn open(config: TpmConfig) -> Result<Self, TpmError> {
        let device = {
            let _open = spawn_gate::connections_may_open();
            Device::open(&config)?
        };
        let (jobs, rx) = mpsc::unbounded_channel();
        let epoch = Arc::new(AtomicU64::new(0));
        let slot = owner::Slot::new(config.clone(), device, Arc::clone(&epoch));
        thread::Builder::new()
            .name("tpm-owner".into())
            .spawn(move || owner::run(slot, rx))
            .map_err(|e| TpmError::Config(format!("cannot start the TPM owner thread: {e}")))?;
        Ok(Self {
            jobs,
            config,
            metrics: TpmMetrics::default(),
            requests: Arc::new(Requests {
                admitted: AtomicUsize::new(0),
                limit: AtomicUsize::new(DEFAULT_MAX_TPM_REQUESTS),
            }),
            epoch,
        })
    }

    /// Sets how many client requests may wait for or use the TPM at once (`[limits]
    /// max_tpm_requests_queued`, at least 1).
    pub fn set_request_limit(&self, limit: usize) {
        self.requests.limit.store(limit.max(1), Ordering::Release);
    }

    /// Admits one client request's TPM work, or refuses it with [`TpmError::Busy`] (counted
    /// in the metrics) when the limit's worth of requests already hold a permit. Hold the
    /// permit across every TPM call the request makes.
    pub fn admit_request(&self) -> Result<RequestPermit, TpmError> {
        let limit = self.requests.limit.load(Ordering::Acquire);
        let admitted =
            self.requests
                .admitted
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < limit).then_some(n + 1)
                });
        match admitted {
            Ok(_) => Ok(RequestPermit {
                requests: Arc::clone(&self.requests),
            }),
            Err(_) => {
                self.metrics.refused();
                Err(TpmError::Busy { limit })
            }
        }
    }

    /// Changes whenever what the TPM layer sees may have changed under a cached answer: a
    /// new connection to the TPM (after it went away) or the statement key created. Read
    /// without a TPM command.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The command latencies and queue depth of this TPM (shared by every clone).
    pub(crate) fn metrics(&self) -> &TpmMetrics {
        &self.metrics
    }

    /// The configuration the TPM was opened with.
    pub fn config(&self) -> &TpmConfig {
        &self.config
    }

    /// Runs `f` on the owner thread with the open device (reopening it first if the
    /// connection was lost) and returns its result. Every typed method below is one call,
    /// named `command` in the metrics and the debug log.
    pub async fn run<T: Send + 'static>(
        &self,
        command: &'static str,
        f: impl FnOnce(&mut Device) -> Result<T, TpmError> + Send + 'static,
    ) -> Result<T, TpmError> {
        let (tx, rx) = oneshot::channel();
        let metrics = self.metrics.clone();
        let job: Job = Box::new(move |slot| {
            metrics.dequeued();
            let started = Instant::now();
            let result = slot.with_device(f);
            let took = started.elapsed();
            metrics.ran(command, took);
            tracing::debug!(
                tpm_command = command,
                duration_ms = took.as_secs_f64() * 1e3,
                ok = result.is_ok(),
                "TPM command"
            );
            // The caller may have gone away (cancelled request); nothing to tell then.
            let _ = tx.send(result);
        });
        self.metrics.queued();
        if self.jobs.send(job).is_err() {
            self.metrics.dequeued();
            return Err(TpmError::Stopped);
        }
        rx.await.map_err(|_| TpmError::Stopped)?
    }

    /// The attestation key.
    pub async fn attestation_key(&self) -> Result<KeyInfo, TpmError> {
        self.run("attestation_key", |d| d.attestation_key().cloned())
            .await
    }

    /// Reads PCRs of the SHA-256 bank.
    pub async fn pcr_read(&self, selection: PcrSelection) -> Result<PcrValues, TpmError> {
        self.run("pcr_read", move |d| d.pcr_read(&selection)).await
    }

    /// Extends a SHA-256 PCR with a digest.
    pub async fn pcr_extend(&self, pcr: u8, digest: [u8; 32]) -> Result<(), TpmError> {
        self.run("pcr_extend", move |d| d.pcr_extend(pcr, &digest))
            .await
    }

    /// Quotes a selection over qualifying data (at most 64 bytes), checked against the PCR
    /// values read beside it.
    pub async fn quote(
        &self,
        selection: PcrSelection,
        qualifying_data: Vec<u8>,
    ) -> Result<Quote, TpmError> {
        self.run("quote", move |d| d.quote(&selection, &qualifying_data))
            .await
    }

    /// Resets a PCR (`TPM2_PCR_Reset`; PCR 16 and 23 from locality 0).
    pub async fn pcr_reset(&self, pcr: u8) -> Result<(), TpmError> {
        self.run("pcr_reset", move |d| d.pcr_reset(pcr)).await
    }

    /// Quotes `selection` over `qualifying_data` after making `bind_pcr` hold
    /// SHA-256(0^32 || `bind_digest`) (reset and extended if it does not, e.g. after a TPM
    /// startup), in one job: no other command runs between the two. Returns the quote and
    /// whether the PCR had to be set.
    pub async fn quote_bound(
        &self,
        selection: PcrSelection,
        qualifying_data: Vec<u8>,
        bind_pcr: u8,
        bind_digest: [u8; 32],
    ) -> Result<(Quote, bool), TpmError> {
        self.run("quote_bound", move |d| {
            let rebound = d.bind_pcr(bind_pcr, &bind_digest)?;
            Ok((d.quote(&selection, &qualifying_data)?, rebound))
        })
        .await
    }

    /// The TPM's clock info (reset and restart counts) from a fresh quote.
    pub async fn clock(&self) -> Result<ClockInfo, TpmError> {
        self.run("clock", |d| Ok(d.clock()?.clock_info)).await
    }

    /// Random bytes from the TPM.
    pub async fn random(&self, n: usize) -> Result<Vec<u8>, TpmError> {
        self.run("random", move |d| d.random(n)).await
    }

    /// Makes sure the statement key exists and is bound to the current platform state.
    pub async fn ensure_statement_key(&self) -> Result<KeyInfo, TpmError> {
        self.run("ensure_statement_key", |d| d.ensure_statement_key())
            .await
    }

    /// The sealing index's public area, checked except for the platform PCR values its
    /// policy is bound to (see [`Device::sealing_index_as_is`]); `None` if not defined.
    pub async fn sealing_index_as_is(&self) -> Result<Option<SealingIndex>, TpmError> {
        self.run("sealing_index_as_is", |d| d.sealing_index_as_is())
            .await
    }

    /// The existing statement key even when bound to other platform PCR values (see
    /// [`Device::statement_key_as_is`]).
    pub async fn statement_key_as_is(&self) -> Result<KeyInfo, TpmError> {
        self.run("statement_key_as_is", |d| d.statement_key_as_is())
            .await
    }

    /// The existing statement key even when bound to other platform PCR values (a degraded
    /// daemon publishes it; the TPM refuses its signatures), with its certification by the
    /// AK over `qualifying_data`.
    pub async fn certify_statement_key_as_is(
        &self,
        qualifying_data: Vec<u8>,
    ) -> Result<(KeyInfo, Certification), TpmError> {
        self.run("certify_statement_key_as_is", move |d| {
            let key = d.statement_key_as_is()?;
            let certification = d.certify_statement_key(&qualifying_data)?;
            Ok((key, certification))
        })
        .await
    }

    /// The statement key's expected policy for the current platform PCR values.
    pub async fn statement_key_policy(&self) -> Result<PolicyDigest, TpmError> {
        self.run("statement_key_policy", |d| d.statement_key_policy())
            .await
    }

    /// Certifies the statement key with the attestation key.
    pub async fn certify_statement_key(
        &self,
        qualifying_data: Vec<u8>,
    ) -> Result<Certification, TpmError> {
        self.run("certify_statement_key", move |d| {
            d.certify_statement_key(&qualifying_data)
        })
        .await
    }

    /// Signs a SHA-256 digest with the statement key (only in the attested platform state).
    pub async fn sign(&self, digest: [u8; 32]) -> Result<EcdsaSignature, TpmError> {
        self.run("sign", move |d| d.sign(&digest)).await
    }

    /// The sealing index's public area, checked; `None` if not defined.
    pub async fn sealing_index(&self) -> Result<Option<SealingIndex>, TpmError> {
        self.run("sealing_index", |d| d.sealing_index()).await
    }

    /// Deletes the sealing index (owner authorization): everything wrapped under its key
    /// becomes unrecoverable. Only for an authorized upgrade (docs/appliance.md).
    pub async fn undefine_sealing_index(&self) -> Result<(), TpmError> {
        self.run("undefine_sealing_index", |d| d.undefine_sealing_index())
            .await
    }

    /// Removes the persistent statement key, if there is one (owner authorization), so the
    /// next [`Tpm::ensure_statement_key`] creates one bound to the current platform state.
    /// Only for an authorized upgrade (docs/appliance.md).
    pub async fn evict_statement_key(&self) -> Result<(), TpmError> {
        self.run("evict_statement_key", |d| d.evict_statement_key())
            .await
    }

    /// Defines the sealing index and writes its first key.
    pub async fn define_sealing_index(&self, initial: SealedKey) -> Result<SealingIndex, TpmError> {
        self.run("define_sealing_index", move |d| {
            d.define_sealing_index(&initial)
        })
        .await
    }

    /// Reads the sealing key (salted, encrypted policy session).
    pub async fn read_sealing_key(&self) -> Result<SealedKey, TpmError> {
        self.run("read_sealing_key", |d| d.read_sealing_key()).await
    }

    /// Writes a new sealing key (salted, encrypted policy session): a rotation.
    pub async fn write_sealing_key(&self, sealed: SealedKey) -> Result<(), TpmError> {
        self.run("write_sealing_key", move |d| d.write_sealing_key(&sealed))
            .await
    }

    /// `TPM2_ActivateCredential` with the AK and the EK of `alg`.
    pub async fn activate_credential(
        &self,
        alg: EkAlgorithm,
        credential_blob: Vec<u8>,
        encrypted_secret: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        self.run("activate_credential", move |d| {
            d.activate_credential(alg, &credential_blob, &encrypted_secret)
        })
        .await
    }

    /// The endorsement keys and their certificates.
    pub async fn endorsement_keys(&self) -> Result<Vec<EndorsementKey>, TpmError> {
        self.run("endorsement_keys", |d| d.endorsement_keys()).await
    }

    /// How many transient objects and sessions are loaded in the TPM now, besides the
    /// policy session kept for signatures.
    pub async fn loaded_handles(&self) -> Result<usize, TpmError> {
        self.run("loaded_handles", |d| d.loaded_handles()).await
    }

    /// How many policy sessions the current connection started (signatures share one).
    pub async fn policy_sessions_started(&self) -> Result<u64, TpmError> {
        self.run("policy_sessions_started", |d| {
            Ok(d.policy_sessions_started())
        })
        .await
    }
}
