//! The engine: every decision of the computation lifecycle (docs/architecture.md) — who may do
//! what, when inputs are accepted, when evaluation runs, who reads what — carried out through the
//! store, the keys, the evaluator and the TPM. The API only translates HTTP to these calls.

mod attestation;
mod caches;
mod destruction;
mod error;
mod evaluation;
mod functions;
mod hooks;
pub mod input_limits;
mod inputs;
mod instances;
mod results;
mod statements;
pub(crate) mod upgrade;

use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use rustls::ServerConfig;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Semaphore, broadcast};

pub use arbiter_proto::api::{
    CreateInstance, CreatedInstance, FunctionDetail, FunctionSummary, InputReceipt,
    InstanceDescription, RegisterFunction, ResultView, SlotStatus, SubmitInput,
};
pub use error::{EngineError, StartError};
#[cfg(feature = "failpoints")]
pub use hooks::Pause;

use crate::config::Config;
use crate::eval::Evaluator;
use crate::keys::Sealer;
use crate::lock::StateLock;
use crate::logging::{clip, status_line};
use crate::measure::{LiveSource, Measurer, StartFacts};
use crate::metrics::Metrics;
use crate::store::{Store, queries};
use crate::tls::TlsIdentity;
use crate::tpm::{SealedKey, Tpm, TpmError};
use arbiter_measured_boot::cel::{self, EventContent};
use arbiter_proto::InstanceState;

/// The running daemon's state.
pub struct Engine {
    /// Replaced whole by [`Engine::reload`]; readers take the current one per request.
    config: RwLock<Arc<Config>>,
    store: Store,
    tpm: Tpm,
    /// The sealing key; `None` in a degraded start (see [`Engine::sealing_unavailable`]).
    sealer: RwLock<Option<Sealer>>,
    /// Why the sealing key could not be read at start (the platform state does not satisfy
    /// its policy): the daemon serves only `/healthz`, attestation and the TPM's public
    /// parts, and refuses everything that needs a secret with this reason (docs/protocol.md).
    sealing_unavailable: Option<String>,
    /// The last sealing epoch the store was written under, reported by attestations while
    /// the sealing index cannot be read (0 otherwise: the sealer knows the epoch then).
    last_epoch: u64,
    /// Where the firmware event log served with attestations is read from.
    firmware_log: PathBuf,
    tls: TlsIdentity,
    tls_config: Arc<ServerConfig>,
    tls_spki: String,
    statement_key_kid: String,
    evaluator: Evaluator,
    measurer: Measurer,
    batcher: attestation::Batcher,
    /// The `GET /v1/tpm` answer, kept while what it describes holds.
    tpm_info_cache: attestation::TpmInfoCache,
    /// Each open instance's derived HPKE key, so a submission does not derive it again.
    instance_keys: caches::InstanceKeys,
    /// Each instance's parsed manifest, so a request does not parse and validate it again.
    manifests: caches::Manifests,
    /// Each live instance's destruction policy, for the deadline check.
    destruction_policies: caches::DestructionPolicies,
    /// Held shared while a new wrapping is written, exclusively during a key rotation.
    rotation: tokio::sync::RwLock<()>,
    /// One destruction (or epoch reset) at a time.
    destroy_lock: tokio::sync::Mutex<()>,
    /// Instances whose secrets did not open at start (a restored old copy).
    unrecoverable: std::sync::Mutex<Vec<String>>,
    evaluations: Arc<Semaphore>,
    events: broadcast::Sender<String>,
    metrics: Metrics,
    /// The state directory's lock, held until [`Engine::shutdown`].
    lock: std::sync::Mutex<Option<StateLock>>,
    /// Set by `shutdown`: background loops stop.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Test-only pause points (feature `failpoints`; empty otherwise).
    pauses: hooks::PausePoints,
    /// Evaluations whose evaluator did not start, and the backoff of their retries.
    spawn_retries: std::sync::Mutex<evaluation::SpawnRetries>,
    /// Wakes the retry task when an evaluation is queued for a retry.
    retry_wake: tokio::sync::Notify,
    /// The ids of the library functions this build ships and `[library]` enables: the
    /// library functions listed and offered to new instances (docs/functions.md).
    library: Vec<String>,
    /// The fleet revocation (Keylime's verifier said this appliance failed), kept in the
    /// state directory until an operator clears it (docs/fleet.md).
    fleet_revocation: crate::keylime::revocation::RevocationState,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("state_dir", &self.config().state_dir)
            .finish_non_exhaustive()
    }
}

