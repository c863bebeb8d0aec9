//! One process manager's runner: a task that follows the global log from its checkpoint and
//! does what the policy asks.
//!
//! Per event: `Trigger::from_recorded`, `P::react(state, trigger)`, then, in this order,
//! timer cancellations and schedules (appended to `timers-<name>`), the commands (through the
//! actor [`Registry`], exactly as the HTTP path sends them, under the policy's deterministic
//! command id with `check_duplicate`), and payer checks (spawned: they may take until their
//! deadline). Only then `P::evolve`. After each batch, the position and the folded state are
//! written together. A crash anywhere before that write redelivers the events; their command
//! ids repeat, and the store answers a repeat with the first result, so nothing is applied
//! twice.
//!
//! A payer check still in flight holds the checkpoint back to just before its registration
//! (a low-water mark): after a crash the registration is redelivered and the check asked
//! again, unless its `RecordEligibility` is already stored. A claim submission to the payer
//! (the claims policy's [`ClaimSubmission`]) is a payer call of the same kind: held back the
//! same way, skipped once its `RecordClaimResponse` is stored or the claim has moved on.
//!
//! Failures: a command the aggregate refuses (409/422) is logged with its ids, counted, and
//! not retried (it would be refused again); a store that is unavailable, or a version
//! conflict that outlasted the actor's retries, is retried with backoff for as long as it
//! takes, without moving the checkpoint. An event that does not decode, or that a policy
//! cannot address, is poison: logged, counted, skipped.
//!
//! The timer loop lives in the same task: the runner folds its timer stream into [`Timers`]
//! when it starts (so a timer that fell due while careflow was down is due at once), sleeps
//! until the next due time or new events, and appends `TimerFired` under a command id derived
//! from the timer id: a firing repeated after a crash is a no-op. The fired event reaches the
//! policy through the log like any other.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use careflow_aggregates::claim::ClaimStatus;
use careflow_aggregates::personal::PERSONAL_FIELD;
use careflow_aggregates::policies::timer::timer_stream;
use careflow_aggregates::policies::{
    ClaimSubmission, EligibilityCheck, PRINCIPAL_PREFIX, ProcessManager, Reaction, TimerEvent,
    Timers, Trigger, TriggerEvent, claims, eligibility,
};
use careflow_aggregates::{AddressedCommand, Claim, PatientAccount, RecordedEvent, StreamId};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::{RunnerHandle, RunnerStatus};
use crate::clock::Clock;
use crate::operations::dead_letters::{DeadLetterStatus, DeadLetters, NewDeadLetter};
use crate::operations::metrics;
use crate::operations::personal_data::EncryptingStore;
use crate::outbound::payer::{ClaimAnswer, PayerClient, PayerError};
use crate::runtime::actors::{CommandContext, CommandError, Registry};
use crate::runtime::consumers::checkpoint::{Checkpoint, CheckpointStore, Lease};
use crate::runtime::consumers::{Backoff, Consumer, Exit, Resume, Supervisor, wait};
use crate::store::internal::{self, Recorder};
use crate::store::{Direction, EventStore, ExpectedVersion, LogFeed};

/// What every runner of a process shares.
pub(crate) struct Deps {
    /// The store as the actors see it (personal data decrypted): timers, payer answers.
    pub store: Arc<dyn EventStore>,
    /// The same wrapper, to decrypt the events of a policy that reads personal data.
    pub personal: Arc<EncryptingStore>,
    /// The log as this process reads it (stored bytes).
    pub feed: Arc<LogFeed>,
    pub registry: Arc<Registry>,
    pub checkpoints: Arc<dyn CheckpointStore>,
    /// `None` without `payer_url`: checks are not made and the deadline decides.
    pub payer: Option<PayerClient>,
    pub config: super::ManagerConfig,
    /// Poison events, and the operators' retries of them.
    pub dead_letters: DeadLetters,
    pub stop: watch::Receiver<bool>,
    /// What decides when a timer is due and a payer check is given up, and stamps what the
    /// runner records and sends.
    pub clock: Clock,
}

/// Runs process manager `P` until shutdown, under the consumer runtime's supervisor.
pub(crate) async fn run<P: ProcessManager>(
    deps: Arc<Deps>,
    handle: Arc<RunnerHandle>,
    settings: P::Settings,
) {
    let supervisor = Supervisor {
        checkpoints: Arc::clone(&deps.checkpoints),
        health: handle.health.clone(),
        stop: deps.stop.clone(),
    };
    let runner = Runner::<P> {
        deps,
        handle,
        settings,
    };
    supervisor.run(&runner).await;
}

/// Process manager `P` as a consumer of the log.
struct Runner<P: ProcessManager> {
    deps: Arc<Deps>,
    handle: Arc<RunnerHandle>,
    settings: P::Settings,
}

impl<P: ProcessManager> Consumer for Runner<P> {
    type State = P::State;

