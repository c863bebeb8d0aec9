//! The Odoo mapping: which records Odoo must come to hold because of each event, and the exact
//! `execute_kw` calls that put them there.
//!
//! Odoo is the hospital's system of record for finance, procurement and inventory. This module
//! is the pure half of keeping it in step: [`map_event`] folds the global log into
//! [`OdooIntent`]s (one record-level change each, keyed by its pinned external id in module
//! [`MODULE`]), and the builders of [`calls`] turn an intent into the JSON-RPC
//! `(model, method, args, kwargs)` a real Odoo 17.0 takes (../shared/odoo/API-NOTES.md), once
//! the executor has resolved the external ids it refers to. [`ack`] holds the one event the
//! executor writes back: what Odoo acknowledged for a posted invoice, which the billing view
//! reconciles against what careflow billed.
//!
//! It deliberately does no I/O: the executor in the shell owns authentication, the look-ups,
//! retries, the circuit breaker, dead letters and checkpoints. It never reads personal data
//! either: events are decoded with `personal` blanked (see [`crate::projection::decode`]), so
//! Odoo never receives anything careflow could later have to erase (docs/odoo.md, "Privacy").

pub mod ack;
pub mod calls;
pub mod intent;
mod mapping;

pub use ack::{ACK_EVENT_TYPE, ACK_STREAM_KIND, OdooRecordAcknowledged};
pub use calls::{Call, ErrorClass, MissingRef, classify_error, xmlid_create, xmlid_lookup};
pub use intent::{
    Action, InvoiceLine, MODULE, OdooIntent, OrderLine, PaymentTerms, ReceivedLine, complete_xmlid,
};
pub use mapping::{MappingState, map_event};

#[cfg(test)]
mod tests;
