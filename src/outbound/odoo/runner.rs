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
use std::time::Instant;

use careflow_aggregates::RecordedEvent;
use careflow_projections::ProjectionError;
use careflow_projections::odoo::{MappingState, OdooIntent, map_event};

use super::batch::{self, Abort};
use super::client::ErrorClass;
use super::perform::Session;
use super::{CHECKPOINT, Deps, ExecutorStatus, MAPPING_SOURCE, SOURCE, intent_of};
use crate::error_chain::error_chain;
use crate::operations::dead_letters::{DeadLetterError, DeadLetterStatus, NewDeadLetter};
use crate::operations::metrics;
use crate::runtime::consumers::checkpoint::{Checkpoint, Lease};
use crate::runtime::consumers::{Backoff, Consumer, Exit, Resume, Supervisor};

/// Why a batch stopped, as the supervisor acts on it.
fn exit_of(abort: Abort, deps: &Deps) -> Exit {
    match abort {
        Abort::Stopped => Exit::Stopped,
        Abort::Auth(error) => auth_failed(error, deps),
        Abort::Failed(error) => Exit::Failed(error),
    }
}

/// Odoo refused the credentials: wait `auth_retry` (slowly: Odoo locks a client out after
/// repeated failures) before logging in again.
fn auth_failed(error: String, deps: &Deps) -> Exit {
    Exit::Suspended {
        error: format!("Odoo refused careflow's credentials: {error}"),
        pause: deps.config.auth_retry,
    }
}

pub(crate) async fn run(deps: Arc<Deps>, status: Arc<Mutex<ExecutorStatus>>) {
    metrics::odoo_auth_failing(false);
    let supervisor = Supervisor {
        checkpoints: Arc::clone(&deps.checkpoints),
        health: deps.health.clone(),
        stop: deps.stop.clone(),
    };
    let executor = Executor { deps, status };
    supervisor.run(&executor).await;
    update(&executor.status, |s| s.status = "stopped");
}

/// The executor as a consumer of the log. Its state is the mapping (careflow ids to what
/// Odoo needs to know of them); an unreadable one is folded again from position 0, and
/// re-executing the intents of the replay creates nothing (external ids).
struct Executor {
    deps: Arc<Deps>,
    status: Arc<Mutex<ExecutorStatus>>,
}

impl Consumer for Executor {
    type State = MappingState;

    fn name(&self) -> &'static str {
        CHECKPOINT
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            first: self.deps.config.retry_first,
            max: self.deps.config.backoff_max,
        }
    }

    async fn run(&self, from: Resume<MappingState>, lease: Box<dyn Lease>) -> Exit {
        own(&self.deps, &self.status, from, lease).await
    }

    fn exited(&self, exit: &Exit) {
        let status = &self.status;
        match exit {
            Exit::NotOwner => update(status, |s| s.status = "standby"),
            Exit::Suspended { error, pause } => {
                tracing::error!(%error, retry_in_s = pause.as_secs(), "nothing is sent to Odoo until the API key is fixed");
                metrics::odoo_auth_failing(true);
                update(status, |s| {
                    s.status = "auth_failed";
                    s.last_error = Some(error.clone());
                });
            }
            Exit::Failed(error) => update(status, |s| {
                s.status = "retrying";
                s.last_error = Some(error.clone());
            }),
            Exit::Stopped => {}
        }
    }
}

fn update(status: &Mutex<ExecutorStatus>, f: impl FnOnce(&mut ExecutorStatus)) {
    if let Ok(mut status) = status.lock() {
        f(&mut status);
    }
}

