//! Metrics: one `prometheus-client` registry per engine, encoded by `GET /metrics` in the
//! OpenMetrics text format. Counters of outcomes keep the names operators' dashboards know
//! (`arbiter_requests_ok_total`, ...); histograms give the distributions: request latency
//! by route and status, TPM command latency by command, quote batch sizes, evaluation
//! times and store commit sizes. The TPM and the store own their parts ([`TpmMetrics`],
//! [`StoreMetrics`]) and update them from their own threads; the engine registers them.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The media type of [`CONTENT_TYPE`], as the OpenAPI document names it.
pub const MEDIA_TYPE: &str = "application/openmetrics-text";

/// A histogram family whose members are made by a plain function.
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latencies from 0.5 ms to about 65 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// Sizes from 1 to 4,096.
fn size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// The labels of a request: its route (the API table's name, `unmatched` when none) and
/// the answer's status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's name, e.g. `GetResult`.
    pub route: String,
    /// The HTTP status answered.
    pub status: u16,
}

/// The label of a TPM command: the typed method of the TPM handle that ran it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// e.g. `quote`, `pcr_extend`, `sign`.
    pub command: &'static str,
}

/// The label of an instance count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// The label of an evaluation's outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `succeeded` or `failed`.
    pub outcome: &'static str,
}

/// The TPM owner thread's metrics: command latencies and the queue in front of it.
#[derive(Debug, Clone)]
pub struct TpmMetrics {
    command_duration: HistogramFamily<CommandLabels>,
    queue_depth: Gauge,
    requests_refused: Counter,
}

impl Default for TpmMetrics {
    fn default() -> Self {
        Self {
            command_duration: Family::new_with_constructor(latency_histogram),
            queue_depth: Gauge::default(),
            requests_refused: Counter::default(),
        }
    }
}

impl TpmMetrics {
    /// A command was queued.
    pub fn queued(&self) {
        self.queue_depth.inc();
    }

    /// A queued command left the queue (it runs now, or was dropped).
    pub fn dequeued(&self) {
        self.queue_depth.dec();
    }

    /// A client request was refused because too many already wait for or use the TPM.
    pub fn refused(&self) {
        self.requests_refused.inc();
    }

    /// A command ran for `took`.
    pub fn ran(&self, command: &'static str, took: Duration) {
        self.command_duration
            .get_or_create(&CommandLabels { command })
            .observe(took.as_secs_f64());
    }
}

/// The store writer's metrics: how many writes each group commit carried, how long it took.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    commit_writes: Histogram,
    commit_duration: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            commit_writes: size_histogram(),
            commit_duration: latency_histogram(),
        }
    }
}

impl StoreMetrics {
    /// A group transaction of `writes` writes was committed (or failed) in `took`.
    pub fn committed(&self, writes: usize, took: Duration) {
        self.commit_writes.observe(writes as f64);
        self.commit_duration.observe(took.as_secs_f64());
    }
}

/// The engine's metrics and the registry holding them all.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered successfully.
    pub requests_ok: Counter,
    /// Requests refused (4xx).
    pub requests_refused: Counter,
    /// Requests failed (5xx).
    pub requests_failed: Counter,
    /// TLS handshakes refused.
    pub handshakes_refused: Counter,
    /// Connections closed at once (their address held its share).
    pub connections_refused: Counter,
    /// Inputs accepted.
    pub inputs_accepted: Counter,
    /// Evaluations that succeeded.
    pub evaluations_succeeded: Counter,
    /// Evaluations that failed.
    pub evaluations_failed: Counter,
    request_duration: HistogramFamily<RequestLabels>,
    evaluation_duration: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    quote_batch_size: Histogram,
    instances: Family<StateLabels, Gauge>,
}