    fn name(&self) -> &'static str {
        P::NAME
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            first: self.deps.config.retry_after,
            max: self.deps.config.backoff_max,
        }
    }

    async fn run(&self, from: Resume<P::State>, lease: Box<dyn Lease>) -> Exit {
        own::<P>(&self.deps, &self.handle, &self.settings, from, lease).await
    }

    fn exited(&self, exit: &Exit) {
        if let Exit::Failed(error) = exit {
            metrics::process_manager_failure(P::NAME, "store");
            self.handle.update(|s| {
                s.failures += 1;
                s.last_error = Some(error.clone());
            });
        }
    }
}

/// Payer checks in flight, by the position of the registration that asked for them.
type InFlight = Arc<Mutex<BTreeMap<u64, usize>>>;

/// The runner while it holds the lease.
async fn own<P: ProcessManager>(
    deps: &Arc<Deps>,
    handle: &Arc<RunnerHandle>,
    settings: &P::Settings,
    from: Resume<P::State>,
    lease: Box<dyn Lease>,
) -> Exit {
    let Resume {
        mut position,
        mut state,
    } = from;
    let timers_stream = match timer_stream(P::NAME) {
        Ok(stream) => stream,
        Err(error) => unreachable!("process-manager names keep the id rule: {error}"),
    };
    let mut timers = match fold_timers(deps.store.as_ref(), &timers_stream).await {
        Ok(timers) => timers,
        Err(error) => return Exit::Failed(error),
    };
    tracing::info!(
        process_manager = P::NAME,
        position,
        pending_timers = timers.pending_count(),
        "process manager running"
    );
    handle.update(|s| s.position = position);
    handle
        .health
        .running(position, deps.feed.head().saturating_sub(position));
    let in_flight: InFlight = Arc::default();
    let mut checks = JoinSet::new();
    let mut stop = deps.stop.clone();
    let mut head = deps.feed.head_watch();
    let mut saved = position;
    let mut processed = position;
    let mut last_retry_poll: Option<std::time::Instant> = None;
    loop {
        if *stop.borrow() {
            return Exit::Stopped;
        }
        if !lease.is_held() {
            return Exit::Failed("the process manager's lease was lost".into());
        }
        while checks.try_join_next().is_some() {}
        if last_retry_poll.is_none_or(|at| at.elapsed() >= deps.config.dead_letter_poll) {
            last_retry_poll = Some(std::time::Instant::now());
            let mut sending = Sending {
                checks: &mut checks,
                in_flight: &in_flight,
            };
            match serve_retries::<P>(
                deps,
                handle,
                settings,
                &mut state,
                &mut timers,
                &timers_stream,
                &mut sending,
            )
            .await
            {
                Ok(()) => {}
                Err(Retried::Stopped) => return Exit::Stopped,
                Err(Retried::Failed(error)) => return Exit::Failed(error),
            }
        }

        // Timers first: a due timer is appended before new events are read, so its firing is
        // in the log (and acted on) within one loop. The appends go out together (at most
        // FIRE_BATCH per loop, so events keep flowing when a great many fall due at once):
        // the store's group commit then makes one write of many firings. Their order does not
        // matter; each one's command id is derived from its timer, so a firing repeated after
        // a crash appends nothing.
        let now = deps.clock.now();
        let fired: Vec<TimerEvent> = timers
            .due(now)
            .take(FIRE_BATCH)
            .filter_map(|timer| timers.fire(timer.timer_id, now))
            .collect();
        if !fired.is_empty() {
            // Collected first: a lazy `Map` held across the await is not provably `Send`
            // (the closure's higher-ranked lifetime), and the runner's future must be.
            let appends: Vec<_> = fired
                .iter()
                .map(|event| {
                    let timer_id = event.timer_id();
                    let origin = Origin {
                        correlation_id: timer_id.to_string(),
                        causation_id: timer_id.to_string(),
                    };
                    let stream = &timers_stream;
                    async move {
                        let command_id = Uuid::new_v5(&timer_id, b"fire");
                        append_timer::<P>(deps, stream, event, command_id, &origin).await
                    }
                })
                .collect();
            let results: Vec<Result<(), Stopped>> = futures_util::stream::iter(appends)
                .buffer_unordered(SEND_CONCURRENCY * 4)
                .collect()
                .await;
            if results.into_iter().any(|result| result.is_err()) {
                return Exit::Stopped;
            }
            for event in &fired {
                timers.apply(event);
            }
            tracing::info!(
                process_manager = P::NAME,
                count = fired.len(),
                "timers fired"
            );
        }

        head.borrow_and_update();
        let events = match deps.feed.read(processed + 1, deps.config.batch).await {
            Ok(events) => events,
            Err(error) => return Exit::Failed(error.to_string()),
        };
        let mut outbox: Vec<(AddressedCommand, Origin)> = Vec::new();
        let mut asked: Vec<(PayerCall, Origin, u64)> = Vec::new();
        for recorded in &events {
            if !P::STREAM_KINDS.contains(&recorded.stream_id.kind()) {
                continue;
            }
            let judgement = match judge::<P>(deps, &state, settings, recorded).await {
                Ok(judgement) => judgement,
                Err(error) => return Exit::Failed(error),
            };
            // The runner's own timer events are folded whether or not the policy acts on them.
            if let Some(trigger) = judgement.trigger()
                && trigger.stream_id == timers_stream
                && let TriggerEvent::Timer(event) = &trigger.event
            {
                timers.apply(event);
            }
            let (opened, trigger, reaction) = match judgement {
                Judgement::Ignored => continue,
                Judgement::Poison { error, .. } => {
                    if let Err(error) = poison::<P>(deps, handle, recorded, &error).await {
                        return Exit::Failed(error);
                    }
                    continue;
                }
                Judgement::React {
                    opened,
                    trigger,
                    reaction,
                } => (opened, trigger, reaction),
            };
            let recorded = opened.as_deref().unwrap_or(recorded);
            let mut acts = Acts {
                timers: &mut timers,
                timers_stream: &timers_stream,
                outbox: &mut outbox,
                asked: &mut asked,
            };
            if carry_out::<P>(deps, recorded, &trigger, reaction, &mut acts)
                .await
                .is_err()
            {
                return Exit::Stopped;
            }
            state = P::evolve(state, &trigger);
        }
        if dispatch(
            deps,
            handle,
            P::NAME,
            outbox,
            asked,
            &mut checks,
            &in_flight,
        )
        .await
        .is_err()
        {
            return Exit::Stopped;
        }
        if let Some(last) = events.last() {
            processed = last.position;
        }

        // The checkpoint: what has been done, held back by checks still in flight.
        let low_water = in_flight
            .lock()
            .ok()
            .and_then(|map| map.keys().next().map(|first| first - 1))
            .map_or(processed, |held| held.min(processed));
        if low_water != saved || !events.is_empty() {
            let snapshot = match serde_json::to_string(&state) {
                Ok(snapshot) => snapshot,
                Err(error) => return Exit::Failed(format!("state does not serialise: {error}")),
            };
            let checkpoint = Checkpoint {
                position: low_water,
                state: snapshot,
            };
            if let Err(error) = deps.checkpoints.save(P::NAME, &checkpoint).await {
                return Exit::Failed(error.to_string());
            }
            saved = low_water;
        }
        position = saved;
        let lag = deps.feed.head().saturating_sub(position);
        let pending = timers.pending_count();
        let checks_in_flight = in_flight.lock().map_or(0, |map| map.values().sum());
        metrics::process_manager_progress(P::NAME, position, lag, pending);
        handle.health.running(position, lag);
        handle.update(|s| {
            s.position = position;
            s.lag = lag;
            s.timers_pending = pending;
            s.checks_in_flight = checks_in_flight;
        });
        // Behind the head: read on. A read may return less than a batch without being at the
        // head (the feed hands out one chunk of its tail at a time), so only an empty read
        // means caught up.
        if !events.is_empty() {
            continue;
        }

        // Caught up: wait for new events, the next timer (by the injected clock, so a test
        // that moves its clock past a due time wakes the loop at once), a finished check or
        // shutdown; at most `idle_check` of real time.
        let next_timer = timers.next_due_at();
        if next_timer.is_some_and(|next| deps.clock.until(next).is_zero()) {
            continue;
        }
        let sleep_for = deps.config.idle_check;
        let timer_due = async {
            match next_timer {
                Some(next) => deps.clock.sleep_until(next).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = head.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(sleep_for).await;
                }
            }
            () = tokio::time::sleep(sleep_for) => {}
            () = timer_due => {}
            _ = stop.changed() => {}
            Some(_) = checks.join_next(), if !checks.is_empty() => {}
        }
    }
}

