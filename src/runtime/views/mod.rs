//! Projection runners and the SQL home of their views.
//!
//! The pure projections (`careflow-projections`) fold events into rows through the
//! `ViewStore` trait. This module gives them a durable home and keeps them fed:
//!
//! - [`ViewBackend`]: view tables beside the events (`views.db` in the SQLite data dir, or
//!   tables in the PostgreSQL schema), a catalog of every projection's generations and
//!   checkpoints, and consistent reads for the HTTP edge ([`ViewBackend::read`]);
//! - [`overlay::Overlay`]: the `ViewStore` a runner hands to `apply`, which caches rows across
//!   batches and collects a batch's writes so they commit with the checkpoint in one
//!   transaction;
//! - [`runner`]: one thread per projection that follows the global log from its checkpoint
//!   and runs zero-downtime rebuilds.
//!
//! **Generations.** Each projection's tables exist once per generation: table `billing_accounts`
//! of generation 3 is the SQL table `billing_accounts_g3`. The catalog names one generation
//! `live`; readers only ever read that one, inside one read transaction together with its
//! checkpoint, so the `X-Careflow-Position` they answer with is exactly the position the rows
//! reflect. A rebuild fills generation `live + 1` (`building`) from position 0 while the live
//! generation keeps being updated and served, and the swap is a single transaction that flips
//! the two statuses. A reader therefore sees the old view or the new one, never a half-built
//! one. The retired generation's tables are dropped right after the swap (PostgreSQL waits
//! for readers still inside it; a SQLite reader keeps its snapshot).
//!
//! **Ownership.** A projection's rows must be written by one runner only, or an event would
//! be applied twice. On SQLite the store's lock file already makes the server the only writer.
//! On PostgreSQL, where several nodes share the tables, the runner holds a session advisory
//! lock per projection; the other nodes serve reads and stand by. A rebuild is asked for
//! through the catalog (`rebuild_requested`), so any node (or the CLI) can ask and the owner
//! carries it out. docs/projections.md has the operator's view.

use std::sync::Arc;

use careflow_projections::{ProjectionError, ViewStore};
use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::config::Config;
use crate::store::side::{SideStore, SideStoreError};

pub mod overlay;
pub mod postgres;
pub mod rebuild;
pub mod runner;
pub mod sqlite;

#[cfg(test)]
mod tests;

pub use runner::{ProjectionSet, RunnerConfig};

/// Why a view operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// Occurs when the view database cannot be opened, read or written.
    #[error("view store unavailable: {0}")]
    Unavailable(String),
    /// Occurs when a projection name is not one this build knows.
    #[error("no projection named {0}")]
    UnknownProjection(String),
    /// Occurs when a projection has no live generation yet (its runner never started).
    #[error("projection {0} has not been built yet")]
    NotBuilt(String),
    /// Occurs when another process holds the projection's writer lock (PostgreSQL).
    #[error("projection {0} is run by another node")]
    NotOwner(String),
    /// Occurs when a projection's query fails on a row.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

pub(crate) fn unavailable(error: impl std::fmt::Display) -> ViewError {
    ViewError::Unavailable(error.to_string())
}

pub(crate) fn not_opened(error: SideStoreError) -> ViewError {
    unavailable(error.describe())
}

/// The SQLite file beside `careflow.db`.
const FILE: &str = "views.db";

/// The SQL name of one view table of one generation. Table names come from the projections'
/// `&'static str` constants (lower-case words and underscores), never from input.
pub fn physical(table: &str, generation: u32) -> String {
    format!("{table}_g{generation}")
}

/// Where a generation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationStatus {
    /// Served to readers and kept up to date.
    Live,
    /// Being rebuilt from position 0; readers never see it.
    Building,
}

impl GenerationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Building => "building",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "live" => Some(Self::Live),
            "building" => Some(Self::Building),
            _ => None,
        }
    }
}

/// One generation of one projection, as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub generation: u32,
    pub status: GenerationStatus,
    /// The position of the last event applied (0: none yet).
    pub position: u64,
    /// When the last batch was committed.
    pub updated_at: DateTime<Utc>,
    /// The error that stopped the runner at the next event, if any.
    pub last_error: Option<String>,
}

/// Everything the catalog knows of one projection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalog {
    pub live: Option<Generation>,
    pub building: Option<Generation>,
    /// Set by [`ViewBackend::request_rebuild`], cleared when the owner starts the rebuild.
    pub rebuild_requested: bool,
}

/// One row write of a batch, `(table, key, row as JSON text)`: `None` deletes.
pub type Write<'a> = (&'static str, &'a str, Option<&'a str>);

