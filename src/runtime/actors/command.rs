//! The messages an aggregate actor takes and what it answers.

use careflow_aggregates::{Aggregate, RecordedEvent, Rejection, StreamId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::{Appended, CommandMeta, StoreError};

/// Who sent a command, why and through which channel. It travels inside every actor message
/// because actix does not carry span context across arbiters (STYLE.md "tracing").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandContext {
    /// Derived from the Idempotency-Key when there is one, else random.
    pub command_id: Uuid,
    pub correlation_id: String,
    pub causation_id: String,
    pub principal: String,
    /// `http`, `fhir`, `hl7`, `process_manager:...`.
    pub source: String,
    /// Business time: the body's `occurred_at`, else when the request arrived.
    pub occurred_at: DateTime<Utc>,
    /// Look the command id up in the store before deciding: a retried keyed command then gets
    /// its first answer even when deciding again would now refuse it.
    pub check_duplicate: bool,
}

impl CommandContext {
    pub(crate) fn meta(&self) -> CommandMeta {
        CommandMeta {
            command_id: self.command_id,
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
            principal: self.principal.clone(),
            source: self.source.clone(),
            occurred_at: self.occurred_at,
        }
    }
}

/// `Execute` a command on the actor of its stream.
pub struct Execute<A: Aggregate> {
    pub command: A::Command,
    pub context: CommandContext,
}

impl<A: Aggregate> Clone for Execute<A> {
    fn clone(&self) -> Self {
        Self {
            command: self.command.clone(),
            context: self.context.clone(),
        }
    }
}

impl<A: Aggregate> actix::Message for Execute<A> {
    type Result = Result<CommandOutcome, CommandError>;
}

/// Ask the actor for its current state (caught up with the store first).
pub struct Observe<A: Aggregate>(pub std::marker::PhantomData<fn() -> A>);

impl<A: Aggregate> Clone for Observe<A> {
    fn clone(&self) -> Self {
        Observe(std::marker::PhantomData)
    }
}

impl<A: Aggregate> actix::Message for Observe<A> {
    type Result = Result<Observed<A>, CommandError>;
}

/// A state with the stream version and global position it reflects.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed<A: Aggregate> {
    pub state: A::State,
    /// 0 when the stream has no events.
    pub version: u64,
    /// Position of the stream's newest event (0 when there is none or when it is unknown).
    pub position: u64,
}

/// A command that was carried out: its events, or none for a no-op.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutcome {
    pub stream_id: StreamId,
    /// The stream's version after the command.
    pub version: u64,
    /// The global position of the command's last event (of the stream's newest for a no-op).
    pub position: u64,
    pub events: Vec<RecordedEvent>,
    /// The command id had been appended before; nothing new was written.
    pub duplicate: bool,
}

impl CommandOutcome {
    pub(crate) fn from_appended(appended: Appended) -> Self {
        Self {
            stream_id: appended.stream_id,
            version: appended.version,
            position: appended.position,
            events: appended.events,
            duplicate: appended.duplicate,
        }
    }

    /// The metric label of how it ended.
    pub fn outcome_label(&self) -> &'static str {
        if self.duplicate {
            "duplicate"
        } else if self.events.is_empty() {
            "noop"
        } else {
            "appended"
        }
    }
}

/// Why a command was not carried out. Nothing was appended for any variant.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    /// Occurs when the domain refuses the command.
    ///
    /// ### Handling
    /// HTTP 409 or 422 as [`Rejection::status`] says.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Occurs when other writers kept appending to the stream through every retry.
    ///
    /// ### Handling
    /// HTTP 409; the caller may retry with the same Idempotency-Key.
    #[error("stream kept changing while the command was decided ({attempts} attempts)")]
    Conflict { attempts: u32 },
    /// Occurs when the event store cannot be reached or the actor went away mid-request.
    ///
    /// ### Handling
    /// HTTP 503 with Retry-After; retrying with the same Idempotency-Key is safe.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// Occurs when stored events cannot be read back (a broken invariant).
    ///
    /// ### Handling
    /// HTTP 500, logged at ERROR.
    #[error("stored events cannot be read: {0}")]
    Corrupt(String),
    /// Occurs when the request asks the store for something this backend cannot do: an
    /// atomic append across streams on KurrentDB, a log read from a position that is not an
    /// event's.
    ///
    /// ### Handling
    /// HTTP 400 `not_supported` (a FHIR Bundle: 422, OperationOutcome `not-supported`);
    /// retrying cannot help.
    #[error("{0}")]
    NotSupported(String),
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Corrupt { .. } => CommandError::Corrupt(error.to_string()),
            StoreError::WrongExpectedVersion { .. } => CommandError::Conflict { attempts: 1 },
            StoreError::Unavailable(_) | StoreError::Closed | StoreError::EmptyAppend => {
                CommandError::Unavailable(error.to_string())
            }
            StoreError::AtomicAcrossStreams { .. } | StoreError::InvalidPosition { .. } => {
                CommandError::NotSupported(error.to_string())
            }
        }
    }
}

impl CommandError {
    /// The metric label of how it ended.
    pub fn outcome_label(&self) -> &'static str {
        match self {
            CommandError::Rejected(_) => "rejected",
            CommandError::Conflict { .. } => "conflict",
            CommandError::Unavailable(_) => "unavailable",
            CommandError::Corrupt(_) => "error",
            CommandError::NotSupported(_) => "not_supported",
        }
    }
}
