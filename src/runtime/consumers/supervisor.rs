//! Run a consumer under its lease, start it over after a failure, stop it on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::checkpoint::{CheckpointStore, Lease};
use super::health::ConsumerHealth;
use crate::error_chain::error_chain;

/// A follower of the log with a checkpoint, a lease and a loop of its own: a process manager,
/// the Odoo executor, the NATS publisher, the webhook runner.
///
/// The runtime does what every consumer would otherwise write again: take the lease, load
/// the checkpoint and decode the consumer's state, call [`Consumer::run`], and act on its
/// [`Exit`] (stop, stand by, pause with backoff and start over from the checkpoint). The
/// consumer writes only what is its own: what it does with events, and when it saves its
/// checkpoint (a process manager holds it back behind payer checks in flight; a publisher
/// moves it after the acks).
pub trait Consumer: Send + Sync {
    /// What the consumer carries from one event to the next, saved with its position as JSON
    /// (`()` for a consumer with none: stored as `null`).
    type State: Serialize + DeserializeOwned + Default + Send;

    /// The name of its checkpoint row, its lease and its health entry.
    fn name(&self) -> &'static str;

    /// Pauses between failed runs.
    fn backoff(&self) -> Backoff;

    /// A checkpoint whose state this build cannot read (an older shape, a damaged row). By
    /// default the consumer starts again from position 0 and folds its state anew from the
    /// log, which is safe for every consumer whose actions are idempotent by event (command
    /// ids, external ids, message ids). A consumer whose state is not derived from the log
    /// alone answers an [`Exit`] instead.
    fn unreadable_state(&self, error: serde_json::Error) -> Result<Resume<Self::State>, Exit> {
        tracing::warn!(consumer = self.name(), %error, "checkpointed state unreadable; replaying from position 0");
        Ok(Resume::default())
    }

    /// Follows the log from `from` while `lease` is held, and says why it stopped.
    fn run(
        &self,
        from: Resume<Self::State>,
        lease: Box<dyn Lease>,
    ) -> impl Future<Output = Exit> + Send;

    /// Sees every exit before the pause (a consumer's own status page, its metrics).
    fn exited(&self, _exit: &Exit) {}
}

/// Where a consumer starts: everything at and before `position` was acted on, and `state` is
/// what it folded from those events.
#[derive(Debug, Default)]
pub struct Resume<S> {
    pub position: u64,
    pub state: S,
}

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

/// Runs consumers until shutdown.
pub struct Supervisor {
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub health: ConsumerHealth,
    pub stop: watch::Receiver<bool>,
}

