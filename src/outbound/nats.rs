//! The NATS JetStream publisher: every committed event, in position order, on
//! `{prefix}.{kind}.{event_type}` with `Nats-Msg-Id` = the event id.
//!
//! A projection with its own checkpoint (`nats` in the process-manager checkpoint table, with
//! its lease on PostgreSQL, so one node publishes). Each round reads a batch of the raw log
//! from the checkpoint, sends every message of it without waiting (many publishes in flight),
//! then awaits the acknowledgements in order, and only then writes the checkpoint. A crash or
//! a NATS outage anywhere before that write republishes the batch after the restart; the
//! stream's duplicate window (at least two minutes, set here) drops the repeats by their
//! `Nats-Msg-Id`, so a consumer sees each event once.
//!
//! The publisher creates the stream when it is missing (file storage, subjects `{prefix}.>`),
//! and on an existing stream only adds its subjects and widens a duplicate window shorter
//! than [`MIN_DUPLICATE_WINDOW`]: limits an operator set are left alone.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use careflow_aggregates::RecordedEvent;
use chrono::Utc;
use tokio::sync::watch;

use super::wire_bytes;
use crate::clock::Clock;
use crate::operations::metrics;
use crate::runtime::consumers::checkpoint::{Checkpoint, CheckpointStore, Lease};
use crate::runtime::consumers::{Backoff, Consumer, ConsumerHealth, Exit, Resume, Supervisor};
use crate::store::{Events, LogFeed};

/// The checkpoint's name.
pub const CHECKPOINT: &str = "nats";

/// The shortest duplicate window the stream keeps: a restart from a checkpoint up to this old
/// republishes nothing a consumer sees twice.
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Where and how the publisher publishes.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    pub url: String,
    /// The JetStream stream (`nats_stream`).
    pub stream: String,
    /// The subjects' first tokens (`nats_subject_prefix`).
    pub subject_prefix: String,
    /// Most events read and in flight per round (one checkpoint write per round).
    pub batch: usize,
    /// Bounds connecting, the stream API and each acknowledgement.
    pub timeout: Duration,
    /// Pause before starting over after a failure; doubles up to `backoff_max`.
    pub retry_after: Duration,
    pub backoff_max: Duration,
}

impl NatsSettings {
    pub fn new(
        url: impl Into<String>,
        stream: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            stream: stream.into(),
            subject_prefix: prefix.into(),
            batch: 4_096,
            timeout: Duration::from_secs(10),
            retry_after: Duration::from_millis(500),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// The subject of one event: `{prefix}.{kind}.{event_type}`. Kinds are `[a-z_]` and event
/// types PastTense names, so neither holds a `.`, a space or a wildcard.
pub fn subject(prefix: &str, event: &RecordedEvent) -> String {
    format!("{prefix}.{}.{}", event.stream_id.kind(), event.event_type)
}

/// Told of every acknowledged batch and when its acknowledgements were all in, for
/// `careflow bench nats`.
pub type AckRecorder = Arc<dyn Fn(&Events, chrono::DateTime<Utc>) + Send + Sync>;

/// What the publisher's task needs.
pub(crate) struct NatsDeps {
    /// The log as this process reads it (stored bytes; personal data blanked on the wire).
    pub feed: Arc<LogFeed>,
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub settings: NatsSettings,
    pub stop: watch::Receiver<bool>,
    pub health: ConsumerHealth,
    pub acks: Option<AckRecorder>,
    /// What the publishing delay is measured by.
    pub clock: Clock,
}

/// Runs the publisher until shutdown, starting over from its checkpoint after any failure.
/// Another node publishing is looked at again every `retry_after` (a lease attempt opens a
/// connection), ready to take over when that node dies.
pub(crate) async fn run(deps: NatsDeps) {
    let supervisor = Supervisor {
        checkpoints: Arc::clone(&deps.checkpoints),
        health: deps.health.clone(),
        stop: deps.stop.clone(),
    };
    supervisor.run(&deps).await;
    tracing::info!("NATS publisher stopped");
}

/// The publisher as a consumer of the log: a position and no state.
impl Consumer for NatsDeps {
    type State = ();

    fn name(&self) -> &'static str {
        CHECKPOINT
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            first: self.settings.retry_after,
            max: self.settings.backoff_max,
        }
    }

    async fn run(&self, from: Resume<()>, lease: Box<dyn Lease>) -> Exit {
        own(self, from.position, lease).await
    }
}

