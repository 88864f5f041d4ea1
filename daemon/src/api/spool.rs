//! Input bodies spooled to disk as they arrive: `STATE/spool/` (0700), one file per body
//! (0600, a unique name, removed once read or whatever the outcome; leftovers of a previous
//! run removed at start), only a bounded chunk in memory while receiving. It owns the disk
//! budget for bodies being received at once, the deadline that suits large bodies on slow
//! links (no silence longer than the stall timeout, and a minimum average rate once that
//! much time has passed), and the bound on how many spooled bodies are processed at once.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::{Body as _, Incoming};
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;
use crate::admission::{BodyBudget, BodyReservation};
use crate::config::LimitsSection;

/// The spool's directory under the state directory.
pub const SPOOL_DIR: &str = "spool";

/// Bytes buffered in memory while a body is written to its spool file.
const WRITE_BUFFER: usize = 256 << 10;

/// Seconds a client refused for the spool budget is asked to wait (`Retry-After`).
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// The most bytes of a refused caller's body read and discarded after the refusal is
/// sent ([`Refused::Caller`]): enough for a client to read the refusal of any ordinary
/// request, little enough that a client the daemon refuses cannot make it read much.
pub const LINGER_BYTES: u64 = 1 << 20;
/// The longest a refused caller's body is read and discarded after the refusal is sent.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// The most bytes of an admitted caller's refused body read and discarded
/// ([`Refused::Body`]).
pub const ADMITTED_LINGER_BYTES: u64 = 256 << 20;
/// The longest an admitted caller's refused body is read and discarded.
pub const ADMITTED_LINGER_TIME: Duration = Duration::from_secs(30);
/// The longest pause of a refused body being discarded.
const LINGER_STALL: Duration = Duration::from_secs(2);

/// Whose body is refused unread, which bounds how much of it is read and discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A caller refused for who it is or what it asks (403, 404, 405, a degraded or
    /// revoked daemon), or any client of an endpoint every certificate may call: at most
    /// [`LINGER_BYTES`] for [`LINGER_TIME`].
    Caller,
    /// A caller the operator admitted to send a body here (a slot's provider, a function
    /// registrar, an instance creator) whose body is over its limit or waits for the body
    /// budget: at most [`ADMITTED_LINGER_BYTES`] for [`ADMITTED_LINGER_TIME`], so that a
    /// client that sends a whole oversized input before reading the answer still reads
    /// the 413 naming the limit.
    Body,
}

/// Reads and discards the rest of a refused body while its refusal is sent, so a client
/// still uploading reads the refusal instead of losing it to a reset connection (HTTP/1.1
/// clients send the body before they read the answer). How much and for how long depend
/// on whose body it is ([`Refused`]), stopping early at a pause of 2 s; a body that goes
/// on beyond that is dropped unread, which closes the connection once the refusal is
/// written. Nothing is kept.
pub fn linger(mut body: Incoming, refused: Refused) {
    let (cap, time) = match refused {
        Refused::Caller => (LINGER_BYTES, LINGER_TIME),
        Refused::Body => (ADMITTED_LINGER_BYTES, ADMITTED_LINGER_TIME),
    };
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + time;
        let mut discarded = 0u64;
        loop {
            let wait =
                LINGER_STALL.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        discarded += data.len() as u64;
                        if discarded > cap {
                            break;
                        }
                    }
                }
                _ => break,
            }
        }
        if !body.is_end_stream() {
            tracing::debug!(
                event = "refused_body_cut_off",
                discarded,
                "a refused request's body went on beyond what is discarded; the connection \
                 closes"
            );
        }
    });
}

/// The spool of input bodies.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    budget: BodyBudget,
    processing: Arc<Semaphore>,
    stall: Duration,
    min_rate: u64,
}

/// A body received whole into its spool file; the file is removed when this is dropped.
#[derive(Debug)]
pub struct Spooled {
    file: tempfile::TempPath,
    len: u64,
    _reserved: BodyReservation,
}

impl Spooled {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads the body into memory and removes its file (the budget's bytes come back).
    pub async fn read(self) -> Result<Vec<u8>, ApiError> {
        let bytes = tokio::fs::read(&self.file).await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("reading a spooled request body: {e}"),
            )
        })?;
        drop(self);
        Ok(bytes)
    }
}