/// The event a cancellation appends, for timers of this runner's own stream through its fold
/// (so a finished timer appends nothing) and for any other stream as is.
fn cancellable(
    timers: &Timers,
    cancellation: &careflow_aggregates::policies::TimerCancellation,
    name: &'static str,
) -> Option<TimerEvent> {
    if cancellation.process == name {
        timers.cancel(cancellation.timer_id)
    } else {
        Timers::new().cancel(cancellation.timer_id)
    }
}

/// Reads a timer stream whole and folds it.
async fn fold_timers(store: &dyn EventStore, stream: &StreamId) -> Result<Timers, String> {
    const PAGE: usize = 1_000;
    let mut timers = Timers::new();
    let mut from = 1;
    loop {
        let events = store
            .read_stream(stream, from, Direction::Forward, PAGE)
            .await
            .map_err(|error| error.to_string())?;
        for recorded in &events {
            match TimerEvent::decode(
                &recorded.event_type,
                recorded.schema_version,
                recorded.data.clone(),
            ) {
                Ok(event) => timers.apply(&event),
                Err(error) => {
                    tracing::warn!(stream_id = %stream, version = recorded.version, %error, "timer event does not decode; skipped");
                }
            }
        }
        match events.last() {
            Some(last) if events.len() == PAGE => from = last.version + 1,
            _ => return Ok(timers),
        }
    }
}

/// The dead-letter source of process manager `P`.
fn source<P: ProcessManager>() -> String {
    format!("process_manager:{}", P::NAME)
}

