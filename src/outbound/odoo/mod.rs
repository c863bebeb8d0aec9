//! The Odoo executor: keeps Odoo (the hospital's ERP) in step with the log, exactly once,
//! through outages.
//!
//! The pure half lives in `careflow_projections::odoo`: `map_event` folds events into
//! [`OdooIntent`]s keyed by their pinned external id (module `careflow`). This module does the
//! I/O:
//! - [`client`]: Odoo's JSON-RPC API (`common.authenticate`, `object.execute_kw`), its error
//!   envelope and the circuit breaker (service `odoo`);
//! - [`perform`]: one intent as Odoo calls, idempotent on re-execution: external id first,
//!   then a natural key, then create, then the external id right after (API-NOTES §3.3), and
//!   for the multi-step intents (post, pay, confirm, receive, bill, cancel, consume) the
//!   record's state is read before each step;
//! - [`batch`]: a batch of intents run with bounded concurrency per model, each intent after
//!   the earlier intents of its key and of the records it refers to;
//! - [`runner`]: the task that follows the log from its checkpoint (`odoo` in the process
//!   managers' checkpoint table, holding the mapping state beside the position), owns the
//!   work through the same lease (one node at a time on PostgreSQL), dead-letters poison
//!   intents (source `odoo`), parks later intents of the same key, and serves operators'
//!   retries.
//!
//! It does not decide what Odoo should hold (the mapping does) and knows no HTTP route.

pub mod batch;
pub mod client;
pub mod perform;
mod runner;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use careflow_projections::odoo::OdooIntent;
use tokio::sync::{oneshot, watch};

use crate::clock::Clock;
use crate::operations::dead_letters::DeadLetters;
use crate::runtime::actors::Registry;
use crate::runtime::consumers::checkpoint::CheckpointStore;
use crate::runtime::consumers::{ConsumerHealth, Consumers};
use crate::store::{EventStore, LogFeed};

pub use client::{ErrorClass, OdooClient, OdooError, OdooSettings};

/// The dead-letter source of Odoo intents.
pub const SOURCE: &str = "odoo";
/// The dead-letter source of events the Odoo mapping cannot read (keyed by stream id).
pub const MAPPING_SOURCE: &str = "odoo:mapping";
/// The executor's row in the checkpoint table (beside the process managers').
pub const CHECKPOINT: &str = "odoo";

/// How the executor batches, waits and retries.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Most events read per batch (one checkpoint write per batch).
    pub batch: usize,
    /// Most intents of one Odoo model in flight at once.
    pub per_model: usize,
    /// The first retry of a failed call; doubles up to `backoff_max`, jittered.
    pub retry_first: Duration,
    pub backoff_max: Duration,
    /// Pause before logging in again after Odoo refused the credentials: slow, because
    /// Odoo locks a client out after 5 failures within a minute (API-NOTES §1.5).
    pub auth_retry: Duration,
    /// How often the executor looks for operators' retries and discards.
    pub dead_letter_poll: Duration,
    /// Longest the runner sleeps without looking at its lease and the log.
    pub idle_check: Duration,
    /// What a patient's partner carries (config `odoo_partner_details`).
    pub partner_details: crate::config::PartnerDetails,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            batch: 512,
            per_model: 16,
            retry_first: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            auth_retry: Duration::from_secs(30),
            dead_letter_poll: Duration::from_secs(1),
            idle_check: Duration::from_millis(500),
            partner_details: crate::config::PartnerDetails::Mrn,
        }
    }
}

/// What the executor shares with its task.
pub(crate) struct Deps {
    /// The log as the actors see it (the executor sends `RecordPurchaseOrder` and appends
    /// acknowledgements through it).
    pub store: Arc<dyn EventStore>,
    /// The log as this process reads it.
    pub feed: Arc<LogFeed>,
    pub registry: Arc<Registry>,
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub dead_letters: DeadLetters,
    pub client: OdooClient,
    pub config: ExecutorConfig,
    pub health: ConsumerHealth,
    pub stop: watch::Receiver<bool>,
    /// Dates the acknowledgements and the commands the executor sends.
    pub clock: Clock,
}

/// Where the executor stands, for logs, tests and the bench.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExecutorStatus {
    /// `starting`, `running`, `standby` (another node holds the lease), `auth_failed`,
    /// `retrying`, `stopped`.
    pub status: &'static str,
    pub position: u64,
    pub lag: u64,
    pub intents_done: u64,
    pub dead_lettered: u64,
    pub last_error: Option<String>,
}

/// The running executor of this node.
pub struct OdooExecutor {
    status: Arc<Mutex<ExecutorStatus>>,
    stop: watch::Sender<bool>,
    thread: Mutex<Option<(actix_rt::Arbiter, oneshot::Receiver<()>)>>,
}

impl OdooExecutor {
    /// Starts the executor on an actix arbiter thread of its own (commands to the purchase
    /// aggregate are actor messages). Must be called inside an actix system.
    pub fn start(
        consumers: &Consumers,
        registry: Arc<Registry>,
        client: OdooClient,
        config: ExecutorConfig,
    ) -> Arc<Self> {
        let Consumers {
            feed,
            checkpoints,
            health,
            dead_letters,
            clock,
        } = consumers.clone();
        let (stop, stop_rx) = watch::channel(false);
        let status = Arc::new(Mutex::new(ExecutorStatus {
            status: "starting",
            ..ExecutorStatus::default()
        }));
        let deps = Arc::new(Deps {
            store: Arc::clone(feed.store()),
            feed,
            registry,
            checkpoints,
            dead_letters,
            client,
            config,
            health: health.register(CHECKPOINT, true),
            stop: stop_rx,
            clock,
        });
        let arbiter = actix_rt::Arbiter::new();
        let (tx, done) = oneshot::channel();
        let shared = Arc::clone(&status);
        let started = arbiter.spawn_fn(move || {
            actix_rt::spawn(async move {
                runner::run(deps, shared).await;
                let _ = tx.send(());
            });
        });
        if !started {
            tracing::error!("the Odoo executor's thread did not start");
        }
        Arc::new(Self {
            status,
            stop,
            thread: Mutex::new(Some((arbiter, done))),
        })
    }

    pub fn status(&self) -> ExecutorStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the executor (an intent being retried is abandoned; its event is redelivered
    /// after the restart and re-executed idempotently) and waits for it, at most `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        let _ = self.stop.send(true);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some((arbiter, done)) = thread {
            if tokio::time::timeout(deadline, done).await.is_err() {
                tracing::warn!("the Odoo executor overran the shutdown deadline");
            }
            arbiter.stop();
            let _ = tokio::task::spawn_blocking(move || arbiter.join()).await;
        }
    }
}

/// The intent a dead letter holds.
///
/// # Errors
/// The serde error when the payload is not an intent (written by another build).
pub fn intent_of(payload: &serde_json::Value) -> Result<OdooIntent, serde_json::Error> {
    serde_json::from_value(payload.clone())
}