impl Metrics {
    /// A registry with the engine's metrics and those of its TPM and store.
    pub fn new(tpm: &TpmMetrics, store: &StoreMetrics) -> Self {
        let mut registry = Registry::with_prefix("arbiter");
        let m = Self {
            requests_ok: Counter::default(),
            requests_refused: Counter::default(),
            requests_failed: Counter::default(),
            handshakes_refused: Counter::default(),
            connections_refused: Counter::default(),
            inputs_accepted: Counter::default(),
            evaluations_succeeded: Counter::default(),
            evaluations_failed: Counter::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            evaluation_duration: Family::new_with_constructor(latency_histogram),
            quote_batch_size: size_histogram(),
            instances: Family::default(),
            registry: Registry::default(),
        };
        let counters = [
            (
                "requests_ok",
                "Requests answered successfully.",
                &m.requests_ok,
            ),
            (
                "requests_refused",
                "Requests refused (4xx).",
                &m.requests_refused,
            ),
            (
                "requests_failed",
                "Requests failed (5xx).",
                &m.requests_failed,
            ),
            (
                "tls_handshakes_refused",
                "TLS handshakes refused.",
                &m.handshakes_refused,
            ),
            (
                "connections_refused",
                "Connections closed at once: their address held its share.",
                &m.connections_refused,
            ),
            ("inputs_accepted", "Inputs accepted.", &m.inputs_accepted),
            (
                "evaluations_succeeded",
                "Evaluations that succeeded.",
                &m.evaluations_succeeded,
            ),
            (
                "evaluations_failed",
                "Evaluations that failed.",
                &m.evaluations_failed,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its answer, by route and status.",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        registry.register_with_unit(
            "tpm_command_duration",
            "Time a TPM command ran on the TPM owner thread, by command.",
            Unit::Seconds,
            tpm.command_duration.clone(),
        );
        registry.register(
            "tpm_queue_depth",
            "TPM commands queued for the owner thread, not yet running.",
            tpm.queue_depth.clone(),
        );
        registry.register(
            "tpm_requests_refused",
            "Client requests refused with 503 busy because `[limits] max_tpm_requests_queued` \
             requests already waited for or used the TPM.",
            tpm.requests_refused.clone(),
        );
        registry.register(
            "quote_batch_size",
            "Attestation requests answered by one TPM quote.",
            m.quote_batch_size.clone(),
        );
        registry.register_with_unit(
            "evaluation_duration",
            "Time an evaluation took in the sandbox, by outcome.",
            Unit::Seconds,
            m.evaluation_duration.clone(),
        );
        registry.register(
            "store_commit_writes",
            "Writes carried by one group commit of the store.",
            store.commit_writes.clone(),
        );
        registry.register_with_unit(
            "store_commit_duration",
            "Time one group commit of the store took, fsync included.",
            Unit::Seconds,
            store.commit_duration.clone(),
        );
        registry.register("instances", "Instances by state.", m.instances.clone());
        Self { registry, ..m }
    }

    /// A request on `route` was answered `status` after `took`.
    pub fn request(&self, route: String, status: u16, took: Duration) {
        self.request_duration
            .get_or_create(&RequestLabels { route, status })
            .observe(took.as_secs_f64());
    }

    /// An evaluation ended (`succeeded` or not) after `took`; also counts it.
    pub fn evaluation(&self, succeeded: bool, took: Duration) {
        let outcome = if succeeded {
            self.evaluations_succeeded.inc();
            "succeeded"
        } else {
            self.evaluations_failed.inc();
            "failed"
        };
        self.evaluation_duration
            .get_or_create(&OutcomeLabels { outcome })
            .observe(took.as_secs_f64());
    }

    /// One quote answered `leaves` attestation requests.
    pub fn quote_batch(&self, leaves: usize) {
        self.quote_batch_size.observe(leaves as f64);
    }

    /// The OpenMetrics text of every metric, the instance counts set to `instance_counts`
    /// first (states absent from it are dropped).
    pub fn encode(&self, instance_counts: &[(String, u64)]) -> String {
        self.instances.clear();
        for (state, n) in instance_counts {
            self.instances
                .get_or_create(&StateLabels {
                    state: state.clone(),
                })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_under_their_names_and_histograms_with_samples() {
        let tpm = TpmMetrics::default();
        let store = StoreMetrics::default();
        let m = Metrics::new(&tpm, &store);
        m.requests_refused.inc();
        m.request("GetResult".into(), 200, Duration::from_millis(3));
        tpm.ran("quote", Duration::from_millis(40));
        store.committed(3, Duration::from_millis(2));
        let text = m.encode(&[("open".into(), 1)]);
        assert!(text.contains("arbiter_requests_refused_total 1"), "{text}");
        assert!(
            text.contains("arbiter_instances{state=\"open\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "arbiter_http_request_duration_seconds_count{route=\"GetResult\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("arbiter_tpm_command_duration_seconds_count{command=\"quote\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("arbiter_store_commit_writes_sum 3.0"),
            "{text}"
        );
        // A state no longer present is dropped.
        let text = m.encode(&[]);
        assert!(!text.contains("state=\"open\""), "{text}");
    }
}
