//! PatientAccount: a patient's registration, coverage, eligibility and financial account.
//!
//! One stream per MRN (`patient_account-{mrn}`). It owns who the patient is (personal fields
//! kept under `personal`, see [`crate::personal`]), whether the account is active or self-pay,
//! and the money: charges, payments and adjustments, whose sum is the balance. It does not know
//! about encounters beyond the `encounter_id` a charge names, and it does not call the payer:
//! eligibility answers arrive as `RecordEligibility` commands.

mod command;
mod decide;
mod event;
mod state;

pub use command::{
    AbsorbMergedAccount, ActivateAccount, ApplyAdjustment, CloseAccount, Command, CoverageDetails,
    ErasePersonalData, FlagSelfPay, Gender, HumanName, MergePatient, PaymentMethod, PostCharge,
    PostalAddress, RecordEligibility, RecordPayment, RegisterPatient, UpdateDemographics,
};
pub use decide::{check_merge, decide};
pub use event::{
    AccountActivated, AccountClosed, AccountFlaggedSelfPay, AdjustmentApplied, ChargePosted,
    Coverage, DemographicsUpdated, EligibilityDenied, EligibilityVerified, Event, IdentityChanges,
    MovedAccount, MovedPayment, PatientAccountMergedIn, PatientIdentity, PatientMerged,
    PatientRegistered, PaymentParty, PaymentRecorded, PersonalDataErased, upcast_charge_posted_v1,
};
pub use state::{
    AccountStatus, Adjustment, Charge, Eligibility, Payment, State, evolve, initial_state,
};

use crate::aggregate::Aggregate;
use crate::context::Ctx;
use crate::rejection::Rejection;
use crate::upcast::Upcaster;

/// The PatientAccount aggregate (a marker type for [`Aggregate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatientAccount;

impl Aggregate for PatientAccount {
    const KIND: &'static str = "patient_account";
    const SNAPSHOT_VERSION: u32 = 1;
    const UPCASTERS: &'static [Upcaster] = &[Upcaster {
        event_type: "ChargePosted",
        from_version: 1,
        upcast: upcast_charge_posted_v1,
    }];

    type State = State;
    type Command = Command;
    type Event = Event;

    fn initial_state() -> State {
        initial_state()
    }

    fn decide(state: &State, command: &Command, ctx: &Ctx) -> Result<Vec<Event>, Rejection> {
        decide(state, command, ctx)
    }

    fn evolve(state: State, event: &Event) -> State {
        evolve(state, event)
    }

    fn command_name(command: &Command) -> &'static str {
        command.name()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
