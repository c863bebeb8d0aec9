//! careflow-projections: pure read models over the event log.
//!
//! Billing, claims, analytics and audit views and the Odoo mapping ([`odoo`]: event -> intents and the
//! exact `execute_kw` calls) live here as plain functions over `RecordedEvent`s, the views
//! writing through a small [`ViewStore`] trait.
//! This crate never performs I/O and has no clock: the runners in the `careflow` binary own
//! subscriptions, transactions and checkpoints, the Odoo executor owns every network call, and
//! a reader passes its own "as of" date to the queries that need one ([`billing::aging`]).
//!
//! **Architecture Invariant:** nothing here depends on actix, tokio, a database or reqwest.
//!
//! **Architecture Invariant:** no view holds personal data. Events are decoded with their
//! `personal` object blanked (see [`projection::decode`]), so no name, birth date, member id or
//! payer can reach a row.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub use careflow_aggregates as aggregates;

pub mod analytics;
pub mod audit;
pub mod billing;
pub mod claims;
pub mod error;
pub mod odoo;
pub mod projection;
pub mod store;
pub mod workforce;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use analytics::Analytics;
pub use audit::{Audit, RecordAccessed};
pub use billing::Billing;
pub use error::ProjectionError;
pub use projection::{Decoded, Projection, decode};
pub use store::{
    MemoryViewStore, Taken, TypedRow, ViewStore, decode_row, load, load_prefix, load_range, save,
    save_owned, take,
};
pub use workforce::Workforce;
