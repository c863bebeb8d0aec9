//! Writing events that another backend recorded, exactly as they are (`careflow store copy`).
//!
//! A copied event keeps its id, stream, version, type, data, metadata (`recorded_at`
//! included) and hashes; only its position changes, to KurrentDB's commit position. The hash
//! covers the version but not the position, so every chain still verifies on the copy.
//! Nothing is sealed or re-stamped here: the events are already sealed.

use careflow_aggregates::{RecordedEvent, StreamId};
use kurrentdb::{AppendToStreamOptions, StreamState};
use uuid::Uuid;

use super::{Direction, KurrentStore, lookup, stored, unavailable};
use crate::store::StoreError;

/// What [`KurrentStore::import`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// The events were appended.
    Written,
    /// The same events (ids and hashes) were already there: an earlier, interrupted copy.
    AlreadyThere,
}

/// Why events could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Occurs when the events handed in are not one command's consecutive events of one
    /// stream (a caller's mistake).
    #[error("an import is one command's consecutive events of one stream")]
    NotOneCommand,
    /// Occurs when the target already holds other events where these belong: the target is
    /// not empty, or holds another log.
    ///
    /// ### Handling
    /// Copy into an empty KurrentDB database (docs/event-store.md, "Moving a log").
    #[error(
        "{stream} version {version} on the target is not the source's event (the target holds another log)"
    )]
    Diverged { stream: StreamId, version: u64 },
    /// Occurs when the server cannot be reached or refuses the write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl KurrentStore {
    /// Appends one command's events, recorded by another backend, unchanged.
    ///
    /// The append expects the stream to end just before the first event's version, so a
    /// stream's events go in once, in order. With `look_first` (a copy resuming on a target
    /// that is not empty) the target is read first, and a command imported before (same ids,
    /// same hashes) answers [`Imported::AlreadyThere`] and writes nothing. Without it, such a
    /// repeat is still written at most once (KurrentDB answers a repeat of the same event ids
    /// after the expected revision as done), but is counted as written.
    ///
    /// # Errors
    /// [`ImportError`].
    pub async fn import(
        &self,
        events: &[RecordedEvent],
        look_first: bool,
    ) -> Result<Imported, ImportError> {
        let Some(first) = events.first() else {
            return Err(ImportError::NotOneCommand);
        };
        let one_command = events.iter().enumerate().all(|(i, e)| {
            e.stream_id == first.stream_id
                && e.metadata.command_id == first.metadata.command_id
                && e.version == first.version + i as u64
        });
        if !one_command || first.version == 0 {
            return Err(ImportError::NotOneCommand);
        }
        self.check_open()?;
        if look_first && let Some(found) = self.compare(events).await? {
            return Ok(found);
        }
        let state = match first.version {
            1 => StreamState::NoStream,
            v => StreamState::StreamRevision(v - 2),
        };
        let written = self
            .client
            .append_to_stream(
                first.stream_id.as_str(),
                &AppendToStreamOptions::default().stream_state(state),
                stored::recorded_to_event_data(events)?,
            )
            .await;
        match written {
            // KurrentDB also answers success, writing nothing, when these very event ids
            // already follow the expected revision: a repeat, and the same events.
            Ok(_) => Ok(Imported::Written),
            Err(kurrentdb::Error::WrongExpectedVersion { .. }) => match self.compare(events).await?
            {
                Some(found) => Ok(found),
                // Refused, yet nothing is where the events belong: the stream ends earlier.
                None => Err(ImportError::Diverged {
                    stream: first.stream_id.clone(),
                    version: first.version,
                }),
            },
            Err(e) => Err(unavailable(e).into()),
        }
    }

    /// Records that `command_id` was appended to `stream`, so that a repeat of it sent to
    /// this store is answered with its first result (see `lookup`): what an `Any` append
    /// leaves behind, written for every copied command because the copy cannot tell which
    /// were `Any` appends.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn mark_command(
        &self,
        stream: &StreamId,
        command_id: Uuid,
    ) -> Result<(), StoreError> {
        lookup::write_marker(self, stream, command_id).await
    }

    /// Whether the target holds `events` where they belong: [`Imported::AlreadyThere`] when
    /// it holds exactly them, `None` when the stream ends before the first of them.
    ///
    /// # Errors
    /// [`ImportError::Diverged`] when it holds other events there (or only some of these).
    async fn compare(&self, events: &[RecordedEvent]) -> Result<Option<Imported>, ImportError> {
        let first = &events[0];
        let there = self
            .read_raw(
                first.stream_id.as_str(),
                Some(first.version - 1),
                Direction::Forward,
                events.len(),
            )
            .await?;
        if there.is_empty() {
            return Ok(None);
        }
        for (i, ours) in events.iter().enumerate() {
            let same = match there.get(i) {
                Some(raw) => {
                    let theirs = stored::decode(raw)?;
                    theirs.event_id == ours.event_id && theirs.hash == ours.hash
                }
                None => false,
            };
            if !same {
                return Err(ImportError::Diverged {
                    stream: ours.stream_id.clone(),
                    version: ours.version,
                });
            }
        }
        Ok(Some(Imported::AlreadyThere))
    }
}
