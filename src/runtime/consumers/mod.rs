//! The consumer runtime: what every consumer of the log shares.
//!
//! A consumer follows the global log from its checkpoint and does something with each event:
//! a view applies it, a process manager sends the commands its policy asks for, the Odoo
//! executor performs intents, the publishers send it to NATS or a webhook. What they have in
//! common lives here, written once:
//!
//! - [`checkpoint`]: the checkpoint table (position + folded state, one row per consumer)
//!   and the lease (a PostgreSQL advisory lock on a connection of its own, so two nodes never
//!   act for one consumer at the same time);
//! - [`Consumer`], the one trait every follower implements, and the [`Supervisor`] that runs
//!   it: take the lease, load the checkpoint and decode the state, run, and on the way out say
//!   why ([`Exit`]): stopped, not the owner (standby), failed (start over from the checkpoint
//!   after a pause that doubles), or suspended (a known condition with a pause of its own,
//!   such as Odoo refusing the API key);
//! - [`Health`]: every consumer's state, position, lag and last error, which `/readyz`, the
//!   metrics (`careflow_consumer_*`) and the status routes read. A consumer stuck on an
//!   event, or failing for longer than [`FAILING_AFTER`], makes `/readyz` answer 503 and
//!   name it.
//!
//! The log itself is read through the process's one [`crate::store::LogFeed`]. A consumer's
//! poison events (what it cannot act on, whatever it does) go to the dead letters
//! ([`crate::operations::dead_letters`]) with retry and discard, like every other consumer's.

pub mod checkpoint;
mod health;
mod supervisor;

use std::sync::Arc;

use self::checkpoint::CheckpointStore;
use crate::clock::Clock;
use crate::operations::dead_letters::DeadLetters;
use crate::store::LogFeed;

pub use health::{ConsumerHealth, ConsumerReport, ConsumerState, FAILING_AFTER, Health};
pub use supervisor::{Backoff, Consumer, Exit, Resume, Supervisor, wait};

/// What every consumer of a process is handed: the log, the checkpoint table with its
/// leases, and where it reports its state.
#[derive(Clone)]
pub struct Consumers {
    pub feed: Arc<LogFeed>,
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub health: Arc<Health>,
    /// What a consumer could not do, for operators to retry or discard.
    pub dead_letters: DeadLetters,
    /// The runtime's one clock and id source (`crate::clock`).
    pub clock: Clock,
}