async fn own(
    deps: &Arc<Deps>,
    status: &Arc<Mutex<ExecutorStatus>>,
    from: Resume<MappingState>,
    lease: Box<dyn Lease>,
) -> Exit {
    let Resume {
        position: mut processed,
        mut state,
    } = from;
    match deps.client.authenticate().await {
        Ok(uid) => {
            metrics::odoo_auth_failing(false);
            tracing::info!(uid, position = processed, "Odoo executor running");
        }
        Err(error) if error.class() == ErrorClass::Auth => {
            return auth_failed(error.to_string(), deps);
        }
        Err(error) => return Exit::Failed(error.to_string()),
    }
    update(status, |s| {
        s.status = "running";
        s.position = processed;
    });
    let session = Arc::new(
        Session::new(
            deps.client.clone(),
            Arc::clone(&deps.store),
            Arc::clone(&deps.registry),
            deps.clock.clone(),
        )
        .with_partner_details(deps.config.partner_details),
    );
    let mut stop = deps.stop.clone();
    let mut head = deps.feed.head_watch();
    let mut last_poll: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            return Exit::Stopped;
        }
        if !lease.is_held() {
            return Exit::Failed("the Odoo executor's lease was lost".into());
        }
        if last_poll.is_none_or(|at| at.elapsed() >= deps.config.dead_letter_poll) {
            if let Err(exit) = retry_unmapped(deps, &session, status, &mut state).await {
                return exit;
            }
            if let Err(exit) = serve_dead_letters(deps, &session, status).await {
                return exit;
            }
            last_poll = Some(Instant::now());
        }

        head.borrow_and_update();
        let events = match deps.feed.read(processed + 1, deps.config.batch).await {
            Ok(events) => events,
            Err(error) => return Exit::Failed(error.to_string()),
        };
        let mut intents: Vec<OdooIntent> = Vec::new();
        for event in &events {
            match map_event(&mut state, event) {
                Ok(mapped) => intents.extend(mapped),
                Err(error) => {
                    if let Err(exit) = unmappable(deps, event, &error).await {
                        return exit;
                    }
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
                Err(abort) => return exit_of(abort, deps),
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
        let lag = deps.feed.head().saturating_sub(processed);
        metrics::odoo_progress(processed, lag);
        deps.health.running(processed, lag);
        update(status, |s| {
            s.status = "running";
            s.position = processed;
            s.lag = lag;
        });
        // Behind the head: read on. A read may return less than a batch without being at the
        // head (the feed hands out one chunk of its tail at a time), so only an empty read
        // means caught up.
        if !events.is_empty() {
            continue;
        }
        let sleep_for = deps.config.idle_check.min(deps.config.dead_letter_poll);
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

/// An event the mapping cannot read (it does not decode, or it needs context the state does
/// not have): nothing Odoo could be told about it yet. It goes to the dead letters as
/// [`MAPPING_SOURCE`], keyed by its stream, and the executor goes on; a retry after the fix
/// maps it again ([`retry_unmapped`]).
async fn unmappable(
    deps: &Deps,
    event: &RecordedEvent,
    error: &ProjectionError,
) -> Result<(), Exit> {
    let error = error_chain(error);
    tracing::warn!(position = event.position, event_id = %event.event_id, event_type = %event.event_type, %error, "event dead-lettered: the Odoo mapping cannot read it");
    metrics::odoo_intent("none", "unmappable");
    let letter = NewDeadLetter {
        source: MAPPING_SOURCE.to_owned(),
        key: event.stream_id.to_string(),
        event_id: event.event_id,
        position: event.position,
        payload: serde_json::json!({
            "event_type": event.event_type,
            "schema_version": event.schema_version,
        }),
        error: error.clone(),
        attempts: 1,
    };
    deps.dead_letters
        .record(letter, DeadLetterStatus::Dead)
        .await
        .map_err(|e| Exit::failed(&e))?;
    deps.health.noted(&format!(
        "event at position {} dead-lettered: {error}",
        event.position
    ));
    Ok(())
}

/// Maps again the unmappable events an operator asked to retry (after the fix), against the
/// mapping as it stands now, and performs what they map to; one that still does not map
/// stays dead with the new error.
async fn retry_unmapped(
    deps: &Arc<Deps>,
    session: &Arc<Session>,
    status: &Arc<Mutex<ExecutorStatus>>,
    state: &mut MappingState,
) -> Result<(), Exit> {
    let failed = |error: DeadLetterError| Exit::failed(&error);
    let requests = deps
        .dead_letters
        .retry_requests(MAPPING_SOURCE)
        .await
        .map_err(failed)?;
    for letter in requests {
        let read = deps
            .feed
            .read(letter.position, 1)
            .await
            .map_err(|e| Exit::failed(&e))?;
        let mapped = match read.iter().find(|e| e.event_id == letter.event_id) {
            None => Err("the event is not at its recorded position".to_owned()),
            Some(event) => map_event(state, event).map_err(|e| error_chain(&e)),
        };
        match mapped {
            Ok(intents) => {
                let open: HashSet<String> = deps
                    .dead_letters
                    .open_keys(SOURCE)
                    .await
                    .map_err(failed)?
                    .into_iter()
                    .collect();
                let outcome = batch::execute(deps, session, intents, open)
                    .await
                    .map_err(|abort| exit_of(abort, deps))?;
                update(status, |s| {
                    s.intents_done += outcome.done;
                    s.dead_lettered += outcome.dead_lettered;
                });
                deps.dead_letters.resolve(letter.id).await.map_err(failed)?;
                tracing::info!(
                    id = letter.id,
                    position = letter.position,
                    "dead-lettered event mapped and sent to Odoo"
                );
            }
            Err(error) => {
                deps.dead_letters
                    .failed_again(letter.id, &error)
                    .await
                    .map_err(failed)?;
                tracing::warn!(id = letter.id, %error, "dead-lettered event still does not map");
            }
        }
    }
    Ok(())
}

/// Runs what operators asked for (`POST /v1/dead-letters/{id}/retry`), then the parked
/// intents of every key whose head is no longer in the way (resolved or discarded), in order.
async fn serve_dead_letters(
    deps: &Arc<Deps>,
    session: &Arc<Session>,
    status: &Arc<Mutex<ExecutorStatus>>,
) -> Result<(), Exit> {
    let failed =
        |error: crate::operations::dead_letters::DeadLetterError| Exit::Failed(error.to_string());
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
            .map_err(|abort| exit_of(abort, deps))?
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
                .map_err(|abort| exit_of(abort, deps))?
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
