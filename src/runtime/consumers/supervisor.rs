//! Run a consumer under its lease, start it over after a failure, stop it on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::checkpoint::{CheckpointStore, Lease};
use super::health::ConsumerHealth;
use crate::error_chain::error_chain;

/// Why a consumer's run under the lease ended.
#[derive(Debug)]
pub enum Exit {
    /// Shutdown was asked.
    Stopped,
    /// Another node holds the lease: stand by and ask again.
    NotOwner,
    /// The store, the checkpoint table, the lease or an outside system failed: start over
    /// from the checkpoint after a pause that doubles up to the backoff's maximum.
    Failed(String),
    /// A condition that will not clear by retrying at once (Odoo refusing the API key): wait
    /// `pause`, then start over.
    Suspended { error: String, pause: Duration },
}

impl Exit {
    /// A failure with its whole chain of causes in the text, so the status pages and the
    /// logs say why and not only what.
    pub fn failed(error: &(dyn std::error::Error + 'static)) -> Self {
        Exit::Failed(error_chain(error))
    }
}

/// Pauses between failed runs: `first`, doubling up to `max`; back to `first` after a run that
/// lasted at least `max`, or after standing by.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// Runs one consumer until shutdown.
pub struct Supervisor {
    pub name: &'static str,
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub health: ConsumerHealth,
    pub stop: watch::Receiver<bool>,
    pub backoff: Backoff,
}

impl Supervisor {
    /// Takes the consumer's lease and runs `own` with it until it returns, then acts on its
    /// [`Exit`]: stop, stand by, or pause (with backoff) and start over from the checkpoint.
    /// `own` reports progress to [`Supervisor::health`] itself; the supervisor reports the
    /// transitions (`standby`, `retrying`, `stopped`). `on_exit` sees every exit (a consumer's
    /// own status page, its metrics) before the pause.
    pub async fn run<F, Fut>(&self, mut own: F, mut on_exit: impl FnMut(&Exit))
    where
        F: FnMut(Box<dyn Lease>) -> Fut,
        Fut: Future<Output = Exit>,
    {
        let mut stop = self.stop.clone();
        let mut next_failure_pause = self.backoff.first;
        loop {
            if *stop.borrow() {
                break;
            }
            let started = std::time::Instant::now();
            let exit = match self.checkpoints.acquire(self.name).await {
                Ok(Some(lease)) => own(lease).await,
                Ok(None) => Exit::NotOwner,
                Err(error) => Exit::Failed(error.to_string()),
            };
            // A run that went on for a while was a clean one: the next failure pauses from
            // the start again, not from where an old streak of failures left the pause.
            if started.elapsed() >= self.backoff.max {
                next_failure_pause = self.backoff.first;
            }
            on_exit(&exit);
            let pause = match exit {
                Exit::Stopped => break,
                Exit::NotOwner => {
                    self.health.standby();
                    next_failure_pause = self.backoff.first;
                    self.backoff.first
                }
                Exit::Failed(error) => {
                    let pause = next_failure_pause;
                    tracing::warn!(consumer = self.name, %error, retry_in_ms = pause.as_millis() as u64, "consumer failed; starting over from its checkpoint");
                    self.health.retrying(&error);
                    next_failure_pause = (pause * 2).min(self.backoff.max);
                    pause
                }
                Exit::Suspended { error, pause } => {
                    self.health.retrying(&error);
                    pause
                }
            };
            if wait(&mut stop, pause).await {
                break;
            }
        }
        self.health.stopped();
    }
}

/// Sleeps `pause`; true when shutdown was asked meanwhile (or before).
pub async fn wait(stop: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
        () = tokio::time::sleep(pause) => false,
    }
}
