//! The one reader of the global log in a process, and the consumers' cursors on it.
//!
//! Every consumer of the log (the views, the process managers, the Odoo executor, the NATS
//! and webhook publishers) used to call `read_all` on its own, so each event was read and
//! decoded once per consumer: eleven times in a server with everything on. Now one task per
//! process, the feed's reader, follows the store: it reads each committed event once, decodes
//! it once into a [`RecordedEvent`], and keeps the newest ones in a bounded tail of shared
//! chunks. A consumer's [`Subscription`] hands out slices of that tail without copying.
//!
//! A consumer that is behind the tail (a rebuild from position 0, a webhook receiver that
//! was down for an hour, a node that just started) reads what it misses from the store on its
//! own, in its own batches, and joins the shared tail when it reaches it. Nobody waits for
//! anybody: the reader never waits for a consumer (the tail drops its oldest chunk when it is
//! full, whoever still wanted it), a slow consumer only falls back to reading the store, and
//! the command path never sees a consumer at all. Memory is bounded by the tail's capacity
//! plus each catching-up consumer's one batch in hand.
//!
//! Exactness comes from the store's `read_all` contract alone: a backend never returns a
//! position while an earlier one can still commit, the reader asks for exactly the position
//! after the last one it holds, and a cursor asks the tail or the store for exactly the
//! position after the last one it handed out. So there is no second path for "live" events
//! that could skip or repeat one at the switch from catch-up to the tail. Positions need not
//! be gap-free: the tail is searched by position, not by index.
//!
//! `careflow_log_events_read_total{reader}` counts what was read: `tail` once per event
//! whatever the number of consumers, `catch_up` for reads of consumers behind the tail.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use careflow_aggregates::RecordedEvent;
use tokio::sync::watch;

use super::{EventStore, StoreError};
use crate::operations::metrics;

/// Default number of events one [`Subscription::next_batch`] returns at most.
pub const DEFAULT_BATCH: usize = 512;

/// How the feed reads and how much it keeps.
#[derive(Debug, Clone, Copy)]
pub struct FeedConfig {
    /// Most events the reader asks the store for at once.
    pub read_batch: usize,
    /// Most events the tail keeps (it keeps at least its newest chunk).
    pub capacity: usize,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            read_batch: 1_024,
            // A few seconds of a busy server: consumers at the head never miss it, and a
            // rebuild or a late webhook reads the store instead of pinning memory.
            capacity: 65_536,
        }
    }
}

/// Events handed to a consumer: slices of shared chunks of the tail (several when the consumer
/// is behind by more than one chunk), or a batch the consumer read from the store itself.
/// Cheap to clone: nothing is copied.
///
/// Not one slice: a chunk is whatever the reader read at once, one event under a trickle of
/// commands, and a consumer behind the head must get a whole batch per read (one checkpoint
/// write, one transaction per batch), not one chunk, without copying the events into a
/// batch of its own.
#[derive(Clone, Default)]
pub struct Events {
    parts: Vec<(Arc<[RecordedEvent]>, Range<usize>)>,
    len: usize,
}

impl Events {
    fn empty() -> Self {
        Self::default()
    }

    fn owned(events: Vec<RecordedEvent>) -> Self {
        let mut all = Self::empty();
        let len = events.len();
        all.push(Arc::from(events), 0..len);
        all
    }

    fn push(&mut self, chunk: Arc<[RecordedEvent]>, range: Range<usize>) {
        if !range.is_empty() {
            self.len += range.len();
            self.parts.push((chunk, range));
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The events in position order.
    pub fn iter(&self) -> Iter<'_> {
        fn part(
            (chunk, range): &(Arc<[RecordedEvent]>, Range<usize>),
        ) -> std::slice::Iter<'_, RecordedEvent> {
            chunk[range.clone()].iter()
        }
        self.parts.iter().flat_map(part)
    }