/// The executable's SHA-256 from the blocking task that computes it.
async fn joined_hash(
    task: tokio::task::JoinHandle<Result<[u8; 32], crate::measure::MeasureError>>,
) -> Result<[u8; 32], StartError> {
    Ok(task
        .await
        .map_err(|e| StartError::Other(format!("hashing the executable: {e}")))??)
}

/// The current time, RFC 3339 UTC with `Z`, whole seconds.
pub(crate) fn now() -> String {
    format_time(OffsetDateTime::now_utc())
}

pub(crate) fn format_time(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// A new id: 128 random bits as 32 lowercase hex characters (docs/protocol.md, encodings).
pub(crate) fn new_id() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    hex::encode(b)
}

/// A value read from the store (or made by the engine) as its wire type: one that does not
/// parse is the engine's fault, never the caller's.
pub(crate) fn stored<T>(text: &str) -> Result<T, EngineError>
where
    T: std::str::FromStr<Err = arbiter_proto::ProtoError>,
{
    text.parse()
        .map_err(|e| EngineError::Internal(format!("a stored value: {e}")))
}

/// Whether `s` looks like an id (so malformed ids are refused before any lookup).
pub(crate) fn is_id(s: &str) -> bool {
    s.parse::<arbiter_proto::InstanceId>().is_ok()
}

