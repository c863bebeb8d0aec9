//! Webhooks: registrations, signed deliveries, retries and dead letters.
//!
//! **Registrations are events.** `POST /v1/webhooks` appends `WebhookRegistered` to the
//! internal stream `webhooks-{id}` and `DELETE` appends `WebhookRemoved`, so who registered
//! what, when, replays and is audited like everything else. The signing secret is in the
//! event sealed with the master key ([`crate::operations::personal_data::MasterKey::seal_secret`], bound to
//! the webhook id): the log, its exports and its NATS copy never hold it in clear.
//!
//! **One runner, one checkpoint (`webhooks`).** The runner folds the registrations from the log
//! (the checkpoint's position) and keeps, per webhook, a cursor: the last position whose
//! delivery to that webhook is finished (delivered or dead-lettered). Position, registrations
//! and cursors are written together as the checkpoint's state, so `GET /v1/webhooks` on any
//! node reads them from there. A webhook receives the events committed after its
//! registration whose `event_type` it named (or all, with `*`).
//!
//! **Deliveries.** Each webhook has a worker task that follows the log from its cursor and
//! POSTs each matching event ([`super::wire_event`], personal data `null`) with the Standard
//! Webhooks headers: `webhook-id` = `msg_{event_id}` (the same on every attempt and after a
//! restart: at-least-once, the receiver dedupes on it), `webhook-timestamp` (the attempt's
//! Unix seconds) and `webhook-signature`. A 2xx is delivered; anything else (3xx included,
//! redirects are not followed), a timeout or a connection error is retried after a jittered
//! exponential backoff, up to `webhook_max_attempts` attempts. Then the delivery is
//! dead-lettered (source `webhook`, key = the webhook id) and **the worker moves on**: later
//! events for that webhook keep flowing, so one poison event never stalls a receiver, and a
//! dead letter retried later arrives out of order. Receivers order by the `position` in the
//! body. Workers of different webhooks never wait for each other.
//!
//! **Dead letters.** An operator's `POST /v1/dead-letters/{id}/retry` marks the row; the runner
//! polls `retry_requests("webhook")` every second, delivers the event once more (one attempt,
//! same `webhook-id`) and resolves the row, or records the failure (`failed_again`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use careflow_aggregates::{RecordedEvent, StreamId};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::signing::{SecretError, WebhookSecret};
use super::wire_bytes;
use crate::clock::Clock;
use crate::config::Config;
use crate::operations::dead_letters::{DeadLetter, DeadLetterStatus, DeadLetters, NewDeadLetter};
use crate::operations::metrics;
use crate::operations::personal_data::PersonalKeys;
use crate::runtime::consumers::checkpoint::Lease;
use crate::runtime::consumers::checkpoint::{Checkpoint, CheckpointStore};
use crate::runtime::consumers::{
    Backoff, Consumer, ConsumerHealth, Exit, Resume, Supervisor, wait,
};
use crate::store::internal::{self, InternalEvent, Recorder, internal_event};
use crate::store::{Direction, EventStore, ExpectedVersion, LogFeed};

/// The checkpoint's name.
pub const CHECKPOINT: &str = "webhooks";
/// The stream kind of registrations.
pub const STREAM_KIND: &str = "webhooks";
/// The dead-letter source of failed deliveries.
pub const DEAD_LETTER_SOURCE: &str = "webhook";
/// The event that registers a webhook.
pub const REGISTERED: &str = "WebhookRegistered";
/// The event that removes one.
pub const REMOVED: &str = "WebhookRemoved";

/// How often the runner writes its checkpoint when only cursors and its position moved.
const SAVE_EVERY: Duration = Duration::from_millis(250);

/// Longest accepted URL.
const MAX_URL_LEN: usize = 2_048;
/// Most event types one registration may name.
const MAX_EVENT_TYPES: usize = 100;

/// How deliveries are made and retried.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// The pause after the first failure; doubles per attempt up to `backoff_max`, then a
    /// random part of up to half is taken off (jitter), so receivers that fail together are
    /// not retried together.
    pub backoff_first: Duration,
    pub backoff_max: Duration,
    /// Longest one request may take.
    pub timeout: Duration,
    /// How long `POST`/`DELETE /v1/webhooks` wait for the runner to take the change in.
    pub settle: Duration,
    /// Events a worker reads per round.
    pub batch: usize,
}