/// An event the policy cannot act on (it does not decode, or it names what cannot be
/// addressed): dead-lettered under the event's stream, so an operator sees it, fixes the
/// cause (a newer build, corrected master data) and asks for a retry, or discards it. The
/// runner goes on with the next event. `Err` when the dead letter could not be written (the
/// runner then starts over from its checkpoint, and the event comes round again).
async fn poison<P: ProcessManager>(
    deps: &Deps,
    handle: &RunnerHandle,
    recorded: &RecordedEvent,
    error: &str,
) -> Result<(), String> {
    tracing::warn!(
        process_manager = P::NAME,
        position = recorded.position,
        event_id = %recorded.event_id,
        event_type = %recorded.event_type,
        error,
        "event dead-lettered: the policy cannot act on it"
    );
    metrics::process_manager_failure(P::NAME, "poison");
    let letter = NewDeadLetter {
        source: source::<P>(),
        key: recorded.stream_id.to_string(),
        event_id: recorded.event_id,
        position: recorded.position,
        payload: serde_json::json!({
            "event_type": recorded.event_type,
            "schema_version": recorded.schema_version,
        }),
        error: error.to_owned(),
        attempts: 1,
    };
    deps.dead_letters
        .record(letter, DeadLetterStatus::Dead)
        .await
        .map_err(|e| e.to_string())?;
    let noted = format!(
        "event at position {} dead-lettered: {error}",
        recorded.position
    );
    handle.health.noted(&noted);
    handle.update(|s| {
        s.failures += 1;
        s.last_error = Some(noted);
    });
    Ok(())
}

/// Why serving the retries stopped the runner.
enum Retried {
    Stopped,
    Failed(String),
}

/// Where a batch's payer checks run.
struct Sending<'a> {
    checks: &'a mut JoinSet<()>,
    in_flight: &'a InFlight,
}

/// Redelivers every event an operator asked to retry (`POST /v1/dead-letters/{id}/retry`) to
/// the policy, with the state as it is now, and carries out its reaction: timers, then its
/// commands sent (durable) and its checks started, and only then the row marked `resolved`,
/// so a crash in between leaves the retry to be made again. The commands keep their
/// deterministic ids, so a retry that repeats what was done appends nothing. An event that
/// still cannot be acted on goes back to `dead` with the new error.
async fn serve_retries<P: ProcessManager>(
    deps: &Arc<Deps>,
    handle: &Arc<RunnerHandle>,
    settings: &P::Settings,
    state: &mut P::State,
    timers: &mut Timers,
    timers_stream: &StreamId,
    sending: &mut Sending<'_>,
) -> Result<(), Retried> {
    let failed =
        |e: crate::operations::dead_letters::DeadLetterError| Retried::Failed(e.to_string());
    let requests = deps
        .dead_letters
        .retry_requests(&source::<P>())
        .await
        .map_err(failed)?;
    for letter in requests {
        let found = deps
            .feed
            .read(letter.position, 1)
            .await
            .map_err(|e| Retried::Failed(e.to_string()))?
            .iter()
            .find(|e| e.event_id == letter.event_id)
            .cloned();
        let outcome = match found {
            None => Err("the event is not at its recorded position".to_owned()),
            Some(recorded) => match judge::<P>(deps, state, settings, &recorded)
                .await
                .map_err(Retried::Failed)?
            {
                Judgement::Ignored => Ok(None),
                Judgement::Poison { error, .. } => Err(error),
                Judgement::React {
                    opened,
                    trigger,
                    reaction,
                } => {
                    let recorded = opened.map_or(recorded, |opened| *opened);
                    let (mut outbox, mut asked) = (Vec::new(), Vec::new());
                    let mut acts = Acts {
                        timers,
                        timers_stream,
                        outbox: &mut outbox,
                        asked: &mut asked,
                    };
                    carry_out::<P>(deps, &recorded, &trigger, reaction, &mut acts)
                        .await
                        .map_err(|Stopped| Retried::Stopped)?;
                    dispatch(
                        deps,
                        handle,
                        P::NAME,
                        outbox,
                        asked,
                        sending.checks,
                        sending.in_flight,
                    )
                    .await
                    .map_err(|Stopped| Retried::Stopped)?;
                    Ok(Some(trigger))
                }
            },
        };
        match outcome {
            Ok(trigger) => {
                if let Some(trigger) = trigger {
                    *state = P::evolve(std::mem::take(state), &trigger);
                }
                tracing::info!(
                    process_manager = P::NAME,
                    dead_letter = letter.id,
                    position = letter.position,
                    "dead-lettered event retried and acted on"
                );
                deps.dead_letters.resolve(letter.id).await.map_err(failed)?;
            }
            Err(error) => {
                tracing::warn!(process_manager = P::NAME, dead_letter = letter.id, %error, "dead-lettered event failed again");
                handle.update(|s| s.failures += 1);
                deps.dead_letters
                    .failed_again(letter.id, &error)
                    .await
                    .map_err(failed)?;
            }
        }
    }
    Ok(())
}

