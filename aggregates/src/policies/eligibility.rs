//! Registration → insurance eligibility → account activated or flagged self-pay.
//!
//! The payer call itself is I/O, so this policy only asks for it ([`EligibilityCheck`]); the
//! runner calls the payer (src/payer) and turns the answer into `RecordEligibility` with
//! [`record_answer`]. The account is then activated or flagged by reacting to the *events*
//! `EligibilityVerified` / `EligibilityDenied`, not to the payer's answer, so an eligibility
//! recorded by an upstream system (DESIGN.md allows it) completes the flow the same way.
//!
//! A registration without coverage is flagged self-pay at once. With coverage, a deadline
//! timer (default 15 minutes) flags the account self-pay if the payer has not answered by then;
//! an answer cancels it. A late approval still activates the account (`self_pay` → `active` is
//! allowed).

use chrono::TimeDelta;
use uuid::Uuid;

use super::timer::{TimerCancellation, TimerEvent, TimerFired, TimerPayload, TimerRequest};
use super::{
    AddressedCommand, PolicyError, ProcessManager, Reaction, Trigger, TriggerEvent, address, clip,
    command_id_for, timer_id_for,
};
use crate::field::{LONG_TEXT, SHORT_TEXT};
use crate::patient_account::{
    self, ActivateAccount, EligibilityDenied, FlagSelfPay, PatientRegistered, RecordEligibility,
};
use crate::{Aggregate, AnyCommand, PatientAccount};

/// The eligibility process manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eligibility;

/// Knobs of the eligibility flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EligibilitySettings {
    /// How long the payer may stay down before the account is flagged self-pay (issue 6:
    /// 15 minutes), counted from when the registration was recorded.
    pub payer_deadline: TimeDelta,
}

impl Default for EligibilitySettings {
    fn default() -> Self {
        Self {
            payer_deadline: TimeDelta::minutes(15),
        }
    }
}

/// A payer call the runner must make for one registration.
///
/// Holds the member id, which is personal data: never log it, log `account_id` instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EligibilityCheck {
    /// The MRN (`patient.identifier.value` of the FHIR request).
    pub account_id: String,
    /// `insurer.identifier.value`.
    pub payer_id: String,
    /// `insurance[0].coverage.identifier.value`.
    pub member_id: String,
    /// The command id of the `RecordEligibility` that will carry the answer, derived from the
    /// registration event: a check repeated after a crash records its answer once.
    pub record_command_id: Uuid,
    /// When the runner stops retrying: the deadline timer flags the account then.
    pub give_up_at: chrono::DateTime<chrono::Utc>,
}

/// The payer's answer, as the runner learnt it (src/payer maps its HTTP result to this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EligibilityAnswer {
    /// `insurance[0].inforce`; `false` also for a 4xx denial.
    pub eligible: bool,
    /// The response id, or a summary of the denial's OperationOutcome (clipped to fit).
    pub reference: Option<String>,
}

/// Step labels (part of every derived command id: never rename one).
const STEP_RECORD: &str = "record-eligibility";
const STEP_ACTIVATE: &str = "activate-account";
const STEP_FLAG: &str = "flag-self-pay";

impl ProcessManager for Eligibility {
    const NAME: &'static str = "eligibility";
    const STREAM_KINDS: &'static [&'static str] =
        &[PatientAccount::KIND, super::timer::TIMER_STREAM_KIND];
    /// The payer check needs the coverage's member id.
    const READS_PERSONAL: bool = true;
    type State = ();
    type Settings = EligibilitySettings;

    fn react(
        _state: &(),
        trigger: &Trigger,
        settings: &EligibilitySettings,
    ) -> Result<Reaction, PolicyError> {
        match &trigger.event {
            TriggerEvent::PatientAccount(event) => react_to_account(trigger, event, settings),
            TriggerEvent::Timer(TimerEvent::TimerFired(TimerFired {
                payload: TimerPayload::EligibilityDeadline { account_id },
                ..
            })) => Ok(Reaction {
                commands: vec![flag_self_pay(
                    trigger,
                    account_id,
                    "the payer did not answer the eligibility check before the deadline",
                )?],
                ..Reaction::default()
            }),
            _ => Ok(Reaction::default()),
        }
    }

    fn evolve(state: (), _trigger: &Trigger) {
        state
    }
}

