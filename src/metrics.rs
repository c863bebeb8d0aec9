//! Prometheus metrics: one registry, one catalogue.
//!
//! Every metric careflow exports is declared here, named by STYLE.md's rule
//! (`careflow_` prefix, base units, `_total` on counters) with label values from bounded
//! sets only: backend names, command names, outcomes. Never a stream id, a patient id or an
//! error text. Call sites use the small functions below, so the catalogue stays in one file.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The metrics of one process.
pub struct Metrics {
    pub registry: Registry,
    append_duration: HistogramVec,
    commit_batch: HistogramVec,
    commit_duration: HistogramVec,
    commits: IntCounterVec,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::build);

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn build() -> Self {
        let registry = Registry::new();
        let latency_buckets = vec![
            0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
            1.0, 2.5,
        ];
        let append_duration = HistogramVec::new(
            HistogramOpts::new(
                "careflow_event_store_append_duration_seconds",
                "Time from an append call to its durable acknowledgement",
            )
            .buckets(latency_buckets.clone()),
            &["backend"],
        );
        let commit_batch = HistogramVec::new(
            HistogramOpts::new(
                "careflow_event_store_commit_batch_commands",
                "Commands carried by one group commit",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
            ]),
            &["backend"],
        );
        let commit_duration = HistogramVec::new(
            HistogramOpts::new(
                "careflow_event_store_commit_duration_seconds",
                "Time one group commit takes, fsync included",
            )
            .buckets(latency_buckets),
            &["backend"],
        );
        let commits = IntCounterVec::new(
            Opts::new(
                "careflow_event_store_commits_total",
                "Group commits by backend",
            ),
            &["backend"],
        );
        Self {
            append_duration: register(&registry, append_duration),
            commit_batch: register(&registry, commit_batch),
            commit_duration: register(&registry, commit_duration),
            commits: register(&registry, commits),
            registry,
        }
    }

    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Registers a metric built from a static definition.
///
/// # Panics
/// Never in practice: definitions are constants and names unique, which the unit test below
/// proves by building the catalogue.
fn register<C>(registry: &Registry, metric: prometheus::Result<C>) -> C
where
    C: prometheus::core::Collector + Clone + 'static,
{
    match metric.and_then(|m| registry.register(Box::new(m.clone())).map(|()| m)) {
        Ok(m) => m,
        Err(error) => unreachable!("static metric definitions are valid and unique: {error}"),
    }
}

/// One append answered (durably) by `backend`.
pub fn store_append(backend: &'static str, took: Duration) {
    global()
        .append_duration
        .with_label_values(&[backend])
        .observe(took.as_secs_f64());
}

/// One group commit of `commands` appends.
pub fn store_commit(backend: &'static str, commands: usize, took: Duration) {
    let m = global();
    m.commit_batch
        .with_label_values(&[backend])
        .observe(commands as f64);
    m.commit_duration
        .with_label_values(&[backend])
        .observe(took.as_secs_f64());
    m.commits.with_label_values(&[backend]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_builds_and_renders_in_text_format() {
        store_commit("sqlite", 3, Duration::from_millis(1));
        let text = global().render();
        assert!(
            text.contains("careflow_event_store_commit_batch_commands_bucket{backend=\"sqlite\"")
        );
        assert!(text.contains("careflow_event_store_commits_total{backend=\"sqlite\"}"));
    }
}
