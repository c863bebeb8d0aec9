//! The composition root: the one place that builds the runtime, starts it and stops it in
//! order, and the runners behind each CLI command. `cli` only parses and dispatches here.
//!
//! - [`runtime`]: [`Runtime`], what a serving node opens (the store, its side stores, the
//!   actors, the log's one reader and every consumer of it) and the order it stops in;
//! - [`serve`]: `careflow serve` (bind HTTP and MLLP first, open the runtime, serve, stop);
//! - [`commands`]: replay, audit, projection rebuilds, erasure;
//! - [`bench`]: `careflow bench`, the load and speed tools (clients of the HTTP, FHIR and MLLP
//!   edges, which is why they live at the top and not in `operations`).
//!
//! This is the binary's edge, so its runners return `anyhow` results, as `cli` does.

pub mod bench;
pub mod commands;
pub mod runtime;
pub mod serve;

pub use runtime::{OpenFailure, Runtime};

#[cfg(test)]
mod tests;