impl Engine {
    /// Opens the store and the TPM, unseals the sealing key (defining the sealing index on
    /// first start), checks the measurement log against the TPM, and loads or creates the TLS
    /// identity. A start refused by the log check writes nothing: a new TLS key (when the
    /// stored one does not open) is stored and measured only after the check passed.
    /// Interrupted evaluations resume in the background once serving
    /// ([`Engine::spawn_background`]), never here: start must stay short.
    ///
    /// When the platform state does not satisfy the sealing index's policy (a changed boot
    /// chain), the start is *degraded* instead ([`Engine::sealing_unavailable`]): nothing is
    /// unsealed and nothing is written — no `daemon_started`, no TLS key stored or measured
    /// (the daemon serves an ephemeral in-memory TLS key unless one is configured).
    pub async fn start_locked(config: Config, lock: StateLock) -> Result<Self, StartError> {
        config
            .validate()
            .map_err(|e| StartError::Other(e.to_string()))?;
        // Hashing the executable reads all of it (about 0.1 s for a build with line tables):
        // on another core while the store and the TPM are set up.
        let executable = tokio::task::spawn_blocking(crate::measure::executable_sha256);
        let store = Store::open(&config.state_dir)?;
        let tpm_config = config.tpm_config();
        status_line(&format!("opening the TPM ({})", config.tpm.tcti));
        let tpm = tokio::task::spawn_blocking(move || Tpm::open(tpm_config))
            .await
            .map_err(|e| StartError::Other(format!("opening the TPM: {e}")))??;
        tpm.set_request_limit(config.limits.max_tpm_requests_queued);
        // Both are bound to the sealed platform state: in another one the statement key is
        // refused here, and the sealing index below decides whether the start is degraded.
        let statement_key = tpm.ensure_statement_key().await;
        let sealing = match tpm.sealing_index().await {
            Ok(Some(index)) => index,
            Ok(None) => tpm.define_sealing_index(SealedKey::generate(0)).await?,
            // Bound to other platform PCR values: the read below says why (degraded).
            Err(e) => match tpm.sealing_index_as_is().await {
                Ok(Some(index)) => index,
                _ => return Err(e.into()),
            },
        };
        let sealed = tpm.read_sealing_key().await;
        let statement_key = match (statement_key, &sealed) {
            (Ok(key), _) => key,
            (
                Err(TpmError::PolicyNotSatisfied { .. }),
                Err(TpmError::PolicyNotSatisfied { .. }),
            ) => tpm.statement_key_as_is().await?,
            (Err(e), _) => return Err(e.into()),
        };
        let sealer = match sealed {
            Ok(key) => Sealer::new(key),
            Err(e @ TpmError::PolicyNotSatisfied { .. }) => {
                // An operator authorized an upgrade: seal afresh in this new state.
                let mut reason = degraded_reason(&e);
                match upgrade::reprovision_if_authorized(&config.state_dir, &store, &tpm).await? {
                    upgrade::Reprovision::Done => {
                        drop((store, tpm));
                        return Box::pin(Self::start_locked(config, lock)).await;
                    }
                    upgrade::Reprovision::NotAuthorized => {}
                    upgrade::Reprovision::Refused(why) => reason = format!("{reason}; {why}"),
                }
                let facts = StartFacts {
                    platform_pcrs: config.tpm.platform_pcrs.clone(),
                    sealing_nv_public: sealing.tpm2b_public.clone(),
                    sealing_nv_name: sealing.name.clone(),
                    statement_key_name: statement_key.name.clone(),
                    executable_sha256: joined_hash(executable).await?,
                };
                return Self::start_degraded(config, lock, store, tpm, facts, reason).await;
            }
            Err(e) => return Err(e.into()),
        };
        let (tls, new_tls) = load_tls(&config, &store, &sealer).await?;
        let facts = StartFacts {
            platform_pcrs: config.tpm.platform_pcrs.clone(),
            sealing_nv_public: sealing.tpm2b_public.clone(),
            sealing_nv_name: sealing.name.clone(),
            statement_key_name: statement_key.name.clone(),
            executable_sha256: joined_hash(executable).await?,
        };
        let library =
            crate::library::enabled(&config.library.disabled).map_err(StartError::Other)?;
        let library_ids: Vec<String> = library.iter().map(|f| f.id.clone()).collect();
        status_line("checking the measurement log against PCR 23");
        let (measurer, _) = Measurer::open(
            &config.state_dir.join("measurements"),
            tpm.clone(),
            facts,
            live_source(&store, library_ids),
        )
        .await?;
        // The log check passed: only now may a new TLS key be stored (and, replacing one,
        // measured). A crash between the two leaves the old wrapping, which still does not
        // open: the next start generates and measures another key.
        if let Some(new_tls) = new_tls {
            let replaced = store_tls(&store, &sealer, &tls, new_tls).await?;
            if replaced {
                let spki = tls.spki_sha256_hex()?;
                let measured = measurer
                    .measure(EventContent::TlsKeyReplaced(cel::TlsKeyReplaced {
                        tls_spki_sha256: cel::Sha256Digest(hex_array(&spki)),
                    }))
                    .await;
                if let Err(e) = measured {
                    // The new key is stored but not measured: drop its wrapping, so the
                    // next start replaces it again and measures that one.
                    store.write(|c| queries::delete_wrapped(c, "tls")).await?;
                    return Err(e.into());
                }
            }
        }
        // The shipped library, before serving (and so before READY): what is not yet stored
        // is measured and stored; what is was measured in this generation already.
        status_line("registering the function library");
        let registered = functions::register_library(&store, &measurer, &library).await?;
        tracing::info!(
            event = "library_registered",
            enabled = library.len(),
            newly_registered = registered,
            disabled = %clip(&config.library.disabled.join(", ")),
            "function library: {} enabled, {registered} newly registered and measured",
            library.len()
        );
        let engine = Self::assemble(
            config,
            lock,
            store,
            tpm,
            Some(sealer),
            None,
            0,
            tls,
            &statement_key.name,
            measurer,
        )?;
        let lost = engine.find_unrecoverable().await?;
        if !lost.is_empty() {
            tracing::warn!(
                event = "instances_unrecoverable",
                count = lost.len(),
                instances = %clip(&lost.join(", ")),
                "instances are unrecoverable (their secrets' wrappings do not open under the \
                 sealing key: a restored old copy?). New instances are refused until an \
                 operator runs an epoch reset (POST /v1/admin/epoch-reset)"
            );
        }
        *engine
            .unrecoverable
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = lost;
        Ok(engine)
    }

