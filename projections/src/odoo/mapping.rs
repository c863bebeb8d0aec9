//! [`map_event`]: the pure fold of the global log into [`OdooIntent`]s.

use careflow_aggregates::RecordedEvent;
use serde::{Deserialize, Serialize};

use super::intent::OdooIntent;
use crate::error::ProjectionError;

/// What the mapping remembers between events (work in progress).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MappingState {}

/// Maps one event to the intents it causes (work in progress: none yet).
///
/// # Errors
/// [`ProjectionError::Decode`] when an aggregate event does not decode.
pub fn map_event(
    _state: &mut MappingState,
    event: &RecordedEvent,
) -> Result<Vec<OdooIntent>, ProjectionError> {
    crate::projection::decode(event)?;
    Ok(Vec::new())
}
