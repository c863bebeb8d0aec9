//! Aggregate actors: one actix actor per live aggregate instance.
//!
//! This module owns *how* a command meets its aggregate: the [`Registry`] finds or starts the
//! stream's actor (on one of N arbiters, chosen by a hash of the stream id), the actor holds
//! the state in memory and handles one message at a time, so commands to one aggregate are
//! serialised without locks while different aggregates run in parallel. It does not know HTTP,
//! JSON wire shapes or tokens: callers hand in a parsed command and its [`CommandContext`].
//!
//! - **Activation:** state = the newest snapshot (see `crate::store::snapshot`) + the stream's tail;
//!   without a usable snapshot, a full replay.
//! - **Passivation:** an actor idle for `actor_idle_seconds` is stopped, and so is the least
//!   recently used one whenever more than `actor_max_live` are alive.
//! - **Snapshots:** written every `snapshot_every` events, in the background; only a cache.
//! - **Conflicts:** when another node appended first (`WrongExpectedVersion`), the actor reads
//!   the new events and decides again, at most [`ActorConfig::max_conflict_retries`] times,
//!   then answers [`CommandError::Conflict`] (HTTP 409).
//! - A rejected command appends nothing.

mod aggregate_actor;
mod command;
mod registry;
pub(crate) mod replay;

pub use aggregate_actor::AggregateActor;
pub use command::{CommandContext, CommandError, CommandOutcome, Observed};
pub use registry::Registry;
pub use replay::{history, state_as_of};

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::store::EventStore;
use crate::store::snapshot::SnapshotStore;

/// Tunables of the actor system (the config keys are listed in docs/http-api.md).
#[derive(Debug, Clone)]
pub struct ActorConfig {
    /// Idle time after which an actor is passivated.
    pub idle: Duration,
    /// Most actors alive at once.
    pub max_live: usize,
    /// A snapshot every this many events (0: never).
    pub snapshot_every: u64,
    /// Re-decisions after a version conflict before giving up with a 409.
    pub max_conflict_retries: u32,
    /// Arbiters (threads) actors are spread over.
    pub arbiters: usize,
    /// Where a decision's `Ctx::now` comes from (the runtime's clock; the system's by
    /// default).
    pub clock: Clock,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(300),
            max_live: 100_000,
            snapshot_every: 100,
            max_conflict_retries: 3,
            arbiters: std::thread::available_parallelism().map_or(1, usize::from),
            clock: Clock::system(),
        }
    }
}

impl ActorConfig {
    /// The actor settings of a validated [`crate::config::Config`].
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            idle: Duration::from_secs(config.actor_idle_seconds.max(1)),
            max_live: config.actor_max_live.max(1),
            snapshot_every: config.snapshot_every,
            ..Self::default()
        }
    }
}

/// What every actor needs: the event store, the snapshot cache and the settings.
pub struct Services {
    pub store: Arc<dyn EventStore>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub config: ActorConfig,
}

#[cfg(test)]
mod tests;
