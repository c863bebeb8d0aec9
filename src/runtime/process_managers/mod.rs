//! Process-manager runners: the I/O half of the policies in `careflow_aggregates::policies`.
//!
//! [`ProcessManagers::start`] runs one task per process manager (eligibility, charges,
//! replenishment, purchase_approval, purchase_stock, claims, staffing), each on an actix arbiter thread of its
//! own: sending a command is an actor message, so the runners are async tasks (on threads, as
//! projections are, so one busy runner does not slow another). Each follows the global log from its own checkpoint, sends what
//! its policy asks through the same [`Registry`] as the HTTP path, keeps its timers as events
//! of `timers-<name>`, and checkpoints only after the commands are durable (see [`runner`]).
//!
//! This module does not decide anything about the flows (the policies do) and does not know
//! HTTP: `GET /v1/process-managers` reads [`ProcessManagers::statuses`].

mod runner;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use careflow_aggregates::policies::ProcessManager;
use careflow_aggregates::policies::approval_deadline::{ApprovalDeadline, ApprovalSettings};
use careflow_aggregates::policies::charges::Charges;
use careflow_aggregates::policies::claims::{Claims, ClaimsSettings};
use careflow_aggregates::policies::eligibility::{Eligibility, EligibilitySettings};
use careflow_aggregates::policies::merges::Merges;
use careflow_aggregates::policies::purchase_stock::PurchaseStock;
use careflow_aggregates::policies::replenishment::Replenishment;
use careflow_aggregates::policies::staffing::{StaffingRules, StaffingWatch};
use chrono::TimeDelta;
use tokio::sync::watch;

use self::runner::Deps;
use crate::config::Config;
use crate::operations::personal_data::EncryptingStore;
use crate::outbound::breaker::BreakerState;
use crate::outbound::payer::PayerClient;
use crate::runtime::actors::Registry;
use crate::runtime::consumers::checkpoint::CheckpointStore;
use crate::runtime::consumers::{ConsumerHealth, Consumers};
use crate::runtime::runner_thread::RunnerThread;
use crate::store::EventStore;

/// How the runners batch, wait and retry, and the policies' deadlines.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Most events read per batch (one checkpoint write per batch).
    pub batch: usize,
    /// Longest the runner sleeps without looking at its lease, its checks and the clock.
    pub idle_check: Duration,
    /// Pause before taking over after a failure or while another node owns the runner.
    pub retry_after: Duration,
    /// The first retry of a command, a timer append or a payer check; doubles up to
    /// `backoff_max`.
    pub retry_first: Duration,
    pub backoff_max: Duration,
    /// How often operators' retries of dead-lettered events are looked for.
    pub dead_letter_poll: Duration,
    pub eligibility: EligibilitySettings,
    pub approval: ApprovalSettings,
    /// The `[staffing]` rules.
    pub staffing: StaffingRules,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            idle_check: Duration::from_millis(500),
            retry_after: Duration::from_secs(1),
            retry_first: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            dead_letter_poll: Duration::from_secs(1),
            eligibility: EligibilitySettings::default(),
            approval: ApprovalSettings::default(),
            staffing: StaffingRules::default(),
        }
    }
}

impl ManagerConfig {
    /// The deadlines `config` names (`eligibility_deadline_seconds`,
    /// `approval_deadline_seconds`), the rest defaults.
    pub fn from_config(config: &Config) -> Self {
        let seconds = |s: u64| TimeDelta::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1_000));
        Self {
            eligibility: EligibilitySettings {
                payer_deadline: seconds(config.eligibility_deadline_seconds),
            },
            approval: ApprovalSettings {
                default_deadline: seconds(config.approval_deadline_seconds),
            },
            staffing: config.staffing.clone(),
            ..Self::default()
        }
    }
}

/// Where one process manager stands (`GET /v1/process-managers` shows it as
/// `http::process_managers::ProcessManagerView`).
#[derive(Debug, Clone)]
pub struct ProcessManagerStatus {
    pub name: &'static str,
    /// `running` (this node acts), `standby` (another node holds the lease), `retrying`
    /// (the store or the checkpoint table failed; starting over), `starting`, `stopped`,
    /// `disabled` (`process_managers = false`).
    pub status: &'static str,
    /// The checkpoint: every event up to it has been acted on.
    pub position: u64,
    /// Events committed to the store after the checkpoint.
    pub lag: u64,
    /// Commands sent by this node since it started.
    pub commands_sent: u64,
    /// Refused commands, poison events, store and payer failures on this node.
    pub failures: u64,
    pub timers_pending: usize,
    /// Payer checks waiting for an answer (eligibility only).
    pub checks_in_flight: usize,
    /// The payer's circuit breaker (`closed`, `half_open`, `open`), for the eligibility
    /// manager; `not_configured` without `payer_url`.
    pub breaker: Option<&'static str>,
    pub last_error: Option<String>,
}

/// The live figures a runner keeps for the status endpoint.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunnerStatus {
    pub position: u64,
    pub lag: u64,
    pub commands_sent: u64,
    pub failures: u64,
    pub timers_pending: usize,
    pub checks_in_flight: usize,
    pub last_error: Option<String>,
}

/// One runner's shared status.
pub(crate) struct RunnerHandle {
    name: &'static str,
    /// The runner's state for `/readyz`, the metrics and this module's status.
    pub health: ConsumerHealth,
    status: Mutex<RunnerStatus>,
}

/// The process managers of this node.
pub struct ProcessManagers {
    handles: Vec<Arc<RunnerHandle>>,
    tasks: Mutex<Vec<RunnerThread>>,
    stop: watch::Sender<bool>,
    checkpoints: Arc<dyn CheckpointStore>,
    store: Arc<dyn EventStore>,
    payer: Option<PayerClient>,
}

