//! The measurement log and the application PCR (docs/protocol.md): every event is appended to the
//! current generation's JSON Lines file and fsynced *before* the PCR is extended with its
//! digest (write-ahead). At start the log is replayed against the TPM: a TPM startup (the
//! reset/restart counts differ from those of the last `daemon_started`) with an all-zero
//! PCR starts a new generation and re-measures what is live; one complete record ahead is
//! extended; anything else fails closed. While running, the PCR is compared with the log's
//! replay before each extend (a TPM startup then starts a new generation first; any other
//! difference refuses the measurement), a failed append is cut back to the last whole
//! record, and a record whose extend did not reach the TPM is cut off again, so the log
//! always replays to the PCR. Quotes are taken under the same lock as extends, so the log
//! served with a quote is exactly what the quoted PCR holds.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::pin::Pin;

use arbiter_measured_boot::alg::sha256_extend;
use arbiter_measured_boot::cel::{
    self, DaemonStarted, EventContent, Record, WriteAheadState, read_jsonl, to_jsonl_line,
};
use arbiter_policy::{ClockInfo, PcrSelection};
use tokio::sync::Mutex;

use crate::tpm::{Quote, Tpm, TpmError};

mod files;

use files::{
    append_whole, generation_path, io, latest_generation, open_append, read_marker, truncate,
    write_marker,
};

/// A measurement failure. Startup failures name what diverged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeasureError {
    /// The log and the PCR disagree in a way the write-ahead rule does not explain.
    #[error(
        "the measurement log {path} does not match PCR {pcr}: {detail}. The log or the PCR \
         was tampered with (e.g. PCR {pcr} reset by another process), or a stale copy of the \
         state was restored; refusing to start until the next TPM startup"
    )]
    Diverged {
        /// The log file.
        path: String,
        /// The application PCR.
        pcr: u8,
        /// What diverged.
        detail: String,
    },
    /// The log file could not be read or written.
    #[error("measurement log {path}: {detail}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        detail: String,
        /// Whether the disk is full or the filesystem refuses writes.
        fault: Option<crate::storage::StorageFault>,
    },
    /// A record could not be built (a defect).
    #[error("measurement record: {0}")]
    Record(String),
    /// What is live could not be read to re-measure it in a new generation.
    #[error("reading what is live to re-measure it after a TPM startup: {0}")]
    Live(String),
    /// The TPM failed.
    #[error(transparent)]
    Tpm(#[from] TpmError),
    /// The log was opened read-only (a degraded start, docs/protocol.md): nothing is appended or
    /// extended.
    #[error("the measurement log is read-only while the daemon is degraded: nothing is measured")]
    ReadOnly,
}

impl MeasureError {
    /// Whether the log could not be written because the disk is full or the filesystem
    /// refuses writes.
    pub fn storage_fault(&self) -> Option<crate::storage::StorageFault> {
        match self {
            Self::Io { fault, .. } => *fault,
            _ => None,
        }
    }
}

/// What `daemon_started` records, besides the counts and the generation.
#[derive(Debug, Clone)]
pub struct StartFacts {
    /// The platform PCRs.
    pub platform_pcrs: Vec<u8>,
    /// The sealing index's TPM2B_NV_PUBLIC.
    pub sealing_nv_public: Vec<u8>,
    /// The sealing index's name.
    pub sealing_nv_name: Vec<u8>,
    /// The statement key's name.
    pub statement_key_name: Vec<u8>,
    /// SHA-256 of the running executable (self-reported, docs/protocol.md).
    pub executable_sha256: [u8; 32],
}

