//! `careflow store copy`: moving a node's log from SQLite or PostgreSQL to KurrentDB.
//!
//! The copy keeps what makes the log evidence: every event's id, stream, version, type, data
//! (personal data stays ciphertext), metadata and hashes, and the order of the log. Only the
//! positions change, to KurrentDB's commit positions (docs/event-store.md, "Moving a log").
//! It runs in three passes:
//!
//! 1. **Copy** ([`copy_log`]): the source log is read in position order up to the head it had
//!    when the copy began, checked as it goes (each stream's chain and each event's hash: a
//!    log that does not verify is not laundered into a new store), and each command's events
//!    are appended to KurrentDB in that order, one command at a time. A command's marker (the
//!    look-up that answers a retried `Any` append) is written beside it, several at a time.
//!    An interrupted copy is run again: events already there are recognised by their ids and
//!    hashes and skipped.
//! 2. **Compare** ([`compare_logs`]): both logs are read side by side, and the target must
//!    hold the same events in the same order, each hash recomputed; the pairs of positions
//!    give the [`PositionMap`].
//! 3. **The node's other data** ([`side_data`]): what a KurrentDB node keeps in its data dir
//!    besides the log, with every position in it translated through the map.

use std::sync::Arc;
use std::time::{Duration, Instant};

use careflow_aggregates::log_verifier::{Content, Link, LogBreak, LogVerifier};
use careflow_aggregates::{RecordedEvent, chain_hash};
use indicatif::ProgressBar;
use tokio::task::JoinSet;

use crate::store::kurrentdb::{ImportError, Imported, KurrentStore};
use crate::store::{EventStore, StoreError};

pub mod side_data;

/// Events read from either log per call.
const PAGE: usize = 2_048;

/// Marker writes in flight at once (they do not take part in the log's order).
const MARKERS_IN_FLIGHT: usize = 64;

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Occurs when the source log does not verify at an event: a broken chain, a hash that
    /// does not match, a gap. Nothing after it is copied.
    ///
    /// ### Handling
    /// `careflow audit verify` on the source says what is wrong; the copy is not the place
    /// to repair a log.
    #[error(
        "the source log does not verify at position {position}: {}",
        join(breaks)
    )]
    SourceBroken {
        position: u64,
        breaks: Vec<LogBreak>,
    },
    /// Occurs when an event cannot be written to the target (see [`ImportError`]).
    #[error("copying the command at source position {position}")]
    Import {
        position: u64,
        #[source]
        source: ImportError,
    },
    /// Occurs when the target does not hold the source's log after the copy: an event
    /// differs, is missing, or the target has events the source has not.
    #[error("the copy differs from the source at source position {position}: {problem}")]
    Differs { position: u64, problem: String },
    /// Occurs when either store cannot be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn join(breaks: &[LogBreak]) -> String {
    breaks
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What [`copy_log`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// The source's head when the copy began: the copy covers positions up to it.
    pub source_head: u64,
    /// Events read and checked.
    pub events: u64,
    /// Commands (one append each) written.
    pub written: u64,
    /// Commands found already there (an earlier, interrupted copy).
    pub already_there: u64,
    pub elapsed: Duration,
}

/// Copies the source log, as it is up to its present head, into `target`; see the module
/// docs.
///
/// # Errors
/// [`CopyError`].
pub async fn copy_log(
    source: &dyn EventStore,
    target: &Arc<KurrentStore>,
    progress: &ProgressBar,
) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    let head = source.head_position().await?;
    progress.set_length(head);
    let mut report = CopyReport {
        source_head: head,
        ..CopyReport::default()
    };
    // A target that holds events already is this copy's earlier run (anything else is found
    // out and refused): look before each append.
    let resuming = target.head_position().await? > 0;
    let mut checker = LogVerifier::new();
    let mut markers = JoinSet::new();
    let mut command: Vec<RecordedEvent> = Vec::new();
    let mut from = 1;
    'pages: while from <= head {
        let page = source.read_all(from, PAGE).await?;
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        for event in page {
            if event.position > head {
                break 'pages;
            }
            // A finished command is written before the next event is checked, so a copy
            // that stops at a break holds every whole command before it.
            if command.last().is_some_and(|c| !same_command(c, &event)) {
                import(target, &mut command, resuming, &mut markers, &mut report).await?;
            }
            check(&mut checker, &event)?;
            report.events += 1;
            progress.set_position(event.position);
            command.push(event);
        }
    }
    if !command.is_empty() {
        import(target, &mut command, resuming, &mut markers, &mut report).await?;
    }
    while let Some(done) = markers.join_next().await {
        done.map_err(StoreError::unavailable)??;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Checks one source event as `audit verify` would: its place in the log and its stream,
/// and its hash against its content.
fn check(checker: &mut LogVerifier, event: &RecordedEvent) -> Result<(), CopyError> {
    let breaks = checker.check(link(event), content(event));
    if breaks.is_empty() {
        Ok(())
    } else {
        Err(CopyError::SourceBroken {
            position: event.position,
            breaks,
        })
    }
}

fn link(event: &RecordedEvent) -> Link<'_> {
    Link {
        position: event.position,
        stream_id: event.stream_id.as_str(),
        version: event.version,
        prev_hash: event.prev_hash,
        hash: event.hash,
    }
}

fn content(event: &RecordedEvent) -> Content {
    if chain_hash(event) == event.hash {
        Content::Intact
    } else {
        Content::HashMismatch
    }
}

