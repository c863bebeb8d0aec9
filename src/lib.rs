//! careflow: the imperative shell around the pure domain.
//!
//! This crate owns everything that touches the outside world: configuration, the event store
//! backends, the HTTP server, outside services (the payer, behind a circuit breaker), metrics
//! and the CLI. The decisions themselves live in
//! `careflow-aggregates`; read models in `careflow-projections`. See ARCHITECTURE.md.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod actors;
pub mod audit;
pub mod bench;
pub mod breaker;
pub mod cli;
pub mod config;
pub mod consumers;
pub mod dead_letters;
pub mod fhir;
pub mod hl7;
pub mod http;
pub mod idempotency;
pub mod metrics;
pub mod mllp;
pub mod odoo;
pub mod outbound;
pub mod payer;
pub mod personal_data;
pub mod process_managers;
pub mod runner_thread;
pub mod snapshot;
pub mod store;
pub mod views;
