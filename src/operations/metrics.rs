//! Prometheus metrics: one registry, one catalogue.
//!
//! Every metric careflow exports is declared here, named by STYLE.md's rule
//! (`careflow_` prefix, base units, `_total` on counters) with label values from bounded
//! sets only: backend names, command names, outcomes. Never a stream id, a patient id or an
//! error text. Call sites use the small functions below, so the catalogue stays in one file.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The metrics of one process.
pub struct Metrics {
    pub registry: Registry,
    append_duration: HistogramVec,
    commit_batch: HistogramVec,
    commit_duration: HistogramVec,
    commits: IntCounterVec,
    commands: IntCounterVec,
    command_duration: HistogramVec,
    actors_live: IntGauge,
    actor_activations: IntCounterVec,
    actor_passivations: IntCounterVec,
    conflicts_retried: IntCounterVec,
    http_requests: IntCounterVec,
    projection: ProjectionMetrics,
    breaker_state: IntGaugeVec,
    payer_requests: IntCounterVec,
    process_manager: ProcessManagerMetrics,
    outbound: OutboundMetrics,
    interop: InteropMetrics,
}

// Interop

/// What every inbound interface (`fhir`, `mllp`) exports, labelled by interface.
struct InteropMetrics {
    /// `outcome`: `received`, `acked`, or `nacked_{code}` with the interface's refusal code
    /// (FHIR: the OperationOutcome issue code; a bounded set).
    messages: IntCounterVec,
    in_flight: IntGaugeVec,
    oldest_unacked: GaugeVec,
    /// `cap`: `total` or `per_peer`.
    connections_refused: IntCounterVec,
}

