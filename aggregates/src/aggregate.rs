//! The [`Aggregate`] trait: what the shell needs to host any of the four deciders generically.
//!
//! An aggregate is a decider (`initial_state`, `decide`, `evolve`) plus its event codec and its
//! command parser. The shell's actor, store adapter, snapshotting and HTTP handlers are written
//! once against this trait and instantiated for `PatientAccount`, `Encounter`, `InventoryItem`
//! and `PurchaseWorkflow`. Everything here is pure; the trait has no `async`, no I/O and no
//! `&self` (the types implementing it are markers).

use std::fmt::Debug;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::codec::{DecodeError, DomainEvent, EncodedEvent};
use crate::context::Ctx;
use crate::rejection::{Rejection, describe_serde_error};
use crate::upcast::{Upcaster, upcast};

/// A command body split into the command and the caller's business time.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandBody<C> {
    pub command: C,
    /// `occurred_at` of the body, if the caller stated one (otherwise the shell uses `now`).
    pub occurred_at: Option<DateTime<Utc>>,
}

/// One event-sourced aggregate type.
pub trait Aggregate: Sized + 'static {
    /// The stream kind: streams are named `{KIND}-{id}`.
    const KIND: &'static str;
    /// Version of the serialised [`Aggregate::State`] shape. A snapshot written with another
    /// version is ignored and the state is rebuilt from the stream.
    const SNAPSHOT_VERSION: u32;
    /// Upcasters for this aggregate's old event schemas (see [`crate::upcast`]).
    const UPCASTERS: &'static [Upcaster] = &[];

    /// The state `evolve` folds events into; serialisable for snapshots and rendering.
    type State: Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The commands; deserialised from `{"type": "<Name>", ...fields}` bodies.
    type Command: Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The events.
    type Event: DomainEvent<Aggregate = Self> + Clone + Debug + PartialEq + Send + Sync + 'static;

    /// The state of a stream with no events.
    fn initial_state() -> Self::State;

    /// Decides what happens: the events to append, `Ok(vec![])` for a true no-op (an
    /// idempotent repeat), or why the command is refused.
    ///
    /// # Errors
    /// A [`Rejection`]; nothing is appended.
    fn decide(
        state: &Self::State,
        command: &Self::Command,
        ctx: &Ctx,
    ) -> Result<Vec<Self::Event>, Rejection>;

    /// Applies one event. Total: replaying history never fails, whatever the event.
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// The command's `type` name (a bounded metric label, e.g. for `careflow_commands_total`).
    fn command_name(command: &Self::Command) -> &'static str;

    /// Rules an instance id keeps beyond the id rule every stream keeps (a roster's id names
    /// its facility, department and day). The shell refuses a path id that breaks them before
    /// anything is read or decided; the text says which rule.
    ///
    /// # Errors
    /// Why the id is refused.
    fn check_id(_id: &str) -> Result<(), &'static str> {
        Ok(())
    }

    /// The PastTense name stored as `event_type`.
    fn event_type(event: &Self::Event) -> &'static str {
        event.event_type()
    }

    /// The event as `event_type`, current `schema_version` and `data`.
    ///
    /// # Panics
    /// Never in practice: event structs hold only strings, numbers, booleans, lists and
    /// string-keyed objects, which serde_json always serialises.
    fn encode(event: &Self::Event) -> EncodedEvent {
        let event_type = event.event_type();
        let schema_version = match Self::Event::current_schema_version(event_type) {
            Some(version) => version,
            None => unreachable!("event_enum! lists a version for every variant it declares"),
        };
        let data = match event.to_data() {
            Ok(data) => data,
            Err(error) => unreachable!("event {event_type} failed to serialise: {error}"),
        };
        EncodedEvent {
            event_type,
            schema_version,
            data,
        }
    }

    /// Reads a stored event: upcasts `data` from `schema_version` to the current version, then
    /// deserialises it.
    ///
    /// # Errors
    /// A [`DecodeError`]; the shell treats it as a broken invariant, not a client error.
    fn decode(
        event_type: &str,
        schema_version: u32,
        data: Value,
    ) -> Result<Self::Event, DecodeError> {
        let current = Self::Event::current_schema_version(event_type).ok_or_else(|| {
            DecodeError::UnknownEventType {
                kind: Self::KIND,
                event_type: event_type.to_owned(),
            }
        })?;
        let data = upcast(Self::UPCASTERS, event_type, schema_version, current, data)?;
        match Self::Event::from_data(event_type, data) {
            Some(Ok(event)) => Ok(event),
            Some(Err(error)) => Err(DecodeError::Data {
                event_type: event_type.to_owned(),
                detail: describe_serde_error(&error),
            }),
            None => Err(DecodeError::UnknownEventType {
                kind: Self::KIND,
                event_type: event_type.to_owned(),
            }),
        }
    }

    /// Parses an HTTP command body: takes out `occurred_at` (RFC 3339), then deserialises the
    /// rest as a command, refusing unknown fields.
    ///
    /// # Errors
    /// [`Rejection::InvalidCommand`] (HTTP 422) when the body is not a JSON object, when
    /// `occurred_at` is not a timestamp, or when the rest is not a valid command.
    fn parse_command(body: Value) -> Result<CommandBody<Self::Command>, Rejection> {
        let Value::Object(mut fields) = body else {
            return Err(Rejection::InvalidCommand {
                detail: "body must be a JSON object".to_owned(),
            });
        };
        let occurred_at = match fields.remove("occurred_at") {
            None | Some(Value::Null) => None,
            Some(value) => Some(serde_json::from_value::<DateTime<Utc>>(value).map_err(|_| {
                Rejection::InvalidCommand {
                    detail: "occurred_at must be an RFC 3339 timestamp".to_owned(),
                }
            })?),
        };
        let command = serde_json::from_value::<Self::Command>(Value::Object(fields))
            .map_err(|error| Rejection::from_serde(&error))?;
        Ok(CommandBody {
            command,
            occurred_at,
        })
    }

    /// Folds a history into a state, starting from [`Aggregate::initial_state`].
    fn replay<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self::State {
        events
            .into_iter()
            .fold(Self::initial_state(), |state, event| {
                Self::evolve(state, event)
            })
    }
}
