//! Catch-up-then-live subscriptions, written once for every backend.
//!
//! A subscription is nothing but repeated `read_all(next, batch)` calls: it remembers the
//! position after the last event it handed out and asks for more. That makes the switch from
//! catch-up to live free of gaps and duplicates by construction: there is no second code path
//! for "live" events that could overlap or miss the historical read. The price is that a
//! backend's `read_all` must never expose a position while an earlier one can still commit;
//! the backends guarantee that (see their module docs). When a read comes back empty the
//! subscription waits for this process's head to move or, for a shared backend, for the poll
//! interval to pass.

use std::sync::Arc;

use careflow_aggregates::RecordedEvent;
use tokio::sync::watch;

use super::{EventStore, StoreError};

/// Default number of events per read.
pub const DEFAULT_BATCH: usize = 512;

/// A position-ordered, exactly-once view of the global log from a starting position.
pub struct Subscription {
    store: Arc<dyn EventStore>,
    next: u64,
    batch: usize,
    head: watch::Receiver<u64>,
}

impl Subscription {
    pub(super) fn new(store: Arc<dyn EventStore>, from: u64) -> Self {
        let head = store.head_watch();
        Self {
            store,
            next: from.max(1),
            batch: DEFAULT_BATCH,
            head,
        }
    }

    /// Sets how many events one [`Subscription::next_batch`] returns at most.
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// The position the next event will have at least.
    pub fn next_position(&self) -> u64 {
        self.next
    }

    /// The next events in position order; waits while there are none.
    ///
    /// # Errors
    /// Store errors, and [`StoreError::Closed`] once the store shuts down while waiting.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            // Mark the current head as seen *before* reading, so a commit that lands between
            // the read and the wait still wakes us.
            self.head.borrow_and_update();
            let events = self.store.read_all(self.next, self.batch).await?;
            if let Some(last) = events.last() {
                self.next = last.position + 1;
                return Ok(events);
            }
            match self.store.poll_interval() {
                Some(interval) => {
                    tokio::select! {
                        changed = self.head.changed() => changed.map_err(|_| StoreError::Closed)?,
                        () = tokio::time::sleep(interval) => {}
                    }
                }
                None => self.head.changed().await.map_err(|_| StoreError::Closed)?,
            }
        }
    }

    /// Like [`Subscription::next_batch`] but returns an empty batch instead of waiting.
    ///
    /// # Errors
    /// Store errors.
    pub async fn try_next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.store.read_all(self.next, self.batch).await?;
        if let Some(last) = events.last() {
            self.next = last.position + 1;
        }
        Ok(events)
    }
}