    /// The degraded start of [`Engine::start_locked`]: the measurement log opened read-only,
    /// the configured TLS identity or an ephemeral one (never stored nor measured: storing
    /// it would need the sealing key, measuring it would extend PCR 23), no sealer.
    async fn start_degraded(
        config: Config,
        lock: StateLock,
        store: Store,
        tpm: Tpm,
        facts: StartFacts,
        reason: String,
    ) -> Result<Self, StartError> {
        tracing::warn!(
            event = "degraded",
            reason = %clip(&reason),
            "DEGRADED: serving only /healthz, attestation and the TPM's public parts"
        );
        let statement_key_name = facts.statement_key_name.clone();
        let library_ids = crate::library::enabled(&config.library.disabled)
            .map_err(StartError::Other)?
            .into_iter()
            .map(|f| f.id)
            .collect();
        let measurer = Measurer::open_read_only(
            &config.state_dir.join("measurements"),
            tpm.clone(),
            facts,
            live_source(&store, library_ids),
        )
        .await?;
        let tls = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => TlsIdentity::from_pem_files(cert, key)?,
            _ => TlsIdentity::generate()?,
        };
        let last_epoch = store.read(queries::latest_wrapped_epoch).await?;
        Self::assemble(
            config,
            lock,
            store,
            tpm,
            None,
            Some(reason),
            last_epoch,
            tls,
            &statement_key_name,
            measurer,
        )
    }

    /// Builds the engine from what a start opened.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        config: Config,
        lock: StateLock,
        store: Store,
        tpm: Tpm,
        sealer: Option<Sealer>,
        sealing_unavailable: Option<String>,
        last_epoch: u64,
        tls: TlsIdentity,
        statement_key_name: &[u8],
        measurer: Measurer,
    ) -> Result<Self, StartError> {
        let tls_config = tls.server_config()?;
        let statement_key_kid = hex::encode(statement_key_name);
        let tls_spki = tls.spki_sha256_hex()?;
        let program = match &config.evaluator {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|e| {
                StartError::Other(format!("locating arbiterd for evaluations: {e}"))
            })?,
        };
        let (events, _) = broadcast::channel(256);
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        let firmware_log = config
            .attestation
            .firmware_log_source(credentials.as_deref());
        let metrics = Metrics::new(tpm.metrics(), store.metrics());
        let fleet_revocation = crate::keylime::revocation::RevocationState::load(&config.state_dir)
            .map_err(StartError::Other)?;
        if let Some(r) = fleet_revocation.current() {
            tracing::warn!(
                event = "keylime_revoked",
                source = %r.source,
                reason = %clip(&r.reason),
                "revoked by the fleet verifier (kept from {}): degraded until an operator clears it",
                r.since
            );
        }
        let library = crate::library::enabled(&config.library.disabled)
            .map_err(StartError::Other)?
            .into_iter()
            .map(|f| f.id)
            .collect();
        Ok(Self {
            library,
            fleet_revocation,
            evaluations: Arc::new(Semaphore::new(config.limits.max_concurrent_evaluations)),
            config: RwLock::new(Arc::new(config)),
            store,
            tpm,
            sealer: RwLock::new(sealer),
            sealing_unavailable,
            last_epoch,
            firmware_log,
            tls,
            tls_config,
            tls_spki,
            statement_key_kid,
            evaluator: Evaluator::new(program),
            measurer,
            batcher: attestation::Batcher::default(),
            tpm_info_cache: attestation::TpmInfoCache::default(),
            instance_keys: caches::InstanceKeys::default(),
            manifests: caches::Manifests::default(),
            destruction_policies: caches::DestructionPolicies::default(),
            rotation: tokio::sync::RwLock::new(()),
            destroy_lock: tokio::sync::Mutex::new(()),
            unrecoverable: std::sync::Mutex::new(Vec::new()),
            events,
            metrics,
            lock: std::sync::Mutex::new(Some(lock)),
            stopping: tokio::sync::watch::Sender::new(false),
            pauses: hooks::PausePoints::default(),
            spawn_retries: std::sync::Mutex::default(),
            retry_wake: tokio::sync::Notify::new(),
        })
    }

    /// The rustls configuration serving the API.
    pub fn tls_server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.tls_config)
    }

    /// The SHA-256 (hex) of the TLS certificate's SPKI.
    pub fn tls_spki_sha256(&self) -> &str {
        &self.tls_spki
    }

    /// The TLS certificate (PEM).
    pub fn tls_cert_pem(&self) -> String {
        self.tls.leaf_pem()
    }

    /// The configuration in force (a reload replaces it; a request keeps the one it took).
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Applies a re-read configuration (SIGHUP) when it changes only what is read per
    /// request ([`Config::reloadable`]: the `[access]` lists, some `[limits]`), returning the
    /// keys that changed; refuses, keeping the configuration in force, when it changes
    /// anything else, naming those keys (they need a restart).
    pub fn reload(&self, new: Config) -> Result<Vec<String>, Vec<String>> {
        let mut current = self.config.write().unwrap_or_else(|p| p.into_inner());
        let changed = current.changed_keys(&new);
        let fixed: Vec<String> = changed
            .iter()
            .filter(|k| !Config::reloadable(k))
            .cloned()
            .collect();
        if !fixed.is_empty() {
            return Err(fixed);
        }
        *current = Arc::new(new);
        Ok(changed)
    }

    /// The metrics registry and the engine's own metrics.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The TPM handle.
    pub fn tpm(&self) -> &Tpm {
        &self.tpm
    }

    /// Records a refused TLS handshake (logged without secrets).
    pub fn note_rejected_handshake(&self, peer: &str, reason: &str) {
        self.metrics.handshakes_refused.inc();
        tracing::info!(
            event = "handshake_refused",
            peer,
            reason = %clip(reason),
            "refused TLS handshake"
        );
    }

    /// Records a connection closed at once because its address holds its share.
    pub fn note_rejected_connection(&self, peer: &str) {
        // One line per refusal would let a flood fill the journal: log every 1,000th.
        let n = self.metrics.connections_refused.inc() + 1;
        if n % 1000 == 1 {
            tracing::warn!(
                event = "connection_refused",
                peer,
                refused_so_far = n,
                "refused a connection: its address holds its share of connections"
            );
        }
    }

    /// Logs a refused request: who, what, why (never secrets).
    pub fn note_refused(&self, identity: &str, what: &str, why: &str) {
        tracing::info!(
            event = "request_refused",
            identity,
            request = %clip(what),
            reason = %clip(why),
            "refused a request"
        );
    }

    /// The sealing key, or — in a degraded start — the refusal naming why there is none.
    fn sealer(&self) -> Result<SealerGuard<'_>, EngineError> {
        let guard = self.sealer.read().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            return Err(self.sealing_refusal());
        }
        Ok(SealerGuard(guard))
    }

    /// Why the sealing key could not be read at start, when it could not: the daemon is
    /// degraded and refuses everything that needs a secret (docs/protocol.md).
    pub fn sealing_unavailable(&self) -> Option<&str> {
        self.sealing_unavailable.as_deref()
    }

    /// The error refusing a request that needs a secret in a degraded start.
    pub(crate) fn sealing_refusal(&self) -> EngineError {
        EngineError::SealingUnavailable(
            self.sealing_unavailable
                .clone()
                .unwrap_or_else(|| "the sealing key is not available".into()),
        )
    }

    /// Stops background work and releases the state directory; called once serving has
    /// ended. Another engine may then start on the same state.
    pub async fn shutdown(&self) {
        self.stopping.send_replace(true);
        // Evaluations in flight finish or are killed at their deadline; waiting for the
        // permits bounds the wait by the longest evaluation.
        let all =
            u32::try_from(self.config().limits.max_concurrent_evaluations).unwrap_or(u32::MAX);
        let _ = self.evaluations.acquire_many(all).await;
        // No evaluation starts after this (a queued retry would otherwise slip through).
        self.evaluations.close();
        // Nothing of this engine touches the state files after this.
        self.store.close().await;
        self.lock.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Resolves once [`Engine::shutdown`] began (at once if it has).
    pub(crate) async fn stopped(&self) {
        let mut rx = self.stopping.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// What keeps the daemon from working fully now, in words for an operator (empty when
    /// nothing does); `/healthz` reports the daemon `degraded` with these reasons.
    pub fn degraded(&self) -> Vec<String> {
        self.sealing_unavailable
            .clone()
            .into_iter()
            .chain(self.fleet_revoked().map(|r| fleet_revoked_reason(&r)))
            .chain(self.evaluator_degraded())
            .chain(self.measurer.divergence())
            .collect()
    }

    /// The fleet revocation state (docs/fleet.md).
    pub fn fleet_revocation(&self) -> &crate::keylime::revocation::RevocationState {
        &self.fleet_revocation
    }

    /// The fleet revocation in force, if any.
    pub fn fleet_revoked(&self) -> Option<crate::keylime::revocation::Revoked> {
        self.fleet_revocation.current()
    }

    /// The error refusing a request while the fleet revocation is in force.
    pub(crate) fn fleet_refusal(&self) -> Option<EngineError> {
        self.fleet_revoked()
            .map(|r| EngineError::FleetRevoked(fleet_revoked_reason(&r)))
    }

    /// The firmware event log served with attestations, when there is one.
    pub(crate) fn firmware_log(&self) -> Option<Vec<u8>> {
        std::fs::read(&self.firmware_log)
            .ok()
            .and_then(crate::config::firmware_log_content)
    }

    /// Instances found unrecoverable at start (until an epoch reset).
    pub fn unrecoverable(&self) -> Vec<String> {
        self.unrecoverable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Instances by state, for metrics.
    pub async fn instance_counts(&self) -> Result<Vec<(String, u64)>, EngineError> {
        Ok(self.store.read(queries::instance_counts).await?)
    }

    /// Store database path (for diagnostics).
    pub fn database(&self) -> PathBuf {
        self.store.path().to_owned()
    }
}

/// Decodes 64 hex characters (validated upstream) into 32 bytes; zeros if malformed.
pub(crate) fn hex_array<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let _ = hex::decode_to_slice(s, &mut out);
    out
}

/// The measurement-log id of an id string.
pub(crate) fn cel_id(id: &str) -> cel::Id {
    cel::Id(hex_array(id))
}

/// What is live, to re-measure when a new log generation starts: every registered
/// function offered (of the library's, those `library` — the enabled ids — names) or used
/// by a live instance, then every instance not destroyed, in creation order.
pub(crate) async fn live_measurements(
    store: &Store,
    library: &[String],
) -> Result<Vec<EventContent>, crate::store::StoreError> {
    let library = library.to_vec();
    store
        .read(move |c| -> Result<_, crate::store::StoreError> {
            let instances = queries::instances_in_states(c, &InstanceState::LIVE)?;
            let mut out = Vec::new();
            for f in queries::list_functions(c)? {
                if functions::offered(&f, &library)
                    || instances.iter().any(|i| i.function_id == f.id)
                {
                    out.push(functions::loaded(&f.id, &f.name, &f.sha256));
                }
            }
            for i in &instances {
                out.push(instance_created(&i.id, &i.manifest_sha256, &i.public_key));
            }
            Ok(out)
        })
        .await
}

/// [`live_measurements`] as the measurer asks for it whenever it starts a new generation.
fn live_source(store: &Store, library: Vec<String>) -> LiveSource {
    let store = store.clone();
    let library = Arc::new(library);
    Box::new(move || {
        let store = store.clone();
        let library = Arc::clone(&library);
        Box::pin(async move {
            live_measurements(&store, &library)
                .await
                .map_err(|e| e.to_string())
        })
    })
}

/// The `instance_created` event of an instance.
pub(crate) fn instance_created(id: &str, manifest_sha256: &str, public_key: &[u8]) -> EventContent {
    use sha2::Digest as _;
    EventContent::InstanceCreated(cel::InstanceCreated {
        instance_id: cel_id(id),
        manifest_sha256: cel::Sha256Digest(hex_array(manifest_sha256)),
        public_key_sha256: cel::Sha256Digest(sha2::Sha256::digest(public_key).into()),
    })
}

/// The read guard of a sealer known present (see [`Engine::sealer`]).
struct SealerGuard<'a>(RwLockReadGuard<'a, Option<Sealer>>);