/// Messages received and not yet answered, per interface: id -> when it arrived.
static UNACKED: std::sync::LazyLock<
    std::sync::Mutex<std::collections::BTreeMap<(&'static str, u64), std::time::Instant>>,
> = std::sync::LazyLock::new(Default::default);
static NEXT_MESSAGE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What every process-manager runner exports, labelled by its name (five values).
struct ProcessManagerMetrics {
    position: IntGaugeVec,
    lag_events: IntGaugeVec,
    commands: IntCounterVec,
    failures: IntCounterVec,
    timers_pending: IntGaugeVec,
}

/// What every projection runner exports, labelled by projection name (a bounded set).
struct ProjectionMetrics {
    position: IntGaugeVec,
    lag_events: IntGaugeVec,
    lag_seconds: GaugeVec,
    applied: IntCounterVec,
    errors: IntCounterVec,
    delay: HistogramVec,
    rebuild_position: IntGaugeVec,
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
            .buckets(latency_buckets.clone()),
            &["backend"],
        );
        let commits = IntCounterVec::new(
            Opts::new(
                "careflow_event_store_commits_total",
                "Group commits by backend",
            ),
            &["backend"],
        );
        let commands = IntCounterVec::new(
            Opts::new(
                "careflow_commands_total",
                "Commands handled by aggregate actors, by how they ended \
                 (appended, noop, duplicate, rejected, conflict, unavailable, error)",
            ),
            &["aggregate", "command", "outcome"],
        );
        let command_duration = HistogramVec::new(
            HistogramOpts::new(
                "careflow_command_duration_seconds",
                "Time an actor spends on one command: load, decide, durable append",
            )
            .buckets(latency_buckets),
            &["aggregate"],
        );
        let actors_live = IntGauge::new(
            "careflow_actors_live",
            "Aggregate actors the registry holds right now",
        );
        let actor_activations = IntCounterVec::new(
            Opts::new(
                "careflow_actor_activations_total",
                "Aggregate actors started (state rebuilt from a snapshot and the stream)",
            ),
            &["aggregate"],
        );
        let actor_passivations = IntCounterVec::new(
            Opts::new(
                "careflow_actor_passivations_total",
                "Aggregate actors passivated, by reason (idle, capacity)",
            ),
            &["reason"],
        );
        let conflicts_retried = IntCounterVec::new(
            Opts::new(
                "careflow_command_conflicts_retried_total",
                "Commands decided again after another writer appended to the stream first",
            ),
            &["aggregate"],
        );
        let http_requests = IntCounterVec::new(
            Opts::new(
                "careflow_http_requests_total",
                "HTTP requests answered, by route template and status class",
            ),
            &["route", "status"],
        );
        let projection = ProjectionMetrics {
            position: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "careflow_projection_position",
                        "Global position of the last event the live view reflects",
                    ),
                    &["projection"],
                ),
            ),
            lag_events: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "careflow_projection_lag_events",
                        "Events committed to the store that the live view does not reflect yet",
                    ),
                    &["projection"],
                ),
            ),
            lag_seconds: register(
                &registry,
                GaugeVec::new(
                    Opts::new(
                        "careflow_projection_lag_seconds",
                        "Age of the oldest event the live view does not reflect yet (0 when caught up)",
                    ),
                    &["projection"],
                ),
            ),
            applied: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "careflow_projection_events_applied_total",
                        "Events applied and committed, by projection and generation role (live, rebuild)",
                    ),
                    &["projection", "role"],
                ),
            ),
            errors: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "careflow_projection_errors_total",
                        "Batches that failed (an event the projection refused, or the view database)",
                    ),
                    &["projection"],
                ),
            ),
            delay: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "careflow_projection_delay_seconds",
                        "From an event's recorded_at to the commit of the live view that reflects it",
                    )
                    .buckets(vec![
                        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ]),
                    &["projection"],
                ),
            ),
            rebuild_position: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "careflow_projection_rebuild_position",
                        "Position a running rebuild has reached (0 when none runs)",
                    ),
                    &["projection"],
                ),
            ),
        };
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "careflow_circuit_breaker_state",
                "Circuit breaker per outside service: 0 closed, 1 half-open, 2 open",
            ),
            &["service"],
        );
        let payer_requests = IntCounterVec::new(
            Opts::new(
                "careflow_payer_requests_total",
                "Eligibility requests to the payer by outcome (eligible, not_in_force, denied, \
                 timeout, server_error, transport, malformed, circuit_open)",
            ),
            &["outcome"],
        );
        let gauge = |name: &str, help: &str| {
            register(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), &["process_manager"]),
            )
        };
        let process_manager = ProcessManagerMetrics {
            position: gauge(
                "careflow_process_manager_position",
                "Global position up to which the process manager has acted and checkpointed",
            ),
            lag_events: gauge(
                "careflow_process_manager_lag_events",
                "Events committed to the store that the process manager has not acted on yet",
            ),
            timers_pending: gauge(
                "careflow_process_manager_timers_pending",
                "Timers scheduled by the process manager that have neither fired nor been cancelled",
            ),
            commands: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "careflow_process_manager_commands_total",
                        "Commands a process manager sent, by outcome (appended, noop, duplicate, \
                         rejected, error)",
                    ),
                    &["process_manager", "outcome"],
                ),
            ),
            failures: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "careflow_process_manager_failures_total",
                        "Process-manager failures by reason (rejected, poison, store, payer)",
                    ),
                    &["process_manager", "reason"],
                ),
            ),
        };
        let outbound = OutboundMetrics::build(&registry);
        let interop = InteropMetrics {
            messages: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "careflow_interface_messages_total",
                        "Inbound interface messages by outcome: received; then FHIR acked or \
                         nacked_{code}, MLLP AA, AE or AR",
                    ),
                    &["interface", "outcome"],
                ),
            ),
            connections_refused: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "careflow_mllp_connections_refused_total",
                        "MLLP connections closed on arrival because a cap was reached (total or \
                         per_peer)",
                    ),
                    &["cap"],
                ),
            ),
            in_flight: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "careflow_interface_in_flight",
                        "Inbound messages received and not yet answered",
                    ),
                    &["interface"],
                ),
            ),
            oldest_unacked: register(
                &registry,
                GaugeVec::new(
                    Opts::new(
                        "careflow_interface_oldest_unacked_seconds",
                        "Age of the oldest inbound message not yet answered (0 when none)",
                    ),
                    &["interface"],
                ),
            ),
        };
        Self {
            interop,
            projection,
            process_manager,
            outbound,
            breaker_state: register(&registry, breaker_state),
            payer_requests: register(&registry, payer_requests),
            commands: register(&registry, commands),
            command_duration: register(&registry, command_duration),
            actors_live: register(&registry, actors_live),
            actor_activations: register(&registry, actor_activations),
            actor_passivations: register(&registry, actor_passivations),
            conflicts_retried: register(&registry, conflicts_retried),
            http_requests: register(&registry, http_requests),
            append_duration: register(&registry, append_duration),
            commit_batch: register(&registry, commit_batch),
            commit_duration: register(&registry, commit_duration),
            commits: register(&registry, commits),
            registry,
        }
    }

    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.refresh_oldest_unacked();
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Group commits so far and the commands they carried, for `careflow bench`'s report.
pub fn store_commit_totals(backend: &'static str) -> (u64, u64) {
    let h = global().commit_batch.with_label_values(&[backend]);
    (h.get_sample_count(), h.get_sample_sum() as u64)
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

/// One command handled by an aggregate actor.
pub fn command_handled(
    aggregate: &'static str,
    command: &'static str,
    outcome: &'static str,
    took: Duration,
) {
    let m = global();
    m.commands
        .with_label_values(&[aggregate, command, outcome])
        .inc();
    m.command_duration
        .with_label_values(&[aggregate])
        .observe(took.as_secs_f64());
}

/// A command decided again after a version conflict.
pub fn command_conflict_retried(aggregate: &'static str) {
    global()
        .conflicts_retried
        .with_label_values(&[aggregate])
        .inc();
}

/// The registry now holds `count` actors.
pub fn actors_live(count: usize) {
    global()
        .actors_live
        .set(i64::try_from(count).unwrap_or(i64::MAX));
}

/// An aggregate actor started.
pub fn actor_activated(aggregate: &'static str) {
    global()
        .actor_activations
        .with_label_values(&[aggregate])
        .inc();
}

/// `count` actors passivated for `reason` (`idle` or `capacity`).
pub fn actors_passivated(reason: &'static str, count: usize) {
    global()
        .actor_passivations
        .with_label_values(&[reason])
        .inc_by(count as u64);
}

/// One HTTP request answered; `route` is the route template (never the concrete path, which
/// holds ids).
pub fn http_request(route: &'static str, status: u16) {
    let class = match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    global()
        .http_requests
        .with_label_values(&[route, class])
        .inc();
}

/// A live view committed a batch up to `position`, with `head` the store's newest position
/// and `delays` the age of each of the batch's events at commit time.
pub fn projection_committed(
    projection: &'static str,
    position: u64,
    head: u64,
    oldest_unapplied_age: Option<Duration>,
    delays: impl Iterator<Item = Duration>,
) {
    let m = &global().projection;
    m.position
        .with_label_values(&[projection])
        .set(i64::try_from(position).unwrap_or(i64::MAX));
    m.lag_events
        .with_label_values(&[projection])
        .set(i64::try_from(head.saturating_sub(position)).unwrap_or(i64::MAX));
    m.lag_seconds
        .with_label_values(&[projection])
        .set(oldest_unapplied_age.map_or(0.0, |age| age.as_secs_f64()));
    let delay = m.delay.with_label_values(&[projection]);
    let mut count = 0;
    for took in delays {
        delay.observe(took.as_secs_f64());
        count += 1;
    }
    m.applied
        .with_label_values(&[projection, "live"])
        .inc_by(count);
}

/// A rebuild committed a batch up to `position` (0: no rebuild running).
pub fn projection_rebuilt(projection: &'static str, position: u64, events: usize) {
    let m = &global().projection;
    m.rebuild_position
        .with_label_values(&[projection])
        .set(i64::try_from(position).unwrap_or(i64::MAX));
    m.applied
        .with_label_values(&[projection, "rebuild"])
        .inc_by(events as u64);
}

/// A projection batch failed.
pub fn projection_error(projection: &'static str) {
    global()
        .projection
        .errors
        .with_label_values(&[projection])
        .inc();
}

/// The circuit breaker of `service` (`payer`, `odoo`) moved to `state` (0 closed, 1 half-open,
/// 2 open).
pub fn breaker_state(service: &'static str, state: i64) {
    global()
        .breaker_state
        .with_label_values(&[service])
        .set(state);
}

/// One eligibility request to the payer ended with `outcome` (a bounded word, never the
/// payer's text).
pub fn payer_request(outcome: &'static str) {
    global().payer_requests.with_label_values(&[outcome]).inc();
}

/// Where process manager `name` stands: its checkpoint and how far the log is ahead of it.
pub fn process_manager_progress(name: &'static str, position: u64, lag: u64, timers: usize) {
    let metrics = &global().process_manager;
    metrics
        .position
        .with_label_values(&[name])
        .set(i64::try_from(position).unwrap_or(i64::MAX));
    metrics
        .lag_events
        .with_label_values(&[name])
        .set(i64::try_from(lag).unwrap_or(i64::MAX));
    metrics
        .timers_pending
        .with_label_values(&[name])
        .set(i64::try_from(timers).unwrap_or(i64::MAX));
}

/// Process manager `name` sent a command that ended with `outcome`.
pub fn process_manager_command(name: &'static str, outcome: &'static str) {
    global()
        .process_manager
        .commands
        .with_label_values(&[name, outcome])
        .inc();
}

/// Process manager `name` failed for `reason` (a bounded word).
pub fn process_manager_failure(name: &'static str, reason: &'static str) {
    global()
        .process_manager
        .failures
        .with_label_values(&[name, reason])
        .inc();
}

/// The outbound publishers' metrics (NATS and webhooks, docs/interop.md "Outbound").
struct OutboundMetrics {
    nats_published: prometheus::IntCounter,
    nats_lag_events: IntGauge,
    nats_lag_seconds: prometheus::Histogram,
    webhook_deliveries: IntCounterVec,
}

impl OutboundMetrics {
    fn build(registry: &Registry) -> Self {
        Self {
            nats_published: register(
                registry,
                prometheus::IntCounter::new(
                    "careflow_nats_published_total",
                    "Events published to NATS JetStream and acknowledged (duplicates the stream \
                     dropped included)",
                ),
            ),
            nats_lag_events: register(
                registry,
                IntGauge::new(
                    "careflow_nats_lag_events",
                    "Events committed to the store that the NATS publisher has not had acknowledged yet",
                ),
            ),
            nats_lag_seconds: register(
                registry,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "careflow_nats_lag_seconds",
                        "From an event's recorded_at to JetStream's acknowledgement of its publication",
                    )
                    .buckets(vec![
                        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ]),
                ),
            ),
            webhook_deliveries: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "careflow_webhook_deliveries_total",
                        "Webhook delivery attempts by outcome (delivered, failed: to be retried, \
                         dead_lettered, redelivered: a dead letter retried successfully, \
                         retry_failed)",
                    ),
                    &["outcome"],
                ),
            ),
        }
    }
}