    /// The events copied out (tests and tools; consumers iterate instead).
    pub fn to_vec(&self) -> Vec<RecordedEvent> {
        self.iter().cloned().collect()
    }

    pub fn first(&self) -> Option<&RecordedEvent> {
        self.iter().next()
    }

    pub fn last(&self) -> Option<&RecordedEvent> {
        self.iter().next_back()
    }
}

/// [`Events::iter`].
pub type Iter<'a> = std::iter::FlatMap<
    std::slice::Iter<'a, (Arc<[RecordedEvent]>, Range<usize>)>,
    std::slice::Iter<'a, RecordedEvent>,
    fn(&'a (Arc<[RecordedEvent]>, Range<usize>)) -> std::slice::Iter<'a, RecordedEvent>,
>;

impl<'a> IntoIterator for &'a Events {
    type Item = &'a RecordedEvent;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|e| e.position))
            .finish()
    }
}

/// The newest events, in chunks as the reader read them.
struct Tail {
    chunks: VecDeque<Arc<[RecordedEvent]>>,
    /// Events held in `chunks`.
    len: usize,
    /// Every position up to here is not (or no longer) in the tail; every committed position
    /// after it, up to `last`, is.
    floor: u64,
    /// The last position read (`floor` while the tail is empty).
    last: u64,
}

impl Tail {
    /// Up to `limit` events from position `from` on, when the tail holds that position's
    /// neighbourhood: `None` when `from` is at or below the floor (read the store).
    fn slice(&self, from: u64, limit: usize) -> Option<Events> {
        if from <= self.floor {
            return None;
        }
        // The first chunk whose last position reaches `from`, then the chunks after it until
        // `limit` events are gathered.
        let first = self
            .chunks
            .partition_point(|chunk| chunk.last().is_some_and(|e| e.position < from));
        let limit = limit.max(1);
        let mut events = Events::empty();
        for chunk in self.chunks.range(first..) {
            let start = chunk.partition_point(|e| e.position < from);
            let end = chunk.len().min(start + (limit - events.len()));
            events.push(Arc::clone(chunk), start..end);
            if events.len() == limit {
                break;
            }
        }
        Some(events)
    }

    fn push(&mut self, events: Vec<RecordedEvent>, capacity: usize) {
        let Some(last) = events.last().map(|e| e.position) else {
            return;
        };
        self.len += events.len();
        self.last = last;
        self.chunks.push_back(Arc::from(events));
        while self.len > capacity && self.chunks.len() > 1 {
            if let Some(evicted) = self.chunks.pop_front() {
                self.len -= evicted.len();
                if let Some(e) = evicted.last() {
                    self.floor = e.position;
                }
            }
        }
    }
}

/// What the reader task and the cursors share.
struct Shared {
    store: Arc<dyn EventStore>,
    tail: RwLock<Tail>,
    /// The last position in the tail: cursors at the head wait on it.
    head: watch::Sender<u64>,
    config: FeedConfig,
}

/// The log as this process reads it: one reader, a shared tail, a cursor per consumer.
///
/// Dropping the last handle stops the reader.
pub struct LogFeed {
    shared: Arc<Shared>,
    _stop: watch::Sender<()>,
}

impl LogFeed {
    /// Starts the reader at the store's current head: what is already committed is read by
    /// each consumer that still needs it, from the store.
    pub async fn start(store: Arc<dyn EventStore>, config: FeedConfig) -> Arc<Self> {
        let head = match store.head_position().await {
            Ok(head) => head,
            Err(error) => {
                tracing::warn!(%error, "the store's head is unknown; the feed starts from this process's view of it");
                *store.head_watch().borrow()
            }
        };
        let (head_tx, _) = watch::channel(head);
        let shared = Arc::new(Shared {
            store,
            tail: RwLock::new(Tail {
                chunks: VecDeque::new(),
                len: 0,
                floor: head,
                last: head,
            }),
            head: head_tx,
            config,
        });
        let (stop, stopped) = watch::channel(());
        tokio::spawn(follow(Arc::clone(&shared), stopped));
        Arc::new(Self {
            shared,
            _stop: stop,
        })
    }