impl std::ops::Deref for SealerGuard<'_> {
    type Target = Sealer;

    fn deref(&self) -> &Sealer {
        // Only built by `Engine::sealer` after checking the sealer is present, and a
        // present sealer is only ever replaced by another (a rotation), never removed.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("checked by Engine::sealer"))
    }
}

/// The fleet revocation in words, as `/healthz`, refusals and attestations say it.
pub(crate) fn fleet_revoked_reason(r: &crate::keylime::revocation::Revoked) -> String {
    format!(
        "revoked by the fleet verifier: {} (since {}); an operator clears it once the \
         appliance was checked",
        r.reason, r.since
    )
}

/// The degraded state's reason, as `/healthz` lists it and secret endpoints refuse with it,
/// from the TPM's refusal to read the sealing index.
fn degraded_reason(e: &TpmError) -> String {
    format!(
        "sealing: unavailable: {e}. The platform state differs from the one the secrets are \
         sealed to (a changed boot chain?): no secret is unsealed and nothing is written; \
         instances, inputs, evaluations, results, destruction and epoch resets are refused \
         until the platform boots into its sealed state and arbiterd restarts"
    )
}

/// A TLS identity generated at start and not yet stored.
#[derive(Debug, Clone, Copy)]
struct NewTls {
    /// Whether it replaces a stored key whose wrapping no longer opens (then measured as
    /// `tls_key_replaced`).
    replaces: bool,
}