impl Supervisor {
    /// Takes the consumer's lease, resumes it from its checkpoint and runs it until it
    /// returns, then acts on its [`Exit`]: stop, stand by, or pause (with backoff) and start
    /// over from the checkpoint. The consumer reports its progress to [`Supervisor::health`]
    /// itself; the supervisor reports the transitions (`standby`, `retrying`, `stopped`).
    pub async fn run<C: Consumer>(&self, consumer: &C) {
        let name = consumer.name();
        let backoff = consumer.backoff();
        let mut stop = self.stop.clone();
        let mut next_failure_pause = backoff.first;
        loop {
            if *stop.borrow() {
                break;
            }
            let started = std::time::Instant::now();
            let exit = match self.checkpoints.acquire(name).await {
                Ok(Some(lease)) => match self.resume(consumer).await {
                    Ok(from) => consumer.run(from, lease).await,
                    Err(exit) => exit,
                },
                Ok(None) => Exit::NotOwner,
                Err(error) => Exit::failed(&error),
            };
            // A run that went on for a while was a clean one: the next failure pauses from
            // the start again, not from where an old streak of failures left the pause.
            if started.elapsed() >= backoff.max {
                next_failure_pause = backoff.first;
            }
            consumer.exited(&exit);
            let pause = match exit {
                Exit::Stopped => break,
                Exit::NotOwner => {
                    self.health.standby();
                    next_failure_pause = backoff.first;
                    backoff.first
                }
                Exit::Failed(error) => {
                    let pause = next_failure_pause;
                    tracing::warn!(consumer = name, %error, retry_in_ms = pause.as_millis() as u64, "consumer failed; starting over from its checkpoint");
                    self.health.retrying(&error);
                    next_failure_pause = (pause * 2).min(backoff.max);
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

    /// The consumer's checkpoint, its state decoded.
    async fn resume<C: Consumer>(&self, consumer: &C) -> Result<Resume<C::State>, Exit> {
        match self.checkpoints.load(consumer.name()).await {
            Ok(Some(checkpoint)) => match serde_json::from_str(&checkpoint.state) {
                Ok(state) => Ok(Resume {
                    position: checkpoint.position,
                    state,
                }),
                Err(error) => consumer.unreadable_state(error),
            },
            Ok(None) => Ok(Resume::default()),
            Err(error) => Err(Exit::failed(&error)),
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::runtime::consumers::checkpoint::{Checkpoint, SqliteCheckpoints};
    use crate::runtime::consumers::{ConsumerReport, ConsumerState, Health};

    /// Remembers where each run started; asks for shutdown after `runs` runs.
    struct Probe {
        runs: usize,
        refuse_unreadable: bool,
        started: Mutex<Vec<(u64, String)>>,
        stop: watch::Sender<bool>,
    }

    impl Consumer for Probe {
        type State = String;

        fn name(&self) -> &'static str {
            "probe"
        }

        fn backoff(&self) -> Backoff {
            Backoff {
                first: Duration::from_millis(1),
                max: Duration::from_millis(4),
            }
        }

        fn unreadable_state(&self, error: serde_json::Error) -> Result<Resume<String>, Exit> {
            if self.refuse_unreadable {
                Err(Exit::failed(&error))
            } else {
                Ok(Resume::default())
            }
        }

        async fn run(&self, from: Resume<String>, _lease: Box<dyn Lease>) -> Exit {
            self.started
                .lock()
                .unwrap()
                .push((from.position, from.state));
            Exit::Failed("probe failed".into())
        }

        fn exited(&self, _exit: &Exit) {
            if self.started.lock().unwrap().len() >= self.runs {
                self.stop.send_replace(true);
            }
        }
    }

    async fn supervise(
        checkpoint: &str,
        runs: usize,
        refuse_unreadable: bool,
    ) -> (Vec<(u64, String)>, ConsumerReport) {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = SqliteCheckpoints::open(dir.path().join("checkpoints.db")).unwrap();
        let saved = Checkpoint {
            position: 7,
            state: checkpoint.to_owned(),
        };
        checkpoints.save("probe", &saved).await.unwrap();
        let (stop, stopped) = watch::channel(false);
        let probe = Probe {
            runs,
            refuse_unreadable,
            started: Mutex::default(),
            stop,
        };
        let health = Health::new();
        let supervisor = Supervisor {
            checkpoints: Arc::new(checkpoints),
            health: health.register("probe", true),
            stop: stopped,
        };
        supervisor.run(&probe).await;
        let report = health.reports().into_iter().next().unwrap();
        (probe.started.into_inner().unwrap(), report)
    }

    #[tokio::test]
    async fn each_run_starts_from_the_checkpoint_and_its_decoded_state() {
        let (started, report) = supervise("\"folded\"", 2, false).await;
        assert_eq!(started, vec![(7, "folded".to_owned()); 2]);
        assert_eq!(report.state, ConsumerState::Stopped);
        assert_eq!(report.last_error.as_deref(), Some("probe failed"));
    }

    #[tokio::test]
    async fn an_unreadable_state_replays_from_zero_unless_the_consumer_refuses() {
        let (started, _) = supervise("{not json", 2, false).await;
        assert_eq!(started, vec![(0, String::new()); 2]);

        // Refused: the consumer is not run; the supervisor retries (here: once, then stop).
        let (started, report) = supervise("{not json", 0, true).await;
        assert!(started.is_empty());
        assert!(
            report.last_error.as_deref().unwrap().contains("line 1"),
            "{report:?}"
        );
    }
}
