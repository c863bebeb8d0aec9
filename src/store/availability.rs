//! Whether the event store answers, as `/readyz` reports it.
//!
//! A server whose store has gone away (PostgreSQL restarting, a full disk under SQLite) must
//! say so: its commands are answered 503 meanwhile, and a load balancer should send them
//! elsewhere. [`Watched`] wraps the store every component of a server uses and remembers the
//! last time an append or a read failed because the store was unavailable, until one
//! succeeds again; `/readyz` also asks the store for its head (a read on PostgreSQL and
//! KurrentDB). A failure older than [`REMEMBERED_FOR`] with nothing tried since is forgotten,
//! so that a node nobody sends work to does not stay unready forever: the next command finds
//! out again.
//!
//! Where the store and the side stores are files in the data dir (SQLite; KurrentDB's side
//! stores), the free space of its filesystem is checked too: with less than
//! [`MIN_FREE_BYTES`] left, writes of any of them are about to fail (a full disk fails the
//! idempotency records before the log), and the answer says so before they do.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use careflow_aggregates::{RecordedEvent, StreamId};
use tokio::sync::watch;
use uuid::Uuid;

use super::{AppendRequest, Appended, Direction, EventStore, StoreError};

/// How long a failure counts without a newer attempt.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(30);

/// Free space on the data dir's filesystem below which the node is not ready.
pub const MIN_FREE_BYTES: u64 = 8 * 1024 * 1024;

/// What failed, and when.
#[derive(Debug, Clone)]
struct Failure {
    at: Instant,
    reason: String,
}

/// The store, with its recent unavailability remembered (see the module docs).
pub struct Watched {
    inner: Arc<dyn EventStore>,
    /// The data dir whose free space counts, where the stores are files in it.
    data_dir: Option<PathBuf>,
    appends: Mutex<Option<Failure>>,
    reads: Mutex<Option<Failure>>,
}

impl Watched {
    pub fn new(inner: Arc<dyn EventStore>) -> Self {
        Self {
            inner,
            data_dir: None,
            appends: Mutex::new(None),
            reads: Mutex::new(None),
        }
    }

    /// The same, also watching the free space of `data_dir`'s filesystem.
    #[must_use]
    pub fn with_data_dir(mut self, data_dir: PathBuf) -> Self {
        self.data_dir = Some(data_dir);
        self
    }

    /// Why the store cannot take appends or reads right now, if it recently could not (or its
    /// disk is all but full).
    pub fn unavailable(&self) -> Option<String> {
        if let Some(dir) = &self.data_dir
            && let Ok(stat) = rustix::fs::statvfs(dir)
        {
            let free = stat.f_bavail.saturating_mul(stat.f_frsize);
            if free < MIN_FREE_BYTES {
                return Some(format!(
                    "{} bytes free on the data dir's filesystem ({}), below {MIN_FREE_BYTES}",
                    free,
                    dir.display()
                ));
            }
        }
        let recent = |slot: &Mutex<Option<Failure>>, what: &str| {
            let failure = slot.lock().ok()?.clone()?;
            (failure.at.elapsed() < REMEMBERED_FOR).then(|| format!("{what}: {}", failure.reason))
        };
        recent(&self.appends, "appends fail").or_else(|| recent(&self.reads, "reads fail"))
    }

    fn note<T>(slot: &Mutex<Option<Failure>>, result: &Result<T, StoreError>) {
        let Ok(mut slot) = slot.lock() else {
            return;
        };
        match result {
            Ok(_) => *slot = None,
            Err(StoreError::Unavailable(reason)) => {
                *slot = Some(Failure {
                    at: Instant::now(),
                    reason: reason.clone(),
                });
            }
            // A conflict, a refusal or a closed store says nothing about availability.
            Err(_) => {}
        }
    }
}

#[async_trait]
impl EventStore for Watched {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        let result = self.inner.append(request).await;
        Self::note(&self.appends, &result);
        result
    }

    async fn append_all(&self, requests: Vec<AppendRequest>) -> Result<Vec<Appended>, StoreError> {
        let result = self.inner.append_all(requests).await;
        Self::note(&self.appends, &result);
        result
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let result = self.inner.read_stream(stream, from, direction, limit).await;
        Self::note(&self.reads, &result);
        result
    }

    async fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let result = self.inner.read_all(from, limit).await;
        Self::note(&self.reads, &result);
        result
    }

    async fn find_command(
        &self,
        stream: &StreamId,
        command_id: Uuid,
    ) -> Result<Option<Appended>, StoreError> {
        let result = self.inner.find_command(stream, command_id).await;
        Self::note(&self.reads, &result);
        result
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let result = self.inner.head_position().await;
        Self::note(&self.reads, &result);
        result
    }

    fn head_watch(&self) -> watch::Receiver<u64> {
        self.inner.head_watch()
    }

    fn poll_interval(&self) -> Option<Duration> {
        self.inner.poll_interval()
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}
