//! The measurement log and the application PCR (SPEC §2): every event is appended to the
//! current generation's JSON Lines file and fsynced *before* the PCR is extended with its
//! digest (write-ahead). At start the log is replayed against the TPM: a TPM startup (the
//! reset/restart counts differ from those of the last `daemon_started`) with an all-zero
//! PCR starts a new generation and re-measures what is live; one complete record ahead is
//! extended; anything else fails closed. Quotes are taken under the same lock as extends,
//! so the log served with a quote is exactly what the quoted PCR holds.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use arbiter_measured_boot::cel::{
    self, DaemonStarted, EventContent, Record, WriteAheadState, read_jsonl, to_jsonl_line,
};
use arbiter_policy::{ClockInfo, PcrSelection};
use tokio::sync::{Mutex, MutexGuard};

use crate::tpm::{Quote, Tpm, TpmError};

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
    },
    /// A record could not be built (a defect).
    #[error("measurement record: {0}")]
    Record(String),
    /// The TPM failed.
    #[error(transparent)]
    Tpm(#[from] TpmError),
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
    /// SHA-256 of the running executable (self-reported, SPEC §2).
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

/// The open log of the current generation.
pub struct LogState {
    generation: u64,
    records: Vec<Record>,
    file: File,
    path: PathBuf,
    counts: (u32, u32),
}

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
}

impl std::fmt::Debug for Measurer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measurer")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> MeasureError {
    MeasureError::Io {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

fn generation_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("generation-{generation:010}.jsonl"))
}

fn latest_generation(dir: &Path) -> Result<Option<u64>, MeasureError> {
    let mut latest = None;
    let entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
    for entry in entries {
        let name = entry.map_err(|e| io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("generation-")
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            latest = latest.max(Some(n));
        }
    }
    Ok(latest)
}

/// The marker of the last record known extended: `generation recnum`, written after each
/// extend. It tells a crash between append and extend (marker behind the log: extend the
/// record) from a PCR reset by someone else (marker at the record: fail closed) — the two
/// look the same to the write-ahead rule when the log has one record.
fn marker_path(dir: &Path) -> PathBuf {
    dir.join("extended")
}

fn read_marker(dir: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(marker_path(dir)).ok()?;
    let (g, r) = text.trim().split_once(' ')?;
    Some((g.parse().ok()?, r.parse().ok()?))
}

fn write_marker(dir: &Path, generation: u64, recnum: u64) -> Result<(), MeasureError> {
    let path = marker_path(dir);
    let tmp = dir.join("extended.tmp");
    let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(format!("{generation} {recnum}\n").as_bytes())
        .map_err(|e| io(&tmp, e))?;
    f.sync_data().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
}

