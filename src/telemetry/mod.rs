//! Operations: Prometheus metrics and health endpoints for `run`.
//!
//! Every measurement has one home here, so a metric's name and labels are fixed in one place:
//! inputs by outcome, events by type, merges, stage latencies, batch sizes, outbox backlog and
//! consumer lag per partition.

pub mod events;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counts of what a batch did, for the summary and metrics.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub inputs: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub dlq: u64,
    pub events: BTreeMap<String, u64>,
    pub outbound: u64,
    pub inactivity_closes: u64,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        self.inputs += other.inputs;
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.dlq += other.dlq;
        self.outbound += other.outbound;
        self.inactivity_closes += other.inactivity_closes;
        for (k, v) in &other.events {
            *self.events.entry(k.clone()).or_default() += v;
        }
    }

    pub fn event(&self, kind: &str) -> u64 {
        self.events.get(kind).copied().unwrap_or(0)
    }
}

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Whether the service takes traffic: set once the consumer runs, cleared on shutdown.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Installs the process-wide metrics recorder (once; later calls reuse it).
pub fn recorder() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
            let recorder =
                PrometheusBuilder::new().set_buckets(&buckets).expect("static buckets").build_recorder();
            let handle = recorder.handle();
            // Another recorder (a test's) may be installed already; ours then only renders.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Serves `/metrics`, `/health/live`, `/health/ready` until the process ends.
pub async fn serve(addr: &str, handle: PrometheusHandle, ready: Readiness) -> anyhow::Result<SocketAddr> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("ops.listen {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route(
            "/metrics",
            get(|State((h, _)): State<(PrometheusHandle, Readiness)>| async move { h.render() }),
        )
        .route("/health/live", get(|| async { "live" }))
        .route(
            "/health/ready",
            get(|State((_, r)): State<(PrometheusHandle, Readiness)>| async move {
                if r.get() {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        )
        .with_state((handle, ready));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "ops endpoint stopped");
        }
    });
    Ok(local)
}

/// How long each stage of a batch took.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    /// Decoding, CRM lookups, opening the transaction and waiting for the project locks:
    /// under load, mostly the wait for another batch of the same project to commit.
    pub lock: Duration,
    pub prefetch: Duration,
    pub apply: Duration,
    pub commit: Duration,
}

impl Timings {
    /// Adds another batch's timings (totals over a run).
    pub fn add(&mut self, other: &Timings) {
        self.lock += other.lock;
        self.prefetch += other.prefetch;
        self.apply += other.apply;
        self.commit += other.commit;
    }
}

/// A committed batch: counts by outcome and type, and stage latencies.
pub fn batch_committed(stats: &Stats, timings: Timings) {
    counter!("appealflow_inputs_total", "outcome" => "applied").increment(stats.applied);
    counter!("appealflow_inputs_total", "outcome" => "duplicate").increment(stats.duplicates);
    counter!("appealflow_inputs_total", "outcome" => "dlq").increment(stats.dlq);
    counter!("appealflow_merges_total").increment(stats.event("client.merged"));
    counter!("appealflow_outbound_total").increment(stats.outbound);
    for (kind, n) in &stats.events {
        counter!("appealflow_events_total", "type" => kind.clone()).increment(*n);
    }
    histogram!("appealflow_batch_inputs").record(stats.inputs as f64);
    histogram!("appealflow_stage_seconds", "stage" => "lock").record(timings.lock.as_secs_f64());
    histogram!("appealflow_stage_seconds", "stage" => "prefetch").record(timings.prefetch.as_secs_f64());
    histogram!("appealflow_stage_seconds", "stage" => "apply").record(timings.apply.as_secs_f64());
    histogram!("appealflow_stage_seconds", "stage" => "commit").record(timings.commit.as_secs_f64());
}

/// Records committed but not yet acknowledged by the broker.
pub fn outbox_backlog(records: usize) {
    gauge!("appealflow_outbox_backlog").set(records as f64);
}

pub fn published(elapsed: Duration) {
    histogram!("appealflow_stage_seconds", "stage" => "publish").record(elapsed.as_secs_f64());
}

/// Inputs a partition holds in memory ahead of its batches, and whether its fetching is paused.
pub fn buffered(topic: &str, partition: i32, inputs: usize, paused: bool) {
    let labels = [("topic", topic.to_string()), ("partition", partition.to_string())];
    gauge!("appealflow_buffered_inputs", &labels).set(inputs as f64);
    gauge!("appealflow_partition_paused", &labels).set(if paused { 1.0 } else { 0.0 });
}

/// Messages of a partition not yet applied: high watermark minus the next offset to apply.
pub fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    gauge!("appealflow_consumer_lag", "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(lag as f64);
}

/// A CRM search answered from the cache, without a request.
pub fn crm_cache_hit(project: &str) {
    counter!("appealflow_crm_cache_hits_total", "project" => project.to_string()).increment(1);
}