impl WebhookSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_attempts: config.webhook_max_attempts.max(1),
            backoff_first: Duration::from_millis(config.webhook_backoff_first_ms),
            backoff_max: Duration::from_millis(config.webhook_backoff_max_ms),
            timeout: Duration::from_millis(config.webhook_timeout_ms.max(1)),
            settle: Duration::from_secs(5),
            batch: 256,
        }
    }

    /// The pause before attempt `attempt + 1` (after `attempt` failures, 1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doubled = self
            .backoff_first
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.backoff_max);
        let jitter = rand::rng().random_range(0.5..=1.0);
        doubled.mul_f64(jitter)
    }
}

/// Why a registration or a removal was refused or could not be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WebhookError {
    /// Occurs when the URL is not an absolute http(s) URL with a host.
    ///
    /// ### Handling
    /// HTTP 422; nothing appended.
    #[error("webhook url is not valid: {0}")]
    InvalidUrl(String),
    /// Occurs when `event_types` is empty, too long, or names something that is not an event
    /// type (a PascalCase name) or `*`. HTTP 422; nothing appended.
    #[error("webhook event_types are not valid: {0}")]
    InvalidEventTypes(String),
    /// Occurs when the given secret is not `whsec_` + base64 of 24 to 64 bytes. HTTP 422.
    #[error(transparent)]
    InvalidSecret(#[from] SecretError),
    /// Occurs when no webhook has the id (never registered, or removed). HTTP 404.
    #[error("no webhook {0}")]
    NotFound(String),
    /// Occurs when the store or the checkpoint table cannot be reached. HTTP 503.
    #[error("webhooks unavailable: {0}")]
    Unavailable(String),
    /// Occurs when the runner's checkpoint (registrations, cursors) does not read back: it is
    /// not replaced by an empty one, which would forget every webhook without a trace.
    ///
    /// ### Handling
    /// The runner retries with backoff (`/readyz` names it after a while); HTTP 503.
    #[error("the webhook checkpoint does not read")]
    CorruptCheckpoint(#[source] std::sync::Arc<serde_json::Error>),
    /// Occurs at start when the HTTP client cannot be built (its TLS roots cannot be loaded).
    /// It is not replaced by a default client, which would follow redirects and carry no
    /// timeout.
    ///
    /// ### Handling
    /// `serve` stops with exit code 2 and the cause.
    #[error("the webhook HTTP client cannot be built")]
    Client(#[source] std::sync::Arc<reqwest::Error>),
}

/// `POST /v1/webhooks`'s body, validated.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub event_types: Vec<String>,
    /// `None`: one is generated and returned once.
    pub secret: Option<String>,
}

/// What a registration answers (the secret only here, once).
#[derive(Debug, Clone)]
pub struct RegisteredWebhook {
    pub view: Webhook,
    pub secret: String,
}

/// A registered webhook, without its secret (`GET /v1/webhooks` shows it as
/// `http::webhooks::WebhookView`).
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub registered_at: DateTime<Utc>,
    /// Who registered it (the token's subject).
    pub registered_by: String,
    /// The position of its registration: it receives events committed after it.
    pub registered_position: u64,
    /// Every matching event up to this position has been delivered or dead-lettered.
    pub delivered_through: u64,
}

/// The data of `WebhookRegistered`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisteredData {
    webhook_id: String,
    url: String,
    event_types: Vec<String>,
    /// The `whsec_` secret sealed with the master key for this webhook id.
    sealed_secret: String,
}

internal_event!(RegisteredData, REGISTERED);

/// The data of `WebhookRemoved`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemovedData {
    webhook_id: String,
}

internal_event!(RemovedData, REMOVED);

/// One registration as the runner keeps it (and checkpoints it).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Registration {
    id: String,
    url: String,
    event_types: Vec<String>,
    sealed_secret: String,
    registered_at: DateTime<Utc>,
    registered_by: String,
    position: u64,
    cursor: u64,
}

