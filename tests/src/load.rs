//! The engine of the load tool (`arbiter-load`, docs/performance.md): clients that keep one
//! mutual-TLS connection each (as a busy verifier or submitter would), N of them running one
//! operation in a loop for a fixed time, and the summary — operations that succeeded *and*
//! were verified by the client, failures by reason, throughput and latency percentiles.
//! A warm-up comes first (connections opened, the first rounds of requests): its
//! operations are counted apart, so the figures describe the steady state, and the
//! percentiles over every operation are reported beside them. Failures count whenever they
//! happen. Progress goes to stderr once a second.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arbiter_client::http::Connection;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;

/// One answer on a kept-alive connection.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body parsed as JSON (`null` when it is not JSON).
    pub json: Value,
    /// The SPKI SHA-256 (hex) of the certificate the server presented on this connection.
    pub server_spki_sha256: String,
}

/// A client's one HTTP/1.1 connection, opened on first use and again after an error.
pub struct KeepAlive {
    conn: Connection,
    open: Option<(SendRequest<Full<Bytes>>, String)>,
}

impl KeepAlive {
    /// A client that connects with `conn`'s identity and server.
    pub fn new(conn: Connection) -> Self {
        Self { conn, open: None }
    }

    async fn connect(&self) -> Result<(SendRequest<Full<Bytes>>, String), String> {
        let tls = self.conn.connect_tls().await.map_err(|e| e.to_string())?;
        let spki = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| arbiter_policy::identity::identity_of(c))
            .transpose()
            .map_err(|e| e.to_string())?
            .ok_or("the server presented no certificate")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            // Errors surface on the next request.
            let _ = connection.await;
        });
        Ok((sender, spki))
    }

    /// Sends one request (a JSON body when given) and reads the whole answer. A transport
    /// error closes the connection; the next request opens a new one.
    ///
    /// # Errors
    /// The transport error, as text.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, String> {
        let result = self.try_send(method, path, body).await;
        if result.is_err() {
            self.open = None;
        }
        result
    }

    async fn try_send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, String> {
        if self.open.as_ref().is_none_or(|(s, _)| s.is_closed()) {
            self.open = Some(self.connect().await?);
        }
        let Some((sender, spki)) = self.open.as_mut() else {
            return Err("no connection".into());
        };
        sender.ready().await.map_err(|e| e.to_string())?;
        let mut request = Request::builder().method(method).uri(path).header(
            hyper::header::HOST,
            "arbiter", // The daemon serves one host; its name is not checked.
        );
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            server_spki_sha256: spki.clone(),
        })
    }
}

/// What one operation of a scenario came to.
pub enum Step {
    /// Succeeded and verified.
    Ok,
    /// Failed (or did not verify), with the reason.
    Failed(String),
    /// No work is left for this client (a prepared pool ran out).
    Exhausted,
}

/// One boxed operation of a client: takes the client's state and gives it back.
pub type Op<C> =
    Arc<dyn Fn(C, u64) -> Pin<Box<dyn Future<Output = (C, Step)> + Send>> + Send + Sync>;

/// How long a scenario runs: a warm-up whose operations are counted apart, then the
/// measured window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Operations *started* before it ends are warm-up.
    pub warmup: Duration,
    /// The measured time after the warm-up.
    pub measure: Duration,
}

/// A scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The scenario (e.g. `attest`).
    pub scenario: String,
    /// The condition it ran under (e.g. the TPM latency table).
    pub condition: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Seconds of warm-up before the measured window.
    pub warmup_seconds: f64,
    /// Operations started during the warm-up that succeeded and verified (not in `ok`).
    pub warmup_ok: u64,
    /// Wall-clock seconds from the end of the warm-up to the last answer.
    pub seconds: f64,
    /// Operations started after the warm-up that succeeded and verified.
    pub ok: u64,
    /// Operations that failed or did not verify, warm-up included.
    pub failed: u64,
    /// Whether a prepared pool ran out before the time was up.
    pub exhausted: bool,
    /// `ok` per second.
    pub per_second: f64,
    /// Latency percentiles of the successful operations, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
    /// The 99th percentile over every successful operation, warm-up included.
    pub p99_all_ms: f64,
    /// The slowest operation, warm-up included.
    pub max_all_ms: f64,
    /// Failures by reason (the first 120 characters of each).
    pub errors: BTreeMap<String, u64>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