/// What a policy makes of one event.
enum Judgement {
    /// Not an event the policy reads (another stream kind's, or one it does not know).
    Ignored,
    /// The policy cannot act on it (it does not decode, or `react` refuses it): why, and its
    /// trigger when it decoded.
    Poison {
        trigger: Option<Trigger>,
        error: String,
    },
    /// What the policy asks for; `opened` is the event with its personal data decrypted, for a
    /// policy that reads it.
    React {
        opened: Option<Box<RecordedEvent>>,
        trigger: Trigger,
        reaction: Reaction,
    },
}

impl Judgement {
    fn trigger(&self) -> Option<&Trigger> {
        match self {
            Judgement::Ignored => None,
            Judgement::Poison { trigger, .. } => trigger.as_ref(),
            Judgement::React { trigger, .. } => Some(trigger),
        }
    }
}

/// Decodes `recorded` for policy `P` and asks it what to do, with the state before the event:
/// the one step the live loop and an operator's retry share. `Err` when the personal data
/// cannot be opened (the key store is unreachable: start over, the event is not poison).
async fn judge<P: ProcessManager>(
    deps: &Deps,
    state: &P::State,
    settings: &P::Settings,
    recorded: &RecordedEvent,
) -> Result<Judgement, String> {
    let opened = open_personal::<P>(deps, recorded).await?.map(Box::new);
    let event = opened.as_deref().unwrap_or(recorded);
    let trigger = match Trigger::from_recorded(event) {
        Ok(Some(trigger)) => trigger,
        Ok(None) => return Ok(Judgement::Ignored),
        Err(error) => {
            return Ok(Judgement::Poison {
                trigger: None,
                error: error.to_string(),
            });
        }
    };
    Ok(match P::react(state, &trigger, settings) {
        Ok(reaction) => Judgement::React {
            opened,
            trigger,
            reaction,
        },
        Err(error) => Judgement::Poison {
            trigger: Some(trigger),
            error: error.to_string(),
        },
    })
}

/// The event with its `personal` object decrypted, for a policy that reads personal data;
/// `None` when the event is used as stored.
async fn open_personal<P: ProcessManager>(
    deps: &Deps,
    recorded: &RecordedEvent,
) -> Result<Option<RecordedEvent>, String> {
    if recorded.data.get(PERSONAL_FIELD).is_none() {
        return Ok(None);
    }
    if !P::READS_PERSONAL {
        // A policy that never looks at personal data gets it blank (`null`, which decodes as
        // erased), as the views do: the sealed envelope is not the event's schema.
        let mut blanked = recorded.clone();
        if let Some(data) = blanked.data.as_object_mut() {
            data.insert(PERSONAL_FIELD.to_owned(), serde_json::Value::Null);
        }
        return Ok(Some(blanked));
    }
    let mut one = [recorded.clone()];
    deps.personal
        .open_events(&mut one)
        .await
        .map_err(|e| e.to_string())?;
    let [opened] = one;
    Ok(Some(opened))
}

/// A call to the payer a reaction asked for.
#[derive(Debug, Clone)]
enum PayerCall {
    Eligibility(EligibilityCheck),
    Claim(ClaimSubmission),
}

/// Where a reaction's work goes: timers are appended at once; commands and payer checks are
/// collected for the batch.
struct Acts<'a> {
    timers: &'a mut Timers,
    timers_stream: &'a StreamId,
    outbox: &'a mut Vec<(AddressedCommand, Origin)>,
    asked: &'a mut Vec<(PayerCall, Origin, u64)>,
}

/// Carries out a policy's reaction to `recorded`: timer cancellations and schedules appended
/// now (under ids derived from the event, so a redelivery appends nothing), commands and
/// payer checks handed to the batch.
async fn carry_out<P: ProcessManager>(
    deps: &Deps,
    recorded: &RecordedEvent,
    trigger: &Trigger,
    reaction: careflow_aggregates::policies::Reaction,
    acts: &mut Acts<'_>,
) -> Result<(), Stopped> {
    if reaction.is_empty() {
        return Ok(());
    }
    let origin = Origin::of(recorded);
    for cancellation in &reaction.cancelled_timers {
        let Some(event) = cancellable(acts.timers, cancellation, P::NAME) else {
            continue;
        };
        let stream = match timer_stream(cancellation.process) {
            Ok(stream) => stream,
            Err(error) => unreachable!("process names keep the id rule: {error}"),
        };
        let step = format!("timer-cancel:{}", cancellation.timer_id);
        let command_id = Uuid::new_v5(&trigger.event_id, step.as_bytes());
        append_timer::<P>(deps, &stream, &event, command_id, &origin).await?;
        if &stream == acts.timers_stream {
            acts.timers.apply(&event);
        }
    }
    for request in &reaction.timers {
        let event = if request.process == P::NAME {
            acts.timers.schedule(request)
        } else {
            Timers::new().schedule(request)
        };
        let Some(event) = event else {
            continue;
        };
        let stream = match timer_stream(request.process) {
            Ok(stream) => stream,
            Err(error) => unreachable!("process names keep the id rule: {error}"),
        };
        let step = format!("timer-schedule:{}", request.timer_id);
        let command_id = Uuid::new_v5(&trigger.event_id, step.as_bytes());
        append_timer::<P>(deps, &stream, &event, command_id, &origin).await?;
        if &stream == acts.timers_stream {
            acts.timers.apply(&event);
        }
    }
    for issued in reaction.commands {
        acts.outbox.push((issued, origin.clone()));
    }
    for check in reaction.eligibility_checks {
        acts.asked.push((
            PayerCall::Eligibility(check),
            origin.clone(),
            recorded.position,
        ));
    }
    for submission in reaction.claim_submissions {
        acts.asked.push((
            PayerCall::Claim(submission),
            origin.clone(),
            recorded.position,
        ));
    }
    Ok(())
}

