//! The in-memory transaction log and KurrentDB's rules for writing to it.
//!
//! What is modelled, from the server's source (`IndexWriter.CheckCommitStartingAt`,
//! `AllReader`, `Streams.Append`):
//!
//! - every event is one prepare record at a *log position* (a byte offset), and since 20.x an
//!   append is implicitly committed, so an event's commit position equals its prepare
//!   position. Positions grow with the size of what was written: ordered, never dense;
//! - the log starts with the server's own records (`$epoch-information`, the `admin` user),
//!   so the first user event is never at position 0;
//! - optimistic concurrency by stream revision (0-based), `NoStream`, `Any`, `StreamExists`;
//! - idempotency by event id: a write whose events are already the stream's events at the
//!   expected revision (or, for `Any`/`StreamExists`, anywhere in the stream) is answered
//!   with the original write's revision and position and writes nothing; a write that
//!   repeats only a prefix is a wrong expected version ("corrupted idempotency").
//!
//! Deviation: the server remembers event ids for `Any` writes in a bounded cache that a
//! restart empties; the fake remembers them all (its data never outlives the process).

use std::collections::HashMap;

use uuid::Uuid;

/// Bytes of a prepare record besides its variable fields (header, lengths, flags, ids).
const RECORD_OVERHEAD: u64 = 86;

/// One event in the log.
#[derive(Debug, Clone)]
pub struct Record {
    pub stream: String,
    pub revision: u64,
    pub id: Uuid,
    pub event_type: String,
    pub content_type: String,
    pub data: Vec<u8>,
    pub custom_metadata: Vec<u8>,
    /// Commit and prepare position (equal for implicitly committed events).
    pub position: u64,
    /// .NET ticks (100 ns) since the Unix epoch, as the server sends `created`.
    pub created: i64,
}

/// What a write expects of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Any,
    NoStream,
    StreamExists,
    Revision(u64),
}

/// One event a client proposes.
#[derive(Debug, Clone)]
pub struct Proposed {
    pub id: Uuid,
    pub event_type: String,
    pub content_type: String,
    pub data: Vec<u8>,
    pub custom_metadata: Vec<u8>,
}

/// How a write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written now, or recognised as a repeat of an earlier write (the same answer).
    Success {
        /// The stream's last revision after the write; `None`: the stream does not exist.
        current_revision: Option<u64>,
        /// Position of the write's last event; `None` when nothing was ever written.
        position: Option<u64>,
    },
    WrongExpectedVersion {
        current_revision: Option<u64>,
    },
}

/// The whole database: one log and the streams' indexes into it.
#[derive(Debug)]
pub struct Log {
    records: Vec<Record>,
    streams: HashMap<String, Vec<usize>>,
    /// Where the next record starts (the writer checkpoint).
    end: u64,
}

impl Default for Log {
    fn default() -> Self {
        Self::new()
    }
}

impl Log {
    /// A fresh database, with the records a new server writes when it starts.
    pub fn new() -> Self {
        let mut log = Self {
            records: Vec::new(),
            streams: HashMap::new(),
            end: 0,
        };
        for (stream, event_type) in [
            ("$epochs", "$epoch-information"),
            ("$user-admin", "$UserCreated"),
        ] {
            log.write(
                stream,
                vec![Proposed {
                    id: Uuid::new_v4(),
                    event_type: event_type.into(),
                    content_type: "application/json".into(),
                    data: b"{}".to_vec(),
                    custom_metadata: Vec::new(),
                }],
            );
        }
        log
    }

    fn stream_records(&self, stream: &str) -> &[usize] {
        self.streams.get(stream).map_or(&[], Vec::as_slice)
    }

    /// The stream's last revision, `None` when it has no events.
    pub fn current_revision(&self, stream: &str) -> Option<u64> {
        self.stream_records(stream)
            .last()
            .map(|&i| self.records[i].revision)
    }

    fn record_at(&self, stream: &str, revision: u64) -> Option<&Record> {
        let indexes = self.stream_records(stream);
        let i = usize::try_from(revision).ok()?;
        indexes.get(i).map(|&i| &self.records[i])
    }