/// The NATS publisher had `count` events acknowledged, `delays` after their `recorded_at`,
/// and stands `lag` events behind the store's head.
pub fn nats_published(count: usize, lag: u64, delays: impl Iterator<Item = Duration>) {
    let m = &global().outbound;
    m.nats_published.inc_by(count as u64);
    m.nats_lag_events
        .set(i64::try_from(lag).unwrap_or(i64::MAX));
    for delay in delays {
        m.nats_lag_seconds.observe(delay.as_secs_f64());
    }
}

/// The NATS publisher's lag without a publication (caught up, or waiting for NATS).
pub fn nats_lag(lag: u64) {
    global()
        .outbound
        .nats_lag_events
        .set(i64::try_from(lag).unwrap_or(i64::MAX));
}

/// One webhook delivery attempt ended with `outcome` (a bounded word, see the help text).
pub fn webhook_delivery(outcome: &'static str) {
    global()
        .outbound
        .webhook_deliveries
        .with_label_values(&[outcome])
        .inc();
}

/// Dead letters by source and status (`src/dead_letters`), registered on first use; kept
/// here so the catalogue stays in one file.
static DEAD_LETTERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        &global().registry,
        IntGaugeVec::new(
            Opts::new(
                "careflow_dead_letters",
                "Dead letters by source (odoo, webhook, ...) and status (dead, parked, \
                 retry_requested, resolved, discarded)",
            ),
            &["source", "status"],
        ),
    )
});

