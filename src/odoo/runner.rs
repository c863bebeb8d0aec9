//! The executor's task: follow the log from the checkpoint, fold the mapping, run the
//! intents, checkpoint; serve operators' retries between batches.
//!
//! The checkpoint moves past a batch only once every intent of it is done, dead-lettered or
//! parked, so a crash (or a lost lease) redelivers the batch, and re-executing an intent
//! finds what the first run created (external id, natural key, state) instead of creating it
//! again. The mapping state is written in the same row as the position, as the process
//! managers do, so a restart never pairs one with the other's moment.
//!
//! Authentication failures stop the work: the batch is abandoned (its checkpoint is not
//! written), `careflow_odoo_auth_failing` turns 1, an ERROR is logged, and the login is tried
//! again every `auth_retry` (slowly: Odoo locks a client out after repeated failures).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use careflow_projections::odoo::{MappingState, OdooIntent, map_event};
use tokio::sync::watch;

use super::batch::{self, Abort};
use super::client::ErrorClass;
use super::perform::Session;
use super::{CHECKPOINT, Deps, ExecutorStatus, SOURCE, intent_of};
use crate::dead_letters::DeadLetterStatus;
use crate::metrics;
use crate::process_managers::checkpoint::Checkpoint;

/// Why the executor gave up its ownership.
enum Exit {
    Stopped,
    NotOwner,
    /// Odoo refused the credentials.
    Auth(String),
    /// The store, the checkpoint table, the dead letters or the lease failed.
    Failed(String),
}

impl From<Abort> for Exit {
    fn from(abort: Abort) -> Self {
        match abort {
            Abort::Stopped => Exit::Stopped,
            Abort::Auth(error) => Exit::Auth(error),
            Abort::Failed(error) => Exit::Failed(error),
        }
    }
}

pub(crate) async fn run(deps: Arc<Deps>, status: Arc<Mutex<ExecutorStatus>>) {
    let mut stop = deps.stop.clone();
    let mut pause = deps.config.retry_first;
    metrics::odoo_auth_failing(false);
    loop {
        if *stop.borrow() {
            break;
        }
        match own(&deps, &status).await {
            Exit::Stopped => break,
            Exit::NotOwner => {
                update(&status, |s| s.status = "standby");
                pause = Duration::from_secs(1);
            }
            Exit::Auth(error) => {
                tracing::error!(%error, retry_in_s = deps.config.auth_retry.as_secs(), "Odoo refused careflow's credentials: nothing is sent to Odoo until the API key is fixed");
                metrics::odoo_auth_failing(true);
                update(&status, |s| {
                    s.status = "auth_failed";
                    s.last_error = Some(error);
                });
                pause = deps.config.auth_retry;
            }
            Exit::Failed(error) => {
                tracing::warn!(%error, "Odoo executor failed; starting over from its checkpoint");
                update(&status, |s| {
                    s.status = "retrying";
                    s.last_error = Some(error);
                });
                pause = (pause * 2).clamp(deps.config.retry_first, deps.config.backoff_max);
            }
        }
        if wait(&mut stop, pause).await {
            break;
        }
    }
    update(&status, |s| s.status = "stopped");
}

fn update(status: &Mutex<ExecutorStatus>, f: impl FnOnce(&mut ExecutorStatus)) {
    if let Ok(mut status) = status.lock() {
        f(&mut status);
    }
}

/// Sleeps `pause`; true when shutdown was asked meanwhile.
pub(crate) async fn wait(stop: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
        () = tokio::time::sleep(pause) => false,
    }
}

