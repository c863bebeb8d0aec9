//! Every consumer's state in one place, for `/readyz`, the metrics and the status routes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::operations::metrics;

/// How long a consumer may keep failing (retrying from its checkpoint) before `/readyz`
/// reports it: long enough that a PostgreSQL restart or a network blip does not flap the
/// node's readiness, short enough that an operator hears of a real outage within a minute.
pub const FAILING_AFTER: Duration = Duration::from_secs(30);

/// Where a consumer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerState {
    /// Registered, not running yet.
    Starting,
    /// Following the log on this node.
    Running,
    /// Another node holds the lease and does the work.
    Standby,
    /// Failed; starting over from its checkpoint after a pause.
    Retrying,
    /// Halted at an event it cannot get past (a view refusing an event): it retries the same
    /// event, and nothing after it is applied until someone fixes the cause.
    Stuck,
    /// Shut down.
    Stopped,
    /// Turned off by configuration.
    Disabled,
}

impl ConsumerState {
    /// The state's name, as the status routes and the metric label spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Standby => "standby",
            Self::Retrying => "retrying",
            Self::Stuck => "stuck",
            Self::Stopped => "stopped",
            Self::Disabled => "disabled",
        }
    }

    const ALL: [Self; 7] = [
        Self::Starting,
        Self::Running,
        Self::Standby,
        Self::Retrying,
        Self::Stuck,
        Self::Stopped,
        Self::Disabled,
    ];
}

/// One consumer as `/readyz` and the console see it.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerReport {
    pub name: &'static str,
    pub state: ConsumerState,
    /// The last position it has fully handled.
    pub position: u64,
    /// Events the log's reader has read that it has not handled yet.
    pub lag: u64,
    pub last_error: Option<String>,
    /// Seconds in the current state.
    pub for_seconds: f64,
}

#[derive(Debug, Clone)]
struct Entry {
    state: ConsumerState,
    since: Instant,
    position: u64,
    lag: u64,
    last_error: Option<String>,
}

/// The consumers of one process.
#[derive(Debug, Default)]
pub struct Health {
    consumers: Mutex<BTreeMap<&'static str, Entry>>,
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Registers `name` (in state `starting`, or `disabled`) and returns its handle.
    pub fn register(self: &Arc<Self>, name: &'static str, enabled: bool) -> ConsumerHealth {
        let handle = ConsumerHealth {
            name,
            health: Arc::clone(self),
        };
        handle.set(
            if enabled {
                ConsumerState::Starting
            } else {
                ConsumerState::Disabled
            },
            |_| {},
        );
        handle
    }

    /// Every consumer, by name.
    pub fn reports(&self) -> Vec<ConsumerReport> {
        let Ok(consumers) = self.consumers.lock() else {
            return Vec::new();
        };
        consumers
            .iter()
            .map(|(name, entry)| ConsumerReport {
                name,
                state: entry.state,
                position: entry.position,
                lag: entry.lag,
                last_error: entry.last_error.clone(),
                for_seconds: entry.since.elapsed().as_secs_f64(),
            })
            .collect()
    }

    /// The consumers that keep the node from being ready: stuck, or failing for longer than
    /// [`FAILING_AFTER`].
    pub fn failing(&self) -> Vec<ConsumerReport> {
        self.reports()
            .into_iter()
            .filter(|r| {
                r.state == ConsumerState::Stuck
                    || (r.state == ConsumerState::Retrying
                        && r.for_seconds >= FAILING_AFTER.as_secs_f64())
            })
            .collect()
    }
}

/// One consumer's handle on [`Health`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConsumerHealth {
    name: &'static str,
    health: Arc<Health>,
}

impl ConsumerHealth {
    /// Handled everything up to `position`, `lag` events behind the log's reader.
    pub fn running(&self, position: u64, lag: u64) {
        self.set(ConsumerState::Running, |entry| {
            entry.position = position;
            entry.lag = lag;
        });
        metrics::consumer_progress(self.name, position, lag);
    }

    /// Another node holds the lease.
    pub fn standby(&self) {
        self.set(ConsumerState::Standby, |_| {});
    }

    /// Failed with `error`; starting over after a pause.
    pub fn retrying(&self, error: &str) {
        self.set(ConsumerState::Retrying, |entry| {
            entry.last_error = Some(error.to_owned());
        });
        metrics::consumer_failure(self.name);
    }

    /// Halted at the event at `position` with `error`.
    pub fn stuck(&self, position: u64, error: &str) {
        self.set(ConsumerState::Stuck, |entry| {
            entry.last_error = Some(format!("halted at position {position}: {error}"));
        });
        metrics::consumer_failure(self.name);
    }

    /// Records an error that did not stop the consumer (a poison event dead-lettered).
    pub fn noted(&self, error: &str) {
        if let Ok(mut consumers) = self.health.consumers.lock()
            && let Some(entry) = consumers.get_mut(self.name)
        {
            entry.last_error = Some(error.to_owned());
        }
    }

    pub fn stopped(&self) {
        self.set(ConsumerState::Stopped, |_| {});
    }

    /// The state it is in now.
    pub fn state(&self) -> ConsumerState {
        self.health
            .consumers
            .lock()
            .ok()
            .and_then(|c| c.get(self.name).map(|e| e.state))
            .unwrap_or(ConsumerState::Stopped)
    }

    fn set(&self, state: ConsumerState, update: impl FnOnce(&mut Entry)) {
        if let Ok(mut consumers) = self.health.consumers.lock() {
            let entry = consumers.entry(self.name).or_insert_with(|| Entry {
                state,
                since: Instant::now(),
                position: 0,
                lag: 0,
                last_error: None,
            });
            if entry.state != state {
                entry.state = state;
                entry.since = Instant::now();
            }
            update(entry);
        }
        metrics::consumer_state(
            self.name,
            ConsumerState::ALL.map(|c| (c.as_str(), c == state)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stuck_consumer_fails_readiness_at_once_and_a_retrying_one_only_after_a_while() {
        let health = Health::new();
        let views = health.register("billing", true);
        let nats = health.register("nats", true);
        views.running(10, 0);
        nats.retrying("connection refused");
        assert!(
            health.failing().is_empty(),
            "retrying briefly is not failing"
        );
        views.stuck(11, "the projection refused it");
        let failing = health.failing();
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].name, "billing");
        assert_eq!(
            failing[0].last_error.as_deref(),
            Some("halted at position 11: the projection refused it")
        );
        views.running(12, 0);
        assert!(health.failing().is_empty(), "running again clears it");
    }
}