/// `count` rows of `source` are in `status`.
pub fn dead_letters(source: &str, status: &'static str, count: i64) {
    DEAD_LETTERS.with_label_values(&[source, status]).set(count);
}

impl Metrics {
    /// Sets `careflow_interface_oldest_unacked_seconds` from the messages still in flight
    /// (a gauge only a scrape needs, so it is computed then).
    fn refresh_oldest_unacked(&self) {
        let Ok(unacked) = UNACKED.lock() else {
            return;
        };
        let mut oldest: std::collections::BTreeMap<&'static str, std::time::Instant> =
            std::collections::BTreeMap::new();
        for ((interface, _), since) in unacked.iter() {
            let entry = oldest.entry(interface).or_insert(*since);
            if since < entry {
                *entry = *since;
            }
        }
        // Only FHIR's requests are tracked here; MLLP sets its gauge from its lanes
        // (`interface_pending`).
        let age = oldest
            .get("fhir")
            .map_or(0.0, |since| since.elapsed().as_secs_f64());
        self.interop
            .oldest_unacked
            .with_label_values(&["fhir"])
            .set(age);
    }
}

/// One inbound message on its way through an interface; answer it with [`InFlight::acked`]
/// or [`InFlight::nacked`]. Dropped unanswered (the client went away mid-request), it counts
/// as `nacked_abandoned`.
pub struct InFlight {
    interface: &'static str,
    id: u64,
    done: bool,
}