    /// Appends `events` if `expected` holds, following the server's commit checks.
    pub fn append(
        &mut self,
        stream: &str,
        expected: Expected,
        events: Vec<Proposed>,
    ) -> WriteOutcome {
        let current = self.current_revision(stream);
        let current_i = current.map_or(-1, |r| r as i64);
        let wrong = WriteOutcome::WrongExpectedVersion {
            current_revision: current,
        };
        match expected {
            Expected::StreamExists if current.is_none() => wrong,
            Expected::Any | Expected::StreamExists => {
                // Find events already written: a repeat must repeat the whole write.
                let mut found: Option<(u64, u64)> = None;
                for proposed in &events {
                    let existing = self
                        .stream_records(stream)
                        .iter()
                        .map(|&i| &self.records[i])
                        .find(|r| r.id == proposed.id);
                    match (existing, found) {
                        (Some(r), None) => found = Some((r.revision, r.revision)),
                        (Some(r), Some((start, _))) => found = Some((start, r.revision)),
                        (None, None) => return self.write(stream, events),
                        (None, Some(_)) => return wrong,
                    }
                }
                match found {
                    Some((_, last)) => self.idempotent(stream, last),
                    None => self.write(stream, events),
                }
            }
            Expected::NoStream | Expected::Revision(_) => {
                let expected_i = match expected {
                    Expected::Revision(r) => r as i64,
                    _ => -1,
                };
                if expected_i < current_i {
                    if events.is_empty() {
                        return wrong;
                    }
                    let mut revision = expected_i;
                    for proposed in &events {
                        revision += 1;
                        match self.record_at(stream, revision as u64) {
                            Some(r) if r.id == proposed.id => {}
                            _ => return wrong,
                        }
                    }
                    self.idempotent(stream, revision as u64)
                } else if expected_i > current_i {
                    wrong
                } else {
                    self.write(stream, events)
                }
            }
        }
    }

    fn idempotent(&self, stream: &str, last: u64) -> WriteOutcome {
        WriteOutcome::Success {
            current_revision: Some(last),
            position: self.record_at(stream, last).map(|r| r.position),
        }
    }

    fn write(&mut self, stream: &str, events: Vec<Proposed>) -> WriteOutcome {
        let mut revision = self.current_revision(stream);
        let mut position = None;
        let created = ticks_now();
        for proposed in events {
            let next = revision.map_or(0, |r| r + 1);
            let size = RECORD_OVERHEAD
                + (stream.len()
                    + proposed.event_type.len()
                    + proposed.data.len()
                    + proposed.custom_metadata.len()) as u64;
            let record = Record {
                stream: stream.to_owned(),
                revision: next,
                id: proposed.id,
                event_type: proposed.event_type,
                content_type: proposed.content_type,
                data: proposed.data,
                custom_metadata: proposed.custom_metadata,
                position: self.end,
                created,
            };
            position = Some(self.end);
            self.end += size;
            self.streams
                .entry(stream.to_owned())
                .or_default()
                .push(self.records.len());
            self.records.push(record);
            revision = Some(next);
        }
        WriteOutcome::Success {
            current_revision: revision,
            position,
        }
    }

    /// Up to `count` events of a stream from `from` (`None`: the start going forward, the
    /// end going backward); `None` when the stream does not exist.
    pub fn read_stream(
        &self,
        stream: &str,
        from: Option<u64>,
        backward: bool,
        count: u64,
    ) -> Option<Vec<Record>> {
        let indexes = self.streams.get(stream)?;
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let records = indexes.iter().map(|&i| &self.records[i]);
        Some(if backward {
            let from = from.unwrap_or(u64::MAX);
            records
                .rev()
                .filter(|r| r.revision <= from)
                .take(count)
                .cloned()
                .collect()
        } else {
            let from = from.unwrap_or(0);
            records
                .filter(|r| r.revision >= from)
                .take(count)
                .cloned()
                .collect()
        })
    }

    /// Whether `position` is where a record starts or the end of the log: the only positions
    /// the server can read `$all` from (anything else is "an invalid position").
    pub fn is_valid_position(&self, position: u64) -> bool {
        position == self.end
            || self
                .records
                .binary_search_by_key(&position, |r| r.position)
                .is_ok()
    }

