//! The command context: what a decision may know besides the state and the command.
//!
//! Time and identity come in here, from the shell's clock and id generator, so `decide` stays a
//! pure function: the same state, command and context always give the same events. Nothing in
//! this crate reads a clock.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The context of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    /// The shell's clock when the command was taken up (used for checks such as "a birth date
    /// is not in the future").
    pub now: DateTime<Utc>,
    /// Business time as the caller stated it (`occurred_at` of the body), else `now`.
    pub occurred_at: DateTime<Utc>,
    /// The command id; derived ids (such as a replenishment requisition) come from it, so a
    /// redelivered command derives the same ids.
    pub command_id: Uuid,
    /// The authenticated caller or internal component.
    pub principal: String,
}

impl Ctx {
    /// A context whose business time is `now`.
    pub fn new(now: DateTime<Utc>, command_id: Uuid, principal: impl Into<String>) -> Self {
        Self {
            now,
            occurred_at: now,
            command_id,
            principal: principal.into(),
        }
    }

    /// Sets the business time stated by the caller.
    #[must_use]
    pub fn occurred_at(mut self, occurred_at: DateTime<Utc>) -> Self {
        self.occurred_at = occurred_at;
        self
    }
}
