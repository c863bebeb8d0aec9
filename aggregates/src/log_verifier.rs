//! Checking the whole event log at once: positions, every stream's chain, and a running digest
//! of the log that signed checkpoints pin down.
//!
//! [`ChainVerifier`](crate::ChainVerifier) checks one stream read on its own. An auditor also
//! needs what no single stream shows: a position missing from the log (an event deleted
//! together with its stream's tail), and a log whose order or length differs from what the
//! server saw (events of two streams swapped, the newest events cut off). Hashes cover neither,
//! because `position` is deliberately outside the canonical event. The **log digest** covers
//! them: `digest(n) = sha256(digest(n-1) || n as u64 big-endian || hash(n))`, starting from all
//! zeros. The server signs the digest in its checkpoints; a verifier recomputes it from the
//! stored log and compares.
//!
//! The expensive part (recomputing each event's hash) is independent per event, so callers do
//! it in parallel and feed this walker only the outcome ([`Content`]); the walker itself is a
//! cheap sequential pass over positions and stream heads.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::chain::EventHash;

/// What recomputing one event's hash found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// The stored hash is the hash of the stored content.
    Intact,
    /// The stored hash differs from the hash of the stored content: the content was edited.
    HashMismatch,
    /// The stored row does not even decode (a field is not JSON, a hash is not 32 bytes...).
    Unreadable(String),
}

/// One stored event as the walker needs it.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    pub position: u64,
    pub stream_id: &'a str,
    pub version: u64,
    pub prev_hash: EventHash,
    pub hash: EventHash,
}

/// One thing wrong at one event of the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogBreak {
    /// Occurs when positions skip (`found > expected`: events deleted before this one) or
    /// repeat or go back (`found < expected`).
    #[error("expected position {expected}, found {found}")]
    PositionGap { expected: u64, found: u64 },
    /// Occurs when a stream's versions do not run 1, 2, 3... (an event deleted, inserted or
    /// moved within the stream).
    #[error("expected version {expected} of the stream, found {found}")]
    VersionGap { expected: u64, found: u64 },
    /// Occurs when `prev_hash` is not the hash of the stream's previous event.
    #[error("prev_hash does not match the previous event's hash")]
    BrokenLink,
    /// Occurs when the stored hash is not the hash of the stored content.
    #[error("stored hash does not match the event's content")]
    HashMismatch,
    /// Occurs when the stored row cannot be decoded at all.
    #[error("stored event cannot be read: {0}")]
    Unreadable(String),
}

#[derive(Debug, Clone, Copy)]
struct Head {
    version: u64,
    hash: EventHash,
}

/// Walks the log in position order; see the module docs.
#[derive(Debug)]
pub struct LogVerifier {
    next_position: u64,
    /// Whether positions must run on without a gap (SQLite, PostgreSQL) or only increase
    /// (KurrentDB's commit positions).
    dense: bool,
    /// Whether the walk began at position 1: only then is every stream's first event
    /// expected to be version 1, and only then is the digest the log's digest.
    from_start: bool,
    heads: HashMap<String, Head>,
    digest: EventHash,
    events: u64,
}

impl LogVerifier {
    /// A walk of the whole log, from position 1.
    pub fn new() -> Self {
        Self::starting_at(1)
    }

    /// A walk from `position`. A stream first met after position 1 is anchored on its first
    /// event there (its earlier events are not checked), and [`LogVerifier::digest`] is only
    /// meaningful for a walk from position 1.
    pub fn starting_at(position: u64) -> Self {
        let position = position.max(1);
        Self {
            next_position: position,
            dense: true,
            from_start: position == 1,
            heads: HashMap::new(),
            digest: EventHash::ZERO,
            events: 0,
        }
    }

    /// For a log whose positions only increase (KurrentDB): a position lower than expected
    /// is still a break, a higher one is not. Deleted events then show in their stream's
    /// chain and in the signed checkpoints' digest, not as a position gap.
    pub fn with_sparse_positions(mut self) -> Self {
        self.dense = false;
        self
    }

    /// Checks the next event of the log and returns what is wrong at it (usually nothing).
    pub fn check(&mut self, link: Link<'_>, content: Content) -> Vec<LogBreak> {
        let mut breaks = Vec::new();
        let out_of_place = if self.dense {
            link.position != self.next_position
        } else {
            link.position < self.next_position
        };
        if out_of_place {
            breaks.push(LogBreak::PositionGap {
                expected: self.next_position,
                found: link.position,
            });
        }
        self.next_position = link.position.saturating_add(1);
        match self.heads.get_mut(link.stream_id) {
            Some(head) => {
                if link.version != head.version.saturating_add(1) {
                    breaks.push(LogBreak::VersionGap {
                        expected: head.version.saturating_add(1),
                        found: link.version,
                    });
                }
                if link.prev_hash != head.hash {
                    breaks.push(LogBreak::BrokenLink);
                }
                *head = Head {
                    version: link.version,
                    hash: link.hash,
                };
            }
            None => {
                if self.from_start || link.version == 1 {
                    if link.version != 1 {
                        breaks.push(LogBreak::VersionGap {
                            expected: 1,
                            found: link.version,
                        });
                    }
                    if link.prev_hash != EventHash::ZERO {
                        breaks.push(LogBreak::BrokenLink);
                    }
                }
                self.heads.insert(
                    link.stream_id.to_owned(),
                    Head {
                        version: link.version,
                        hash: link.hash,
                    },
                );
            }
        }
        match content {
            Content::Intact => {}
            Content::HashMismatch => breaks.push(LogBreak::HashMismatch),
            Content::Unreadable(reason) => breaks.push(LogBreak::Unreadable(reason)),
        }
        self.digest = digest_step(self.digest, link.position, link.hash);
        self.events += 1;
        breaks
    }

