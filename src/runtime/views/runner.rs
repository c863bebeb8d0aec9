//! Projection runners: one thread per projection, following the global log.
//!
//! A runner owns its projection's writer (see "Ownership" in the module docs of
//! [`super`]). Its loop:
//!
//! 1. every `control_interval`, read the catalog: a rebuild asked for starts a `building`
//!    generation (empty tables, checkpoint 0);
//! 2. while a rebuild runs, apply one large batch to it; when it has caught up with the head,
//!    swap it in (one transaction) and drop the retired generation;
//! 3. apply one batch to the live generation;
//! 4. with nothing to do, wait for the log's reader to read further ([`LogFeed`]), or for
//!    the next control check.
//!
//! Each batch is applied through an [`Overlay`] and committed with its checkpoint in one
//! transaction, so a crash at any point leaves the view exactly at a batch boundary: on
//! restart the runner resumes after the checkpoint, and no event is applied twice or skipped.
//! Live and rebuild batches alternate on one thread, so the live view keeps flowing during a
//! rebuild (its lag grows by at most one rebuild batch).
//!
//! An event a projection refuses stops that generation at the event: the batch's earlier
//! events are committed, the error is recorded in the catalog and counted, and the runner
//! tries again after `retry_after`. Skipping it would leave wrong figures without a trace.
//! Runners are plain threads (not Tokio tasks) because `apply` and the view database are
//! synchronous; they reach the async store through a runtime [`Handle`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use careflow_aggregates::RecordedEvent;
use careflow_projections::{Analytics, Audit, Billing, Projection};
use chrono::{DateTime, Utc};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use super::overlay::{Overlay, RowCache};
use super::{Catalog, GenerationStatus, ReadView, ViewBackend, ViewError, ViewWriter};
use crate::clock::Clock;
use crate::operations::metrics;
use crate::runtime::consumers::{ConsumerHealth, Health};
use crate::store::{EventStore, Events, LogFeed, StoreError};

/// A projection the runners can host.
pub type SharedProjection = Arc<dyn Projection + Send + Sync>;

/// Every projection this build runs, in a stable order.
pub fn all_projections() -> Vec<SharedProjection> {
    vec![
        Arc::new(Billing),
        Arc::new(Analytics),
        Arc::new(Audit),
        Arc::new(careflow_projections::claims::Claims),
        Arc::new(careflow_projections::Workforce),
    ]
}

/// How runners batch and wait.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Most events per live batch: small enough that a batch commits within milliseconds.
    pub live_batch: usize,
    /// Most events per rebuild batch: large, so commits and checkpoints are amortised.
    pub rebuild_batch: usize,
    /// Bytes of row text the cache of each generation holds before it is emptied.
    pub cache_bytes: usize,
    /// How often the catalog is read for rebuild requests.
    pub control_interval: Duration,
    /// Pause after a failed batch or while another node owns the projection.
    pub retry_after: Duration,
    /// What the lag in seconds and the events' age are measured against (the runtime's
    /// clock; the system's by default).
    pub clock: Clock,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            live_batch: 1_000,
            rebuild_batch: 10_000,
            cache_bytes: 64 << 20,
            control_interval: Duration::from_millis(250),
            retry_after: Duration::from_secs(2),
            clock: Clock::system(),
        }
    }
}

/// Where one projection stands (`GET /v1/projections` shows it as `http::projections::ProjectionView`).
#[derive(Debug, Clone)]
pub struct ProjectionStatus {
    pub name: &'static str,
    /// `live`, or `rebuilding` while a shadow copy is being built.
    pub state: &'static str,
    /// The live generation (1 at first; each completed rebuild adds one).
    pub generation: u32,
    /// The position the live view reflects.
    pub position: u64,
    /// Events committed to the store that the live view does not reflect yet.
    pub lag: u64,
    /// Seconds since the live view last committed, when it lags (0 when caught up).
    pub lag_seconds: f64,
    /// The position a running rebuild has reached.
    pub rebuild_position: Option<u64>,
    /// The error that stopped the live view (or the rebuild) at its next event.
    pub last_error: Option<String>,
}

