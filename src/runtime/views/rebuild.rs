//! `careflow projections rebuild <name>`: ask for a rebuild and follow it to the swap.
//!
//! The rebuild itself is always done by a runner (see [`super::runner`]); this only decides
//! whose. When a server owns the projection (it holds the SQLite store's lock, or the
//! PostgreSQL advisory lock of the projection), the request goes through the catalog and the
//! server does the work while this process watches. When nobody does (the server is
//! stopped), this process opens the store and runs the projection's runner itself until the
//! new generation is live. Either way the old view stays readable until the swap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ProjectionSet, RunnerConfig, ViewBackend, ViewError, runner};
use crate::clock::Clock;
use crate::config::{Config, StoreKind};
use crate::store::sqlite::SqliteStore;
use crate::store::{self, EventStore, FeedConfig, LogFeed, StoreError};

/// Where a rebuild stands, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Position the new generation has reached.
    pub position: u64,
    /// The store's head.
    pub head: u64,
}

/// How the rebuild ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    pub name: &'static str,
    pub generation: u32,
    pub position: u64,
    /// True when this process ran the rebuild (no server owned the projection).
    pub ran_here: bool,
}

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    View(#[from] ViewError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the rebuild of {name} made no progress for {seconds} s (is the server running?)")]
    Stalled { name: &'static str, seconds: u64 },
    #[error("the rebuild of {name} stopped: {error}")]
    Refused { name: &'static str, error: String },
}

/// With no progress for this long, the command gives up (the rebuild stays requested).
const STALL: Duration = Duration::from_secs(120);

/// Rebuilds `name` and returns once its new generation is live, calling `progress` as it
/// goes.
///
/// # Errors
/// [`RebuildError`]: an unknown name, an unreachable store, a stalled or refused rebuild.
pub async fn rebuild(
    config: &Config,
    clock: &Clock,
    name: &str,
    progress: impl Fn(Progress),
) -> Result<Rebuilt, RebuildError> {
    let projection = runner::all_projections()
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| ViewError::UnknownProjection(name.to_owned()))?;
    let name = projection.name();
    let views = super::open(config, clock).await?;
    let (store, owned_store) = open_store(config, clock).await?;
    // Nobody else runs it when we can take its writer (PostgreSQL), or when we could take the
    // SQLite store's lock (then no server is running at all).
    let ran_here = match config.store {
        StoreKind::Postgres => {
            let backend = Arc::clone(&views);
            match tokio::task::spawn_blocking(move || backend.writer(name).map(drop))
                .await
                .map_err(|e| ViewError::Unavailable(e.to_string()))?
            {
                Ok(()) => true,
                Err(ViewError::NotOwner(_)) => false,
                Err(error) => return Err(error.into()),
            }
        }
        StoreKind::Sqlite | StoreKind::Kurrentdb => owned_store,
    };
    let before = blocking_catalog(&views, name).await?;
    let from_generation = before.live.as_ref().map_or(0, |g| g.generation);
    let head = store.head_position().await?;
    let backend = Arc::clone(&views);
    tokio::task::spawn_blocking(move || backend.request_rebuild(name))
        .await
        .map_err(|e| ViewError::Unavailable(e.to_string()))??;
    let local = if ran_here {
        let feed = LogFeed::start(Arc::clone(&store), FeedConfig::default()).await;
        Some(ProjectionSet::start(
            feed,
            Arc::clone(&views),
            vec![Arc::clone(&projection)],
            RunnerConfig {
                clock: clock.clone(),
                ..RunnerConfig::default()
            },
            &crate::runtime::consumers::Health::new(),
        ))
    } else {
        None
    };
    let result = follow(&store, &views, name, (from_generation, head), &progress).await;
    if let Some(local) = local {
        local.shutdown().await;
    }
    store.close().await;
    let (generation, position) = result?;
    Ok(Rebuilt {
        name,
        generation,
        position,
        ran_here,
    })
}

/// The event store: owned (we hold the SQLite lock, or PostgreSQL) or, when a server holds
/// the SQLite file, a read-only handle for the head position.
async fn open_store(
    config: &Config,
    clock: &Clock,
) -> Result<(Arc<dyn EventStore>, bool), RebuildError> {
    match store::open(config, clock).await {
        Ok(store) => Ok((store, true)),
        Err(error) if config.store != StoreKind::Postgres => {
            let path = config.sqlite_path();
            match SqliteStore::open_read_only(&path) {
                Ok(reader) => Ok((Arc::new(reader), false)),
                Err(_) => Err(error.into()),
            }
        }
        Err(error) => Err(error.into()),
    }
}

async fn blocking_catalog(
    views: &Arc<dyn ViewBackend>,
    name: &'static str,
) -> Result<super::Catalog, ViewError> {
    let views = Arc::clone(views);
    tokio::task::spawn_blocking(move || views.catalog(name))
        .await
        .map_err(|e| ViewError::Unavailable(e.to_string()))?
}

async fn follow(
    store: &Arc<dyn EventStore>,
    views: &Arc<dyn ViewBackend>,
    name: &'static str,
    (from_generation, head_at_request): (u32, u64),
    progress: &impl Fn(Progress),
) -> Result<(u32, u64), RebuildError> {
    let mut last = (0, Instant::now());
    loop {
        let catalog = blocking_catalog(views, name).await?;
        let head = store.head_position().await?;
        // Done when a newer generation is live and has replayed at least what was stored
        // when the rebuild was asked for (a first build creates generation 1 at position 0).
        if let Some(live) = &catalog.live
            && live.generation > from_generation
            && live.position >= head_at_request
            && catalog.building.is_none()
            && !catalog.rebuild_requested
        {
            progress(Progress {
                position: live.position,
                head: head.max(live.position),
            });
            return Ok((live.generation, live.position));
        }
        if let Some(error) = catalog.building.as_ref().and_then(|g| g.last_error.clone()) {
            return Err(RebuildError::Refused { name, error });
        }
        let position = match (&catalog.building, &catalog.live) {
            (Some(building), _) => building.position,
            (None, Some(live)) if live.generation > from_generation => live.position,
            _ => 0,
        };
        progress(Progress { position, head });
        if position > last.0 {
            last = (position, Instant::now());
        } else if last.1.elapsed() > STALL {
            return Err(RebuildError::Stalled {
                name,
                seconds: STALL.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
