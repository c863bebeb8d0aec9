//! `careflow bench`: throughput and latency of the durable paths.
//!
//! `append` drives an event store in-process; `activate` times cold actor activations;
//! `http` drives a running server over HTTP, as an upstream system would. Both print figures in the same `name: value` lines, which
//! docs/performance.md quotes.

mod activate;
mod append;
mod audit;
mod fhir;
mod flows;
mod http;
mod mllp;
mod nats;
mod rebuild;

pub use activate::{ActivateBench, ActivateReport, activate};
pub use append::{AppendBench, AppendReport, StreamChoice, append};
pub use audit::{ReplayBench, ReplayBenchReport, VerifyBench, VerifyBenchReport, replay, verify};
pub use fhir::{FhirBench, FhirReport, fhir};
pub use flows::{ChargesBench, ChargesReport, TimersBench, TimersReport, charges, timers};
pub use http::{HttpBench, HttpReport, http};
pub use mllp::{MllpBench, MllpReport, mllp};
pub use nats::{NatsBench, NatsReport, nats};
pub use rebuild::{RebuildBench, RebuildReport, rebuild};

use std::time::Duration;

use hdrhistogram::Histogram;

/// A latency histogram in microseconds, from 1 µs to 60 s.
fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| anyhow::anyhow!("histogram: {e}"))
}

/// Removes a throw-away SQLite database: the file, its WAL and shared memory, and the lock
/// file a writer leaves beside it (`bench-x.db` -> `bench-x.db-wal`, `bench-x.lock`).
fn remove_sqlite_files(db: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let _ = std::fs::remove_file(db.with_extension("lock"));
}

fn quantile(h: &Histogram<u64>, q: f64) -> Duration {
    Duration::from_micros(h.value_at_quantile(q))
}

/// The HTTP-driven benches' refused answers as `status=count ...`, or `none`.
fn failures_line(failures: &std::collections::BTreeMap<u16, u64>) -> String {
    if failures.is_empty() {
        return "none".to_owned();
    }
    failures
        .iter()
        .map(|(status, n)| format!("{status}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