    /// A cursor from position `from` (inclusive).
    pub fn subscribe(self: &Arc<Self>, from: u64) -> Subscription {
        Subscription {
            feed: Arc::clone(self),
            next: from.max(1),
            batch: DEFAULT_BATCH,
            head: self.shared.head.subscribe(),
        }
    }

    /// The last position the reader has read: the head as this process knows it, without a
    /// query (what consumers compute their lag against).
    pub fn head(&self) -> u64 {
        *self.shared.head.borrow()
    }

    /// The store the feed reads.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.shared.store
    }

    /// Wakes whenever the reader has read further (the value is [`LogFeed::head`]).
    pub fn head_watch(&self) -> watch::Receiver<u64> {
        self.shared.head.subscribe()
    }

    /// Up to `limit` events from position `from`: from the tail when it holds them (no copy,
    /// no read), else from the store. Consumers with a loop of their own (timers, retries)
    /// call this with their checkpoint and wait on [`LogFeed::head_watch`]; the others use a
    /// [`Subscription`].
    ///
    /// # Errors
    /// The store's, when `from` is behind the tail.
    pub async fn read(&self, from: u64, limit: usize) -> Result<Events, StoreError> {
        let from_tail = match self.shared.tail.read() {
            Ok(tail) => tail.slice(from, limit),
            Err(_) => None,
        };
        if let Some(events) = from_tail {
            return Ok(events);
        }
        let events = self.shared.store.read_all(from, limit).await?;
        metrics::log_events_read("catch_up", events.len());
        Ok(Events::owned(events))
    }
}