/// Loads the configured TLS identity, or the stored one (its key wrapped under the sealing
/// key), or generates a new one — in memory only: [`store_tls`] stores it once the start's
/// checks passed. `Some` says a new key was generated.
async fn load_tls(
    config: &Config,
    store: &Store,
    sealer: &Sealer,
) -> Result<(TlsIdentity, Option<NewTls>), StartError> {
    if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) {
        return Ok((TlsIdentity::from_pem_files(cert, key)?, None));
    }
    let epoch = sealer.epoch();
    let (cert, wrapped) = store
        .read(move |c| -> Result<_, crate::store::StoreError> {
            Ok((
                queries::tls_cert(c)?,
                queries::get_wrapped(c, "tls", epoch)?,
            ))
        })
        .await?;
    let replaced = cert.is_some();
    match (cert, wrapped) {
        (Some(cert), Some(wrapped)) => match sealer.unwrap("tls", &wrapped) {
            Ok(key) => {
                return Ok((
                    TlsIdentity {
                        chain: vec![cert],
                        key_pkcs8: key,
                    },
                    None,
                ));
            }
            Err(e) => tracing::warn!(
                event = "tls_key_replaced",
                error = %clip(&e.to_string()),
                "the stored TLS key does not open; generating a new one"
            ),
        },
        (Some(_), None) => tracing::warn!(
            event = "tls_key_replaced",
            "the stored TLS key has no wrapping at the current sealing epoch; generating a new one"
        ),
        _ => {}
    }
    Ok((
        TlsIdentity::generate()?,
        Some(NewTls { replaces: replaced }),
    ))
}

/// Wraps and stores a TLS identity generated by [`load_tls`]; returns whether it replaced
/// a stored one.
async fn store_tls(
    store: &Store,
    sealer: &Sealer,
    tls: &TlsIdentity,
    new: NewTls,
) -> Result<bool, StartError> {
    let wrapped = sealer.wrap("tls", &tls.key_pkcs8);
    let cert = tls.chain.first().cloned().unwrap_or_default();
    let at = now();
    store
        .write(move |c| -> Result<(), crate::store::StoreError> {
            queries::delete_wrapped(c, "tls")?;
            queries::put_wrapped(c, "tls", &wrapped)?;
            queries::put_tls_cert(c, &cert, &at)
        })
        .await?;
    Ok(new.replaces)
}