/// The projections of one process: their runner threads and their reads.
pub struct ProjectionSet {
    backend: Arc<dyn ViewBackend>,
    store: Arc<dyn EventStore>,
    projections: Vec<SharedProjection>,
    stop: Arc<Stop>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    clock: Clock,
}

/// The shutdown signal shared with the runner threads.
#[derive(Default)]
struct Stop {
    stopped: AtomicBool,
    notify: Notify,
}

impl Stop {
    fn is_set(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

impl ProjectionSet {
    /// Starts a runner thread per projection. Must be called inside a Tokio runtime.
    pub fn start(
        feed: Arc<LogFeed>,
        backend: Arc<dyn ViewBackend>,
        projections: Vec<SharedProjection>,
        config: RunnerConfig,
        health: &Arc<Health>,
    ) -> Arc<Self> {
        let mut set = Self::idle(Arc::clone(feed.store()), backend, projections);
        set.clock = config.clock.clone();
        let handle = Handle::current();
        let mut threads = Vec::new();
        for projection in &set.projections {
            let runner = Runner {
                projection: Arc::clone(projection),
                name: projection.name(),
                feed: Arc::clone(&feed),
                health: health.register(projection.name(), true),
                backend: Arc::clone(&set.backend),
                config: config.clone(),
                stop: Arc::clone(&set.stop),
                handle: handle.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("projection-{}", projection.name()))
                .spawn(move || runner.run());
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    tracing::error!(%error, projection = projection.name(), "cannot start runner thread");
                }
            }
        }
        if let Ok(mut slot) = set.threads.lock() {
            *slot = threads;
        }
        Arc::new(set)
    }

    /// The reads and status of `projections` without running them (another node runs them,
    /// or the CLI only asks).
    pub fn idle(
        store: Arc<dyn EventStore>,
        backend: Arc<dyn ViewBackend>,
        projections: Vec<SharedProjection>,
    ) -> Self {
        Self {
            backend,
            store,
            projections,
            stop: Arc::default(),
            threads: Mutex::new(Vec::new()),
            clock: Clock::system(),
        }
    }

    pub fn backend(&self) -> &Arc<dyn ViewBackend> {
        &self.backend
    }