/// Makes sure the stream exists, takes `{prefix}.>` and dedupes for at least
/// [`MIN_DUPLICATE_WINDOW`].
///
/// # Errors
/// The JetStream API's error, as text.
pub async fn ensure_stream(js: &jetstream::Context, settings: &NatsSettings) -> Result<(), String> {
    let subjects = format!("{}.>", settings.subject_prefix);
    match js.get_stream(&settings.stream).await {
        Ok(existing) => {
            let mut config = existing.cached_info().config.clone();
            let mut changed = false;
            if !config.subjects.contains(&subjects) {
                config.subjects.push(subjects);
                changed = true;
            }
            if config.duplicate_window < MIN_DUPLICATE_WINDOW {
                config.duplicate_window = MIN_DUPLICATE_WINDOW;
                changed = true;
            }
            if changed {
                js.update_stream(config)
                    .await
                    .map_err(|error| format!("updating stream {}: {error}", settings.stream))?;
            }
            Ok(())
        }
        Err(error)
            if matches!(
                error.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(inner)
                    if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            js.create_stream(stream::Config {
                name: settings.stream.clone(),
                subjects: vec![subjects],
                storage: stream::StorageType::File,
                duplicate_window: MIN_DUPLICATE_WINDOW,
                description: Some("careflow's committed events, in position order".into()),
                ..Default::default()
            })
            .await
            .map_err(|error| format!("creating stream {}: {error}", settings.stream))?;
            Ok(())
        }
        Err(error) => Err(format!("looking up stream {}: {error}", settings.stream)),
    }
}

/// The publisher while it holds the lease.
async fn own(deps: &NatsDeps, position: u64, lease: Box<dyn Lease>) -> Exit {
    let settings = &deps.settings;
    let client = match async_nats::ConnectOptions::new()
        .connection_timeout(settings.timeout)
        .name("careflow")
        .connect(settings.url.as_str())
        .await
    {
        Ok(client) => client,
        Err(error) => return Exit::Failed(format!("connecting to NATS: {error}")),
    };
    let js = jetstream::ContextBuilder::new()
        .timeout(settings.timeout)
        // Two batches are in flight at most (one awaited, one being sent).
        .max_ack_inflight(2 * settings.batch.max(1))
        .build(client);
    if let Err(error) = ensure_stream(&js, settings).await {
        return Exit::Failed(error);
    }
    tracing::info!(position, stream = %settings.stream, "NATS publisher running");
    let mut stop = deps.stop.clone();
    let mut head = deps.feed.head_watch();
    // One batch's acknowledgements are awaited while the next batch is read and sent: the
    // wait for JetStream overlaps the work of the next round. `read` is the last position
    // sent; the checkpoint moves when a batch's acknowledgements are all in.
    let mut read = position;
    let mut pending: Option<Sent> = None;
    loop {
        if *stop.borrow() {
            return Exit::Stopped;
        }
        if !lease.is_held() {
            return Exit::Failed("the NATS publisher's lease was lost".into());
        }
        head.borrow_and_update();
        let events = match deps.feed.read(read + 1, settings.batch).await {
            Ok(events) => events,
            Err(error) => return Exit::Failed(error.to_string()),
        };
        let sent = match events.last().map(|e| e.position) {
            Some(last) => match publish(&js, settings, events).await {
                Ok(acks) => {
                    read = last;
                    Some(acks)
                }
                Err(error) => return Exit::Failed(error),
            },
            None => None,
        };
        if let Some(previous) = pending.take()
            && let Err(error) = settle(deps, previous).await
        {
            return Exit::Failed(error);
        }
        pending = sent;
        if pending.is_none() {
            metrics::nats_lag(0);
            // Caught up: wait for the log's reader to read further.
            tokio::select! {
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return Exit::Stopped },
                _ = head.changed() => {}
            }
        }
    }
}

/// A batch sent, its acknowledgements not yet awaited.
struct Sent {
    events: Events,
    acks: Vec<async_nats::jetstream::context::PublishAckFuture>,
}

/// Awaits a sent batch's acknowledgements in order, then writes the checkpoint and the
/// metrics. Returns the batch's last position.
async fn settle(deps: &NatsDeps, sent: Sent) -> Result<u64, String> {
    let Sent { events, acks } = sent;
    for (event, ack) in events.iter().zip(acks) {
        ack.await
            .map_err(|error| format!("acknowledgement of position {}: {error}", event.position))?;
    }
    let acked_at = deps.clock.now();
    let last = events.last().map_or(0, |e| e.position);
    deps.checkpoints
        .save(
            CHECKPOINT,
            &Checkpoint {
                position: last,
                state: "null".into(),
            },
        )
        .await
        .map_err(|error| error.to_string())?;
    let delays: Vec<Duration> = events
        .iter()
        .map(|e| {
            (acked_at - e.metadata.recorded_at)
                .to_std()
                .unwrap_or_default()
        })
        .collect();
    if let Some(recorder) = &deps.acks {
        recorder(&events, acked_at);
    }
    let head = deps.feed.head().max(last);
    metrics::nats_published(events.len(), head.saturating_sub(last), delays.into_iter());
    deps.health.running(last, head.saturating_sub(last));
    Ok(last)
}

/// Sends every event of the batch without waiting for JetStream.
async fn publish(
    js: &jetstream::Context,
    settings: &NatsSettings,
    events: Events,
) -> Result<Sent, String> {
    let mut acks = Vec::with_capacity(events.len());
    for event in &events {
        let payload = wire_bytes(event).map_err(|error| error.to_string())?;
        let message = PublishMessage::build()
            .payload(payload.into())
            .message_id(event.event_id.to_string());
        let ack = js
            .send_publish(subject(&settings.subject_prefix, event), message)
            .await
            .map_err(|error| format!("publishing position {}: {error}", event.position))?;
        acks.push(ack);
    }
    Ok(Sent { events, acks })
}
