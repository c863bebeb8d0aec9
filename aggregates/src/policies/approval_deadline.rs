//! A purchase awaiting approval escalates when its deadline passes.
//!
//! `PurchaseRequested` sets a timer at its `approval_deadline`, or, without one, at the
//! configured default (48 hours) after the request was recorded. The decision (approved,
//! rejected) or a cancellation cancels the timer; if the timer fires first, the purchase gets
//! `EscalateApproval`. The timer id derives from the requisition, so cancelling needs no
//! state. If a decision and the firing race, the purchase itself refuses the late escalation
//! (409), which the runner records and does not retry.

use chrono::TimeDelta;
use uuid::Uuid;

use super::timer::{TimerCancellation, TimerEvent, TimerFired, TimerPayload, TimerRequest};
use super::{
    PolicyError, ProcessManager, Reaction, Trigger, TriggerEvent, address, command_id_for,
    timer_id_for,
};
use crate::purchase::{self, EscalateApproval};
use crate::{Aggregate, AnyCommand, PurchaseWorkflow};

/// The approval-deadline process manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalDeadline;

/// Knobs of the approval deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// Used when the request names no `approval_deadline` (issue 6: 48 hours).
    pub default_deadline: TimeDelta,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        Self {
            default_deadline: TimeDelta::hours(48),
        }
    }
}

/// The id of the approval timer of a requisition.
pub fn deadline_timer(requisition_id: &str) -> Uuid {
    timer_id_for(ApprovalDeadline::NAME, requisition_id)
}

impl ProcessManager for ApprovalDeadline {
    const NAME: &'static str = "purchase_approval";
    const STREAM_KINDS: &'static [&'static str] =
        &[PurchaseWorkflow::KIND, super::timer::TIMER_STREAM_KIND];
    type State = ();
    type Settings = ApprovalSettings;

    fn react(
        _state: &(),
        trigger: &Trigger,
        settings: &ApprovalSettings,
    ) -> Result<Reaction, PolicyError> {
        let mut reaction = Reaction::default();
        match &trigger.event {
            TriggerEvent::Purchase(purchase::Event::PurchaseRequested(requested)) => {
                let requisition_id = trigger.stream_id.id();
                reaction.timers.push(TimerRequest {
                    process: Self::NAME,
                    timer_id: deadline_timer(requisition_id),
                    due_at: requested
                        .approval_deadline
                        .unwrap_or(trigger.recorded_at + settings.default_deadline),
                    payload: TimerPayload::ApprovalDeadline {
                        requisition_id: requisition_id.to_owned(),
                    },
                });
            }
            TriggerEvent::Purchase(
                purchase::Event::PurchaseApproved(_)
                | purchase::Event::PurchaseRejected(_)
                | purchase::Event::PurchaseCancelled(_),
            ) => {
                reaction.cancelled_timers.push(TimerCancellation {
                    process: Self::NAME,
                    timer_id: deadline_timer(trigger.stream_id.id()),
                });
            }
            TriggerEvent::Timer(TimerEvent::TimerFired(TimerFired {
                payload: TimerPayload::ApprovalDeadline { requisition_id },
                ..
            })) => {
                reaction.commands.push(address(
                    requisition_id,
                    command_id_for(trigger.event_id, "escalate-approval"),
                    AnyCommand::Purchase(EscalateApproval {}.into()),
                )?);
            }
            _ => {}
        }
        Ok(reaction)
    }

    fn evolve(state: (), _trigger: &Trigger) {
        state
    }
}