impl Spool {
    /// Opens the spool in `state_dir`: creates `spool/` (0700) or empties what a previous
    /// run left in it.
    pub fn open(state_dir: &Path, limits: &LimitsSection) -> std::io::Result<Self> {
        let dir = state_dir.join(SPOOL_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let mut removed = 0usize;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(
                event = "spool_cleaned",
                removed,
                "removed {removed} request bod(ies) left in the spool by a previous run"
            );
        }
        Ok(Self {
            dir,
            budget: BodyBudget::new(
                usize::try_from(limits.max_spooled_bytes).unwrap_or(usize::MAX),
            ),
            processing: Arc::new(Semaphore::new(limits.max_inputs_processing.max(1))),
            stall: Duration::from_secs(limits.body_timeout_seconds),
            min_rate: limits.min_body_bytes_per_second.max(1),
        })
    }

    /// Reserves `bytes` of the disk budget, or refuses with 503 `busy` and `Retry-After`.
    pub fn reserve(&self, bytes: u64) -> Result<BodyReservation, ApiError> {
        self.budget
            .try_reserve(usize::try_from(bytes).unwrap_or(usize::MAX))
            .ok_or_else(|| {
                ApiError::busy(
                    "too many input bodies are being received at once (the spool's disk budget, \
                     [limits] max_spooled_bytes, is spent); retry shortly",
                )
            })
    }

    /// Waits for a turn to process a spooled body (decode, decrypt, check, store): at most
    /// `max_inputs_processing` hold their input in memory at once.
    pub async fn turn(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.processing)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::busy("the daemon is stopping"))
    }

    /// Receives `body` into a new spool file, at most `limit` bytes (a larger body is
    /// refused with `over(bytes seen)` as soon as they are seen), holding `reserved`.
    pub async fn receive(
        &self,
        mut body: Incoming,
        limit: u64,
        reserved: BodyReservation,
        over: impl Fn(u64) -> ApiError,
    ) -> Result<Spooled, ApiError> {
        let internal = |e: std::io::Error| match crate::storage::StorageFault::of_io(&e) {
            Some(fault) => ApiError::storage(
                Some(fault),
                &format!("spooling a request body in {}: {e}", self.dir.display()),
            ),
            None => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("spooling a request body: {e}"),
            ),
        };
        let file = tempfile::Builder::new()
            .prefix("input-")
            .suffix(".body")
            .tempfile_in(&self.dir)
            .map_err(internal)?;
        let (file, path) = file.into_parts();
        let mut out =
            tokio::io::BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file));
        let started = Instant::now();
        let mut received = 0u64;
        loop {
            // The next piece must come within the stall timeout, and by the time the
            // average rate since the start would fall below the minimum (never before the
            // stall timeout has passed once).
            let rate_deadline = started
                + self.stall.max(Duration::from_secs_f64(
                    received as f64 / self.min_rate as f64,
                ));
            let wait = self
                .stall
                .min(rate_deadline.saturating_duration_since(Instant::now()));
            let frame = match tokio::time::timeout(wait, body.frame()).await {
                Ok(None) => break,
                Ok(Some(Ok(frame))) => frame,
                Ok(Some(Err(e))) => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "body_incomplete",
                        format!("the request body was cut off after {received} bytes: {e}"),
                    ));
                }
                Err(_) if Instant::now() >= rate_deadline => {
                    return Err(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "body_too_slow",
                        format!(
                            "the request body arrived slower than {} bytes per second on \
                             average ({received} bytes in {} s); nothing was stored",
                            self.min_rate,
                            started.elapsed().as_secs()
                        ),
                    ));
                }
                Err(_) => {
                    return Err(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "body_timeout",
                        format!(
                            "the request body stalled: no byte for {} s after {received} bytes; \
                             nothing was stored",
                            self.stall.as_secs()
                        ),
                    ));
                }
            };
            if let Ok(data) = frame.into_data() {
                received += data.len() as u64;
                if received > limit {
                    linger(body, Refused::Body);
                    return Err(over(received));
                }
                out.write_all(&data).await.map_err(internal)?;
            }
        }
        out.flush().await.map_err(internal)?;
        drop(out);
        Ok(Spooled {
            file: path,
            len: received,
            _reserved: reserved,
        })
    }
}