    /// The projection called `name`.
    ///
    /// # Errors
    /// [`ViewError::UnknownProjection`].
    pub fn projection(&self, name: &str) -> Result<&SharedProjection, ViewError> {
        self.projections
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| ViewError::UnknownProjection(name.to_owned()))
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.projections.iter().map(|p| p.name()).collect()
    }

    /// Stops the runners after their current batch and waits for them.
    pub async fn shutdown(&self) {
        self.stop.stopped.store(true, Ordering::Release);
        self.stop.notify.notify_waiters();
        let threads = self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for thread in threads {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Runs `f` on the live view of `name` (blocking: call from `spawn_blocking`).
    ///
    /// # Errors
    /// [`ViewError`]s of the lookup, the backend or `f`.
    pub fn read<T>(
        &self,
        name: &str,
        f: impl FnOnce(ReadView<'_>) -> Result<T, ViewError>,
    ) -> Result<(T, u64), ViewError> {
        let projection = self.projection(name)?;
        let mut f = Some(f);
        let mut out = None;
        self.backend
            .read(projection.name(), projection.tables(), &mut |view| {
                let position = view.position;
                if let Some(f) = f.take() {
                    out = Some((f(view)?, position));
                }
                Ok(())
            })?;
        out.ok_or_else(|| ViewError::Unavailable("the read ran no query".into()))
    }

    /// Status of every projection, from the catalog (so it is right on every node).
    ///
    /// # Errors
    /// The backend's or the store's errors.
    pub async fn statuses(&self) -> Result<Vec<ProjectionStatus>, ViewError> {
        let head = self
            .store
            .head_position()
            .await
            .map_err(|e| ViewError::Unavailable(e.to_string()))?;
        let backend = Arc::clone(&self.backend);
        let names = self.names();
        let now = self.clock.now();
        tokio::task::spawn_blocking(move || {
            names
                .into_iter()
                .map(|name| Ok(status_of(name, &backend.catalog(name)?, head, now)))
                .collect()
        })
        .await
        .map_err(|e| ViewError::Unavailable(e.to_string()))?
    }

    /// Asks the owner of `name` to rebuild it. False when a rebuild is already under way.
    ///
    /// # Errors
    /// [`ViewError::UnknownProjection`], the backend's errors.
    pub async fn request_rebuild(&self, name: &str) -> Result<bool, ViewError> {
        let name = self.projection(name)?.name();
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || backend.request_rebuild(name))
            .await
            .map_err(|e| ViewError::Unavailable(e.to_string()))?
    }
}

fn status_of(
    name: &'static str,
    catalog: &Catalog,
    head: u64,
    now: DateTime<Utc>,
) -> ProjectionStatus {
    let position = catalog.live.as_ref().map_or(0, |g| g.position);
    let lag = head.saturating_sub(position);
    let lag_seconds = match &catalog.live {
        Some(live) if lag > 0 => (now - live.updated_at)
            .to_std()
            .map_or(0.0, |d| d.as_secs_f64()),
        _ => 0.0,
    };
    let rebuilding = catalog.building.is_some() || catalog.rebuild_requested;
    ProjectionStatus {
        name,
        generation: catalog.live.as_ref().map_or(0, |g| g.generation),
        state: if rebuilding { "rebuilding" } else { "live" },
        position,
        lag,
        lag_seconds,
        rebuild_position: rebuilding.then(|| catalog.building.as_ref().map_or(0, |g| g.position)),
        last_error: catalog
            .live
            .as_ref()
            .and_then(|g| g.last_error.clone())
            .or_else(|| catalog.building.as_ref().and_then(|g| g.last_error.clone())),
    }
}

/// One generation a runner is filling.
struct Filling {
    generation: u32,
    position: u64,
    cache: RowCache,
    /// Set after a refused event: no new batch before this instant.
    paused_until: Option<Instant>,
}

/// One projection's runner thread.
struct Runner {
    projection: SharedProjection,
    name: &'static str,
    feed: Arc<LogFeed>,
    health: ConsumerHealth,
    backend: Arc<dyn ViewBackend>,
    config: RunnerConfig,
    stop: Arc<Stop>,
    handle: Handle,
}

/// Why a runner left its loop.
enum Exit {
    Stopped,
    Failed(ViewError),
}

impl Runner {
    fn run(self) {
        while !self.stop.is_set() {
            match self.backend.writer(self.name) {
                // A panic in a projection (a bug) must not end the runner for good: it is
                // reported like any failure and the runner starts over from its checkpoint.
                Ok(writer) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.run_owned(writer)
                }))
                .unwrap_or_else(|panic| {
                    let cause = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_owned());
                    Exit::Failed(ViewError::Unavailable(format!("runner panicked: {cause}")))
                }) {
                    Exit::Stopped => break,
                    Exit::Failed(error) => {
                        metrics::projection_error(self.name);
                        tracing::warn!(projection = self.name, %error, "projection runner failed; restarting");
                        self.health.retrying(&error.to_string());
                    }
                },
                Err(ViewError::NotOwner(_)) => {
                    tracing::debug!(projection = self.name, "another node runs this projection");
                    self.health.standby();
                }
                Err(error) => {
                    tracing::warn!(projection = self.name, %error, "cannot open the projection's writer");
                    self.health.retrying(&error.to_string());
                }
            }
            self.pause(self.config.retry_after);
        }
        self.health.stopped();
    }

    /// Sleeps for `how_long` or until shutdown.
    fn pause(&self, how_long: Duration) {
        let stop = &self.stop;
        self.handle.block_on(async {
            let notified = stop.notify.notified();
            if !stop.is_set() {
                let _ = tokio::time::timeout(how_long, notified).await;
            }
        });
    }

    fn run_owned(&self, mut writer: Box<dyn ViewWriter>) -> Exit {
        let tables = self.projection.tables();
        let catalog = match writer.catalog() {
            Ok(catalog) => catalog,
            Err(error) => return Exit::Failed(error),
        };
        let mut live = match catalog.live {
            Some(g) => Filling {
                generation: g.generation,
                position: g.position,
                cache: RowCache::new(self.config.cache_bytes, false),
                paused_until: None,
            },
            None => {
                if let Err(error) = writer.create_generation(tables, 1, GenerationStatus::Live) {
                    return Exit::Failed(error);
                }
                Filling {
                    generation: 1,
                    position: 0,
                    cache: RowCache::new(self.config.cache_bytes, true),
                    paused_until: None,
                }
            }
        };
        // A rebuild interrupted by a restart resumes from its own checkpoint.
        let mut building = catalog.building.map(|g| Filling {
            generation: g.generation,
            position: g.position,
            cache: RowCache::new(self.config.cache_bytes, false),
            paused_until: None,
        });
        let mut head = self.feed.head_watch();
        self.health.running(
            live.position,
            self.feed.head().saturating_sub(live.position),
        );
        let mut next_control = Instant::now();
        loop {
            if self.stop.is_set() {
                return Exit::Stopped;
            }
            if Instant::now() >= next_control {
                next_control = Instant::now() + self.config.control_interval;
                match writer.catalog() {
                    Ok(catalog) if catalog.rebuild_requested && building.is_none() => {
                        let generation = live.generation + 1;
                        if let Err(error) =
                            writer.create_generation(tables, generation, GenerationStatus::Building)
                        {
                            return Exit::Failed(error);
                        }
                        tracing::info!(projection = self.name, generation, "rebuild started");
                        building = Some(Filling {
                            generation,
                            position: 0,
                            cache: RowCache::new(self.config.cache_bytes, true),
                            paused_until: None,
                        });
                    }
                    Ok(_) => {}
                    Err(error) => return Exit::Failed(error),
                }
            }
            // Mark the head as seen before reading, so a commit after the read wakes us.
            head.borrow_and_update();
            let mut progressed = false;
            if let Some(shadow) = building.as_mut() {
                match self.step(writer.as_mut(), shadow, self.config.rebuild_batch, false) {
                    Ok(Step::Applied(events)) => {
                        metrics::projection_rebuilt(self.name, shadow.position, events);
                        progressed = true;
                    }
                    Ok(Step::CaughtUp) if shadow.position >= live.position => {
                        let Some(done) = building.take() else {
                            continue;
                        };
                        if let Err(error) =
                            writer.promote(tables, done.generation, Some(live.generation))
                        {
                            return Exit::Failed(error);
                        }
                        tracing::info!(
                            projection = self.name,
                            generation = done.generation,
                            position = done.position,
                            "rebuild swapped in"
                        );
                        metrics::projection_rebuilt(self.name, 0, 0);
                        live = done;
                        progressed = true;
                    }
                    Ok(Step::CaughtUp | Step::Paused) => {}
                    Err(error) => return Exit::Failed(error),
                }
            }
            match self.step(writer.as_mut(), &mut live, self.config.live_batch, true) {
                Ok(Step::Applied(_)) => progressed = true,
                Ok(Step::CaughtUp | Step::Paused) => {}
                Err(error) => return Exit::Failed(error),
            }
            if !progressed {
                self.wait_for_events(&mut head, next_control);
            }
        }
    }

    /// Waits until the log's reader reads further, the next control check is due, or
    /// shutdown.
    fn wait_for_events(&self, head: &mut tokio::sync::watch::Receiver<u64>, next_control: Instant) {
        let wait = next_control.saturating_duration_since(Instant::now());
        let stop = &self.stop;
        self.handle.block_on(async {
            let notified = stop.notify.notified();
            if stop.is_set() {
                return;
            }
            tokio::select! {
                _ = head.changed() => {}
                () = notified => {}
                () = tokio::time::sleep(wait) => {}
            }
        });
    }

    /// Applies the next batch to `target` and commits it with its checkpoint.
    fn step(
        &self,
        writer: &mut dyn ViewWriter,
        target: &mut Filling,
        batch: usize,
        live: bool,
    ) -> Result<Step, ViewError> {
        if let Some(until) = target.paused_until {
            if Instant::now() < until {
                return Ok(Step::Paused);
            }
            target.paused_until = None;
        }
        let events = self
            .handle
            .block_on(self.feed.read(target.position + 1, batch))
            .map_err(store_error)?;
        if events.is_empty() {
            return Ok(Step::CaughtUp);
        }
        let (applied, refused) = self.apply(writer, target, &events)?;
        if let Some((position, error)) = refused {
            metrics::projection_error(self.name);
            tracing::error!(projection = self.name, position, %error, "event refused; the view stops before it");
            writer.set_error(target.generation, Some(&error))?;
            target.paused_until = Some(Instant::now() + self.config.retry_after);
            if live {
                self.health.stuck(position, &error);
            }
        } else if live {
            self.health.running(
                target.position,
                self.feed.head().saturating_sub(target.position),
            );
        }
        if applied > 0 && live {
            self.report_live(target.position, events.iter().take(applied));
        }
        Ok(if applied > 0 {
            Step::Applied(applied)
        } else {
            Step::Paused
        })
    }

    /// Applies `events` in order and commits those applied with the checkpoint; returns how
    /// many, and the event the projection refused, if any.
    fn apply(
        &self,
        writer: &mut dyn ViewWriter,
        target: &mut Filling,
        events: &Events,
    ) -> Result<(usize, Option<(u64, String)>), ViewError> {
        let generation = target.generation;
        let mut refused = None;
        let mut applied = events.len();
        let pending = {
            let mut overlay = Overlay::new(&*writer, generation, &mut target.cache);
            for (index, event) in events.iter().enumerate() {
                if let Err(error) = self.projection.apply(&mut overlay, event) {
                    refused = Some((event.position, error.to_string()));
                    applied = index;
                    break;
                }
            }
            if refused.is_some() {
                // The refused event may have written some of its rows: redo the batch
                // without it.
                overlay.abandon();
                let mut overlay = Overlay::new(&*writer, generation, &mut target.cache);
                for event in events.iter().take(applied) {
                    self.projection
                        .apply(&mut overlay, event)
                        .map_err(ViewError::Projection)?;
                }
                overlay.into_pending().map_err(ViewError::Projection)?
            } else {
                overlay.into_pending().map_err(ViewError::Projection)?
            }
        };
        let Some(last) = events.iter().take(applied).last().map(|e| e.position) else {
            pending.settle(true);
            return Ok((0, refused));
        };
        let result = writer.commit(generation, &mut pending.writes(), last);
        pending.settle(result.is_ok());
        result?;
        target.position = last;
        Ok((applied, refused))
    }

    fn report_live<'e>(
        &self,
        position: u64,
        events: impl Iterator<Item = &'e RecordedEvent> + Clone,
    ) {
        let now = self.config.clock.now();
        let head = self.feed.head();

        let age = |event: &RecordedEvent| (now - event.metadata.recorded_at).to_std().ok();
        let behind = head > position;
        metrics::projection_committed(
            self.name,
            position,
            head,
            if behind {
                events.clone().last().and_then(age)
            } else {
                None
            },
            events.filter_map(age),
        );
    }
}

enum Step {
    Applied(usize),
    CaughtUp,
    Paused,
}

fn store_error(error: StoreError) -> ViewError {
    ViewError::Unavailable(error.to_string())
}