/// What the commands caused by one event carry along.
#[derive(Debug, Clone)]
struct Origin {
    correlation_id: String,
    causation_id: String,
}

impl Origin {
    fn of(recorded: &RecordedEvent) -> Self {
        Self {
            correlation_id: recorded.metadata.correlation_id.clone(),
            causation_id: recorded.event_id.to_string(),
        }
    }
}

/// Shutdown was asked while an action was being retried.
struct Stopped;

/// Waits before the next retry; `Err` on shutdown.
async fn backoff(deps: &Deps, delay: &mut Duration) -> Result<(), Stopped> {
    let mut stop = deps.stop.clone();
    if wait(&mut stop, *delay).await {
        return Err(Stopped);
    }
    *delay = (*delay * 2).min(deps.config.backoff_max);
    Ok(())
}

/// Appends one timer event, retrying while the store is unavailable.
async fn append_timer<P: ProcessManager>(
    deps: &Deps,
    stream: &StreamId,
    event: &TimerEvent,
    command_id: Uuid,
    origin: &Origin,
) -> Result<(), Stopped> {
    let principal = format!("{PRINCIPAL_PREFIX}{}", P::NAME);
    let by = Recorder {
        principal: principal.clone(),
        source: principal,
        correlation_id: origin.correlation_id.clone(),
        causation_id: origin.causation_id.clone(),
        occurred_at: deps.clock.now(),
    };
    let mut delay = deps.config.retry_first;
    loop {
        let appended = internal::record(
            deps.store.as_ref(),
            stream.clone(),
            ExpectedVersion::Any,
            command_id,
            &by,
            &[event],
        )
        .await;
        match appended {
            Ok(_) => return Ok(()),
            Err(error) => {
                tracing::warn!(process_manager = P::NAME, %error, stream_id = %stream, "timer event not appended; retrying");
                metrics::process_manager_failure(P::NAME, "store");
                backoff(deps, &mut delay).await?;
            }
        }
    }
}

/// Most timers fired in one loop of the runner.
const FIRE_BATCH: usize = 4_096;

/// Most targets a runner sends to at once. The store commits whatever appends are waiting as
/// one group, for one fsync (about 4 ms on this project's virtual disks), so a runner's
/// commands per fsync are at most this: 32 held a runner to about 8,000 commands a second
/// there, the claims pipeline's bound (docs/performance.md, Claims).
const SEND_CONCURRENCY: usize = 256;

