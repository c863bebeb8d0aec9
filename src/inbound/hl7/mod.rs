//! HL7 v2 inbound: a message's text in, the careflow commands it stands for out.
//!
//! This module owns the *meaning* of ADT^A01/A04/A08/A03/A11, DFT^P03 and SIU^S12 for
//! careflow (docs/interop.md "HL7 v2 over MLLP" has the mapping table). It parses with
//! hl7-parser, decodes escapes ([`escape`]), and returns an [`Inbound`]: the typed commands
//! of the HTTP contract, each with a deterministic command id, in the order they must run. It
//! runs nothing and knows no socket: `crate::inbound::mllp` frames, orders and executes, and builds the
//! ACK. A message it cannot map is [`Malformed`] (ACK `AR`); business rules are the
//! aggregates' (ACK `AE`).

mod escape;
mod mapping;
mod message;
mod time;

pub use escape::{decode, encode};
pub use mapping::{Inbound, Step, Tolerate, command_id, map};
pub use message::Hl7;

/// MSH, as the ACK and the idempotency key need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// MSH-3, decoded, every component.
    pub sending_application: String,
    /// MSH-4: with MSH-10, the idempotency key.
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    /// MSH-7 as sent.
    pub message_time: Option<String>,
    /// MSH-9.1, e.g. `ADT`.
    pub message_type: String,
    /// MSH-9.2, e.g. `A01`.
    pub trigger: String,
    /// MSH-10, the message control id.
    pub control_id: String,
    /// MSH-12 (default `2.5`), echoed in the ACK.
    pub version: String,
    /// MSH-3..6 as the ACK writes them back.
    pub routing: Routing,
}

/// MSH-3..6 as an ACK echoes them (swapped): each component and subcomponent of the field's
/// first repetition decoded from the message's separators and encoded ([`encode`]) for the
/// ACK's standard ones, so the echo has the structure the sender gave it and no more. The
/// decoded text in [`Header`] cannot be echoed as it is: a character that was data in the
/// sender's message but is a separator in the ACK's (an escaped `\R\` or `\S\`, a `~` under
/// separators of the sender's own) would come back as structure (found by fuzzing: a hundred
/// such `~` made an ACK of more repetitions than careflow itself accepts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
}

/// Why a message cannot become commands. The ACK is `AE` for a content error
/// ([`Malformed::is_content_error`]), else `AR`; nothing is appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Occurs when the text is not HL7 v2 (no MSH, broken structure, not text).
    #[error("message cannot be parsed: {0}")]
    Unparsable(String),
    /// Occurs when a field careflow needs is empty (PID-3, PV1-19, MSH-10, ...).
    #[error("{field} is required")]
    Missing { field: &'static str },
    /// Occurs when a field holds something careflow cannot read (a date, an amount, an id
    /// outside the id rule).
    #[error("{field} is not valid: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// Occurs when the message's structure passes a bound (segments, fields in a segment,
    /// repetitions of a field, delimiters): refused before it is parsed, so its cost is
    /// bounded whatever its shape (`message::MAX_*`).
    #[error("the message has more {what} than {max}")]
    TooComplex { what: &'static str, max: usize },
    /// Occurs for a message type or trigger careflow does not take.
    #[error("message type {0} is not supported")]
    Unsupported(String),
}

impl Malformed {
    /// HL7 table 0357 (message error condition codes): code and text for ERR-3.
    pub fn hl7_error(&self) -> (&'static str, &'static str) {
        match self {
            Malformed::Unparsable(_) | Malformed::TooComplex { .. } => {
                ("100", "Segment sequence error")
            }
            Malformed::Missing { .. } => ("101", "Required field missing"),
            Malformed::Invalid { .. } => ("102", "Data type error"),
            Malformed::Unsupported(_) => ("200", "Unsupported message type"),
        }
    }

    /// ERR-2, the field at fault (`PID-3`), when there is one.
    pub fn location(&self) -> Option<&'static str> {
        match self {
            Malformed::Missing { field } | Malformed::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    /// Whether the message was read and only its content is in error (a field missing or
    /// unreadable): HL7's original mode answers that `AE`, with the ERR segment naming the
    /// field, and keeps `AR` for a message that cannot be processed at all (not HL7, too
    /// complex, a type careflow does not take). Resending either unchanged does not help.
    pub fn is_content_error(&self) -> bool {
        match self {
            Malformed::Missing { .. } | Malformed::Invalid { .. } => true,
            Malformed::Unparsable(_) | Malformed::TooComplex { .. } | Malformed::Unsupported(_) => {
                false
            }
        }
    }

    /// A stable code for logs and ERR-5.
    pub fn code(&self) -> &'static str {
        match self {
            Malformed::Unparsable(_) => "unparsable",
            Malformed::TooComplex { .. } => "too_complex",
            Malformed::Missing { .. } => "missing_field",
            Malformed::Invalid { .. } => "invalid_field",
            Malformed::Unsupported(_) => "unsupported_message",
        }
    }
}

/// The header of a message whose whole could not be read (too large, too complex, broken
/// after MSH), from its first segment alone, so its refusal still answers its MSH-10.
pub fn msh_header(text: &str) -> Option<Header> {
    let msh = text.split(['\r', '\n']).next()?;
    Hl7::parse(msh).ok()?.header().ok()
}

/// Parses `text` and maps it. The header comes back whenever MSH could be read, so even a
/// refusal is acknowledged against the right MSH-10.
///
/// # Errors
/// [`Malformed`], with the header when there was one.
pub fn read(text: &str) -> Result<Inbound, (Option<Box<Header>>, Malformed)> {
    // A parser is a large surface over untrusted input: a panic in it must cost one message
    // (an AR), not the connection's task.
    match std::panic::catch_unwind(|| read_unguarded(text)) {
        Ok(result) => result,
        Err(_) => Err((
            None,
            Malformed::Unparsable("the message could not be read".into()),
        )),
    }
}

/// [`read`] without its guard against panics: what the fuzz targets run (`crate::fuzzing`),
/// so a panic in the parser or the mapping is found rather than turned into an `AR`.
///
/// # Errors
/// As [`read`].
pub fn read_unguarded(text: &str) -> Result<Inbound, (Option<Box<Header>>, Malformed)> {
    let hl7 = match Hl7::parse(text) {
        Ok(hl7) => hl7,
        Err(error) => return Err((msh_header(text).map(Box::new), error)),
    };
    let header = hl7.header().map_err(|error| (None, error))?;
    map(&hl7, &header).map_err(|error| (Some(Box::new(header)), error))
}

/// A frame's payload as text: UTF-8 when it is, else ISO-8859-1 (HL7's most common
/// single-byte charset), one character per byte.
pub fn payload_text(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) => text.to_owned(),
        Err(_) => payload.iter().map(|&b| char::from(b)).collect(),
    }
}