impl Registration {
    fn wants(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|t| t == "*" || t == event_type)
    }

    fn view(&self) -> Webhook {
        Webhook {
            id: self.id.clone(),
            url: self.url.clone(),
            event_types: self.event_types.clone(),
            registered_at: self.registered_at,
            registered_by: self.registered_by.clone(),
            registered_position: self.position,
            delivered_through: self.cursor,
        }
    }
}

/// The checkpoint's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    webhooks: BTreeMap<String, Registration>,
}

/// The webhooks of this node: the registration API and the runner's shared parts.
pub struct Webhooks {
    store: Arc<dyn EventStore>,
    feed: Arc<LogFeed>,
    checkpoints: Arc<dyn CheckpointStore>,
    personal: Arc<PersonalKeys>,
    dead_letters: DeadLetters,
    settings: WebhookSettings,
    client: reqwest::Client,
    /// Webhook ids, registration command ids and the signatures' timestamps.
    clock: Clock,
}

impl Webhooks {
    pub fn new(
        feed: Arc<LogFeed>,
        checkpoints: Arc<dyn CheckpointStore>,
        personal: Arc<PersonalKeys>,
        dead_letters: DeadLetters,
        settings: WebhookSettings,
        clock: Clock,
    ) -> Result<Self, WebhookError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("careflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Client(std::sync::Arc::new(e)))?;
        Ok(Self {
            store: Arc::clone(feed.store()),
            feed,
            checkpoints,
            personal,
            dead_letters,
            settings,
            client,
            clock,
        })
    }

    /// Registers a webhook: validates, appends `WebhookRegistered`, and waits (at most
    /// `settle`) until the runner has taken it in, so a `GET` right after lists it.
    ///
    /// # Errors
    /// [`WebhookError`]: invalid input (nothing appended) or an unavailable store.
    pub async fn register(
        &self,
        new: NewWebhook,
        principal: &str,
        correlation_id: &str,
    ) -> Result<RegisteredWebhook, WebhookError> {
        let url = validate_url(&new.url)?;
        let event_types = validate_event_types(&new.event_types)?;
        let secret = match &new.secret {
            Some(text) => WebhookSecret::parse(text)?,
            None => WebhookSecret::generate(),
        };
        let id = self.clock.new_id().to_string();
        let sealed_secret = self
            .personal
            .master()
            .seal_secret(&id, secret.expose().as_bytes())
            .map_err(|e| WebhookError::Unavailable(e.to_string()))?;
        let data = RegisteredData {
            webhook_id: id.clone(),
            url: url.clone(),
            event_types: event_types.clone(),
            sealed_secret,
        };
        let appended = self
            .append(
                &id,
                &data,
                ExpectedVersion::NoStream,
                principal,
                correlation_id,
            )
            .await?;
        let recorded_at = appended
            .events
            .first()
            .map_or_else(|| self.clock.now(), |e| e.metadata.recorded_at);
        self.settle(appended.position).await;
        Ok(RegisteredWebhook {
            view: Webhook {
                id,
                url,
                event_types,
                registered_at: recorded_at,
                registered_by: principal.to_owned(),
                registered_position: appended.position,
                delivered_through: appended.position,
            },
            secret: secret.expose(),
        })
    }

    /// Removes a webhook: no delivery starts after the runner takes the removal in.
    ///
    /// # Errors
    /// [`WebhookError::NotFound`] for an id never registered or already removed.
    pub async fn remove(
        &self,
        id: &str,
        principal: &str,
        correlation_id: &str,
    ) -> Result<(), WebhookError> {
        let stream = stream_id(id).ok_or_else(|| WebhookError::NotFound(id.to_owned()))?;
        let events = self
            .store
            .read_stream(&stream, 1, Direction::Forward, 16)
            .await
            .map_err(|e| WebhookError::Unavailable(e.to_string()))?;
        let version = events.last().map(|e| e.version);
        let removed = events.iter().any(|e| e.event_type == REMOVED);
        let Some(version) = version.filter(|_| !removed) else {
            return Err(WebhookError::NotFound(id.to_owned()));
        };
        let data = RemovedData {
            webhook_id: id.to_owned(),
        };
        let appended = self
            .append(
                id,
                &data,
                ExpectedVersion::Exact(version),
                principal,
                correlation_id,
            )
            .await?;
        self.settle(appended.position).await;
        Ok(())
    }