/// Sends a batch's commands: in order for each target stream, different targets at once (at
/// most [`SEND_CONCURRENCY`]). Each command's validity depends only on its own stream, so only
/// the order per target is kept; sending one at a time capped a runner at one durable append
/// per round trip, far below the registration rate it must follow.
async fn send_all(
    deps: &Deps,
    name: &'static str,
    outbox: Vec<(AddressedCommand, Origin)>,
    handle: &RunnerHandle,
) -> Result<(), Stopped> {
    if outbox.is_empty() {
        return Ok(());
    }
    let mut by_target: Vec<Vec<(AddressedCommand, Origin)>> = Vec::new();
    let mut index: std::collections::HashMap<StreamId, usize> = std::collections::HashMap::new();
    for (issued, origin) in outbox {
        let slot = *index.entry(issued.target().clone()).or_insert_with(|| {
            by_target.push(Vec::new());
            by_target.len() - 1
        });
        by_target[slot].push((issued, origin));
    }
    let results: Vec<Result<(), Stopped>> = futures_util::stream::iter(by_target)
        .map(|commands| async move {
            for (issued, origin) in &commands {
                send(deps, name, issued, origin, handle).await?;
            }
            Ok(())
        })
        .buffer_unordered(SEND_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Sends one command through the actors, as the HTTP path does. `Ok` once it is durable (or
/// was already), or once the aggregate refused it for good.
async fn send(
    deps: &Deps,
    name: &'static str,
    issued: &AddressedCommand,
    origin: &Origin,
    handle: &RunnerHandle,
) -> Result<(), Stopped> {
    let principal = format!("{PRINCIPAL_PREFIX}{name}");
    let context = CommandContext {
        command_id: issued.command_id(),
        correlation_id: origin.correlation_id.clone(),
        causation_id: origin.causation_id.clone(),
        principal: principal.clone(),
        source: principal,
        occurred_at: deps.clock.now(),
        // A resend after a crash must get the first answer, even where deciding again would
        // now refuse (an account already activated).
        check_duplicate: true,
    };
    let command = issued.command().name();
    let mut delay = deps.config.retry_first;
    loop {
        match deps.registry.execute_any(issued, context.clone()).await {
            Ok(outcome) => {
                metrics::process_manager_command(name, outcome.outcome_label());
                handle.update(|s| s.commands_sent += 1);
                tracing::debug!(process_manager = name, command, command_id = %issued.command_id(), outcome = outcome.outcome_label(), "command sent");
                return Ok(());
            }
            Err(CommandError::Rejected(rejection)) => {
                tracing::warn!(
                    process_manager = name,
                    command,
                    command_id = %issued.command_id(),
                    stream_id = %issued.target(),
                    code = rejection.code(),
                    causation_id = %origin.causation_id,
                    "command refused by the aggregate; not retried"
                );
                metrics::process_manager_command(name, "rejected");
                metrics::process_manager_failure(name, "rejected");
                handle.update(|s| {
                    s.failures += 1;
                    s.last_error = Some(format!(
                        "{command} {} refused: {}",
                        issued.command_id(),
                        rejection.code()
                    ));
                });
                return Ok(());
            }
            Err(error @ CommandError::Corrupt(_)) => {
                tracing::error!(process_manager = name, command, command_id = %issued.command_id(), stream_id = %issued.target(), %error, "command failed on unreadable events; not retried");
                metrics::process_manager_command(name, "error");
                metrics::process_manager_failure(name, "store");
                handle.update(|s| s.failures += 1);
                return Ok(());
            }
            Err(error) => {
                tracing::warn!(process_manager = name, command, command_id = %issued.command_id(), %error, "command not carried out; retrying");
                metrics::process_manager_failure(name, "store");
                backoff(deps, &mut delay).await?;
            }
        }
    }
}

/// Sends a batch's commands, then starts its payer checks.
async fn dispatch(
    deps: &Arc<Deps>,
    handle: &Arc<RunnerHandle>,
    name: &'static str,
    outbox: Vec<(AddressedCommand, Origin)>,
    asked: Vec<(PayerCall, Origin, u64)>,
    checks: &mut JoinSet<()>,
    in_flight: &InFlight,
) -> Result<(), Stopped> {
    send_all(deps, name, outbox, handle).await?;
    for (check, origin, position) in asked {
        start_check(
            checks, deps, handle, name, check, origin, position, in_flight,
        );
    }
    Ok(())
}

/// Removes its check from the in-flight map however the task ends (answered, abandoned,
/// aborted).
struct InFlightGuard {
    map: InFlight,
    position: u64,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.map.lock()
            && let Some(count) = map.get_mut(&self.position)
        {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.position);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn start_check(
    checks: &mut JoinSet<()>,
    deps: &Arc<Deps>,
    handle: &Arc<RunnerHandle>,
    name: &'static str,
    call: PayerCall,
    origin: Origin,
    position: u64,
    in_flight: &InFlight,
) {
    let Some(payer) = deps.payer.clone() else {
        // No payer configured: the deadline timer flags the account unless an upstream
        // system records the eligibility first; a claim waits `submitted` for a
        // ClaimResponse posted by the payer or an upstream system (docs/process-managers.md).
        tracing::debug!(process_manager = name, "no payer configured; nothing sent");
        return;
    };
    if let Ok(mut map) = in_flight.lock() {
        *map.entry(position).or_insert(0) += 1;
    }
    let guard = InFlightGuard {
        map: Arc::clone(in_flight),
        position,
    };
    let deps = Arc::clone(deps);
    let handle = Arc::clone(handle);
    checks.spawn_local(async move {
        let _guard = guard;
        match &call {
            PayerCall::Eligibility(check) => {
                run_check(&deps, &handle, name, &payer, check, &origin).await;
            }
            PayerCall::Claim(submission) => {
                run_submission(&deps, &handle, name, &payer, submission, &origin).await;
            }
        }
    });
}

/// Asks the payer until it answers or the check's deadline passes, then records the answer.
async fn run_check(
    deps: &Deps,
    handle: &RunnerHandle,
    name: &'static str,
    payer: &PayerClient,
    check: &EligibilityCheck,
    origin: &Origin,
) {
    let account_id = check.account_id.as_str();
    let Ok(target) = StreamId::new(
        <PatientAccount as careflow_aggregates::Aggregate>::KIND,
        account_id,
    ) else {
        return;
    };
    // Redelivered after a restart, with the answer already stored: do not ask again.
    if let Ok(Some(_)) = deps
        .store
        .find_command(&target, check.record_command_id)
        .await
    {
        return;
    }
    let mut delay = deps.config.retry_first;
    loop {
        if deps.clock.now() >= check.give_up_at {
            tracing::info!(
                process_manager = name,
                account_id,
                "payer check abandoned at its deadline"
            );
            return;
        }
        let wait_for = match payer.check(check).await {
            Ok(answer) => {
                let issued = match eligibility::record_answer(check, &answer.to_answer()) {
                    Ok(issued) => issued,
                    Err(error) => {
                        tracing::warn!(process_manager = name, account_id, %error, "answer cannot be recorded");
                        return;
                    }
                };
                let _ = send(deps, name, &issued, origin, handle).await;
                return;
            }
            Err(error) => {
                let Some(wait_for) =
                    after_payer_failure(deps, handle, name, account_id, error, &mut delay)
                else {
                    return;
                };
                wait_for
            }
        };
        if wait_before_retry(deps, wait_for, check.give_up_at).await {
            return;
        }
    }
}

/// What a failed payer call means for the loop retrying it (eligibility checks and claim
/// submissions alike): how long to wait before the next attempt, or `None` when the payer
/// cannot be called at all (a bad URL or client), which waiting will not mend.
fn after_payer_failure(
    deps: &Deps,
    handle: &RunnerHandle,
    name: &'static str,
    subject: &str,
    error: PayerError,
    delay: &mut Duration,
) -> Option<Duration> {
    match error {
        PayerError::CircuitOpen(open) => Some(open.retry_in.max(Duration::from_millis(50))),
        error @ (PayerError::InvalidUrl | PayerError::CaFile(_) | PayerError::Client(_)) => {
            tracing::warn!(process_manager = name, subject, %error, "payer cannot be called; given up until its deadline");
            metrics::process_manager_failure(name, "payer");
            None
        }
        error => {
            tracing::debug!(process_manager = name, subject, %error, "payer call failed; retrying");
            metrics::process_manager_failure(name, "payer");
            handle.update(|s| s.failures += 1);
            let this = *delay;
            *delay = (*delay * 2).min(deps.config.backoff_max);
            Some(this)
        }
    }
}

/// Waits `wait_for`, but not past `give_up_at`; true when the runner is stopping.
async fn wait_before_retry(
    deps: &Deps,
    wait_for: Duration,
    give_up_at: chrono::DateTime<chrono::Utc>,
) -> bool {
    let until_deadline = deps.clock.until(give_up_at);
    let mut stop = deps.stop.clone();
    wait(&mut stop, wait_for.min(until_deadline)).await
}

/// Sends a claim to the payer until it answers or the submission's deadline passes, then
/// records an adjudicated answer on the claim. Nothing is sent when the answer is already
/// stored (a redelivery) or the claim is no longer at this submission (answered by a posted
/// ClaimResponse, resubmitted, voided).
async fn run_submission(
    deps: &Deps,
    handle: &RunnerHandle,
    name: &'static str,
    payer: &PayerClient,
    submission: &ClaimSubmission,
    origin: &Origin,
) {
    let claim_id = submission.claim_id.as_str();
    let Ok(target) = StreamId::new(<Claim as careflow_aggregates::Aggregate>::KIND, claim_id)
    else {
        return;
    };
    if let Ok(Some(_)) = deps
        .store
        .find_command(&target, submission.record_command_id)
        .await
    {
        return;
    }
    let mut delay = deps.config.retry_first;
    loop {
        if deps.clock.now() >= submission.give_up_at {
            tracing::warn!(
                process_manager = name,
                claim_id,
                "claim submission abandoned at its deadline; the claim stays submitted"
            );
            return;
        }
        match deps.registry.observe::<Claim>(&target).await {
            Ok(observed)
                if observed.state.status == Some(ClaimStatus::Submitted)
                    && observed.state.submissions == submission.submission => {}
            Ok(_) => return,
            Err(error) => {
                tracing::debug!(process_manager = name, claim_id, %error, "claim not readable; retrying");
            }
        }
        let member_id = member_id(deps, &submission.account_id).await;
        let wait_for = match payer.submit_claim(submission, member_id.as_deref()).await {
            Ok(ClaimAnswer::Queued { .. }) => {
                tracing::info!(
                    process_manager = name,
                    claim_id,
                    "claim queued by the payer; its ClaimResponse will be posted"
                );
                return;
            }
            Ok(ClaimAnswer::Adjudicated(response)) => {
                match claims::record_response(submission, response) {
                    Ok(issued) => {
                        let _ = send(deps, name, &issued, origin, handle).await;
                    }
                    Err(error) => {
                        tracing::warn!(process_manager = name, claim_id, %error, "answer cannot be recorded");
                    }
                }
                return;
            }
            Err(error) => {
                let Some(wait_for) =
                    after_payer_failure(deps, handle, name, claim_id, error, &mut delay)
                else {
                    return;
                };
                wait_for
            }
        };
        if wait_before_retry(deps, wait_for, submission.give_up_at).await {
            return;
        }
    }
}

/// The member id of an account's coverage, read (decrypted) through the actors when a claim
/// is sent: the policy keeps no personal data. `None` when erased or unreadable.
async fn member_id(deps: &Deps, account_id: &str) -> Option<String> {
    let stream = StreamId::new(
        <PatientAccount as careflow_aggregates::Aggregate>::KIND,
        account_id,
    )
    .ok()?;
    let observed = deps
        .registry
        .observe::<PatientAccount>(&stream)
        .await
        .ok()?;
    observed.state.identity?.member_id
}

impl RunnerHandle {
    pub(crate) fn update(&self, f: impl FnOnce(&mut RunnerStatus)) {
        if let Ok(mut status) = self.status.lock() {
            f(&mut status);
        }
    }
}