async fn own(deps: &Arc<Deps>, status: &Arc<Mutex<ExecutorStatus>>) -> Exit {
    let lease = match deps.checkpoints.acquire(CHECKPOINT).await {
        Ok(Some(lease)) => lease,
        Ok(None) => return Exit::NotOwner,
        Err(error) => return Exit::Failed(error.to_string()),
    };
    let (mut processed, mut state) = match deps.checkpoints.load(CHECKPOINT).await {
        Ok(Some(checkpoint)) => match serde_json::from_str::<MappingState>(&checkpoint.state) {
            Ok(state) => (checkpoint.position, state),
            Err(error) => {
                // A state this build cannot read: rebuild it from the log. Re-executing the
                // intents of the replay creates nothing (external ids).
                tracing::warn!(%error, "Odoo mapping state unreadable; replaying from position 0");
                (0, MappingState::default())
            }
        },
        Ok(None) => (0, MappingState::default()),
        Err(error) => return Exit::Failed(error.to_string()),
    };
    match deps.client.authenticate().await {
        Ok(uid) => {
            metrics::odoo_auth_failing(false);
            tracing::info!(uid, position = processed, "Odoo executor running");
        }
        Err(error) if error.class() == ErrorClass::Auth => return Exit::Auth(error.to_string()),
        Err(error) => return Exit::Failed(error.to_string()),
    }
    update(status, |s| {
        s.status = "running";
        s.position = processed;
    });
    let session = Arc::new(Session::new(
        deps.client.clone(),
        Arc::clone(&deps.store),
        Arc::clone(&deps.registry),
    ));
    let mut stop = deps.stop.clone();
    let mut head = deps.store.head_watch();
    let mut last_poll: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            return Exit::Stopped;
        }
        if !lease.is_held() {
            return Exit::Failed("the Odoo executor's lease was lost".into());
        }
        if last_poll.is_none_or(|at| at.elapsed() >= deps.config.dead_letter_poll) {
            if let Err(exit) = serve_dead_letters(deps, &session, status).await {
                return exit;
            }
            last_poll = Some(Instant::now());
        }

        head.borrow_and_update();
        let events = match deps.store.read_all(processed + 1, deps.config.batch).await {
            Ok(events) => events,
            Err(error) => return Exit::Failed(error.to_string()),
        };
        let mut intents: Vec<OdooIntent> = Vec::new();
        for event in &events {
            match map_event(&mut state, event) {
                Ok(mapped) => intents.extend(mapped),
                Err(error) => {
                    // The mapping cannot read this event: nothing Odoo could be told about
                    // it. Logged and counted, like a process manager's poison event.
                    tracing::warn!(position = event.position, event_id = %event.event_id, event_type = %event.event_type, %error, "event skipped by the Odoo mapping");
                    metrics::odoo_intent("none", "unmappable");
                }
            }
        }
        if !intents.is_empty() {
            let open: HashSet<String> = match deps.dead_letters.open_keys(SOURCE).await {
                Ok(keys) => keys.into_iter().collect(),
                Err(error) => return Exit::Failed(error.to_string()),
            };
            let outcome = match batch::execute(deps, &session, intents, open).await {
                Ok(outcome) => outcome,
                Err(abort) => return abort.into(),
            };
            update(status, |s| {
                s.intents_done += outcome.done;
                s.dead_lettered += outcome.dead_lettered;
            });
        }
        if let Some(last) = events.last() {
            processed = last.position;
            let snapshot = match serde_json::to_string(&state) {
                Ok(snapshot) => snapshot,
                Err(error) => {
                    return Exit::Failed(format!("mapping state does not serialise: {error}"));
                }
            };
            let checkpoint = Checkpoint {
                position: processed,
                state: snapshot,
            };
            if let Err(error) = deps.checkpoints.save(CHECKPOINT, &checkpoint).await {
                return Exit::Failed(error.to_string());
            }
        }
        let head_position = deps.store.head_position().await.unwrap_or(processed);
        let lag = head_position.saturating_sub(processed);
        metrics::odoo_progress(processed, lag);
        update(status, |s| {
            s.status = "running";
            s.position = processed;
            s.lag = lag;
        });
        if events.len() == deps.config.batch {
            continue;
        }
        let mut sleep_for = deps.config.idle_check.min(deps.config.dead_letter_poll);
        if let Some(interval) = deps.store.poll_interval() {
            sleep_for = sleep_for.min(interval);
        }
        tokio::select! {
            changed = head.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(sleep_for).await;
                }
            }
            () = tokio::time::sleep(sleep_for) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Runs what operators asked for (`POST /v1/dead-letters/{id}/retry`), then the parked
/// intents of every key whose head is no longer in the way (resolved or discarded), in order.
async fn serve_dead_letters(
    deps: &Arc<Deps>,
    session: &Arc<Session>,
    status: &Arc<Mutex<ExecutorStatus>>,
) -> Result<(), Exit> {
    let failed = |error: crate::dead_letters::DeadLetterError| Exit::Failed(error.to_string());
    let requests = deps
        .dead_letters
        .retry_requests(SOURCE)
        .await
        .map_err(failed)?;
    for letter in requests {
        let intent = match intent_of(&letter.payload) {
            Ok(intent) => intent,
            Err(error) => {
                deps.dead_letters
                    .failed_again(
                        letter.id,
                        &format!("the dead letter is not an Odoo intent: {error}"),
                    )
                    .await
                    .map_err(failed)?;
                continue;
            }
        };
        match batch::attempt(deps, session, &intent)
            .await
            .map_err(Exit::from)?
        {
            Attempt::Done => {
                deps.dead_letters.resolve(letter.id).await.map_err(failed)?;
                tracing::info!(id = letter.id, key = %intent.key, "dead-lettered Odoo intent retried and done");
                metrics::odoo_intent(&intent.model, "retried");
                update(status, |s| s.intents_done += 1);
            }
            Attempt::Poison(error) => {
                deps.dead_letters
                    .failed_again(letter.id, &error)
                    .await
                    .map_err(failed)?;
                tracing::warn!(id = letter.id, key = %intent.key, %error, "dead-lettered Odoo intent failed again");
            }
            // Odoo is down: the request stays; the next poll tries again.
            Attempt::Later => return Ok(()),
        }
    }
    let keys = deps.dead_letters.open_keys(SOURCE).await.map_err(failed)?;
    for key in keys {
        let rows = deps
            .dead_letters
            .open_for_key(SOURCE, &key)
            .await
            .map_err(failed)?;
        for letter in rows {
            if letter.status != DeadLetterStatus::Parked {
                // A dead or retry-requested intent still heads the key.
                break;
            }
            let intent = match intent_of(&letter.payload) {
                Ok(intent) => intent,
                Err(error) => {
                    deps.dead_letters
                        .failed_again(
                            letter.id,
                            &format!("the dead letter is not an Odoo intent: {error}"),
                        )
                        .await
                        .map_err(failed)?;
                    break;
                }
            };
            match batch::attempt(deps, session, &intent)
                .await
                .map_err(Exit::from)?
            {
                Attempt::Done => {
                    deps.dead_letters.resolve(letter.id).await.map_err(failed)?;
                    metrics::odoo_intent(&intent.model, "unparked");
                    update(status, |s| s.intents_done += 1);
                }
                Attempt::Poison(error) => {
                    deps.dead_letters
                        .failed_again(letter.id, &error)
                        .await
                        .map_err(failed)?;
                    break;
                }
                Attempt::Later => return Ok(()),
            }
        }
    }
    Ok(())
}

/// How one try of a dead-lettered intent went.
pub(crate) enum Attempt {
    Done,
    /// Odoo refused it again (the error text).
    Poison(String),
    /// Odoo is unreachable: try again at the next poll.
    Later,
}
