//! [`ProjectionError`]: the one error type of this crate.
//!
//! A projection error stops its runner at the failing event (the batch's transaction is rolled
//! back, so the checkpoint stays before it) and is exported as a metric. None of these is a
//! client error: they mean the log, the view or the store broke an invariant. Messages hold
//! ids, type names and positions only, never event data, so they can be logged (no PHI).

use careflow_aggregates::DecodeError;

/// Why a projection could not apply an event or read its view.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Occurs when a stored event of an aggregate stream does not decode (unknown type, newer
    /// schema, malformed data).
    ///
    /// ### Handling
    /// The runner stops at `position` and logs at ERROR: a newer node wrote the event (upgrade
    /// this one) or the store holds bad data. Retrying does not help.
    #[error("event at position {position} ({event_type}) does not decode: {source}")]
    Decode {
        position: u64,
        event_type: String,
        #[source]
        source: DecodeError,
    },
    /// Occurs when a row read back from the view does not have the shape this build writes
    /// (the view was written by another version, or edited by hand).
    ///
    /// ### Handling
    /// Rebuild the projection (`careflow projections rebuild <name>`).
    #[error("row {key:?} of table {table} has an unexpected shape: {detail}")]
    Row {
        table: &'static str,
        key: String,
        detail: String,
    },
    /// Occurs when a row cannot be serialised (not expected: rows hold strings, numbers, lists
    /// and string-keyed maps only).
    #[error("row {key:?} of table {table} could not be serialised: {detail}")]
    Serialize {
        table: &'static str,
        key: String,
        detail: String,
    },
    /// Occurs when a running sum leaves its range (`i128` for money, see
    /// `careflow_aggregates::Cents::MAX_AMOUNT`; `u64` for counts). The aggregates refuse
    /// amounts that could do this, so it means the log is not what they wrote.
    ///
    /// ### Handling
    /// The runner stops at `position`; investigate the log.
    #[error("a sum in table {table} overflowed at position {position}")]
    Overflow { table: &'static str, position: u64 },
    /// Occurs when an event needs context from its stream's earlier events (its facility, its
    /// encounter class, its purchase's request) and the view has none: the view was not built
    /// from the start of the log.
    ///
    /// ### Handling
    /// Rebuild the projection from position 0.
    #[error("{stream_id} at position {position}: no earlier {what} in the view (rebuild from 0)")]
    MissingContext {
        stream_id: String,
        position: u64,
        what: &'static str,
    },
    /// Occurs when the backend behind a [`crate::ViewStore`] fails (the shell's SQLite or
    /// PostgreSQL implementations); the in-memory store never returns it.
    ///
    /// ### Handling
    /// The runner rolls back the batch and retries with backoff, as for any store outage.
    #[error("view store failed: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}
