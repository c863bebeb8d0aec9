//! Patient merge: the merged account's money moves to the survivor.
//!
//! `MergePatient` is decided by the account that disappears, which records `PatientMerged`
//! with everything it hands over (`moved`) and becomes `merged`. This policy turns that event
//! into `AbsorbMergedAccount` on the survivor (`into`), under a command id derived from the
//! event, so a redelivery is a no-op (and the survivor also ignores a `from` it already took
//! in). Two streams, two appends: between them the merged account reads `merged` with a zero
//! balance while the survivor does not yet show the moved money. The billing and analytics
//! views move the money only when `PatientAccountMergedIn` arrives, so they never count it
//! twice nor lose it (docs/process-managers.md "Patient merge").

use super::{
    PolicyError, ProcessManager, Reaction, Trigger, TriggerEvent, address, command_id_for,
};
use crate::patient_account::{self, AbsorbMergedAccount};
use crate::{Aggregate, AnyCommand, PatientAccount};

/// The step label of the survivor's command.
const STEP_ABSORB: &str = "absorb-merged-account";

/// The patient-merge process manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merges;

impl ProcessManager for Merges {
    const NAME: &'static str = "merges";
    const STREAM_KINDS: &'static [&'static str] = &[PatientAccount::KIND];
    type State = ();
    type Settings = ();

    fn react(_state: &(), trigger: &Trigger, _settings: &()) -> Result<Reaction, PolicyError> {
        let TriggerEvent::PatientAccount(patient_account::Event::PatientMerged(merged)) =
            &trigger.event
        else {
            return Ok(Reaction::default());
        };
        let command = address(
            &merged.into,
            command_id_for(trigger.event_id, STEP_ABSORB),
            AnyCommand::PatientAccount(
                AbsorbMergedAccount {
                    from: trigger.stream_id.id().to_owned(),
                    reason: merged.reason.clone(),
                    moved: merged.moved.clone(),
                }
                .into(),
            ),
        )?;
        Ok(Reaction {
            commands: vec![command],
            ..Reaction::default()
        })
    }

    fn evolve(state: (), _trigger: &Trigger) {
        state
    }
}