/// What a read saw: the live generation's rows and their checkpoint, from one snapshot.
pub struct ReadView<'a> {
    pub rows: &'a dyn ViewStore,
    /// The position of the last event the rows reflect.
    pub position: u64,
}

/// Where views live. Implemented by [`sqlite::SqliteViews`] and [`postgres::PostgresViews`].
///
/// The methods are blocking: runners call them from their own threads and the HTTP edge from
/// `spawn_blocking`. (The PostgreSQL implementation drives its async client with
/// `Handle::block_on`, which is allowed exactly there.)
pub trait ViewBackend: Send + Sync + 'static {
    /// `sqlite` or `postgres`, for logs.
    fn backend(&self) -> &'static str;

    /// Runs `f` on the live generation of `projection` and its checkpoint, read in one
    /// snapshot.
    ///
    /// # Errors
    /// [`ViewError::NotBuilt`] before the first runner created the projection, the backend's
    /// errors, or `f`'s.
    fn read(
        &self,
        projection: &'static str,
        tables: &'static [&'static str],
        f: &mut dyn FnMut(ReadView<'_>) -> Result<(), ViewError>,
    ) -> Result<(), ViewError>;

    /// The catalog entry of `projection` (empty when it was never started).
    ///
    /// # Errors
    /// The backend's errors.
    fn catalog(&self, projection: &str) -> Result<Catalog, ViewError>;

    /// Records that `projection` should be rebuilt; its owner starts within a poll interval.
    /// Returns false when a rebuild is already asked for or running.
    ///
    /// # Errors
    /// The backend's errors.
    fn request_rebuild(&self, projection: &str) -> Result<bool, ViewError>;

    /// Becomes the only writer of `projection` and returns its writer, or
    /// [`ViewError::NotOwner`] while another process holds it.
    ///
    /// # Errors
    /// [`ViewError::NotOwner`], the backend's errors.
    fn writer(&self, projection: &'static str) -> Result<Box<dyn ViewWriter>, ViewError>;
}

/// The one writer of a projection's tables (see "Ownership" in the module docs).
pub trait ViewWriter: Send {
    /// The catalog entry, read fresh.
    ///
    /// # Errors
    /// The backend's errors.
    fn catalog(&mut self) -> Result<Catalog, ViewError>;

    /// Creates the tables of `generation` empty (dropping leftovers of a crashed rebuild),
    /// records it with `status` at position 0 and clears `rebuild_requested`.
    ///
    /// # Errors
    /// The backend's errors.
    fn create_generation(
        &mut self,
        tables: &[&'static str],
        generation: u32,
        status: GenerationStatus,
    ) -> Result<(), ViewError>;

    /// One row of one generation's table, as its JSON text.
    ///
    /// # Errors
    /// The backend's errors.
    fn fetch(
        &self,
        table: &'static str,
        generation: u32,
        key: &str,
    ) -> Result<Option<String>, ViewError>;

    /// Writes `writes` to `generation` and moves its checkpoint to `position`, in one
    /// transaction.
    ///
    /// # Errors
    /// The backend's errors; nothing is written then.
    fn commit(
        &mut self,
        generation: u32,
        writes: &mut dyn Iterator<Item = Write<'_>>,
        position: u64,
    ) -> Result<(), ViewError>;

    /// In one transaction: `building` becomes live and the old live generation is forgotten;
    /// then the old generation's tables are dropped.
    ///
    /// # Errors
    /// The backend's errors; the old generation stays live then.
    fn promote(
        &mut self,
        tables: &[&'static str],
        building: u32,
        retired: Option<u32>,
    ) -> Result<(), ViewError>;

    /// Notes (or clears) the error that stopped `generation` at its next event.
    ///
    /// # Errors
    /// The backend's errors.
    fn set_error(&mut self, generation: u32, error: Option<&str>) -> Result<(), ViewError>;
}

/// Opens the views that belong with the configured event store; `clock` stamps their catalog.
///
/// # Errors
/// [`ViewError::Unavailable`].
pub async fn open(config: &Config, clock: &Clock) -> Result<Arc<dyn ViewBackend>, ViewError> {
    match SideStore::of(config, FILE).map_err(not_opened)? {
        SideStore::Postgres { url, schema } => Ok(Arc::new(
            postgres::PostgresViews::open(&url, &schema)
                .await?
                .with_clock(clock.clone()),
        )),
        // `views.db`'s folder: a file per projection beside it (`sqlite::SqliteViewFiles`).
        SideStore::Sqlite(path) => Ok(Arc::new(
            sqlite::SqliteViewFiles::open(path.parent().unwrap_or(&config.data_dir))
                .with_clock(clock.clone()),
        )),
    }
}
