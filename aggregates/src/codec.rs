//! The event codec: domain events to and from the envelope's `event_type`, `schema_version` and
//! `data`.
//!
//! Events are stored forever, so their JSON is a contract: `event_type` is the PastTense
//! variant name, `data` is the variant's struct serialised with serde (snake_case fields, money
//! as string decimals), and `schema_version` says which shape `data` has. Decoding upcasts old
//! shapes first (see [`crate::upcast`]). This module owns that mapping; which events exist is
//! each aggregate's business, declared with the `event_enum!` macro below.

use serde_json::Value;

/// An event ready for the envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedEvent {
    pub event_type: &'static str,
    pub schema_version: u32,
    pub data: Value,
}

/// Why stored event data could not be turned back into a domain event.
///
/// Every variant is a store-side problem, not a caller's: the shell treats it as a broken
/// invariant (log at ERROR, answer 500/503), never as a 4xx. Messages hold type names and
/// versions only, never data values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Occurs when a stream holds an event type its aggregate does not know.
    #[error("{kind} has no event type {event_type}")]
    UnknownEventType {
        kind: &'static str,
        event_type: String,
    },
    /// Occurs when the data was written by a newer careflow than this one (a rolling upgrade
    /// read by an old node); the old node must not guess.
    #[error("{event_type} schema version {found} is newer than this build understands ({current})")]
    FutureSchemaVersion {
        event_type: String,
        found: u32,
        current: u32,
    },
    /// Occurs when no upcaster takes `event_type` from `version` to the next version.
    #[error("{event_type} has no upcaster from schema version {version}")]
    MissingUpcaster { event_type: String, version: u32 },
    /// Occurs when an upcaster refuses the stored data.
    #[error("{event_type} could not be upcast from schema version {version}: {reason}")]
    Upcast {
        event_type: String,
        version: u32,
        reason: String,
    },
    /// Occurs when the (upcast) data does not deserialise into the event's struct.
    #[error("{event_type} data does not match its schema: {detail}")]
    Data { event_type: String, detail: String },
}

/// What the codec needs to know about an aggregate's event enum; implemented by `event_enum!`.
pub trait DomainEvent: Sized {
    /// The aggregate whose stream holds these events (lets test helpers infer it).
    type Aggregate: crate::aggregate::Aggregate<Event = Self>;
    /// Every event type name, for registries and exhaustive codec tests.
    const EVENT_TYPES: &'static [&'static str];
    /// The PastTense name stored as `event_type`.
    fn event_type(&self) -> &'static str;
    /// The schema version this build writes for `event_type`, or `None` if it is not ours.
    fn current_schema_version(event_type: &str) -> Option<u32>;
    /// The variant's struct as JSON.
    ///
    /// # Errors
    /// Only if serde refuses the struct, which the event types rule out (string keys only).
    fn to_data(&self) -> Result<Value, serde_json::Error>;
    /// Deserialises current-version data; `None` when `event_type` is not ours.
    fn from_data(event_type: &str, data: Value) -> Option<Result<Self, serde_json::Error>>;
}

/// Declares an aggregate's event enum: one newtype variant per event struct (same name), each
/// with its current schema version, plus `From` impls and the [`DomainEvent`] codec.
macro_rules! event_enum {
    (
        aggregate = $aggregate:ty;
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $version:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $( $(#[$vmeta])* $variant($variant), )+
        }

        impl $crate::codec::DomainEvent for $name {
            type Aggregate = $aggregate;
            const EVENT_TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];

            fn event_type(&self) -> &'static str {
                match self {
                    $( $name::$variant(_) => stringify!($variant), )+
                }
            }

            fn current_schema_version(event_type: &str) -> Option<u32> {
                match event_type {
                    $( stringify!($variant) => Some($version), )+
                    _ => None,
                }
            }

            fn to_data(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self {
                    $( $name::$variant(event) => serde_json::to_value(event), )+
                }
            }

            fn from_data(
                event_type: &str,
                data: serde_json::Value,
            ) -> Option<Result<Self, serde_json::Error>> {
                match event_type {
                    $( stringify!($variant) => Some(
                        serde_json::from_value::<$variant>(data).map($name::$variant),
                    ), )+
                    _ => None,
                }
            }
        }

        $(
            impl From<$variant> for $name {
                fn from(event: $variant) -> Self {
                    $name::$variant(event)
                }
            }
        )+
    };
}
pub(crate) use event_enum;

/// Declares an aggregate's command enum: one newtype variant per command struct (same name),
/// internally tagged by `type` and refusing unknown fields, plus `From` impls and `name()`.
/// Variants marked `#[serde(skip_deserializing)]` can be built by the shell but never parsed
/// from a body.
macro_rules! command_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "type", deny_unknown_fields)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($variant), )+
        }

        impl $name {
            /// The command's name as sent in `type` (a bounded metric label).
            pub fn name(&self) -> &'static str {
                match self {
                    $( $name::$variant(_) => stringify!($variant), )+
                }
            }

            /// Every command name, for the OpenAPI document and metric label sets.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($variant)),+];
        }

        $(
            impl From<$variant> for $name {
                fn from(command: $variant) -> Self {
                    $name::$variant(command)
                }
            }
        )+
    };
}
pub(crate) use command_enum;