/// SHA-256 of the running daemon's executable: `/proc/self/exe`, which names the file this
/// process was started from even after a package upgrade replaced it on disk.
pub fn executable_sha256() -> Result<[u8; 32], MeasureError> {
    use sha2::Digest as _;
    let path = Path::new("/proc/self/exe");
    let mut file = File::open(path).map_err(|e| io(path, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

/// What [`LiveSource`] returns: the events of what is live, or why they could not be read.
pub type LiveFuture = Pin<Box<dyn Future<Output = Result<Vec<EventContent>, String>> + Send>>;

/// Gives what is live, to re-measure when a new generation starts (functions, then live
/// instances, in a stable order). Called under the log's lock, whenever the measurer
/// notices a TPM startup: at start, before an extend, before a quote or in the background
/// check.
pub type LiveSource = Box<dyn Fn() -> LiveFuture + Send + Sync>;

/// The open log of the current generation.
pub struct LogState {
    generation: u64,
    records: Vec<Record>,
    /// The file appended to; `None` when the log is read-only.
    file: Option<File>,
    path: PathBuf,
    /// The file's length: the end of its last whole record.
    len: u64,
    counts: (u32, u32),
    /// The last record's extend failed without telling whether it reached the TPM (the TPM
    /// went away): the file length before that record, to cut it off if the PCR shows it
    /// was not extended. Settled before the next extend or quote.
    unconfirmed: Option<u64>,
    /// Why this generation is incomplete (re-measuring what is live failed part-way):
    /// nothing more is measured or quoted in it.
    incomplete: Option<String>,
    /// When a quote last showed this generation's counts and the replay of its log: the
    /// background check needs no quote of its own while this is recent.
    confirmed_at: Option<std::time::Instant>,
}

/// How recent a quote that confirmed the log must be for the background check to rely on
/// it instead of reading the TPM's clock (itself a quote: a signature, about 200 ms on a
/// discrete TPM, taken under the log's lock that attestation quotes also wait on). Under
/// attestation load a quote confirms the log several times a second, so the check sends
/// nothing; a TPM startup or a foreign extend is still noticed within the check's period
/// plus this (12 s instead of 10), with or without requests.
const CONFIRMATION_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

impl LogState {
    /// The generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The records of this generation.
    pub fn records(&self) -> &[Record] {
        &self.records
    }
}

/// The measurement log and the PCR it extends.
pub struct Measurer {
    state: Mutex<LogState>,
    tpm: Tpm,
    pcr: u8,
    dir: PathBuf,
    facts: StartFacts,
    live: LiveSource,
    /// Opened by [`Measurer::open_read_only`]: never appends, extends or writes a file.
    read_only: bool,
    /// The current generation, readable without the log's lock ([`Measurer::generation`]).
    generation: std::sync::atomic::AtomicU64,
    /// Why the PCR no longer replays the log, once a measurement, a quote or the background
    /// check found it (until the next TPM startup starts a new generation).
    divergence: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for Measurer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measurer")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Whether a failed extend reached the TPM, judged by the PCR read after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExtendOutcome {
    /// The PCR holds the record: only the answer was lost.
    Landed,
    /// The PCR holds what it held before the record.
    NotLanded,
    /// Neither (the TPM restarted, or someone else extended it) or the PCR could not be
    /// read.
    Unknown,
}

fn extend_outcome(now: Option<[u8; 32]>, before: &[u8; 32], digest: &[u8; 32]) -> ExtendOutcome {
    match now {
        Some(now) if now == sha256_extend(before, digest) => ExtendOutcome::Landed,
        Some(now) if now == *before => ExtendOutcome::NotLanded,
        _ => ExtendOutcome::Unknown,
    }
}

fn last_counts(records: &[Record]) -> Option<(u32, u32)> {
    records.iter().rev().find_map(|r| match &r.content {
        EventContent::DaemonStarted(d) => Some((d.reset_count, d.restart_count)),
        _ => None,
    })
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl Measurer {
    /// Opens the log in `dir` against the TPM and applies docs/protocol.md's start rules. `live`
    /// gives what to re-measure when a new generation starts, now or later (functions, then
    /// live instances, in a stable order). Returns the measurer and whether a new
    /// generation started.
    pub async fn open(
        dir: &Path,
        tpm: Tpm,
        facts: StartFacts,
        live: LiveSource,
    ) -> Result<(Self, bool), MeasureError> {
        Self::open_with(dir, tpm, facts, live, false).await
    }

    /// Opens the log for a degraded start (docs/protocol.md: the daemon touches nothing): reads the
    /// latest generation and checks it against the TPM as [`Measurer::open`] does, but
    /// appends no `daemon_started`, extends nothing, cuts no torn record and writes no file.
    /// After a TPM startup (an all-zero PCR, new counts) the current generation is a new,
    /// empty one held in memory only, so quotes still replay. A record written before a
    /// crash and not yet extended cannot be settled without extending: refused.
    pub async fn open_read_only(
        dir: &Path,
        tpm: Tpm,
        facts: StartFacts,
        live: LiveSource,
    ) -> Result<Self, MeasureError> {
        Ok(Self::open_with(dir, tpm, facts, live, true).await?.0)
    }

    async fn open_with(
        dir: &Path,
        tpm: Tpm,
        facts: StartFacts,
        live: LiveSource,
        read_only: bool,
    ) -> Result<(Self, bool), MeasureError> {
        if !read_only {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        let pcr = tpm.config().application_pcr;
        let clock = tpm.clock().await?;
        let counts = (clock.reset_count, clock.restart_count);
        let value = pcr_value(&tpm, pcr).await?;
        let existing = if dir.exists() {
            latest_generation(dir)?
        } else {
            None
        };
        let (generation, records, path) = match existing {
            Some(g) => {
                let path = generation_path(dir, g);
                let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
                let read = read_jsonl(&bytes).map_err(|e| io(&path, e.to_string()))?;
                if let Some(torn) = read.torn.as_ref().filter(|_| !read_only) {
                    // A torn append never completed, so it was never extended: drop it.
                    tracing::warn!(
                        event = "measurement_torn_record",
                        path = %path.display(),
                        reason = ?torn.reason,
                        "measurement log: dropping a torn last record"
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| io(&path, e))?;
                    f.set_len(torn.offset as u64).map_err(|e| io(&path, e))?;
                    f.sync_all().map_err(|e| io(&path, e))?;
                }
                (g, read.records, path)
            }
            None => (0, Vec::new(), generation_path(dir, 0)),
        };
        let diverged = |detail: String| MeasureError::Diverged {
            path: path.display().to_string(),
            pcr,
            detail,
        };
        let startup_since = last_counts(&records).is_some_and(|c| c != counts);
        let measurer = |generation, records, path: PathBuf| -> Result<Self, MeasureError> {
            let (file, len) = if read_only {
                (None, 0)
            } else {
                let file = open_append(&path)?;
                let len = file.metadata().map_err(|e| io(&path, e))?.len();
                (Some(file), len)
            };
            Ok(Self {
                state: Mutex::new(LogState {
                    generation,
                    records,
                    file,
                    path,
                    len,
                    counts,
                    unconfirmed: None,
                    incomplete: None,
                    confirmed_at: None,
                }),
                tpm: tpm.clone(),
                pcr,
                dir: dir.to_owned(),
                facts: facts.clone(),
                live,
                generation: std::sync::atomic::AtomicU64::new(generation),
                read_only,
                divergence: std::sync::Mutex::new(None),
            })
        };
        if records.is_empty() || startup_since {
            if value != [0u8; 32] {
                return Err(diverged(if records.is_empty() {
                    "the log is empty but the PCR is not all-zero".into()
                } else {
                    "the TPM started up since the last daemon_started but the PCR is not all-zero"
                        .into()
                }));
            }
            let next = if existing.is_some() && !records.is_empty() {
                generation + 1
            } else {
                generation
            };
            let path = generation_path(dir, next);
            if read_only {
                // Held in memory only: nothing live is re-measured, so the PCR stays
                // all-zero and the empty generation replays to it.
                return Ok((measurer(next, Vec::new(), path)?, true));
            }
            if next != generation {
                // A new generation starts in a new, empty file.
                let _ = std::fs::remove_file(&path);
            }
            let m = measurer(next, Vec::new(), path)?;
            let live = (m.live)().await.map_err(MeasureError::Live)?;
            {
                let mut state = m.state.lock().await;
                m.append_and_extend(&mut state, m.daemon_started(next, counts))
                    .await?;
                for content in live {
                    m.append_and_extend(&mut state, content).await?;
                }
            }
            return Ok((m, true));
        }
        match cel::write_ahead_state(&records, u32::from(pcr), &value) {
            Ok(WriteAheadState::Consistent) => {}
            Ok(WriteAheadState::ExtendNext { index }) if read_only => {
                return Err(diverged(format!(
                    "record {index} was written before a crash and not extended; a degraded \
                     start extends nothing"
                )));
            }
            Ok(WriteAheadState::ExtendNext { index }) => {
                if read_marker(dir).is_some_and(|(g, r)| g == generation && r >= index as u64) {
                    return Err(diverged(format!(
                        "record {index} was already extended, but the PCR holds only the records \
                         before it{}",
                        if value == [0u8; 32] {
                            " (the PCR is all-zero without a TPM startup)"
                        } else {
                            ""
                        }
                    )));
                }
                let digest = records[index].digest.0;
                tpm.pcr_extend(pcr, digest).await?;
                write_marker(dir, generation, index as u64)?;
                tracing::warn!(
                    event = "measurement_recovered",
                    recnum = index,
                    measured = records[index].content.event_name(),
                    "measurement log: extended a record written before a crash"
                );
            }
            Err(e) => return Err(diverged(e.to_string())),
        }
        let m = measurer(generation, records, path)?;
        if read_only {
            return Ok((m, false));
        }
        {
            let mut state = m.state.lock().await;
            m.append_and_extend(&mut state, m.daemon_started(generation, counts))
                .await?;
        }
        Ok((m, false))
    }

    fn daemon_started(&self, generation: u64, counts: (u32, u32)) -> EventContent {
        EventContent::DaemonStarted(DaemonStarted {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            executable_sha256: cel::Sha256Digest(self.facts.executable_sha256),
            generation,
            platform_pcrs: self
                .facts
                .platform_pcrs
                .iter()
                .map(|p| u32::from(*p))
                .collect(),
            sealing_nv_public: cel::Base64Bytes(self.facts.sealing_nv_public.clone()),
            sealing_nv_name: cel::HexBytes(self.facts.sealing_nv_name.clone()),
            statement_key_name: cel::HexBytes(self.facts.statement_key_name.clone()),
            reset_count: counts.0,
            restart_count: counts.1,
            boot_id: boot_id(),
        })
    }

    fn diverged(&self, state: &LogState, detail: impl Into<String>) -> MeasureError {
        let detail = detail.into();
        let reason = format!(
            "measurement: PCR {} is not the replay of the measurement log ({detail}); \
             attestations are refused and nothing is measured until the next TPM startup (a \
             reboot), after which everything live is measured again",
            self.pcr
        );
        let mut divergence = self.divergence.lock().unwrap_or_else(|p| p.into_inner());
        if divergence.is_none() {
            tracing::error!(
                event = "measurement_diverged",
                pcr = self.pcr,
                reason = %crate::logging::clip(&reason),
                "DEGRADED: the application PCR no longer replays the measurement log"
            );
        }
        *divergence = Some(reason);
        MeasureError::Diverged {
            path: state.path.display().to_string(),
            pcr: self.pcr,
            detail,
        }
    }

    /// Why the application PCR no longer replays the log, if a measurement, a quote or the
    /// background check found that it does not (`/healthz` lists it); cleared when a TPM
    /// startup begins a new generation.
    pub fn divergence(&self) -> Option<String> {
        self.divergence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Appends (and fsyncs) a record, then extends the PCR with its digest. If the append
    /// fails, the file is cut back and nothing is extended. If the extend fails, the PCR
    /// tells whether it reached the TPM: if it did (only the answer was lost) the record
    /// stands; if not, the record is cut off the file and dropped, so the log keeps
    /// replaying to the PCR; if the PCR cannot tell, the record is settled before the next
    /// extend or quote. Either way the error is returned and the caller's action fails.
    async fn append_and_extend(
        &self,
        state: &mut LogState,
        content: EventContent,
    ) -> Result<Record, MeasureError> {
        let record = Record::new(state.records.len() as u64, u32::from(self.pcr), content)
            .map_err(|e| MeasureError::Record(e.to_string()))?;
        let line = to_jsonl_line(&record).map_err(|e| MeasureError::Record(e.to_string()))?;
        let before_len = state.len;
        let mut file = state.file.take().ok_or(MeasureError::ReadOnly)?;
        let path = state.path.clone();
        let line_len = line.len() as u64;
        // The write and its fsync block: on the blocking pool, not on a runtime worker.
        let (file, appended) = off_runtime(&state.path, move || {
            let appended = append_whole(&mut file, &path, before_len, &line);
            (file, appended)
        })
        .await?;
        state.file = Some(file);
        appended?;
        state.len += line_len;
        let before = cel::replay(&state.records);
        state.records.push(record.clone());
        let Err(e) = self.tpm.pcr_extend(self.pcr, record.digest.0).await else {
            let (dir, generation, recnum) = (self.dir.clone(), state.generation, record.recnum);
            // The record is in the log and in the PCR: the measurement happened. A marker
            // left behind (a full disk) only makes the next start's check of a record
            // ahead of the PCR less strict; failing the caller's action would not undo it.
            if let Err(e) =
                off_runtime(&self.dir, move || write_marker(&dir, generation, recnum)).await?
            {
                tracing::warn!(
                    event = "measurement_marker_failed",
                    recnum = record.recnum,
                    error = %crate::logging::clip(&e.to_string()),
                    "measurement log: the record was extended but its marker could not be \
                     written"
                );
            }
            return Ok(record);
        };
        let now = pcr_value(&self.tpm, self.pcr).await.ok();
        match extend_outcome(now, &before, &record.digest.0) {
            ExtendOutcome::Landed => {
                tracing::warn!(
                    event = "measurement_extend_landed",
                    recnum = record.recnum,
                    pcr = self.pcr,
                    error = %crate::logging::clip(&e.to_string()),
                    "measurement log: the extend failed but the PCR shows it reached the TPM; \
                     keeping the record"
                );
                write_marker(&self.dir, state.generation, record.recnum)?;
                Ok(record)
            }
            ExtendOutcome::NotLanded => {
                self.drop_last(state, before_len)?;
                Err(e.into())
            }
            ExtendOutcome::Unknown => {
                tracing::warn!(
                    event = "measurement_extend_unknown",
                    recnum = record.recnum,
                    pcr = self.pcr,
                    error = %crate::logging::clip(&e.to_string()),
                    "measurement log: the extend failed and the PCR does not tell whether it \
                     reached the TPM; settling it before the next extend"
                );
                state.unconfirmed = Some(before_len);
                Err(e.into())
            }
        }
    }

    /// Cuts the last record (not extended) off the file and drops it from memory. If the
    /// file cannot be cut, the record stays unconfirmed and is retried later.
    fn drop_last(&self, state: &mut LogState, before_len: u64) -> Result<(), MeasureError> {
        let Some(file) = &state.file else {
            return Err(MeasureError::ReadOnly);
        };
        if let Err(e) = truncate(file, before_len) {
            state.unconfirmed = Some(before_len);
            return Err(io(
                &state.path,
                format!("cutting off a record not extended: {e}"),
            ));
        }
        state.len = before_len;
        state.unconfirmed = None;
        if let Some(record) = state.records.pop() {
            tracing::warn!(
                event = "measurement_dropped",
                recnum = record.recnum,
                measured = record.content.event_name(),
                "measurement log: a record was not extended; removed it from the log"
            );
        }
        Ok(())
    }

    /// Settles an unconfirmed last record by the PCR's `value`: kept if the PCR holds it,
    /// cut off if the PCR holds the records before it, left unconfirmed otherwise (a TPM
    /// startup or another process; the caller decides).
    fn settle(&self, state: &mut LogState, value: &[u8; 32]) -> Result<(), MeasureError> {
        let Some(before_len) = state.unconfirmed else {
            return Ok(());
        };
        let without = cel::replay(&state.records[..state.records.len().saturating_sub(1)]);
        if *value == cel::replay(&state.records) {
            if let Some(last) = state.records.last() {
                write_marker(&self.dir, state.generation, last.recnum)?;
            }
            state.unconfirmed = None;
        } else if *value == without {
            self.drop_last(state, before_len)?;
        }
        Ok(())
    }

    /// Makes sure the next extend lands where the log says: settles an unconfirmed record,
    /// then compares the PCR with the replay of the log (one PCR_Read). Only on a
    /// difference does it read the TPM's clock (a quote): a TPM startup with an all-zero PCR
    /// starts a new generation; anything else fails closed.
    async fn ensure_current(&self, state: &mut LogState) -> Result<(), MeasureError> {
        let value = pcr_value(&self.tpm, self.pcr).await?;
        if state.incomplete.is_none() {
            self.settle(state, &value)?;
            if value == cel::replay(&state.records) {
                return Ok(());
            }
        }
        let clock = self.tpm.clock().await?;
        if (clock.reset_count, clock.restart_count) != state.counts {
            return self.new_generation(state, &clock).await;
        }
        if let Some(why) = &state.incomplete {
            return Err(self.diverged(state, why.clone()));
        }
        Err(self.diverged(
            state,
            if value == [0u8; 32] {
                "the PCR is all-zero without a TPM startup (reset by another process?); \
                 nothing was measured"
            } else {
                "the PCR is not the replay of the log (extended by another process?); nothing \
                 was measured"
            },
        ))
    }

    /// Measures one event: checks that the PCR is where the log says (starting a new
    /// generation after a TPM startup), then write-ahead append, then extend. Returns the
    /// generation and the record (its `recnum`).
    pub async fn measure(&self, content: EventContent) -> Result<(u64, Record), MeasureError> {
        if self.read_only {
            return Err(MeasureError::ReadOnly);
        }
        let mut state = self.state.lock().await;
        self.ensure_current(&mut state).await?;
        let record = self.append_and_extend(&mut state, content).await?;
        Ok((state.generation, record))
    }

    /// Quotes `selection` over `qualifying_data` and returns the quote with the generation
    /// and records it covers, after checking that the quoted application PCR equals the
    /// replay of those records. If the quote shows a TPM startup since this generation
    /// began, a new generation (with what is live re-measured) starts first.
    pub async fn quote(
        &self,
        selection: PcrSelection,
        qualifying_data: Vec<u8>,
    ) -> Result<(Quote, u64, Vec<Record>), MeasureError> {
        let mut state = self.state.lock().await;
        if state.unconfirmed.is_some() || state.incomplete.is_some() {
            self.ensure_current(&mut state).await?;
        }
        let matches = |quote: &Quote, state: &LogState| {
            (quote.clock.reset_count, quote.clock.restart_count) == state.counts
                && quote.pcrs.get(&self.pcr) == Some(&cel::replay(&state.records))
        };
        let mut quote = self
            .tpm
            .quote(selection.clone(), qualifying_data.clone())
            .await?;
        if !matches(&quote, &state) {
            self.ensure_current(&mut state).await?;
            quote = self.tpm.quote(selection, qualifying_data).await?;
            if !matches(&quote, &state) {
                return Err(self.diverged(
                    &state,
                    "the quoted PCR is not the replay of the log (extended by another process?)",
                ));
            }
        }
        state.confirmed_at = Some(std::time::Instant::now());
        Ok((quote, state.generation, state.records.clone()))
    }

    /// The current generation, without waiting for the log: it changes when the measurer
    /// notices a TPM startup (before an extend or a quote, or in the background check).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Checks the TPM's counts now and starts a new generation if it started up since;
    /// settles a record whose extend was left unconfirmed. A quote that confirmed the
    /// counts and the log in the last 2 s (an attestation's) stands for the
    /// check: no TPM command is sent then.
    pub async fn check_startup(&self) -> Result<bool, MeasureError> {
        let mut state = self.state.lock().await;
        if state.unconfirmed.is_none()
            && state.incomplete.is_none()
            && state
                .confirmed_at
                .is_some_and(|t| t.elapsed() < CONFIRMATION_FRESH)
        {
            return Ok(false);
        }
        let clock = self.tpm.clock().await?;
        if (clock.reset_count, clock.restart_count) != state.counts {
            self.new_generation(&mut state, &clock).await?;
            return Ok(true);
        }
        if state.unconfirmed.is_some() {
            self.ensure_current(&mut state).await?;
        } else if !self.read_only && state.incomplete.is_none() {
            // Extends happen under this lock: a PCR that differs from the replay now was
            // changed by another process. Found here, it shows in `/healthz` before any
            // request runs into it.
            let value = pcr_value(&self.tpm, self.pcr).await?;
            if value != cel::replay(&state.records) {
                return Err(self.diverged(
                    &state,
                    if value == [0u8; 32] {
                        "the PCR is all-zero without a TPM startup (reset by another process?)"
                    } else {
                        "the PCR is not the replay of the log (extended by another process?)"
                    },
                ));
            }
        }
        Ok(false)
    }

    async fn new_generation(
        &self,
        state: &mut LogState,
        clock: &ClockInfo,
    ) -> Result<(), MeasureError> {
        let value = pcr_value(&self.tpm, self.pcr).await?;
        if value != [0u8; 32] {
            return Err(self.diverged(
                state,
                "the TPM started up again but the PCR is not all-zero",
            ));
        }
        let generation = state.generation + 1;
        state.confirmed_at = None;
        self.generation
            .store(generation, std::sync::atomic::Ordering::Release);
        let path = generation_path(&self.dir, generation);
        if self.read_only {
            // A degraded daemon measures nothing: the new generation is empty, in memory,
            // and replays to the all-zero PCR.
            state.path = path;
            state.generation = generation;
            state.records.clear();
            state.counts = (clock.reset_count, clock.restart_count);
            return Ok(());
        }
        let live = (self.live)().await.map_err(MeasureError::Live)?;
        let _ = std::fs::remove_file(&path);
        state.file = Some(open_append(&path)?);
        state.path = path;
        state.len = 0;
        state.generation = generation;
        state.records.clear();
        state.unconfirmed = None;
        state.incomplete = None;
        state.counts = (clock.reset_count, clock.restart_count);
        let started = self.daemon_started(generation, state.counts);
        let mut measured = self.append_and_extend(state, started).await.map(|_| ());
        for content in live {
            if measured.is_err() {
                break;
            }
            measured = self.append_and_extend(state, content).await.map(|_| ());
        }
        if let Err(e) = measured {
            // Without everything live measured, this generation would describe less than
            // what runs: measure and quote nothing more in it.
            state.incomplete = Some(format!(
                "re-measuring what is live in generation {generation} after a TPM startup \
                 failed ({e}); nothing more is measured or quoted until the next TPM startup"
            ));
            return Err(e);
        }
        self.divergence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        tracing::warn!(
            event = "tpm_startup",
            reset_count = clock.reset_count,
            restart_count = clock.restart_count,
            generation,
            "TPM startup detected: a new measurement log generation"
        );
        Ok(())
    }

    /// The current generation and a copy of its records known extended: a record whose
    /// extend is unconfirmed is settled first if the TPM answers, and left out otherwise, so
    /// no statement names a record the PCR may not hold.
    pub async fn snapshot(&self) -> (u64, Vec<Record>) {
        let mut state = self.state.lock().await;
        if state.unconfirmed.is_some()
            && let Ok(value) = pcr_value(&self.tpm, self.pcr).await
            && let Err(e) = self.settle(&mut state, &value)
        {
            tracing::error!(
                event = "measurement_settle_failed",
                error = %crate::logging::clip(&e.to_string()),
                "measurement log: settling the last record failed"
            );
        }
        let known = state
            .records
            .len()
            .saturating_sub(usize::from(state.unconfirmed.is_some()));
        (state.generation, state.records[..known].to_vec())
    }
}

/// Runs blocking file work (writes, fsyncs) on the blocking pool and waits for it; `path`
/// names the file in the error should the work not finish (a panic).
async fn off_runtime<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, MeasureError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| io(path, format!("the file operation did not finish: {e}")))
}

async fn pcr_value(tpm: &Tpm, pcr: u8) -> Result<[u8; 32], MeasureError> {
    let values = tpm
        .pcr_read(PcrSelection::new([pcr]).map_err(TpmError::from)?)
        .await?;
    Ok(values.get(&pcr).copied().unwrap_or_default())
}

#[cfg(test)]
mod tests;
