//! The runtime: what decides and what reacts.
//!
//! - [`actors`]: one actix actor per live aggregate instance, the [`actors::Registry`] every
//!   command goes through;
//! - [`consumers`]: the consumer runtime (checkpoints, leases, the supervisor, health);
//! - [`process_managers`]: the policies' runners, which turn events into commands;
//! - [`views`]: the projections' storage and runners;
//! - [`runner_thread`]: a background loop on an arbiter thread of its own.
//!
//! Nothing here knows HTTP, HL7 or FHIR: the inbound adapters call in.

pub mod actors;
pub mod consumers;
pub mod process_managers;
pub mod runner_thread;
pub mod views;