/// Whether `next` continues the command `last` belongs to (one append: one stream, one
/// command id, consecutive versions).
fn same_command(last: &RecordedEvent, next: &RecordedEvent) -> bool {
    next.stream_id == last.stream_id
        && next.metadata.command_id == last.metadata.command_id
        && next.version == last.version + 1
}

/// Appends the command's events to the target, then starts its marker.
async fn import(
    target: &Arc<KurrentStore>,
    command: &mut Vec<RecordedEvent>,
    look_first: bool,
    markers: &mut JoinSet<Result<(), StoreError>>,
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    let position = command.first().map_or(0, |e| e.position);
    match target.import(command, look_first).await {
        Ok(Imported::Written) => report.written += 1,
        Ok(Imported::AlreadyThere) => report.already_there += 1,
        Err(source) => return Err(CopyError::Import { position, source }),
    }
    if markers.len() >= MARKERS_IN_FLIGHT
        && let Some(done) = markers.join_next().await
    {
        done.map_err(StoreError::unavailable)??;
    }
    if let Some(first) = command.first() {
        let target = Arc::clone(target);
        let stream = first.stream_id.clone();
        let command_id = first.metadata.command_id;
        markers.spawn(async move { target.mark_command(&stream, command_id).await });
    }
    command.clear();
    Ok(())
}

/// Source positions and the positions the same events have on the target, in log order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PositionMap {
    pairs: Vec<(u64, u64)>,
}

impl PositionMap {
    /// Where a reader that had handled the source log through `position` stands on the
    /// target: the target position of the last event at or before it (0 before any).
    pub fn translate(&self, position: u64) -> u64 {
        let after = self
            .pairs
            .partition_point(|&(source, _)| source <= position);
        after
            .checked_sub(1)
            .and_then(|i| self.pairs.get(i))
            .map_or(0, |&(_, target)| target)
    }

    /// Events compared.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Reads both logs side by side up to the source's `head` and checks the target holds the
/// same events in the same order, each one's chain and hash verified again on the target.
///
/// # Errors
/// [`CopyError::Differs`], or a store error.
pub async fn compare_logs(
    source: &dyn EventStore,
    target: &KurrentStore,
    head: u64,
    progress: &ProgressBar,
) -> Result<PositionMap, CopyError> {
    progress.set_length(head);
    progress.set_position(0);
    let mut map = PositionMap::default();
    let mut checker = LogVerifier::new().with_sparse_positions();
    let (mut from_source, mut from_target) = (1, 1);
    let mut pending: std::collections::VecDeque<RecordedEvent> = Default::default();
    loop {
        let page = source.read_all(from_source, PAGE).await?;
        let exhausted = page.len() < PAGE;
        if let Some(last) = page.last() {
            from_source = last.position + 1;
        }
        pending.extend(page.into_iter().filter(|e| e.position <= head));
        while let Some(ours) = pending.front() {
            let theirs = target
                .read_all(from_target, PAGE.min(pending.len()))
                .await?;
            if theirs.is_empty() {
                return Err(CopyError::Differs {
                    position: ours.position,
                    problem: "the target ends before this event".into(),
                });
            }
            for copied in theirs {
                let Some(ours) = pending.pop_front() else {
                    break;
                };
                if let Some(problem) = difference(&ours, &copied) {
                    return Err(CopyError::Differs {
                        position: ours.position,
                        problem,
                    });
                }
                let breaks = checker.check(link(&copied), content(&copied));
                if !breaks.is_empty() {
                    return Err(CopyError::Differs {
                        position: ours.position,
                        problem: format!("on the target: {}", join(&breaks)),
                    });
                }
                map.pairs.push((ours.position, copied.position));
                from_target = copied.position + 1;
                progress.set_position(ours.position);
            }
        }
        if exhausted || from_source > head {
            break;
        }
    }
    if let Some(extra) = target.read_all(from_target, 1).await?.first() {
        return Err(CopyError::Differs {
            position: head,
            problem: format!(
                "the target holds events the source has not, from {} version {}",
                extra.stream_id, extra.version
            ),
        });
    }
    Ok(map)
}

/// What differs between a source event and its copy, if anything.
fn difference(ours: &RecordedEvent, copied: &RecordedEvent) -> Option<String> {
    if copied.event_id != ours.event_id {
        return Some(format!(
            "the target has event {} ({} version {}) where the source has {} ({} version {})",
            copied.event_id,
            copied.stream_id,
            copied.version,
            ours.event_id,
            ours.stream_id,
            ours.version
        ));
    }
    let same = copied.stream_id == ours.stream_id
        && copied.version == ours.version
        && copied.event_type == ours.event_type
        && copied.schema_version == ours.schema_version
        && copied.data == ours.data
        && copied.metadata == ours.metadata
        && copied.prev_hash == ours.prev_hash
        && copied.hash == ours.hash;
    (!same).then(|| format!("event {} differs from its copy", ours.event_id))
}

#[cfg(test)]
mod tests {
    use super::PositionMap;

    #[test]
    fn a_position_translates_to_the_copy_of_the_last_event_at_or_before_it() {
        let map = PositionMap {
            pairs: vec![(1, 100), (2, 230), (3, 400)],
        };
        assert_eq!(map.translate(0), 0);
        assert_eq!(map.translate(1), 100);
        assert_eq!(map.translate(2), 230);
        assert_eq!(map.translate(3), 400);
        // Past the copied head (a checkpoint written after the copy began): the last copy.
        assert_eq!(map.translate(9), 400);
    }
}