/// A message arrived on `interface` (`fhir`, `mllp`).
pub fn interface_received(interface: &'static str) -> InFlight {
    let m = global();
    m.interop
        .messages
        .with_label_values(&[interface, "received"])
        .inc();
    m.interop.in_flight.with_label_values(&[interface]).inc();
    let id = NEXT_MESSAGE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut unacked) = UNACKED.lock() {
        unacked.insert((interface, id), std::time::Instant::now());
    }
    InFlight {
        interface,
        id,
        done: false,
    }
}

impl InFlight {
    /// The message was accepted (its events are durable).
    pub fn acked(mut self) {
        self.finish("acked");
    }

    /// The message was refused with `code` (from a bounded set: FHIR issue codes, HL7 ack
    /// codes).
    pub fn nacked(mut self, code: &'static str) {
        let outcome = match code {
            "structure" => "nacked_structure",
            "not-supported" => "nacked_not-supported",
            "required" => "nacked_required",
            "value" => "nacked_value",
            "invalid" => "nacked_invalid",
            "business-rule" => "nacked_business-rule",
            "conflict" => "nacked_conflict",
            "not-found" => "nacked_not-found",
            "security" => "nacked_security",
            "forbidden" => "nacked_forbidden",
            "login" => "nacked_login",
            "throttled" => "nacked_throttled",
            "transient" => "nacked_transient",
            "too-costly" => "nacked_too-costly",
            "exception" => "nacked_exception",
            _ => "nacked_other",
        };
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: &'static str) {
        if self.done {
            return;
        }
        self.done = true;
        let m = global();
        m.interop
            .messages
            .with_label_values(&[self.interface, outcome])
            .inc();
        m.interop
            .in_flight
            .with_label_values(&[self.interface])
            .dec();
        if let Ok(mut unacked) = UNACKED.lock() {
            unacked.remove(&(self.interface, self.id));
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.finish("nacked_abandoned");
    }
}

// Interop (MLLP side: the lanes report counts and ages themselves)

/// An inbound message arrived on `interface` (`mllp`), counted without an [`InFlight`]:
/// the MLLP lanes track what is unanswered themselves ([`interface_pending`]).
pub fn interface_arrived(interface: &'static str) {
    global()
        .interop
        .messages
        .with_label_values(&[interface, "received"])
        .inc();
}

/// An inbound message on `interface` was answered with `outcome` (`AA`, `AE`, `AR`).
pub fn interface_answered(interface: &'static str, outcome: &'static str) {
    global()
        .interop
        .messages
        .with_label_values(&[interface, outcome])
        .inc();
}

/// An MLLP connection was closed on arrival: `cap` (`total` or `per_peer`) was reached.
pub fn mllp_connection_refused(cap: &'static str) {
    global()
        .interop
        .connections_refused
        .with_label_values(&[cap])
        .inc();
}

/// Messages on `interface` waiting for their answer, and the age of the oldest.
pub fn interface_pending(interface: &'static str, in_flight: usize, oldest: Duration) {
    let metrics = &global().interop;
    metrics
        .in_flight
        .with_label_values(&[interface])
        .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
    metrics
        .oldest_unacked
        .with_label_values(&[interface])
        .set(oldest.as_secs_f64());
}

/// The Odoo executor's metrics, in the same registry, registered on first use (a node without
/// `odoo_url` exports none of them).
struct OdooMetrics {
    intents: IntCounterVec,
    retries: prometheus::IntCounter,
    lag_events: IntGauge,
    position: IntGauge,
    auth_failing: IntGauge,
}

static ODOO: LazyLock<OdooMetrics> = LazyLock::new(|| {
    let registry = &global().registry;
    OdooMetrics {
        intents: register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "careflow_odoo_intents_total",
                    "Odoo intents by model and outcome (done, dead_lettered, parked, retried, \
                     unparked, unmappable)",
                ),
                &["model", "outcome"],
            ),
        ),
        retries: register(
            registry,
            prometheus::IntCounter::new(
                "careflow_odoo_retries_total",
                "Odoo calls retried after a transport failure, a 5xx or an open breaker",
            ),
        ),
        lag_events: register(
            registry,
            IntGauge::new(
                "careflow_odoo_lag_events",
                "Events committed to the store that the Odoo executor has not checkpointed yet",
            ),
        ),
        position: register(
            registry,
            IntGauge::new(
                "careflow_odoo_position",
                "Global position up to which every Odoo intent is done or dead-lettered",
            ),
        ),
        auth_failing: register(
            registry,
            IntGauge::new(
                "careflow_odoo_auth_failing",
                "1 while Odoo refuses careflow's credentials (nothing is sent): alert on it",
            ),
        ),
    }
});