    /// The registered webhooks, from the checkpoint (the same on every node).
    ///
    /// # Errors
    /// [`WebhookError::Unavailable`].
    pub async fn list(&self) -> Result<Vec<Webhook>, WebhookError> {
        let state = self.load().await?.1;
        Ok(state.webhooks.values().map(Registration::view).collect())
    }

    async fn load(&self) -> Result<(u64, State), WebhookError> {
        match self.checkpoints.load(CHECKPOINT).await {
            Ok(Some(checkpoint)) => Ok((
                checkpoint.position,
                serde_json::from_str(&checkpoint.state)
                    .map_err(|e| WebhookError::CorruptCheckpoint(std::sync::Arc::new(e)))?,
            )),
            Ok(None) => Ok((0, State::default())),
            Err(error) => Err(WebhookError::Unavailable(error.to_string())),
        }
    }

    /// Waits until the runner's checkpoint has passed `position`, at most `settle`. A runner
    /// that is behind (or on another node that is down) does not fail the request: the change
    /// is in the log and takes effect when the runner gets there.
    async fn settle(&self, position: u64) {
        let deadline = tokio::time::Instant::now() + self.settings.settle;
        while tokio::time::Instant::now() < deadline {
            if matches!(self.load().await, Ok((at, _)) if at >= position) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(
            position,
            "the webhook runner has not taken a registration change in yet"
        );
    }

    async fn append(
        &self,
        id: &str,
        event: &dyn InternalEvent,
        expected: ExpectedVersion,
        principal: &str,
        correlation_id: &str,
    ) -> Result<crate::store::Appended, WebhookError> {
        let stream = stream_id(id).ok_or_else(|| WebhookError::NotFound(id.to_owned()))?;
        let command_id = self.clock.new_id();
        let by = Recorder {
            principal: principal.to_owned(),
            source: "http".into(),
            correlation_id: correlation_id.to_owned(),
            causation_id: command_id.to_string(),
            occurred_at: self.clock.now(),
        };
        internal::record(
            self.store.as_ref(),
            stream,
            expected,
            command_id,
            &by,
            &[event],
        )
        .await
        .map_err(|e| WebhookError::Unavailable(e.to_string()))
    }

    fn secret_of(&self, registration: &Registration) -> Option<WebhookSecret> {
        let text = self
            .personal
            .master()
            .open_secret(&registration.id, &registration.sealed_secret)?;
        WebhookSecret::parse(std::str::from_utf8(&text).ok()?).ok()
    }

    /// One attempt: POST the event, signed. `Ok` on a 2xx.
    async fn attempt(
        &self,
        url: &str,
        secret: &WebhookSecret,
        event: &RecordedEvent,
        body: &[u8],
    ) -> Result<(), String> {
        let msg_id = message_id(event);
        let timestamp = self.clock.now().timestamp();
        let signature = secret.sign(&msg_id, timestamp, body);
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .map_err(describe_transport)?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered HTTP {}", status.as_u16()))
        }
    }
}

/// `webhook-id` of an event: the same for every attempt, every restart and every webhook.
pub fn message_id(event: &RecordedEvent) -> String {
    format!("msg_{}", event.event_id.simple())
}

fn stream_id(id: &str) -> Option<StreamId> {
    StreamId::new(STREAM_KIND, id).ok()
}

/// A transport failure as a short text without the URL's query (it may hold a token).
fn describe_transport(error: reqwest::Error) -> String {
    if error.is_timeout() {
        "the receiver did not answer in time".into()
    } else if error.is_connect() {
        "the receiver refused or dropped the connection".into()
    } else {
        format!("the request failed: {}", error.without_url())
    }
}

