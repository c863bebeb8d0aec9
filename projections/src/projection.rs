//! The [`Projection`] trait and the one place stored events become typed domain events.
//!
//! A projection is a pure fold of the global log into its view: `apply` reads and writes rows
//! through a [`ViewStore`] and nothing else. The runner in the shell owns the subscription, the
//! batching, the transaction and the checkpoint; it calls `apply` once per event in position
//! order and commits the batch's writes with the checkpoint, so `apply` does not need to be
//! idempotent (and is not: counters are incremented).
//!
//! [`decode`] switches on the stream kind and calls `Aggregate::decode` (which upcasts old
//! schemas). Projections then match [`Decoded`] and each aggregate's `Event` exhaustively, so a
//! new aggregate or a new event type fails to compile until every view decides what it means.

use careflow_aggregates::{
    Aggregate, Claim, Encounter, InventoryItem, PatientAccount, PurchaseWorkflow, RecordedEvent,
    Roster, Staffing, claim, encounter, inventory_item, patient_account, personal::PERSONAL_FIELD,
    purchase, roster, staffing,
};
use serde_json::Value;

use crate::error::ProjectionError;
use crate::store::ViewStore;

/// A read model fed by the global log.
pub trait Projection {
    /// Stable name: the checkpoint key, the metric label and the `rebuild` argument.
    fn name(&self) -> &'static str;

    /// The tables it writes, so the shell can create them, build a shadow copy on rebuild and
    /// swap them in one go.
    fn tables(&self) -> &'static [&'static str];

    /// Folds one event into the view.
    ///
    /// # Errors
    /// A [`ProjectionError`]; the runner stops at this event and rolls back its batch.
    fn apply(
        &self,
        store: &mut dyn ViewStore,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError>;
}

/// A stored event as its aggregate's typed event, or an internal stream's event left as is.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    PatientAccount(patient_account::Event),
    Encounter(encounter::Event),
    InventoryItem(inventory_item::Event),
    Purchase(purchase::Event),
    Claim(claim::Event),
    Roster(roster::Event),
    Staffing(staffing::Event),
    /// A stream of another kind: process managers, timers, the access log, or a kind added
    /// after this build. Its data is not decoded here.
    Internal,
}

/// Decodes `event` by its stream kind.
///
/// The `personal` object of the data is replaced by `null` before decoding: no view holds
/// personal data, so projections read every event as if it were erased. That also makes them
/// independent of whether the runner hands them decrypted data or ciphertext.
///
/// # Errors
/// [`ProjectionError::Decode`] when an aggregate stream holds an event its aggregate does not
/// decode.
pub fn decode(event: &RecordedEvent) -> Result<Decoded, ProjectionError> {
    let kind = event.stream_id.kind();
    Ok(if kind == PatientAccount::KIND {
        Decoded::PatientAccount(decode_as::<PatientAccount>(event)?)
    } else if kind == Encounter::KIND {
        Decoded::Encounter(decode_as::<Encounter>(event)?)
    } else if kind == InventoryItem::KIND {
        Decoded::InventoryItem(decode_as::<InventoryItem>(event)?)
    } else if kind == PurchaseWorkflow::KIND {
        Decoded::Purchase(decode_as::<PurchaseWorkflow>(event)?)
    } else if kind == Claim::KIND {
        Decoded::Claim(decode_as::<Claim>(event)?)
    } else if kind == Roster::KIND {
        Decoded::Roster(decode_as::<Roster>(event)?)
    } else if kind == Staffing::KIND {
        Decoded::Staffing(decode_as::<Staffing>(event)?)
    } else {
        Decoded::Internal
    })
}

fn decode_as<A: Aggregate>(event: &RecordedEvent) -> Result<A::Event, ProjectionError> {
    let mut data = event.data.clone();
    if let Value::Object(fields) = &mut data
        && let Some(personal) = fields.get_mut(PERSONAL_FIELD)
    {
        *personal = Value::Null;
    }
    A::decode(&event.event_type, event.schema_version, data).map_err(|source| {
        ProjectionError::Decode {
            position: event.position,
            event_type: event.event_type.clone(),
            source,
        }
    })
}
