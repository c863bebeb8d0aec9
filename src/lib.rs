//! careflow: the imperative shell around the pure domain.
//!
//! This crate owns everything that touches the outside world; the decisions themselves live
//! in `careflow-aggregates` and the read models in `careflow-projections`. Its modules are
//! grouped by layer, so the tree reads as ARCHITECTURE.md draws it:
//!
//! - [`store`]: the event store (one trait, SQLite and PostgreSQL, the one reader of the
//!   log) and the side stores beside it (snapshots, idempotency records);
//! - [`runtime`]: what decides and reacts (one actor per live aggregate, the consumer runtime,
//!   the process managers, the views);
//! - [`inbound`]: adapters that turn outside messages into commands (HTTP, FHIR R4, HL7 v2
//!   and MLLP);
//! - [`outbound`]: adapters that carry events out or call outside systems (Odoo, NATS,
//!   webhooks, the payer, the circuit breaker);
//! - [`operations`]: what auditors and operators use (audit, dead letters, personal data and
//!   erasure, metrics);
//! - [`app`]: the composition root that builds the runtime, starts it and stops it in order,
//!   and the CLI's runners and load tools;
//!   [`cli`] parses and dispatches; [`config`] reads the configuration; [`secret_file`] keeps
//!   the secrets careflow generates for itself in the data dir; [`error_chain`] spells an
//!   error with its causes; [`clock`] is where every time of day and random id comes from;
//!   [`tls`] reads CA files and starts the TLS of careflow's outgoing connections.
//!   [`fuzzing`] holds the fuzz targets' logic (`fuzz/`, replayed by `tests/it/fuzz_replay.rs`).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error_chain;
pub mod fuzzing;
pub mod inbound;
pub mod operations;
pub mod outbound;
pub mod runtime;
pub mod secret_file;
pub mod store;
pub mod tls;