    /// Up to `count` events of `$all`: forward from `from` inclusive (`None`: the start),
    /// backward from before `from` (`None`: the end).
    pub fn read_all(&self, from: Option<u64>, backward: bool, count: u64) -> Vec<Record> {
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if backward {
            let from = from.unwrap_or(u64::MAX);
            self.records
                .iter()
                .rev()
                .filter(|r| r.position < from)
                .take(count)
                .cloned()
                .collect()
        } else {
            let from = from.unwrap_or(0);
            let start = self.records.partition_point(|r| r.position < from);
            self.records[start..].iter().take(count).cloned().collect()
        }
    }

    /// The writer checkpoint: where the next record will start.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Every user event (not `$`-typed), for tests that look inside.
    pub fn user_events(&self) -> usize {
        self.records
            .iter()
            .filter(|r| !r.event_type.starts_with('$'))
            .count()
    }
}

fn ticks_now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_nanos() / 100).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: Uuid) -> Proposed {
        Proposed {
            id,
            event_type: "Happened".into(),
            content_type: "application/json".into(),
            data: b"{}".to_vec(),
            custom_metadata: Vec::new(),
        }
    }

    #[test]
    fn exact_writes_conflict_and_repeats_are_answered_as_first_written() {
        let mut log = Log::new();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let first = log.append("s", Expected::NoStream, vec![event(a), event(b)]);
        let WriteOutcome::Success {
            current_revision: Some(1),
            position: Some(position),
        } = first
        else {
            panic!("{first:?}")
        };
        assert!(position > 0);
        // The same ids at the same expectation: the first answer, nothing written.
        assert_eq!(
            log.append("s", Expected::NoStream, vec![event(a), event(b)]),
            first
        );
        assert_eq!(log.user_events(), 2);
        // The server checks only the events it is handed: a prefix of a write, repeated, is
        // answered as that prefix's write.
        let first_position = log.read_stream("s", Some(0), false, 1).unwrap()[0].position;
        assert_eq!(
            log.append("s", Expected::NoStream, vec![event(a)]),
            WriteOutcome::Success {
                current_revision: Some(0),
                position: Some(first_position)
            }
        );
        // A repeat that goes on with a new id, or new ids at a stale revision: a conflict.
        assert_eq!(
            log.append(
                "s",
                Expected::NoStream,
                vec![event(a), event(Uuid::new_v4())]
            ),
            WriteOutcome::WrongExpectedVersion {
                current_revision: Some(1)
            }
        );
        assert_eq!(
            log.append("s", Expected::Revision(5), vec![event(Uuid::new_v4())]),
            WriteOutcome::WrongExpectedVersion {
                current_revision: Some(1)
            }
        );
        assert_eq!(
            log.append("t", Expected::StreamExists, vec![event(Uuid::new_v4())]),
            WriteOutcome::WrongExpectedVersion {
                current_revision: None
            }
        );
        // `Any` recognises ids anywhere in the stream.
        assert_eq!(log.append("s", Expected::Any, vec![event(b)]), first);
        assert_eq!(log.user_events(), 2);
    }

    #[test]
    fn positions_grow_with_the_log_and_only_record_starts_are_readable() {
        let mut log = Log::new();
        for i in 0..5 {
            log.append(&format!("s{i}"), Expected::Any, vec![event(Uuid::new_v4())]);
        }
        let all = log.read_all(None, false, 100);
        assert_eq!(all.len(), 7);
        assert!(all.windows(2).all(|w| w[1].position > w[0].position + 1));
        assert!(log.is_valid_position(all[3].position));
        assert!(!log.is_valid_position(all[3].position + 1));
        assert!(log.is_valid_position(log.end()));
        let tail = log.read_all(Some(all[3].position), false, 2);
        assert_eq!(tail[0].position, all[3].position);
        assert_eq!(tail.len(), 2);
        let last = log.read_all(None, true, 1);
        assert_eq!(last[0].position, all[6].position);
    }
}