fn validate_url(url: &str) -> Result<String, WebhookError> {
    if url.len() > MAX_URL_LEN {
        return Err(WebhookError::InvalidUrl(format!(
            "longer than {MAX_URL_LEN} characters"
        )));
    }
    let parsed =
        reqwest::Url::parse(url).map_err(|error| WebhookError::InvalidUrl(error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(WebhookError::InvalidUrl(
            "the scheme must be http or https".into(),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(WebhookError::InvalidUrl("it has no host".into()));
    }
    Ok(parsed.to_string())
}

fn validate_event_types(types: &[String]) -> Result<Vec<String>, WebhookError> {
    if types.is_empty() {
        return Err(WebhookError::InvalidEventTypes(
            "name at least one event type, or \"*\" for all".into(),
        ));
    }
    if types.len() > MAX_EVENT_TYPES {
        return Err(WebhookError::InvalidEventTypes(format!(
            "at most {MAX_EVENT_TYPES} event types"
        )));
    }
    for name in types {
        let pascal = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && name.chars().all(|c| c.is_ascii_alphanumeric());
        if name != "*" && !pascal {
            return Err(WebhookError::InvalidEventTypes(format!(
                "{name:?} is not an event type name such as ChargePosted"
            )));
        }
    }
    let mut unique: Vec<String> = types.to_vec();
    unique.sort();
    unique.dedup();
    Ok(unique)
}

/// Runs the webhook runner until shutdown, starting over from its checkpoint after failures.
pub(crate) async fn run(
    webhooks: Arc<Webhooks>,
    stop: watch::Receiver<bool>,
    health: ConsumerHealth,
) {
    let supervisor = Supervisor {
        checkpoints: Arc::clone(&webhooks.checkpoints),
        health: health.clone(),
        stop: stop.clone(),
    };
    let runner = Runner {
        webhooks,
        stop,
        health,
    };
    supervisor.run(&runner).await;
    tracing::info!("webhook runner stopped");
}

/// The webhook runner as a consumer of the log: it folds the registrations and each
/// webhook's cursor, and its workers deliver.
struct Runner {
    webhooks: Arc<Webhooks>,
    stop: watch::Receiver<bool>,
    health: ConsumerHealth,
}

impl Consumer for Runner {
    type State = State;

    fn name(&self) -> &'static str {
        CHECKPOINT
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            first: Duration::from_millis(500),
            max: Duration::from_secs(5),
        }
    }

    /// The registrations could be folded again from the log, but the cursors could not:
    /// starting over would deliver every event again to every receiver. The runner retries
    /// (and `/readyz` names it) until an operator looks.
    fn unreadable_state(&self, error: serde_json::Error) -> Result<Resume<State>, Exit> {
        Err(Exit::failed(&WebhookError::CorruptCheckpoint(Arc::new(
            error,
        ))))
    }

    async fn run(&self, from: Resume<State>, lease: Box<dyn Lease>) -> Exit {
        own(&self.webhooks, &self.stop, &self.health, from, lease).await
    }
}

/// Cursors the workers advance, by webhook id.
type Cursors = Arc<Mutex<HashMap<String, u64>>>;

/// The runner while it holds the lease.
async fn own(
    webhooks: &Arc<Webhooks>,
    stop: &watch::Receiver<bool>,
    health: &ConsumerHealth,
    from: Resume<State>,
    lease: Box<dyn Lease>,
) -> Exit {
    let Resume {
        mut position,
        mut state,
    } = from;
    tracing::info!(
        position,
        webhooks = state.webhooks.len(),
        "webhook runner running"
    );
    let cursors: Cursors = Arc::new(Mutex::new(
        state
            .webhooks
            .values()
            .map(|r| (r.id.clone(), r.cursor))
            .collect(),
    ));
    let mut workers = Workers::default();
    for registration in state.webhooks.values() {
        workers.start(webhooks, registration, &cursors, stop);
    }
    let mut retries: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let exit = follow(
        webhooks,
        stop,
        health,
        lease.as_ref(),
        &mut position,
        &mut state,
        &cursors,
        &mut workers,
        &mut retries,
    )
    .await;
    workers.stop_all();
    exit
}

/// The worker tasks, by webhook id.
#[derive(Default)]
struct Workers {
    tasks: HashMap<String, JoinHandle<()>>,
}

impl Workers {
    fn start(
        &mut self,
        webhooks: &Arc<Webhooks>,
        registration: &Registration,
        cursors: &Cursors,
        stop: &watch::Receiver<bool>,
    ) {
        let Some(secret) = webhooks.secret_of(registration) else {
            tracing::error!(webhook = %registration.id, "the webhook's secret does not open with this master key; not delivering");
            return;
        };
        let task = tokio::spawn(worker(
            Arc::clone(webhooks),
            registration.clone(),
            secret,
            Arc::clone(cursors),
            stop.clone(),
        ));
        if let Some(previous) = self.tasks.insert(registration.id.clone(), task) {
            previous.abort();
        }
    }

    fn stop(&mut self, id: &str) {
        if let Some(task) = self.tasks.remove(id) {
            task.abort();
        }
    }

    fn stop_all(&mut self) {
        for (_, task) in self.tasks.drain() {
            task.abort();
        }
    }
}

/// Folds registrations from the log, checkpoints, and serves retry requests.
#[allow(clippy::too_many_arguments)]
async fn follow(
    webhooks: &Arc<Webhooks>,
    stop: &watch::Receiver<bool>,
    health: &ConsumerHealth,
    lease: &dyn Lease,
    position: &mut u64,
    state: &mut State,
    cursors: &Cursors,
    workers: &mut Workers,
    retries: &mut Arc<Mutex<HashSet<i64>>>,
) -> Exit {
    let mut stop_rx = stop.clone();
    let mut head = webhooks.feed.head_watch();
    let mut saved_position = *position;
    let mut saved_cursors: HashMap<String, u64> =
        cursors.lock().map(|c| c.clone()).unwrap_or_default();
    let mut last_retry_poll = tokio::time::Instant::now();
    let mut last_save = tokio::time::Instant::now();
    loop {
        if *stop_rx.borrow() {
            return Exit::Stopped;
        }
        if !lease.is_held() {
            return Exit::Failed("the webhook runner's lease was lost".into());
        }
        head.borrow_and_update();
        let events = match webhooks.feed.read(*position + 1, 4_096).await {
            Ok(events) => events,
            Err(error) => return Exit::Failed(error.to_string()),
        };
        let mut changed = false;
        for event in &events {
            if event.stream_id.kind() != STREAM_KIND {
                continue;
            }
            match event.event_type.as_str() {
                REGISTERED => match serde_json::from_value::<RegisteredData>(event.data.clone()) {
                    Ok(data) => {
                        let registration = Registration {
                            id: data.webhook_id,
                            url: data.url,
                            event_types: data.event_types,
                            sealed_secret: data.sealed_secret,
                            registered_at: event.metadata.recorded_at,
                            registered_by: event.metadata.principal.clone(),
                            position: event.position,
                            cursor: event.position,
                        };
                        if let Ok(mut c) = cursors.lock() {
                            c.insert(registration.id.clone(), registration.cursor);
                        }
                        workers.start(webhooks, &registration, cursors, stop);
                        state.webhooks.insert(registration.id.clone(), registration);
                        changed = true;
                    }
                    Err(error) => {
                        tracing::error!(position = event.position, %error, "a webhook registration does not decode; skipped");
                    }
                },
                REMOVED => {
                    if let Ok(data) = serde_json::from_value::<RemovedData>(event.data.clone()) {
                        workers.stop(&data.webhook_id);
                        state.webhooks.remove(&data.webhook_id);
                        if let Ok(mut c) = cursors.lock() {
                            c.remove(&data.webhook_id);
                        }
                        changed = true;
                    }
                }
                _ => {}
            }
        }
        if let Some(last) = events.last() {
            *position = last.position;
        }
        let current: HashMap<String, u64> = cursors.lock().map(|c| c.clone()).unwrap_or_default();
        // The slowest webhook is how far behind the deliveries are.
        let slowest = current.values().copied().min().unwrap_or(*position);
        health.running(*position, webhooks.feed.head().saturating_sub(slowest));
        let moved = current != saved_cursors || *position != saved_position;
        // A registration change is saved at once (POST /v1/webhooks waits for it); progress
        // alone at most every SAVE_EVERY, so a busy log is not a checkpoint write per commit.
        if changed || (moved && last_save.elapsed() >= SAVE_EVERY) {
            for (id, registration) in &mut state.webhooks {
                if let Some(cursor) = current.get(id) {
                    registration.cursor = *cursor;
                }
            }
            let state = match serde_json::to_string(state) {
                Ok(state) => state,
                Err(error) => {
                    return Exit::Failed(format!("webhook state does not serialise: {error}"));
                }
            };
            let checkpoint = Checkpoint {
                position: *position,
                state,
            };
            if let Err(error) = webhooks.checkpoints.save(CHECKPOINT, &checkpoint).await {
                return Exit::Failed(error.to_string());
            }
            saved_position = *position;
            saved_cursors = current;
            last_save = tokio::time::Instant::now();
        }
        if last_retry_poll.elapsed() >= Duration::from_secs(1) {
            last_retry_poll = tokio::time::Instant::now();
            poll_retries(webhooks, state, retries).await;
        }
        if events.len() >= 4_096 {
            continue;
        }
        // Caught up: wake on a commit, on shutdown, or after a short tick (workers' cursors
        // and retry requests are looked at on every tick).
        tokio::select! {
            changed = stop_rx.changed() => if changed.is_err() || *stop_rx.borrow() { return Exit::Stopped },
            _ = head.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Starts a delivery task for every retry an operator asked for that is not running yet.
async fn poll_retries(webhooks: &Arc<Webhooks>, state: &State, running: &Arc<Mutex<HashSet<i64>>>) {
    let requests = match webhooks
        .dead_letters
        .retry_requests(DEAD_LETTER_SOURCE)
        .await
    {
        Ok(requests) => requests,
        Err(error) => {
            tracing::warn!(%error, "webhook dead-letter retry requests cannot be read");
            return;
        }
    };
    for request in requests {
        let fresh = running
            .lock()
            .map(|mut r| r.insert(request.id))
            .unwrap_or(false);
        if !fresh {
            continue;
        }
        let registration = state.webhooks.get(&request.key).cloned();
        let webhooks = Arc::clone(webhooks);
        let running = Arc::clone(running);
        tokio::spawn(async move {
            retry_dead_letter(&webhooks, registration, &request).await;
            if let Ok(mut r) = running.lock() {
                r.remove(&request.id);
            }
        });
    }
}

/// Delivers a dead-lettered event once more and reports the outcome to the dead-letter list.
async fn retry_dead_letter(
    webhooks: &Webhooks,
    registration: Option<Registration>,
    request: &DeadLetter,
) {
    let outcome = async {
        let registration =
            registration.ok_or_else(|| "the webhook is no longer registered".to_owned())?;
        let secret = webhooks
            .secret_of(&registration)
            .ok_or_else(|| "the webhook's secret does not open with this master key".to_owned())?;
        let event = webhooks
            .feed
            .read(request.position, 1)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .find(|e| e.event_id == request.event_id)
            .cloned()
            .ok_or_else(|| "the event is not at its recorded position".to_owned())?;
        let body = wire_bytes(&event).map_err(|e| e.to_string())?;
        webhooks
            .attempt(&registration.url, &secret, &event, &body)
            .await
    }
    .await;
    let reported = match outcome {
        Ok(()) => {
            metrics::webhook_delivery("redelivered");
            tracing::info!(dead_letter = request.id, webhook = %request.key, "dead-lettered webhook delivery retried and delivered");
            webhooks.dead_letters.resolve(request.id).await
        }
        Err(error) => {
            metrics::webhook_delivery("retry_failed");
            tracing::warn!(dead_letter = request.id, webhook = %request.key, %error, "dead-lettered webhook delivery failed again");
            webhooks.dead_letters.failed_again(request.id, &error).await
        }
    };
    if let Err(error) = reported {
        tracing::warn!(dead_letter = request.id, %error, "the retry's outcome was not recorded; it will be tried again");
    }
}

/// One webhook's deliveries, in position order, from its cursor.
async fn worker(
    webhooks: Arc<Webhooks>,
    registration: Registration,
    secret: WebhookSecret,
    cursors: Cursors,
    stop: watch::Receiver<bool>,
) {
    let mut stop_rx = stop.clone();
    let mut head = webhooks.feed.head_watch();
    let mut cursor = registration.cursor;
    let mut pause = Duration::from_millis(200);
    loop {
        if *stop_rx.borrow() {
            return;
        }
        head.borrow_and_update();
        let events = match webhooks
            .feed
            .read(cursor + 1, webhooks.settings.batch)
            .await
        {
            Ok(events) => {
                pause = Duration::from_millis(200);
                events
            }
            Err(error) => {
                tracing::warn!(webhook = %registration.id, %error, "webhook worker cannot read the log; retrying");
                if wait(&mut stop_rx, pause).await {
                    return;
                }
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if events.is_empty() {
            tokio::select! {
                changed = stop_rx.changed() => if changed.is_err() || *stop_rx.borrow() { return },
                _ = head.changed() => {}
            }
            continue;
        }
        for event in &events {
            if registration.wants(&event.event_type)
                && !deliver(&webhooks, &registration, &secret, event, &mut stop_rx).await
            {
                return;
            }
            cursor = event.position;
            if let Ok(mut c) = cursors.lock() {
                c.insert(registration.id.clone(), cursor);
            }
        }
    }
}

/// Delivers one event with retries, then dead-letters it. False when shutdown interrupted
/// (the cursor stays before the event: it is delivered again after the restart).
async fn deliver(
    webhooks: &Webhooks,
    registration: &Registration,
    secret: &WebhookSecret,
    event: &RecordedEvent,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let body = match wire_bytes(event) {
        Ok(body) => body,
        Err(error) => unreachable!("a stored event serialises: {error}"),
    };
    let settings = &webhooks.settings;
    let mut last_error = String::new();
    for attempt in 1..=settings.max_attempts {
        match webhooks
            .attempt(&registration.url, secret, event, &body)
            .await
        {
            Ok(()) => {
                metrics::webhook_delivery("delivered");
                return true;
            }
            Err(error) => {
                tracing::debug!(webhook = %registration.id, position = event.position, attempt, %error, "webhook delivery failed");
                last_error = error;
            }
        }
        if attempt < settings.max_attempts {
            metrics::webhook_delivery("failed");
            if wait(stop, settings.backoff(attempt)).await {
                return false;
            }
        }
    }
    metrics::webhook_delivery("dead_lettered");
    tracing::warn!(webhook = %registration.id, position = event.position, event_type = %event.event_type, attempts = settings.max_attempts, error = %last_error, "webhook delivery dead-lettered");
    let new = || NewDeadLetter {
        source: DEAD_LETTER_SOURCE.into(),
        key: registration.id.clone(),
        event_id: event.event_id,
        position: event.position,
        payload: json!({
            "id": message_id(event),
            "webhook_id": registration.id,
            "url": registration.url,
            "event_type": event.event_type,
            "stream_id": event.stream_id.as_str(),
        }),
        error: last_error.clone(),
        attempts: settings.max_attempts,
    };
    let mut pause = Duration::from_millis(200);
    loop {
        match webhooks
            .dead_letters
            .record(new(), DeadLetterStatus::Dead)
            .await
        {
            Ok(_) => return true,
            Err(error) => {
                tracing::warn!(webhook = %registration.id, %error, "the dead letter cannot be recorded yet; retrying");
                if wait(stop, pause).await {
                    return false;
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_event_types_are_checked() {
        assert!(validate_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(validate_url("https://erp.example.org/careflow?x=1").is_ok());
        assert!(matches!(
            validate_url("ftp://example.org/"),
            Err(WebhookError::InvalidUrl(_))
        ));
        assert!(matches!(
            validate_url("not a url"),
            Err(WebhookError::InvalidUrl(_))
        ));
        assert_eq!(
            validate_event_types(&[
                "PatientRegistered".into(),
                "*".into(),
                "PatientRegistered".into()
            ])
            .unwrap(),
            vec!["*".to_string(), "PatientRegistered".to_string()]
        );
        assert!(validate_event_types(&[]).is_err());
        assert!(validate_event_types(&["patient.registered".into()]).is_err());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let settings = WebhookSettings {
            max_attempts: 8,
            backoff_first: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1_000),
            timeout: Duration::from_secs(1),
            settle: Duration::from_secs(1),
            batch: 16,
        };
        for _ in 0..50 {
            let first = settings.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = settings.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = settings.backoff(30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1_000));
        }
    }
}
