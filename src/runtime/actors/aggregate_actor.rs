//! [`AggregateActor`]: the live instance of one aggregate stream.
//!
//! Every handler returns an `AtomicResponse`, so the actor takes up no other message until the
//! current one (its store reads and its append included) has finished: that is what serialises
//! commands to one aggregate. The state is moved into the handler's future and moved back when
//! it completes; after any store failure it is dropped and rebuilt on the next message, since
//! the actor can no longer be sure what the stream holds.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use actix::{Actor, ActorFutureExt, AtomicResponse, Context, Handler, WrapFuture};
use careflow_aggregates::{Aggregate, Ctx, StreamId};
use tracing::Instrument;

use super::Services;
use super::command::{CommandError, CommandOutcome, Execute, Observe, Observed};
use super::replay::{Loaded, catch_up, load};
use crate::operations::metrics;
use crate::store::snapshot::Snapshot;
use crate::store::{AppendRequest, ExpectedVersion, ProposedEvent, StoreError};

/// One live aggregate instance.
pub struct AggregateActor<A: Aggregate> {
    stream: StreamId,
    services: Arc<Services>,
    /// Boxed: an actor must be `Unpin`, and a state type need not be.
    loaded: Option<Box<Loaded<A>>>,
    /// Actors running right now, shared with the registry (decremented in `stopped`).
    running: Arc<AtomicUsize>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> AggregateActor<A> {
    pub(crate) fn new(
        stream: StreamId,
        services: Arc<Services>,
        running: Arc<AtomicUsize>,
    ) -> Self {
        running.fetch_add(1, Ordering::SeqCst);
        Self {
            stream,
            services,
            loaded: None,
            running,
            _aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> Actor for AggregateActor<A> {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.running.fetch_sub(1, Ordering::SeqCst);
        tracing::debug!(stream_id = %self.stream, "actor stopped");
    }
}

impl<A: Aggregate> Handler<Execute<A>> for AggregateActor<A> {
    type Result = AtomicResponse<Self, Result<CommandOutcome, CommandError>>;

    fn handle(&mut self, message: Execute<A>, _ctx: &mut Self::Context) -> Self::Result {
        let command = A::command_name(&message.command);
        let span = tracing::info_span!(
            "command",
            stream_id = %self.stream,
            command,
            correlation_id = %message.context.correlation_id,
        );
        let services = Arc::clone(&self.services);
        let stream = self.stream.clone();
        let loaded = self.loaded.take().map(|boxed| *boxed);
        let started = Instant::now();
        let work = async move {
            let (loaded, result) = run_command::<A>(&services, &stream, loaded, &message).await;
            let outcome = match &result {
                Ok(done) => done.outcome_label(),
                Err(error) => error.outcome_label(),
            };
            metrics::command_handled(A::KIND, command, outcome, started.elapsed());
            match &result {
                Ok(done) => tracing::debug!(outcome, version = done.version, "command handled"),
                Err(CommandError::Rejected(rejection)) => {
                    tracing::debug!(code = rejection.code(), "command rejected");
                }
                Err(error @ CommandError::Corrupt(_)) => tracing::error!(%error, "command failed"),
                Err(error) => tracing::warn!(%error, "command failed"),
            }
            (loaded, result)
        }
        .instrument(span);
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |(loaded, result), actor, _ctx| {
                actor.loaded = loaded.map(Box::new);
                result
            },
        )))
    }
}

impl<A: Aggregate> Handler<Observe<A>> for AggregateActor<A> {
    type Result = AtomicResponse<Self, Result<Observed<A>, CommandError>>;

    fn handle(&mut self, _message: Observe<A>, _ctx: &mut Self::Context) -> Self::Result {
        let services = Arc::clone(&self.services);
        let stream = self.stream.clone();
        let loaded = self.loaded.take().map(|boxed| *boxed);
        let work = async move {
            let result = match loaded {
                Some(loaded) => catch_up(services.store.as_ref(), &stream, loaded).await,
                None => load::<A>(&services, &stream).await,
            };
            match result {
                Ok(loaded) => {
                    let observed = Observed {
                        state: loaded.state.clone(),
                        version: loaded.version,
                        position: loaded.position,
                    };
                    (Some(loaded), Ok(observed))
                }
                Err(error) => (None, Err(error)),
            }
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |(loaded, result), actor, _ctx| {
                actor.loaded = loaded.map(Box::new);
                result
            },
        )))
    }
}