/// One Odoo intent of `model` (an Odoo model name, a bounded set) ended with `outcome`.
pub fn odoo_intent(model: &str, outcome: &'static str) {
    ODOO.intents.with_label_values(&[model, outcome]).inc();
}

/// One Odoo call is being retried.
pub fn odoo_retry() {
    ODOO.retries.inc();
}

/// Where the Odoo executor stands.
pub fn odoo_progress(position: u64, lag: u64) {
    ODOO.position
        .set(i64::try_from(position).unwrap_or(i64::MAX));
    ODOO.lag_events.set(i64::try_from(lag).unwrap_or(i64::MAX));
}

/// Odoo refuses (true) or accepts (false) careflow's credentials.
pub fn odoo_auth_failing(failing: bool) {
    ODOO.auth_failing.set(i64::from(failing));
}

/// Events read from the global log, by reader: `tail` (the feed's one reader: once per event,
/// whatever the number of consumers) or `catch_up` (a consumer behind the tail reading the
/// store itself). Registered on first use.
static LOG_READS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        &global().registry,
        IntCounterVec::new(
            Opts::new(
                "careflow_log_events_read_total",
                "Events read from the global log: reader=tail once per event for every \
                 consumer at the head, reader=catch_up by consumers behind the shared tail",
            ),
            &["reader"],
        ),
    )
});