fn react_to_account(
    trigger: &Trigger,
    event: &patient_account::Event,
    settings: &EligibilitySettings,
) -> Result<Reaction, PolicyError> {
    let account_id = trigger.stream_id.id();
    let mut reaction = Reaction::default();
    match event {
        patient_account::Event::PatientRegistered(registered) => {
            match check_for(trigger, registered, settings) {
                Some(check) => {
                    reaction.timers.push(TimerRequest {
                        process: Eligibility::NAME,
                        timer_id: deadline_timer(account_id),
                        due_at: check.give_up_at,
                        payload: TimerPayload::EligibilityDeadline {
                            account_id: account_id.to_owned(),
                        },
                    });
                    reaction.eligibility_checks.push(check);
                }
                None => {
                    let reason = if registered.coverage.is_none() {
                        "no insurance coverage was given at registration"
                    } else {
                        "the coverage has no readable member id"
                    };
                    reaction
                        .commands
                        .push(flag_self_pay(trigger, account_id, reason)?);
                }
            }
        }
        patient_account::Event::EligibilityVerified(_) => {
            reaction.commands.push(address(
                account_id,
                command_id_for(trigger.event_id, STEP_ACTIVATE),
                AnyCommand::PatientAccount(ActivateAccount {}.into()),
            )?);
            reaction.cancelled_timers.push(cancel_deadline(account_id));
        }
        patient_account::Event::EligibilityDenied(EligibilityDenied {
            payer_id,
            reference,
        }) => {
            let reason = match reference {
                Some(reference) => format!("eligibility denied by payer {payer_id}: {reference}"),
                None => format!("eligibility denied by payer {payer_id}"),
            };
            reaction
                .commands
                .push(flag_self_pay(trigger, account_id, &reason)?);
            reaction.cancelled_timers.push(cancel_deadline(account_id));
        }
        patient_account::Event::PatientMerged(_) => {
            // A merged account takes no more commands: its eligibility deadline is moot.
            reaction.cancelled_timers.push(cancel_deadline(account_id));
        }
        patient_account::Event::DemographicsUpdated(_)
        | patient_account::Event::PatientAccountMergedIn(_)
        | patient_account::Event::AccountActivated(_)
        | patient_account::Event::AccountFlaggedSelfPay(_)
        | patient_account::Event::ChargePosted(_)
        | patient_account::Event::PaymentRecorded(_)
        | patient_account::Event::AdjustmentApplied(_)
        | patient_account::Event::AccountClosed(_)
        | patient_account::Event::PersonalDataErased(_) => {}
    }
    Ok(reaction)
}

fn check_for(
    trigger: &Trigger,
    registered: &PatientRegistered,
    settings: &EligibilitySettings,
) -> Option<EligibilityCheck> {
    let coverage = registered.coverage.as_ref()?;
    let member_id = registered.personal.present()?.member_id.clone()?;
    Some(EligibilityCheck {
        account_id: trigger.stream_id.id().to_owned(),
        payer_id: coverage.payer_id.clone(),
        member_id,
        record_command_id: command_id_for(trigger.event_id, STEP_RECORD),
        give_up_at: trigger.recorded_at + settings.payer_deadline,
    })
}

/// The `RecordEligibility` that carries the payer's answer for `check` to the account.
///
/// # Errors
/// [`PolicyError::InvalidTarget`] if the MRN cannot address a stream.
pub fn record_answer(
    check: &EligibilityCheck,
    answer: &EligibilityAnswer,
) -> Result<AddressedCommand, PolicyError> {
    let reference = answer
        .reference
        .as_deref()
        .map(str::trim)
        .filter(|reference| !reference.is_empty())
        .map(|reference| clip(reference, SHORT_TEXT));
    address(
        &check.account_id,
        check.record_command_id,
        AnyCommand::PatientAccount(
            RecordEligibility {
                payer_id: check.payer_id.clone(),
                eligible: answer.eligible,
                reference,
            }
            .into(),
        ),
    )
}

/// The id of the payer-deadline timer of an account.
pub fn deadline_timer(account_id: &str) -> Uuid {
    timer_id_for(Eligibility::NAME, account_id)
}

fn cancel_deadline(account_id: &str) -> TimerCancellation {
    TimerCancellation {
        process: Eligibility::NAME,
        timer_id: deadline_timer(account_id),
    }
}

fn flag_self_pay(
    trigger: &Trigger,
    account_id: &str,
    reason: &str,
) -> Result<AddressedCommand, PolicyError> {
    address(
        account_id,
        command_id_for(trigger.event_id, STEP_FLAG),
        AnyCommand::PatientAccount(
            FlagSelfPay {
                reason: clip(reason, LONG_TEXT),
            }
            .into(),
        ),
    )
}