/// Decides and appends one command against `loaded` (loading it first when `None`), retrying
/// after version conflicts. Returns the state to keep (`None`: rebuild next time) and the
/// answer.
pub(crate) async fn run_command<A: Aggregate>(
    services: &Services,
    stream: &StreamId,
    loaded: Option<Loaded<A>>,
    message: &Execute<A>,
) -> (Option<Loaded<A>>, Result<CommandOutcome, CommandError>) {
    let context = &message.context;
    if context.check_duplicate {
        // Scoped to this stream: the same key sent to another resource is refused earlier,
        // by the idempotency record's fingerprint of method, path and body.
        match services
            .store
            .find_command(stream, context.command_id)
            .await
        {
            Ok(Some(appended)) => {
                // The state may or may not include these events: rebuild it next time.
                return (None, Ok(CommandOutcome::from_appended(appended)));
            }
            Ok(None) => {}
            Err(error) => return (None, Err(error.into())),
        }
    }
    let mut loaded = match loaded {
        Some(loaded) => loaded,
        None => match load::<A>(services, stream).await {
            Ok(loaded) => loaded,
            Err(error) => return (None, Err(error)),
        },
    };
    let mut attempts: u32 = 0;
    loop {
        attempts += 1;
        let ctx = Ctx::new(
            services.config.clock.now(),
            context.command_id,
            context.principal.clone(),
        )
        .occurred_at(context.occurred_at);
        let events = match A::decide(&loaded.state, &message.command, &ctx) {
            Ok(events) => events,
            Err(rejection) => return (Some(loaded), Err(CommandError::Rejected(rejection))),
        };
        if events.is_empty() {
            let outcome = CommandOutcome {
                stream_id: stream.clone(),
                version: loaded.version,
                position: loaded.position,
                events: Vec::new(),
                duplicate: false,
            };
            return (Some(loaded), Ok(outcome));
        }
        let proposed = events
            .iter()
            .map(|event| {
                let encoded = A::encode(event);
                ProposedEvent {
                    event_type: encoded.event_type.to_owned(),
                    schema_version: encoded.schema_version,
                    data: encoded.data,
                }
            })
            .collect();
        let request = AppendRequest {
            stream_id: stream.clone(),
            expected: match loaded.version {
                0 => ExpectedVersion::NoStream,
                version => ExpectedVersion::Exact(version),
            },
            meta: context.meta(),
            events: proposed,
        };
        match services.store.append(request).await {
            Ok(appended) if appended.duplicate => {
                return (None, Ok(CommandOutcome::from_appended(appended)));
            }
            Ok(appended) => {
                let before = loaded.version;
                let mut state = loaded.state;
                for event in &events {
                    state = A::evolve(state, event);
                }
                let head_hash = appended
                    .events
                    .last()
                    .map(|e| e.hash.to_hex())
                    .unwrap_or_default();
                let loaded = Loaded {
                    state,
                    version: appended.version,
                    position: appended.position,
                    head_hash,
                };
                maybe_snapshot(services, stream, before, &loaded);
                return (Some(loaded), Ok(CommandOutcome::from_appended(appended)));
            }
            Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                if attempts > services.config.max_conflict_retries {
                    return (None, Err(CommandError::Conflict { attempts }));
                }
                metrics::command_conflict_retried(A::KIND);
                tracing::debug!(actual, attempts, "version conflict; deciding again");
                // A short random pause (up to 2, 4, 8 ms) keeps two nodes that race on one hot
                // stream from colliding again at once.
                let pause = rand::random_range(0..(2u64 << attempts.min(6)));
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                loaded = match catch_up(services.store.as_ref(), stream, loaded).await {
                    Ok(loaded) => loaded,
                    Err(error) => return (None, Err(error)),
                };
            }
            Err(error) => return (None, Err(error.into())),
        }
    }
}

/// Writes a snapshot in the background when the command crossed a multiple of
/// `snapshot_every`.
fn maybe_snapshot<A: Aggregate>(
    services: &Services,
    stream: &StreamId,
    before: u64,
    loaded: &Loaded<A>,
) {
    let every = services.config.snapshot_every;
    if every == 0 || loaded.version / every == before / every {
        return;
    }
    let state = match serde_json::to_string(&loaded.state) {
        Ok(state) => state,
        Err(error) => {
            tracing::warn!(%error, stream_id = %stream, "state does not serialise; no snapshot");
            return;
        }
    };
    let snapshot = Snapshot {
        stream_id: stream.clone(),
        version: loaded.version,
        position: loaded.position,
        head_hash: loaded.head_hash.clone(),
        snapshot_version: A::SNAPSHOT_VERSION,
        state,
    };
    let snapshots = Arc::clone(&services.snapshots);
    let stream = stream.clone();
    actix::spawn(async move {
        if let Err(error) = snapshots.save(snapshot).await {
            tracing::warn!(%error, stream_id = %stream, "snapshot not written");
        }
    });
}
