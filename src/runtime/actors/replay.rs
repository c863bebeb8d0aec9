//! Rebuilding a state from the store: snapshot + tail, catch-up, and time travel.

use careflow_aggregates::{Aggregate, RecordedEvent, StreamId};
use chrono::{DateTime, Utc};

use super::Services;
use super::command::CommandError;
use crate::store::snapshot::Snapshot;
use crate::store::{Direction, EventStore};

/// Events read per store call while replaying.
const PAGE: usize = 1_000;

/// A state held in memory, with the version and position it reflects.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Loaded<A: Aggregate> {
    pub state: A::State,
    pub version: u64,
    pub position: u64,
    /// Hash of the event at `version` (for snapshots).
    pub head_hash: String,
}

impl<A: Aggregate> Loaded<A> {
    pub fn empty() -> Self {
        Self {
            state: A::initial_state(),
            version: 0,
            position: 0,
            head_hash: String::new(),
        }
    }

    /// Folds one stored event in.
    ///
    /// # Errors
    /// [`CommandError::Corrupt`] when the event does not decode.
    pub fn apply(&mut self, event: &RecordedEvent) -> Result<(), CommandError> {
        let decoded = A::decode(&event.event_type, event.schema_version, event.data.clone())
            .map_err(|error| {
                CommandError::Corrupt(format!(
                    "{} version {}: {error}",
                    event.stream_id, event.version
                ))
            })?;
        let state = std::mem::replace(&mut self.state, A::initial_state());
        self.state = A::evolve(state, &decoded);
        self.version = event.version;
        self.position = event.position;
        self.head_hash = event.hash.to_hex();
        Ok(())
    }
}

/// Reads every event after `loaded.version` and folds it in.
///
/// # Errors
/// Store errors, or [`CommandError::Corrupt`].
pub(crate) async fn catch_up<A: Aggregate>(
    store: &dyn EventStore,
    stream: &StreamId,
    mut loaded: Loaded<A>,
) -> Result<Loaded<A>, CommandError> {
    loop {
        let page = store
            .read_stream(stream, loaded.version + 1, Direction::Forward, PAGE)
            .await?;
        for event in &page {
            loaded.apply(event)?;
        }
        if page.len() < PAGE {
            return Ok(loaded);
        }
    }
}

/// The state of `stream`: its snapshot when usable, then the tail. A snapshot that is missing,
/// unreadable, of another `SNAPSHOT_VERSION`, or whose last event is not in the store any more
/// is ignored (full replay).
///
/// # Errors
/// Store errors, or [`CommandError::Corrupt`].
pub(crate) async fn load<A: Aggregate>(
    services: &Services,
    stream: &StreamId,
) -> Result<Loaded<A>, CommandError> {
    let start = match services.snapshots.load(stream).await {
        Ok(Some(snapshot)) => from_snapshot::<A>(services.store.as_ref(), stream, snapshot).await?,
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%error, %stream, "snapshot unreadable; replaying the stream");
            None
        }
    };
    match start {
        Some(Resumed::CaughtUp(loaded)) => Ok(loaded),
        Some(Resumed::Partly(loaded)) => catch_up(services.store.as_ref(), stream, loaded).await,
        None => catch_up(services.store.as_ref(), stream, Loaded::empty()).await,
    }
}

/// A state resumed from a snapshot, with as much of the tail as the first read brought.
enum Resumed<A: Aggregate> {
    /// The whole tail is folded in.
    CaughtUp(Loaded<A>),
    /// More of the tail may follow.
    Partly(Loaded<A>),
}

async fn from_snapshot<A: Aggregate>(
    store: &dyn EventStore,
    stream: &StreamId,
    snapshot: Snapshot,
) -> Result<Option<Resumed<A>>, CommandError> {
    if snapshot.snapshot_version != A::SNAPSHOT_VERSION || snapshot.version == 0 {
        return Ok(None);
    }
    let state: A::State = match serde_json::from_str(&snapshot.state) {
        Ok(state) => state,
        Err(error) => {
            tracing::warn!(%error, %stream, "snapshot does not decode; replaying the stream");
            return Ok(None);
        }
    };
    // The snapshot's last event must still be in the store, with the same hash. One read
    // brings it and the tail after it.
    let page = store
        .read_stream(stream, snapshot.version, Direction::Forward, PAGE)
        .await?;
    match page.first() {
        Some(event)
            if event.version == snapshot.version && event.hash.to_hex() == snapshot.head_hash =>
        {
            let mut loaded = Loaded {
                state,
                version: snapshot.version,
                position: event.position,
                head_hash: snapshot.head_hash,
            };
            for event in &page[1..] {
                loaded.apply(event)?;
            }
            Ok(Some(if page.len() < PAGE {
                Resumed::CaughtUp(loaded)
            } else {
                Resumed::Partly(loaded)
            }))
        }
        _ => {
            tracing::warn!(%stream, version = snapshot.version, "snapshot does not match the stream; replaying it");
            Ok(None)
        }
    }
}

/// The state of `stream` as of `as_of`: every event whose `recorded_at` is at or before it, in
/// version order (the first later event ends the replay). `None` when no event qualifies.
///
/// # Errors
/// Store errors, or [`CommandError::Corrupt`].
pub async fn state_as_of<A: Aggregate>(
    store: &dyn EventStore,
    stream: &StreamId,
    as_of: DateTime<Utc>,
) -> Result<Option<(A::State, u64, u64)>, CommandError> {
    let mut loaded = Loaded::<A>::empty();
    'pages: loop {
        let page = store
            .read_stream(stream, loaded.version + 1, Direction::Forward, PAGE)
            .await?;
        for event in &page {
            if event.metadata.recorded_at > as_of {
                break 'pages;
            }
            loaded.apply(event)?;
        }
        if page.len() < PAGE {
            break;
        }
    }
    if loaded.version == 0 {
        return Ok(None);
    }
    Ok(Some((loaded.state, loaded.version, loaded.position)))
}

/// Up to `limit` events of `stream` from version `from`.
///
/// # Errors
/// Store errors.
pub async fn history(
    store: &dyn EventStore,
    stream: &StreamId,
    from: u64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, CommandError> {
    Ok(store
        .read_stream(stream, from.max(1), Direction::Forward, limit)
        .await?)
}
