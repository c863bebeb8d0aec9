//! [`OdooRecordAcknowledged`]: what Odoo says it holds for one careflow record.
//!
//! After posting an invoice the executor reads its `name`, `amount_total` and `state` and
//! appends one `OdooRecordAcknowledged` to stream `odoo-{key}` (kind [`ACK_STREAM_KIND`], e.g.
//! `odoo-invoice_V1`), with the command id [`OdooRecordAcknowledged::command_id`], so a replay
//! or a retry appends nothing new. The billing projection folds it into the invoice's
//! reconciliation row. It is the only thing careflow learns back from Odoo.

use careflow_aggregates::{Cents, DecodeError, RecordedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::ProjectionError;

/// Stream kind of the acknowledgement streams: `odoo-{external id name}`.
pub const ACK_STREAM_KIND: &str = "odoo";
/// The `event_type` of an acknowledgement.
pub const ACK_EVENT_TYPE: &str = "OdooRecordAcknowledged";
/// Its `schema_version`.
pub const ACK_SCHEMA_VERSION: u32 = 1;

/// A fixed namespace for acknowledgement command ids.
const ACK_NAMESPACE: Uuid = Uuid::from_u128(0x5d0a_7e1c_2b94_4c3f_9e61_0a8d_4f27_b513);

/// What Odoo acknowledged for one careflow record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdooRecordAcknowledged {
    /// The external id name in module `careflow` (e.g. `invoice_V1`).
    pub external_id: String,
    /// Odoo model (e.g. `account.move`).
    pub model: String,
    /// Odoo database id of the record.
    pub odoo_id: i64,
    /// Odoo's `name` (e.g. `INV/2025/00001`).
    pub name: String,
    /// Odoo's `amount_total`, as careflow's string decimal.
    pub amount_total: Cents,
    /// Odoo's `state` (`draft | posted | cancel`).
    pub state: String,
}

/// Why an Odoo `read` row could not become an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// Occurs when the row lacks a field or holds it with another JSON type.
    ///
    /// ### Handling
    /// The executor treats it as poison (the Odoo instance does not speak 17.0's fields).
    #[error("odoo row field {field} is missing or not a {expected}")]
    Field {
        field: &'static str,
        expected: &'static str,
    },
}

impl OdooRecordAcknowledged {
    /// Builds the acknowledgement from the row of `read [[id]], {"fields": ["name",
    /// "amount_total", "state"]}` (see [`crate::odoo::calls::read_invoice`]).
    ///
    /// # Errors
    /// [`AckError::Field`] when `id`, `name`, `amount_total` or `state` is missing or mistyped.
    pub fn from_read(external_id: &str, model: &str, row: &Value) -> Result<Self, AckError> {
        let field =
            |field: &'static str, expected: &'static str| AckError::Field { field, expected };
        let odoo_id = row
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| field("id", "integer"))?;
        let name = row
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| field("name", "string"))?;
        let amount_total = row
            .get("amount_total")
            .and_then(Value::as_f64)
            .filter(|amount| amount.is_finite())
            .ok_or_else(|| field("amount_total", "number"))?;
        let state = row
            .get("state")
            .and_then(Value::as_str)
            .ok_or_else(|| field("state", "string"))?;
        Ok(Self {
            external_id: external_id.to_owned(),
            model: model.to_owned(),
            odoo_id,
            name: name.to_owned(),
            amount_total: cents_of(amount_total),
            state: state.to_owned(),
        })
    }

    /// The stream it is appended to: `odoo-{external_id}`.
    pub fn stream(&self) -> String {
        format!("{ACK_STREAM_KIND}-{}", self.external_id)
    }

    /// The deterministic command id of the append: UUID v5 of external id, Odoo id and state,
    /// so acknowledging the same state of the same record again is recognised as a repeat,
    /// while a later state (e.g. `cancel`) is a new event.
    pub fn command_id(&self) -> Uuid {
        let text = format!("{}\n{}\n{}", self.external_id, self.odoo_id, self.state);
        Uuid::new_v5(&ACK_NAMESPACE, text.as_bytes())
    }

    /// The event's `data`.
    pub fn to_data(&self) -> Value {
        serde_json::json!({
            "external_id": self.external_id,
            "model": self.model,
            "odoo_id": self.odoo_id,
            "name": self.name,
            "amount_total": self.amount_total.to_string(),
            "state": self.state,
        })
    }
}

/// Odoo's monetary floats are rounded to the currency's cents before they are stored, so
/// rounding the JSON number to the nearest cent recovers the exact amount.
#[allow(clippy::cast_possible_truncation)]
fn cents_of(amount: f64) -> Cents {
    // In range: `amount_total` of any real invoice is far below 2^53 cents.
    Cents((amount * 100.0).round() as i64)
}

impl OdooRecordAcknowledged {
    /// The acknowledgement `event` holds, if it is one: `None` for every other event.
    ///
    /// # Errors
    /// [`ProjectionError::Decode`] when an `OdooRecordAcknowledged` of an `odoo` stream has a
    /// newer schema or data of another shape.
    pub fn decode(event: &RecordedEvent) -> Result<Option<Self>, ProjectionError> {
        if event.stream_id.kind() != ACK_STREAM_KIND || event.event_type != ACK_EVENT_TYPE {
            return Ok(None);
        }
        let failed = |source| ProjectionError::Decode {
            position: event.position,
            event_type: event.event_type.clone(),
            source,
        };
        if event.schema_version > ACK_SCHEMA_VERSION {
            return Err(failed(DecodeError::FutureSchemaVersion {
                event_type: event.event_type.clone(),
                found: event.schema_version,
                current: ACK_SCHEMA_VERSION,
            }));
        }
        serde_json::from_value(event.data.clone())
            .map(Some)
            .map_err(|error| {
                failed(DecodeError::Data {
                    event_type: event.event_type.clone(),
                    detail: error.to_string(),
                })
            })
    }
}