/// The feed's tail: the last position read and how many events it holds.
static LOG_TAIL: LazyLock<(IntGauge, IntGauge)> = LazyLock::new(|| {
    (
        register(
            &global().registry,
            IntGauge::new(
                "careflow_log_tail_position",
                "The last position the log's reader has read",
            ),
        ),
        register(
            &global().registry,
            IntGauge::new(
                "careflow_log_tail_events",
                "Events the log's shared tail holds in memory",
            ),
        ),
    )
});

/// `count` events were read by `reader` (`tail` or `catch_up`).
pub fn log_events_read(reader: &'static str, count: usize) {
    LOG_READS.with_label_values(&[reader]).inc_by(count as u64);
}

/// The feed's reader has read up to `position` and holds `held` events.
pub fn log_tail(position: u64, held: usize) {
    let (last, events) = &*LOG_TAIL;
    last.set(i64::try_from(position).unwrap_or(i64::MAX));
    events.set(i64::try_from(held).unwrap_or(i64::MAX));
}

/// What every consumer of the log exports (`src/consumers`), labelled by consumer name (a
/// bounded set: the views, the process managers, odoo, nats, webhooks).
struct ConsumerMetrics {
    state: IntGaugeVec,
    position: IntGaugeVec,
    lag_events: IntGaugeVec,
    failures: IntCounterVec,
}

static CONSUMERS: LazyLock<ConsumerMetrics> = LazyLock::new(|| {
    let registry = &global().registry;
    ConsumerMetrics {
        state: register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "careflow_consumer_state",
                    "Each consumer of the log by state (starting, running, standby, retrying, \
                     stuck, stopped, disabled): 1 for the state it is in, 0 for the others",
                ),
                &["consumer", "state"],
            ),
        ),
        position: register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "careflow_consumer_position",
                    "The last position each consumer has handled",
                ),
                &["consumer"],
            ),
        ),
        lag_events: register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "careflow_consumer_lag_events",
                    "Events the log's reader has read that each consumer has not handled",
                ),
                &["consumer"],
            ),
        ),
        failures: register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "careflow_consumer_failures_total",
                    "Times each consumer failed (and started over) or halted at an event",
                ),
                &["consumer"],
            ),
        ),
    }
});

/// Consumer `name` is in the state marked true.
pub fn consumer_state<const N: usize>(name: &'static str, states: [(&'static str, bool); N]) {
    for (state, on) in states {
        CONSUMERS
            .state
            .with_label_values(&[name, state])
            .set(i64::from(on));
    }
}

/// Consumer `name` has handled everything up to `position`, `lag` events behind.
pub fn consumer_progress(name: &'static str, position: u64, lag: u64) {
    CONSUMERS
        .position
        .with_label_values(&[name])
        .set(i64::try_from(position).unwrap_or(i64::MAX));
    CONSUMERS
        .lag_events
        .with_label_values(&[name])
        .set(i64::try_from(lag).unwrap_or(i64::MAX));
}

/// Consumer `name` failed or halted.
pub fn consumer_failure(name: &'static str) {
    CONSUMERS.failures.with_label_values(&[name]).inc();
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

    /// Issue #15 part 5, defect 12: a Grafana panel queried `careflow_odoo_requests_total`,
    /// which careflow never exported, and panel texts said metrics were "not exported yet".
    /// Every metric the dashboard queries is one this catalogue registers.
    #[test]
    fn the_dashboard_queries_only_metrics_careflow_exports() {
        let dashboard = include_str!("../../docker/grafana/dashboards/careflow.json");
        let catalogue = include_str!("metrics.rs");
        assert!(
            !dashboard.contains("not export"),
            "a panel says a metric is missing"
        );
        let mut queried = Vec::new();
        for expr in dashboard.split("\"expr\": \"").skip(1) {
            let expr = expr.split('"').next().unwrap_or_default();
            let mut rest = expr;
            while let Some(at) = rest.find("careflow_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                queried.push(name);
            }
        }
        assert!(!queried.is_empty());
        for name in queried {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            assert!(
                catalogue.contains(&format!("\"{base}\"")),
                "the dashboard queries {name}, which careflow does not export"
            );
        }
    }
}