fn open_append(path: &Path) -> Result<File, MeasureError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io(path, e))
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
    /// Opens the log in `dir` against the TPM and applies SPEC §2's start rules.
    /// `live` lists what to re-measure when a new generation starts (functions, then live
    /// instances, in a stable order). Returns the measurer and whether a new generation
    /// started.
    pub async fn open(
        dir: &Path,
        tpm: Tpm,
        facts: StartFacts,
        live: Vec<EventContent>,
    ) -> Result<(Self, bool), MeasureError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let pcr = tpm.config().application_pcr;
        let clock = tpm.clock().await?;
        let counts = (clock.reset_count, clock.restart_count);
        let value = pcr_value(&tpm, pcr).await?;
        let existing = latest_generation(dir)?;
        let (generation, records, path) = match existing {
            Some(g) => {
                let path = generation_path(dir, g);
                let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
                let read = read_jsonl(&bytes).map_err(|e| io(&path, e))?;
                if let Some(torn) = &read.torn {
                    // A torn append never completed, so it was never extended: drop it.
                    crate::engine::tracing_line(&format!(
                        "measurement log {}: dropping a torn last record ({:?})",
                        path.display(),
                        torn.reason
                    ));
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
            Ok(Self {
                state: Mutex::new(LogState {
                    generation,
                    records,
                    file: open_append(&path)?,
                    path,
                    counts,
                }),
                tpm: tpm.clone(),
                pcr,
                dir: dir.to_owned(),
                facts: facts.clone(),
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
            if next != generation {
                // A new generation starts in a new, empty file.
                let _ = std::fs::remove_file(&path);
            }
            let m = measurer(next, Vec::new(), path)?;
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
                crate::engine::tracing_line(&format!(
                    "measurement log: extended record {index} ({}) written before a crash",
                    records[index].content.event_name()
                ));
            }
            Err(e) => return Err(diverged(e.to_string())),
        }
        let m = measurer(generation, records, path)?;
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

    /// Appends (and fsyncs) a record, then extends the PCR with its digest.
    async fn append_and_extend(
        &self,
        state: &mut LogState,
        content: EventContent,
    ) -> Result<Record, MeasureError> {
        let record = Record::new(state.records.len() as u64, u32::from(self.pcr), content)
            .map_err(|e| MeasureError::Record(e.to_string()))?;
        let line = to_jsonl_line(&record).map_err(|e| MeasureError::Record(e.to_string()))?;
        state
            .file
            .write_all(&line)
            .map_err(|e| io(&state.path, e))?;
        state.file.sync_data().map_err(|e| io(&state.path, e))?;
        state.records.push(record.clone());
        self.tpm.pcr_extend(self.pcr, record.digest.0).await?;
        write_marker(&self.dir, state.generation, record.recnum)?;
        Ok(record)
    }

    /// Measures one event: write-ahead append, then extend. Returns the record (its
    /// `recnum` and the generation).
    pub async fn measure(&self, content: EventContent) -> Result<(u64, Record), MeasureError> {
        let mut state = self.state.lock().await;
        let record = self.append_and_extend(&mut state, content).await?;
        Ok((state.generation, record))
    }

    /// Quotes `selection` over `qualifying_data` and returns the quote with the generation
    /// and records it covers, after checking that the quoted application PCR equals the
    /// replay of those records. If the quote shows a TPM startup since this generation
    /// began, `remeasure` gives what is live and a new generation starts first.
    pub async fn quote<F, Fut>(
        &self,
        selection: PcrSelection,
        qualifying_data: Vec<u8>,
        remeasure: F,
    ) -> Result<(Quote, u64, Vec<Record>), MeasureError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Vec<EventContent>>,
    {
        let mut state = self.state.lock().await;
        let mut quote = self
            .tpm
            .quote(selection.clone(), qualifying_data.clone())
            .await?;
        if (quote.clock.reset_count, quote.clock.restart_count) != state.counts {
            self.new_generation(&mut state, &quote.clock, remeasure().await)
                .await?;
            quote = self.tpm.quote(selection, qualifying_data).await?;
        }
        let replay = cel::replay(&state.records);
        if quote.pcrs.get(&self.pcr) != Some(&replay) {
            return Err(MeasureError::Diverged {
                path: state.path.display().to_string(),
                pcr: self.pcr,
                detail:
                    "the quoted PCR is not the replay of the log (extended by another process?)"
                        .into(),
            });
        }
        Ok((quote, state.generation, state.records.clone()))
    }

    /// Checks the TPM's counts now and starts a new generation if it started up since.
    pub async fn check_startup<F, Fut>(&self, remeasure: F) -> Result<bool, MeasureError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Vec<EventContent>>,
    {
        let mut state = self.state.lock().await;
        let clock = self.tpm.clock().await?;
        if (clock.reset_count, clock.restart_count) == state.counts {
            return Ok(false);
        }
        self.new_generation(&mut state, &clock, remeasure().await)
            .await?;
        Ok(true)
    }

    async fn new_generation(
        &self,
        state: &mut MutexGuard<'_, LogState>,
        clock: &ClockInfo,
        live: Vec<EventContent>,
    ) -> Result<(), MeasureError> {
        let value = pcr_value(&self.tpm, self.pcr).await?;
        if value != [0u8; 32] {
            return Err(MeasureError::Diverged {
                path: state.path.display().to_string(),
                pcr: self.pcr,
                detail: "the TPM started up again but the PCR is not all-zero".into(),
            });
        }
        let generation = state.generation + 1;
        let path = generation_path(&self.dir, generation);
        let _ = std::fs::remove_file(&path);
        state.file = open_append(&path)?;
        state.path = path;
        state.generation = generation;
        state.records.clear();
        state.counts = (clock.reset_count, clock.restart_count);
        let started = self.daemon_started(generation, state.counts);
        self.append_and_extend(state, started).await?;
        for content in live {
            self.append_and_extend(state, content).await?;
        }
        crate::engine::tracing_line(&format!(
            "TPM startup detected (reset count {}, restart count {}): measurement log generation {generation}",
            clock.reset_count, clock.restart_count
        ));
        Ok(())
    }

    /// The current generation and a copy of its records.
    pub async fn snapshot(&self) -> (u64, Vec<Record>) {
        let state = self.state.lock().await;
        (state.generation, state.records.clone())
    }
}

async fn pcr_value(tpm: &Tpm, pcr: u8) -> Result<[u8; 32], MeasureError> {
    let values = tpm
        .pcr_read(PcrSelection::new([pcr]).map_err(TpmError::from)?)
        .await?;
    Ok(values.get(&pcr).copied().unwrap_or_default())
}