    /// The log digest through the last checked position (see the module docs).
    pub fn digest(&self) -> EventHash {
        self.digest
    }

    /// Whether [`LogVerifier::digest`] covers the log from position 1.
    pub fn digest_is_complete(&self) -> bool {
        self.from_start
    }

    /// Events checked so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Streams met so far.
    pub fn streams(&self) -> usize {
        self.heads.len()
    }

    /// The position the next event should have.
    pub fn next_position(&self) -> u64 {
        self.next_position
    }
}

impl Default for LogVerifier {
    fn default() -> Self {
        Self::new()
    }
}

/// One step of the log digest: `sha256(digest || position (u64, big-endian) || hash)`.
pub fn digest_step(digest: EventHash, position: u64, hash: EventHash) -> EventHash {
    let mut hasher = Sha256::new();
    hasher.update(digest.0);
    hasher.update(position.to_be_bytes());
    hasher.update(hash.0);
    EventHash(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> EventHash {
        EventHash([n; 32])
    }

    /// Walks `(position, stream, version, prev, hash)` rows and returns the breaks by position.
    #[track_caller]
    fn check(rows: &[(u64, &str, u64, u8, u8)], expected: &[(u64, LogBreak)]) {
        let mut verifier = LogVerifier::new();
        let mut found = Vec::new();
        for &(position, stream, version, prev, hash) in rows {
            let link = Link {
                position,
                stream_id: stream,
                version,
                prev_hash: h(prev),
                hash: h(hash),
            };
            for b in verifier.check(link, Content::Intact) {
                found.push((position, b));
            }
        }
        assert_eq!(found, expected);
    }

    #[test]
    fn an_intact_log_has_no_breaks() {
        check(
            &[
                (1, "a-1", 1, 0, 1),
                (2, "b-1", 1, 0, 2),
                (3, "a-1", 2, 1, 3),
            ],
            &[],
        );
    }

    #[test]
    fn a_deleted_event_shows_as_a_position_gap_and_a_broken_stream() {
        check(
            &[(1, "a-1", 1, 0, 1), (3, "a-1", 3, 2, 3)],
            &[
                (
                    3,
                    LogBreak::PositionGap {
                        expected: 2,
                        found: 3,
                    },
                ),
                (
                    3,
                    LogBreak::VersionGap {
                        expected: 2,
                        found: 3,
                    },
                ),
                (3, LogBreak::BrokenLink),
            ],
        );
    }

    #[test]
    fn swapped_events_of_one_stream_break_its_versions() {
        check(
            &[(1, "a-1", 2, 1, 2), (2, "a-1", 1, 0, 1)],
            &[
                (
                    1,
                    LogBreak::VersionGap {
                        expected: 1,
                        found: 2,
                    },
                ),
                (1, LogBreak::BrokenLink),
                (
                    2,
                    LogBreak::VersionGap {
                        expected: 3,
                        found: 1,
                    },
                ),
                (2, LogBreak::BrokenLink),
            ],
        );
    }

    #[test]
    fn a_walk_from_the_middle_anchors_streams_on_their_first_event() {
        let mut verifier = LogVerifier::starting_at(5);
        let link = Link {
            position: 5,
            stream_id: "a-1",
            version: 7,
            prev_hash: h(6),
            hash: h(7),
        };
        assert_eq!(verifier.check(link, Content::Intact), vec![]);
        assert!(!verifier.digest_is_complete());
    }

    #[test]
    fn the_digest_depends_on_order_and_positions() {
        let a = digest_step(digest_step(EventHash::ZERO, 1, h(1)), 2, h(2));
        let swapped = digest_step(digest_step(EventHash::ZERO, 1, h(2)), 2, h(1));
        let shifted = digest_step(digest_step(EventHash::ZERO, 2, h(1)), 3, h(2));
        assert_ne!(a, swapped);
        assert_ne!(a, shifted);
        let mut verifier = LogVerifier::new();
        for (position, hash) in [(1, h(1)), (2, h(2))] {
            let link = Link {
                position,
                stream_id: "x-1",
                version: position,
                prev_hash: if position == 1 { EventHash::ZERO } else { h(1) },
                hash,
            };
            verifier.check(link, Content::Intact);
        }
        assert_eq!(verifier.digest(), a);
    }

    #[test]
    fn content_findings_are_reported_at_their_event() {
        let mut verifier = LogVerifier::new();
        let link = Link {
            position: 1,
            stream_id: "a-1",
            version: 1,
            prev_hash: EventHash::ZERO,
            hash: h(1),
        };
        assert_eq!(
            verifier.check(link, Content::HashMismatch),
            vec![LogBreak::HashMismatch]
        );
    }
}
