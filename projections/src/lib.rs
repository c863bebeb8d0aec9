//! careflow-projections: pure read models over the event log.
//!
//! Billing, analytics and audit views and the Odoo mapping (event -> intents) live here as
//! plain functions over `RecordedEvent`s, writing through a small `ViewStore` trait. This crate
//! never performs I/O: the runners in the `careflow` binary own subscriptions, transactions and
//! checkpoints, and the Odoo executor owns every network call.
//!
//! **Architecture Invariant:** nothing here depends on actix, tokio, a database or reqwest.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub use careflow_aggregates as aggregates;