/// Runs `op` in a loop on each of `clients` for the warm-up and then the measured time of
/// `window` (or until every client's work is exhausted), one operation in flight per
/// client, and summarises. With `progress`, prints a line to stderr every second.
pub async fn run<C: Send + 'static>(
    scenario: &str,
    condition: &str,
    clients: Vec<C>,
    window: Window,
    progress: bool,
    op: Op<C>,
) -> Summary {
    let n = clients.len();
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let measured_from = started + window.warmup;
    let deadline = measured_from + window.measure;
    let ticker = progress.then(|| {
        let (ok, failed) = (Arc::clone(&ok), Arc::clone(&failed));
        let label = format!("{scenario} [{condition}] {n} clients");
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = Instant::now();
                let done = ok.load(Ordering::Relaxed);
                let failed = failed.load(Ordering::Relaxed);
                if now < measured_from {
                    let t = now.duration_since(started).as_secs_f64();
                    eprint!("\r{label}: warm-up {t:5.1} s, {failed} failed   ");
                } else {
                    let t = now.duration_since(measured_from).as_secs_f64().max(1e-3);
                    eprint!(
                        "\r{label}: {t:5.1} s, {done} verified ({:.1}/s), {failed} failed   ",
                        done as f64 / t
                    );
                }
            }
        })
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (index, client) in clients.into_iter().enumerate() {
        let (op, ok, failed) = (Arc::clone(&op), Arc::clone(&ok), Arc::clone(&failed));
        tasks.spawn(async move {
            let mut client = client;
            let mut latencies = Vec::new();
            let mut warmup = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut exhausted = false;
            let mut i = index as u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let (back, step) = op(client, i).await;
                client = back;
                i += n as u64;
                match step {
                    Step::Ok if t < measured_from => warmup.push(t.elapsed()),
                    Step::Ok => {
                        latencies.push(t.elapsed());
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Step::Failed(reason) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let key: String = reason.chars().take(120).collect();
                        *errors.entry(key).or_default() += 1;
                    }
                    Step::Exhausted => {
                        exhausted = true;
                        break;
                    }
                }
            }
            (latencies, warmup, errors, exhausted)
        });
    }
    let mut latencies = Vec::new();
    let mut warmup = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut exhausted = false;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((l, w, e, x)) => {
                latencies.extend(l);
                warmup.extend(w);
                for (k, v) in e {
                    *errors.entry(k).or_default() += v;
                }
                exhausted |= x;
            }
            Err(e) => {
                *errors
                    .entry(format!("client task failed: {e}"))
                    .or_default() += 1;
            }
        }
    }
    let end = Instant::now();
    // Exhausted during the warm-up: nothing was measured, and the time is the warm-up's.
    let seconds = end.saturating_duration_since(measured_from).as_secs_f64();
    if let Some(t) = ticker {
        t.abort();
        eprintln!();
    }
    latencies.sort();
    let mut all = latencies.clone();
    all.extend(&warmup);
    all.sort();
    let ok = ok.load(Ordering::Relaxed);
    Summary {
        scenario: scenario.into(),
        condition: condition.into(),
        clients: n,
        warmup_seconds: window.warmup.as_secs_f64(),
        warmup_ok: warmup.len() as u64,
        seconds,
        ok,
        failed: failed.load(Ordering::Relaxed),
        exhausted,
        per_second: if seconds > 0.0 {
            ok as f64 / seconds
        } else {
            0.0
        },
        p50_ms: percentile(&latencies, 0.50),
        p90_ms: percentile(&latencies, 0.90),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        p99_all_ms: percentile(&all, 0.99),
        max_all_ms: all.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        errors,
    }
}

/// The resident set size of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 0.5), 50.0);
        assert_eq!(percentile(&d, 0.99), 99.0);
        assert_eq!(percentile(&d, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&d[..1], 0.99), 1.0);
    }

    #[tokio::test]
    async fn run_counts_ok_failed_and_stops_when_exhausted() {
        let op: Op<u64> = Arc::new(|left: u64, i: u64| {
            Box::pin(async move {
                if left == 0 {
                    (0, Step::Exhausted)
                } else if i.is_multiple_of(3) {
                    (left - 1, Step::Failed("every third".into()))
                } else {
                    (left - 1, Step::Ok)
                }
            })
        });
        let window = Window {
            warmup: Duration::ZERO,
            measure: Duration::from_secs(30),
        };
        let s = run("t", "c", vec![6, 6], window, false, op).await;
        assert!(s.exhausted);
        assert_eq!(s.ok + s.failed, 12);
        assert_eq!(s.warmup_ok, 0);
        assert_eq!(s.errors.get("every third").copied(), Some(s.failed));
        assert!(s.failed >= 2, "{s:?}");
    }

    #[tokio::test]
    async fn warm_up_operations_are_counted_apart_and_failures_always() {
        // Each operation takes 100 ms and the warm-up is 150 ms: operations started at
        // about 0 and 100 ms are warm-up, those from about 200 ms on are measured.
        let op: Op<u64> = Arc::new(|c: u64, i: u64| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if i == 0 {
                    (c, Step::Failed("the very first".into()))
                } else {
                    (c, Step::Ok)
                }
            })
        });
        let window = Window {
            warmup: Duration::from_millis(150),
            measure: Duration::from_millis(400),
        };
        let s = run("t", "c", vec![0, 0], window, false, op).await;
        assert_eq!(s.failed, 1, "a warm-up failure still counts: {s:?}");
        assert!(s.warmup_ok >= 1, "{s:?}");
        assert!(s.ok >= 2, "{s:?}");
        assert!(
            s.seconds >= 0.4,
            "measured from the end of the warm-up: {s:?}"
        );
        assert!(s.p50_ms >= 100.0 && s.p99_all_ms >= s.p50_ms, "{s:?}");
    }
}