/// The reader task: reads after the last position it holds, pushes what it got into the
/// tail, and waits for the store's head to move (or its poll interval) when there is nothing.
async fn follow(shared: Arc<Shared>, mut stopped: watch::Receiver<()>) {
    let mut store_head = shared.store.head_watch();
    let poll = shared.store.poll_interval();
    let mut pause = Duration::from_millis(50);
    loop {
        store_head.borrow_and_update();
        let next = match shared.tail.read() {
            Ok(tail) => tail.last + 1,
            Err(_) => return,
        };
        match shared.store.read_all(next, shared.config.read_batch).await {
            Ok(events) if !events.is_empty() => {
                pause = Duration::from_millis(50);
                metrics::log_events_read("tail", events.len());
                let last = events.last().map_or(0, |e| e.position);
                let held = match shared.tail.write() {
                    Ok(mut tail) => {
                        tail.push(events, shared.config.capacity);
                        tail.len
                    }
                    Err(_) => return,
                };
                metrics::log_tail(last, held);
                shared.head.send_replace(last);
                continue;
            }
            Ok(_) => {}
            Err(StoreError::Closed) => return,
            Err(error) => {
                tracing::warn!(%error, "the log's reader cannot read the store; retrying");
                tokio::select! {
                    _ = stopped.changed() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        tokio::select! {
            _ = stopped.changed() => return,
            changed = store_head.changed() => if changed.is_err() { return },
            () = sleep_or_never(poll) => {}
        }
    }
}

async fn sleep_or_never(interval: Option<Duration>) {
    match interval {
        Some(interval) => tokio::time::sleep(interval).await,
        None => std::future::pending().await,
    }
}

/// A position-ordered, exactly-once view of the global log from a starting position: from
/// the store while it is behind the shared tail, from the tail once it has reached it.
pub struct Subscription {
    feed: Arc<LogFeed>,
    next: u64,
    batch: usize,
    head: watch::Receiver<u64>,
}

impl Subscription {
    /// Sets how many events one batch holds at most.
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
    /// Store errors, and [`StoreError::Closed`] once the feed's reader has stopped.
    pub async fn next_batch(&mut self) -> Result<Events, StoreError> {
        loop {
            let events = self.try_next_batch().await?;
            if !events.is_empty() {
                return Ok(events);
            }
            self.changed().await?;
        }
    }

    /// Like [`Subscription::next_batch`] but returns an empty batch instead of waiting.
    ///
    /// # Errors
    /// Store errors.
    pub async fn try_next_batch(&mut self) -> Result<Events, StoreError> {
        // Mark the head as seen *before* reading, so a read that lands between the read and
        // the wait still wakes [`Subscription::changed`].
        self.head.borrow_and_update();
        let events = self.feed.read(self.next, self.batch).await?;
        if let Some(last) = events.last() {
            self.next = last.position + 1;
        }
        Ok(events)
    }

    /// Waits until the feed has read past what this cursor last saw.
    ///
    /// # Errors
    /// [`StoreError::Closed`] once the feed's reader has stopped.
    pub async fn changed(&mut self) -> Result<(), StoreError> {
        self.head.changed().await.map_err(|_| StoreError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use careflow_aggregates::{EventHash, EventMetadata, StreamId};
    use chrono::Utc;
    use uuid::Uuid;

    fn event(position: u64) -> RecordedEvent {
        RecordedEvent {
            event_id: Uuid::nil(),
            stream_id: StreamId::parse("test-a").unwrap(),
            version: position,
            position,
            event_type: "Tested".into(),
            schema_version: 1,
            data: serde_json::Value::Null,
            metadata: EventMetadata {
                command_id: Uuid::nil(),
                correlation_id: String::new(),
                causation_id: String::new(),
                principal: String::new(),
                source: String::new(),
                occurred_at: Utc::now(),
                recorded_at: Utc::now(),
            },
            prev_hash: EventHash::ZERO,
            hash: EventHash::ZERO,
        }
    }

    fn tail(floor: u64) -> Tail {
        Tail {
            chunks: VecDeque::new(),
            len: 0,
            floor,
            last: floor,
        }
    }

    fn positions(events: &Events) -> Vec<u64> {
        events.iter().map(|e| e.position).collect()
    }

    #[test]
    fn the_tail_answers_only_above_its_floor_and_by_position() {
        let mut t = tail(10);
        assert!(t.slice(10, 5).is_none(), "at the floor: read the store");
        assert!(t.slice(11, 5).unwrap().is_empty(), "nothing read yet");
        // Gaps in positions (a backend whose positions are not dense) are fine.
        t.push(vec![event(11), event(13), event(14)], 100);
        t.push(vec![event(20), event(21)], 100);
        assert_eq!(positions(&t.slice(11, 2).unwrap()), vec![11, 13]);
        // A read spans chunks up to its limit.
        assert_eq!(positions(&t.slice(12, 10).unwrap()), vec![13, 14, 20, 21]);
        assert_eq!(positions(&t.slice(12, 3).unwrap()), vec![13, 14, 20]);
        assert_eq!(positions(&t.slice(15, 10).unwrap()), vec![20, 21]);
        assert!(t.slice(22, 10).unwrap().is_empty());
    }

    #[test]
    fn a_full_tail_drops_its_oldest_chunks_and_raises_its_floor() {
        let mut t = tail(0);
        t.push((1..=4).map(event).collect(), 6);
        t.push((5..=8).map(event).collect(), 6);
        assert_eq!(t.len, 4, "the first chunk went");
        assert_eq!(t.floor, 4);
        assert!(t.slice(3, 10).is_none(), "below the floor: read the store");
        assert_eq!(positions(&t.slice(5, 10).unwrap()), vec![5, 6, 7, 8]);
        // One chunk larger than the capacity stays: the newest chunk is always kept.
        t.push((9..=20).map(event).collect(), 6);
        assert_eq!(t.floor, 8);
        assert_eq!(t.len, 12);
    }
}