/// Every process manager this build runs, in a stable order.
pub const NAMES: [&str; 8] = [
    Eligibility::NAME,
    Charges::NAME,
    Replenishment::NAME,
    ApprovalDeadline::NAME,
    PurchaseStock::NAME,
    Claims::NAME,
    Merges::NAME,
    StaffingWatch::NAME,
];

impl ProcessManagers {
    /// Starts one runner per process manager, each on its own arbiter thread (or none when
    /// `enabled` is false: the status then says `disabled`). Must be called inside an actix
    /// system.
    pub fn start(
        personal: Arc<EncryptingStore>,
        registry: Arc<Registry>,
        consumers: &Consumers,
        payer: Option<PayerClient>,
        config: ManagerConfig,
        enabled: bool,
    ) -> Arc<Self> {
        let Consumers {
            feed,
            checkpoints,
            health,
            dead_letters,
            clock,
        } = consumers.clone();
        let store: Arc<dyn EventStore> = personal.clone();
        let (stop, stop_rx) = watch::channel(false);
        let handles: Vec<Arc<RunnerHandle>> = NAMES
            .iter()
            .map(|name| {
                Arc::new(RunnerHandle {
                    name,
                    health: health.register(name, enabled),
                    status: Mutex::new(RunnerStatus::default()),
                })
            })
            .collect();
        let mut tasks = Vec::new();
        if enabled {
            let deps = Arc::new(Deps {
                store: Arc::clone(&store),
                personal,
                feed,
                registry,
                checkpoints: Arc::clone(&checkpoints),
                payer: payer.clone(),
                config: config.clone(),
                dead_letters,
                stop: stop_rx,
                clock,
            });
            tasks.push(RunnerThread::start(Eligibility::NAME, {
                let (deps, handle) = (Arc::clone(&deps), Arc::clone(&handles[0]));
                let settings = config.eligibility.clone();
                move || runner::run::<Eligibility>(deps, handle, settings)
            }));
            tasks.push(RunnerThread::start(Charges::NAME, {
                let (deps, handle) = (Arc::clone(&deps), Arc::clone(&handles[1]));
                move || runner::run::<Charges>(deps, handle, ())
            }));
            tasks.push(RunnerThread::start(Replenishment::NAME, {
                let (deps, handle) = (Arc::clone(&deps), Arc::clone(&handles[2]));
                move || runner::run::<Replenishment>(deps, handle, ())
            }));
            tasks.push(RunnerThread::start(ApprovalDeadline::NAME, {
                let (deps, handle) = (Arc::clone(&deps), Arc::clone(&handles[3]));
                let settings = config.approval.clone();
                move || runner::run::<ApprovalDeadline>(deps, handle, settings)
            }));
            tasks.push(RunnerThread::start(PurchaseStock::NAME, {
                let (deps, handle) = (Arc::clone(&deps), Arc::clone(&handles[4]));
                move || runner::run::<PurchaseStock>(deps, handle, ())
            }));
            tasks.push(RunnerThread::start(Claims::NAME, {
                let (deps, handle) = (Arc::clone(&deps), Arc::clone(&handles[5]));
                move || runner::run::<Claims>(deps, handle, ClaimsSettings::default())
            }));
            tasks.push(RunnerThread::start(Merges::NAME, {
                let (deps, handle) = (Arc::clone(&deps), Arc::clone(&handles[6]));
                move || runner::run::<Merges>(deps, handle, ())
            }));
            tasks.push(RunnerThread::start(StaffingWatch::NAME, {
                let (deps, handle) = (Arc::clone(&deps), Arc::clone(&handles[7]));
                let settings = config.staffing.clone();
                move || runner::run::<StaffingWatch>(deps, handle, settings)
            }));
        }
        Arc::new(Self {
            handles,
            tasks: Mutex::new(tasks),
            stop,
            checkpoints,
            store,
            payer,
        })
    }

    /// Stops the runners (an action being retried is abandoned; its event is redelivered
    /// after the restart) and waits for them, at most `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        let _ = self.stop.send(true);
        let tasks = self
            .tasks
            .lock()
            .map(|mut tasks| std::mem::take(&mut *tasks))
            .unwrap_or_default();
        for task in tasks {
            // Ends the runner's thread (and its payer checks) whether or not it finished.
            task.stop(deadline).await;
        }
    }

    /// Every process manager's status. The position comes from the checkpoint table, so a
    /// standby node shows the owner's progress.
    pub async fn statuses(&self) -> Vec<ProcessManagerStatus> {
        let head = self.store.head_position().await.ok();
        let mut out = Vec::with_capacity(self.handles.len());
        for handle in &self.handles {
            let local = handle.status.lock().map(|s| s.clone()).unwrap_or_default();
            let position = match self.checkpoints.load(handle.name).await {
                Ok(Some(checkpoint)) => checkpoint.position,
                _ => local.position,
            };
            let breaker = (handle.name == Eligibility::NAME).then(|| match &self.payer {
                None => "not_configured",
                Some(payer) => match payer.breaker().state() {
                    BreakerState::Closed => "closed",
                    BreakerState::HalfOpen => "half_open",
                    BreakerState::Open => "open",
                },
            });
            out.push(ProcessManagerStatus {
                name: handle.name,
                status: handle.health.state().as_str(),
                position,
                lag: head.map_or(local.lag, |head| head.saturating_sub(position)),
                commands_sent: local.commands_sent,
                failures: local.failures,
                timers_pending: local.timers_pending,
                checks_in_flight: local.checks_in_flight,
                breaker,
                last_error: local.last_error,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests;
